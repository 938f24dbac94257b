"""Check that a file handed to an agent is complete, so that a missing item is obvious before a
fresh session trips over it.

Three kinds, told apart by their shape (or named with ``kind``):

* ``prompt`` — an implementation prompt (``ctxmill distill``): the eight parts present and not
  empty, a phase table whose every row has deliverables and exit criteria, file paths that exist
  in the code root or are marked ``(new)``, and no ``TODO:`` left (unless allowed, when each one is
  still listed).
* ``context`` — a context.md (``ctxmill build``): the generation record in the front matter, the
  title and the five sections in order, every tag resolving (topic and code tags against the
  files, summary tags against ``sessions/compressed/``, anything else through the index), every tag
  listed under Citations, and the token count within the recorded budget.
* ``summary`` — a compressed summary (``ctxmill compress``), checked by the same validator the
  compression pass runs before it writes one (:func:`ctxmill.summary_format.validate_summary`).

Every problem is one line with the line number it concerns.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ctxmill.config import Config
from ctxmill.distill import PARTS, find_paths, todo_items
from ctxmill.model import TAG_IN_TEXT_RE, Tag
from ctxmill.store.base import Store
from ctxmill.tokens import count_tokens

KINDS = ("prompt", "context", "summary")

# How a hand-written prompt may title its parts: the generated titles, or their first words.
_PART_PATTERNS = {
    "Goal": r"goals?\b|objective",
    "Context": r"context\b|background",
    "Decisions and rejected alternatives": r"decisions?\b",
    "Files and interfaces": r"files?\b|interfaces?\b",
    "Phases": r"phases?\b|plan\b",
    "Risks and rollback": r"risks?\b|rollback",
    "Test commands": r"tests?\b|test commands|verification",
    "Definition of done": r"definition of done|done\b",
}
CONTEXT_SECTIONS = (
    "Recent state",
    "Relevant history",
    "Unresolved threads",
    "Files likely to touch",
    "Citations",
)
# The generation record context.md carries (SPEC: brief, budget, tokens used, index version,
# sources per layer, backend, created_at, content hash), under the names the pipeline writes.
CONTEXT_RECORD = ("brief", "budget", "tokens", "index", "sources", "backend", "created_at")
_HASH_KEYS = ("body_sha256", "content_hash", "sha256")
_FENCE_RE = re.compile(r"^\s*(`{3,}|~{3,})")
_EMPTY_CELL = {"", "-", "—", "–", "n/a", "na", "tbd", "?"}


@dataclass
class Problem:
    line: int
    message: str
    level: str = "error"  # error | todo (allowed) | warning (reported, not failing)

    def as_json(self) -> dict[str, Any]:
        return {"line": self.line, "level": self.level, "message": self.message}


@dataclass
class LintResult:
    path: str
    kind: str
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    @property
    def todos(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "todo"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def lines(self) -> list[str]:
        """``FILE:LINE: problem``, errors first, then allowed TODOs and warnings."""
        order = {"error": 0, "todo": 1, "warning": 2}
        out = []
        for p in sorted(self.problems, key=lambda p: (order[p.level], p.line)):
            label = {"error": "", "todo": "allowed ", "warning": "warning: "}[p.level]
            out.append(f"{self.path}:{p.line}: {label}{p.message}")
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.path,
            "kind": self.kind,
            "ok": self.ok,
            "problems": [p.as_json() for p in sorted(self.errors, key=lambda p: p.line)],
            "todos": [p.as_json() for p in self.todos],
            "warnings": [p.as_json() for p in self.warnings],
        }


class LintError(Exception):
    """The file cannot be linted at all (unreadable, or of no kind lint knows)."""


# -- the file's layout -----------------------------------------------------------------------


@dataclass
class _Doc:
    lines: list[str]
    code: list[bool]  # line i (0-based) is inside a fenced block
    front: dict[str, Any] | None
    front_end: int  # 0-based index of the line after the front matter (0 when none)
    front_problem: str | None

    def headings(self, level: int) -> list[tuple[int, str]]:
        """(1-based line, title) of the headings of exactly ``level`` outside code."""
        marks = "#" * level
        out = []
        for i, line in enumerate(self.lines):
            if i < self.front_end or self.code[i]:
                continue
            m = re.match(rf"^{marks}\s+(.+?)\s*#*\s*$", line)
            if m and not line.startswith(marks + "#"):
                out.append((i + 1, m.group(1).strip()))
        return out

    def section(self, start: int) -> tuple[int, int]:
        """The 0-based line range of the ``##`` section whose heading is at 1-based ``start``."""
        end = len(self.lines)
        for i in range(start, len(self.lines)):
            if not self.code[i] and re.match(r"^##\s", self.lines[i]):
                end = i
                break
        return start, end


