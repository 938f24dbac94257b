"""LoCoMo retrieval benchmark: does the evidence for a question end up in the context?

LoCoMo (Maharana et al., ACL 2024) holds very long two-person conversations split into dated
sessions, and questions whose answers rest on specific turns (``dia_id`` such as ``D3:5``).  For
each conversation this module

1. writes every session as a Claude-Code-shaped JSONL transcript (one file per session, the first
   speaker's turns as ``user`` records, the second's as ``assistant`` records, timestamps from the
   session's date) into a temporary memory's ``sessions/raw/``, so that the real parser, ingest,
   keyword index and vectors are what gets measured; a map from each turn's tag
   (``[raw:<sample>-s<N>#<turn>]``) back to its ``dia_id`` is kept and checked against the index;
2. asks every question with evidence as a search (``ctxmill search``'s ranked ``dia_id`` s:
   recall@1/5/10) and, for in-context evidence recall, puts a context together under ``--budget``
   tokens in one of two ways:

   ``build`` (default)
       ``build_context`` with the question as the brief; the ``dia_id`` s cited in the
       context.md are what counts.  This measures the product end to end, front matter, section
       headings and citations list included in the budget.
   ``pack``
       a documented retrieval-packing path: the search's fused scores, each turn's score raised
       by ``neighbour_weight`` (0.3) times its adjacent turns' scores in the same session, then
       packed best first exactly as the baselines are.  This isolates retrieval quality from the
       pipeline's layout;
3. computes the same figures, in the same run, for two baselines over the same turns: BM25 over
   turns (``bm25s``, lowercase alphanumeric tokens) and recency (newest turns first).  A
   baseline's context is its ranking packed, best first, into the same token budget, each turn
   written ``speaker (date): text`` with the same token counter.

Recall for one question is the share of its evidence ids found; figures are means over questions.
Categories (from LoCoMo's evaluation code): 1 multi-hop, 2 temporal, 3 open-domain, 4 single-hop,
5 adversarial.  The headline figures cover categories 1-4; category 5 is reported separately.

Evidence ids are normalised before scoring ("D8:6; D9:17" is split, "D:11:26" becomes "D11:26",
"D30:05" becomes "D30:5"); what was changed, dropped as unreadable or unknown to the conversation
is counted and reported.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ctxmill.bench.golden import isolated_home
from ctxmill.config import Config
from ctxmill.model import TAG_IN_TEXT_RE, Layer, Tag
from ctxmill.store import Filters, Store, open_store

CATEGORY_NAMES = {
    1: "multi-hop",
    2: "temporal",
    3: "open-domain",
    4: "single-hop",
    5: "adversarial",
}
KS = (1, 5, 10)
SYSTEMS = ("ctxmill", "bm25", "recency")
_DIA_RE = re.compile(r"^D:?(\d+):0*(\d+)$")
_TOKEN_RE = re.compile(r"[a-z0-9]+")
_DATE_RE = re.compile(
    r"(\d{1,2}):(\d{2})\s*([ap]m)\s+on\s+(\d{1,2})\s+([A-Za-z]+),?\s+(\d{4})", re.IGNORECASE
)
_MONTHS = {
    m: i
    for i, m in enumerate(
        [
            "january",
            "february",
            "march",
            "april",
            "may",
            "june",
            "july",
            "august",
            "september",
            "october",
            "november",
            "december",
        ],
        1,
    )
}


class LocomoError(Exception):
    """A LoCoMo file that cannot be used; one line for the user."""


@dataclass
class Turn:
    dia_id: str
    speaker: str
    text: str  # the turn's words, with an image's caption appended
    session: int
    when: datetime


@dataclass
class Question:
    sample_id: str
    question: str
    category: int
    evidence: list[str]
    answer: str | None = None


@dataclass
class Conversation:
    sample_id: str
    speakers: tuple[str, str]
    sessions: list[tuple[int, datetime, list[Turn]]]
    questions: list[Question]

    @property
    def turns(self) -> list[Turn]:
        return [t for _, _, turns in self.sessions for t in turns]


@dataclass
class EvidenceStats:
    normalised: int = 0  # ids rewritten into canonical form ("D:11:26" → "D11:26")
    split: int = 0  # strings holding several ids ("D8:6; D9:17")
    dropped_malformed: int = 0  # unreadable ids ("D")
    dropped_unknown: int = 0  # well-formed ids naming no turn of the conversation
    questions_without_evidence: int = 0  # left with none after normalising (not scored)
    dates_without_session: int = 0  # session dates listed with no session (ignored)

    def as_json(self) -> dict[str, int]:
        return dict(self.__dict__)


# -- loading ------------------------------------------------------------------------------------


def parse_session_date(text: str) -> datetime:
    """``"1:56 pm on 8 May, 2023"`` → an aware UTC datetime."""
    m = _DATE_RE.search(text or "")
    if not m:
        raise LocomoError(f"unreadable session date {text!r}")
    hour, minute, ampm, day, month, year = m.groups()
    h = int(hour) % 12 + (12 if ampm.lower() == "pm" else 0)
    mon = _MONTHS.get(month.lower())
    if mon is None:
        raise LocomoError(f"unreadable month in session date {text!r}")
    return datetime(int(year), mon, int(day), h, int(minute), tzinfo=UTC)


def normalise_evidence(items: Sequence[Any], stats: EvidenceStats) -> list[str]:
    """Canonical ``D<session>:<turn>`` ids from LoCoMo's evidence strings, counting repairs."""
    out: list[str] = []
    for item in items:
        parts = [p for p in re.split(r"[;,\s]+", str(item).strip()) if p]
        if len(parts) > 1:
            stats.split += 1
        for part in parts:
            m = _DIA_RE.match(part)
            if not m:
                stats.dropped_malformed += 1
                continue
            canonical = f"D{int(m[1])}:{int(m[2])}"
            if canonical != part:
                stats.normalised += 1
            if canonical not in out:
                out.append(canonical)
    return out


