from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import shared_data
from transcript_checks import check_tail_property

from ctxmill.sources import codex

RID = "0199aaaa-bbbb-7ccc-8ddd-eeeeffff0001"
CWD = "/home/ana/demo"
NAME = f"rollout-2026-02-10T14-00-00-{RID}.jsonl"


def line(
    type_: str, payload: dict[str, Any], ts: str = "2026-02-10T14:00:01.000Z"
) -> dict[str, Any]:
    return {"timestamp": ts, "type": type_, "payload": payload}


def item(payload: dict[str, Any], ts: str = "2026-02-10T14:00:02.000Z") -> dict[str, Any]:
    return line("response_item", payload, ts)


def message(role: str, *texts: str, kind: str = "input_text") -> dict[str, Any]:
    return item(
        {"type": "message", "role": role, "content": [{"type": kind, "text": t} for t in texts]}
    )


def call(name: str, args: dict[str, Any], call_id: str = "c1") -> dict[str, Any]:
    return item(
        {"type": "function_call", "name": name, "arguments": json.dumps(args), "call_id": call_id}
    )


def output(text: str, call_id: str = "c1") -> dict[str, Any]:
    return item({"type": "function_call_output", "call_id": call_id, "output": text})


def meta(**extra: Any) -> dict[str, Any]:
    payload = {
        "id": RID,
        "timestamp": "2026-02-10T14:00:00.050Z",
        "cwd": CWD,
        "originator": "codex_cli_rs",
        "cli_version": "0.128.0",
        "source": "cli",
        "base_instructions": {"text": "BASE_INSTRUCTIONS_MARKER"},
        "git": {"branch": "main", "commit_hash": "abc1234"},
    }
    payload.update(extra)
    return line("session_meta", payload, "2026-02-10T14:00:00.100Z")


def write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in records))
    return path


def rollout(tmp_path: Path) -> Path:
    patch = (
        "*** Begin Patch\n*** Update File: src/parse.py\n@@\n-    return None\n+    return []\n"
        "*** Add File: tests/test_empty.py\n+def test(): pass\n*** End Patch\n"
    )
    return write(
        tmp_path / "sessions" / "2026" / "02" / "10" / NAME,
        [
            meta(),
            message("user", "<environment_context><cwd>/home/ana/demo</cwd></environment_context>"),
            message("developer", "<permissions instructions>sandboxed</permissions instructions>"),
            line(
                "turn_context",
                {
                    "turn_id": "t1",
                    "cwd": CWD,
                    "model": "gpt-5.5",
                    "developer_instructions": "DEV_MARKER",
                },
            ),
            line("event_msg", {"type": "user_message", "message": "Why does test_parse fail?"}),
            message("user", "Why does test_parse fail?"),
            item(
                {
                    "type": "reasoning",
                    "summary": [{"type": "summary_text", "text": "Reading"}],
                    "encrypted_content": "ENCRYPTED_MARKER",
                }
            ),
            item({"type": "reasoning", "summary": [], "encrypted_content": "gAAAA"}),
            call("exec_command", {"cmd": "cat tests/test_parse.py"}),
            output('{"output":"def test_parse(): ...","metadata":{"exit_code":0}}'),
            call("shell", {"command": ["bash", "-lc", "pytest -q"]}, "c2"),
            output('{"output":"1 failed","metadata":{"exit_code":1}}', "c2"),
            item(
                {"type": "custom_tool_call", "name": "apply_patch", "input": patch, "call_id": "c3"}
            ),
            item({"type": "custom_tool_call_output", "call_id": "c3", "output": "Success."}),
            item(
                {
                    "type": "local_shell_call",
                    "call_id": "c4",
                    "status": "completed",
                    "action": {"type": "exec", "command": ["git", "status", "--short"]},
                }
            ),
            output("", "c4"),
            line("event_msg", {"type": "token_count", "info": None, "rate_limits": None}),
            message("assistant", "parse('') now returns [].", kind="output_text"),
            line("event_msg", {"type": "agent_message", "message": "parse('') now returns []."}),
            item(
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_image", "image_url": "data:image/png;base64,IMAGE_MARKER"},
                        {"type": "input_text", "text": "and this screenshot?"},
                    ],
                }
            ),
            call("mcp__db__query", {"sql": "select 1"}, "c5"),
            line(
                "compacted", {"message": "Summary of the work so far."}, "2026-02-10T14:05:00.000Z"
            ),
        ],
    )


