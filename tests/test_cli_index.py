"""The index commands end to end, through the installed ``ctxmill`` entry point."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from corpus import SID, make_memory

EXE = shutil.which("ctxmill", path=str(Path(sys.executable).parent)) or "ctxmill"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, *args], capture_output=True, text=True, cwd=cwd, env=dict(os.environ), timeout=120
    )


@pytest.fixture
def memory(tmp_path: Path) -> list[str]:
    cfg = make_memory(tmp_path)
    (tmp_path / "ctxmill.toml").write_text(
        '[memory]\nroot = "memory"\n[code]\nroot = "code"\n[sources]\ndiscover = false\n'
        'paths = ["claude/projects"]\n[index]\nembedder = "hash"\n'
    )
    assert cfg.memory_root.is_dir()
    return ["--memory", str(tmp_path / "memory")]


def test_ingest_search_show_status(tmp_path: Path, memory: list[str]) -> None:
    ingest = run("ingest", "--json", cwd=tmp_path)
    assert ingest.returncode == 0, ingest.stderr
    report = json.loads(ingest.stdout)
    assert report["sessions"] == 1 and report["problem_count"] == 0

    found = run("search", "server-side cursor", "--json", "-k", "5", cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    tags = [h["tag"] for h in hits]
    assert f"[raw:{SID}#5]" in tags and any(t.startswith("[topic:exports.md#L") for t in tags)
    assert all({"tag", "session_id", "snippet", "timestamp", "score"} <= set(h) for h in hits)

    text = run("search", "TimeoutError", "--layer", "raw", "--mode", "keyword", cwd=tmp_path)
    assert f"[raw:{SID}#4]" in text.stdout and "TimeoutError" in text.stdout

    shown = run("show", f"[raw:{SID}#4]", cwd=tmp_path)
    assert shown.returncode == 0 and "TimeoutError after 30s" in shown.stdout
    topic = run("show", "[topic:exports.md#L5-L7]", "--no-ingest", cwd=tmp_path)
    assert "60 seconds" in topic.stdout
    code = run("show", "[code:shop/export.py:2]", "--no-ingest", cwd=tmp_path)
    assert "for row in cursor" in code.stdout

    status = run("status", "--json", cwd=tmp_path)
    info = json.loads(status.stdout)
    assert info["chunks"]["raw"] == 5 and info["embedder"] == "hash"


def test_errors_are_one_line(tmp_path: Path, memory: list[str]) -> None:
    bad_tag = run("show", "not-a-tag", cwd=tmp_path)
    assert bad_tag.returncode == 2
    missing = run("show", f"[raw:{SID}#99]", cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stderr.strip().count("\n") == 0 and "has no turn 99" in missing.stderr
    bad_mode = run("search", "x", "--mode", "fuzzy", cwd=tmp_path)
    assert bad_mode.returncode == 2
    (tmp_path / "ctxmill.toml").write_text("[memory\nroot=")
    broken = run("status", cwd=tmp_path)
    assert broken.returncode == 1 and "invalid TOML" in broken.stderr


def test_sample_memory_runs_with_no_setup(tmp_path: Path) -> None:
    result = run("search", "--sample", "refresh tokens leaked into logs", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)
    assert hits and all(h["tag"].startswith("[") for h in hits)
