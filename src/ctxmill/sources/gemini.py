"""Gemini CLI chats (``~/.gemini/tmp/<project>/chats/session-*.jsonl``, legacy ``.json``) as Sessions.

A current chat is JSONL: a metadata line (``sessionId``, ``projectHash``, ``startTime``), message
records keyed by ``id``, ``{"$set": {...}}`` metadata updates and ``{"$rewindTo": id}`` rewinds.
A message is re-appended whenever it changes (tool calls, tokens), so the last copy of an id wins
and keeps the position of the first; a rewind drops that message and everything after it (all of
them when the id is unknown).  The legacy format is one JSON document ``{..., messages: [...]}``
rewritten in place; a truncated one keeps the messages before the damage.

What becomes a turn, in the order the surviving messages stand:

- a ``user`` message → ``user``: the text the user typed (``displayContent`` when present, since
  ``content`` then holds what a slash command expanded to); a message whose ``displayContent``
  has no text was written by the CLI, not the user, and makes no turn; ``@file`` contents the CLI
  inlined and ``<system-reminder>`` spans are removed;
- a ``gemini`` message → ``assistant`` (thought summaries cut to 1,000 characters, the text, one
  ``→ tool: summary`` line per tool call), then one ``tool`` turn per call (truncated; a failed
  call is marked);
- an ``error`` message → ``system``; ``info`` and ``warning`` notices make no turn.

Both formats can change anywhere, not only at the end, so every parse reads the whole file.  The
session id is the chat's ``sessionId``, else the file stem.  The project folder comes from the
``.project_root`` file the CLI keeps beside ``chats/`` (or ``~/.gemini/projects.json`` for the
older hash-named folders); the folder's own name stands in when neither is there.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from ctxmill.model import Session, ToolCall
from ctxmill.sources.base import (
    ParseResult,
    TurnBuilder,
    basename,
    compact_json,
    file_stem,
    first_text,
    iter_records,
    one_line,
    read_bytes,
    read_first_records,
    relative_to,
    strip_injected,
    truncate,
)

AGENT = "gemini"

_MESSAGE_TYPES = frozenset({"user", "gemini", "info", "error", "warning"})
_NOTICE_TYPES = frozenset({"info", "warning"})
_HEX64_RE = re.compile(r"[0-9a-f]{64}")
# What the CLI appends to a prompt that mentions @path: the files' contents, not the user's words.
_REFERENCED_RE = re.compile(
    r"\n?--- Content from referenced files ---\n.*?(?:\n--- End of content ---|\Z)", re.DOTALL
)
_LEGACY_FIELD_RE = re.compile(
    r'"(sessionId|projectHash|startTime|lastUpdated|summary|kind)"\s*:\s*"((?:[^"\\]|\\.)*)"'
)
_MESSAGES_RE = re.compile(r'"messages"\s*:\s*\[')
_PATH_KEYS = ("file_path", "absolute_path", "path")
_FILE_TOOLS = frozenset({"read_file", "write_file", "replace", "edit", "smart_edit"})
_SHELL_TOOLS = frozenset({"run_shell_command", "shell"})
_SEARCH_TOOLS = frozenset({"glob", "search_file_content", "grep", "grep_search", "ripgrep"})


def is_gemini(path: Path) -> bool:
    """True when a file looks like a Gemini CLI chat (either format)."""
    path = Path(path)
    name = path.name.removesuffix(".gz")
    if name.endswith(".json"):
        try:
            head = read_bytes(path)[:4096].decode("utf-8", errors="replace")
        except (OSError, EOFError):
            return False
        return (
            head.lstrip().startswith("{")
            and '"sessionId"' in head
            and ('"projectHash"' in head or '"messages"' in head)
        )
    for rec in read_first_records(path, limit=5):
        if "$set" in rec or "$rewindTo" in rec:
            return True
        if "sessionId" in rec and "projectHash" in rec:
            return True
        if isinstance(rec.get("id"), str) and rec.get("type") == "gemini":
            return True
    return False


def parse(path: Path, start: int = 0, first_turn: int = 1) -> ParseResult:
    """Parse a Gemini CLI chat.  ``start`` exists for a uniform signature: a chat can change
    before its end (updates, rewinds, a rewritten legacy document), so it is always read whole."""
    del start
    path = Path(path)
    problems: list[str] = []
    meta: dict[str, Any] = {}
    if path.name.removesuffix(".gz").endswith(".json"):
        messages, offset = _read_legacy(path, meta, problems)
    else:
        messages, offset = _read_jsonl(path, meta, problems)

    session = Session(str(meta.get("sessionId") or file_stem(path)), AGENT, str(path))
    _locate(session, path, meta)
    title = meta.get("summary")
    session.title = title.strip() if isinstance(title, str) and title.strip() else None

    turns = TurnBuilder(session, first_turn)
    unknown: set[str] = set()
    stamps: list[str] = []
    for rec in messages:
        ts = _stamp(rec.get("timestamp"))
        if ts:
            stamps.append(ts)
        kind = rec.get("type")
        if kind == "user":
            text = _user_text(rec)
            if text:
                turns.add(0, "user", text, ts)
        elif kind == "gemini":
            _gemini(turns, rec, ts, session.cwd)
        elif kind == "error":
            text = _parts_text(rec.get("content"))
            if text:
                turns.add(0, "system", "ERROR: " + truncate(text), ts)
        elif kind not in _NOTICE_TYPES and str(kind) not in unknown:
            unknown.add(str(kind))
            problems.append(f"{path}: unknown message type {kind!r} skipped")

    session.started = _stamp(meta.get("startTime")) or (min(stamps) if stamps else None)
    last = _stamp(meta.get("lastUpdated"))
    ends = [*stamps, last] if last else stamps
    session.ended = max(ends) if ends else None
    session.problems = problems
    return ParseResult([session], offset, 0, 1, problems)


def _read_jsonl(
    path: Path, meta: dict[str, Any], problems: list[str]
) -> tuple[list[dict[str, Any]], int]:
    """The messages that survive every update and rewind, in order; and the bytes consumed."""
    messages: dict[str, dict[str, Any]] = {}
    offset = 0
    for line_start, line_end, rec in iter_records(path, 0, problems):
        offset = line_end
        if rec is None:
            continue
        where = f"{path}@{line_start}"
        if "$rewindTo" in rec:
            target = rec["$rewindTo"]
            if isinstance(target, str) and target in messages:
                keep = list(messages)
                for mid in keep[keep.index(target) :]:
                    del messages[mid]
            else:
                problems.append(
                    f"{where}: rewind to unknown message {target!r}; earlier messages dropped"
                )
                messages.clear()
        elif "$set" in rec:
            update = rec["$set"]
            if isinstance(update, dict):
                meta.update(update)
            else:
                problems.append(f"{where}: $set without an object, skipped")
        elif isinstance(rec.get("id"), str) and rec["id"]:
            # A re-appended message replaces the old copy but keeps its place.
            messages[rec["id"]] = rec
        elif "sessionId" in rec:
            for key, value in rec.items():
                meta.setdefault(key, value)
        else:
            problems.append(f"{where}: unknown record skipped")
    return list(messages.values()), offset


def _read_legacy(
    path: Path, meta: dict[str, Any], problems: list[str]
) -> tuple[list[dict[str, Any]], int]:
    try:
        data = read_bytes(path)
    except (OSError, EOFError) as exc:
        problems.append(f"{path}: unreadable: {exc}")
        return [], 0
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict):
        messages = doc.get("messages")
        meta.update({k: v for k, v in doc.items() if k != "messages"})
        if not isinstance(messages, list):
            problems.append(f"{path}: no messages list")
            return [], len(data)
        kept = [m for m in messages if isinstance(m, dict)]
        if len(kept) < len(messages):
            problems.append(f"{path}: {len(messages) - len(kept)} non-object messages skipped")
        return kept, len(data)
    if doc is not None:
        problems.append(f"{path}: not a JSON object; skipped")
        return [], len(data)
    # A document cut short (a crash mid-rewrite, a partial copy): keep what is whole.
    text = data.decode("utf-8", errors="replace")
    messages = _salvage(text, meta)
    problems.append(
        f"{path}: damaged or truncated JSON; kept the {len(messages)} whole messages before it"
    )
    return messages, len(data)


def _salvage(text: str, meta: dict[str, Any]) -> list[dict[str, Any]]:
    m = _MESSAGES_RE.search(text)
    head = text[: m.start()] if m else text
    for key, value in _LEGACY_FIELD_RE.findall(head):
        try:
            meta.setdefault(key, json.loads(f'"{value}"'))
        except ValueError:
            continue
    if not m:
        return []
    decoder = json.JSONDecoder()
    out: list[dict[str, Any]] = []
    pos = m.end()
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            break
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except ValueError:
            break
        if isinstance(obj, dict):
            out.append(obj)
    return out


def _locate(session: Session, path: Path, meta: dict[str, Any]) -> None:
    """cwd, project and parent from where the CLI keeps the chat: ``tmp/<project>/chats/…``."""
    parents = path.parents
    chats = next((i for i in range(min(3, len(parents) - 1)) if parents[i].name == "chats"), None)
    if meta.get("kind") == "subagent" and chats == 1:
        session.parent_id = parents[0].name
    if chats is None:
        return
    folder = parents[chats + 1]
    root = _project_root(folder, meta.get("projectHash"))
    if root:
        session.cwd = root
        session.project = basename(root) or None
    elif not _HEX64_RE.fullmatch(folder.name):
        session.project = folder.name


def _project_root(folder: Path, project_hash: object) -> str | None:
    try:
        root = (folder / ".project_root").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        root = ""
    if root:
        return root
    if not isinstance(project_hash, str) or folder.parent.name != "tmp":
        return None
    # Older folders are named by the sha256 of the root path; the registry maps paths to folders.
    try:
        registry = orjson.loads((folder.parent.parent / "projects.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    projects = registry.get("projects") if isinstance(registry, dict) else None
    if not isinstance(projects, dict):
        return None
    for candidate in projects:
        if hashlib.sha256(str(candidate).encode()).hexdigest() == project_hash:
            return str(candidate)
    return None


def _stamp(value: object) -> str | None:
    return value if isinstance(value, str) and value[:4].isdigit() else None


def _parts(content: object) -> list[Any]:
    if isinstance(content, list):
        return content
    if content is None:
        return []
    return [content]


def _parts_text(content: object) -> str:
    """Readable text of a ``PartListUnion``; binary parts become a short note."""
    out: list[str] = []
    for part in _parts(content):
        if isinstance(part, str):
            text = part
        elif not isinstance(part, dict) or part.get("thought") is True:
            continue
        elif isinstance(part.get("text"), str):
            text = part["text"]
        elif isinstance(part.get("inlineData"), dict):
            data = part["inlineData"]
            raw = data.get("data")
            size = len(raw) * 3 // 4 // 1024 if isinstance(raw, str) else 0
            text = f"[{data.get('mimeType', 'data')} {size} KB]"
        elif isinstance(part.get("fileData"), dict):
            text = f"[file {part['fileData'].get('fileUri', '?')}]"
        elif isinstance(part.get("functionResponse"), dict):
            text = _response_text(part["functionResponse"])
        else:
            continue
        if text.strip():
            out.append(text.strip())
    return "\n".join(out)


def _response_text(response: dict[str, Any]) -> str:
    body = response.get("response")
    if isinstance(body, dict):
        for key in ("output", "error", "content"):
            value = body.get(key)
            if isinstance(value, str):
                return f"ERROR: {value}" if key == "error" else value
        return compact_json(body)
    return body if isinstance(body, str) else ""


def _user_text(rec: dict[str, Any]) -> str:
    display = rec.get("displayContent")
    if display is not None:
        shown = _plain_text(display)
        if not shown:
            return ""
        text = shown
    else:
        text = _plain_text(rec.get("content"))
    return strip_injected(_REFERENCED_RE.sub("", text)).strip()


def _plain_text(content: object) -> str:
    """Only the typed text of a message: function responses in a user message are not the user's."""
    return _parts_text(
        [p for p in _parts(content) if not (isinstance(p, dict) and "functionResponse" in p)]
    )