def _parse(text: str) -> _Doc:
    lines = text.splitlines()
    code = [False] * len(lines)
    bar: str | None = None
    front: dict[str, Any] | None = None
    front_end = 0
    front_problem: str | None = None
    start = 0
    if lines and lines[0].strip() == "---":
        end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
        if end is None:
            front_problem = "the YAML front matter is not closed by a '---' line"
        else:
            front_end = start = end + 1
            try:
                loaded = yaml.safe_load("\n".join(lines[1:end]))
            except yaml.YAMLError as exc:
                front_problem = f"the YAML front matter does not parse: {str(exc).splitlines()[0]}"
            else:
                if isinstance(loaded, dict):
                    front = loaded
                else:
                    front_problem = "the YAML front matter is not a mapping"
    for i in range(start, len(lines)):
        m = _FENCE_RE.match(lines[i])
        if bar is None and m:
            bar = m.group(1)
            code[i] = True
        elif bar is not None:
            code[i] = True
            if lines[i].strip().startswith(bar) and not lines[i].strip().strip(bar[0]):
                bar = None
    return _Doc(lines, code, front, front_end, front_problem)


def detect_kind(text: str) -> str | None:
    """``prompt``, ``context`` or ``summary`` from the file's shape, or None."""
    doc = _parse(text)
    h2 = {t.lower() for _, t in doc.headings(2)}
    h1 = [t for _, t in doc.headings(1)]
    front = doc.front or {}
    if any(t.lower().startswith("context for") for t in h1) or (
        "brief" in front and "budget" in front
    ):
        return "context"
    if "session_id" in front or "what happened" in h2:
        return "summary"
    if {"goal", "phases", "definition of done"} & h2 or any(t.startswith("goal") for t in h2):
        return "prompt"
    return None


# -- tag resolution --------------------------------------------------------------------------


class TagResolver:
    """Says whether a citation tag points at something, from the files first, then the index.

    ``before_index`` runs once, the first time the index is needed (the CLI brings the index up to
    date there), so that a context whose tags all resolve from files never touches the index.
    """

    def __init__(self, cfg: Config, *, before_index: Callable[[], None] | None = None) -> None:
        self.cfg = cfg
        self._before = before_index
        self._store: Store | None = None
        self._opened = False
        self._cache: dict[Tag, str | None] = {}

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def _index(self) -> Store | None:
        if not self._opened:
            self._opened = True
            if self._before is not None:
                self._before()
            if self.cfg.index_path.exists():
                from ctxmill.store import open_store

                self._store = open_store(self.cfg, readonly=True)
        return self._store

    def resolve(self, tag: Tag) -> str | None:
        """None when ``tag`` resolves, else why not (one line)."""
        if tag not in self._cache:
            self._cache[tag] = self._resolve(tag)
        return self._cache[tag]

    def _resolve(self, tag: Tag) -> str | None:
        cfg = self.cfg
        if tag.kind == "topic":
            found = _file_lines(cfg.topics_dir / tag.ref, tag.end or tag.start)
            if found is not None:
                return found or None
        elif tag.kind == "code" and cfg.code_root is not None:
            found = _file_lines(cfg.code_root / tag.ref, tag.start)
            if found is not None:
                return found or None
        elif tag.kind == "session" and any(cfg.compressed_dir.glob(f"*/{tag.ref}.md")):
            return None
        store = self._index()
        if store is not None and store.chunks_for_tag(tag):
            return None
        if store is None:
            return "does not resolve from the files, and there is no index (run `ctxmill ingest`)"
        return "does not resolve: nothing in the memory or the index has it"


def _file_lines(path: Path, line: int | None) -> str | None:
    """None when the file is absent, "" when it has ``line``, else why not."""
    if not path.is_file():
        return None
    if line is None:
        return ""
    with path.open("rb") as fh:
        count = sum(1 for _ in fh)
    return "" if line <= count else f"points past the end of {path.name} ({count} lines)"


# -- the checks ------------------------------------------------------------------------------


def lint_text(
    text: str,
    *,
    path: str = "-",
    kind: str | None = None,
    allow_todo: bool = False,
    code_root: Path | None = None,
    resolver: TagResolver | None = None,
) -> LintResult:
    """Lint ``text``; ``kind`` is detected when not given (:class:`LintError` when it cannot be)."""
    kind = kind or detect_kind(text)
    if kind is None:
        raise LintError(
            f"{path}: cannot tell what this is (no '## Goal'/'## Phases', no '# Context for:', no "
            "summary front matter); pass --kind prompt|context|summary"
        )
    if kind not in KINDS:
        raise LintError(f"unknown kind {kind!r}; choose one of: {', '.join(KINDS)}")
    doc = _parse(text)
    result = LintResult(path, kind)
    if kind == "prompt":
        result.problems = _prompt(doc, allow_todo, code_root)
    elif kind == "context":
        result.problems = _context(doc, text, resolver)
    else:
        result.problems = _summary(doc, text)
    return result


