"""OpenAI Codex CLI rollouts (``$CODEX_HOME/sessions/YYYY/MM/DD/rollout-*.jsonl``) as Sessions.

Turns come from ``response_item`` lines only, in file order; the ``event_msg`` stream repeats the
same prompts and answers for the UI and is ignored.

- a ``user`` message → ``user``, minus the harness context the CLI sends as user text
  (``<environment_context>``, ``<user_instructions>``, AGENTS.md blocks); ``developer`` and
  ``system`` messages make no turn;
- consecutive assistant-side items (``output_text`` messages, reasoning summaries, function, custom
  tool and local shell calls) → one ``assistant`` turn, a ``→ tool: summary`` line per call;
- each call output → ``tool`` (truncated; a non-zero exit code is marked);
- a ``compacted`` line → ``summary``.

Encrypted reasoning, base instructions and images never enter the text.  The session id is the
rollout's own (``session_meta.payload.id``), else the uuid in the file name, else the stem.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import orjson

from ctxmill.model import Session, ToolCall
from ctxmill.sources.base import (
    ParseResult,
    TurnBuilder,
    basename,
    file_stem,
    iter_records,
    one_line,
    read_first_records,
    relative_to,
    truncate,
)

AGENT = "codex"

_ENVELOPE_TYPES = frozenset(
    {"session_meta", "response_item", "event_msg", "turn_context", "compacted"}
)
_CALL_TYPES = frozenset(
    {"function_call", "custom_tool_call", "local_shell_call", "web_search_call"}
)
_OUTPUT_TYPES = frozenset({"function_call_output", "custom_tool_call_output"})
_ITEM_TYPES = _CALL_TYPES | _OUTPUT_TYPES | {"message", "reasoning"}
# Consecutive assistant-side items share one turn; this key marks that turn as still open.
_OPEN = "assistant"
_HARNESS_PREFIXES = (
    "<environment_context>",
    "<user_instructions>",
    "<permissions instructions>",
    "# AGENTS.md instructions",
)
_SHELLS = frozenset({"bash", "sh", "zsh", "dash", "fish", "pwsh", "powershell", "cmd"})
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
_PATCH_FILE_RE = re.compile(
    r"^\*\*\* (?:Add File|Update File|Delete File|Move to): (.+?)\s*$", re.M
)


def is_codex(path: Path) -> bool:
    """True when the file's first records look like a Codex rollout."""
    for rec in read_first_records(Path(path), limit=5):
        if rec.get("type") in _ENVELOPE_TYPES and isinstance(rec.get("payload"), dict):
            return True
    return False