def load_locomo(path: Path) -> tuple[list[Conversation], EvidenceStats]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise LocomoError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(data, list) or not all(isinstance(c, dict) for c in data):
        raise LocomoError(f"{path}: expected a JSON list of conversations (locomo10.json layout)")
    stats = EvidenceStats()
    conversations: list[Conversation] = []
    for raw in data:
        conv = raw.get("conversation") or {}
        sample_id = str(raw.get("sample_id") or f"conv-{len(conversations) + 1}")
        speakers = (str(conv.get("speaker_a", "A")), str(conv.get("speaker_b", "B")))
        sessions: list[tuple[int, datetime, list[Turn]]] = []
        numbers = sorted(
            int(m[1]) for k in conv if (m := re.fullmatch(r"session_(\d+)_date_time", k))
        )
        for n in numbers:
            turns_raw = conv.get(f"session_{n}")
            if not turns_raw:
                stats.dates_without_session += 1
                continue
            when = parse_session_date(str(conv[f"session_{n}_date_time"]))
            turns = []
            for t in turns_raw:
                text = str(t.get("text", "")).strip()
                caption = t.get("blip_caption")
                if caption:
                    text = f"{text} [shares an image: {caption}]".strip()
                turns.append(Turn(str(t["dia_id"]), str(t.get("speaker", "")), text, n, when))
            sessions.append((n, when, turns))
        known = {t.dia_id for _, _, ts in sessions for t in ts}
        questions = []
        for qa in raw.get("qa") or []:
            evidence = normalise_evidence(qa.get("evidence") or [], stats)
            unknown = [e for e in evidence if e not in known]
            stats.dropped_unknown += len(unknown)
            evidence = [e for e in evidence if e in known]
            if not evidence:
                stats.questions_without_evidence += 1
                continue
            answer = qa.get("answer", qa.get("adversarial_answer"))
            questions.append(
                Question(
                    sample_id,
                    str(qa["question"]),
                    int(qa.get("category", 0)),
                    evidence,
                    None if answer is None else str(answer),
                )
            )
        conversations.append(Conversation(sample_id, speakers, sessions, questions))
    return conversations, stats


# -- transcripts --------------------------------------------------------------------------------


def session_id(sample_id: str, session: int) -> str:
    return f"{sample_id}-s{session}"


