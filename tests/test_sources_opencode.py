"""OpenCode's SQLite database: sessions, messages and parts, read-only, incremental, ingested."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import shared_data

from ctxmill import sources
from ctxmill.config import Config, discover_agent_dirs
from ctxmill.ingest import ingest
from ctxmill.sources import opencode
from ctxmill.store import Filters, open_store

EXE = shutil.which("ctxmill", path=str(Path(sys.executable).parent)) or "ctxmill"
SECRET = "sk-ant-api03-" + "Zr8Lq2Wx6Vn0Pb4Tc7Hm1Jk5Df9Gs3Ay" + "Ue2Io4Pa6Sd8Fg0Hj"
CWD = "/home/ana/demo"
T0 = 1768468800000  # 2026-01-15T09:20:00Z

SCHEMA = """
CREATE TABLE project (id TEXT PRIMARY KEY, worktree TEXT NOT NULL, vcs TEXT,
    time_created INTEGER NOT NULL, time_updated INTEGER NOT NULL);
CREATE TABLE session (id TEXT PRIMARY KEY, project_id TEXT NOT NULL, parent_id TEXT,
    slug TEXT NOT NULL, directory TEXT NOT NULL, title TEXT NOT NULL, version TEXT NOT NULL,
    share_url TEXT, time_created INTEGER NOT NULL, time_updated INTEGER NOT NULL,
    time_archived INTEGER);