def parse(path: Path, start: int = 0, first_turn: int = 1) -> ParseResult:
    """Parse a Codex rollout from byte ``start``, numbering turns from ``first_turn``.

    Re-parsing a grown file with ``start=r.resume_offset, first_turn=r.resume_turn`` yields exactly
    the turns a full parse yields from ``resume_turn`` on.
    """
    path = Path(path)
    uuids = _UUID_RE.findall(path.name)
    session = Session(uuids[-1] if uuids else file_stem(path), AGENT, str(path))
    problems: list[str] = []
    meta_seen = False
    if start > 0:
        # The id and metadata live on the first line, which a resumed read does not reach.
        for head in read_first_records(path, limit=1):
            if head.get("type") == "session_meta":
                _meta(session, head.get("payload"), head.get("timestamp"))
                meta_seen = True

    turns = TurnBuilder(session, first_turn)
    offset = start
    first_ts: str | None = None
    last_ts: str | None = None

    for line_start, line_end, rec in iter_records(path, start, problems):
        offset = line_end
        if rec is None:
            continue
        where = f"{path}@{line_start}"
        ts = rec.get("timestamp")
        ts = ts if isinstance(ts, str) and ts[:4].isdigit() else None
        if ts:
            first_ts = ts if first_ts is None or ts < first_ts else first_ts
            last_ts = ts if last_ts is None or ts > last_ts else last_ts
        typ = rec.get("type")
        payload = rec.get("payload")
        if payload is None and typ in _ITEM_TYPES:
            # Early rollouts wrote bare response items without the envelope.
            typ, payload = "response_item", rec
        if not isinstance(payload, dict):
            if typ in _ENVELOPE_TYPES:
                problems.append(f"{where}: {typ} line without a payload, skipped")
            continue

        if typ == "session_meta":
            # A fork carries its parent's history; only the first meta line names this session.
            if not meta_seen:
                _meta(session, payload, ts)
                meta_seen = True
            continue
        if typ == "turn_context":
            _cwd(session, payload.get("cwd"))
            continue
        if typ == "compacted":
            message = payload.get("message")
            if isinstance(message, str) and message.strip():
                turns.add(line_start, "summary", message.strip(), ts)
            continue
        if typ != "response_item":
            continue

        kind = payload.get("type")
        if kind == "message":
            role = payload.get("role")
            if role == "user":
                text = _user_text(payload.get("content"))
                if text:
                    turns.add(line_start, "user", text, ts)
            elif role == "assistant":
                text = _content_text(payload.get("content"))
                if text:
                    turns.add_or_extend(_OPEN, line_start, "assistant", text, ts)
        elif kind == "reasoning":
            summary = _reasoning(payload.get("summary"))
            if summary:
                text = "(thinking) " + truncate(summary, head=1000, tail=0)
                turns.add_or_extend(_OPEN, line_start, "assistant", text, ts)
        elif kind in _CALL_TYPES:
            call = _tool_call(payload, session.cwd, where, problems)
            line = f"→ {call.name}: {call.summary}"
            turns.add_or_extend(_OPEN, line_start, "assistant", line, ts, [call])
        elif kind in _OUTPUT_TYPES:
            turns.add(line_start, "tool", _output_text(payload.get("output")), ts)

    session.started = session.started or first_ts
    if last_ts and (session.ended is None or last_ts > session.ended):
        session.ended = last_ts
    session.problems = problems
    resume_offset, resume_turn = turns.resume_point(offset)
    return ParseResult([session], offset, resume_offset, resume_turn, problems)


def _meta(session: Session, payload: object, ts: object) -> None:
    if not isinstance(payload, dict):
        return
    sid = payload.get("id")
    if isinstance(sid, str) and sid:
        session.id = sid
    started = payload.get("timestamp") or ts
    if isinstance(started, str) and started and session.started is None:
        session.started = started
    _cwd(session, payload.get("cwd"))
    git = payload.get("git")
    branch = git.get("branch") if isinstance(git, dict) else None
    if isinstance(branch, str) and branch and session.git_branch is None:
        session.git_branch = branch
    source = payload.get("source")
    if payload.get("originator") == "codex_exec" or source == "exec":
        session.headless = True
    if isinstance(source, dict):
        spawn = source.get("subagent")
        spawn = spawn.get("thread_spawn") if isinstance(spawn, dict) else None
        parent = spawn.get("parent_thread_id") if isinstance(spawn, dict) else None
        if isinstance(parent, str) and parent:
            session.parent_id = parent


def _cwd(session: Session, cwd: object) -> None:
    if isinstance(cwd, str) and cwd and session.cwd is None:
        session.cwd = cwd
        session.project = basename(cwd)


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content.strip()
    if not isinstance(content, list):
        return ""
    parts = []
    for item in content:
        if not isinstance(item, dict):
            continue
        text = item.get("text")
        if item.get("type") in ("input_text", "output_text", "text") and isinstance(text, str):
            if text.strip():
                parts.append(text.strip())
        elif item.get("type") == "input_image":
            parts.append("[image]")
    return "\n".join(parts)


def _user_text(content: object) -> str:
    if isinstance(content, list):
        content = [
            item
            for item in content
            if not (
                isinstance(item, dict)
                and isinstance(item.get("text"), str)
                and item["text"].lstrip().startswith(_HARNESS_PREFIXES)
            )
        ]
    elif isinstance(content, str) and content.lstrip().startswith(_HARNESS_PREFIXES):
        return ""
    return _content_text(content)


