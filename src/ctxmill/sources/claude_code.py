"""Claude Code transcripts (``~/.claude/projects/<slug>/<sessionId>.jsonl``) as Sessions.

What becomes a turn, in file order (turn numbers are what ``[raw:ID#N]`` cites, so they depend
only on the file's bytes):

- a ``user`` record with human text → ``user`` (``isMeta`` records, ``<local-command-caveat>`` and
  bare ``<local-command-stdout>`` records are harness chatter and make no turn; a slash command is
  rendered ``/name args``; ``<system-reminder>`` spans are removed);
- a ``user`` record with ``isCompactSummary`` → ``summary``;
- a ``user`` record holding ``tool_result`` blocks → ``tool`` (truncated; images become a note);
- consecutive ``assistant`` lines sharing ``message.id`` → one ``assistant`` turn (text, thinking
  cut to 1,000 characters, one ``→ Tool: summary`` line per tool call); ``<synthetic>`` harness
  notices are skipped;
- an ``attachment`` of type ``queued_command`` (a prompt typed while the model was busy) → ``user``.

Every other record type makes no turn; ``toolUseResult`` is never read (it duplicates the tool
result and can hold whole files).

Session ids: a main file's id is its stem (the ``sessionId``).  A subagent file
(``<sid>/subagents/**/agent-<id>.jsonl``, or the older flat ``agent-<id>.jsonl``) is its own session
with id ``agent-<id>`` and ``parent_id`` = the ``sessionId`` its records carry.  Older CLI versions
wrote subagent records inline in the main file (``isSidechain: true``); those go into a second
session ``<sid>.sidechain`` with ``parent_id`` = ``<sid>``, so that the main session's turn numbers
are the same whether or not a reader understands sidechains.  Such files come only from CLI
versions that no longer write, so a file holding them always resumes from the top.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from typing import Any

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
    read_first_records,
    relative_to,
    strip_injected,
    truncate,
)

AGENT = "claude-code"

_KNOWN_TYPES = frozenset(
    {
        "user",
        "assistant",
        "system",
        "attachment",
        "summary",
        "ai-title",
        "custom-title",
        "last-prompt",
        "queue-operation",
        "file-history-snapshot",
        "file-history-delta",
        "progress",
        "mode",
        "permission-mode",
    }
)
_ID_KEYS = ("sessionId", "uuid", "leafUuid", "messageId")
_PATH_TOOLS = {
    "Read": "file_path",
    "Write": "file_path",
    "Edit": "file_path",
    "MultiEdit": "file_path",
    "NotebookEdit": "notebook_path",
}
_COMMAND_RE = re.compile(r"<command-(name|args)>(.*?)</command-\1>", re.DOTALL)
_COMMAND_TAGS_RE = re.compile(r"<command-(name|args|message)>.*?</command-\1>", re.DOTALL)
_LOCAL_OUTPUT_RE = re.compile(
    r"\s*<local-command-(stdout|stderr)>.*</local-command-\1>\s*", re.DOTALL
)


def is_claude_code(path: Path) -> bool:
    """True when the file's first records look like a Claude Code transcript."""
    for rec in read_first_records(Path(path)):
        if rec.get("type") in _KNOWN_TYPES and any(k in rec for k in _ID_KEYS):
            return True
    return False


def parse(path: Path, start: int = 0, first_turn: int = 1) -> ParseResult:
    """Parse a Claude Code transcript from byte ``start``, numbering turns from ``first_turn``.

    Re-parsing a grown file with ``start=r.resume_offset, first_turn=r.resume_turn`` yields exactly
    the turns a full parse yields from ``resume_turn`` on.
    """
    path = Path(path)
    sid = file_stem(path)
    is_subagent = sid.startswith("agent-")
    main = TurnBuilder(Session(sid, AGENT, str(path)), first_turn)
    side: TurnBuilder | None = None
    problems: list[str] = []
    offset = start
    titles: dict[str, str] = {}
    first_ts: str | None = None
    last_ts: str | None = None

    name = str(path)
    for line_start, line_end, rec in iter_records(path, start, problems):
        offset = line_end
        if rec is None:
            continue
        ts = rec.get("timestamp")
        if isinstance(ts, str) and ts[:4].isdigit():
            if first_ts is None or ts < first_ts:
                first_ts = ts
            if last_ts is None or ts > last_ts:
                last_ts = ts
        else:
            ts = None
        typ = rec.get("type")
        _note_metadata(main.session, rec, is_subagent)

        if typ in ("summary", "ai-title", "custom-title"):
            key = {"summary": "summary", "ai-title": "aiTitle", "custom-title": "customTitle"}[typ]
            value = rec.get(key)
            if isinstance(value, str) and value.strip():
                titles["custom" if typ == "custom-title" else "auto"] = value.strip()
            continue
        if typ not in ("user", "assistant", "attachment"):
            continue
        where = f"{name}@{line_start}"

        builder = main
        if rec.get("isSidechain") is True and not is_subagent:
            if side is None:
                side = TurnBuilder(Session(f"{sid}.sidechain", AGENT, str(path), parent_id=sid))
            builder = side
        cwd = rec.get("cwd") if isinstance(rec.get("cwd"), str) else builder.session.cwd

        if typ == "assistant":
            _assistant(builder, rec, line_start, ts, cwd, where, problems)
        elif typ == "user":
            _user(builder, rec, line_start, ts, where, problems)
        else:
            _attachment(builder, rec, line_start, ts)

    session = main.session
    session.started, session.ended = first_ts, last_ts
    session.title = titles.get("custom") or titles.get("auto")
    session.problems = problems
    sessions = [session]
    if side is not None:
        for key in ("cwd", "project", "git_branch", "started", "ended", "headless"):
            setattr(side.session, key, getattr(session, key))
        sessions.append(side.session)

    if side is not None and side.session.turns:
        resume_offset, resume_turn = 0, 1
    else:
        resume_offset, resume_turn = main.resume_point(offset)
    return ParseResult(sessions, offset, resume_offset, resume_turn, problems)


