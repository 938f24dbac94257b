"""Topic notes: hand-kept markdown under the topics folder, the memory layer that wins conflicts.

A note is cut into its heading sections, each a chunk tagged ``[topic:PATH#Lx-Ly]`` with the exact
1-based lines of the file it covers (front matter included in the count, never in a chunk), titled
by its heading path (``Auth > Tokens``).  A section longer than about 350 tokens is cut again at
paragraph breaks, a paragraph longer than that before its list items, and an item longer than
that at line breaks, so an excerpt stays small and its tag still points at exactly the lines it
holds.  Headings are ATX (``## Tokens``) or setext
(underlined with ``===`` or ``---``); a ``#`` inside a fenced code block is not a heading.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

from ctxmill.model import Chunk, Layer, Tag
from ctxmill.tokens import count_many, count_tokens

MAX_SECTION_TOKENS = 350
TITLE_SEPARATOR = " > "

_ATX_RE = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_SETEXT_RE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_LIST_ITEM_RE = re.compile(r"^ {0,3}(?:[-*+]|\d+[.)])[ \t]")
# a line that cannot be the text of a setext heading: list items, quotes, tables, indented code
_NOT_SETEXT_TEXT_RE = re.compile(r"^(?: {0,3}(?:[-*+>|]|\d+[.)])(?:\s|$)| {4}|\t)")


@dataclass
class _Section:
    title: str
    first: int  # index into the file's lines: the heading line, or the first line of a preamble
    last: int  # inclusive


def parse_topic(path: Path, root: Path) -> tuple[list[Chunk], list[str]]:
    """The chunks of one topic note and one problem line per thing that went wrong."""
    rel = _relative(path, root)
    problems: list[str] = []
    try:
        data = path.read_bytes()
        mtime = path.stat().st_mtime
    except OSError as exc:
        return [], [f"{rel}: cannot read ({exc.strerror or exc}); skipped"]
    if b"\x00" in data:
        return [], [f"{rel}: binary file (NUL bytes), not a topic note; skipped"]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = data.decode("utf-8", "replace")
        problems.append(f"{rel}: not valid UTF-8 (byte {exc.start}); bad bytes replaced")
    # split on \n only: str.splitlines also breaks at \f, \x1c, \u2028…, which editors do not
    lines = [line.removesuffix("\r") for line in text.removeprefix("\ufeff").split("\n")]

    body_start, front, fm_problem = _front_matter(lines)
    if fm_problem:
        problems.append(f"{rel}: {fm_problem}")
    project = front.get("project")
    fm_title = front.get("title")
    default_title = str(fm_title) if fm_title else path.stem
    timestamp = datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    chunks: list[Chunk] = []
    for section in _sections(lines, body_start, default_title):
        for first, last in _pieces(lines, section):
            chunks.append(
                Chunk(
                    layer=Layer.TOPIC,
                    tag=Tag.topic(rel, first + 1, last + 1),
                    text="\n".join(lines[first : last + 1]),
                    project=str(project) if project is not None else None,
                    timestamp=timestamp,
                    title=section.title,
                    path=str(path),
                )
            )
    return chunks, problems


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _front_matter(lines: list[str]) -> tuple[int, dict[str, object], str | None]:
    """(index of the first body line, the front matter, a problem or None)."""
    if not lines or lines[0].strip() != "---":
        return 0, {}, None
    for i in range(1, len(lines)):
        if lines[i].strip() in ("---", "..."):
            break
    else:
        return 0, {}, None  # never closed: a thematic break, not front matter
    try:
        front = yaml.safe_load("\n".join(lines[1:i]))
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "parse error"
        return i + 1, {}, f"front matter does not parse ({first}); ignored"
    if front is None:
        return i + 1, {}, None
    if not isinstance(front, dict):
        return i + 1, {}, "front matter is not a mapping; ignored"
    return i + 1, {str(k): v for k, v in front.items()}, None


def _sections(lines: list[str], start: int, default_title: str) -> list[_Section]:
    """Heading sections of lines[start:], each with the full heading path as its title; blank
    lines at a section's end are dropped and sections with nothing under the heading skipped."""
    heads: list[tuple[int, int, int, str]] = []  # (first line, body line, level, text)
    fence: str | None = None
    i = start
    while i < len(lines):
        line = lines[i]
        m = _FENCE_RE.match(line)
        if fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
        elif m:
            fence = m.group(1)
        elif atx := _ATX_RE.match(line):
            heads.append((i, i + 1, len(atx.group(1)), atx.group(2).strip()))
        elif (
            i + 1 < len(lines)
            and line.strip()
            and not _NOT_SETEXT_TEXT_RE.match(line)
            and (i == start or not lines[i - 1].strip() or _ATX_RE.match(lines[i - 1]))
            and (under := _SETEXT_RE.match(lines[i + 1]))
        ):
            heads.append((i, i + 2, 1 if under.group(1)[0] == "=" else 2, line.strip()))
            i += 1
        i += 1

    sections: list[_Section] = []
    # without a level-1 heading the note's own title heads every path: `deploy > Steps`
    base = [] if any(level == 1 for _, _, level, _ in heads) else [(0, default_title)]
    stack: list[tuple[int, str]] = list(base)
    bounds = [(start, start, 0, default_title), *heads]
    for n, (first, body, level, text) in enumerate(bounds):
        end = bounds[n + 1][0] if n + 1 < len(bounds) else len(lines)
        if n == 0:
            title = default_title
            while first < end and not lines[first].strip():
                first += 1
            body = first
        else:
            while len(stack) > len(base) and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, text))
            title = TITLE_SEPARATOR.join(t for _, t in stack)
        last = end - 1
        while last >= first and not lines[last].strip():
            last -= 1
        if any(lines[j].strip() for j in range(body, last + 1)):
            sections.append(_Section(title, first, last))
    return sections


