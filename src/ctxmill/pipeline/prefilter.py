"""Stage 1: the pool of candidate sessions, the union of five cheap queries over the index.

time      sessions active in [as_of - window, as_of]; the window widens to years when the brief asks
          about history ("originally", "why did we", a named month …)
topic     sessions that mention what the relevant topic sections name (their identifiers and
          headings): curated notes expand the brief with the vocabulary the team actually used
path      sessions whose touched files or commands, or whose text, name a path or identifier
          from the brief
keyword   FTS5/BM25 over compressed summaries and raw turns
semantic  vectors, when the index has them

Nothing dated at or after ``as_of`` is visible: every query filters on it, and sessions that started
after it are dropped.  Each candidate keeps the queries that found it, for ``--explain``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ctxmill.model import Layer, Tag
from ctxmill.pipeline.brief import Brief, identifiers_in
from ctxmill.search import search
from ctxmill.store.base import Filters, Hit, SessionRecord, Store

QUERIES = ("time", "topic", "path", "keyword", "semantic")
HISTORY_WINDOW_DAYS = 3 * 365
# Rank fusion weights: the time window alone says little about relevance, so a session found only
# by recency ranks below one any content query found.
WEIGHTS = {"time": 0.3, "topic": 0.8, "path": 1.2, "keyword": 1.0, "semantic": 0.8}
RRF_K = 60
SEARCH_K = 200
TOPIC_SECTIONS = 8
SEMANTIC_FLOOR = 0.6  # of the best cosine score
TURN_RANK_SCALE = 10
MIN_SAMPLE = 50  # texts below which term weights also sample raw turns
RAW_SAMPLE = 3000


@dataclass
class Candidate:
    session_id: str
    record: SessionRecord | None
    ranks: dict[str, int] = field(default_factory=dict)  # query -> rank of the session (1-based)
    score: float = 0.0

    @property
    def found_by(self) -> list[str]:
        return [q for q in QUERIES if q in self.ranks]


@dataclass
class Pool:
    candidates: list[Candidate]  # best first, at most ``limit``
    topic_hits: list[Hit]  # the topic sections that matched the brief
    since: str
    until: str
    widened: bool
    total: int  # candidates before the limit
    notes: list[str] = field(default_factory=list)
    turn_scores: dict[Tag, float] = field(default_factory=dict)
    """Raw turns the keyword and semantic queries found, fused by rank (best 1.0): which turns of
    a session the aggregator should look at first."""


def iso(moment: datetime) -> str:
    """The form timestamps are stored in, so that string comparison is time comparison."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def prefilter(
    store: Store,
    brief: Brief,
    *,
    as_of: datetime,
    window_days: int,
    limit: int = 80,
) -> Pool:
    until = iso(as_of)
    days = max(window_days, HISTORY_WINDOW_DAYS) if brief.history else window_days
    since = iso(as_of - timedelta(days=days))
    notes: list[str] = []
    visible = {s.id: s for s in store.list_sessions() if s.started is None or s.started < until}
    sessions_only = Filters(layers=[Layer.COMPRESSED, Layer.RAW], until=until)
    rankings: dict[str, list[str]] = {}

    recent = [s for s in store.list_sessions(Filters(since=since, until=until)) if s.id in visible]
    recent.sort(key=lambda s: s.ended or s.started or "", reverse=True)
    rankings["time"] = [s.id for s in recent]

    brief.weigh(_vocabulary_sample(store))
    topic_hits = _topic_hits(store, brief)
    vocabulary = _topic_vocabulary(topic_hits, brief)
    if vocabulary:
        hits = store.keyword_search(" ".join(vocabulary), sessions_only, SEARCH_K)
        rankings["topic"] = _rank_sessions(hits)

    rankings["path"] = _path_query(store, brief, visible, sessions_only)

    keyword_hits: list[Hit] = []
    if brief.terms or brief.identifiers:
        keyword_hits = store.keyword_search(brief.text, sessions_only, SEARCH_K)
        rankings["keyword"] = _rank_sessions(keyword_hits)

    semantic = search(store, brief.text, mode="semantic", k=SEARCH_K, filters=sessions_only)
    notes += semantic.notes
    turn_scores = _turn_scores([keyword_hits, semantic.hits])
    # Vectors always have a nearest neighbour; only hits near the best one count as found.
    best = max((h.score for h in semantic.hits), default=0.0)
    rankings["semantic"] = _rank_sessions(
        [h for h in semantic.hits if h.score > 0 and h.score >= SEMANTIC_FLOOR * best]
    )

    candidates: dict[str, Candidate] = {}
    for query, ranking in rankings.items():
        for rank, sid in enumerate(ranking, 1):
            if sid not in visible:
                continue
            cand = candidates.setdefault(sid, Candidate(sid, visible.get(sid)))
            cand.ranks[query] = rank
            cand.score += WEIGHTS[query] / (RRF_K + rank)
    ordered = sorted(candidates.values(), key=lambda c: (-c.score, c.session_id))
    return Pool(
        candidates=ordered[:limit],
        topic_hits=topic_hits,
        since=since,
        until=until,
        widened=days != window_days,
        total=len(ordered),
        notes=notes,
        turn_scores=turn_scores,
    )


