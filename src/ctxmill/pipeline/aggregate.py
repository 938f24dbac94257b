"""Stage 3: re-read the flagged sessions' raw turns, then assemble the sections of context.md.

The aggregator is where a pipeline like this fabricates or drops things, so every rule here is
mechanical and tested:

* A re-read turn is read passage by passage (:func:`reread`): what matters in a long turn is
  rarely in its first lines, and a long session's one discovery must not lose its place to the
  turns that repeat the brief's words.

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
  search over how much of each ranked section to keep, not by cutting the text at the end, and what
  the split leaves unspent goes to the best items still out.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ctxmill.model import Excerpt, Layer, Tag
from ctxmill.pipeline.brief import Brief, content_words, identifiers_in, stems, words
from ctxmill.pipeline.fanout import NO_SUMMARY, FanOut, Finding
from ctxmill.pipeline.text import (
    STEER_RE,
    Passage,
    clip,
    containment,
    is_narration,
    jaccard,
    passages,
    sentences,
    shingles,
)
from ctxmill.store.base import Hit, SessionRecord, Store

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
MIN_TURN_OVERLAP = 0.2  # weighted share of the brief a re-read passage must touch
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
    label: str = ""  # where it comes from ("2026-03-05 · user in “title”"), written before it


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
    turn_scores: dict[Tag, float] | None = None,
    passage_chars: int | None = None,
) -> list[Finding]:
    """The passages of the flagged sessions' turns that matter for the brief.

    The index holds transcripts pre-stripped (no tool definitions, tool output truncated, no
    images or thinking signatures), so this reads only text a person or the agent wrote.  Each
    turn is cut into passages (paragraphs, list items, table rows; the agent's narration of its
    next tool call dropped) and every passage is scored on its own: a long turn, such as a
    compaction summary or a chat export's whole answer, holds many findings, and the one that
    matters is rarely in its first lines.  A passage counts for more when it touches the brief,
    reports a failure, a decision, a discovery ("now I understand …", "the issue was …") or a
    person steering, names identifiers, or sits in a turn the pre-filter's searches ranked high.
    Passages of one turn and of one session lose weight as more are taken from it, so that one
    long session does not crowd out the rest.  The session's last request, when the transcript
    shows no answer to it, is an open thread.
    """
    scores = turn_scores or {}
    limit_chars = passage_chars or PASSAGE_CHARS
    found: list[Finding] = []
    # Sessions in the order of their best-matching turn, next to the order they were flagged in.
    best: dict[str, float] = {}
    for tag, value in scores.items():
        best[tag.ref] = max(value, best.get(tag.ref, 0.0))
    by_turn = {sid: n for n, sid in enumerate(sorted(best, key=lambda s: -best[s]))}
    for rank, sid in enumerate(flagged):
        # The flagged sessions come best first: a passage of a weaker session needs more to win.
        standing = SESSION_RANK_DECAY ** min(rank, by_turn.get(sid, rank))
        record = records.get(sid) or store.get_session(sid)
        title = record.title if record else None
        turns = [
            h
            for h in store.chunks_for_session(sid, Layer.RAW)
            if h.role in ("user", "assistant", "summary")
            and not (h.timestamp and h.timestamp >= until)
        ]
        retrieval = _neighbour_scores(turns, scores)
        candidates: list[tuple[float, int, Finding]] = []
        for i, hit in enumerate(turns):
            if retrieval[i] < MIN_RETRIEVAL and not _may_matter(hit.text, brief):
                continue  # the cheap test first: most turns of a long session are neither
            prose = _prose(hit.text)
            block = _matching_block(hit.text, brief)
            # A search hit says the turn matched, not where in it: a long turn's passages share
            # the credit.
            share = min(1.0, limit_chars / max(1, len(prose)))
            ranked = scores.get(hit.tag, 0.0) >= MIN_RETRIEVAL
            for passage in passages(prose, limit_chars):
                scored = _score_passage(
                    passage, hit.role or "", brief, retrieval[i] * share, ranked
                )
                if scored is None:
                    continue
                score, kind = scored
                score *= standing
                excerpt = Excerpt(
                    id="",
                    tag=hit.tag,
                    layer=Layer.RAW,
                    text=passage.text,
                    score=score,
                    session_id=sid,
                    timestamp=hit.timestamp,
                    found_by=["reread"],
                )
                heading = f"{hit.role} turn {hit.tag.start}"
                finding = Finding(
                    excerpt, kind, heading, title=title, block=block, position=passage.index
                )
                candidates.append((score, i, finding))
        limit = PASSAGES_PER_SESSION * (2 if flagged[sid] == NO_SUMMARY else 1)
        # A compact context has room for one excerpt per turn: its best one.
        per_turn = 1 if limit_chars < PASSAGE_CHARS else None
        picked = _spread(candidates, limit, per_turn)
        open_thread = _unanswered_request(turns, sid, title)
        if open_thread is not None:
            picked.append(open_thread)
        found += picked
    return found


PASSAGE_CHARS = 600
COMPACT_PASSAGE_CHARS = 160  # in a compact context (small budget): a sentence or two per passage
PASSAGES_PER_SESSION = 12
RETRIEVAL_WEIGHT = 0.4  # of a turn's fused search score (best 1.0)
NEIGHBOUR_WEIGHT = 0.5  # of the adjacent turns' search scores: a reply next to a matching question
SESSION_RANK_DECAY = 0.85  # per place of the session in the flagged list
TURN_DECAY = 0.9  # each further passage from the same turn
SESSION_DECAY = 0.95  # each further passage from the same session
ANSWER_WORDS = 5  # a reply with no sentence this long (narration aside) leaves the request open
MIN_RETRIEVAL = 0.3  # a turn's search score from which it is read even without other reason


def _may_matter(text: str, brief: Brief) -> bool:
    """Whether any passage of a turn could pass :func:`_score_passage`'s test: the turn names one
    of the brief's stems (as a substring: a superset of a word match) or reports something."""
    lowered = text.lower()
    if any(s in lowered for s in brief.stems) or any(
        i.lower() in lowered for i in brief.identifiers
    ):
        return True
    return any(
        rx.search(text) for rx in (_STRONG_FAILURE, _STRONG_DECISION, _DISCOVERY, STEER_RE)
    ) or bool(_HEADING_LINE.search(text))


