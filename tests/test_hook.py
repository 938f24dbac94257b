"""The SessionEnd hook: queues fast, never fails the session, and its queue gets drained."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from corpus import SAMPLE_SESSION_MODEL, SAMPLE_WEBHOOKS, sample_transcript
from filelock import FileLock

from ctxmill.cli import cli
from ctxmill.config import home_dir
from ctxmill.hook import read_queue
from ctxmill.summary_format import validate_summary


def _transcript(tmp_path: Path, sid: str = SAMPLE_WEBHOOKS, *, age_s: float = 600) -> Path:
    """A copy of a sample transcript where Claude Code would keep it."""
    folder = tmp_path / "claude" / "projects" / "-home-dev-ledgerline"
    folder.mkdir(parents=True)
    target = folder / f"{sid}.jsonl"
    shutil.copy(sample_transcript(sid), target)
    when = time.time() - age_s
    os.utime(target, (when, when))
    return target


def _payload(path: Path, sid: str) -> str:
    return json.dumps(
        {
            "session_id": sid,
            "transcript_path": str(path),
            "cwd": "/home/dev/ledgerline",
            "hook_event_name": "SessionEnd",
            "reason": "prompt_input_exit",
        }
    )


def test_session_end_queues_one_job(tmp_path: Path) -> None:
    path = _transcript(tmp_path)
    mem = tmp_path / "memory"
    result = CliRunner().invoke(
        cli,
        ["hook", "session-end", "--memory", str(mem), "--no-worker"],
        input=_payload(path, SAMPLE_WEBHOOKS),
    )
    assert result.exit_code == 0
    assert result.output == ""
    jobs = read_queue(home_dir())
    assert [(j.session_id, j.transcript_path, j.reason) for j in jobs] == [
        (SAMPLE_WEBHOOKS, str(path), "prompt_input_exit")
    ]
    assert jobs[0].memory_root == str(mem.resolve())
    assert not list((home_dir() / "queue").glob(".*.tmp"))


@pytest.mark.parametrize(
    "stdin",
    [
        "",
        "not json",
        "[1, 2]",
        '{"session_id": "x"}',
        '{"session_id": "../../etc", "transcript_path": "/t"}',
    ],
)
def test_malformed_input_is_one_line_on_stderr_and_exit_0(stdin: str) -> None:
    result = CliRunner().invoke(cli, ["hook", "session-end", "--no-worker"], input=stdin)
    assert result.exit_code == 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ctxmill: hook: ")
    assert read_queue(home_dir()) == []


def test_queued_session_is_compressed_by_the_next_pass(tmp_path: Path) -> None:
    path = _transcript(tmp_path)
    mem = tmp_path / "memory"
    runner = CliRunner()
    runner.invoke(
        cli,
        ["hook", "session-end", "--memory", str(mem), "--no-worker"],
        input=_payload(path, SAMPLE_WEBHOOKS),
    )
    # The transcript lies outside every configured source folder: the job alone brings it in.
    result = runner.invoke(
        cli, ["compress", "--memory", str(mem), "--no-discover", "--no-embed", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["queued"] == 1 and report["written"] == 1
    summary = mem / "sessions" / "compressed" / "2026" / f"{SAMPLE_WEBHOOKS}.md"
    assert validate_summary(summary.read_text(encoding="utf-8")) == []
    assert read_queue(home_dir()) == []


def test_jobs_for_another_memory_are_left_alone(tmp_path: Path) -> None:
    path = _transcript(tmp_path)
    runner = CliRunner()
    runner.invoke(
        cli,
        ["hook", "session-end", "--memory", str(tmp_path / "other"), "--no-worker"],
        input=_payload(path, SAMPLE_WEBHOOKS),
    )
    result = runner.invoke(
        cli,
        ["compress", "--memory", str(tmp_path / "memory"), "--no-discover", "--no-embed", "--json"],
    )
    assert json.loads(result.output)["queued"] == 0
    assert len(read_queue(home_dir())) == 1


def test_installed_hook_returns_within_a_second_and_its_worker_drains_the_queue(
    tmp_path: Path,
) -> None:
    exe = Path(sys.executable).parent / "ctxmill"
    if not exe.exists():
        pytest.skip(f"{exe} is not installed (pip install -e .)")
    path = _transcript(tmp_path, SAMPLE_SESSION_MODEL)
    mem = tmp_path / "memory"
    # One untimed call first, so the timing is of the hook and not of a cold disk cache.
    subprocess.run([str(exe), "hook", "session-end", "--no-worker"], input="", capture_output=True)
    started = time.perf_counter()
    done = subprocess.run(
        [str(exe), "hook", "session-end", "--memory", str(mem)],
        input=_payload(path, SAMPLE_SESSION_MODEL),
        capture_output=True,
        text=True,
        timeout=30,
        env=os.environ.copy(),
    )
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert elapsed < 1.0, f"the hook took {elapsed:.2f}s"
    # The detached worker compresses the session and empties the queue.
    summary = mem / "sessions" / "compressed" / "2026" / f"{SAMPLE_SESSION_MODEL}.md"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and (read_queue(home_dir()) or not summary.exists()):
        time.sleep(0.2)
    log = home_dir() / "queue" / "worker.log"
    assert summary.exists(), log.read_text() if log.exists() else "no worker log"
    # The worker indexes what it wrote and then lets go of the pass lock.
    FileLock(str(home_dir() / "compress.lock")).acquire(timeout=60)
    assert validate_summary(summary.read_text(encoding="utf-8")) == []
    assert read_queue(home_dir()) == []
