"""aider chat histories: sessions by header, turns by marker, tailing, discovery, ingest."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import shared_data

from ctxmill import sources
from ctxmill.config import Config, load_config
from ctxmill.ingest import ingest
from ctxmill.model import Session
from ctxmill.sources import aider
from ctxmill.store import open_store

EXE = shutil.which("ctxmill", path=str(Path(sys.executable).parent)) or "ctxmill"
SECRET = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"

# aider ends each of its own lines with two spaces; written out here so no editor strips them.
SP = "  "
HISTORY = f"""
# aider chat started at 2026-01-15 10:20:30

> Aider v0.86.0{SP}
> Main model: sonnet with diff edit format{SP}
> Git repo: .git with 52 files{SP}

#### /add src/parse.py{SP}

> Added src/parse.py to the chat{SP}

#### Why does parse('') return None?{SP}
#### It should return an empty list.{SP}

#### Heading the model wrote

The early `return` skips the list construction.
> a quote inside the reply

src/parse.py
<<<<<<< SEARCH
    if not s:
        return None
=======
    if not s:
        return []
>>>>>>> REPLACE

> Applied edit to src/parse.py{SP}
> Commit 1a2b3c4 fix: parse('') returns []{SP}
> Tokens: 2.1k sent, 95 received. Cost: $0.0081 message, $0.0081 session.{SP}

#### <blank>{SP}

# aider chat started at 2026-01-16 09:00:00

#### /run pytest -q{SP}

> Running pytest -q{SP}
> 3 passed{SP}
>{SP}
> Add command output to the chat? (Y)es/(N)o [Yes]: y{SP}

#### !git log --oneline -1{SP}

All tests pass now.
"""


@pytest.fixture(autouse=True)
def utc() -> Iterator[None]:
    """aider writes local time; pin the zone so the converted start times are known."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


def repo(tmp_path: Path, text: str = HISTORY, name: str = "demo") -> Path:
    root = tmp_path / name
    (root / ".git").mkdir(parents=True, exist_ok=True)
    path = root / aider.HISTORY_NAME
    path.write_text(text, encoding="utf-8")
    return path


def shape(sessions: list[Session]) -> list[tuple[str, list[tuple[int, str, str]]]]:
    return [(s.id, [(t.n, t.role, t.text) for t in s.turns]) for s in sessions]


def test_history_sessions_and_turns(tmp_path: Path) -> None:
    path = repo(tmp_path)
    assert aider.is_aider(path) and sources.detect(path) == "aider"
    result = aider.parse(path)
    assert result.problems == []
    first, second = result.sessions
    assert (first.id, first.agent, first.project, first.cwd, first.started) == (
        "aider-demo-20260115T102030",
        "aider",
        "demo",
        str(path.parent),
        "2026-01-15T10:20:30Z",
    )
    got = [(t.n, t.role, t.text) for t in first.turns]
    assert got[0] == (1, "user", "/add src/parse.py")
    assert got[1] == (2, "tool", "Added src/parse.py to the chat")
    assert got[2] == (
        3,
        "user",
        "Why does parse('') return None?\nIt should return an empty list.",
    )
    # A reply's own heading and quote carry no trailing spaces: they stay in the reply.
    assert got[3][:2] == (4, "assistant")
    assert got[3][2].startswith("#### Heading the model wrote\n\nThe early `return`")
    assert "> a quote inside the reply" in got[3][2] and got[3][2].endswith(">>>>>>> REPLACE")
    assert got[4] == (
        5,
        "tool",
        "Applied edit to src/parse.py\nCommit 1a2b3c4 fix: parse('') returns []",
    )
    assert len(got) == 5  # banner, Tokens line and the empty input make no turn
    assert first.files_touched == ["src/parse.py"]
    assert [c.name for c in first.turns[4].tool_calls] == ["edit", "commit"]

    assert second.id == "aider-demo-20260116T090000"
    assert [(t.role, t.text) for t in second.turns] == [
        ("user", "/run pytest -q"),
        (
            "tool",
            "Running pytest -q\n3 passed\n\nAdd command output to the chat? (Y)es/(N)o [Yes]: y",
        ),
        ("user", "!git log --oneline -1"),
        ("assistant", "All tests pass now."),
    ]
    assert second.commands == ["pytest -q", "git log --oneline -1"]
    assert result.offset == path.stat().st_size
    assert result.resume_offset == HISTORY.encode().index(b"# aider chat started at 2026-01-16")
    assert result.resume_turn == 1


