"""Promotion: propose edits to topic files from what compressed summaries say, for a person to accept.

Knowledge flows one way, from the compressed layer into topics, and only through a reviewed diff:
``propose`` reads the newest summary of each session (newest sessions first) and returns
:class:`Proposal`\\ s; :meth:`PromotePlan.diff` renders them as a unified diff against the topic
files; :func:`apply` writes the accepted result.  Nothing here ever writes a summary.

Every proposed line ends with the tag of the summary it came from, as an HTML comment
(``<!-- [session:ID] -->``) that stays out of the rendered note but keeps the provenance.

Without a model (the default) proposals are found by rules:

- *decisions*: the bullets of a summary's ``## Decisions and why`` (sessions whose outcome is
  ``abandoned`` are passed over: their decisions did not become the current state);
- *conventions*: lines anywhere in the summary that state a rule ("always", "never",
  "convention", "from now on", …);
- *contradictions*: a topic line about the same thing (shares an identifier or several words)
  that gives a different number or value than the summary: proposed as a replacement.

Each proposal goes to the topic file whose name, headings and text share the most distinctive
words with it (conventions prefer a file named like ``conventions``); a proposal no topic matches
is reported as unplaced rather than guessed.  A decision lands at the end of the file's
``Decisions`` section (created at the end of the file when missing), a convention at the end of
its file's ``Conventions`` section, or of the file.  Proposals already present in the topic, or
repeating a newer session's proposal, are dropped.

With an LLM runner the model proposes instead, as JSON; each proposal must cite a section of one of
the summaries it was shown, and the code drops any whose citation does not exist, whose section is
empty, or whose line shares too little with the cited section to be supported by it.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctxmill.compress import existing_summaries
from ctxmill.config import Config
from ctxmill.llm.base import LLMError
from ctxmill.llm.runner import LLMRunner
from ctxmill.summary_format import sections, split_summary

_TURN_REF_RE = re.compile(r"\s*\(turn \d+\)\s*$")
_TAG_COMMENT_RE = re.compile(r"\s*<!--\s*\[session:[^\]]+\][^>]*-->\s*$")
_CONVENTION_RE = re.compile(
    r"\b(always|never|convention|from now on|by default|must not|must be|we use|naming|"
    r"style guide|rule of thumb|do not use|don't use)\b",
    re.IGNORECASE,
)
# A decision bullet counts as a convention only when it says so; "never" in a reason does not.
_CONVENTION_STRONG_RE = re.compile(
    r"\b(convention|from now on|always|naming|style guide|rule of thumb)\b", re.IGNORECASE
)
_VALUE_RE = re.compile(
    r"(?<![\w.])(\d+(?:\.\d+)?)\s*(ms|s|sec|seconds?|m|min|minutes?|h|hours?|d|days?|%|mb|gb|kb)?\b",
    re.IGNORECASE,
)
_CODE_RE = re.compile(r"`([^`]+)`")
_DATE_RE = re.compile(r"\b(20\d\d-[01]\d-[0-3]\d)\b")
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z0-9_./-]{2,}")
_STOP = frozenset(
    """the and for with that this from into when then than have has had was were are not but
    all any can could should would will its our their them they there which what who why how
    also only just more most some such very been being use used using uses none recorded turn
    session user asked decided because instead rather keep keeps kept make makes now new per
    want needs need""".split()
)
MATCH_THRESHOLD = 2.5  # distinctive-word overlap a topic needs before a proposal is placed in it
SIMILAR = 0.6  # word-set overlap above which two lines say the same thing
PROMOTED = "From session summaries"  # the sub-entry promoted lines go to in a dated section


@dataclass
class Proposal:
    """One proposed line for one topic file."""

    topic: Path
    line: str  # the bullet text, without the tag comment
    session_id: str
    section: str  # the summary section it came from
    kind: str  # decision | convention | contradiction
    date: str | None = None
    replaces: str | None = None  # an existing topic line this one replaces

    @property
    def rendered(self) -> str:
        date = f"{self.date}: " if self.date else ""
        return f"- {date}{self.line} <!-- [session:{self.session_id}] -->"

    def as_json(self, topics_dir: Path) -> dict[str, Any]:
        return {
            "topic": _rel(self.topic, topics_dir),
            "line": self.rendered,
            "session_id": self.session_id,
            "section": self.section,
            "kind": self.kind,
            "replaces": self.replaces,
        }


@dataclass
class PromotePlan:
    topics_dir: Path
    proposals: list[Proposal] = field(default_factory=list)
    unplaced: list[Proposal] = field(default_factory=list)
    older: list[Proposal] = field(default_factory=list)  # the topic was curated after the session
    dropped: list[str] = field(default_factory=list)  # why model proposals were refused
    summaries_read: int = 0

    def new_texts(self) -> dict[Path, tuple[str, str]]:
        """topic path → (current text, proposed text)."""
        by_topic: dict[Path, list[Proposal]] = {}
        for p in self.proposals:
            by_topic.setdefault(p.topic, []).append(p)
        out: dict[Path, tuple[str, str]] = {}
        for topic, props in sorted(by_topic.items()):
            old = topic.read_text(encoding="utf-8") if topic.exists() else ""
            out[topic] = (old, _edit(old, props, topic))
        return out

    def diff(self) -> str:
        chunks: list[str] = []
        for topic, (old, new) in self.new_texts().items():
            rel = _rel(topic, self.topics_dir)
            chunks += difflib.unified_diff(
                old.splitlines(keepends=True),
                new.splitlines(keepends=True),
                fromfile=f"a/topics/{rel}" if old else "/dev/null",
                tofile=f"b/topics/{rel}",
            )
        return "".join(c if c.endswith("\n") else c + "\n" for c in chunks)

    def as_json(self) -> dict[str, Any]:
        return {
            "summaries_read": self.summaries_read,
            "proposals": [p.as_json(self.topics_dir) for p in self.proposals],
            "unplaced": [p.as_json(self.topics_dir) for p in self.unplaced],
            "older_than_topic": [p.as_json(self.topics_dir) for p in self.older],
            "dropped": self.dropped,
            "diff": self.diff(),
        }


@dataclass
class _Summary:
    session_id: str
    path: Path
    ended: str
    outcome: str
    sections: dict[str, str]


@dataclass
class _Topic:
    path: Path
    text: str
    lines: list[str]
    words: Counter[str]
    name_words: set[str]
    as_of: str | None  # the latest YYYY-MM-DD the note mentions: it was curated up to then


def propose(
    cfg: Config,
    *,
    session_ids: list[str] | None = None,
    limit: int = 20,
    runner: LLMRunner | None = None,
) -> PromotePlan:
    """Proposals from the newest ``limit`` summaries (or those of ``session_ids``)."""
    summaries = _read_summaries(cfg, session_ids, limit)
    topics = _read_topics(cfg.topics_dir)
    plan = PromotePlan(cfg.topics_dir, summaries_read=len(summaries))
    if runner is None:
        candidates = [c for s in summaries for c in _candidates(s)]
    else:
        candidates = _model_candidates(summaries, topics, runner, plan, cfg.topics_dir)
    _place(candidates, topics, plan, cfg.topics_dir)
    return plan


def apply(plan: PromotePlan) -> list[Path]:
    """Write the proposed topic texts (each through a temp file and ``os.replace``)."""
    written = []
    for topic, (old, new) in plan.new_texts().items():
        if new == old:
            continue
        topic.parent.mkdir(parents=True, exist_ok=True)
        tmp = topic.with_name(f".{topic.name}.promote.tmp")
        try:
            tmp.write_text(new, encoding="utf-8")
            os.replace(tmp, topic)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        written.append(topic)
    return written


# -- reading -----------------------------------------------------------------------------------


def _read_summaries(cfg: Config, session_ids: list[str] | None, limit: int) -> list[_Summary]:
    out = []
    for sid, known in existing_summaries(cfg.compressed_dir).items():
        if session_ids and sid not in session_ids:
            continue
        if known.newest is None:
            continue
        front, body, problems = split_summary(known.newest.read_text(encoding="utf-8"))
        if front is None or problems:
            continue
        out.append(
            _Summary(
                session_id=sid,
                path=known.newest,
                ended=str(front.get("ended") or front.get("started") or ""),
                outcome=str(front.get("outcome") or "unknown"),
                sections=sections(body),
            )
        )
    out.sort(key=lambda s: (s.ended, s.session_id), reverse=True)
    return out if session_ids else out[:limit]


def _read_topics(topics_dir: Path) -> list[_Topic]:
    topics: list[_Topic] = []
    if not topics_dir.is_dir():
        return topics
    for path in sorted(topics_dir.rglob("*.md")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        name_words = _words(path.stem.replace("-", " ").replace("_", " "))
        heading_words = [w for ln in text.splitlines() if ln.startswith("#") for w in _words(ln)]
        words = Counter(_words(text)) + Counter(heading_words)
        dates = _DATE_RE.findall(text)
        topics.append(
            _Topic(path, text, text.splitlines(), words, set(name_words), max(dates, default=None))
        )
    return topics


def _words(text: str) -> list[str]:
    out = []
    for w in _WORD_RE.findall(text.lower()):
        w = w.strip("./-")
        if len(w) >= 3 and w not in _STOP and not w.isdigit():
            out.append(w)
    return out


def _clean_line(line: str) -> str:
    line = re.sub(r"^\s*[-*+]\s+", "", line.strip())
    return _TURN_REF_RE.sub("", line).strip()


def _candidates(summary: _Summary) -> list[Proposal]:
    """Rule-based proposals from one summary."""
    if summary.outcome == "abandoned":
        return []
    date = summary.ended[:10] or None
    out: list[Proposal] = []
    decisions = summary.sections.get("Decisions and why", "")
    for raw in decisions.splitlines():
        line = _clean_line(raw)
        if len(line) < 20 or line.lower().startswith("none recorded"):
            continue
        kind = "convention" if _CONVENTION_STRONG_RE.search(line) else "decision"
        out.append(Proposal(Path(), line, summary.session_id, "Decisions and why", kind, date))
    for heading in ("What happened", "Open threads"):
        for raw in summary.sections.get(heading, "").splitlines():
            line = _clean_line(raw)
            if len(line) >= 20 and _CONVENTION_RE.search(line) and not line.startswith("Ran `"):
                out.append(Proposal(Path(), line, summary.session_id, heading, "convention", date))
    return out


# -- the model path ----------------------------------------------------------------------------

_MODEL_SYSTEM = """You maintain a team's curated topic notes. From session summaries, propose only
lines that state current truth: decisions that were taken, conventions, and corrections to topic
lines the summaries show to be out of date. Answer with a JSON list and nothing else."""

_MODEL_PROMPT = """Topic files (path, then headings):
{topics}