_HEADING_LINE = re.compile(r"^\s{0,3}#{1,6}\s", re.M)  # a heading may say "Root cause"


def _neighbour_scores(turns: list[Hit], scores: dict[Tag, float]) -> list[float]:
    own = [scores.get(h.tag, 0.0) for h in turns]
    out: list[float] = []
    for i, value in enumerate(own):
        near = (own[i - 1] if i else 0.0) + (own[i + 1] if i + 1 < len(own) else 0.0)
        out.append(min(1.0, value + NEIGHBOUR_WEIGHT * near))
    return out


def _score_passage(
    passage: Passage, role: str, brief: Brief, retrieval: float, found: bool
) -> tuple[float, str] | None:
    """(score, kind) of a re-read passage, or None when it does not earn a place.

    ``retrieval`` is the turn's search score with its neighbours' (a long turn's passages share
    it); ``found`` says whether the searches ranked the turn itself high."""
    text = passage.text
    overlap = brief.overlap(f"{passage.heading} {text}")
    failed = bool(_STRONG_FAILURE.search(text))
    decided = bool(_STRONG_DECISION.search(text))
    steer = role == "user" and bool(STEER_RE.match(text))
    discovered = bool(_DISCOVERY.search(text) or _DIAGNOSIS.search(passage.heading))
    resolved = bool(_RESOLUTION.search(passage.heading))
    names = len(identifiers_in(text))
    signal = 0.3 * failed + 0.15 * decided + 0.3 * steer + 0.25 * discovered + 0.2 * resolved
    # What a re-read is for: a turn that touches the brief, or one that reports what went wrong,
    # what was decided or found out about something it names (the session is already about the
    # brief: its dead ends are the brief's too, even in other words).
    if not (
        overlap >= MIN_TURN_OVERLAP
        or (signal and (overlap > 0 or names))
        or found
        or (retrieval >= MIN_RETRIEVAL and (overlap > 0 or len(content_words(text)) >= 6))
    ):
        return None
    score = overlap + signal + 0.05 * min(names, 4) + RETRIEVAL_WEIGHT * retrieval
    kind = "failure" if failed else "decision" if (steer or decided or resolved) else "history"
    return score, kind