def _pieces(lines: list[str], section: _Section) -> list[tuple[int, int]]:
    """(first, last) line indexes of the chunks of one section: the whole section when short,
    else runs of whole paragraphs, and lines of a paragraph too long on its own."""
    blocks = _paragraphs(lines, section.first, section.last)
    sizes = count_many("\n".join(lines[a : b + 1]) for a, b in blocks)
    if sum(sizes) <= MAX_SECTION_TOKENS:
        return [(section.first, section.last)]
    units: list[tuple[int, int, int]] = []  # (first, last, tokens)
    for (a, b), size in zip(blocks, sizes, strict=True):
        if size <= MAX_SECTION_TOKENS:
            units.append((a, b, size))
            continue
        items = _list_items(lines, a, b)
        item_sizes = count_many("\n".join(lines[i : j + 1]) for i, j in items)
        for (i, j), item_size in zip(items, item_sizes, strict=True):
            if item_size <= MAX_SECTION_TOKENS:
                units.append((i, j, item_size))
            else:
                line_sizes = count_many(lines[i : j + 1])
                units.extend((i + k, i + k, n) for k, n in enumerate(line_sizes))
    # pack whole units greedily, counting the joined text itself: a join can cost a token or two
    pieces: list[tuple[int, int]] = []
    i = 0
    while i < len(units):
        j = i
        while j + 1 < len(units) and (
            count_tokens("\n".join(lines[units[i][0] : units[j + 1][1] + 1])) <= MAX_SECTION_TOKENS
        ):
            j += 1
        pieces.append((units[i][0], units[j][1]))
        i = j + 1
    return pieces


def _list_items(lines: list[str], first: int, last: int) -> list[tuple[int, int]]:
    """A paragraph cut before each list item, so an item and its continuation lines stay whole."""
    items: list[tuple[int, int]] = []
    begin = first
    for i in range(first + 1, last + 1):
        if _LIST_ITEM_RE.match(lines[i]):
            items.append((begin, i - 1))
            begin = i
    items.append((begin, last))
    return items


def _paragraphs(lines: list[str], first: int, last: int) -> list[tuple[int, int]]:
    """Runs of non-blank lines in lines[first:last+1]; a fenced block is never cut."""
    blocks: list[tuple[int, int]] = []
    fence: str | None = None
    begin: int | None = None
    for i in range(first, last + 1):
        line = lines[i]
        m = _FENCE_RE.match(line)
        if fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
        elif m:
            fence = m.group(1)
        if line.strip() or fence is not None:
            if begin is None:
                begin = i
            continue
        if begin is not None:
            blocks.append((begin, i - 1))
            begin = None
    if begin is not None:
        blocks.append((begin, last))
    return blocks
