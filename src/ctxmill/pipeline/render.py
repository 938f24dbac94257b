"""Stage 5: context.md in the fixed structure of SPEC.md.

Every list item ends with the tags of what it came from.  Text quoted from the memory cannot forge
a citation: anything in it shaped like a tag is turned into ``(kind:…)`` before it is written, and
verbatim transcript text goes in a fence longer than any run of backticks inside it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from typing import Any

import yaml

from ctxmill.model import TAG_IN_TEXT_RE, Tag
from ctxmill.pipeline.aggregate import HISTORY_GROUPS, SECTIONS, TITLES, UNRESOLVED_GROUPS, Entry

EMPTY = {
    "recent_state": "_No topic note matched this brief._",
    "history": "_No past session matched this brief._",
    "unresolved": "_Nothing open was found that touches this brief._",
    "files": "_No code root, or no file matched this brief._",
    "citations": "_No citations._",
}
EMPTY_COMPACT = "_Nothing found._"


def fence(text: str, info: str = "text") -> str:
    """A backtick fence longer than any run of backticks in ``text`` (at least three)."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    bar = "`" * max(3, longest + 1)
    return f"{bar}{info}\n{text.rstrip()}\n{bar}"


def defuse(text: str) -> str:
    """Quoted text may contain strings shaped like tags; only the system writes real ones."""
    return TAG_IN_TEXT_RE.sub(lambda m: "(" + m[0][1:-1] + ")", text)


def entry_lines(entry: Entry, compact: bool = False) -> list[str]:
    """One list item: where it comes from, the text, its tags; a transcript's code fenced below.

    Compact (small budgets): the label keeps only the date, and no code block is shown."""
    tags = " ".join(str(t) for t in entry.tags)
    label = entry.label
    if compact and label:
        label = label.split(" · ", 1)[0]
    text = defuse(f"{label}: {entry.text}" if label else entry.text)
    lines = [f"- {text} {tags}".rstrip()]
    if entry.block and not compact:
        lines += ["  " + line if line else "" for line in fence(entry.block).splitlines()]
    return lines


def section_lines(key: str, entries: list[Entry], compact: bool = False) -> list[str]:
    """The body of one section, grouped under sub-headings in a reading order.

    Compact (small budgets): an empty section says so in two words, and history is one list in
    date order without sub-headings; every tag stays."""
    if not entries:
        return [EMPTY_COMPACT if compact else EMPTY[key]]
    if compact and key == "history":
        return _dated_lines(sorted(entries, key=lambda e: (e.date or "9999", e.order)))
    groups: dict[str, list[Entry]] = {}
    for e in entries:
        groups.setdefault(e.group, []).append(e)
    if key == "history":
        names = [g for g in HISTORY_GROUPS if g in groups] + [
            g for g in groups if g not in HISTORY_GROUPS
        ]
        for g in names:
            groups[g].sort(key=lambda e: (e.date or "9999", e.order))
    elif key == "unresolved":
        names = [g for g in UNRESOLVED_GROUPS if g in groups] + [
            g for g in groups if g not in UNRESOLVED_GROUPS
        ]
        for g in names:
            groups[g].sort(key=lambda e: -e.score)
    elif key == "recent_state":
        # Notes read best in their own order; the groups come most relevant first.
        names = sorted(groups, key=lambda g: -max(e.score for e in groups[g]))
        for g in names:
            groups[g].sort(key=lambda e: e.order)
    else:
        names = list(groups)
        for g in names:
            groups[g].sort(key=lambda e: -e.score)
    lines: list[str] = []
    for g in names:
        if g:
            if lines:
                lines.append("")
            lines += [f"### {g}", ""]
        for e in groups[g]:
            lines += entry_lines(e, compact)
    return lines


def _dated_lines(entries: list[Entry]) -> list[str]:
    """Compact history: the excerpts of one date share one list item and one date label, each
    excerpt followed by its own tags.  A topic note's item (no label) stands alone."""
    lines: list[str] = []
    run_date: str | None = None
    for e in entries:
        if not e.label:
            lines += entry_lines(e, compact=True)
            run_date = None
            continue
        date = e.label.split(" · ", 1)[0]
        piece = f"{defuse(e.text)} {' '.join(str(t) for t in e.tags)}".rstrip()
        if date == run_date:
            lines[-1] += f" · {piece}"
        else:
            lines.append(f"- {date}: {piece}")
            run_date = date
    return lines


def source_key(tag: Tag) -> tuple[str, str]:
    """What a tag points into: one topic file, one session's transcript or summary, one file."""
    return tag.kind, tag.ref


def citation_lines(tags: list[Tag], describe: Callable[[Tag], str]) -> list[str]:
    """One line per source: every tag that points into it, then what it is (``describe`` names a
    tag's source).  A session's turns share one line, so a tag costs little more than itself."""
    groups: dict[tuple[str, str], list[Tag]] = {}
    for tag in tags:
        groups.setdefault(source_key(tag), []).append(tag)
    return [
        f"- {' '.join(str(t) for t in group)} — {defuse(describe(group[0]))}"
        for group in groups.values()
    ]


def cited_tags(entries: Iterable[Entry]) -> list[Tag]:
    """Every tag used, in a stable order: by layer (topic, session, raw, code), then as printed."""
    order = {"topic": 0, "session": 1, "raw": 2, "code": 3}
    tags = {t for e in entries for t in e.tags}
    return sorted(tags, key=lambda t: (order.get(t.kind, 9), t.ref, t.start or 0))


def render_body(
    brief: str,
    entries: list[Entry],
    describe: Callable[[Tag], str],
    compact: bool = False,
) -> tuple[str, dict[str, str]]:
    """The markdown after the front matter, and each section's text (for per-section counts)."""
    by_section: dict[str, list[Entry]] = {s: [] for s in SECTIONS}
    for e in entries:
        by_section[e.section].append(e)
    parts: dict[str, str] = {}
    for key in SECTIONS:
        lines = section_lines(key, by_section[key], compact)
        parts[key] = "\n".join([f"## {TITLES[key]}", "", *lines])
    tags = cited_tags(entries)
    empty = EMPTY_COMPACT if compact else EMPTY["citations"]
    cites = citation_lines(tags, describe) or [empty]
    parts["citations"] = "\n".join([f"## {TITLES['citations']}", "", *cites])
    title = f"# Context for: {' '.join(defuse(brief).split())}"
    body = "\n\n".join([title, *(parts[k] for k in (*SECTIONS, "citations"))]) + "\n"
    return body, parts


def front_matter(record: dict[str, Any]) -> str:
    """The generation record as YAML; a mapping or list of plain values is written on one line
    (``sources: {topic: 3, …}``), which keeps the record short without hiding anything."""
    dumped = yaml.safe_dump(
        record, sort_keys=False, allow_unicode=True, width=1000, default_flow_style=None
    )
    return f"---\n{dumped}---\n"


def body_hash(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()