def _gemini(turns: TurnBuilder, rec: dict[str, Any], ts: str | None, cwd: str | None) -> None:
    parts: list[str] = []
    thoughts = _thoughts(rec.get("thoughts"))
    if thoughts:
        parts.append("(thinking) " + truncate(thoughts, head=1000, tail=0))
    text = _parts_text(rec.get("content"))
    if text:
        parts.append(text)
    calls: list[tuple[ToolCall, dict[str, Any]]] = []
    tool_calls = rec.get("toolCalls")
    for raw in tool_calls if isinstance(tool_calls, list) else []:
        if isinstance(raw, dict):
            call = tool_call(raw.get("name"), raw.get("args"), cwd)
            call.is_error = raw.get("status") == "error"
            calls.append((call, raw))
            parts.append(f"→ {call.name}: {call.summary}")
    if parts:
        turns.add(0, "assistant", "\n".join(parts), ts, [c for c, _ in calls])
    for _, raw in calls:
        turns.add(0, "tool", _result_text(raw), _stamp(raw.get("timestamp")) or ts)


def _thoughts(thoughts: object) -> str:
    """The thought summaries of one reply as one text (they are one train of thought)."""
    lines: list[str] = []
    for thought in thoughts if isinstance(thoughts, list) else []:
        if not isinstance(thought, dict):
            continue
        subject, body = (thought.get(k) for k in ("subject", "description"))
        subject = subject.strip() if isinstance(subject, str) else ""
        body = body.strip() if isinstance(body, str) else ""
        line = f"{subject}: {body}" if subject else body
        if line.strip(": "):
            lines.append(line)
    return "\n".join(lines)