def _note_metadata(session: Session, rec: dict[str, Any], is_subagent: bool) -> None:
    # Runs for every record, most of them progress chatter: a field once found is not looked at
    # again.
    if session.cwd is None:
        cwd = rec.get("cwd")
        if isinstance(cwd, str) and cwd:
            session.cwd = cwd
            session.project = basename(cwd)
    if session.git_branch is None:
        branch = rec.get("gitBranch")
        if isinstance(branch, str) and branch:
            session.git_branch = branch
    if rec.get("entrypoint") == "sdk-cli":
        session.headless = True
    if is_subagent and session.parent_id is None:
        parent = rec.get("sessionId")
        if isinstance(parent, str) and parent:
            session.parent_id = parent


def _user(
    b: TurnBuilder,
    rec: dict[str, Any],
    offset: int,
    ts: str | None,
    where: str,
    problems: list[str],
) -> None:
    if rec.get("isMeta") is True:
        return
    msg = rec.get("message")
    content = msg.get("content") if isinstance(msg, dict) else None
    if isinstance(content, list) and any(
        isinstance(blk, dict) and blk.get("type") == "tool_result" for blk in content
    ):
        b.add(offset, "tool", _tool_results(content, where, problems), ts)
        return
    text = _content_text(content, where, problems)
    if text is None:
        return
    if rec.get("isCompactSummary") is True:
        text = strip_injected(text).strip()
        if text:
            b.add(offset, "summary", text, ts)
        return
    text = _human_text(text)
    if text:
        b.add(offset, "user", text, ts)


def _assistant(
    b: TurnBuilder,
    rec: dict[str, Any],
    offset: int,
    ts: str | None,
    cwd: str | None,
    where: str,
    problems: list[str],
) -> None:
    msg = rec.get("message")
    if not isinstance(msg, dict):
        problems.append(f"{where}: assistant record without a message, skipped")
        return
    if msg.get("model") == "<synthetic>":
        return
    content = msg.get("content")
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    if not isinstance(content, list):
        problems.append(f"{where}: assistant content of unknown shape, skipped")
        return
    parts: list[str] = []
    calls: list[ToolCall] = []
    for blk in content:
        kind = blk.get("type") if isinstance(blk, dict) else None
        if kind == "text":
            text = blk.get("text")
            if isinstance(text, str) and text.strip():
                parts.append(text.strip())
        elif kind == "thinking":
            thought = blk.get("thinking")
            if isinstance(thought, str) and thought.strip():
                parts.append("(thinking) " + truncate(thought.strip(), head=1000, tail=0))
        elif kind == "tool_use":
            call = tool_call(blk.get("name"), blk.get("input"), cwd)
            calls.append(call)
            parts.append(f"→ {call.name}: {call.summary}")
            # A plan is the densest record of what was decided; keep it, bounded.
            inp = blk.get("input")
            plan = (
                inp.get("plan") if call.name == "ExitPlanMode" and isinstance(inp, dict) else None
            )
            if isinstance(plan, str) and plan.strip():
                parts.append(truncate(plan.strip()))
        elif kind == "redacted_thinking":
            continue
        else:
            problems.append(f"{where}: unknown assistant block {kind!r} skipped")
    if not parts:
        return
    mid = msg.get("id")
    key = mid if isinstance(mid, str) and mid else None
    b.add_or_extend(key, offset, "assistant", "\n".join(parts), ts, calls)


