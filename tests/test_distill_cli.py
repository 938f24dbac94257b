"""``ctxmill distill``, ``ctxmill lint`` and ``ctxmill bench distill`` end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from corpus import SID, make_memory
from test_distill import planning_session

from ctxmill.bench.results import default_log, read
from ctxmill.cli import cli

BENCH = Path(__file__).resolve().parent.parent / "bench" / "distill"
EXE = shutil.which("ctxmill", path=str(Path(sys.executable).parent)) or "ctxmill"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project with a memory, a code root and one indexed-to-be transcript; cwd is its root."""
    make_memory(tmp_path)
    (tmp_path / "ctxmill.toml").write_text(
        '[memory]\nroot = "memory"\n[code]\nroot = "code"\n[sources]\ndiscover = false\n'
        'paths = ["claude/projects"]\n[index]\nembedder = "hash"\n'
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_distill_then_lint(tmp_path: Path) -> None:
    transcript = planning_session(tmp_path / "t")
    out = tmp_path / "plan.md"
    code, stdout, stderr = invoke("distill", str(transcript), "-o", str(out), "--no-discover")
    assert code == 0 and stdout == ""
    assert "wrote" in stderr and "3 TODOs" in stderr and "--allow-todo" in stderr
    text = out.read_text(encoding="utf-8")
    assert (
        f"We rejected pandas for this because it loads the whole result set first. [raw:{SID}#2]"
        in text
    )

    code, stdout, _ = invoke("lint", str(out), "--no-discover")
    assert code == 1
    lines = stdout.splitlines()
    assert any(
        line.startswith(f"{out}:")
        and "unresolved TODO: exit criteria not settled (phase 2)" in line
        for line in lines
    )
    assert sum("unresolved TODO" in line for line in lines) == 3

    code, stdout, stderr = invoke("lint", str(out), "--allow-todo", "--no-discover")
    assert code == 0 and "prompt ok, 3 TODOs allowed" in stderr
    assert sum("allowed TODO" in line for line in stdout.splitlines()) == 3

    code, stdout, _ = invoke("lint", str(out), "--json", "--no-discover")
    report = json.loads(stdout)
    assert (
        code == 1
        and report["kind"] == "prompt"
        and not report["ok"]
        and len(report["problems"]) == 3
    )

    # The code root decides what is new: shop/csv_export.py is not in this one.
    code_root = tmp_path / "code" / "shop"
    code_root.mkdir(parents=True)
    (code_root / "export.py").write_text("x = 1\n")
    code, stdout, _ = invoke(
        "lint", str(out), "--allow-todo", "--code", str(tmp_path / "code"), "--no-discover"
    )
    assert code == 1
    assert [line.split(": ", 1)[1] for line in stdout.splitlines() if "allowed" not in line] == [
        f"`tests/test_csv_export.py` does not exist in {tmp_path / 'code'} and is not marked (new)",
        f"`shop/routes.py` does not exist in {tmp_path / 'code'} and is not marked (new)",
    ]


def test_distill_json_without_output(tmp_path: Path) -> None:
    transcript = planning_session(tmp_path)
    code, stdout, _ = invoke("distill", str(transcript), "--json", "--no-discover")
    report = json.loads(stdout)
    assert code == 0 and report["session_id"] == SID and report["output"] is None
    assert report["text"].startswith("# Implementation prompt:") and len(report["todos"]) == 3


def test_distill_an_indexed_session_by_id_with_context(project: Path) -> None:
    code, stdout, stderr = invoke("distill", SID[:8], "--with-context")
    assert code == 0, stderr
    assert f"because the old approach held 2 GB in memory. [raw:{SID}#5]" in stdout
    # Without --brief the context is built for the session's goal.
    assert "## Appendix: context from the team's memory" in stdout
    assert "### Context for: The invoice export times out for large customers" in stdout
    assert "appended a" in stderr

    code, stdout, _ = invoke("distill", SID, "--brief", "invoice export timeout", "--no-ingest")
    assert code == 0 and "Narrowed to: **invoice export timeout**" in stdout
    assert "| `pytest tests/test_export.py -x` passes |" in stdout
    assert "```bash\npytest tests/test_export.py -x\n```" in stdout

    code, _, stderr = invoke("distill", "no-such-session")
    assert code == 1 and "no-such-session: no such file or indexed session" in stderr


def test_distill_with_the_fake_backend(tmp_path: Path) -> None:
    transcript = planning_session(tmp_path)
    # The fake echoes the request back: nothing in it is a part, so the prompt stays extractive.
    code, stdout, stderr = invoke("distill", str(transcript), "--backend", "fake", "--no-discover")
    assert code == 0
    assert "the model wrote none of the required parts; the prompt is extractive" in stderr
    assert "We rejected pandas" in stdout
    code, _, stderr = invoke("distill", str(transcript), "--backend", "nonsense", "--no-discover")
    assert code == 2 and "unknown LLM backend" in stderr


def test_compress_a_long_prompt(tmp_path: Path) -> None:
    prompt = BENCH / "agent-guide.md"
    out = tmp_path / "short.md"
    code, stdout, _ = invoke(
        "distill",
        "--prompt",
        str(prompt),
        "--budget",
        "600",
        "-o",
        str(out),
        "--json",
        "--no-discover",
    )
    report = json.loads(stdout)
    assert code == 0 and report["output"] == str(out) and report["tokens_after"] <= 600
    assert report["dropped_counts"]["budget"] > 0 and report["dropped_counts"]["filler"] > 0
    assert {"line", "kind", "text", "reason"} <= set(report["dropped"][0])
    assert "Use Python 3.12 exactly" in out.read_text(encoding="utf-8")

    code, stdout, stderr = invoke(
        "distill", "--prompt", str(prompt), "--budget", "600", "--no-discover"
    )
    assert code == 0 and stdout.startswith("# CLAUDE.md") and "tokens (budget 600)" in stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give a SOURCE"),
        (("--prompt", "{p}"), "--prompt needs --budget"),
        (("x.jsonl", "--prompt", "{p}", "--budget", "9"), "give SOURCE or --prompt, not both"),
        (("x.jsonl", "--budget", "9"), "--budget applies to --prompt only"),
    ],
)
def test_usage_errors(args: tuple[str, ...], message: str) -> None:
    filled = [a.replace("{p}", str(BENCH / "agent-guide.md")) for a in args]
    code, _, stderr = invoke("distill", *filled, "--no-discover")
    assert code == 2 and message in stderr


def test_lint_of_an_unknown_kind(tmp_path: Path) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\n\nNothing here.\n")
    code, _, stderr = invoke("lint", str(notes), "--no-discover")
    assert code == 2 and "pass --kind" in stderr


def test_bench_distill(tmp_path: Path) -> None:
    code, stdout, _ = invoke("bench", "distill", str(BENCH), "--json")
    report = json.loads(stdout)
    assert code == 0 and report["average_retention"] >= 0.8
    entries, _ = read(default_log())
    assert (
        entries[-1]["kind"] == "distill"
        and entries[-1]["average_retention"] == report["average_retention"]
    )
    code, _, stderr = invoke("bench", "distill", str(BENCH), "--threshold", "1")
    assert code == 1 and "below the threshold 1" in stderr


def test_installed_command(tmp_path: Path) -> None:
    transcript = planning_session(tmp_path)
    out = tmp_path / "plan.md"
    env = dict(os.environ)
    done = subprocess.run(
        [EXE, "distill", str(transcript), "-o", str(out), "--no-discover"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lint = subprocess.run(
        [EXE, "lint", str(out), "--allow-todo", "--no-discover"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert lint.returncode == 0 and "prompt ok, 3 TODOs allowed" in lint.stderr