def _result_text(raw: dict[str, Any]) -> str:
    text = _parts_text(raw.get("result"))
    display = raw.get("resultDisplay")
    if not text and isinstance(display, str):
        text = display
    text = truncate(strip_injected(text).strip()) or "(no output)"
    status = raw.get("status")
    if status == "error" and not text.startswith("ERROR"):
        return f"ERROR: {text}"
    if status == "cancelled":
        return f"(cancelled) {text}"
    return text


def tool_call(name: object, args: object, cwd: str | None) -> ToolCall:
    """Reduce a Gemini CLI tool call to a :class:`ToolCall`; file contents never enter the summary."""
    tool = name if isinstance(name, str) and name else "unknown"
    inp: dict[str, Any] = args if isinstance(args, dict) else {}

    text = partial(first_text, inp)

    if tool in _SHELL_TOOLS and text("command"):
        command = text("command")
        return ToolCall(tool, one_line(command), command=truncate(command))
    if tool in _FILE_TOOLS and text(*_PATH_KEYS):
        rel = relative_to(text(*_PATH_KEYS), cwd)
        return ToolCall(tool, rel, files=[rel])
    if tool == "read_many_files":
        paths = inp.get("paths")
        listed = [p for p in paths if isinstance(p, str)] if isinstance(paths, list) else []
        files = [relative_to(p, cwd) for p in listed if not any(c in p for c in "*?[{")]
        return ToolCall(tool, one_line(", ".join(listed) or compact_json(args)), files=files)
    if tool in _SEARCH_TOOLS and text("pattern"):
        where = text("path", "dir_path")
        suffix = f" in {relative_to(where, cwd)}" if where else ""
        return ToolCall(tool, one_line(text("pattern") + suffix))
    if tool == "list_directory" and text("path", "dir_path"):
        return ToolCall(tool, relative_to(text("path", "dir_path"), cwd))
    if text("query", "url", "prompt", "fact", "title"):
        return ToolCall(tool, one_line(text("query", "url", "prompt", "fact", "title")))
    return ToolCall(tool, compact_json(args))