Session summaries (cite them as "<session_id>#<section heading>"):
{summaries}

Answer with a JSON list of objects:
{{"topic": "<topic path from the list>", "line": "<one markdown bullet text, no tag>",
  "replaces": "<an existing topic line, exactly, or null>", "cite": "<session_id>#<section>"}}
At most {n} proposals. Propose nothing that a topic already says."""


def _model_candidates(
    summaries: list[_Summary],
    topics: list[_Topic],
    runner: LLMRunner,
    plan: PromotePlan,
    topics_dir: Path,
) -> list[Proposal]:
    topic_list = "\n".join(
        f"- {_rel(t.path, topics_dir)}: "
        + "; ".join(ln.lstrip("# ").strip() for ln in t.lines if ln.startswith("#"))[:400]
        for t in topics
    )
    blocks = []
    for s in summaries:
        parts = [f"### {s.session_id} (ended {s.ended}, outcome {s.outcome})"]
        for heading in ("Goal", "Decisions and why", "Failed attempts and why", "Open threads"):
            parts.append(f"#### {heading}\n{s.sections.get(heading, '')[:2500]}")
        blocks.append("\n".join(parts))
    prompt = _MODEL_PROMPT.format(
        topics=topic_list or "(none yet)", summaries="\n\n".join(blocks), n=20
    )
    try:
        done = runner.complete(prompt, system=_MODEL_SYSTEM, max_tokens=2_000, purpose="promote")
    except LLMError as exc:
        plan.dropped.append(f"model: {exc}")
        return []
    return _check_model_answer(done.text, summaries, topics, plan, topics_dir)


def _check_model_answer(
    text: str,
    summaries: list[_Summary],
    topics: list[_Topic],
    plan: PromotePlan,
    topics_dir: Path,
) -> list[Proposal]:
    """Keep the model's proposals whose citation exists and supports the line."""
    m = re.search(r"\[.*\]", text, re.DOTALL)
    try:
        items = json.loads(m.group(0)) if m else None
    except ValueError:
        items = None
    if not isinstance(items, list):
        plan.dropped.append("model: the answer was not a JSON list; nothing proposed")
        return []
    by_id = {s.session_id: s for s in summaries}
    by_topic = {_rel(t.path, topics_dir): t for t in topics}
    out: list[Proposal] = []
    for item in items:
        if not isinstance(item, dict):
            plan.dropped.append("model: a proposal that is not an object")
            continue
        line = _clean_line(str(item.get("line") or ""))
        cite = str(item.get("cite") or "")
        sid, _, section = cite.partition("#")
        summary = by_id.get(sid.strip().removeprefix("[session:").rstrip("]"))
        cited = summary.sections.get(section.strip()) if summary else None
        if not line:
            plan.dropped.append(f"model: an empty line citing {cite!r}")
            continue
        if summary is None or cited is None:
            plan.dropped.append(f"model: {line[:60]!r} cites {cite!r}, which is no section shown")
            continue
        if not cited.strip() or cited.strip().lower().startswith("none recorded"):
            plan.dropped.append(f"model: {line[:60]!r} cites an empty section {cite!r}")
            continue
        support = set(_words(line)) & set(_words(cited))
        if len(support) < min(2, len(set(_words(line)))):
            plan.dropped.append(f"model: {line[:60]!r} is not supported by {cite!r}")
            continue
        topic_name = str(item.get("topic") or "")
        topic = by_topic.get(topic_name)
        if topic is None and (".." in topic_name or not topic_name.endswith(".md")):
            plan.dropped.append(f"model: {line[:60]!r} names no usable topic file {topic_name!r}")
            continue
        replaces = item.get("replaces")
        if isinstance(replaces, str) and topic is not None and replaces not in topic.lines:
            replaces = None  # only an exact existing line may be replaced
        out.append(
            Proposal(
                topic.path if topic else topics_dir / topic_name,
                line,
                summary.session_id,
                section.strip(),
                "contradiction" if isinstance(replaces, str) else "decision",
                summary.ended[:10] or None,
                replaces if isinstance(replaces, str) else None,
            )
        )
    return out


