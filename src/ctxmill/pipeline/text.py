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
