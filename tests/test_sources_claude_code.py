from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import shared_data
from transcript_checks import check_tail_property

from ctxmill.sources import claude_code
from ctxmill.sources.base import ParseResult

SID = "7f3c2a10-0000-4000-8000-00000000aaaa"
CWD = "/home/ana/demo"


def rec(type_: str, ts: str = "2026-03-04T09:15:00.000Z", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": type_,
        "sessionId": SID,
        "cwd": CWD,
        "gitBranch": "main",
        "uuid": f"u-{ts}",
        "timestamp": ts,
    }
    base.update(fields)
    return base


def user(text: Any, ts: str = "2026-03-04T09:15:00.000Z", **fields: Any) -> dict[str, Any]:
    return rec("user", ts, message={"role": "user", "content": text}, **fields)


def assistant(
    mid: str,
    *blocks: dict[str, Any],
    ts: str = "2026-03-04T09:15:01.000Z",
    model: str = "claude-sonnet-5",
    **fields: Any,
) -> dict[str, Any]:
    msg = {"id": mid, "role": "assistant", "model": model, "content": list(blocks)}
    return rec("assistant", ts, message=msg, **fields)


def tool_result(content: Any, ts: str = "2026-03-04T09:15:02.000Z", **block: Any) -> dict[str, Any]:
    blk = {"type": "tool_result", "tool_use_id": "toolu_1", "content": content, **block}
    return user([blk], ts)


def text(t: str) -> dict[str, Any]:
    return {"type": "text", "text": t}


def tool_use(name: str, **inp: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": "toolu_1", "name": name, "input": inp}


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in records))
    return path


def roles(result: ParseResult) -> list[str]:
    return [t.role for t in result.sessions[0].turns]


def test_assistant_lines_sharing_a_message_id_make_one_turn(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / f"{SID}.jsonl",
        [
            user("Why does test_parse fail?"),
            assistant("msg_A", {"type": "thinking", "thinking": "t" * 3000, "signature": "SIGXYZ"}),
            rec("progress", data={"type": "hook_progress"}),
            assistant("msg_A", text("Let me read the test.")),
            assistant("msg_A", tool_use("Read", file_path=f"{CWD}/tests/test_parse.py")),
            tool_result("def test_parse(): ..."),
            assistant("msg_B", text("parse('') returns None."), ts="2026-03-04T09:15:05.000Z"),
        ],
    )
    result = claude_code.parse(path)
    session = result.sessions[0]
    assert roles(result) == ["user", "assistant", "tool", "assistant"]
    merged = session.turns[1]
    assert merged.n == 2
    assert merged.text.startswith("(thinking) " + "t" * 1000 + "\n[… 2000 chars elided …]")
    assert "Let me read the test." in merged.text
    assert "→ Read: tests/test_parse.py" in merged.text
    assert "SIGXYZ" not in merged.text
    assert merged.files == ["tests/test_parse.py"]
    assert session.files_touched == ["tests/test_parse.py"]
    assert result.problems == []


def test_parallel_calls_with_interleaved_results_stay_in_file_order(tmp_path: Path) -> None:
    # "Consecutive" means no turn-making record in between: a tool result closes the turn.
    path = write_jsonl(
        tmp_path / f"{SID}.jsonl",
        [
            user("go"),
            assistant("msg_A", tool_use("Read", file_path=f"{CWD}/a.py")),
            tool_result("a"),
            assistant("msg_A", tool_use("Read", file_path=f"{CWD}/b.py")),
            tool_result("b"),
        ],
    )
    session = claude_code.parse(path).sessions[0]
    assert [(t.role, t.files) for t in session.turns] == [
        ("user", []),
        ("assistant", ["a.py"]),
        ("tool", []),
        ("assistant", ["b.py"]),
        ("tool", []),
    ]


