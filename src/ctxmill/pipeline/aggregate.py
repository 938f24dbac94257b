"""Stage 3: re-read the flagged sessions' raw turns, then assemble the sections of context.md.

The aggregator is where a pipeline like this fabricates or drops things, so every rule here is
mechanical and tested:

* Tags come from the findings, never from text: an entry carries exactly the tags of the excerpts
  it was made from (near-duplicates merged into it add theirs).
* Precedence (SPEC): a compressed summary or a raw turn that states a different value than a topic
  for the same subject does not stand in the context as a fact.  The topic's statement stays in
  Recent state and the disagreement is listed under Unresolved threads with both tags.  Where the
  session's raw turns were re-read and speak to the same subject, the transcript decides over the
  summary.
* Dead ends (tried, failed, reverted, abandoned) are history, never Recent state.
* "Files likely to touch" lists paths that exist in the code root now; a path that history names
  and that no longer exists is listed as such.
* The budget is split across sections, and unused share flows to the others; what fits is found by
  search over how much of each ranked section to keep, not by cutting the text at the end.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ctxmill.model import Excerpt, Layer, Tag
from ctxmill.pipeline.brief import Brief, identifiers_in, stems, words
from ctxmill.pipeline.fanout import NO_SUMMARY, FanOut, Finding
from ctxmill.pipeline.text import (
    FAILURE_RE,
    STEER_RE,
    clip,
    containment,
    jaccard,
    sentences,
    shingles,
)
from ctxmill.store.base import SessionRecord, Store

SECTIONS = ("recent_state", "history", "unresolved", "files")
TITLES = {
    "recent_state": "Recent state",
    "history": "Relevant history",
    "unresolved": "Unresolved threads",
    "files": "Files likely to touch",
    "citations": "Citations",
}
# Shares of the body budget; what a section does not need flows to the others.
SHARES = {
    "recent_state": 0.30,
    "history": 0.35,
    "unresolved": 0.15,
    "files": 0.15,
    "citations": 0.05,
}
HISTORY_GROUPS = ("Failed attempts", "Decisions", "What happened")
UNRESOLVED_GROUPS = ("Conflicts between layers", "Open threads")
TURNS_PER_SESSION = 4
MIN_TURN_OVERLAP = 0.2  # weighted share of the brief a re-read turn must touch
TURN_CHARS = 700
DUPLICATE_JACCARD = 0.5
DUPLICATE_CONTAINMENT = 0.8


@dataclass
class Entry:
    """One list item of context.md: text without tags, plus the tags the system attached."""

    section: str
    group: str
    text: str
    tags: list[Tag]
    score: float
    layer: Layer
    sources: list[str] = field(default_factory=list)  # the excerpt texts it rests on
    date: str | None = None
    order: tuple[str, int] = ("", 0)  # display order within its group
    id: str = ""  # E1, E2 … : what a model may cite
    block: str | None = None  # verbatim transcript text, fenced under the item


@dataclass
class Assembly:
    entries: list[Entry]
    raw: list[Finding]  # the turns re-read from flagged sessions
    conflicts: int = 0
    notes: list[str] = field(default_factory=list)


# -- raw re-read ----------------------------------------------------------------------------------


def reread(
    store: Store,
    flagged: dict[str, str],
    brief: Brief,
    until: str,
    records: dict[str, SessionRecord],
) -> list[Finding]:
    """The turns of the flagged sessions that matter for the brief.

    The index holds transcripts pre-stripped (no tool definitions, tool output truncated, no
    images or thinking signatures), so this reads only text a person or the agent wrote.
    """
    found: list[Finding] = []
    for sid in flagged:
        record = records.get(sid) or store.get_session(sid)
        title = record.title if record else None
        scored: list[tuple[float, Finding]] = []
        for hit in store.chunks_for_session(sid, Layer.RAW):
            if hit.role not in ("user", "assistant", "summary"):
                continue
            if hit.timestamp and hit.timestamp >= until:
                continue
            prose = _prose(hit.text)
            if not prose.strip():
                continue
            overlap = brief.overlap(prose)
            failed = bool(FAILURE_RE.search(prose))
            decided = bool(_STRONG_DECISION.search(prose))
            steer = hit.role == "user" and bool(STEER_RE.match(prose))
            strong = steer or decided or bool(_STRONG_FAILURE.search(prose))
            # A turn that reverts, decides or steers is what a re-read is for: any touch of the
            # brief keeps it; other turns must touch more of it.
            if overlap <= 0 or (overlap < MIN_TURN_OVERLAP and not strong):
                continue
            score = overlap + 0.3 * failed + 0.15 * decided + 0.3 * steer
            text = _key_sentences(prose, brief, limit=TURN_CHARS)
            if not text:
                continue
            kind = (
                "failure"
                if failed and _STRONG_FAILURE.search(prose)
                else "decision"
                if (steer or decided)
                else "history"
            )
            excerpt = Excerpt(
                id="",
                tag=hit.tag,
                layer=Layer.RAW,
                text=text,
                score=score,
                session_id=sid,
                timestamp=hit.timestamp,
                found_by=["reread"],
            )
            heading = f"{hit.role} turn {hit.tag.start}"
            block = _matching_block(hit.text, brief)
            scored.append((score, Finding(excerpt, kind, heading, title=title, block=block)))
        scored.sort(key=lambda s: -s[0])
        # Without a summary the transcript is the only account of the session: read more of it.
        limit = TURNS_PER_SESSION * (2 if flagged[sid] == NO_SUMMARY else 1)
        found += [f for _, f in scored[:limit]]
    return found


_STRONG_FAILURE = re.compile(
    r"\b(revert(?:ed|ing)?|abandon(?:ed)?|gave up|roll(?:ed)? ?back|did(?:n't| not) work|"
    r"leak(?:ed|s|ing)?|broke|scrapped|backed out|failed (?:to|under|with|because|when|in)|"
    r"exhausted)\b",
    re.I,
)
_CODE_BLOCK = re.compile(r"^[ \t]*(`{3,}|~{3,})[^\n]*\n(.*?)^[ \t]*\1[ \t]*$", re.S | re.M)
BLOCK_LINES = 15


_TOOL_LINE = re.compile(r"^\s*→ .*$", re.M)  # one line per tool call in an assistant turn
_STRONG_DECISION = re.compile(
    r"\b(decid(?:ed|e)|decision|chose|choose|agreed|settled on|went with|going with|"
    r"we(?:'ll| will) use|instead of|rather than|rejected|from now on)\b",
    re.I,
)


def _prose(text: str) -> str:
    """What a person or the agent wrote: no code blocks, no tool-call lines."""
    return _TOOL_LINE.sub(" ", _CODE_BLOCK.sub(" [code] ", text))


def _matching_block(text: str, brief: Brief) -> str | None:
    """The first fenced block of a turn that touches the brief, cut to BLOCK_LINES lines."""
    for m in _CODE_BLOCK.finditer(text):
        code = m[2].strip("\n")
        named = any(i.lower() in code.lower() for i in brief.identifiers)
        # Code is long: only a block that names what the brief names, or is mostly about it.
        if code and (named or brief.overlap(code) >= 0.5):
            lines = code.splitlines()
            cut = lines[:BLOCK_LINES] + (["…"] if len(lines) > BLOCK_LINES else [])
            return "\n".join(cut)
    return None


def _key_sentences(text: str, brief: Brief, limit: int) -> str:
    """The sentences of a turn that touch the brief or say what failed or was decided."""
    picked: list[str] = []
    size = 0
    for s in sentences(text):
        if (
            brief.overlap(s) > 0
            or FAILURE_RE.search(s)
            or _STRONG_DECISION.search(s)
            or STEER_RE.match(s)
        ):
            if size + len(s) > limit:
                if not picked:
                    picked.append(clip(s, limit))
                break
            picked.append(s)
            size += len(s) + 1
    return " ".join(picked)


# -- assembly -------------------------------------------------------------------------------------


def assemble(
    fan: FanOut,
    raw: list[Finding],
    brief: Brief,
    *,
    code_paths: set[str] | None,
) -> Assembly:
    findings = [*fan.topics.findings, *fan.compressed.findings, *raw]
    findings = merge_duplicates(findings)
    entries: list[Entry] = []
    conflicts, losers, standing = find_conflicts(findings, fan.topics.reference)
    for f in findings:
        if id(f) in losers:
            continue
        entries.append(_entry(f))
    shown = {f.excerpt.tag for f in findings}
    # A note that wins a conflict stands in Recent state even when the brief did not match it.
    entries += [_entry(t) for t in standing if t.excerpt.tag not in shown]
    entries += conflicts
    entries += [_code_entry(f) for f in fan.code.findings]
    if code_paths is not None:
        entries += _vanished_paths(
            [f for f in findings if brief.overlap(f.excerpt.text) >= MIN_TURN_OVERLAP], code_paths
        )
    return Assembly(entries=entries, raw=raw, conflicts=len(conflicts))


def merge_duplicates(findings: list[Finding]) -> list[Finding]:
    """Merge near-duplicates (shingle Jaccard or containment): the more authoritative layer's text
    and tag stay, and the other's tags are added, so no source is lost from the record."""
    ordered = sorted(findings, key=lambda f: (f.excerpt.layer.authority, -f.excerpt.score))
    kept: list[tuple[Finding, set[tuple[str, ...]]]] = []
    for f in ordered:
        sh = shingles(f.excerpt.text)
        for k, ksh in kept:
            if k.excerpt.tag == f.excerpt.tag and k.excerpt.text == f.excerpt.text:
                break
            if (
                jaccard(sh, ksh) >= DUPLICATE_JACCARD
                or containment(sh, ksh) >= DUPLICATE_CONTAINMENT
            ):
                for tag in f.tags:
                    if tag not in k.tags:
                        k.also.append(tag)
                k.excerpt.score = max(k.excerpt.score, f.excerpt.score)
                break
        else:
            kept.append((f, sh))
    return [f for f, _ in kept]