def _spread(
    candidates: list[tuple[float, int, Finding]], limit: int, per_turn_cap: int | None = None
) -> list[Finding]:
    """The best ``limit`` passages, each further one from the same turn or session discounted.

    The discounted score is what the budget fit ranks by, so the spread holds there too.
    """
    ordered = sorted(candidates, key=lambda c: -c[0])
    taken: list[Finding] = []
    seen: list[set[tuple[str, ...]]] = []
    per_turn: dict[int, int] = {}
    remaining = ordered
    while remaining and len(taken) < limit:
        best_i, best_value = 0, -1.0
        for j, (score, turn, _) in enumerate(remaining):
            value = score * TURN_DECAY ** per_turn.get(turn, 0)
            if value > best_value:
                best_i, best_value = j, value
            if score <= best_value:
                break  # sorted by score: nothing later can beat it
        _, turn, finding = remaining.pop(best_i)
        # A passage the session repeats ("ran the export again …") takes no second place: its
        # tag joins the first copy's, and the place goes to something new.
        sh = shingles(finding.excerpt.text)
        twin = next((k for k, ksh in zip(taken, seen, strict=True) if _near(sh, ksh)), None)
        if twin is not None:
            _add_tag(twin, finding.excerpt.tag)
            continue
        finding.excerpt.score = best_value * SESSION_DECAY ** len(taken)
        per_turn[turn] = per_turn.get(turn, 0) + 1
        taken.append(finding)
        seen.append(sh)
        if per_turn_cap is not None and per_turn[turn] >= per_turn_cap:
            remaining = [c for c in remaining if c[1] != turn]
    # One turn's passages each carry the turn's code block at most once.
    shown: set[Tag] = set()
    for finding in taken:
        if finding.block is not None:
            if finding.excerpt.tag in shown:
                finding.block = None
            shown.add(finding.excerpt.tag)
    return taken


_NOT_A_REQUEST = re.compile(r"^\s*[<\[]")  # markup a client injected, "[Request interrupted …]"
# What a request or a problem report looks like: a question, an instruction, something broken.
_REQUEST = re.compile(
    r"\?|^\W*(?:please|fix|check|make|add|remove|implement|update|change|use|try|find|look|"
    r"investigate|debug|run|write|create|plan|do|don't|stop|revert)\b|\b(?:can't|cannot|"
    r"can you|could you|doesn't|does not|isn't|is not|won't|not working|broken|fails?|failing|"
    r"error|make sure|need to|should)\b",
    re.I,
)
# A conversation's goodbye is not a request left open.
_CLOSING = re.compile(
    r"\b(?:thanks|thank you|thx|bye|goodbye|see you|see ya|talk (?:to you )?(?:soon|later)|"
    r"take care|cheers|good night|can't wait|looking forward)\b",
    re.I,
)


def _unanswered_request(turns: list[Hit], sid: str, title: str | None) -> Finding | None:
    """The session's last request of the user, when nothing after it answers it.

    A session that ends on a question or an instruction that no tool call and no sentence of
    substance (narration aside) follows left that thread open.  Markup a client injected, a
    goodbye and two-word prompts ("try again", "proceed") are not requests.
    """
    last = next((i for i in range(len(turns) - 1, -1, -1) if turns[i].role == "user"), None)
    if last is None:
        return None
    hit = turns[last]
    text = " ".join(hit.text.split())
    if (
        _NOT_A_REQUEST.match(text)
        or len(content_words(text)) < 3
        or len(text) > 600
        or not _REQUEST.search(text)
        or _CLOSING.search(text)
    ):
        return None
    for later in turns[last + 1 :]:
        if _TOOL_LINE.search(later.text):
            return None  # work was done on it
        said = [s for s in sentences(_prose(later.text)) if not is_narration(s)]
        if any(len(content_words(s)) >= ANSWER_WORDS for s in said):
            return None
    excerpt = Excerpt(
        id="",
        tag=hit.tag,
        layer=Layer.RAW,
        text=clip(text, 400),
        score=0.5,
        session_id=sid,
        timestamp=hit.timestamp,
        found_by=["reread"],
    )
    return Finding(excerpt, "open", f"unanswered last request turn {hit.tag.start}", title=title)