# -- placing -----------------------------------------------------------------------------------


def _place(
    candidates: list[Proposal], topics: list[_Topic], plan: PromotePlan, topics_dir: Path
) -> None:
    df = Counter(w for t in topics for w in set(t.words))
    n_topics = max(1, len(topics))
    accepted: list[Proposal] = []
    for cand in candidates:
        words = set(_words(cand.line))
        if not words or any(_similar(words, set(_words(p.line))) for p in accepted):
            continue
        if cand.topic != Path():
            topic = next((t for t in topics if t.path == cand.topic), None)
        else:
            topic = _best_topic(cand, words, topics, df, n_topics)
            if topic is None:
                plan.unplaced.append(cand)
                continue
            cand.topic = topic.path
        if topic is not None:
            if topic.as_of and cand.date and cand.date <= topic.as_of:
                # The note was curated on or after the session ended: its author has seen what
                # the session decided, and where they differ the topic wins.
                plan.older.append(cand)
                continue
            if any(_similar(words, set(_words(ln))) for ln in topic.lines):
                continue  # the topic already says it
            if cand.replaces is None:
                cand.replaces = _contradicted(cand.line, words, topic)
                if cand.replaces is not None:
                    cand.kind = "contradiction"
        accepted.append(cand)
    plan.proposals = accepted