def write_transcripts(conv: Conversation, raw_dir: Path) -> dict[tuple[str, int], str]:
    """Write one Claude Code JSONL file per session; returns (session id, turn number) → dia_id.

    Turn numbers are what the Claude Code parser assigns (one turn per record, in file order),
    checked against the index by :func:`check_tag_map`.
    """
    folder = raw_dir / conv.sample_id
    folder.mkdir(parents=True, exist_ok=True)
    tag_map: dict[tuple[str, int], str] = {}
    for n, when, turns in conv.sessions:
        sid = session_id(conv.sample_id, n)
        lines = []
        parent: str | None = None
        for i, turn in enumerate(turns, 1):
            uuid = f"{sid}-{i}"
            stamp = (when + timedelta(seconds=30 * (i - 1))).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            text = f"{turn.speaker}: {turn.text}"
            base: dict[str, Any] = {
                "parentUuid": parent,
                "isSidechain": False,
                "userType": "external",
                "cwd": f"/locomo/{conv.sample_id}",
                "sessionId": sid,
                "version": "2.1.40",
                "gitBranch": "",
                "uuid": uuid,
                "timestamp": stamp,
            }
            if turn.speaker == conv.speakers[1]:
                base["type"] = "assistant"
                base["message"] = {
                    "id": f"msg-{uuid}",
                    "type": "message",
                    "role": "assistant",
                    "model": "locomo",
                    "content": [{"type": "text", "text": text}],
                }
            else:
                base["type"] = "user"
                base["message"] = {"role": "user", "content": text}
            lines.append(json.dumps(base, ensure_ascii=False))
            parent = uuid
            tag_map[(sid, i)] = turn.dia_id
        (folder / f"{sid}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tag_map


def check_tag_map(
    store: Store, conv: Conversation, tag_map: dict[tuple[str, int], str]
) -> dict[tuple[str, int], str]:
    """The tag map as the index actually numbers turns, repaired by text where they differ."""
    by_dia = {t.dia_id: t for t in conv.turns}
    checked: dict[tuple[str, int], str] = {}
    for n, _, turns in conv.sessions:
        sid = session_id(conv.sample_id, n)
        by_text = {f"{t.speaker}: {t.text}"[:60]: t.dia_id for t in turns}
        for hit in store.chunks_for_session(sid, Layer.RAW):
            turn_no = hit.tag.start or 0
            expected = tag_map.get((sid, turn_no))
            if expected and hit.text.startswith(f"{by_dia[expected].speaker}: "):
                checked[(sid, turn_no)] = expected
            elif (found := by_text.get(hit.text[:60])) is not None:
                checked[(sid, turn_no)] = found
    return checked


# -- rankings and packing -----------------------------------------------------------------------


def tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(text.lower())


class BM25Turns:
    """BM25 over one conversation's turns (``bm25s``; lowercase alphanumeric tokens)."""

    def __init__(self, turns: Sequence[Turn]) -> None:
        try:
            import bm25s
        except ImportError as exc:  # a dev dependency: say how to get it
            raise LocomoError(
                "the BM25 baseline needs bm25s: pip install bm25s (or ctxmill[dev])"
            ) from exc
        self.turns = list(turns)
        self.retriever = bm25s.BM25()
        corpus = [tokens(f"{t.speaker} {t.text}") or ["_"] for t in self.turns]
        self.retriever.index(corpus, show_progress=False)
        self.vocab = set(self.retriever.vocab_dict)

    def rank(self, query: str, k: int = 50) -> list[str]:
        q = [w for w in tokens(query) if w in self.vocab]
        if not q:
            return []
        k = min(k, len(self.turns))
        docs, scores = self.retriever.retrieve([q], k=k, show_progress=False)
        return [self.turns[int(d)].dia_id for d, s in zip(docs[0], scores[0], strict=True) if s > 0]


def neighbour_rank(scores: dict[str, float], turns: Sequence[Turn], weight: float) -> list[str]:
    """Re-rank turns by their fused search score plus ``weight`` times their neighbours' scores
    (the turns just before and after, in the same session).

    In a conversation the turn that matches a question and the turn that answers it are often
    adjacent (a question and its reply); a turn whose neighbours also matched is the better bet.
    """
    if weight <= 0:
        return sorted(scores, key=lambda d: -scores[d])
    out: dict[str, float] = {}
    for i, turn in enumerate(turns):
        own = scores.get(turn.dia_id, 0.0)
        before = (
            scores.get(turns[i - 1].dia_id, 0.0)
            if i and turns[i - 1].session == turn.session
            else 0.0
        )
        after = (
            scores.get(turns[i + 1].dia_id, 0.0)
            if i + 1 < len(turns) and turns[i + 1].session == turn.session
            else 0.0
        )
        value = own + weight * (before + after)
        if value > 0:
            out[turn.dia_id] = value
    return sorted(out, key=lambda d: -out[d])


def recency_rank(turns: Sequence[Turn]) -> list[str]:
    return [t.dia_id for t in reversed(turns)]


def turn_line(turn: Turn) -> str:
    return f"{turn.speaker} ({turn.when:%d %B %Y}): {turn.text}"


def pack(
    ranked: Sequence[str],
    by_dia: dict[str, Turn],
    budget: int,
    count: Callable[[str], int],
) -> list[str]:
    """Greedily fill ``budget`` tokens with turns in rank order (a turn that does not fit is
    skipped, a later shorter one may still fit); returns the packed ``dia_id`` s."""
    used = 0
    packed: list[str] = []
    for dia in ranked:
        turn = by_dia.get(dia)
        if turn is None or dia in packed:
            continue
        cost = count(turn_line(turn)) + 1
        if used + cost > budget:
            continue
        used += cost
        packed.append(dia)
    return packed


# -- scoring ------------------------------------------------------------------------------------


def recall(evidence: Sequence[str], found: Sequence[str]) -> float:
    return len(set(evidence) & set(found)) / len(evidence) if evidence else 0.0


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarise(rows: Sequence[dict[str, Any]], system: str) -> dict[str, Any]:
    """recall@k and in-context recall for one system over rows, overall and per category."""

    def figures(subset: Sequence[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {"questions": len(subset)}
        for k in KS:
            out[f"recall@{k}"] = _round(
                _mean([recall(r["evidence"], r[f"{system}_ranked"][:k]) for r in subset])
            )
        out["in_context_recall"] = _round(
            _mean([recall(r["evidence"], r[f"{system}_cited"]) for r in subset])
        )
        return out

    main = [r for r in rows if r["category"] != 5]
    result = figures(main)
    result["per_category"] = {
        str(c): figures([r for r in main if r["category"] == c])
        for c in sorted({r["category"] for r in main})
    }
    adversarial = [r for r in rows if r["category"] == 5]
    result["category_5"] = figures(adversarial) if adversarial else None
    return result


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


# -- the run ------------------------------------------------------------------------------------


@dataclass
class LocomoSettings:
    budget: int = 1000
    mode: str = "hybrid"  # search mode for ctxmill's ranking
    context: str = "build"  # build: build_context; pack: ctxmill's ranking packed like baselines
    neighbour_weight: float = 0.3  # pack only: weight of adjacent turns' scores (0: off)
    limit_conversations: int | None = None
    limit_questions: int | None = None  # per conversation
    embedder: str | None = None
    backend: str | None = None

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class LocomoRun:
    rows: list[dict[str, Any]]
    evidence: EvidenceStats
    settings: LocomoSettings
    timings: dict[str, float] = field(default_factory=dict)
    tag_map_repairs: int = 0
    over_budget: int = 0

    def as_json(self) -> dict[str, Any]:
        ours = summarise(self.rows, "ctxmill")
        bm25 = summarise(self.rows, "bm25")
        recency = summarise(self.rows, "recency")
        ratio = None
        if ours["in_context_recall"] and bm25["in_context_recall"]:
            ratio = round(ours["in_context_recall"] / bm25["in_context_recall"], 4)
        ahead = all(
            (ours["per_category"][c]["in_context_recall"] or 0)
            > (bm25["per_category"][c]["in_context_recall"] or 0)
            for c in ours["per_category"]
        )
        questions = [
            {
                "sample_id": r["sample_id"],
                "question": r["question"],
                "category": r["category"],
                "evidence": r["evidence"],
                "retrieved": r["ctxmill_ranked"][:10],
                "cited": r["ctxmill_cited"],
                "bm25_retrieved": r["bm25_ranked"][:10],
                "bm25_cited": r["bm25_cited"],
                "recency_cited": r["recency_cited"],
                "context_tokens": r["context_tokens"],
            }
            for r in self.rows
        ]
        return {
            "questions": questions,
            "summary": {
                "questions": ours["questions"],
                "budget": self.settings.budget,
                "ctxmill": ours,
                "bm25": bm25,
                "recency": recency,
                "ratio_vs_bm25": ratio,
                "ahead_of_bm25_on_every_category": ahead,
                "over_budget_contexts": self.over_budget,
            },
            "baselines": {"bm25": bm25, "recency": recency},
            "evidence": self.evidence.as_json(),
            "tag_map_repairs": self.tag_map_repairs,
            "settings": self.settings.as_json(),
            "timings": {k: round(v, 2) for k, v in self.timings.items()},
        }


def run_locomo(
    path: Path,
    settings: LocomoSettings,
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> LocomoRun:
    from ctxmill.ingest import ingest
    from ctxmill.search import search
    from ctxmill.tokens import count_tokens

    if settings.context == "build":
        try:
            from ctxmill.pipeline import build_context
        except ImportError as exc:
            raise LocomoError(
                f"the build pipeline is not available ({exc}); use --context pack"
            ) from exc
    conversations, stats = load_locomo(path)
    if settings.limit_conversations:
        conversations = conversations[: settings.limit_conversations]
    report = progress or (lambda stage, done, total: None)
    rows: list[dict[str, Any]] = []
    timings = {"ingest": 0.0, "search": 0.0, "context": 0.0, "baselines": 0.0}
    repairs = 0
    over = 0
    total_q = sum(
        min(len(c.questions), settings.limit_questions or len(c.questions)) for c in conversations
    )
    done = 0
    with tempfile.TemporaryDirectory(prefix="ctxmill-locomo-") as tmp:
        for conv in conversations:
            root = Path(tmp) / conv.sample_id
            cfg = Config(
                memory_root=root / "memory",
                transcript_dirs=[],
                discover=False,
                home=root / "home",
            )
            if settings.embedder:
                cfg = replace(cfg, embedder=settings.embedder)
            cfg.home.mkdir(parents=True, exist_ok=True)
            tag_map = write_transcripts(conv, cfg.raw_dir)
            with isolated_home(cfg.home):
                t0 = time.perf_counter()
                ingest(cfg, embed=cfg.embedder != "none")
                timings["ingest"] += time.perf_counter() - t0
                store = open_store(cfg)
                try:
                    checked = check_tag_map(store, conv, tag_map)
                    repairs += sum(1 for k, v in checked.items() if tag_map.get(k) != v)
                    tag_map = checked
                    by_dia = {t.dia_id: t for t in conv.turns}
                    t0 = time.perf_counter()
                    bm25 = BM25Turns(conv.turns)
                    recent = recency_rank(conv.turns)
                    timings["baselines"] += time.perf_counter() - t0
                    last = max(when for _, when, _ in conv.sessions)
                    as_of = last + timedelta(days=1)
                    questions = conv.questions[: settings.limit_questions or None]
                    for q in questions:
                        t0 = time.perf_counter()
                        hits = search(
                            store,
                            q.question,
                            mode=settings.mode,
                            k=50,
                            filters=Filters(layers=[Layer.RAW]),
                        ).hits
                        ours_ranked = _dia_ids((h.tag for h in hits), tag_map)
                        # hybrid scores are fused RRF scores (higher is better); other modes'
                        # scales differ, so they fall back to RRF-style rank scores
                        scores: dict[str, float] = {}
                        for rank, h in enumerate(hits, 1):
                            dia = tag_map.get((h.tag.ref, h.tag.start or 0))
                            if dia and dia not in scores:
                                fused = settings.mode == "hybrid" and h.score > 0
                                scores[dia] = h.score if fused else 1 / (60 + rank)
                        timings["search"] += time.perf_counter() - t0
                        t0 = time.perf_counter()
                        if settings.context == "build":
                            built = build_context(
                                cfg,
                                q.question,
                                as_of=as_of,
                                budget=settings.budget,
                                backend=settings.backend,
                                store=store,
                            )
                            cited_tags = [
                                Tag.parse(m.group(0)) for m in TAG_IN_TEXT_RE.finditer(built.text)
                            ]
                            ours_cited = _dia_ids(cited_tags, tag_map)
                            ctx_tokens = built.tokens
                        else:
                            packed_rank = neighbour_rank(
                                scores, conv.turns, settings.neighbour_weight
                            )
                            ours_cited = pack(packed_rank, by_dia, settings.budget, count_tokens)
                            ctx_tokens = sum(count_tokens(turn_line(by_dia[d])) for d in ours_cited)
                        timings["context"] += time.perf_counter() - t0
                        over += int(ctx_tokens > settings.budget)
                        t0 = time.perf_counter()
                        bm25_ranked = bm25.rank(q.question)
                        rows.append(
                            {
                                "sample_id": q.sample_id,
                                "question": q.question,
                                "category": q.category,
                                "evidence": q.evidence,
                                "ctxmill_ranked": ours_ranked,
                                "ctxmill_cited": ours_cited,
                                "bm25_ranked": bm25_ranked,
                                "bm25_cited": pack(
                                    bm25_ranked, by_dia, settings.budget, count_tokens
                                ),
                                "recency_ranked": recent[:50],
                                "recency_cited": pack(
                                    recent, by_dia, settings.budget, count_tokens
                                ),
                                "context_tokens": ctx_tokens,
                            }
                        )
                        timings["baselines"] += time.perf_counter() - t0
                        done += 1
                        report("questions", done, total_q)
                finally:
                    store.close()
    return LocomoRun(rows, stats, settings, timings, repairs, over)


def _dia_ids(tags: Iterator[Tag] | Sequence[Tag], tag_map: dict[tuple[str, int], str]) -> list[str]:
    out: list[str] = []
    for tag in tags:
        if tag.kind != "raw":
            continue
        dia = tag_map.get((tag.ref, tag.start or 0))
        if dia and dia not in out:
            out.append(dia)
    return out
