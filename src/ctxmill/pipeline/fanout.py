"""Stage 2: three workers read the pool in parallel and return bounded, tagged findings.

A  topics      the topic files that matched, split into paragraphs and list items with exact line
               ranges (so every tag points at the lines it came from)
B  compressed  the candidates' summaries: the items that match the brief, above all decisions,
               failed attempts and open threads
C  code        the files the brief names or whose paths match it, and every reference to the
               identifiers that will change (a targeted list, not a dump)

None of them reads raw transcripts.  B flags sessions whose summary is suggestive but not enough
(a failure or decision that touches the brief, or no summary at all) for the aggregator to re-read,
and the sessions of the turns the pre-filter's keyword and semantic queries ranked best (the
searches have seen the turns; the workers have not).
SQLite connections must not be shared across threads, so each worker opens its own.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ctxmill.config import Config
from ctxmill.model import Excerpt, Layer, Tag
from ctxmill.pipeline.brief import Brief, identifiers_in, stem
from ctxmill.pipeline.prefilter import Pool
from ctxmill.pipeline.text import (
    FAILURE_RE,
    Item,
    clip,
    kind_of_heading,
    split_items,
)
from ctxmill.store.base import Hit, Store

StoreFactory = Callable[[], Store]

MAX_TOPIC_ITEMS = 120
MAX_SUMMARY_ITEMS = 160
MAX_ITEMS_PER_SESSION = 10
MAX_SESSIONS_READ = 60
MAX_FLAGGED = 8
MAX_CODE_FILES = 25
MAX_TRACED = 30
CODE_TAGS = 3  # line tags per file in "Files likely to touch"
ITEM_CHARS = 900
NO_SUMMARY = "no summary"  # why a session is flagged when it has no compressed summary
CLOSE_TURN = "a transcript turn matches the brief closely"
TURN_FLAG = 0.5  # fused turn score (best 1.0) above which a summarised session is re-read too
TOP_TURNS = 20  # the sessions of this many best-matching turns are re-read …
MORE_FLAGGED = 8  # … up to this many beyond MAX_FLAGGED


@dataclass
class Finding:
    """An excerpt plus what the aggregator needs to place it."""

    excerpt: Excerpt
    kind: str  # state | decision | failure | open | history | goal | files | file | turn
    heading: str = ""
    title: str | None = None  # the session's title, or the topic file
    also: list[Tag] = field(default_factory=list)  # tags of merged near-duplicates
    block: str | None = None  # verbatim code from a transcript, shown fenced
    position: int = 0  # which passage of its turn (display order)

    @property
    def tags(self) -> list[Tag]:
        return [self.excerpt.tag, *(t for t in self.also if t != self.excerpt.tag)]


@dataclass
class WorkerResult:
    name: str
    findings: list[Finding] = field(default_factory=list)
    flagged: dict[str, str] = field(default_factory=dict)  # session id -> why
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    paths: set[str] = field(default_factory=set)  # code worker: every file under the code root
    reference: list[Finding] = field(default_factory=list)  # topics worker: every topic item,
    # relevant or not, for the aggregator's conflict check (a summary may contradict any note)


@dataclass
class FanOut:
    topics: WorkerResult
    compressed: WorkerResult
    code: WorkerResult

    @property
    def flagged(self) -> dict[str, str]:
        return {**self.topics.flagged, **self.compressed.flagged, **self.code.flagged}


def fan_out(
    cfg: Config, pool: Pool, brief: Brief, stores: StoreFactory, *, parallel: bool = True
) -> FanOut:
    """Run the three workers; ``parallel=False`` for a store that cannot open more connections."""
    with ThreadPoolExecutor(
        max_workers=3 if parallel else 1, thread_name_prefix="ctxmill-fanout"
    ) as ex:
        a = ex.submit(_timed, "topics", lambda: topics_worker(stores, cfg, pool, brief))
        b = ex.submit(_timed, "compressed", lambda: compressed_worker(stores, pool, brief))
        c = ex.submit(_timed, "code", lambda: code_worker(cfg, pool, brief))
        return FanOut(a.result(), b.result(), c.result())


def _timed(name: str, work: Callable[[], WorkerResult]) -> WorkerResult:
    t0 = time.perf_counter()
    result = work()
    result.name = name
    result.seconds = time.perf_counter() - t0
    return result


# -- A: topics ------------------------------------------------------------------------------------


def topics_worker(stores: StoreFactory, cfg: Config, pool: Pool, brief: Brief) -> WorkerResult:
    """Read each topic file with a matching section; keep the items that touch the brief."""
    result = WorkerResult("topics")
    by_file: dict[str, list[Hit]] = {}
    for hit in pool.topic_hits:
        by_file.setdefault(hit.tag.ref, []).append(hit)
    store = stores()
    try:
        scored: list[tuple[float, Finding]] = []
        for ref, hits in by_file.items():
            items, stamp = _topic_items(cfg, store, ref, hits)
            if not items:
                continue
            title = items[0].heading.split(" > ")[0] if items[0].heading else ref
            # A file whose name or title is about the brief's subject is read whole; from any
            # other file only the items that themselves match are kept.
            whole = brief.overlap(f"{Path(ref).stem} {title}") > 0
            hit_ranges = [
                (h.tag.start or 0, h.tag.end or 0) for h in hits if "heading" not in h.found_by
            ]
            # Curated sections are cohesive: an item in a section about the brief is about it
            # too, even when it does not repeat the brief's words.
            section_text: dict[str, str] = {}
            for item in items:
                section_text[item.heading] = section_text.get(item.heading, "") + " " + item.text
            section = {h: brief.overlap(t) for h, t in section_text.items()}
            for item in items:
                score = (
                    brief.overlap(item.text)
                    + 0.5 * brief.overlap(item.heading)
                    + 0.5 * section[item.heading]
                )
                if any(s <= item.start <= e or s <= item.end <= e for s, e in hit_ranges):
                    score += 0.1
                if score <= 0.1 and not whole:
                    continue
                if whole:
                    score += 0.2
                kind = topic_kind(item.heading)
                excerpt = Excerpt(
                    id="",
                    tag=Tag.topic(ref, item.start, item.end),
                    layer=Layer.TOPIC,
                    text=clip(item.text, ITEM_CHARS * 2),
                    score=score,
                    timestamp=stamp,
                    found_by=["topics"],
                )
                scored.append((score, Finding(excerpt, kind, item.heading, title=ref)))
        scored.sort(key=lambda s: -s[0])
        result.findings = [f for _, f in scored[:MAX_TOPIC_ITEMS]]
        result.reference = _all_topic_items(cfg, store)
    finally:
        store.close()
    return result


def _all_topic_items(cfg: Config, store: Store) -> list[Finding]:
    by_file: dict[str, list[Hit]] = {}
    for hit in store.iter_chunks(Layer.TOPIC):
        by_file.setdefault(hit.tag.ref, []).append(hit)
    out: list[Finding] = []
    for ref, hits in by_file.items():
        items, stamp = _topic_items(cfg, store, ref, hits)
        for item in items:
            excerpt = Excerpt(
                id="",
                tag=Tag.topic(ref, item.start, item.end),
                layer=Layer.TOPIC,
                text=clip(item.text, ITEM_CHARS * 2),
                timestamp=stamp,
                found_by=["topics"],
            )
            out.append(Finding(excerpt, topic_kind(item.heading), item.heading, title=ref))
    return out


def topic_kind(heading: str) -> str:
    """The kind of a topic item from the deepest heading that says something ("Decisions" under
    "Auth"); the file's title (the first level) never does."""
    levels = heading.split(" > ")
    for level in reversed(levels[1:] if len(levels) > 1 else levels):
        kind = kind_of_heading(level)
        if kind != "state":
            return kind
    return "state"