def _best_topic(
    cand: Proposal, words: set[str], topics: list[_Topic], df: Counter[str], n: int
) -> _Topic | None:
    best: tuple[float, _Topic | None] = (0.0, None)
    for topic in topics:
        score = 0.0
        for w in words:
            if w in topic.words:
                score += math.log(1 + n / df[w]) * (1 + min(topic.words[w], 5) / 5)
            if w in topic.name_words:
                score += 2.0
        if cand.kind == "convention" and "convention" in " ".join(topic.name_words):
            score += 3.0
        if score > best[0]:
            best = (score, topic)
    return best[1] if best[0] >= MATCH_THRESHOLD else None


def _similar(a: set[str], b: set[str]) -> bool:
    if not a or not b:
        return False
    return len(a & b) / min(len(a), len(b)) >= SIMILAR and len(a & b) >= 3


def _values(text: str) -> set[str]:
    return {f"{m.group(1)}{(m.group(2) or '').lower()[:1]}" for m in _VALUE_RE.finditer(text)}


def _identifiers(text: str) -> set[str]:
    """Names inside backticks (``SESSION_TTL_SECONDS = 43200`` → ``session_ttl_seconds``)."""
    return {
        name.lower()
        for span in _CODE_RE.findall(text)
        for name in re.findall(r"[A-Za-z_][A-Za-z0-9_.:/-]{2,}", span)
    }