CREATE TABLE message (id TEXT PRIMARY KEY, session_id TEXT NOT NULL,
    time_created INTEGER NOT NULL, time_updated INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE part (id TEXT PRIMARY KEY, message_id TEXT NOT NULL, session_id TEXT NOT NULL,
    time_created INTEGER NOT NULL, time_updated INTEGER NOT NULL, data TEXT NOT NULL);
CREATE INDEX part_session_idx ON part (session_id);
"""


class Db:
    """Writes rows the way OpenCode lays them out, with a clock that only moves forward."""

    def __init__(self, path: Path, wal: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.con = sqlite3.connect(path, isolation_level=None)
        if wal:
            self.con.execute("PRAGMA journal_mode = WAL")
            self.con.execute("PRAGMA wal_autocheckpoint = 0")
        self.con.executescript(SCHEMA)
        self.clock = T0
        self.n = 0
        self.con.execute(
            "INSERT INTO project VALUES ('prj_1', ?, 'git', ?, ?)", (CWD, self.clock, self.clock)
        )

    def tick(self) -> int:
        self.clock += 1000
        return self.clock

    def session(self, sid: str, title: str = "Fix parse", parent: str | None = None) -> None:
        t = self.tick()
        self.con.execute(
            "INSERT INTO session (id, project_id, parent_id, slug, directory, title, version,"
            " time_created, time_updated) VALUES (?, 'prj_1', ?, 'quiet-otter', ?, ?, '1.2.0', ?, ?)",
            (sid, parent, CWD, title, t, t),
        )

    def message(self, sid: str, role: str, *parts: dict[str, Any], **data: Any) -> str:
        self.n += 1
        mid = f"msg_{self.n:03d}"
        t = self.tick()
        body = {"role": role, "time": {"created": t}, **data}
        if role == "assistant":
            body.setdefault("path", {"cwd": CWD, "root": CWD})
            body.setdefault("modelID", "claude-sonnet-5")
        self.con.execute(
            "INSERT INTO message VALUES (?, ?, ?, ?, ?)", (mid, sid, t, t, json.dumps(body))
        )
        for part in parts:
            self.part(sid, mid, part)
        self.con.execute("UPDATE session SET time_updated = ? WHERE id = ?", (t, sid))
        return mid

    def part(self, sid: str, mid: str, data: dict[str, Any] | str) -> None:
        self.n += 1
        t = self.tick()
        raw = data if isinstance(data, str) else json.dumps(data)
        self.con.execute(
            "INSERT INTO part VALUES (?, ?, ?, ?, ?, ?)", (f"prt_{self.n:03d}", mid, sid, t, t, raw)
        )


def text(value: str, **extra: Any) -> dict[str, Any]:
    return {"type": "text", "text": value, **extra}


def tool(name: str, inp: dict[str, Any], status: str = "completed", **state: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"status": status, "input": inp, "time": {"start": T0, "end": T0 + 100}}
    body.update(state)
    return {"type": "tool", "tool": name, "callID": f"call_{name}", "state": body}


def build(path: Path, wal: bool = False) -> Db:
    db = Db(path, wal)
    db.session("ses_A")
    db.message(
        "ses_A",
        "user",
        text("Why does parse('') return None?"),
        text("<file>SYNTHETIC_MARKER</file>", synthetic=True),
        {"type": "file", "mime": "text/x-python", "filename": "parse.py", "url": "file:///x"},
        agent="build",
    )
    db.message(
        "ses_A",
        "assistant",
        {"type": "step-start"},
        {"type": "reasoning", "text": "Read the parser first."},
        text("Let me look."),
        tool("read", {"filePath": f"{CWD}/src/parse.py"}, output="def parse(s): ..."),
        tool("bash", {"command": "pytest -q", "description": "run tests"}, output="1 failed"),
        tool(
            "edit",
            {"filePath": f"{CWD}/src/parse.py", "oldString": "OLD_MARKER"},
            "error",
            error="oldString not found",
        ),
        tool(
            "apply_patch",
            {
                "patchText": "*** Begin Patch\n*** Update File: src/parse.py\n*** Add File: "
                "tests/test_empty.py\n*** End Patch"
            },
            output="Success",
        ),
        text("parse('') now returns []."),
        {"type": "step-finish", "cost": 0.004, "tokens": {"input": 3100, "output": 80}},
        {"type": "hologram", "data": 1},
        "{not json",
        parentID="msg_001",
    )
    db.message("ses_A", "assistant", text("The conversation so far: parse fixed."), summary=True)
    db.message("ses_A", "assistant", error={"name": "APIError", "data": {"message": "overloaded"}})
    db.session("ses_B", title="New session - 2026-01-15T09:30:00.000Z", parent="ses_A")
    db.message("ses_B", "user", text("Look for other callers of parse"))
    db.message(
        "ses_B", "assistant", tool("grep", {"pattern": "parse\\(", "path": CWD}, output="a.py:3")
    )
    return db


@pytest.fixture
def fast_busy(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(opencode, "_BUSY_SECONDS", 0.1)
    yield


def test_sessions_and_turns(tmp_path: Path) -> None:
    path = tmp_path / "opencode.db"
    build(path).con.close()
    before = path.read_bytes()
    assert opencode.is_opencode(path) and sources.detect(path) == "opencode"
    result = opencode.parse(path)
    assert path.read_bytes() == before  # read-only
    assert len(result.problems) == 2, result.problems
    assert any("not JSON" in p for p in result.problems)
    assert any("hologram" in p for p in result.problems)
    a, b = result.sessions
    assert (a.id, a.agent, a.cwd, a.project, a.title, a.parent_id) == (
        "ses_A",
        "opencode",
        CWD,
        "demo",
        "Fix parse",
        None,
    )
    assert a.started == "2026-01-15T09:20:01.000Z"
    got = [(t.n, t.role, t.text) for t in a.turns]
    assert got[0] == (1, "user", "Why does parse('') return None?\n[file parse.py]")
    assert got[1] == (
        2,
        "assistant",
        "(thinking) Read the parser first.\nLet me look.\n→ read: src/parse.py",
    )
    assert got[2] == (3, "tool", "def parse(s): ...")
    assert got[3] == (4, "assistant", "→ bash: pytest -q")
    assert got[4] == (5, "tool", "1 failed")
    assert got[5] == (6, "assistant", "→ edit: src/parse.py")
    assert got[6] == (7, "tool", "ERROR: oldString not found")
    assert got[7] == (
        8,
        "assistant",
        "→ apply_patch: apply_patch src/parse.py, tests/test_empty.py",
    )
    assert got[8] == (9, "tool", "Success")
    assert got[9] == (10, "assistant", "parse('') now returns [].")
    assert got[10] == (11, "summary", "The conversation so far: parse fixed.")
    assert got[11] == (12, "system", "ERROR: APIError: overloaded")
    assert len(got) == 12
    assert a.files_touched == ["src/parse.py", "tests/test_empty.py"]
    assert a.commands == ["pytest -q"]
    assert a.turns[5].tool_calls[0].is_error
    everything = "\n".join(t.text for t in a.turns)
    assert "SYNTHETIC_MARKER" not in everything and "OLD_MARKER" not in everything
    assert (b.parent_id, b.title) == ("ses_A", None)
    assert [t.text for t in b.turns] == [
        "Look for other callers of parse",
        f"→ grep: parse\\( in {CWD}",
        "a.py:3",
    ]
    assert result.offset > T0 and (result.resume_offset, result.resume_turn) == (0, 1)


def test_only_changed_sessions_are_read_again(tmp_path: Path) -> None:
    path = tmp_path / "opencode.db"
    db = build(path)
    first = opencode.parse(path)
    # At-or-after the watermark: the session holding the newest row (ses_B) is read again, so a
    # row written in that same millisecond after the read is not missed.
    assert [s.id for s in opencode.parse(path, start=first.offset).sessions] == ["ses_B"]
    db.message("ses_A", "user", text("and the empty tuple?"))
    second = opencode.parse(path, start=first.offset)
    assert [s.id for s in second.sessions] == ["ses_A", "ses_B"]
    assert second.offset > first.offset
    db.message("ses_A", "user", text("and None?"))
    third = opencode.parse(path, start=second.offset)
    assert [s.id for s in third.sessions] == ["ses_A"]
    turns = third.sessions[0].turns
    # Read whole: numbering matches a full read.
    assert [(t.n, t.text) for t in turns[-2:]] == [(13, "and the empty tuple?"), (14, "and None?")]
    assert third.sessions[0].turns == opencode.parse(path).sessions[0].turns
    db.con.close()


def test_locked_and_damaged_databases(tmp_path: Path, fast_busy: None) -> None:
    path = tmp_path / "opencode.db"
    db = build(path)
    db.con.execute("BEGIN EXCLUSIVE")
    with pytest.raises(opencode.DatabaseUnreadable) as locked:
        opencode.parse(path)
    assert "locked" in str(locked.value) and "\n" not in str(locked.value)
    assert isinstance(locked.value, OSError)
    db.con.execute("ROLLBACK")
    db.con.close()
    assert len(opencode.parse(path).sessions) == 2

    junk = tmp_path / "junk" / "opencode.db"
    junk.parent.mkdir()
    junk.write_bytes(b"SQLite format 3\x00" + b"\xff" * 5000)
    assert sources.detect(junk) == "opencode"
    with pytest.raises(opencode.DatabaseUnreadable, match="cannot be read"):
        opencode.parse(junk)

    other = tmp_path / "other" / "cache.db"
    other.parent.mkdir()
    sqlite3.connect(other).executescript("CREATE TABLE kv (k TEXT, v TEXT);")
    assert sources.detect(other) is None
    bare = tmp_path / "bare" / "opencode.db"
    bare.parent.mkdir()
    sqlite3.connect(bare).executescript("CREATE TABLE session (id TEXT);")
    result = opencode.parse(bare)
    assert result.sessions == [] and len(result.problems) == 1
    assert "message, part" in result.problems[0]
    not_sqlite = tmp_path / "text.db"
    not_sqlite.write_text("hello")
    assert sources.detect(not_sqlite) is None


def test_discovery_and_its_switch(tmp_path: Path, isolated_env: Path) -> None:
    data = isolated_env / ".local" / "share" / "opencode"
    build(data / "opencode.db").con.close()
    (data / "storage" / "session").mkdir(parents=True)
    (data / "opencode-dev.db").write_bytes(b"")
    assert ("opencode", data) in discover_agent_dirs()
    assert sources.agent_files("opencode", data) == [data / "opencode-dev.db", data / "opencode.db"]
    os.environ["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    try:
        build(tmp_path / "xdg" / "opencode" / "opencode.db").con.close()
        assert ("opencode", tmp_path / "xdg" / "opencode") in discover_agent_dirs()
    finally:
        del os.environ["XDG_DATA_HOME"]
    off = Config(memory_root=tmp_path / "memory", discover=False, embedder="none")
    assert all(agent != "opencode" for agent, _ in off.agent_dirs())


def test_ingest_rereads_changed_sessions_seen_through_the_wal(
    tmp_path: Path, isolated_env: Path
) -> None:
    path = isolated_env / ".local" / "share" / "opencode" / "opencode.db"
    db = build(path, wal=True)
    cfg = Config(memory_root=tmp_path / "memory", embedder="none")
    first = ingest(cfg)
    assert first.sessions == 2 and first.files_read == 1
    assert len([p for p in first.problems if "opencode.db" in p]) == 2
    assert ingest(cfg).files_unchanged >= 1

    main = path.stat()
    db.message("ses_A", "user", text("first follow-up"))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (main.st_size, main.st_mtime_ns)
    again = ingest(cfg)
    assert again.files_read == 1 and again.files_tailed == 1
    db.message("ses_A", "user", text("what about numbatparse?"))
    third = ingest(cfg)
    assert third.files_read == 1 and third.sessions == 1  # ses_A alone
    assert not list(cfg.raw_dir.rglob("*.gz"))  # a database is never archived
    store = open_store(cfg)
    try:
        hits = store.keyword_search("numbatparse", Filters(), 5)
        assert [str(h.tag) for h in hits] == ["[raw:ses_A#14]"]
        assert len(store.chunks_for_session("ses_B")) == 3
        assert len(store.chunks_for_session("ses_A")) == 14
        record = store.get_session("ses_A")
        assert record is not None and record.turns == 14 and record.agent == "opencode"
    finally:
        store.close()
    db.con.close()


def test_a_locked_database_is_reported_and_read_next_time(
    tmp_path: Path, isolated_env: Path, fast_busy: None
) -> None:
    path = isolated_env / ".local" / "share" / "opencode" / "opencode.db"
    db = build(path)
    cfg = Config(memory_root=tmp_path / "memory", embedder="none")
    db.con.execute("BEGIN EXCLUSIVE")
    locked = ingest(cfg)
    db.con.execute("ROLLBACK")
    problems = [p for p in locked.problems if "opencode.db" in p]
    assert len(problems) == 1 and "locked" in problems[0] and locked.sessions == 0
    # Nothing was marked read, so the unchanged file is read by the next run.
    later = ingest(cfg)
    assert later.sessions == 2
    db.con.close()


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, *args], capture_output=True, text=True, cwd=cwd, env=dict(os.environ), timeout=120
    )


def test_cli_ingest_search_show(tmp_path: Path, isolated_env: Path) -> None:
    db = build(isolated_env / ".local" / "share" / "opencode" / "opencode.db")
    db.message("ses_A", "user", text(f"export ANTHROPIC_API_KEY={SECRET} then try echidnasort"))
    db.con.close()
    (tmp_path / "ctxmill.toml").write_text(
        '[memory]\nroot = "memory"\n[index]\nembedder = "hash"\n'
    )
    off = run("ingest", "--json", "--no-discover", cwd=tmp_path)
    assert off.returncode == 0 and json.loads(off.stdout)["sessions"] == 0
    ingested = run("ingest", "--json", cwd=tmp_path)
    assert ingested.returncode == 0, ingested.stderr
    report = json.loads(ingested.stdout)
    assert report["sessions"] == 2 and report["secrets_redacted"] >= 1
    found = run("search", "echidnasort", "--json", "--mode", "keyword", cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    assert "[raw:ses_A#13]" in [h["tag"] for h in json.loads(found.stdout)]
    shown = run("show", "[raw:ses_A#13]", "--no-ingest", cwd=tmp_path)
    assert shown.returncode == 0 and "echidnasort" in shown.stdout
    home = Path(os.environ["CTXMILL_HOME"])
    blobs = b"".join(p.read_bytes() for p in home.rglob("*.db*") if p.is_file())
    assert SECRET.encode() not in blobs and b"echidnasort" in blobs


def test_real_samples_are_not_opencode() -> None:
    folder = shared_data("claude-code", "Mai0313_VibeCodingTracker")
    # The shared data holds no OpenCode database; nothing there may be taken for one.
    for path in sorted(folder.iterdir()):
        assert sources.detect(path) != "opencode"
