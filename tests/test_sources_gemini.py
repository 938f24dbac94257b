"""Gemini CLI chats: JSONL with updates and rewinds, the legacy JSON document, discovery, ingest."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import shared_data

from ctxmill import sources
from ctxmill.config import Config, discover_agent_dirs
from ctxmill.ingest import ingest, reindex
from ctxmill.sources import gemini
from ctxmill.store import Filters, open_store

SID = "5e1d0c2b-1111-4222-8333-444455556666"
ROOT = "/home/ana/demo"
EXE = shutil.which("ctxmill", path=str(Path(sys.executable).parent)) or "ctxmill"
SECRET = "AKIA" + "ZXCVBNMASDFGHJKL"


def meta(**extra: Any) -> dict[str, Any]:
    base = {
        "sessionId": SID,
        "projectHash": hashlib.sha256(ROOT.encode()).hexdigest(),
        "startTime": "2026-01-20T08:00:00.000Z",
        "lastUpdated": "2026-01-20T08:00:00.000Z",
        "kind": "main",
    }
    base.update(extra)
    return base


def msg(
    mid: str, kind: str, content: Any, ts: str = "2026-01-20T08:00:05.000Z", **extra: Any
) -> dict[str, Any]:
    return {"id": mid, "timestamp": ts, "type": kind, "content": content, **extra}


def call(
    cid: str, name: str, args: dict[str, Any], output: str, status: str = "success"
) -> dict[str, Any]:
    key = "error" if status == "error" else "output"
    return {
        "id": cid,
        "name": name,
        "args": args,
        "status": status,
        "timestamp": "2026-01-20T08:00:08.000Z",
        "result": [{"functionResponse": {"id": cid, "name": name, "response": {key: output}}}],
        "resultDisplay": "DISPLAY_MARKER",
    }


def reply(
    mid: str, text: str, calls: list[dict[str, Any]] | None = None, **extra: Any
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "model": "gemini-3-pro",
        "thoughts": [
            {"subject": "Plan", "description": "Read the failing test", "timestamp": "t"},
            {"subject": "", "description": "then run it", "timestamp": "t"},
        ],
        "tokens": {"input": 4100, "output": 60, "cached": 0, "total": 4160},
    }
    if calls is not None:
        fields["toolCalls"] = calls
    fields.update(extra)
    return msg(mid, "gemini", text, "2026-01-20T08:00:09.000Z", **fields)


def chat_dir(home: Path, slug: str = "demo") -> Path:
    folder = home / ".gemini" / "tmp" / slug
    (folder / "chats").mkdir(parents=True, exist_ok=True)
    (folder / ".project_root").write_text(ROOT + "\n")
    return folder / "chats"


def write_jsonl(path: Path, records: list[Any], tail: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [r if isinstance(r, bytes) else json.dumps(r).encode() for r in records]
    path.write_bytes(b"".join(line + b"\n" for line in lines) + tail)
    return path


def chat(folder: Path) -> Path:
    calls = [
        call(
            "c1", "read_file", {"file_path": f"{ROOT}/tests/test_parse.py"}, "def test_parse(): ..."
        ),
        call("c2", "run_shell_command", {"command": "pytest -q tests"}, "1 failed", "error"),
        call(
            "c3",
            "replace",
            {"file_path": "src/parse.py", "old_string": "OLD_MARKER", "new_string": "[]"},
            "Successfully modified file",
        ),
    ]
    referenced = (
        "Why does test_parse fail? @tests/test_parse.py\n--- Content from referenced files ---\n"
        "Content from @tests/test_parse.py:\nREFERENCED_MARKER\n--- End of content ---"
    )
    return write_jsonl(
        folder / "session-2026-01-20T08-00-5e1d0c2b.jsonl",
        [
            meta(),
            msg("i1", "info", "Empty GEMINI.md created."),
            {"$set": {"lastUpdated": "2026-01-20T08:00:02.000Z"}},
            msg("m1", "user", [{"text": referenced}]),
            reply("m2", ""),
            {"$set": {"lastUpdated": "2026-01-20T08:00:09.000Z"}},
            # The same message again, now with its tool calls: it replaces the first copy.
            reply("m2", "Let me read the test.", calls),
            msg(
                "m3",
                "user",
                [{"text": "You are an AI agent that ... INIT_TEMPLATE_MARKER"}],
                displayContent=[{"text": "/init"}],
            ),
            msg(
                "m4",
                "user",
                [{"text": "System: Please continue."}],
                displayContent=[{"functionResponse": {"id": "c3", "name": "replace"}}],
            ),
            msg("m5", "user", "a question asked by mistake"),
            reply("m6", "WRONG_ANSWER_MARKER"),
            {"$rewindTo": "m5"},
            msg(
                "m7",
                "user",
                [
                    {"text": "Now use pathlib"},
                    {"inlineData": {"mimeType": "image/png", "data": "QUJD" * 400}},
                ],
            ),
            reply("m8", "Done: parse('') returns [].", [], thoughts=[]),
            msg("m9", "error", "API error: quota exceeded", "2026-01-20T08:01:00.000Z"),
            msg("m10", "warning", "slow response"),
            {
                "$set": {
                    "summary": "Fix empty-input parse",
                    "lastUpdated": "2026-01-20T08:01:30.000Z",
                }
            },
        ],
    )


def test_jsonl_chat_turns(tmp_path: Path) -> None:
    path = chat(chat_dir(tmp_path))
    assert gemini.is_gemini(path) and sources.detect(path) == "gemini"
    result = gemini.parse(path)
    assert result.problems == []
    (session,) = result.sessions
    assert (session.id, session.agent, session.cwd, session.project) == (
        SID,
        "gemini",
        ROOT,
        "demo",
    )
    assert session.title == "Fix empty-input parse"
    assert (session.started, session.ended) == (
        "2026-01-20T08:00:00.000Z",
        "2026-01-20T08:01:30.000Z",
    )
    got = [(t.n, t.role, t.text) for t in session.turns]
    assert got[0] == (1, "user", "Why does test_parse fail? @tests/test_parse.py")
    assert got[1] == (
        2,
        "assistant",
        "(thinking) Plan: Read the failing test\nthen run it\nLet me read the test.\n"
        "→ read_file: tests/test_parse.py\n→ run_shell_command: pytest -q tests\n"
        "→ replace: src/parse.py",
    )
    assert got[2] == (3, "tool", "def test_parse(): ...")
    assert got[3] == (4, "tool", "ERROR: 1 failed")
    assert got[4] == (5, "tool", "Successfully modified file")
    assert got[5] == (6, "user", "/init")
    assert got[6][1] == "user" and got[6][2].startswith("Now use pathlib\n[image/png ")
    assert got[7] == (8, "assistant", "Done: parse('') returns [].")
    assert got[8] == (9, "system", "ERROR: API error: quota exceeded")
    assert len(got) == 9
    assert session.files_touched == ["tests/test_parse.py", "src/parse.py"]
    assert session.commands == ["pytest -q tests"]
    assert [c.is_error for c in session.turns[1].tool_calls] == [False, True, False]
    everything = "\n".join(t.text for t in session.turns)
    for marker in (
        "REFERENCED_MARKER",
        "INIT_TEMPLATE_MARKER",
        "Please continue",
        "WRONG_ANSWER_MARKER",
        "by mistake",
        "OLD_MARKER",
        "DISPLAY_MARKER",
        "QUJDQUJD",
        "slow response",
        "GEMINI.md created",
    ):
        assert marker not in everything
    assert (result.resume_offset, result.resume_turn) == (0, 1)
    assert result.offset == path.stat().st_size


def test_legacy_document_and_its_truncated_copy(tmp_path: Path) -> None:
    doc = meta(
        messages=[
            msg("u1", "user", [{"text": "Update the README for users"}]),
            reply(
                "g1",
                "",
                [call("w1", "write_file", {"file_path": "README.md", "content": "x"}, "ok")],
            ),
            reply("g2", "README rewritten; CONTRIBUTING.md holds the build steps."),
        ],
        summary="README for users",
    )
    path = tmp_path / "session-2026-01-20T08-00-5e1d0c2b.json"
    path.write_text(json.dumps(doc, indent=2))
    assert sources.detect(path) == "gemini"
    result = gemini.parse(path)
    assert result.problems == []
    session = result.sessions[0]
    assert session.id == SID and session.title == "README for users"
    assert [t.role for t in session.turns] == ["user", "assistant", "tool", "assistant"]
    assert session.files_touched == ["README.md"]
    assert session.cwd is None and session.project is None

    text = path.read_text()
    cut = tmp_path / "cut" / path.name
    cut.parent.mkdir()
    cut.write_text(text[: text.index("README rewritten") - 40])
    damaged = gemini.parse(cut)
    assert len(damaged.problems) == 1 and "truncated" in damaged.problems[0]
    assert "\n" not in damaged.problems[0]
    session = damaged.sessions[0]
    assert session.id == SID
    assert [t.role for t in session.turns] == ["user", "assistant", "tool"]


def test_bad_lines_each_cost_one_problem(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "session-x.jsonl",
        [
            meta(),
            b"{oops",
            b"[1, 2]",
            {"something": "else"},
            {"$set": "not an object"},
            msg("m1", "user", "still here"),
            msg("m2", "compression", "new type"),
            msg("m3", "compression", "again"),
            reply("m4", "answer"),
        ],
        tail=b'{"id":"m5","type":"user","content":"half wri',
    )
    result = gemini.parse(path)
    assert [t.text for t in result.sessions[0].turns] == [
        "still here",
        "(thinking) Plan: Read the failing test\nthen run it\nanswer",
    ]
    assert len(result.problems) == 5, result.problems
    assert sum("compression" in p for p in result.problems) == 1
    assert all("\n" not in p for p in result.problems)
    assert result.offset < path.stat().st_size


def test_rewind_to_an_unknown_message_clears_the_chat(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "session-y.jsonl",
        [meta(), msg("m1", "user", "gone"), {"$rewindTo": "nope"}, msg("m2", "user", "kept")],
    )
    result = gemini.parse(path)
    assert [t.text for t in result.sessions[0].turns] == ["kept"]
    assert len(result.problems) == 1 and "unknown message" in result.problems[0]


def test_subagent_chat_and_hash_named_folder(tmp_path: Path) -> None:
    gem = tmp_path / ".gemini"
    legacy = gem / "tmp" / hashlib.sha256(ROOT.encode()).hexdigest() / "chats"
    legacy.mkdir(parents=True)
    (gem / "projects.json").write_text(json.dumps({"projects": {ROOT: "demo"}}))
    sub = write_jsonl(
        legacy / SID / "child-1.jsonl",
        [meta(sessionId="child-1", kind="subagent"), msg("m1", "user", "look into parse")],
    )
    session = gemini.parse(sub).sessions[0]
    assert (session.id, session.parent_id, session.cwd, session.project) == (
        "child-1",
        SID,
        ROOT,
        "demo",
    )
    assert sources.agent_files("gemini", gem / "tmp") == [sub]


def test_discovery_and_its_switch(tmp_path: Path, isolated_env: Path) -> None:
    folder = chat_dir(isolated_env)
    path = chat(folder)
    (folder.parent / "logs.json").write_text("[]")
    (folder.parent / "checkpoint-x.json").write_text("[]")
    assert ("gemini", isolated_env / ".gemini" / "tmp") in discover_agent_dirs()
    assert sources.agent_files("gemini", isolated_env / ".gemini" / "tmp") == [path]
    off = Config(memory_root=tmp_path / "memory", discover=False, embedder="none")
    assert all(agent != "gemini" for agent, _ in off.agent_dirs())


def test_ingest_archives_and_reads_the_archive_back(tmp_path: Path, isolated_env: Path) -> None:
    folder = chat_dir(isolated_env)
    legacy = folder / "session-2026-01-19T08-00-aaaaaaaa.json"
    legacy.write_text(
        json.dumps(meta(sessionId="legacy-1", messages=[msg("u", "user", "legacy question")]))
    )
    chat(folder)
    cfg = Config(memory_root=tmp_path / "memory", embedder="none")
    report = ingest(cfg)
    assert report.problems == [] and report.sessions == 2
    archived = sorted(p.name for p in cfg.raw_dir.rglob("*.gz"))
    assert archived == [legacy.name + ".gz", "session-2026-01-20T08-00-5e1d0c2b.jsonl.gz"]
    # A chat is read whole each time it changes; an unchanged one is not read at all.
    again = ingest(cfg)
    assert again.files_read == 0 and again.files_tailed == 0
    shutil.rmtree(isolated_env / ".gemini")
    assert ingest(cfg).kept_from_archive == 2
    rebuilt = reindex(cfg)
    assert rebuilt.problems == [] and rebuilt.sessions == 2
    store = open_store(cfg)
    try:
        record = store.get_session(SID)
        assert record is not None and record.project == "demo" and record.turns == 9
        assert len(store.chunks_for_session("legacy-1")) == 1
    finally:
        store.close()


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, *args], capture_output=True, text=True, cwd=cwd, env=dict(os.environ), timeout=120
    )


def test_cli_ingest_search_show(tmp_path: Path, isolated_env: Path) -> None:
    folder = chat_dir(isolated_env)
    records = [
        meta(),
        msg("m1", "user", f"the deploy token is {SECRET}; why does quokkasort hang?"),
        reply("m2", "quokkasort recurses on an empty slice."),
    ]
    write_jsonl(folder / "session-2026-01-20T08-00-5e1d0c2b.jsonl", records)
    (tmp_path / "ctxmill.toml").write_text(
        '[memory]\nroot = "memory"\n[index]\nembedder = "hash"\n'
    )

    off = run("ingest", "--json", "--no-discover", cwd=tmp_path)
    assert off.returncode == 0, off.stderr
    assert json.loads(off.stdout)["sessions"] == 0

    ingested = run("ingest", "--json", cwd=tmp_path)
    assert ingested.returncode == 0, ingested.stderr
    report = json.loads(ingested.stdout)
    assert report["sessions"] == 1 and report["problem_count"] == 0
    assert report["secrets_redacted"] >= 1

    found = run("search", "quokkasort", "--json", "--mode", "keyword", cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    tags = [h["tag"] for h in json.loads(found.stdout)]
    assert f"[raw:{SID}#2]" in tags
    shown = run("show", f"[raw:{SID}#2]", "--no-ingest", cwd=tmp_path)
    assert shown.returncode == 0 and "recurses on an empty slice" in shown.stdout

    home = Path(os.environ["CTXMILL_HOME"])
    blobs = b"".join(p.read_bytes() for p in home.rglob("*.db*") if p.is_file())
    for archive in (tmp_path / "memory").rglob("*.gz"):
        blobs += gzip.decompress(archive.read_bytes())
    assert SECRET.encode() not in blobs and b"quokkasort" in blobs


def test_real_jsonl_chat() -> None:
    path = shared_data("claude-code", "Mai0313_VibeCodingTracker", "gemini_cli_session.jsonl")
    assert sources.detect(path) == "gemini"
    result = gemini.parse(path)
    assert result.problems == []
    (session,) = result.sessions
    assert session.id == "0ab84937-9fe7-4284-986a-33c832af0b6a"
    assert (session.started, session.ended) == (
        "2026-04-23T12:52:52.759Z",
        "2026-04-23T12:58:35.591Z",
    )
    roles = [t.role for t in session.turns]
    assert roles.count("user") == 2 and roles.count("assistant") == 6 and roles.count("tool") == 12
    # /init expands to a long template; the turn is what the user typed.
    assert session.turns[0].text == "/init"
    assert "uv run" in session.turns[16].text and session.turns[16].role == "user"
    everything = "\n".join(t.text for t in session.turns)
    assert "Please continue" not in everything and "You are an AI agent" not in everything
    assert sum(len(t.tool_calls) for t in session.turns) == 12
    assert {"README.md", "Makefile", "src/discordbot/cli.py", "GEMINI.md"} <= set(
        session.files_touched
    )
    assert all(t.text.strip() and len(t.text) < 20_000 for t in session.turns)


def test_real_legacy_chat() -> None:
    path = shared_data("claude-code", "Mai0313_VibeCodingTracker", "gemini_cli_session_legacy.json")
    assert sources.detect(path) == "gemini"
    result = gemini.parse(path)
    assert result.problems == []
    (session,) = result.sessions
    assert session.id == "8a20078e-2d5e-4f81-a640-9b879bbb7e6d"
    roles = [t.role for t in session.turns]
    assert roles == ["user", "assistant", *["tool"] * 3, "assistant", *["tool"] * 4, "assistant"]
    assert session.files_touched == [
        "README.md",
        "README.zh-CN.md",
        "README.zh-TW.md",
        "CONTRIBUTING.md",
    ]
    assert "CONTRIBUTING.md" in session.turns[-1].text


def test_real_chats_ingest_from_the_default_folder(tmp_path: Path, isolated_env: Path) -> None:
    folder = shared_data("claude-code", "Mai0313_VibeCodingTracker")
    chats = chat_dir(isolated_env, "discordbot")
    for name, target in (
        ("gemini_cli_session.jsonl", "session-2026-04-23T12-52-0ab84937.jsonl"),
        ("gemini_cli_session_legacy.json", "session-2026-03-27T10-19-8a20078e.json"),
    ):
        shutil.copyfile(folder / name, chats / target)
    cfg = Config(memory_root=tmp_path / "memory", embedder="none")
    report = ingest(cfg)
    assert report.problems == [] and report.sessions == 2 and report.archived == 2
    store = open_store(cfg)
    try:
        record = store.get_session("0ab84937-9fe7-4284-986a-33c832af0b6a")
        assert record is not None and record.agent == "gemini" and record.turns == 20
        assert "GEMINI.md" in record.files
        hits = store.keyword_search("CONTRIBUTING", Filters(), 20)
        assert any(h.session_id == "8a20078e-2d5e-4f81-a640-9b879bbb7e6d" for h in hits)
    finally:
        store.close()


def test_other_formats_are_not_gemini() -> None:
    folder = shared_data("claude-code", "Mai0313_VibeCodingTracker")
    assert not gemini.is_gemini(folder / "claude_code_session.jsonl")
    assert not gemini.is_gemini(folder / "codex_rollout.jsonl")
    assert sources.detect(folder / "claude_code_session.jsonl") == "claude-code"
    assert sources.detect(folder / "codex_rollout.jsonl") == "codex"


@pytest.mark.parametrize("name", ["logs.json", "checkpoint-x.json"])
def test_other_json_files_are_not_chats(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(json.dumps([{"sessionId": SID, "messageId": 0, "type": "user"}]))
    assert sources.detect(path) is None