def test_rollout_turns(tmp_path: Path) -> None:
    path = rollout(tmp_path)
    result = codex.parse(path)
    assert result.problems == []
    (session,) = result.sessions
    assert (session.id, session.agent, session.cwd, session.project, session.git_branch) == (
        RID,
        "codex",
        CWD,
        "demo",
        "main",
    )
    assert (session.started, session.ended) == (
        "2026-02-10T14:00:00.050Z",
        "2026-02-10T14:05:00.000Z",
    )
    assert not session.headless and session.parent_id is None
    got = [(t.n, t.role, t.text) for t in session.turns]
    assert got[0] == (1, "user", "Why does test_parse fail?")
    assert got[1] == (2, "assistant", "(thinking) Reading\n→ exec_command: cat tests/test_parse.py")
    assert got[2] == (3, "tool", "def test_parse(): ...")
    assert got[3] == (4, "assistant", "→ shell: pytest -q")
    assert got[4] == (5, "tool", "ERROR (exit 1): 1 failed")
    assert got[5][1:] == (
        "assistant",
        "→ apply_patch: apply_patch src/parse.py, tests/test_empty.py",
    )
    assert got[6][1:] == ("tool", "Success.")
    assert got[7][1:] == ("assistant", "→ local_shell: git status --short")
    assert got[8][1:] == ("tool", "(no output)")
    assert got[9][1:] == ("assistant", "parse('') now returns [].")
    assert got[10][1:] == ("user", "[image]\nand this screenshot?")
    assert got[11][1:] == ("assistant", '→ mcp__db__query: {"sql":"select 1"}')
    assert got[12][1:] == ("summary", "Summary of the work so far.")
    assert len(got) == 13
    assert session.files_touched == ["src/parse.py", "tests/test_empty.py"]
    assert session.commands == ["cat tests/test_parse.py", "pytest -q", "git status --short"]
    everything = "\n".join(t.text for t in session.turns)
    for marker in (
        "BASE_INSTRUCTIONS",
        "ENCRYPTED_MARKER",
        "DEV_MARKER",
        "IMAGE_MARKER",
        "environment_context",
        "permissions instructions",
    ):
        assert marker not in everything
    assert codex.is_codex(path)
    assert (result.resume_offset, result.resume_turn) != (0, 1)


def test_patch_through_the_shell_is_a_file_edit(tmp_path: Path) -> None:
    script = (
        "applypatch << 'PATCH'\n*** Begin Patch\n*** Update File: go.mod\n@@\n-a\n+b\n"
        "*** End Patch\nPATCH"
    )
    path = write(
        tmp_path / NAME,
        [meta(), message("user", "bump go"), call("shell", {"command": ["bash", "-lc", script]})],
    )
    session = codex.parse(path).sessions[0]
    (c,) = session.turns[1].tool_calls
    assert (c.files, c.command, c.summary) == (["go.mod"], None, "apply_patch go.mod")