# A heading over a diagnosis ("The Problem", "Root cause", "What Was Wrong", "Key issues found").
_DIAGNOSIS = re.compile(
    r"\b(problems?|issues?|root cause|cause|what (?:was|went) wrong|diagnos\w*|findings?|bugs?|"
    r"gotchas?|lessons?)\b",
    re.I,
)
# A heading over what was done about it ("Solution", "What I Fixed", "Changes made").
_RESOLUTION = re.compile(
    r"\b(solution|fix(?:es|ed)?|resolution|what (?:i|we) (?:fixed|changed|did)|changes made|"
    r"outcome)\b",
    re.I,
)
_DISCOVERY = re.compile(
    r"\b(now I (?:understand|see|get it)|I see (?:the|what|why)|(?:the|a) (?:real |actual |root |"
    r"underlying )?(?:issue|problem|bug|cause|culprit|reason) (?:is|was)|root cause|turns? out|"
    r"(?:issue|problem|cause|bug)s?:|actually|misleading|what (?:was|went) wrong|(?:the )?fix (?:is|was)|"
    r"fixed by|that's why|"
    r"which is why|this is why|has its own|need(?:s|ed)? (?:a |an |the )?`)",
    re.I,
)
_STRONG_FAILURE = re.compile(
    r"\b(revert(?:ed|ing)?|abandon(?:ed)?|gave up|rolled back|rolling back|did(?:n't| not) work|"
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
    """What a person or the agent wrote: no code blocks (a matching one is shown on its own), no
    tool-call lines."""
    return _TOOL_LINE.sub(" ", _CODE_BLOCK.sub("\n\n", text))


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
    # Only findings that share a shingle can be near-duplicates: an index from shingle to the
    # kept findings holding it spares comparing every pair.
    holding: dict[tuple[str, ...], list[int]] = {}
    for f in ordered:
        sh = shingles(f.excerpt.text)
        near = sorted({i for s in sh for i in holding.get(s, ())})
        for i in near:
            k, ksh = kept[i]
            if (k.excerpt.tag == f.excerpt.tag and k.excerpt.text == f.excerpt.text) or _near(
                sh, ksh
            ):
                if k.excerpt.text != f.excerpt.text or k.excerpt.tag != f.excerpt.tag:
                    for tag in f.tags:
                        _add_tag(k, tag)
                    k.excerpt.score = max(k.excerpt.score, f.excerpt.score)
                break
        else:
            for s in sh:
                holding.setdefault(s, []).append(len(kept))
            kept.append((f, sh))
    return [f for f, _ in kept]


MERGED_TAGS = 3  # tags a merged item keeps; a source of another kind always adds its own


def _near(a: set[tuple[str, ...]], b: set[tuple[str, ...]]) -> bool:
    return jaccard(a, b) >= DUPLICATE_JACCARD or containment(a, b) >= DUPLICATE_CONTAINMENT


def _add_tag(kept: Finding, tag: Tag) -> None:
    """Record a duplicate's source on the item that stays.  Every kind of source is kept (a note
    and the transcript that agrees with it); more copies of one kind add nothing after a few."""
    tags = kept.tags
    if tag in tags:
        return
    if len(tags) < MERGED_TAGS or all(t.kind != tag.kind for t in tags):
        kept.also.append(tag)


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
        label = f"{date or 'undated'} · {role} in “{clip(who, 60)}”"
    else:
        label = f"{date or 'undated'} · “{clip(who, 60)}”" if f.title else f"{date or 'undated'}"
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
        text=e.text,
        label=label,
        tags=f.tags,
        score=e.score,
        layer=e.layer,
        sources=[e.text],
        date=date,
        order=(date or "", (e.tag.start or 0) * 1000 + f.position),
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
    size = render_tokens(best)
    for _ in range(14):
        mid = (lo + hi) / 2
        chosen = pick(mid)
        tokens = render_tokens(chosen)
        if tokens <= budget_left:
            lo, best, size = mid, chosen, tokens
        else:
            hi = mid
    return _top_up(best, entries, size, costs, render_tokens, budget_left)


FILL_TRIES = 24


def _top_up(
    chosen: list[Entry],
    entries: list[Entry],
    size: int,
    costs: dict[int, int],
    render_tokens: Callable[[list[Entry]], int],
    budget_left: int,
) -> list[Entry]:
    """Spend what the section split left over: the best entries not chosen that still fit, tried
    one by one on the real rendered size (a few dozen renders at most)."""
    picked = {id(e) for e in chosen}
    rest = sorted((e for e in entries if id(e) not in picked), key=lambda e: -e.score)
    tries = 0
    for e in rest:
        if tries >= FILL_TRIES or budget_left - size < 8:
            break
        if costs[id(e)] > budget_left - size + 8:
            continue  # cannot fit, whatever tags it shares with what is in
        tries += 1
        tokens = render_tokens([*chosen, e])
        if tokens <= budget_left:
            chosen, size = [*chosen, e], tokens
    return chosen


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