def lint_file(path: Path, **options: Any) -> LintResult:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LintError(f"{path}: cannot read: {exc}") from exc
    return lint_text(text, path=str(path), **options)


def _prompt(doc: _Doc, allow_todo: bool, code_root: Path | None) -> list[Problem]:
    problems: list[Problem] = []
    heads = doc.headings(2)
    where: dict[str, int] = {}
    for line, title in heads:
        for part, pattern in _PART_PATTERNS.items():
            if part not in where and re.match(pattern, title.lower()):
                where[part] = line
                break
    last = len(doc.lines) or 1
    for part in PARTS:
        if part not in where:
            problems.append(Problem(last, f"missing part: '## {part}'"))
            continue
        start, end = doc.section(where[part])
        body = [doc.lines[i] for i in range(start, end) if doc.lines[i].strip()]
        if not [x for x in body if not re.match(r"^#{3,6}\s", x)]:
            problems.append(Problem(where[part], f"part '## {part}' is empty"))
    if "Phases" in where:
        problems += _phase_table(doc, where["Phases"])
    if "Files and interfaces" in where:
        problems += _paths(doc, where["Files and interfaces"], code_root)
    for line, item in todo_items("\n".join(doc.lines)):
        if allow_todo:
            problems.append(Problem(line, item, "todo"))
        else:
            problems.append(Problem(line, f"unresolved {item}"))
    return problems


def _phase_table(doc: _Doc, heading: int) -> list[Problem]:
    start, end = doc.section(heading)
    rows = [
        (i, doc.lines[i].strip())
        for i in range(start, end)
        if doc.lines[i].strip().startswith("|") and not doc.code[i]
    ]
    if len(rows) < 2:
        return [
            Problem(
                heading, "'## Phases' has no table (phase | goal | deliverables | exit criteria)"
            )
        ]
    head = [c.lower() for c in _cells(rows[0][1])]
    deliver = next((k for k, c in enumerate(head) if re.search(r"deliverable|output", c)), None)
    exit_ = next((k for k, c in enumerate(head) if re.search(r"exit|criteria|done when", c)), None)
    problems = []
    if deliver is None:
        problems.append(Problem(rows[0][0] + 1, "the phase table has no deliverables column"))
    if exit_ is None:
        problems.append(Problem(rows[0][0] + 1, "the phase table has no exit criteria column"))
    body = [(i, r) for i, r in rows[1:] if not re.fullmatch(r"\|?[\s:|-]+\|?", r)]
    if not body:
        problems.append(Problem(rows[0][0] + 1, "the phase table has no rows"))
    for n, (i, row) in enumerate(body, 1):
        cells = _cells(row)
        name = cells[0] if cells and cells[0] else str(n)
        for col, what in ((deliver, "deliverables"), (exit_, "exit criteria")):
            if col is not None and (col >= len(cells) or cells[col].lower() in _EMPTY_CELL):
                problems.append(Problem(i + 1, f"phase {name} has no {what}"))
    return problems