def _topic_items(
    cfg: Config, store: Store, ref: str, hits: list[Hit]
) -> tuple[list[Item], str | None]:
    """The file's items with exact line numbers; the indexed text stands in if the file is gone."""
    path = cfg.topics_dir / ref
    stamp = max((h.timestamp or "" for h in hits), default="") or None
    if path.is_file():
        return split_items(path.read_text(encoding="utf-8", errors="replace")), stamp
    items: list[Item] = []
    for hit in store.chunks_for_tag(Tag.topic(ref, 1, 10**9)) or hits:
        for item in split_items(hit.text, hit.tag.start or 1):
            item.heading = item.heading or (hit.title or "")
            items.append(item)
    return items, stamp


# -- B: compressed summaries ----------------------------------------------------------------------


def compressed_worker(stores: StoreFactory, pool: Pool, brief: Brief) -> WorkerResult:
    result = WorkerResult("compressed")
    store = stores()
    scored: list[tuple[float, Finding]] = []
    flag_scores: dict[str, tuple[float, str]] = {}
    # How strongly a session's own turns matched the brief (its best turn), next to how the
    # session as a whole ranked: both decide which transcripts are worth a re-read.
    best_turn: dict[str, float] = {}
    for tag, value in pool.turn_scores.items():
        best_turn[tag.ref] = max(value, best_turn.get(tag.ref, 0.0))
    top = max((c.score for c in pool.candidates), default=0.0) or 1.0
    try:
        for rank, cand in enumerate(pool.candidates[:MAX_SESSIONS_READ]):
            standing = cand.score / top + best_turn.get(cand.session_id, 0.0)
            hits = store.chunks_for_session(cand.session_id, Layer.COMPRESSED)
            hits = [h for h in hits if not h.timestamp or h.timestamp < pool.until]
            record = cand.record
            title = record.title if record else None
            date = (record.started if record else None) or next(
                (h.timestamp for h in hits if h.timestamp), None
            )
            content_query = any(q in ("topic", "path", "keyword") for q in cand.found_by)
            if not hits:
                if content_query:
                    flag_scores[cand.session_id] = (standing, NO_SUMMARY)
                continue
            if content_query and best_turn.get(cand.session_id, 0.0) >= TURN_FLAG:
                flag_scores[cand.session_id] = (standing, CLOSE_TURN)
            # Later candidates need a clearer match: the pool is ranked, the budget is not free.
            weight = 1.0 / (1.0 + rank / 20)
            items = _summary_items(hits)
            summary_overlap = brief.overlap(" ".join(i.text for i in items))
            session_items: list[tuple[float, Finding]] = []
            for item in items:
                kind = _summary_kind(item)
                if kind == "files":
                    continue
                overlap = brief.overlap(item.text)
                if kind in ("failure", "decision", "open"):
                    relevant = overlap > 0 or (summary_overlap >= 0.5 and content_query)
                elif kind == "goal":
                    relevant = overlap > 0 and content_query
                else:
                    relevant = overlap > 0
                if not relevant:
                    continue
                bonus = {"failure": 0.4, "decision": 0.3, "open": 0.25, "goal": 0.1}.get(kind, 0.0)
                score = (overlap + bonus + 0.2 * summary_overlap) * weight
                excerpt = Excerpt(
                    id="",
                    tag=Tag.session(cand.session_id),
                    layer=Layer.COMPRESSED,
                    text=clip(item.text, ITEM_CHARS),
                    score=score,
                    session_id=cand.session_id,
                    timestamp=date,
                    found_by=list(cand.found_by),
                )
                session_items.append((score, Finding(excerpt, kind, item.heading, title=title)))
                if kind in ("failure", "decision") and overlap > 0:
                    best = flag_scores.get(cand.session_id, (0.0, ""))[0]
                    why = f"summary mentions a {'failed attempt' if kind == 'failure' else 'decision'} touching the brief"
                    flag_scores[cand.session_id] = (max(best, score + standing), why)
            session_items.sort(key=lambda s: -s[0])
            scored += session_items[:MAX_ITEMS_PER_SESSION]
    finally:
        store.close()
    scored.sort(key=lambda s: -s[0])
    result.findings = [f for _, f in scored[:MAX_SUMMARY_ITEMS]]
    ranked = sorted(flag_scores.items(), key=lambda kv: -kv[1][0])[:MAX_FLAGGED]
    result.flagged = {sid: why for sid, (_, why) in ranked}
    # The sessions of the best-matching turns are worth a read too, wherever the session as a
    # whole ranked: one turn may hold the answer in a session about something else.
    found = {
        c.session_id
        for c in pool.candidates
        if any(q in ("topic", "path", "keyword") for q in c.found_by)
    }
    for tag in sorted(pool.turn_scores, key=lambda t: -pool.turn_scores[t])[:TOP_TURNS]:
        if len(result.flagged) >= MAX_FLAGGED + MORE_FLAGGED:
            break
        if tag.ref in found and tag.ref not in result.flagged:
            result.flagged[tag.ref] = CLOSE_TURN
    return result