def _turn_scores(rankings: list[list[Hit]]) -> dict[Tag, float]:
    """The raw turns among the hits, each query's rank turned into a score that halves by rank
    TURN_RANK_SCALE + 1 and keeps falling (unlike RRF's, which barely moves over the first
    hundred), summed over the queries and scaled so the best is 1.0."""
    fused: dict[Tag, float] = {}
    for ranking in rankings:
        turns = [h for h in ranking if h.layer is Layer.RAW]
        for rank, hit in enumerate(turns):
            fused[hit.tag] = fused.get(hit.tag, 0.0) + 1.0 / (1.0 + rank / TURN_RANK_SCALE)
    best = max(fused.values(), default=0.0)
    return {tag: score / best for tag, score in fused.items()} if best else {}


def _vocabulary_sample(store: Store) -> list[str]:
    """The texts term weights are computed over: the topic notes and the summaries (small,
    written in the team's own words, and a fair sample of how common a word is)."""
    docs = [h.text.lower() for h in store.iter_chunks(Layer.TOPIC)]
    docs += [h.text.lower() for h in store.iter_chunks(Layer.COMPRESSED)]
    if len(docs) < MIN_SAMPLE:
        # A memory of transcripts only: the first turns stand in (a bounded read, not the corpus).
        raw = (h for h in store.iter_chunks(Layer.RAW) if h.role in ("user", "assistant"))
        docs += [h.text.lower() for h in itertools.islice(raw, RAW_SAMPLE)]
    return docs


def _rank_sessions(hits: list[Hit]) -> list[str]:
    """Sessions in the order of their best hit (hits arrive best first)."""
    return list(dict.fromkeys(h.session_id for h in hits if h.session_id))


def _topic_hits(store: Store, brief: Brief) -> list[Hit]:
    """Topic sections matching the brief by keyword, plus those whose heading shares its terms.

    Topics are curated current truth, read as they are now: a topic file's date is when it was
    last saved, not when its facts date from, so the time window does not apply to them.
    """
    only_topics = Filters(layers=[Layer.TOPIC])
    found: dict[int, Hit] = {}
    if brief.terms or brief.identifiers:
        for hit in store.keyword_search(brief.text, only_topics, 50):
            found.setdefault(hit.chunk_id, hit)
    stems = brief.stems
    if stems:
        for hit in store.iter_chunks(Layer.TOPIC):
            heading = f"{hit.title or ''} {hit.tag.ref}"
            if hit.chunk_id not in found and brief.overlap(heading) > 0:
                hit.found_by.append("heading")
                found[hit.chunk_id] = hit
    return list(found.values())


def _topic_vocabulary(hits: list[Hit], brief: Brief) -> list[str]:
    """Identifiers the best-matching topic sections name; they widen the brief's vocabulary."""
    ranked = sorted(hits, key=lambda h: -brief.overlap(h.text + " " + (h.title or "")))
    vocab: list[str] = []
    for hit in ranked[:TOPIC_SECTIONS]:
        for ident in identifiers_in(hit.text):
            if len(ident) > 3 and ident not in vocab:
                vocab.append(ident)
    return vocab[:40]


def _path_query(
    store: Store, brief: Brief, visible: dict[str, SessionRecord], filters: Filters
) -> list[str]:
    """Sessions that touched, ran or wrote about the paths and identifiers the brief names."""
    if not brief.identifiers:
        return []
    wanted = [i.lower().strip("./") for i in brief.identifiers]
    touched: list[tuple[int, str]] = []
    for record in visible.values():
        names = [f.lower() for f in record.files] + [c.lower() for c in record.commands]
        n = sum(1 for w in wanted if any(w in name for name in names))
        if n:
            touched.append((n, record.id))
    touched.sort(key=lambda t: -t[0])
    ranked = [sid for _, sid in touched]
    for ident in brief.identifiers:
        # One phrase query per identifier: an identifier is rare and exact, so its hits are
        # strong evidence even when the rest of the brief matches nothing.
        for hit in store.keyword_search(f'"{ident}"', filters, 100):
            if hit.session_id and hit.session_id not in ranked:
                ranked.append(hit.session_id)
    return ranked