def test_headless_subagent_and_id_fallbacks(tmp_path: Path) -> None:
    spawn = {"subagent": {"thread_spawn": {"parent_thread_id": "parent-1", "depth": 1}}}
    sub = write(tmp_path / "a" / NAME, [meta(source=spawn), message("user", "hi")])
    session = codex.parse(sub).sessions[0]
    assert session.parent_id == "parent-1" and not session.headless
    headless = write(tmp_path / "b" / NAME, [meta(originator="codex_exec", source="exec")])
    assert codex.parse(headless).sessions[0].headless
    nameless = write(tmp_path / "c" / NAME, [message("user", "no meta line")])
    assert codex.parse(nameless).sessions[0].id == RID
    plain = write(tmp_path / "d" / "my-export.jsonl", [message("user", "no meta")])
    assert codex.parse(plain).sessions[0].id == "my-export"
    copied = meta(id="older-session", cwd="/other")
    twice = write(tmp_path / "e" / NAME, [meta(), message("user", "hi"), copied])
    session = codex.parse(twice).sessions[0]
    assert (session.id, session.cwd) == (RID, CWD)


def test_resumed_parse_still_knows_the_session(tmp_path: Path) -> None:
    path = rollout(tmp_path)
    first = codex.parse(path)
    again = codex.parse(path, start=first.resume_offset, first_turn=first.resume_turn)
    session = again.sessions[0]
    assert (session.id, session.cwd, session.git_branch) == (RID, CWD, "main")
    assert [t.n for t in session.turns] == [first.resume_turn]


def test_damaged_lines(tmp_path: Path) -> None:
    path = tmp_path / NAME
    good = json.dumps(message("user", "hello")).encode()
    bad_args = json.dumps(
        item({"type": "function_call", "name": "shell", "arguments": "{not json", "call_id": "x"})
    ).encode()
    path.write_bytes(
        json.dumps(meta()).encode()
        + b"\n"
        + b"{oops\n"
        + b"\xff\xfe junk\n"
        + b'{"timestamp":"t","type":"response_item","payload":"not an object"}\n'
        + good
        + b"\n"
        + bad_args
        + b"\n"
        + b'{"timestamp":"t","type":"response_item","payload":{"type":"message"'
    )
    result = codex.parse(path)
    assert [t.role for t in result.sessions[0].turns] == ["user", "assistant"]
    assert result.sessions[0].turns[1].text == "→ shell: {not json"
    assert len(result.problems) == 4
    assert result.offset < path.stat().st_size


def test_tail_property_on_a_fixture(tmp_path: Path) -> None:
    src = rollout(tmp_path / "src")
    size = src.stat().st_size
    assert check_tail_property(src, tmp_path, codex.parse, list(range(0, size + 1, 61))) > 10


def test_real_rollout() -> None:
    path = shared_data("claude-code", "Mai0313_VibeCodingTracker", "codex_rollout.jsonl")
    assert codex.is_codex(path)
    result = codex.parse(path)
    assert result.problems == []
    session = result.sessions[0]
    assert session.id == "01996135-afde-7911-97f0-d863511eca56"
    assert session.project == "claude-code" and session.git_branch == "main"
    roles = [t.role for t in session.turns]
    assert roles.count("user") == 1 and roles[0] == "user"
    assert "My request for Codex" in session.turns[0].text
    assert roles.count("tool") == 19 and roles.count("assistant") >= 15
    assert {"go.mod", "README.zh-TW.md", "README.zh-CN.md"} <= set(session.files_touched)
    assert "ls -la" in session.commands
    assert all(t.text.strip() for t in session.turns)
    assert all(len(t.text) < 20_000 for t in session.turns)


def test_tail_property_on_the_real_rollout(tmp_path: Path) -> None:
    source = shared_data("claude-code", "Mai0313_VibeCodingTracker", "codex_rollout.jsonl")
    size = source.stat().st_size
    cuts = [size * k // 11 + 7 for k in range(11)]
    assert check_tail_property(source, tmp_path, codex.parse, cuts) >= 9


def test_other_formats_are_not_codex() -> None:
    folder = shared_data("claude-code", "Mai0313_VibeCodingTracker")
    assert not codex.is_codex(folder / "claude_code_session.jsonl")
    assert not codex.is_codex(folder / "gemini_cli_session.jsonl")