def _summary_items(hits: list[Hit]) -> list[Item]:
    """A summary's items under their headings, however the summary was cut into chunks."""
    items: list[Item] = []
    for hit in hits:
        text = hit.text
        if hit.title and not text.lstrip().startswith("#"):
            text = f"## {hit.title}\n{text}"
        items += split_items(text)
    return items


def _summary_kind(item: Item) -> str:
    kind = kind_of_heading(item.heading.split(" > ")[-1]) if item.heading else "state"
    if kind in ("state", "history"):
        # A "What happened" item that reports a revert or an abandoned attempt is a dead end.
        if FAILURE_RE.search(item.text) and re.search(
            r"\b(revert|abandon|fail|gave up)", item.text, re.I
        ):
            return "failure"
        return "history"
    return kind


# -- C: code --------------------------------------------------------------------------------------

_DEF_RE = re.compile(
    r"^(?:async\s+)?(?:def|class)\s+([A-Za-z_]\w*)|^([A-Z][A-Z0-9_]{2,})\s*[:=]", re.M
)
# Priority of a traced identifier: named in the brief > named in the notes and defined in a file
# the change touches > any other public name that file defines.
_BRIEF, _NOTES, _DEFINED = 3, 2, 1


def code_worker(cfg: Config, pool: Pool, brief: Brief) -> WorkerResult:
    result = WorkerResult("code")
    root = cfg.code_root
    if root is None:
        result.notes.append("no code root configured; 'Files likely to touch' lists no code")
        return result
    if not root.is_dir():
        result.notes.append(
            f"code root {root} does not exist; 'Files likely to touch' lists no code"
        )
        return result
    from ctxmill.sources.code import find_references, list_code_files

    files = [_rel(p, root) for p in list_code_files(root)]
    result.paths = set(files)
    named = _named_files(files, brief, pool)
    defs = {rel: _defined_in(root / rel) for rel in named}
    traced = _traced_identifiers(brief, named, defs, pool)
    refs = find_references(root, list(traced), 2000) if traced else []
    uses: dict[str, dict[str, list[int]]] = {}  # file -> identifier -> lines
    for rel, line, text in refs:
        rel = _rel(Path(rel), root)
        for ident in traced:
            if re.search(rf"(?<![\w]){re.escape(ident)}(?![\w])", text):
                uses.setdefault(rel, {}).setdefault(ident, []).append(line)
    scored: list[tuple[float, Finding]] = []
    for rel in [*named, *(u for u in uses if u not in named)]:
        why = named.get(rel)
        used = uses.get(rel, {})
        mine = [(name, line) for name, line in defs.get(rel, []) if name in traced]
        mine.sort(key=lambda d: -traced[d[0]])
        used = {i: lines for i, lines in used.items() if i not in dict(mine)}
        weight = sum(traced[i] for i in used)
        if why is None and not used:
            continue
        parts = [why] if why else []
        if mine:
            parts.append("defines " + ", ".join(f"`{name}`" for name, _ in mine[:5]))
        lines = sorted({n for i in used for n in used[i]})
        if used:
            names = sorted(used, key=lambda i: (-traced[i], i))
            parts.append("uses " + ", ".join(f"`{i}`" for i in names[:5]))
        # The lines are tags (the reader can open each), not text: the first definition, then
        # the first uses.
        first = [mine[0][1]] if mine else []
        first += [n for n in lines if n not in first][: CODE_TAGS - len(first)]
        first = first or [1]
        score = {"named in the brief": 4.0, "path matches the brief": 3.0}.get(why or "", 1.0)
        score += 0.2 * weight + (1.0 if why == "named in the notes" else 0.0)
        scored.append((score, _code_finding(rel, first, "; ".join(parts), score)))
    scored.sort(key=lambda f: (-f[0], f[1].excerpt.tag.ref))
    result.findings = [f for _, f in scored[: MAX_CODE_FILES * 2]]
    return result