# Quantities that can disagree: a number with a unit ("12h", "24 hours", "5 retries", "30%").
_QTY_RE = re.compile(
    r"(?<![\w.:/-])(\d+(?:\.\d+)?)\s?(%|ms|s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?|d|days?|"
    r"w|weeks?|months?|years?|kb|mb|gb|tb|[a-z][a-z-]{2,})\b(?![.:/-]\d)",
    re.I,
)
_SECONDS = {
    "ms": 0.001, "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1, "m": 60, "min": 60,
    "mins": 60, "minute": 60, "minutes": 60, "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600,
    "hours": 3600, "d": 86400, "day": 86400, "days": 86400, "w": 604800, "week": 604800,
    "weeks": 604800, "month": 2592000, "months": 2592000, "year": 31536000, "years": 31536000,
}  # fmt: skip
_NOT_KEYS = set(_SECONDS) | {
    "is",
    "was",
    "now",
    "set",
    "to",
    "from",
    "until",
    "per",
    "each",
    "about",
}


@dataclass
class _Fact:
    value: tuple[str, float]  # (unit class, normalized value)
    keys: set[str]  # content stems around the value
    subject: set[str]  # content stems just before it: what the value is a value of
    text: str  # the sentence it was found in
    past: bool = False  # stated as a former value ("was 24h", "from 24h to 12h")