def test_user_records_are_classified(tmp_path: Path) -> None:
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "A" * 4096},
    }
    path = write_jsonl(
        tmp_path / f"{SID}.jsonl",
        [
            user("Caveat: local commands follow.", isMeta=True),
            user("<local-command-caveat>Caveat: …</local-command-caveat>"),
            user(
                "<command-name>/review</command-name>\n<command-message>review</command-message>"
                "\n<command-args>src/auth.py</command-args>"
            ),
            user("<local-command-stdout>(no content)</local-command-stdout>"),
            user([text("Skill body injected by the harness")], isMeta=True),
            user("Fix the login bug<system-reminder>secret reminder</system-reminder>"),
            assistant("msg_S", text("API Error: overloaded"), model="<synthetic>"),
            user([text("see screenshot"), image]),
            tool_result([text("out"), image], is_error=True),
            user(
                "This session is being continued from a previous conversation.",
                isCompactSummary=True,
            ),
            rec("attachment", attachment={"type": "queued_command", "prompt": "also run lint"}),
            rec("attachment", attachment={"type": "skill_listing", "content": "many skills"}),
            rec("system", subtype="compact_boundary", content="Conversation compacted"),
            user(
                [{"type": "tool_result", "tool_use_id": "t", "content": "x" * 10_000}],
                toolUseResult={"stdout": "MARKER_NEVER_READ"},
            ),
        ],
    )
    session = claude_code.parse(path).sessions[0]
    got = [(t.role, t.text) for t in session.turns]
    assert got[0] == ("user", "/review src/auth.py")
    assert got[1] == ("user", "Fix the login bug")
    assert got[2] == ("user", "see screenshot\n[image image/png 3 KB]")
    assert got[3] == ("tool", "ERROR: out\n[image image/png 3 KB]")
    assert got[4][0] == "summary" and got[4][1].startswith("This session is being continued")
    assert got[5] == ("user", "also run lint")
    assert got[6][0] == "tool" and "[… 7000 chars elided …]" in got[6][1]
    assert len(got) == 7
    assert all("MARKER_NEVER_READ" not in t.text for t in session.turns)
    assert [t.n for t in session.turns] == list(range(1, 8))


def test_tool_call_summaries() -> None:
    bash = claude_code.tool_call("Bash", {"command": "pytest -q\n  tests/", "timeout": 5}, CWD)
    assert (bash.summary, bash.command, bash.files) == (
        "pytest -q tests/",
        "pytest -q\n  tests/",
        [],
    )
    write = claude_code.tool_call(
        "Write", {"file_path": f"{CWD}/src/x.py", "content": "BIG" * 999}, CWD
    )
    assert (write.summary, write.files) == ("src/x.py", ["src/x.py"])
    outside = claude_code.tool_call("Edit", {"file_path": "/etc/hosts", "old_string": "a"}, CWD)
    assert outside.files == ["/etc/hosts"]
    nb = claude_code.tool_call("NotebookEdit", {"notebook_path": f"{CWD}/n.ipynb"}, CWD)
    assert nb.files == ["n.ipynb"]
    grep = claude_code.tool_call("Grep", {"pattern": "def parse", "path": f"{CWD}/src"}, CWD)
    assert grep.summary == "def parse in src"
    task = claude_code.tool_call(
        "Task", {"description": "Find callers", "prompt": "long…", "subagent_type": "Explore"}, CWD
    )
    assert task.summary == "Find callers (Explore)"
    mcp = claude_code.tool_call(
        "mcp__db__query", {"sql": "select 1", "rows": list(range(500))}, CWD
    )
    assert mcp.summary.startswith('{"sql":"select 1"') and len(mcp.summary) <= 200
    odd = claude_code.tool_call(None, "not a dict", CWD)
    assert odd.name == "unknown" and odd.summary == '"not a dict"'