def _named_files(files: list[str], brief: Brief, pool: Pool) -> dict[str, str]:
    """relpath -> why: files the brief names, whose path matches it, or the relevant notes name."""
    named: dict[str, str] = {}
    for path in brief.paths:
        want = path.lstrip("./")
        for rel in files:
            if rel == want or rel.endswith("/" + want):
                named[rel] = "named in the brief"
    want_stems = brief.stems
    path_scores: list[tuple[int, str]] = []
    for rel in files:
        parts = {stem(p) for p in re.split(r"[/._\-]", rel.lower()) if len(p) > 2}
        n = len(parts & want_stems)
        if n:
            path_scores.append((n, rel))
    path_scores.sort(key=lambda t: (-t[0], len(t[1])))
    best = path_scores[0][0] if path_scores else 0
    for n, rel in path_scores[:MAX_CODE_FILES]:
        # Only the strongest path matches: one common word must not pull in every file named so.
        if n == best or n >= 2:
            named.setdefault(rel, "path matches the brief")
    # Paths the notes name in an item about the brief's subject (or in a note whose name is the
    # subject), and that exist now.
    for hit in pool.topic_hits:
        about = brief.overlap(Path(hit.tag.ref).stem) > 0
        texts = [i.text for i in split_items(hit.text)]
        mentions = [m for t in texts if about or brief.overlap(t) >= 0.5 for m in identifiers_in(t)]
        for mention in mentions:
            m = mention.strip("/")
            if "/" not in m:
                continue
            for rel in files:
                if rel == m or rel.endswith("/" + m):
                    named.setdefault(rel, "named in the notes")
    return named


