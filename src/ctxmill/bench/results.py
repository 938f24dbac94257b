"""The benchmark results log: one JSON object per run, appended, so scores compare over time."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ctxmill
from ctxmill.config import home_dir


def default_log() -> Path:
    """``$CTXMILL_HOME/bench/results.jsonl`` (the user data dir when CTXMILL_HOME is unset)."""
    return home_dir() / "bench" / "results.jsonl"


def git_revision(where: Path | None = None) -> dict[str, Any]:
    """``{"revision", "dirty"}`` of the git checkout holding ``where`` (ctxmill's own source by
    default); both None outside a checkout or without git."""
    folder = where or Path(ctxmill.__file__).resolve().parent
    info: dict[str, Any] = {"revision": None, "dirty": None}
    try:
        rev = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if rev.returncode != 0:
            return info
        info["revision"] = rev.stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        info["dirty"] = bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def record(kind: str, settings: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """A log entry: what ran, on which revision, with which settings, and its scores."""
    git = git_revision()
    return {
        "kind": kind,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "ctxmill_version": ctxmill.__version__,
        "git_revision": git["revision"],
        "git_dirty": git["dirty"],
        "settings": settings,
        **payload,
    }


def append(entry: dict[str, Any], *logs: Path) -> list[Path]:
    """Append ``entry`` as one line to every log (creating folders); returns the paths written."""
    line = json.dumps(entry, ensure_ascii=False, sort_keys=False)
    written: list[Path] = []
    for log in dict.fromkeys(p.expanduser().resolve() for p in logs):
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        written.append(log)
    return written


def read(log: Path) -> tuple[list[dict[str, Any]], int]:
    """Every well-formed entry of a log, oldest first, and the number of lines skipped."""
    entries: list[dict[str, Any]] = []
    skipped = 0
    with log.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                skipped += 1
                continue
            if isinstance(obj, dict):
                entries.append(obj)
            else:
                skipped += 1
    return entries, skipped