def test_metadata_title_headless_and_time_range(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / f"{SID}.jsonl",
        [
            {"type": "summary", "summary": "Old title", "leafUuid": "x"},
            user("first", ts="2026-03-04T09:15:00.000Z", gitBranch="", entrypoint="sdk-cli"),
            user("second", ts="2026-03-04T09:14:00.000Z", gitBranch="feature"),
            user("third", ts="2026-03-04T09:20:00.000Z", cwd="/elsewhere"),
            {"type": "ai-title", "aiTitle": "Fix empty-input parse", "sessionId": SID},
        ],
    )
    session = claude_code.parse(path).sessions[0]
    assert session.id == SID and session.agent == "claude-code"
    assert (session.cwd, session.project, session.git_branch) == (CWD, "demo", "feature")
    assert (session.started, session.ended) == (
        "2026-03-04T09:14:00.000Z",
        "2026-03-04T09:20:00.000Z",
    )
    assert session.title == "Fix empty-input parse"
    assert session.headless is True

    plain = write_jsonl(tmp_path / "other.jsonl", [user("hi")])
    assert claude_code.parse(plain).sessions[0].headless is False


def test_subagent_files_are_sessions_with_a_parent(tmp_path: Path) -> None:
    records = [
        user("List files that import parse().", isSidechain=True, agentId="a01"),
        assistant("msg_1", text("Found two."), isSidechain=True, agentId="a01"),
    ]
    nested = write_jsonl(tmp_path / SID / "subagents" / "agent-a01.jsonl", records)
    flat = write_jsonl(tmp_path / "agent-a02.jsonl", records)
    for path, sid in ((nested, "agent-a01"), (flat, "agent-a02")):
        result = claude_code.parse(path)
        assert len(result.sessions) == 1
        session = result.sessions[0]
        assert (session.id, session.parent_id) == (sid, SID)
        assert roles(result) == ["user", "assistant"]


def test_inline_sidechains_do_not_disturb_main_numbering(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / f"{SID}.jsonl",
        [
            user("main prompt"),
            assistant("msg_1", tool_use("Task", description="explore")),
            user("sub prompt", isSidechain=True),
            assistant("msg_2", text("sub answer"), isSidechain=True),
            tool_result("explored"),
            assistant("msg_3", text("done")),
        ],
    )
    result = claude_code.parse(path)
    main, side = result.sessions
    assert [(t.n, t.role) for t in main.turns] == [
        (1, "user"),
        (2, "assistant"),
        (3, "tool"),
        (4, "assistant"),
    ]
    assert (side.id, side.parent_id) == (f"{SID}.sidechain", SID)
    assert [(t.n, t.text) for t in side.turns] == [(1, "sub prompt"), (2, "sub answer")]
    assert (result.resume_offset, result.resume_turn) == (0, 1)


def test_damaged_input_costs_one_problem_line_each(tmp_path: Path) -> None:
    huge = "y" * 5_000_000
    path = tmp_path / f"{SID}.jsonl"
    good = [
        json.dumps(r).encode()
        for r in (
            user("hello"),
            tool_result(huge),
            assistant("msg_1", text("ok"), {"type": "mystery_block"}),
            user({"weird": "shape"}),
        )
    ]
    path.write_bytes(
        good[0]
        + b"\n"
        + b"{broken json\n"
        + b"\xff\xfe\x00binary junk\n"
        + b"[1, 2, 3]\n"
        + good[1]
        + b"\n"
        + good[2]
        + b"\n"
        + good[3]
        + b"\n"
        + b'{"type":"user","message":{"role":"user","content":"half-writ'
    )
    result = claude_code.parse(path)
    session = result.sessions[0]
    assert roles(result) == ["user", "tool", "assistant"]
    assert len(session.turns[1].text) < 3100
    assert result.offset == path.stat().st_size - len(
        b'{"type":"user","message":{"role":"user","content":"half-writ'
    )
    assert len(result.problems) == 5
    assert any("unknown assistant block 'mystery_block'" in p for p in result.problems)
    assert any("unknown shape" in p for p in result.problems)
    assert session.problems == result.problems