_INLINE_CODE = re.compile(r"`[^`]*`")


def facts(text: str) -> list[_Fact]:
    """Quantities with the words around them.

    Dates, years and versions are not quantities, and neither is anything inside inline code: a
    quoted log line or expression (``QueuePool limit of size 10 overflow 5``) states no value of
    its own.
    """
    out: list[_Fact] = []
    for original in sentences(text):
        sentence = _INLINE_CODE.sub(" ", original)
        for m in _QTY_RE.finditer(sentence):
            number, unit = float(m[1]), m[2].lower()
            if re.fullmatch(r"(19|20)\d\d", m[1]):
                continue
            if unit in _SECONDS:
                value = ("duration", number * _SECONDS[unit])
            elif unit == "%":
                value = ("percent", number)
            else:
                value = (next(iter(stems(unit)), unit), number)
            before = [w for w in words(sentence[: m.start()]) if not w.isdigit()]
            after = [w for w in words(sentence[m.end() :]) if not w.isdigit()]
            keys = _keys(before[-4:] + after[:3])
            subject = _keys(before[-3:])
            past = bool(_PAST_RE.search(" ".join(words(sentence[: m.start()])[-4:])))
            out.append(_Fact(value, keys, subject, original, past))
    return out


def _keys(ws: list[str]) -> set[str]:
    return {s for s in stems(" ".join(ws)) if s not in _NOT_KEYS and not s.isdigit() and len(s) > 2}


