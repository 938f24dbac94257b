"""aider chat histories (``<repo>/.aider.chat.history.md``) as Sessions.

One file holds every session aider ran in that repository, appended forever.  A line
``# aider chat started at YYYY-MM-DD HH:MM:SS`` (local time) starts a session; inside one:

- ``#### `` lines are what the user typed (consecutive lines are one multi-line input) → ``user``;
  ``<blank>`` (an empty input) makes no turn;
- ``> `` lines are aider's own output (files added, edits applied, commands run, commits,
  warnings) → ``tool``, with the files and commands they name as tool calls; the start-up banner
  (version, models, repo) and the per-message ``Tokens:`` cost lines are dropped;
- everything else is the model's reply → ``assistant`` (edits appear inline as SEARCH/REPLACE
  blocks or whole files, so a very long reply is cut).

aider ends each of its own lines with two spaces (a Markdown line break); a reply's own Markdown
headings and quotes do not, which is how they are told apart.  A history whose trailing spaces
were stripped (an editor, a pre-commit hook) is read with ``#### `` and ``> `` alone.

aider stores no session id.  A session's id is ``aider-<project>-<start time>`` (``-2``… when one
file has two sessions started in the same second), where the project is the folder holding the
history, so the id is the same wherever the repository is checked out.  A re-parse of the grown
file restarts at its last session's header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ctxmill.model import Session, ToolCall
from ctxmill.sources.base import (
    ParseResult,
    TurnBuilder,
    file_stem,
    iter_lines,
    one_line,
    read_bytes,
    relative_to,
    truncate,
)

AGENT = "aider"
HISTORY_NAME = ".aider.chat.history.md"

_HEADER = "# aider chat started at "
_HEADER_BYTES_RE = re.compile(rb"^# aider chat started at ([^\r\n]*)$", re.M)
_BANNER_RE = re.compile(
    r"^(?:Aider v\d|Main model:|Weak model:|Editor model:|Model:|Git repo:|Repo-map:"
    r"|Use /help|Tokens: |Cost estimates|https://aider\.chat|Newer aider version)"
)
_APPLIED_RE = re.compile(r"^Applied edit to (.+)$")
_ADDED_RE = re.compile(r"^Added (.+?) to the chat(?: \(read-only\))?\.?$")
_RUNNING_RE = re.compile(r"^Running (.+)$")
_COMMIT_RE = re.compile(r"^Commit ([0-9a-f]{7,40}) (.+)$")
_RUN_INPUT_RE = re.compile(r"^(?:/run|/test)\s+(.+)$|^!(.+)$", re.DOTALL)
_ID_UNSAFE_RE = re.compile(r"[^A-Za-z0-9._-]+")


def is_aider(path: Path) -> bool:
    """True when a markdown file is an aider chat history."""
    path = Path(path)
    name = path.name.removesuffix(".gz")
    if not name.endswith(".md"):
        return False
    if name.endswith(HISTORY_NAME):
        return True
    try:
        head = read_bytes(path)[:4096]
    except (OSError, EOFError):
        return False
    return head.lstrip(b"\r\n").startswith(_HEADER.encode())


@dataclass
class _Block:
    kind: str  # user | tool | assistant
    lines: list[str] = field(default_factory=list)
    closed: bool = False  # a blank line ended this user input


@dataclass
class _Raw:
    offset: int
    header: str | None  # the text after "started at"; None for lines before any header
    lines: list[str] = field(default_factory=list)


def parse(path: Path, start: int = 0, first_turn: int = 1) -> ParseResult:
    """Parse an aider history from byte ``start`` (a session header; 0 for the whole file).

    ``first_turn`` exists for a uniform signature: every session numbers its turns from 1, and a
    resumed parse always starts at a session's header.
    """
    del first_turn
    path = Path(path)
    problems: list[str] = []
    project = _project_name(path)
    key = _ID_UNSAFE_RE.sub("-", project).strip("-") or "project"
    cwd = _cwd(path)
    raws: list[_Raw] = []
    offset = start
    bad_utf8 = binary = False
    try:
        for line_start, line_end, raw in iter_lines(path, start):
            offset = line_end
            if b"\x00" in raw:
                binary = True
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                line = raw.decode("utf-8", errors="replace")
                bad_utf8 = True
            line = line.removesuffix("\r")
            if line.startswith(_HEADER):
                raws.append(_Raw(line_start, line[len(_HEADER) :].strip()))
            elif raws:
                raws[-1].lines.append(line)
            elif line.strip():
                raws.append(_Raw(line_start, None, [line]))
    except (OSError, EOFError) as exc:
        problems.append(f"{path}: unreadable: {exc}")
    if binary:
        problems.append(f"{path}: lines with binary content skipped")
    if bad_utf8:
        problems.append(f"{path}: invalid UTF-8 replaced")

    used = _ids_before(path, start, key) if start > 0 else {}
    sessions: list[Session] = []
    for raw_session in raws:
        sid, started = _identity(raw_session, key, used, path, problems)
        session = Session(sid, AGENT, str(path), project=project or None, cwd=cwd)
        session.started = started
        _turns(session, raw_session.lines)
        session.problems = problems
        if session.turns:
            sessions.append(session)
    headed = [r.offset for r in raws if r.header is not None]
    resume = headed[-1] if headed else start
    return ParseResult(sessions, offset, resume, 1, problems)


def _project_name(path: Path) -> str:
    name = path.name.removesuffix(".gz")
    if name == HISTORY_NAME:
        return path.parent.name
    if name.endswith(HISTORY_NAME):
        return name[: -len(HISTORY_NAME)].rstrip(".-_") or path.parent.name
    return file_stem(path)


def _cwd(path: Path) -> str | None:
    """The repository the history sits in, when it is still there (a copy knows no repository)."""
    if path.name == HISTORY_NAME and (path.parent / ".git").exists():
        return str(path.parent)
    return None


def _ids_before(path: Path, start: int, key: str) -> dict[str, int]:
    """How often each session id was used before ``start``, so a resumed parse names the same."""
    used: dict[str, int] = {}
    try:
        data = read_bytes(path)[:start]
    except (OSError, EOFError):
        return used
    for m in _HEADER_BYTES_RE.finditer(data):
        when = _when(m[1].decode("utf-8", errors="replace").strip())
        if when is not None:
            base = f"aider-{key}-{when.strftime('%Y%m%dT%H%M%S')}"
            used[base] = used.get(base, 0) + 1
    return used


def _when(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None


def _identity(
    raw: _Raw, key: str, used: dict[str, int], path: Path, problems: list[str]
) -> tuple[str, str | None]:
    when = _when(raw.header) if raw.header is not None else None
    if when is None:
        # No usable start time: the byte offset of the block is as stable as the file itself.
        what = "text before the first session header" if raw.header is None else "bad header"
        problems.append(f"{path}@{raw.offset}: {what}; kept as a session without a start time")
        return f"aider-{key}-at{raw.offset}", None
    base = f"aider-{key}-{when.strftime('%Y%m%dT%H%M%S')}"
    used[base] = used.get(base, 0) + 1
    sid = base if used[base] == 1 else f"{base}-{used[base]}"
    # aider writes local time; this machine's zone is the best guess of the writer's.
    started = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return sid, started


def _blocks(lines: list[str]) -> list[_Block]:
    strict = any(ln.startswith("####") and ln.endswith("  ") for ln in lines)
    blocks: list[_Block] = []
    for line in lines:
        kind = _kind(line, strict)
        cur = blocks[-1] if blocks else None
        if kind is None:
            if cur is not None and cur.kind == "assistant":
                cur.lines.append(line)
            elif cur is not None and cur.kind == "user":
                cur.closed = True
            continue
        if kind == "user":
            content = line[4:].removeprefix(" ").rstrip()
        elif kind == "tool":
            content = line[1:].removeprefix(" ").rstrip()
        else:
            content = line.rstrip()
        if cur is not None and cur.kind == kind and not cur.closed:
            cur.lines.append(content)
        else:
            blocks.append(_Block(kind, [content]))
    return blocks


def _kind(line: str, strict: bool) -> str | None:
    """``user``, ``tool``, ``assistant``, or None for a blank line."""
    if not line.strip():
        return None
    marked = line.endswith("  ") or not strict
    if marked and (line.startswith("#### ") or line.rstrip() == "####"):
        return "user"
    if marked and (line.startswith("> ") or line.rstrip() == ">"):
        return "tool"
    return "assistant"


def _turns(session: Session, lines: list[str]) -> None:
    turns = TurnBuilder(session)
    for block in _blocks(lines):
        if block.kind == "user":
            text = "\n".join(block.lines).strip()
            if text and text != "<blank>":
                turns.add(0, "user", text, None, _input_calls(text))
        elif block.kind == "tool":
            kept = [ln for ln in block.lines if not _BANNER_RE.match(ln)]
            calls = [c for c in (_event(ln, session.cwd) for ln in kept) if c is not None]
            text = "\n".join(kept).strip()
            if text:
                turns.add(0, "tool", truncate(text), None, calls)
        else:
            text = "\n".join(block.lines).strip()
            if text:
                # Whole-file edits are written into the reply itself.
                turns.add(0, "assistant", truncate(text, head=12_000, tail=3_000), None)


def _input_calls(text: str) -> list[ToolCall]:
    m = _RUN_INPUT_RE.match(text)
    command = (m[1] or m[2] or "").strip() if m else ""
    if not command:
        return []
    return [ToolCall("run", one_line(command), command=truncate(command))]


def _event(line: str, cwd: str | None) -> ToolCall | None:
    """A tool call for the aider output lines that name a file touched or a command run."""
    if m := _APPLIED_RE.match(line):
        rel = relative_to(m[1].strip(), cwd)
        return ToolCall("edit", rel, files=[rel])
    if m := _ADDED_RE.match(line):
        rel = relative_to(m[1].strip(), cwd)
        return ToolCall("add", rel, files=[rel])
    if m := _RUNNING_RE.match(line):
        command = m[1].strip()
        return ToolCall("run", one_line(command), command=truncate(command))
    if m := _COMMIT_RE.match(line):
        return ToolCall("commit", one_line(f"{m[1]} {m[2]}"))
    return None
