"""``ctxmill build`` through its entry point: CliRunner for the options, one real subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from test_pipeline_build import OIDC, SECTIONS, make_parcel

from ctxmill.cli import cli

EXE = shutil.which("ctxmill", path=str(Path(sys.executable).parent)) or "ctxmill"
BRIEF = "Migrate session auth to OIDC"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder with the parcel memory and a ctxmill.toml, as the working directory."""
    make_parcel(tmp_path)
    (tmp_path / "ctxmill.toml").write_text(
        '[memory]\nroot = "memory"\n[code]\nroot = "code"\n[sources]\ndiscover = false\n'
        '[index]\nembedder = "hash"\n',
        "utf-8",
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_build_writes_context_md_and_reports_use(project: Path) -> None:
    result = CliRunner().invoke(cli, ["build", BRIEF, "--as-of", "2026-07-01", "--budget", "5000"])
    assert result.exit_code == 0, result.output
    text = (project / "context.md").read_text("utf-8")
    assert [ln for ln in text.splitlines() if ln.startswith("## ")] == SECTIONS
    assert f"[session:{OIDC}]" in text
    record = yaml.safe_load(text.split("---\n")[1])
    assert record["budget"] == 5000 and record["tokens"] <= 5000
    assert "wrote context.md:" in result.output and "tokens of 5000" in result.output
    assert "recent_state" in result.output and "citations" in result.output


def test_build_json_and_explain(project: Path) -> None:
    runner = CliRunner()
    as_json = runner.invoke(
        cli, ["build", BRIEF, "--as-of", "2026-07-01Z", "-o", "out.md", "--json"]
    )
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.output)
    assert data["path"] == "out.md" and (project / "out.md").is_file()
    assert set(data["sections"]) == {"recent_state", "history", "unresolved", "files", "citations"}
    oidc = next(c for c in data["candidates"] if c["session"] == OIDC)
    assert "keyword" in oidc["found_by"] and OIDC in data["flagged"]

    explain = runner.invoke(
        cli, ["build", BRIEF, "--as-of", "2026-07-01", "--explain", "--no-ingest"]
    )
    assert explain.exit_code == 0, explain.output
    for column in ("found by", "keyword:", "re-read"):
        assert column in explain.output
    assert OIDC[:8] in explain.output and "fanout.code" in explain.output


def test_build_to_stdout(project: Path) -> None:
    result = CliRunner().invoke(cli, ["build", BRIEF, "--as-of", "2026-07-01", "-o", "-"])
    assert result.exit_code == 0, result.output
    assert "# Context for: Migrate session auth to OIDC" in result.output
    assert not (project / "context.md").exists()


def test_build_bad_input(project: Path) -> None:
    runner = CliRunner()
    small = runner.invoke(cli, ["build", BRIEF, "--budget", "40"])
    assert small.exit_code == 1
    assert "budget 40 is too small" in small.output and "Traceback" not in small.output
    bad_date = runner.invoke(cli, ["build", BRIEF, "--as-of", "last tuesday"])
    assert bad_date.exit_code == 2 and "ISO-8601" in bad_date.output
    empty = runner.invoke(cli, ["build", "  "])
    assert empty.exit_code == 1 and "brief is empty" in empty.output
    backend = runner.invoke(cli, ["build", BRIEF, "--backend", "nonsense", "--no-ingest"])
    assert backend.exit_code == 1 and "unknown LLM backend" in backend.output


def test_build_with_the_fake_backend(project: Path) -> None:
    # The fake echoes the prompt: not JSON, so the context stays extractive, with a note.
    result = CliRunner().invoke(cli, ["build", BRIEF, "--as-of", "2026-07-01", "--backend", "fake"])
    assert result.exit_code == 0, result.output
    assert "context is extractive" in result.output
    record = yaml.safe_load((project / "context.md").read_text("utf-8").split("---\n")[1])
    assert record["backend"] == "fake:fake"


def test_build_empty_memory(tmp_path: Path) -> None:
    (tmp_path / "memory").mkdir()
    result = CliRunner().invoke(
        cli, ["build", BRIEF, "--memory", str(tmp_path / "memory"), "--no-discover"]
    )
    assert result.exit_code == 1
    assert "holds no topics, summaries or transcripts" in result.output


def test_build_through_the_installed_entry_point(project: Path) -> None:
    proc = subprocess.run(
        [EXE, "build", BRIEF, "--as-of", "2026-07-01T00:00:00Z", "--budget", "4000", "-o", "c.md"],
        capture_output=True,
        text=True,
        cwd=project,
        env=dict(os.environ),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote c.md: " in proc.stdout
    text = (project / "c.md").read_text("utf-8")
    assert "# Context for: Migrate session auth to OIDC" in text and "## Citations" in text
    bad = subprocess.run(
        [EXE, "build", BRIEF, "--budget", "10", "--no-ingest"],
        capture_output=True,
        text=True,
        cwd=project,
        env=dict(os.environ),
        timeout=120,
    )
    assert bad.returncode == 1 and bad.stderr.startswith("ctxmill: error: budget 10 is too small")
    assert len(bad.stderr.strip().splitlines()) == 1


def test_help_texts() -> None:
    runner = CliRunner()
    for command in ("build", "run", "runs"):
        result = runner.invoke(cli, [command, "--help"])
        assert result.exit_code == 0
    build = runner.invoke(cli, ["build", "--help"]).output
    for option in ("--as-of", "--budget", "--output", "--json", "--explain", "--backend",
                   "--keep-unverified", "--no-ingest", "--memory", "--code"):  # fmt: skip
        assert option in build
    run = runner.invoke(cli, ["run", "--help"]).output
    assert "--append-system-prompt-file" in run and "--dry-run" in run and "--prompt" in run