def find_conflicts(
    findings: list[Finding], all_topics: list[Finding] | None = None
) -> tuple[list[Entry], set[int], list[Finding]]:
    """Entries for Unresolved threads, the ids of findings that lose their place as facts, and
    the topic items that won (they must stand in Recent state).

    Summaries and transcripts are checked against every topic item, not only the ones the brief
    matched: a stale summary contradicts whatever note it contradicts."""
    topics = [f for f in findings if f.excerpt.layer is Layer.TOPIC]
    known = {f.excerpt.tag for f in topics}
    topics += [t for t in all_topics or [] if t.excerpt.tag not in known]
    standing: dict[Tag, Finding] = {}
    others = [f for f in findings if f.excerpt.layer in (Layer.COMPRESSED, Layer.RAW)]
    raw_by_session: dict[str, list[Finding]] = {}
    for f in others:
        if f.excerpt.layer is Layer.RAW and f.excerpt.session_id:
            raw_by_session.setdefault(f.excerpt.session_id, []).append(f)
    entries: list[Entry] = []
    losers: set[int] = set()
    # Only statements of what holds now can be contradicted: a note's history and a dead end
    # (tried X, it failed) name past values on purpose.
    topic_facts = [(t, facts(t.excerpt.text)) for t in topics if t.kind not in _PAST_KINDS]
    for f in others:
        if f.kind in _PAST_KINDS or _is_failure(f.excerpt.text):
            continue
        mine = facts(f.excerpt.text)
        if not mine:
            continue
        clash = _clash(mine, topic_facts, f.excerpt.text)
        if clash is not None:
            topic, t_fact, o_fact = clash
            standing.setdefault(topic.excerpt.tag, topic)
            rereads = raw_by_session.get(f.excerpt.session_id or "", [])
            verdict = (
                _raw_verdict(rereads, o_fact, t_fact)
                if f.excerpt.layer is Layer.COMPRESSED
                else None
            )
            losers.add(id(f))
            if verdict is not None and _same(verdict[1].value, t_fact.value):
                # The transcript agrees with the notes: the summary is wrong.  Nothing is open
                # about the fact, but the summary should be re-made, so it is listed.
                raw_f, r_fact = verdict
                entries.append(
                    Entry(
                        section="unresolved",
                        group=UNRESOLVED_GROUPS[0],
                        text=(
                            f'The session summary{_when(f)} says "{clip(o_fact.text, 240)}", but '
                            f'the transcript says "{clip(r_fact.text, 240)}", as the notes do '
                            f'("{clip(t_fact.text, 160)}"): the summary is wrong; re-compress '
                            "that session."
                        ),
                        tags=_unique_tags([*topic.tags, raw_f.excerpt.tag, f.excerpt.tag]),
                        score=10.0 + f.excerpt.score,
                        layer=Layer.TOPIC,
                        sources=[topic.excerpt.text, raw_f.excerpt.text, f.excerpt.text],
                        date=f.excerpt.timestamp,
                    )
                )
                continue
            if verdict is not None:
                raw_f, r_fact = verdict
                agrees = (
                    " (as the summary does)"
                    if _same(r_fact.value, o_fact.value)
                    else (f' (the summary said "{clip(o_fact.text, 160)}")')
                )
                text = (
                    f'The notes say "{clip(t_fact.text, 240)}", but the session transcript'
                    f'{_when(raw_f)} says "{clip(r_fact.text, 240)}"{agrees}. The notes stand '
                    "as current truth; the transcript decides over the summary; check which is "
                    "out of date."
                )
                tags = [*topic.tags, raw_f.excerpt.tag, f.excerpt.tag]
            else:
                source = (
                    "a session summary"
                    if f.excerpt.layer is Layer.COMPRESSED
                    else "a session transcript"
                )
                text = (
                    f'The notes say "{clip(t_fact.text, 240)}", but {source}'
                    f'{_when(f)} says "{clip(o_fact.text, 240)}". The notes stand; check '
                    "before relying on either."
                )
                tags = [*topic.tags, *f.tags]
            entries.append(
                Entry(
                    section="unresolved",
                    group=UNRESOLVED_GROUPS[0],
                    text=text,
                    tags=_unique_tags(tags),
                    score=10.0 + f.excerpt.score,
                    layer=Layer.TOPIC,
                    sources=[topic.excerpt.text, f.excerpt.text],
                    date=f.excerpt.timestamp,
                )
            )
            continue
        if f.excerpt.layer is Layer.COMPRESSED:
            # Raw decides over the summary of the same session.
            for raw_f in raw_by_session.get(f.excerpt.session_id or "", []):
                hit = _clash(mine, [(raw_f, facts(raw_f.excerpt.text))], f.excerpt.text)
                if hit is None:
                    continue
                _, r_fact, o_fact = hit
                losers.add(id(f))
                entries.append(
                    Entry(
                        section="unresolved",
                        group=UNRESOLVED_GROUPS[0],
                        text=(
                            f'The session summary says "{clip(o_fact.text, 240)}", but the '
                            f'transcript says "{clip(r_fact.text, 240)}"; the transcript '
                            "decides over the summary."
                        ),
                        tags=_unique_tags([raw_f.excerpt.tag, *f.tags]),
                        score=9.0 + f.excerpt.score,
                        layer=Layer.RAW,
                        sources=[raw_f.excerpt.text, f.excerpt.text],
                        date=f.excerpt.timestamp,
                    )
                )
                break
    return entries, losers, list(standing.values())