def test_bad_utf8_inside_a_record_keeps_the_record(tmp_path: Path) -> None:
    path = tmp_path / f"{SID}.jsonl"
    line = json.dumps(user("caf__")).encode().replace(b"caf__", b"caf\xe9")
    path.write_bytes(line + b"\n")
    result = claude_code.parse(path)
    assert [t.text for t in result.sessions[0].turns] == ["caf\ufffd"]
    assert len(result.problems) == 1


def test_empty_and_missing_content(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    result = claude_code.parse(empty)
    assert result.sessions[0].turns == [] and result.problems == []
    assert (result.offset, result.resume_offset, result.resume_turn) == (0, 0, 1)


def test_gzip_copy_parses_like_the_original(tmp_path: Path) -> None:
    records = [user("hello"), assistant("msg_1", text("hi"))]
    plain = write_jsonl(tmp_path / f"{SID}.jsonl", records)
    packed = tmp_path / "archive" / f"{SID}.jsonl.gz"
    packed.parent.mkdir()
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    a, b = claude_code.parse(plain), claude_code.parse(packed)
    assert b.sessions[0].id == SID
    assert a.sessions[0].turns == b.sessions[0].turns
    assert claude_code.is_claude_code(packed)


def test_tail_property_on_a_small_fixture(tmp_path: Path) -> None:
    src = write_jsonl(
        tmp_path / "src" / f"{SID}.jsonl",
        [
            user("go"),
            assistant("msg_A", {"type": "thinking", "thinking": "plan"}),
            assistant("msg_A", text("reading")),
            assistant("msg_A", tool_use("Read", file_path=f"{CWD}/a.py")),
            tool_result("a"),
            assistant("msg_B", text("done")),
            assistant("msg_B", text("really")),
        ],
    )
    size = src.stat().st_size
    assert check_tail_property(src, tmp_path, claude_code.parse, list(range(0, size + 1, 37))) > 3


def test_sniff(tmp_path: Path) -> None:
    cc = write_jsonl(tmp_path / "a.jsonl", [user("hi")])
    codex = write_jsonl(
        tmp_path / "b.jsonl", [{"timestamp": "t", "type": "session_meta", "payload": {"id": "x"}}]
    )
    gemini = write_jsonl(
        tmp_path / "c.jsonl",
        [{"sessionId": "s", "projectHash": "h"}, {"id": "1", "type": "user", "content": "hi"}],
    )
    junk = tmp_path / "d.jsonl"
    junk.write_bytes(b"\x00\x01garbage\n")
    assert claude_code.is_claude_code(cc)
    assert not claude_code.is_claude_code(codex)
    assert not claude_code.is_claude_code(gemini)
    assert not claude_code.is_claude_code(junk)
    assert not claude_code.is_claude_code(tmp_path / "missing.jsonl")


# --- real transcripts (third-party data; skipped when absent) ---------------------------------

MAROT_MAIN = [
    "4d5611e5-241a-462a-8d15-5122611a9569",
    "8463c716-a2ea-4c14-9efa-87158ebd9f20",
    "ae4a77f8-aedd-4bc1-888f-c94edc91af04",
]


def real_claude_files() -> list[Path]:
    root = shared_data("claude-code")
    return sorted(
        p
        for p in root.rglob("*.jsonl")
        if p.name not in ("beads_issues.jsonl", "codex_rollout.jsonl", "gemini_cli_session.jsonl")
    )


def test_every_real_claude_file_parses_cleanly() -> None:
    files = real_claude_files()
    assert len(files) >= 17
    for path in files:
        assert claude_code.is_claude_code(path), path
        result = claude_code.parse(path)
        assert result.problems == [], path
        assert result.offset == path.stat().st_size
        session = result.sessions[0]
        assert session.turns, path
        assert [t.n for t in session.turns] == list(range(1, len(session.turns) + 1))
        assert session.turns[0].role == "user", path
        assert session.started and session.ended and session.started <= session.ended
        assert session.cwd and session.project
        for turn in session.turns:
            assert turn.role in ("user", "assistant", "tool", "summary")
            assert turn.text.strip(), (path, turn.n)
            assert len(turn.text) < 20_000, (path, turn.n)
        calls = [c for t in session.turns for c in t.tool_calls]
        for call in calls:
            assert call.summary, (path, call)
            if call.name in ("Read", "Write", "Edit", "MultiEdit"):
                assert call.files, (path, call)
            if call.name == "Bash":
                assert call.command, (path, call)
        names = {c.name for c in calls}
        assert bool(session.files_touched) == bool(names & {"Read", "Write", "Edit", "MultiEdit"})
        assert bool(session.commands) == ("Bash" in names)


def test_real_marot_sessions() -> None:
    root = shared_data("claude-code", "marot_spotter")
    for sid in MAROT_MAIN:
        result = claude_code.parse(root / f"{sid}.jsonl")
        session = result.sessions[0]
        assert session.id == sid and not session.headless
        assert [t.role for t in session.turns].count("summary") == 1
        summary = next(t for t in session.turns if t.role == "summary")
        assert summary.text.startswith("This session is being continued")
        assert session.turns[0].text.startswith("Work on bead spotter-")
        assert len(session.turns) > 250
        assert len(session.files_touched) >= 10 and len(session.commands) >= 30
        assert session.git_branch and session.git_branch.startswith("spotter-")
        assert all(
            not f.startswith("/home/USER/projects/spotter-worktrees/") or "/" in f
            for f in session.files_touched
        )
        for sub in (root / sid / "subagents").glob("agent-*.jsonl"):
            child = claude_code.parse(sub).sessions[0]
            assert child.parent_id == sid and child.id == sub.stem


def test_real_inline_sidechains_and_legacy_summary_title() -> None:
    root = shared_data("claude-code", "d-kimuson_claude-code-viewer")
    result = claude_code.parse(root / "fe5e1c67-53e7-4862-81ae-d0e013e3270b.jsonl")
    main, side = result.sessions
    assert main.title == "Empty Repo Setup: CLAUDE.md Foundation Created"
    assert main.turns[0].text.startswith("/orchestrator create TODO app")
    assert side.parent_id == main.id and len(side.turns) > 100
    assert side.files_touched and side.commands
    assert (result.resume_offset, result.resume_turn) == (0, 1)


@pytest.mark.parametrize("name", [f"{sid}.jsonl" for sid in MAROT_MAIN])
def test_tail_property_on_real_marot_files(name: str, tmp_path: Path) -> None:
    source = shared_data("claude-code", "marot_spotter", name)
    size = source.stat().st_size
    cuts = [size * k // 9 + 13 for k in range(9)] + [size - 1]
    assert check_tail_property(source, tmp_path, claude_code.parse, cuts) >= 8


def test_tail_property_on_other_real_files(tmp_path: Path) -> None:
    files = [
        shared_data(
            "claude-code", "marot_spotter", MAROT_MAIN[0], "subagents", "agent-a2898e3.jsonl"
        ),
        shared_data("claude-code", "Mai0313_VibeCodingTracker", "claude_code_session.jsonl"),
        shared_data(
            "claude-code",
            "d-kimuson_claude-code-viewer",
            "5c0375b4-57a5-4f26-b12d-d022ee4e51b7.jsonl",
        ),
    ]
    for i, source in enumerate(files):
        size = source.stat().st_size
        work = tmp_path / str(i)
        work.mkdir()
        check_tail_property(source, work, claude_code.parse, [size // 4, size // 2, size * 3 // 4])


def test_real_copy_under_another_name_keeps_turns(tmp_path: Path) -> None:
    source = shared_data("claude-code", "marot_spotter", "short.jsonl")
    copy = tmp_path / "55604662-cf2a-4331-851a-ec234028f8ca.jsonl"
    shutil.copy(source, copy)
    a, b = claude_code.parse(source), claude_code.parse(copy)
    assert a.sessions[0].turns == b.sessions[0].turns
    assert b.sessions[0].id == copy.stem