def _reasoning(summary: object) -> str:
    if not isinstance(summary, list):
        return ""
    parts = [
        item["text"].strip()
        for item in summary
        if isinstance(item, dict) and isinstance(item.get("text"), str) and item["text"].strip()
    ]
    return "\n".join(parts)


def _output_text(output: object) -> str:
    """A call's output: the shell envelope ``{"output", "metadata": {"exit_code"}}`` unwrapped."""
    prefix = ""
    if isinstance(output, str) and output.startswith('{"output"'):
        try:
            decoded = orjson.loads(output)
        except orjson.JSONDecodeError:
            decoded = None
        if isinstance(decoded, dict) and isinstance(decoded.get("output"), str):
            meta = decoded.get("metadata")
            code = meta.get("exit_code") if isinstance(meta, dict) else None
            if isinstance(code, int) and code != 0:
                prefix = f"ERROR (exit {code}): "
            output = decoded["output"]
    if isinstance(output, list):
        output = _content_text(output)
    elif isinstance(output, dict):
        output = _content_text(output.get("content")) or orjson.dumps(output).decode()
    text = output if isinstance(output, str) else ""
    return prefix + (truncate(text.strip()) or "(no output)")


def _tool_call(
    payload: dict[str, Any], cwd: str | None, where: str, problems: list[str]
) -> ToolCall:
    kind = payload.get("type")
    name = payload.get("name") if isinstance(payload.get("name"), str) else kind
    name = str(name)
    if kind == "local_shell_call":
        action = payload.get("action")
        command = _command(action.get("command") if isinstance(action, dict) else None)
        return _shell_call("local_shell", command, cwd)
    if kind == "web_search_call":
        action = payload.get("action")
        query = action.get("query") if isinstance(action, dict) else None
        return ToolCall("web_search", one_line(query) if isinstance(query, str) else "")
    if kind == "custom_tool_call":
        raw = payload.get("input")
        raw = raw if isinstance(raw, str) else ""
        if name == "apply_patch" or "*** Begin Patch" in raw:
            return _patch_call(name, raw, cwd)
        return ToolCall(name, one_line(raw))

    args_raw = payload.get("arguments")
    args: object = args_raw
    if isinstance(args_raw, str):
        try:
            args = orjson.loads(args_raw)
        except orjson.JSONDecodeError:
            problems.append(f"{where}: {name} arguments are not JSON; kept as text")
            args = {"input": args_raw} if name == "apply_patch" else args_raw
    if isinstance(args, dict):
        if name in ("shell", "container.exec", "local_shell"):
            return _shell_call(name, _command(args.get("command")), cwd)
        if name == "exec_command":
            return _shell_call(name, _command(args.get("cmd", args.get("command"))), cwd)
        if name == "apply_patch":
            patch = args.get("input", args.get("patch"))
            return _patch_call(name, patch if isinstance(patch, str) else "", cwd)
    if isinstance(args, str):
        return ToolCall(name, one_line(args))
    return ToolCall(name, one_line(orjson.dumps(args).decode()))


def _command(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        # ["bash", "-lc", "<script>"] is how the CLI runs everything; the script is the command.
        if len(value) == 3 and basename(value[0]) in _SHELLS and value[1] in ("-lc", "-c", "/c"):
            return str(value[2])
        return shlex.join(value)
    return ""


def _shell_call(name: str, command: str, cwd: str | None) -> ToolCall:
    if "*** Begin Patch" in command:
        # A patch piped through the shell is a file edit, not a command worth remembering.
        return _patch_call(name, command, cwd)
    return ToolCall(name, one_line(command), command=truncate(command) if command else None)


def _patch_call(name: str, patch: str, cwd: str | None) -> ToolCall:
    files = list(dict.fromkeys(relative_to(m, cwd) for m in _PATCH_FILE_RE.findall(patch)))
    return ToolCall(name, "apply_patch " + (", ".join(files) if files else "(no files)"), files)
