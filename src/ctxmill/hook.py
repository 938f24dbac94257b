"""The Claude Code ``SessionEnd`` hook: queue the session that just closed, return at once.

Claude Code gives ``SessionEnd`` hooks about 1.5 seconds in all and ignores their output, and the
transcript may still be missing its last turn when the hook runs.  So the hook does no work: it
writes one small job file under ``$CTXMILL_HOME/queue/`` and starts a detached worker
(``ctxmill compress --from-queue``) that waits for the transcript to settle, compresses it and
removes the job.  A job the worker could not finish stays queued for the next ``ctxmill compress``.

One file per job (``<time_ns>-<session_id>.json``, written to a temp name and renamed) rather than
one shared queue file: concurrent hooks never interleave, and removing a finished job is an unlink.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

QUEUE_DIR = "queue"
MAX_PAYLOAD = 1 << 20  # a hook payload is a few hundred bytes; refuse anything absurd
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


class HookInputError(ValueError):
    """The hook's stdin is not a usable SessionEnd payload; the message is one line."""


@dataclass(frozen=True)
class Job:
    """One queued session."""

    session_id: str
    transcript_path: str
    cwd: str | None
    reason: str | None
    event: str
    memory_root: str | None
    queued_at: str
    file: Path

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "file"}


def parse_payload(raw: str) -> dict[str, Any]:
    """The fields ctxmill needs from a hook's stdin JSON, or :class:`HookInputError`."""
    if len(raw) > MAX_PAYLOAD:
        raise HookInputError(f"hook input is {len(raw)} bytes; expected a small JSON object")
    if not raw.strip():
        raise HookInputError("no hook input on stdin (expected the SessionEnd JSON object)")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise HookInputError(f"hook input is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise HookInputError("hook input is not a JSON object")
    sid = data.get("session_id")
    path = data.get("transcript_path")
    if not isinstance(sid, str) or not _SAFE_ID.match(sid):
        raise HookInputError("hook input lacks a usable 'session_id'")
    if not isinstance(path, str) or not path.strip():
        raise HookInputError("hook input lacks 'transcript_path'")
    return {
        "session_id": sid,
        "transcript_path": str(Path(path).expanduser()),
        "cwd": data.get("cwd") if isinstance(data.get("cwd"), str) else None,
        "reason": data.get("reason") if isinstance(data.get("reason"), str) else None,
        "event": str(data.get("hook_event_name") or "SessionEnd"),
    }


def queue_dir(home: Path) -> Path:
    return home / QUEUE_DIR


def enqueue(home: Path, payload: dict[str, Any], memory_root: Path | None) -> Path:
    """Write one job file atomically; returns its path."""
    folder = queue_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    job = dict(payload)
    job["memory_root"] = str(memory_root) if memory_root else None
    job["queued_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    name = f"{time.time_ns()}-{payload['session_id']}.json"
    tmp = folder / f".{name}.tmp"
    tmp.write_text(json.dumps(job), encoding="utf-8")
    os.replace(tmp, folder / name)
    return folder / name


def read_queue(home: Path, memory_root: Path | None = None) -> list[Job]:
    """Queued jobs, oldest first; with ``memory_root``, only the jobs for that memory (or for
    none in particular).  A damaged job file is removed: it can never be done."""
    folder = queue_dir(home)
    if not folder.is_dir():
        return []
    jobs: list[Job] = []
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            job = Job(
                session_id=str(data["session_id"]),
                transcript_path=str(data["transcript_path"]),
                cwd=data.get("cwd"),
                reason=data.get("reason"),
                event=str(data.get("event") or "SessionEnd"),
                memory_root=data.get("memory_root"),
                queued_at=str(data.get("queued_at") or ""),
                file=path,
            )
        except FileNotFoundError:
            continue  # another worker finished it meanwhile
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)
            continue
        if memory_root is not None and job.memory_root not in (None, str(memory_root)):
            continue
        jobs.append(job)
    return jobs


def worker_command(memory_root: Path | None) -> list[str]:
    """The detached worker's argv: this Python running ctxmill's CLI (no reliance on PATH)."""
    argv = [
        sys.executable,
        "-c",
        "from ctxmill.cli import main; main()",
        "compress",
        "--from-queue",
    ]
    if memory_root is not None:
        argv += ["--memory", str(memory_root)]
    return argv


def spawn_worker(home: Path, memory_root: Path | None) -> int:
    """Start ``ctxmill compress --from-queue`` in its own session, detached from the hook; its
    output goes to ``queue/worker.log``.  Returns the worker's pid."""
    folder = queue_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "worker.log").open("ab") as log:
        proc = subprocess.Popen(
            worker_command(memory_root),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # survives the hook's process group being torn down
            close_fds=True,
            cwd=str(home),
        )
    return proc.pid


def session_end(
    raw: str, home: Path, memory_root: Path | None, *, worker: bool = True
) -> tuple[Path, int | None]:
    """Queue the session in ``raw`` (the hook's stdin) and optionally start the worker."""
    payload = parse_payload(raw)
    job = enqueue(home, payload, memory_root)
    pid = spawn_worker(home, memory_root) if worker else None
    return job, pid
