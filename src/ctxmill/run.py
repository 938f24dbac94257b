"""``ctxmill run``: start a fresh agent whose only input is the brief and the context.

The agent gets nothing else: no search, no history of its own.  How the context reaches it:

* ``claude`` (Claude Code, the default ``claude -p``): the context file is passed with
  ``--append-system-prompt-file FILE`` and the brief is the prompt argument.  Appending keeps Claude
  Code's own system prompt (its tools and rules) and adds the context as standing instructions the
  whole session sees, rather than as a first user message the agent might treat as the task.
* any other command: the brief, a blank line and the context arrive on its stdin.
* ``--prompt FILE`` (a self-contained prompt, e.g. from ``ctxmill distill``): the prompt is the
  input, on stdin, for every command.

What is handed over is redacted first (egress check) and kept under
``$CTXMILL_HOME/runs/<id>/``; each run is one JSON line in ``$CTXMILL_HOME/runs.jsonl``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from ctxmill.config import Config
from ctxmill.redact import redact


class RunError(Exception):
    """The agent cannot be started as asked; one line for the user."""


@dataclass
class Invocation:
    """Exactly what will be started: argv, the text on stdin, and the files it refers to."""

    argv: list[str]
    stdin: str | None
    context_path: Path | None
    context_sha256: str | None
    redacted: int = 0  # secrets removed from what is handed over


@dataclass
class RunRecord:
    id: str
    brief: str
    context: str | None
    context_sha256: str | None
    command: list[str]
    exit_status: int | None
    duration_s: float
    started: str
    prompt: str | None = None
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def runs_file(home: Path) -> Path:
    return home / "runs.jsonl"


def is_claude(command: list[str]) -> bool:
    return bool(command) and Path(command[0]).name in ("claude", "claude.exe")


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def prepare(
    cfg: Config,
    run_id: str,
    brief: str,
    *,
    command: list[str],
    context_text: str | None = None,
    prompt_text: str | None = None,
) -> Invocation:
    """Redact what is handed over, write it under the run's folder, and work out argv and stdin."""
    if not command:
        raise RunError("the agent command is empty (set [run] command in ctxmill.toml or --agent)")
    folder = cfg.home / "runs" / run_id
    folder.mkdir(parents=True, exist_ok=True)
    brief_out, n_brief = redact(brief)
    redacted = n_brief
    if prompt_text is not None:
        prompt_out, n = redact(prompt_text)
        redacted += n
        path = folder / "prompt.md"
        path.write_text(prompt_out, encoding="utf-8")
        stdin = f"{brief_out}\n\n{prompt_out}" if brief_out.strip() else prompt_out
        return Invocation(list(command), stdin, path, _sha256(prompt_out), redacted)
    if context_text is None:
        raise RunError("nothing to hand over: give a brief to build from, --context or --prompt")
    context_out, n = redact(context_text)
    redacted += n
    path = folder / "context.md"
    path.write_text(context_out, encoding="utf-8")
    if is_claude(command):
        argv = [*command, "--append-system-prompt-file", str(path), brief_out]
        return Invocation(argv, None, path, _sha256(context_out), redacted)
    stdin = f"{brief_out}\n\n{context_out}"
    return Invocation(list(command), stdin, path, _sha256(context_out), redacted)


def execute(
    invocation: Invocation,
    *,
    write: Callable[[str], None] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start the agent, stream its stdout to ``write`` as it arrives, return its exit status."""
    write = write or _stdout_writer(sys.stdout)
    try:
        proc = subprocess.Popen(
            invocation.argv,
            stdin=subprocess.PIPE if invocation.stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            cwd=cwd,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
        )
    except FileNotFoundError as exc:
        raise RunError(
            f"agent command {invocation.argv[0]!r} not found on PATH (install it, set [run] "
            "command in ctxmill.toml, or pass --agent)"
        ) from exc
    except PermissionError as exc:
        raise RunError(f"agent command {invocation.argv[0]!r} is not executable") from exc
    feeder = None
    if invocation.stdin is not None:
        # Written from a thread: an agent that prints before reading all its input must not
        # deadlock against a full pipe.
        feeder = threading.Thread(target=_feed, args=(proc, invocation.stdin), daemon=True)
        feeder.start()
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            write(line)
        status = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
        status = 130
    if feeder is not None:
        feeder.join(timeout=5)
    return status


def run_agent(
    cfg: Config,
    brief: str,
    *,
    context_text: str | None = None,
    prompt_text: str | None = None,
    command: list[str] | None = None,
    dry_run: bool = False,
    write: Callable[[str], None] | None = None,
    run_id: str | None = None,
    notes: list[str] | None = None,
) -> tuple[RunRecord, Invocation]:
    """Hand the brief and context (or a prompt) to a fresh agent and record the run.

    With ``dry_run`` nothing is started or recorded; the invocation is returned for printing.
    """
    command = list(command or cfg.agent_command)
    run_id = run_id or new_run_id()
    invocation = prepare(
        cfg, run_id, brief, command=command, context_text=context_text, prompt_text=prompt_text
    )
    record = RunRecord(
        id=run_id,
        brief=" ".join(brief.split()),
        context=str(invocation.context_path) if invocation.context_path else None,
        context_sha256=invocation.context_sha256,
        command=invocation.argv,
        exit_status=None,
        duration_s=0.0,
        started=datetime.now(UTC).isoformat(timespec="seconds"),
        prompt="prompt" if prompt_text is not None else None,
        notes=list(notes or []),
    )
    if invocation.redacted:
        record.notes.append(f"{invocation.redacted} secrets redacted before handing over")
    if dry_run:
        return record, invocation
    t0 = time.perf_counter()
    try:
        record.exit_status = execute(invocation, write=write)
    finally:
        record.duration_s = round(time.perf_counter() - t0, 3)
        _append(runs_file(cfg.home), record)
    return record, invocation


def list_runs(home: Path) -> list[dict[str, Any]]:
    """Every recorded run under the data dir ``home``, oldest first; a damaged line is skipped."""
    path = runs_file(home)
    if not path.is_file():
        return []
    runs = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(item, dict):
            runs.append(item)
    return runs


def describe(invocation: Invocation) -> str:
    """The command line as a shell would need it typed, for --dry-run."""
    return shlex.join(invocation.argv)


def split_command(text: str) -> list[str]:
    """``--agent "codex exec"`` → ``["codex", "exec"]`` (shell quoting rules)."""
    try:
        return shlex.split(text, posix=os.name != "nt")
    except ValueError as exc:
        raise RunError(f"cannot parse agent command {text!r}: {exc}") from exc


def _append(path: Path, record: RunRecord) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record.as_json(), ensure_ascii=False) + "\n")


def _feed(proc: subprocess.Popen[str], text: str) -> None:
    assert proc.stdin is not None
    try:
        proc.stdin.write(text)
        proc.stdin.close()
    except (BrokenPipeError, OSError):
        pass  # the agent stopped reading; its exit status tells the story


def _stdout_writer(stream: TextIO) -> Callable[[str], None]:
    def write(text: str) -> None:
        stream.write(text)
        stream.flush()

    return write


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
