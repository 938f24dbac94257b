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


def fence(text: str, info: str = "text") -> str:
    """A backtick fence longer than any run of backticks in ``text`` (at least three)."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    bar = "`" * max(3, longest + 1)
    return f"{bar}{info}\n{text.rstrip()}\n{bar}"


def defuse(text: str) -> str:
    """Quoted text may contain strings shaped like tags; only the system writes real ones."""
    return TAG_IN_TEXT_RE.sub(lambda m: "(" + m[0][1:-1] + ")", text)


def entry_lines(entry: Entry) -> list[str]:
    tags = " ".join(str(t) for t in entry.tags)
    text = defuse(entry.text)
    lines = [f"- {text} {tags}".rstrip()]
    if entry.block:
        lines += ["  " + line if line else "" for line in fence(entry.block).splitlines()]
    return lines


def section_lines(key: str, entries: list[Entry]) -> list[str]:
    """The body of one section, grouped under sub-headings in a reading order."""
    if not entries:
        return [EMPTY[key]]
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
            lines += entry_lines(e)
    return lines


def citation_line(tag: Tag, describe: Callable[[Tag], str]) -> str:
    return f"- {tag} — {defuse(describe(tag))}"


def cited_tags(entries: Iterable[Entry]) -> list[Tag]:
    """Every tag used, in a stable order: by layer (topic, session, raw, code), then as printed."""
    order = {"topic": 0, "session": 1, "raw": 2, "code": 3}
    tags = {t for e in entries for t in e.tags}
    return sorted(tags, key=lambda t: (order.get(t.kind, 9), t.ref, t.start or 0))


def render_body(
    brief: str,
    entries: list[Entry],
    describe: Callable[[Tag], str],
) -> tuple[str, dict[str, str]]:
    """The markdown after the front matter, and each section's text (for per-section counts)."""
    by_section: dict[str, list[Entry]] = {s: [] for s in SECTIONS}
    for e in entries:
        by_section[e.section].append(e)
    parts: dict[str, str] = {}
    for key in SECTIONS:
        parts[key] = "\n".join([f"## {TITLES[key]}", "", *section_lines(key, by_section[key])])
    tags = cited_tags(entries)
    cites = [citation_line(t, describe) for t in tags] or [EMPTY["citations"]]
    parts["citations"] = "\n".join([f"## {TITLES['citations']}", "", *cites])
    title = f"# Context for: {' '.join(defuse(brief).split())}"
    body = "\n\n".join([title, *(parts[k] for k in (*SECTIONS, "citations"))]) + "\n"
    return body, parts


def front_matter(record: dict[str, Any]) -> str:
    dumped = yaml.safe_dump(record, sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{dumped}---\n"


def body_hash(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()
