"""OpenCode's SQLite database (``$XDG_DATA_HOME/opencode/opencode.db``) as Sessions.

The database has a ``session`` table and, per session, ``message`` rows whose parts (``part`` rows)
hold the content; every row's ``data`` column is JSON and every row carries ``time_updated``
(epoch ms).  It is opened read-only and never written.  What becomes a turn, per session, in the
order of messages (``time_created``, then id) and of their parts (id, which sorts by time):

- a ``user`` message → ``user``: its text parts, minus those OpenCode adds itself (``synthetic``,
  ``ignored``: attached files' contents, tool replays); an attached file becomes ``[file NAME]``;
- an ``assistant`` message → ``assistant`` turns: text, reasoning cut to 1,000 characters and a
  ``→ tool: summary`` line per tool part; each tool part's output (or error) follows as a ``tool``
  turn (truncated), and the reply's next text opens a new ``assistant`` turn;
- an assistant message flagged ``summary`` (compaction) → ``summary``; a message error → ``system``.

Rows change in place, so a database is not tailed by byte offset.  A parse reports in ``offset``
the newest ``time_updated`` it saw; given that value back as ``start``, it returns only the
sessions with a row changed since (each read whole).  A database that cannot be opened or read
(locked by a writer, damaged) raises :class:`DatabaseUnreadable`, an ``OSError`` carrying one line,
so the caller reports it and retries at its next pass rather than marking it read.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from ctxmill.model import Session, ToolCall
from ctxmill.sources.base import (
    ParseResult,
    TurnBuilder,
    basename,
    compact_json,
    first_text,
    one_line,
    relative_to,
    strip_injected,
    truncate,
)

AGENT = "opencode"

_MAGIC = b"SQLite format 3\x00"
_TABLES = frozenset({"session", "message", "part"})
_QUIET_PARTS = frozenset(
    {"step-start", "step-finish", "snapshot", "patch", "agent", "retry", "compaction"}
)
_DEFAULT_TITLE_RE = re.compile(r"^(?:New|Child) session - \d{4}-")
_PATCH_FILE_RE = re.compile(
    r"^\*\*\* (?:Add File|Update File|Delete File|Move to): (.+?)\s*$", re.M
)
_PATH_TOOLS = frozenset({"read", "write", "edit", "multiedit"})
_BUSY_SECONDS = 2.0


class DatabaseUnreadable(OSError):
    """The database could not be opened or read right now; nothing was read."""


def is_opencode(path: Path) -> bool:
    """True for an SQLite file holding OpenCode's tables (or named like OpenCode's database)."""
    path = Path(path)
    if not path.name.endswith(".db"):
        return False
    try:
        with path.open("rb") as fh:
            if fh.read(16) != _MAGIC:
                return False
    except OSError:
        return False
    if path.name.startswith("opencode"):
        return True
    try:
        con = _connect(path)
    except DatabaseUnreadable:
        return False
    try:
        return _tables(con) >= _TABLES
    except sqlite3.Error:
        return False
    finally:
        con.close()


def parse(path: Path, start: int = 0, first_turn: int = 1) -> ParseResult:
    """Read the sessions changed at or after ``start`` (epoch ms; 0 reads them all).

    ``first_turn`` exists for a uniform signature: a session is always read whole.  Raises
    :class:`DatabaseUnreadable` when the database is locked or damaged.
    """
    del first_turn
    path = Path(path)
    problems: list[str] = []
    con = _connect(path)
    try:
        try:
            # One read transaction: every query sees the same snapshot while OpenCode writes.
            con.execute("BEGIN")
            missing = _TABLES - _tables(con)
            if missing:
                problems.append(
                    f"{path}: no {', '.join(sorted(missing))} table; not an OpenCode database"
                )
                return ParseResult([], start, 0, 1, problems)
            newest = _newest(con)
            projects = _projects(con)
            order = "time_created, id" if "time_created" in _columns(con, "message") else "id"
            sessions = [
                _session(con, row, path, projects, order, problems) for row in _changed(con, start)
            ]
        except sqlite3.Error as exc:
            raise DatabaseUnreadable(_why(path, exc)) from exc
    finally:
        con.close()
    # No byte offset applies, so ``resume_offset`` stays 0 (it sizes what a re-read costs).
    return ParseResult(sessions, max(newest, start), 0, 1, problems)


def _connect(path: Path) -> sqlite3.Connection:
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    try:
        con = sqlite3.connect(uri, uri=True, timeout=_BUSY_SECONDS, isolation_level=None)
    except sqlite3.Error as exc:
        raise DatabaseUnreadable(_why(path, exc)) from exc
    con.row_factory = sqlite3.Row
    return con


def _why(path: Path, exc: sqlite3.Error) -> str:
    text = str(exc) or type(exc).__name__
    if "locked" in text or "busy" in text:
        return f"OpenCode database {path} is locked ({text}); it is read again next time"
    return f"OpenCode database {path} cannot be read ({text})"


def _tables(con: sqlite3.Connection) -> set[str]:
    return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _columns(con: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in con.execute(f"PRAGMA table_info({table})")}


def _newest(con: sqlite3.Connection) -> int:
    newest = 0
    for table in ("session", "message", "part"):
        if "time_updated" in _columns(con, table):
            value = con.execute(f"SELECT MAX(time_updated) FROM {table}").fetchone()[0]
            if isinstance(value, int | float):
                newest = max(newest, int(value))
    return newest


def _changed(con: sqlite3.Connection, start: int) -> list[sqlite3.Row]:
    order = "time_created, id" if "time_created" in _columns(con, "session") else "id"
    rows = con.execute(f"SELECT * FROM session ORDER BY {order}").fetchall()
    if start <= 0:
        return rows
    # At-or-after: a row written in the same millisecond as the last read is read again.
    changed: set[str] = set()
    for table, key in (("session", "id"), ("message", "session_id"), ("part", "session_id")):
        if "time_updated" in _columns(con, table):
            query = f"SELECT DISTINCT {key} FROM {table} WHERE time_updated >= ?"
            changed.update(r[0] for r in con.execute(query, (start,)))
    return [r for r in rows if r["id"] in changed]


def _projects(con: sqlite3.Connection) -> dict[str, str]:
    if "project" not in _tables(con) or "worktree" not in _columns(con, "project"):
        return {}
    return {
        r["id"]: r["worktree"]
        for r in con.execute("SELECT id, worktree FROM project")
        if isinstance(r["worktree"], str)
    }


def _json(raw: object, where: str, problems: list[str]) -> dict[str, Any] | None:
    try:
        value = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
    except orjson.JSONDecodeError:
        problems.append(f"{where}: data is not JSON, skipped")
        return None
    if not isinstance(value, dict):
        problems.append(f"{where}: data is not a JSON object, skipped")
        return None
    return value


def _iso(ms: object) -> str | None:
    if not isinstance(ms, int | float) or isinstance(ms, bool) or ms <= 0:
        return None
    try:
        when = datetime.fromtimestamp(ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _session(
    con: sqlite3.Connection,
    row: sqlite3.Row,
    path: Path,
    projects: dict[str, str],
    order: str,
    problems: list[str],
) -> Session:
    keys = set(row.keys())

    def col(name: str) -> Any:
        return row[name] if name in keys else None

    sid = str(row["id"])
    session = Session(sid, AGENT, str(path))
    directory = col("directory")
    if isinstance(directory, str) and directory:
        session.cwd = directory
    worktree = projects.get(str(col("project_id")))
    root = worktree if worktree and worktree != "/" else session.cwd
    session.project = basename(root) if root else None
    title = col("title")
    if isinstance(title, str) and title.strip() and not _DEFAULT_TITLE_RE.match(title):
        session.title = title.strip()
    parent = col("parent_id")
    session.parent_id = parent if isinstance(parent, str) and parent else None
    session.started = _iso(col("time_created"))
    session.ended = _iso(col("time_updated"))

    where = f"{path}:{sid}"
    messages = con.execute(
        f"SELECT id, data FROM message WHERE session_id = ? ORDER BY {order}", (sid,)
    ).fetchall()
    parts: dict[str, list[dict[str, Any]]] = {}
    for p in con.execute(
        "SELECT id, message_id, data FROM part WHERE session_id = ? ORDER BY id", (sid,)
    ):
        data = _json(p["data"], f"{where} part {p['id']}", problems)
        if data is not None:
            parts.setdefault(str(p["message_id"]), []).append(data)

    turns = TurnBuilder(session)
    unknown: set[str] = set()
    for m in messages:
        data = _json(m["data"], f"{where} message {m['id']}", problems)
        if data is None:
            continue
        mid = str(m["id"])
        time = data.get("time")
        ts = _iso(time.get("created")) if isinstance(time, dict) else None
        cwd = _message_cwd(data) or session.cwd
        if session.cwd is None and cwd:
            session.cwd = cwd
            session.project = session.project or basename(cwd)
        role = data.get("role")
        if role == "user":
            text = _user_text(parts.get(mid, []))
            if text:
                turns.add(0, "user", text, ts)
        elif role == "assistant":
            _assistant(turns, mid, data, parts.get(mid, []), ts, cwd, unknown)
        else:
            problems.append(f"{where} message {mid}: unknown role {role!r} skipped")
    if unknown:
        problems.append(f"{where}: unknown part types skipped: {', '.join(sorted(unknown))}")
    return session


def _message_cwd(data: dict[str, Any]) -> str | None:
    where = data.get("path")
    cwd = where.get("cwd") if isinstance(where, dict) else None
    return cwd if isinstance(cwd, str) and cwd else None


def _visible(part: dict[str, Any]) -> bool:
    return part.get("synthetic") is not True and part.get("ignored") is not True


def _user_text(parts: list[dict[str, Any]]) -> str:
    out: list[str] = []
    for part in parts:
        kind = part.get("type")
        if kind == "text" and _visible(part) and isinstance(part.get("text"), str):
            out.append(part["text"])
        elif kind == "file":
            name = part.get("filename") or part.get("url") or "?"
            out.append(f"[file {name}]")
        elif kind == "subtask":
            what = part.get("description") or part.get("prompt") or ""
            agent = part.get("agent")
            out.append(f"(subtask{f' {agent}' if agent else ''}) {what}".strip())
    return strip_injected("\n".join(t.strip() for t in out if t.strip())).strip()


def _assistant(
    turns: TurnBuilder,
    mid: str,
    data: dict[str, Any],
    parts: list[dict[str, Any]],
    ts: str | None,
    cwd: str | None,
    unknown: set[str],
) -> None:
    if data.get("summary") is True:
        text = "\n".join(
            p["text"].strip()
            for p in parts
            if p.get("type") == "text" and isinstance(p.get("text"), str) and p["text"].strip()
        )
        if text:
            turns.add(0, "summary", text, ts)
        return
    for part in parts:
        kind = part.get("type")
        if kind == "text" and _visible(part) and isinstance(part.get("text"), str):
            if part["text"].strip():
                turns.add_or_extend(mid, 0, "assistant", part["text"].strip(), ts)
        elif kind == "reasoning" and isinstance(part.get("text"), str):
            if part["text"].strip():
                thought = "(thinking) " + truncate(part["text"].strip(), head=1000, tail=0)
                turns.add_or_extend(mid, 0, "assistant", thought, ts)
        elif kind == "tool":
            raw_state = part.get("state")
            state: dict[str, Any] = raw_state if isinstance(raw_state, dict) else {}
            call = tool_call(part.get("tool"), state.get("input"), cwd)
            call.is_error = state.get("status") == "error"
            turns.add_or_extend(mid, 0, "assistant", f"→ {call.name}: {call.summary}", ts, [call])
            turns.add(0, "tool", _output(state), _iso(_tool_time(state)) or ts)
        elif kind in ("text", "reasoning", "file", "subtask") or kind in _QUIET_PARTS:
            continue
        else:
            unknown.add(str(kind))
    error = data.get("error")
    if isinstance(error, dict):
        info = error.get("data")
        message = info.get("message") if isinstance(info, dict) else None
        name = error.get("name") or "error"
        text = f"ERROR: {name}: {message}" if isinstance(message, str) else f"ERROR: {name}"
        turns.add(0, "system", truncate(text), ts)


def _tool_time(state: dict[str, Any]) -> object:
    time = state.get("time")
    return time.get("end") or time.get("start") if isinstance(time, dict) else None


def _output(state: dict[str, Any]) -> str:
    status = state.get("status")
    if status == "error":
        error = state.get("error")
        return "ERROR: " + (truncate(str(error).strip()) if error else "(no message)")
    output = state.get("output")
    text = output if isinstance(output, str) else ""
    text = truncate(strip_injected(text).strip())
    if not text and status in ("pending", "running"):
        return f"({status})"
    return text or "(no output)"


def tool_call(name: object, args: object, cwd: str | None) -> ToolCall:
    """Reduce an OpenCode tool part to a :class:`ToolCall`; file contents never enter the summary."""
    tool = name if isinstance(name, str) and name else "unknown"
    inp: dict[str, Any] = args if isinstance(args, dict) else {}

    text = partial(first_text, inp)

    if tool == "bash" and text("command"):
        command = text("command")
        return ToolCall(tool, one_line(command), command=truncate(command))
    if tool in _PATH_TOOLS and text("filePath", "file_path", "path"):
        rel = relative_to(text("filePath", "file_path", "path"), cwd)
        return ToolCall(tool, rel, files=[rel])
    if tool in ("patch", "apply_patch") and text("patchText", "patch", "input"):
        found = _PATCH_FILE_RE.findall(text("patchText", "patch", "input"))
        files = list(dict.fromkeys(relative_to(f, cwd) for f in found))
        return ToolCall(tool, "apply_patch " + (", ".join(files) or "(no files)"), files)
    if tool in ("glob", "grep") and text("pattern"):
        where = f" in {relative_to(text('path'), cwd)}" if text("path") else ""
        return ToolCall(tool, one_line(text("pattern") + where))
    if tool == "list":
        return ToolCall(tool, relative_to(text("path"), cwd) or ".")
    if tool == "task" and text("description"):
        kind = f" ({text('subagent_type')})" if text("subagent_type") else ""
        return ToolCall(tool, one_line(text("description") + kind))
    if text("url", "query"):
        return ToolCall(tool, one_line(text("url", "query")))
    return ToolCall(tool, compact_json(args))
