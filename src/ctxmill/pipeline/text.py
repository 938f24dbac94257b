"""Text helpers the stages share: markdown split into items with line numbers, the language of
decisions, failures and open questions, and shingle similarity for near-duplicates."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ctxmill.pipeline.brief import content_words

FAILURE_RE = re.compile(
    r"\b(fail(?:ed|s|ure|ing)?|abandon(?:ed)?|revert(?:ed|ing)?|roll(?:ed)? ?back|broke|"
    r"broken|did(?:n't| not) work|does(?:n't| not) work|gave up|dead end|leak(?:ed|s|ing)?|"
    r"regress(?:ed|ion)|crash(?:ed|es)?|error|outage|incident|wrong|bug|backed out|scrapped|"
    r"dropped|rejected|tried)\b",
    re.I,
)
DECISION_RE = re.compile(
    r"\b(decid(?:ed|e|ing)|decision|chose|choose|agreed|settled on|went with|going with|"
    r"we(?:'ll| will) use|keep|kept|because|rejected|instead of|rather than|must|never|always|"
    r"policy|rule)\b",
    re.I,
)
OPEN_RE = re.compile(
    r"\b(todo|to do|open question|not decided|undecided|unresolved|follow[- ]up|later|pending|"
    r"deferred|revisit|unclear|unknown|tbd|not yet|still need|needs? (?:a|to)|blocked|"
    r"waiting on|\?)",
    re.I,
)
# A person steering the agent: the turns in a transcript most worth re-reading.
STEER_RE = re.compile(
    r"^\s*(no\b|don't|do not|stop|wait|instead|actually|never|always|please don't|revert|"
    r"undo|let's not|we can't|we cannot|that's wrong|not like that|use )",
    re.I,
)

_BULLET_RE = re.compile(r"^(\s*)(?:[-*+]|\d+[.)])\s+")
_HEADING_RE = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE_RE = re.compile(r"^\s*(`{3,}|~{3,})")
# Sentence ends, and the list markers a flattened markdown list keeps (" - ", " 2. ").
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z`\"'(\[*])|\s+(?:[-*]|\d+\.)\s+(?=\S)")


@dataclass
class Item:
    """One paragraph or list item of a markdown file, with where it lies."""

    heading: str  # the heading path, " > "-joined
    start: int  # first line, 1-based
    end: int  # last line
    text: str  # whitespace-collapsed


def split_items(markdown: str, first_line: int = 1) -> list[Item]:
    """Split markdown into list items and paragraphs; headings become the items' heading path.

    Fenced code stays inside the item it belongs to; front matter (a leading ``---`` block) is
    skipped.
    """
    lines = markdown.splitlines()
    items: list[Item] = []
    stack: list[tuple[int, str]] = []
    cur: list[str] = []
    cur_start = 0
    fence: str | None = None
    i = 0
    if lines and lines[0].strip() == "---":
        for j in range(1, len(lines)):
            if lines[j].strip() in ("---", "..."):
                i = j + 1
                break

    def flush(end: int) -> None:
        nonlocal cur
        text = " ".join(" ".join(cur).split())
        if text:
            heading = " > ".join(h for _, h in stack)
            items.append(Item(heading, cur_start + first_line, end + first_line, text))
        cur = []

    last_content = i
    for n in range(i, len(lines)):
        line = lines[n]
        if fence is not None:
            cur.append(line)
            last_content = n
            if line.strip().startswith(fence):
                fence = None
            continue
        if m := _FENCE_RE.match(line):
            if not cur:
                cur_start = n
            fence = m[1]
            cur.append(line)
            last_content = n
            continue
        if m := _HEADING_RE.match(line):
            if cur:
                flush(last_content)
            level = len(m[1])
            stack = [(lv, h) for lv, h in stack if lv < level]
            stack.append((level, m[2]))
            continue
        if not line.strip():
            if cur:
                flush(last_content)
            continue
        if _BULLET_RE.match(line) and not (cur and _continues(cur, line)):
            if cur:
                flush(last_content)
            cur_start = n
            cur.append(_BULLET_RE.sub("", line, count=1))
        else:
            if not cur:
                cur_start = n
            cur.append(line)
        last_content = n
    if cur:
        flush(last_content)
    return items


def _continues(cur: list[str], line: str) -> bool:
    """A nested bullet (indented under the item's first line) stays part of the item."""
    del cur
    m = _BULLET_RE.match(line)
    return bool(m and len(m[1]) >= 2)


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_RE.split(" ".join(text.split())) if s.strip()]


def shingles(text: str, n: int = 3) -> set[tuple[str, ...]]:
    w = content_words(text)
    if len(w) < n:
        return {tuple(w)} if w else set()
    return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}


