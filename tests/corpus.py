"""Builders for small real corpora on disk: Claude Code transcripts, topics, a code root."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from ctxmill.config import Config

SID = "11111111-2222-4333-8444-555555555555"
SID2 = "66666666-7777-4888-9999-000000000000"


def record(kind: str, n: int, sid: str = SID, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "parentUuid": f"u-{n - 1}" if n > 1 else None,
        "isSidechain": False,
        "userType": "external",
        "cwd": "/home/dev/shop",
        "sessionId": sid,
        "version": "2.1.40",
        "gitBranch": "main",
        "type": kind,
        "uuid": f"u-{n}",
        "timestamp": f"2026-03-{10 + n // 50:02d}T09:{n % 60:02d}:00.000Z",
    }
    base.update(extra)
    return base


def user(n: int, text: str, sid: str = SID) -> dict[str, Any]:
    return record("user", n, sid, message={"role": "user", "content": text})


def assistant(n: int, text: str, sid: str = SID, msg: str | None = None) -> dict[str, Any]:
    return record(
        "assistant",
        n,
        sid,
        requestId=f"req-{n}",
        message={
            "id": msg or f"msg-{n}",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-5",
            "content": [{"type": "text", "text": text}],
            "usage": {"input_tokens": 10, "output_tokens": 5},
        },
    )


def bash(n: int, command: str, sid: str = SID) -> dict[str, Any]:
    return record(
        "assistant",
        n,
        sid,
        requestId=f"req-{n}",
        message={
            "id": f"msg-{n}",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-5",
            "content": [
                {
                    "type": "tool_use",
                    "id": f"toolu_{n}",
                    "name": "Bash",
                    "input": {"command": command},
                }
            ],
        },
    )


def result(n: int, output: str, sid: str = SID) -> dict[str, Any]:
    return record(
        "user",
        n,
        sid,
        message={
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": f"toolu_{n - 1}", "content": output}
            ],
        },
    )


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def session_records(
    sid: str = SID, extra: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    return [
        {"type": "permission-mode", "permissionMode": "default", "sessionId": sid},
        user(1, "The invoice export times out for large customers; find out why.", sid),
        assistant(2, "I will look at the exporter first.", sid),
        bash(3, "pytest tests/test_export.py -x", sid),
        result(4, "FAILED tests/test_export.py::test_large - TimeoutError after 30s", sid),
        assistant(
            5,
            "We decided to stream rows with a server-side cursor instead of loading everything, "
            "because the old approach held 2 GB in memory.",
            sid,
        ),
        *(extra or []),
        {"type": "ai-title", "aiTitle": "Fix invoice export timeout", "sessionId": sid},
    ]


def make_memory(root: Path) -> Config:
    """A memory root with topics, a code root in git, and an agent folder with one transcript."""
    memory = root / "memory"
    topics = memory / "topics"
    topics.mkdir(parents=True)
    (topics / "exports.md").write_text(
        "# Exports\n\nInvoice exports stream rows through a server-side cursor.\n\n"
        "## Limits\n\nThe export endpoint allows 60 seconds before it times out.\n",
        encoding="utf-8",
    )
    code = root / "code"
    (code / "shop").mkdir(parents=True)
    (code / "shop" / "export.py").write_text(
        "def export_invoices(cursor):\n    for row in cursor:\n        yield row\n",
        encoding="utf-8",
    )
    subprocess.run(["git", "init", "-q", str(code)], check=True)
    subprocess.run(["git", "-C", str(code), "add", "."], check=True)
    agent = root / "claude" / "projects" / "-home-dev-shop"
    write_jsonl(agent / f"{SID}.jsonl", session_records())
    return Config(
        memory_root=memory,
        code_root=code,
        transcript_dirs=[root / "claude" / "projects"],
        discover=False,
        embedder="hash",
    )