def _code_finding(rel: str, lines: list[int], what: str, score: float) -> Finding:
    also = [Tag.code(rel, n) for n in lines[1:]]
    excerpt = Excerpt(
        id="",
        tag=Tag.code(rel, lines[0]),
        layer=Layer.CODE,
        text=f"`{rel}` — {what}",
        score=score,
        found_by=["code"],
    )
    return Finding(excerpt, "file", title=rel, also=also)


def _traced_identifiers(
    brief: Brief, named: dict[str, str], defs: dict[str, list[tuple[str, int]]], pool: Pool
) -> dict[str, int]:
    """What to find every reference to, with its priority (see _BRIEF, _NOTES, _DEFINED)."""
    traced: dict[str, int] = {}

    def add(ident: str, priority: int) -> None:
        ident = ident.strip("`").rstrip("()")
        if len(ident) > 3 and "/" not in ident and not ident.startswith("-"):
            traced[ident] = max(priority, traced.get(ident, 0))

    for ident in (*brief.changing, *brief.identifiers):
        add(ident, _BRIEF)
    defined = {name for found in defs.values() for name, _ in found}
    for hit in pool.topic_hits:
        if brief.overlap(hit.text) > 0:
            for ident in identifiers_in(hit.text):
                if ident.strip("`").rstrip("()") in defined:
                    add(ident, _NOTES)
    for rel, why in named.items():
        if why != "named in the notes":
            for name, _ in defs[rel]:
                if not name.startswith("_"):
                    add(name, _DEFINED)
    ranked = sorted(traced.items(), key=lambda kv: -kv[1])[:MAX_TRACED]
    return dict(ranked)


def _defined_in(path: Path) -> list[tuple[str, int]]:
    """Top-level names a file defines (functions, classes, CONSTANTS) with their line numbers."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    found: dict[str, int] = {}
    for m in _DEF_RE.finditer(text):
        name = m[1] or m[2]
        if name and name not in found:
            found[name] = text.count("\n", 0, m.start()) + 1
    return list(found.items())


def _rel(path: Path, root: Path) -> str:
    if not path.is_absolute():
        return path.as_posix()
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()