def jaccard(a: set[tuple[str, ...]], b: set[tuple[str, ...]]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def containment(small: set[tuple[str, ...]], big: set[tuple[str, ...]]) -> float:
    """How much of ``small`` is inside ``big``: a short restatement of a longer item is a duplicate."""
    if not small or not big:
        return 0.0
    return len(small & big) / len(small)


def kind_of_heading(heading: str) -> str:
    """What a section holds, from its heading: decision, failure, open, history, goal or state."""
    h = heading.lower()
    if re.search(r"fail|dead end|abandon|did not work|didn't work|tried", h):
        return "failure"
    if re.search(r"open|question|todo|unresolved|follow|risk|next step|pending", h):
        return "open"
    if re.search(r"decision|decided|why", h):
        return "decision"
    if re.search(r"histor|timeline|changelog|what happened|incident|post-?mortem|\bpast\b", h):
        return "history"
    if re.search(r"\bgoal|objective|task\b", h):
        return "goal"
    if re.search(r"\bfiles?\b", h):
        return "files"
    return "state"


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut at a word boundary."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit].rsplit(" ", 1)[0].rstrip(",;:")
    if cut.count("`") % 2:  # never leave an inline code span open
        cut += "`"
    return cut + " …"


# -- passages of a transcript turn ----------------------------------------------------------------

# An agent announcing its next tool call ("Let me check the config:", "Now I'll run the tests."):
# the call's result is what mattered, and it is not in the turn's prose.
_NARRATION_RE = re.compile(
    r"^(?:(?:now|next|first|then|so|ok(?:ay)?|alright|great|perfect|good|excellent)[,!.]?\s+)*"
    r"(?:let me|let's|let us|i'll|i will|i'm going to|i am going to|we'll)\b",
    re.I,
)
_FILLER_RE = re.compile(
    r"^(?:perfect|great|excellent|good|done|ok(?:ay)?|alright|now|got it|understood)\b[\s.!]*$",
    re.I,
)
_WRAPPER_RE = re.compile(r"^</?[a-z][\w-]*>$")  # <analysis>, </summary>: a summary's scaffolding
_TABLE_RULE_RE = re.compile(r"^\|?[\s:|-]+\|?$")


def is_narration(sentence: str) -> bool:
    """A sentence that only says what the agent is about to do, or a bare interjection."""
    s = sentence.strip()
    if _FILLER_RE.match(s):
        return True
    return bool(_NARRATION_RE.match(s)) and (s.endswith(":") or len(s) < 200)


@dataclass
class Passage:
    """One paragraph, list item or table row of a turn's prose, narration removed."""

    heading: str  # the nearest markdown heading above it in the turn ("" if none)
    text: str
    index: int  # position in the turn, from 0


def passages(prose: str, limit: int) -> list[Passage]:
    """Split a turn's prose into passages of at most ``limit`` characters.

    Paragraphs, list items and table rows are the pieces; a heading or a paragraph ends a run of
    list items, and consecutive short items of one list are read together (a list of steps or of
    errors is one account).  A longer paragraph is cut between sentences.  Narration is dropped,
    and a passage left with fewer than three content words is not one.
    """
    blocks: list[tuple[str, bool, list[str]]] = []  # (heading, is a list item, lines)
    heading = ""
    cur: list[str] = []
    item = False

    def flush() -> None:
        nonlocal cur
        if cur:
            blocks.append((heading, item, cur))
        cur = []

    for line in prose.splitlines():
        stripped = line.strip()
        if not stripped or _WRAPPER_RE.match(stripped) or _TABLE_RULE_RE.match(stripped):
            flush()
            continue
        if m := _HEADING_RE.match(stripped):
            flush()
            heading = m[2].strip("*_ ")
            continue
        if _BULLET_RE.match(line) or stripped.startswith("|"):
            flush()
            item = True
            cur = [_BULLET_RE.sub("", stripped, count=1).strip("| ")]
            continue
        if not cur:
            item = False
        cur.append(stripped)
    flush()
    pieces: list[tuple[str, bool, str]] = []
    for head, is_item, lines in blocks:
        kept = [s for s in _clauses(" ".join(lines)) if not is_narration(s)]
        text = " ".join(kept)
        if not text:
            continue
        last = pieces[-1] if pieces else None
        if (
            is_item
            and last is not None
            and last[1]
            and last[0] == head
            and len(text) <= MERGE_ITEM_CHARS
            and len(last[2]) + len(text) <= MERGE_CHARS
        ):
            joint = " " if last[2].endswith(":") else "; "
            pieces[-1] = (head, True, last[2] + joint + text)
        else:
            pieces.append((head, is_item and len(text) <= MERGE_ITEM_CHARS, text))
    out: list[Passage] = []
    for head, _, text in pieces:
        chunk: list[str] = []
        size = 0
        for s in _sentences(text):
            if chunk and size + len(s) > limit:
                _add_passage(out, head, chunk, limit)
                chunk, size = [], 0
            chunk.append(s)
            size += len(s) + 1
        _add_passage(out, head, chunk, limit)
    return out


MERGE_ITEM_CHARS = 200  # list items up to this long are read with their neighbours …
MERGE_CHARS = 400  # … into passages up to this long
# A passage is one block already, so only sentence ends split it: the flattened-list markers
# ``sentences`` also cuts at would break "24 * 60 * 60" apart.
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z`\"'(\[*])")
_CLAUSE_RE = re.compile(r"(?<=:)\s+(?=[A-Z])")


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END_RE.split(" ".join(text.split())) if s.strip()]


def _clauses(text: str) -> list[str]:
    """Sentences, also cut after a colon that a capitalised word follows: an agent's narration
    often runs "Now let me check X: Now let me read Y:" with no full stop."""
    return [c for s in _sentences(text) for c in _CLAUSE_RE.split(s) if c.strip()]


def _add_passage(out: list[Passage], heading: str, chunk: list[str], limit: int) -> None:
    text = clip(" ".join(chunk), limit)
    if len(content_words(text)) >= 3:
        out.append(Passage(heading, text, len(out)))