_PAST_KINDS = ("failure", "history")
_PAST_RE = re.compile(r"\b(was|were|used to|previously|formerly|originally|had been|from)\b", re.I)


def _clash(
    mine: list[_Fact], against: list[tuple[Finding, list[_Fact]]], my_text: str
) -> tuple[Finding, _Fact, _Fact] | None:
    """The first fact in ``against`` about the same subject with a different value."""
    for finding, theirs in against:
        for o in mine:
            for t in theirs:
                if o.value[0] != t.value[0] or _same(o.value, t.value):
                    continue
                if len(o.keys & t.keys) < 2:
                    continue
                # The same thing measured: a counted noun ("3 retries" / "5 retries") names it;
                # a duration or a share needs the words just before it to agree ("TTL is 12h").
                if o.value[0] in ("duration", "percent") and not o.subject & t.subject:
                    continue
                # A text that names both values ("it was 24h until April; now 12h") tells the
                # history of the change; so does one that puts its value in the past.  A note
                # naming the other's value as its old one does not excuse a present-tense claim
                # of it: that claim is the stale one.
                if _mentions(my_text, t.value) or o.past or t.past:
                    continue
                return finding, t, o
    return None


def _raw_verdict(
    rereads: list[Finding], o_fact: _Fact, t_fact: _Fact
) -> tuple[Finding, _Fact] | None:
    for raw_f in rereads:
        for r in facts(raw_f.excerpt.text):
            if r.value[0] == t_fact.value[0] and len(r.keys & (t_fact.keys | o_fact.keys)) >= 2:
                return raw_f, r
    return None


def _same(a: tuple[str, float], b: tuple[str, float]) -> bool:
    return a[0] == b[0] and abs(a[1] - b[1]) < 1e-9


def _mentions(text: str, value: tuple[str, float]) -> bool:
    return any(_same(f.value, value) for f in facts(text))


def _when(f: Finding) -> str:
    date = (f.excerpt.timestamp or "")[:10]
    return f" ({date})" if date else ""


def _entry(f: Finding) -> Entry:
    e = f.excerpt
    date = (e.timestamp or "")[:10] or None
    if e.layer is Layer.TOPIC:
        kind = f.kind
        if kind == "history" or (kind == "failure"):
            group = HISTORY_GROUPS[0] if _is_failure(e.text) else HISTORY_GROUPS[2]
            section = "history"
        elif kind == "open":
            section, group = "unresolved", UNRESOLVED_GROUPS[1]
        else:
            section = "recent_state"
            levels = f.heading.split(" > ") if f.heading else []
            # The file's title (first level) is the file itself; the rest says where in it.
            group = " › ".join([e.tag.ref, *(levels[1:] if len(levels) > 1 else levels)])
        return Entry(
            section=section,
            group=group,
            text=e.text,
            tags=f.tags,
            score=e.score + 0.5,  # curated truth outranks recall at equal relevance
            layer=e.layer,
            sources=[e.text],
            date=_leading_date(e.text) or date,
            order=(e.tag.ref, e.tag.start or 0),
        )
    who = f.title or (e.session_id or "")[:8]
    if e.layer is Layer.RAW:
        role = f.heading.split(" turn ")[0] if f.heading else "turn"
        prefix = f"{date or 'undated'} · {role} in “{clip(who, 60)}”: "
    else:
        prefix = (
            f"{date or 'undated'} · “{clip(who, 60)}”: " if f.title else f"{date or 'undated'}: "
        )
    if f.kind == "open":
        section, group = "unresolved", UNRESOLVED_GROUPS[1]
    else:
        section = "history"
        if f.kind == "failure" or (e.layer is Layer.RAW and _is_failure(e.text)):
            group = HISTORY_GROUPS[0]
        elif f.kind == "decision":
            group = HISTORY_GROUPS[1]
        else:
            group = HISTORY_GROUPS[2]
    return Entry(
        section=section,
        group=group,
        text=prefix + e.text,
        tags=f.tags,
        score=e.score,
        layer=e.layer,
        sources=[e.text],
        date=date,
        order=(date or "", e.tag.start or 0),
        block=f.block,
    )