def _cells(row: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", row.strip().strip("|"))]


def _paths(doc: _Doc, heading: int, code_root: Path | None) -> list[Problem]:
    start, end = doc.section(heading)
    problems: list[Problem] = []
    checked = 0
    for i in range(start, end):
        line = doc.lines[i]
        if doc.code[i] or not re.match(r"^\s*[-*+]\s+`", line):
            continue
        span = re.match(r"^\s*[-*+]\s+`([^`]+)`", line)
        if span is None:
            continue
        path = span.group(1).strip()
        if " " in path or "*" in path or find_paths(path) != [path]:
            continue  # a signature or an identifier, not a path
        checked += 1
        if "(new)" in line or code_root is None:
            continue
        target = Path(path).expanduser()
        target = target if target.is_absolute() else code_root / target
        if not target.exists():
            problems.append(
                Problem(i + 1, f"`{path}` does not exist in {code_root} and is not marked (new)")
            )
    if checked and code_root is None:
        problems.append(
            Problem(heading, "file paths not checked against a code root (pass --code)", "warning")
        )
    return problems


def _context(doc: _Doc, text: str, resolver: TagResolver | None) -> list[Problem]:
    problems: list[Problem] = []
    front = doc.front
    if doc.front_problem:
        problems.append(Problem(1, doc.front_problem))
    elif front is None:
        problems.append(Problem(1, "no YAML front matter with the generation record"))
    else:
        for key in CONTEXT_RECORD:
            if key not in front:
                problems.append(
                    Problem(_key_line(doc, key), f"the generation record lacks '{key}'")
                )
        if not any(k in front for k in _HASH_KEYS):
            problems.append(
                Problem(1, "the generation record lacks the content hash ('body_sha256')")
            )
    titles = doc.headings(1)
    if not any(t.lower().startswith("context for") for _, t in titles):
        problems.append(Problem(doc.front_end + 1, "no '# Context for: <brief>' title"))
    found = doc.headings(2)
    names = [t for _, t in found]
    for name in CONTEXT_SECTIONS:
        if name not in names:
            problems.append(Problem(len(doc.lines) or 1, f"missing section '## {name}'"))
    present = [n for n in names if n in CONTEXT_SECTIONS]
    expected = [n for n in CONTEXT_SECTIONS if n in present]
    if present != expected:
        line = next(ln for ln, t in found if t in CONTEXT_SECTIONS)
        problems.append(
            Problem(line, "sections out of order: expected " + ", ".join(CONTEXT_SECTIONS))
        )
    problems += _tags(doc, found, resolver)
    if front is not None:
        problems += _budget(doc, text, front)
    return problems


def _key_line(doc: _Doc, key: str) -> int:
    for i in range(doc.front_end):
        if doc.lines[i].startswith(f"{key}:"):
            return i + 1
    return 1


def _tags(doc: _Doc, found: list[tuple[int, str]], resolver: TagResolver | None) -> list[Problem]:
    problems: list[Problem] = []
    cites_at = next((ln for ln, t in found if t == "Citations"), None)
    used: dict[str, int] = {}
    listed: set[str] = set()
    for i in range(doc.front_end, len(doc.lines)):
        if doc.code[i]:
            continue
        for m in TAG_IN_TEXT_RE.finditer(doc.lines[i]):
            printed = m.group(0)
            try:
                tag = Tag.parse(printed)
            except ValueError as exc:
                problems.append(Problem(i + 1, str(exc)))
                continue
            if cites_at is not None and i + 1 > cites_at:
                listed.add(str(tag))
            else:
                used.setdefault(str(tag), i + 1)
            if resolver is not None and (why := resolver.resolve(tag)):
                problems.append(Problem(i + 1, f"{printed} {why}"))
    if cites_at is not None:
        for printed_tag, at in used.items():
            if printed_tag not in listed:
                problems.append(
                    Problem(at, f"{printed_tag} is used but not listed under '## Citations'")
                )
    if resolver is None and (used or listed):
        problems.append(Problem(1, "tags not resolved: no memory configured", "warning"))
    return problems


def _budget(doc: _Doc, text: str, front: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    budget = front.get("budget")
    tokens = count_tokens(text)
    if not isinstance(budget, int) or isinstance(budget, bool) or budget <= 0:
        if "budget" in front:
            problems.append(
                Problem(_key_line(doc, "budget"), "'budget' must be a positive integer")
            )
    elif tokens > budget:
        problems.append(
            Problem(
                _key_line(doc, "budget"),
                f"the context is {tokens} tokens, over the budget of {budget} in its front matter",
            )
        )
    recorded = front.get("tokens")
    if isinstance(recorded, int) and abs(recorded - tokens) > max(8, tokens // 50):
        problems.append(
            Problem(
                _key_line(doc, "tokens"),
                f"'tokens' says {recorded} but the file has {tokens}: edited after it was built?",
                "warning",
            )
        )
    digest = front.get("body_sha256")
    if isinstance(digest, str):
        body = "\n".join(doc.lines[doc.front_end :]) + ("\n" if text.endswith("\n") else "")
        if hashlib.sha256(body.encode("utf-8")).hexdigest() != digest:
            problems.append(
                Problem(
                    _key_line(doc, "body_sha256"),
                    "the body no longer matches 'body_sha256': edited after it was built",
                    "warning",
                )
            )
    return problems


def _summary(doc: _Doc, text: str) -> list[Problem]:
    from ctxmill.summary_format import validate_summary

    problems = []
    for message in validate_summary(text):
        problems.append(Problem(_locate(doc, message), message))
    return problems


def _locate(doc: _Doc, message: str) -> int:
    """The line a validator message is about: the heading or key it quotes, else line 1."""
    for quoted in re.findall(r"'([^']+)'", message):
        for i, line in enumerate(doc.lines):
            if line.strip() == quoted.strip() or (
                i < doc.front_end and line.startswith(f"{quoted}:")
            ):
                return i + 1
    if "body" in message:
        heads = doc.headings(2)
        return heads[0][0] if heads else doc.front_end + 1
    return 1