def _contradicted(line: str, words: set[str], topic: _Topic) -> str | None:
    """A topic line about the same thing that states a different value, if there is one."""
    values = _values(line)
    idents = _identifiers(line)
    if not values:
        return None
    for old in topic.lines:
        if not old.strip() or old.startswith("#") or _TAG_COMMENT_RE.search(old):
            continue
        old_values = _values(old)
        if not old_values or old_values & values:
            continue
        shared_idents = idents & _identifiers(old)
        shared = words & set(_words(old))
        if shared_idents or len(shared) >= 3:
            return old
    return None


def _edit(text: str, proposals: list[Proposal], topic: Path) -> str:
    lines = text.splitlines()
    for p in proposals:
        if p.replaces is not None and p.replaces in lines:
            i = lines.index(p.replaces)
            indent = p.replaces[: len(p.replaces) - len(p.replaces.lstrip())]
            lines[i] = indent + p.rendered
    additions = [p for p in proposals if p.replaces is None or p.rendered not in lines]
    for heading, kinds in (("Decisions", ("decision",)), ("Conventions", ("convention",))):
        new = [p.rendered for p in additions if p.kind in kinds]
        if not new:
            continue
        lines = _insert_in_section(lines, heading, new, create=heading == "Decisions")
    if not text:
        title = topic.stem.replace("-", " ").replace("_", " ").capitalize()
        lines = [f"# {title}", "", *lines]
    return "\n".join(lines).rstrip("\n") + "\n"


def _insert_in_section(
    lines: list[str], heading: str, new: list[str], *, create: bool
) -> list[str]:
    """Put ``new`` at the end of the ``## <heading>…`` section (before trailing blank lines)."""
    start = next(
        (
            i
            for i, ln in enumerate(lines)
            if re.match(r"^##\s+", ln) and heading.lower() in ln.lower()
        ),
        None,
    )
    if start is None:
        if not create and lines:
            end = len(lines)
            while end > 0 and not lines[end - 1].strip():
                end -= 1
            return [*lines[:end], *new, *lines[end:]]
        return [*lines, *([""] if lines and lines[-1].strip() else []), f"## {heading}", "", *new]
    end = next(
        (i for i in range(start + 1, len(lines)) if re.match(r"^##\s+", lines[i])), len(lines)
    )
    stop = end
    while stop > start + 1 and not lines[stop - 1].strip():
        stop -= 1
    subheads = [i for i in range(start + 1, end) if lines[i].startswith("### ")]
    if subheads:
        # A section made of dated sub-entries: a bullet appended to the last entry would read as
        # part of it, so promoted lines get a sub-entry of their own.
        own = next((i for i in subheads if lines[i].strip() == f"### {PROMOTED}"), None)
        if own is None:
            return [*lines[:stop], "", f"### {PROMOTED}", *new, *lines[stop:]]
        own_end = next((i for i in subheads if i > own), stop)
        while own_end > own + 1 and not lines[own_end - 1].strip():
            own_end -= 1
        return [*lines[:own_end], *new, *lines[own_end:]]
    return [*lines[:stop], *new, *lines[stop:]]


def _rel(path: Path, topics_dir: Path) -> str:
    try:
        return path.relative_to(topics_dir).as_posix()
    except ValueError:
        return path.name