def _is_failure(text: str) -> bool:
    return bool(_STRONG_FAILURE.search(text))


_DATE_RE = re.compile(r"\b(20\d\d-\d\d-\d\d)\b")


def _leading_date(text: str) -> str | None:
    m = _DATE_RE.match(text)
    return m[1] if m else None


def _code_entry(f: Finding) -> Entry:
    return Entry(
        section="files",
        group="",
        text=f.excerpt.text,
        tags=f.tags,
        score=f.excerpt.score,
        layer=Layer.CODE,
        sources=[f.excerpt.text],
    )


def _vanished_paths(findings: list[Finding], code_paths: set[str]) -> list[Entry]:
    """Paths that notes or history name and that the code root no longer has."""
    seen: dict[str, Entry] = {}
    for f in findings:
        for mention in identifiers_in(f.excerpt.text):
            path = mention.strip("`/").split(":")[0]
            if "/" not in path or not re.search(r"\.\w{1,5}$", path) or path in seen:
                continue
            if any(
                p == path or p.endswith("/" + path) or path.endswith("/" + p) for p in code_paths
            ):
                continue
            where = (
                f"named in {f.title or 'the notes'}"
                if f.excerpt.layer is Layer.TOPIC
                else (f"named in “{clip(f.title or f.excerpt.session_id or '', 60)}”{_when(f)}")
            )
            seen[path] = Entry(
                section="files",
                group="",
                text=f"`{path}` (no longer exists) — {where}",
                tags=[f.excerpt.tag],
                score=0.5 + 0.1 * (f.excerpt.layer is Layer.TOPIC),
                layer=f.excerpt.layer,
                sources=[f.excerpt.text],
            )
    return list(seen.values())[:10]


def _unique_tags(tags: list[Tag]) -> list[Tag]:
    return list(dict.fromkeys(tags))


# -- fitting the budget ---------------------------------------------------------------------------


def select(
    entries: list[Entry],
    available: int,
    cost: Callable[[Entry], int],
    citation_cost: Callable[[Tag], int],
    render_tokens: Callable[[list[Entry]], int],
    budget_left: int,
) -> list[Entry]:
    """Choose entries so that the rendered document fits, splitting ``available`` tokens across
    the sections by SHARES (a section's unused share flows to the others).

    The allocation is scaled by a factor found by bisection on the real rendered size (the
    citations' size depends on what is kept, so it cannot be known up front).
    """
    by_section: dict[str, list[Entry]] = {s: [] for s in SECTIONS}
    for e in entries:
        by_section[e.section].append(e)
    for items in by_section.values():
        items.sort(key=lambda e: -e.score)
    costs = {id(e): cost(e) + sum(citation_cost(t) for t in e.tags) for e in entries}
    need = {s: sum(costs[id(e)] for e in items) for s, items in by_section.items()}

    def pick(scale: float) -> list[Entry]:
        alloc = _water_fill(need, available * scale)
        chosen: list[Entry] = []
        for section, items in by_section.items():
            room = alloc[section]
            for e in items:
                c = costs[id(e)]
                if c <= room:
                    chosen.append(e)
                    room -= c
        return chosen

    lo, hi = 0.0, 4.0
    best = pick(0.0)
    if render_tokens(pick(hi)) <= budget_left:
        return pick(hi)
    for _ in range(14):
        mid = (lo + hi) / 2
        chosen = pick(mid)
        if render_tokens(chosen) <= budget_left:
            lo, best = mid, chosen
        else:
            hi = mid
    return best


def _water_fill(need: dict[str, int], total: float) -> dict[str, float]:
    """Split ``total`` by SHARES, handing what a section does not need to the others.

    Each entry's cost includes the citation lines of its tags, so the citations' own share is
    spent through the sections that cite.
    """
    alloc = {s: 0.0 for s in SECTIONS}
    remaining = total
    open_ = {s for s in SECTIONS if need[s] > 0}
    while open_ and remaining > 1e-6:
        weight = sum(SHARES[s] for s in open_)
        spent = 0.0
        for s in sorted(open_):
            give = remaining * SHARES[s] / weight
            want = need[s] - alloc[s]
            if give >= want:
                alloc[s] += want
                spent += want
                open_.discard(s)
            else:
                alloc[s] += give
                spent += give
        remaining -= spent
        if spent <= 1e-9:
            break
    return alloc