def test_stripped_trailing_spaces_still_parse(tmp_path: Path) -> None:
    stripped = "\n".join(line.rstrip() for line in HISTORY.splitlines()) + "\n"
    result = aider.parse(repo(tmp_path, stripped))
    roles = [[t.role for t in s.turns] for s in result.sessions]
    # Without aider's trailing spaces the reply's heading and quote can no longer be told apart.
    assert roles[0] == ["user", "tool", "user", "user", "assistant", "tool", "assistant", "tool"]
    assert roles[1] == ["user", "tool", "user", "assistant"]
    assert result.sessions[0].files_touched == ["src/parse.py"]


def test_resuming_at_every_cut_gives_the_full_parse(tmp_path: Path) -> None:
    source = repo(tmp_path / "src")
    data = source.read_bytes()
    full = shape(aider.parse(source).sessions)
    resumed_mid_file = 0
    for cut in range(0, len(data) + 1, 37):
        copy = tmp_path / f"cut{cut}" / "demo" / aider.HISTORY_NAME
        copy.parent.mkdir(parents=True)
        copy.write_bytes(data[:cut])
        first = aider.parse(copy)
        assert data[: first.offset].endswith(b"\n") or first.offset == 0
        # What lies before the resume point is settled: it parses the same on its own.
        before = tmp_path / f"cut{cut}" / "before" / "demo" / aider.HISTORY_NAME
        before.parent.mkdir(parents=True)
        before.write_bytes(data[: first.resume_offset])
        settled = shape(aider.parse(before).sessions)
        assert shape(first.sessions)[: len(settled)] == settled
        with copy.open("ab") as fh:
            fh.write(data[cut:])
        again = aider.parse(copy, start=first.resume_offset, first_turn=first.resume_turn)
        assert settled + shape(again.sessions) == full, f"cut at byte {cut}"
        resumed_mid_file += first.resume_offset > 0
    assert resumed_mid_file > 5


def test_two_sessions_in_one_second_keep_distinct_ids(tmp_path: Path) -> None:
    block = "\n# aider chat started at 2026-01-15 10:20:30\n\n#### question {n}  \n\nanswer {n}\n"
    path = repo(tmp_path, block.format(n=1) + block.format(n=2) + block.format(n=3))
    full = aider.parse(path)
    ids = [s.id for s in full.sessions]
    base = "aider-demo-20260115T102030"
    assert ids == [base, f"{base}-2", f"{base}-3"]
    resumed = aider.parse(path, start=full.resume_offset)
    assert [s.id for s in resumed.sessions] == [f"{base}-3"]


def test_damaged_history(tmp_path: Path) -> None:
    text = (
        "stray text before any header\n"
        "\n# aider chat started at not-a-date\n\n#### hello  \n\nhi\n"
        "\n# aider chat started at 2026-01-17 08:00:00\n\n#### caf\xe9 ok  \n"
    )
    path = repo(tmp_path)
    path.write_bytes(
        text.encode("latin-1").replace(b"#### hello", b"#### \x00\x01 binary\n#### hello")
    )
    result = aider.parse(path)
    bad_header = path.read_bytes().index(b"# aider chat started at not-a-date")
    assert [s.id for s in result.sessions] == [
        "aider-demo-at0",
        f"aider-demo-at{bad_header}",
        "aider-demo-20260117T080000",
    ]
    assert [t.text for t in result.sessions[1].turns] == ["hello", "hi"]
    assert result.sessions[2].turns[0].text == "caf\ufffd ok"
    assert len(result.problems) == 4, result.problems
    assert all("\n" not in p for p in result.problems)