def _attachment(b: TurnBuilder, rec: dict[str, Any], offset: int, ts: str | None) -> None:
    att = rec.get("attachment")
    if not isinstance(att, dict) or att.get("type") != "queued_command":
        return
    text = _content_text(att.get("prompt"), None, [])
    text = _human_text(text) if text else None
    if text:
        b.add(offset, "user", text, ts)


def _content_text(content: object, where: str | None, problems: list[str]) -> str | None:
    """Human-visible text of a string or block-list content; None for an unknown shape."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        if where:
            problems.append(f"{where}: message content of unknown shape, skipped")
        return None
    parts: list[str] = []
    for blk in content:
        if not isinstance(blk, dict):
            continue
        kind = blk.get("type")
        if kind == "text" and isinstance(blk.get("text"), str):
            parts.append(blk["text"])
        elif kind == "image":
            parts.append(_image_note(blk))
        elif where:
            problems.append(f"{where}: unknown user block {kind!r} skipped")
    return "\n".join(parts)


def _human_text(text: str) -> str:
    if "<local-command-caveat>" in text:
        return ""
    text = strip_injected(text)
    if "<command-name>" in text:
        found = {m[1]: m[2] for m in _COMMAND_RE.finditer(text)}
        rest = _COMMAND_TAGS_RE.sub("", text).strip()
        command = " ".join(
            x for x in (found.get("name", "").strip(), found.get("args", "").strip()) if x
        )
        return f"{command}\n{rest}" if rest else command
    if "<local-command-" in text and _LOCAL_OUTPUT_RE.fullmatch(text):
        return ""
    return text.strip()


def _tool_results(content: list[Any], where: str, problems: list[str]) -> str:
    parts: list[str] = []
    for blk in content:
        if not isinstance(blk, dict) or blk.get("type") != "tool_result":
            continue
        body = blk.get("content")
        if isinstance(body, str):
            text = body
        elif isinstance(body, list):
            pieces = []
            for item in body:
                kind = item.get("type") if isinstance(item, dict) else None
                if kind == "text" and isinstance(item.get("text"), str):
                    pieces.append(item["text"])
                elif kind == "image":
                    pieces.append(_image_note(item))
                elif kind == "tool_reference":
                    pieces.append(f"[tool {item.get('tool_name', '?')}]")
                else:
                    problems.append(f"{where}: unknown tool_result item {kind!r} skipped")
            text = "\n".join(pieces)
        elif body is None:
            text = ""
        else:
            problems.append(f"{where}: tool_result content of unknown shape, skipped")
            text = ""
        text = truncate(strip_injected(text).strip()) or "(no output)"
        parts.append(f"ERROR: {text}" if blk.get("is_error") is True else text)
    return "\n".join(parts)


def _image_note(blk: dict[str, Any]) -> str:
    src = blk.get("source")
    src = src if isinstance(src, dict) else {}
    data = src.get("data")
    size = len(data) * 3 // 4 // 1024 if isinstance(data, str) else 0
    return f"[image {src.get('media_type', 'unknown')} {size} KB]"


def tool_call(name: object, args: object, cwd: str | None) -> ToolCall:
    """Reduce a ``tool_use`` block to a :class:`ToolCall`; large inputs never enter the summary."""
    tool = name if isinstance(name, str) and name else "unknown"
    inp: dict[str, Any] = args if isinstance(args, dict) else {}

    text = partial(first_text, inp)

    if tool in ("Bash", "PowerShell") and text("command"):
        command = text("command")
        return ToolCall(tool, one_line(command), command=truncate(command))
    if tool in _PATH_TOOLS and text(_PATH_TOOLS[tool]):
        rel = relative_to(text(_PATH_TOOLS[tool]), cwd)
        return ToolCall(tool, rel, files=[rel])
    if tool in ("Glob", "Grep") and text("pattern"):
        where = f" in {relative_to(text('path'), cwd)}" if text("path") else ""
        return ToolCall(tool, one_line(text("pattern") + where))
    if tool in ("Task", "Agent") and text("description"):
        kind = f" ({text('subagent_type')})" if text("subagent_type") else ""
        return ToolCall(tool, one_line(text("description") + kind))
    if tool == "WebSearch" and text("query"):
        return ToolCall(tool, one_line(text("query")))
    if tool == "WebFetch" and text("url"):
        return ToolCall(tool, one_line(text("url")))
    if tool == "ExitPlanMode" and text("plan"):
        first = next((ln for ln in text("plan").splitlines() if ln.strip()), "")
        return ToolCall(tool, one_line(first.lstrip("# ")))
    return ToolCall(tool, compact_json(args))