def test_copies_and_other_markdown(tmp_path: Path) -> None:
    copy = tmp_path / "shop.aider.chat.history.md"
    copy.write_text(HISTORY)
    session = aider.parse(copy).sessions[0]
    assert (session.id, session.project, session.cwd) == (
        "aider-shop-20260115T102030",
        "shop",
        None,
    )
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\n\n#### a heading  \n")
    assert sources.detect(notes) is None
    export = tmp_path / "export.md"
    export.write_text("<!-- Generated by SpecStory -->\n\n_**User**_\n\nhello\n")
    assert sources.detect(export) == "specstory"


def test_discovery_in_the_code_root_and_configured_projects(tmp_path: Path) -> None:
    code = repo(tmp_path, name="code").parent
    other = repo(tmp_path, name="other").parent
    (tmp_path / "ctxmill.toml").write_text(
        '[memory]\nroot = "memory"\n[code]\nroot = "code"\n[sources]\naider = ["other"]\n'
    )
    cfg = load_config(cwd=tmp_path)
    assert ("aider", code.resolve()) in cfg.agent_dirs()
    assert ("aider", other.resolve()) in cfg.agent_dirs()
    off = load_config(discover=False, cwd=tmp_path)
    assert [d for a, d in off.agent_dirs() if a == "aider"] == [other.resolve()]
    assert sources.agent_files("aider", code) == [code / aider.HISTORY_NAME]
    assert sources.agent_files("aider", tmp_path) == []


def test_ingest_tails_the_history_and_does_not_archive_it(tmp_path: Path) -> None:
    path = repo(tmp_path)
    cfg = Config(
        memory_root=tmp_path / "memory",
        aider_projects=[path.parent],
        discover=False,
        embedder="none",
    )
    first = ingest(cfg)
    assert first.problems == [] and first.sessions == 2
    with path.open("a", encoding="utf-8") as fh:
        fh.write("\n# aider chat started at 2026-01-18 12:00:00\n\n#### one more  \n\nsure\n")
    again = ingest(cfg)
    assert again.files_tailed == 1 and again.sessions == 2  # the last session and the new one
    assert not list(cfg.raw_dir.rglob("*"))
    store = open_store(cfg)
    try:
        record = store.get_session("aider-demo-20260118T120000")
        assert record is not None and record.turns == 2 and record.agent == "aider"
        earlier = store.get_session("aider-demo-20260115T102030")
        assert earlier is not None and earlier.turns == 5
        assert earlier.files == ["src/parse.py"]
        assert len(store.chunks_for_session("aider-demo-20260116T090000")) == 4
    finally:
        store.close()


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, *args], capture_output=True, text=True, cwd=cwd, env=dict(os.environ), timeout=120
    )


def test_cli_ingest_search_show(tmp_path: Path) -> None:
    text = HISTORY.replace(
        "#### Why does parse('') return None?",
        f"#### token {SECRET} — why does wombatparse return None?",
    )
    repo(tmp_path, text)
    (tmp_path / "ctxmill.toml").write_text(
        '[memory]\nroot = "memory"\n[sources]\ndiscover = false\naider = ["demo"]\n'
        '[index]\nembedder = "hash"\n'
    )
    ingested = run("ingest", "--json", cwd=tmp_path)
    assert ingested.returncode == 0, ingested.stderr
    report = json.loads(ingested.stdout)
    assert report["sessions"] == 2 and report["problem_count"] == 0
    assert report["secrets_redacted"] >= 1
    found = run("search", "wombatparse", "--json", "--mode", "keyword", cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    tag = "[raw:aider-demo-20260115T102030#3]"
    assert tag in [h["tag"] for h in json.loads(found.stdout)]
    shown = run("show", tag, "--no-ingest", cwd=tmp_path)
    assert shown.returncode == 0 and "wombatparse" in shown.stdout
    assert SECRET not in shown.stdout
    home = Path(os.environ["CTXMILL_HOME"])
    blobs = b"".join(p.read_bytes() for p in home.rglob("*.db*") if p.is_file())
    assert SECRET.encode() not in blobs and b"wombatparse" in blobs


def test_real_samples_are_not_aider() -> None:
    folder = shared_data("claude-code", "Mai0313_VibeCodingTracker")
    # The shared data holds no aider history; make sure nothing there is mistaken for one.
    for path in sorted(folder.iterdir()):
        assert not aider.is_aider(path)
        assert sources.detect(path) != "aider"
