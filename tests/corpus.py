"""Builders for small real corpora on disk: Claude Code transcripts, topics, a code root, and
copies of the shipped sample's transcripts."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ctxmill.config import Config, sample_dir

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


# -- sessions of particular shapes, and the shipped sample's transcripts --------------------------

SAMPLE = sample_dir()
SAMPLE_PROJECT = SAMPLE / "claude" / "projects" / "-home-dev-ledgerline"
SAMPLE_CODEX_ROLLOUT = (
    SAMPLE / "codex" / "sessions" / "2026" / "05" / "12"
    / "rollout-2026-05-12T10-00-00-0196c4e2-5a7b-7d30-9c18-3e6f0a2b4d91.jsonl"
)  # fmt: skip
SAMPLE_CODEX_SID = "0196c4e2-5a7b-7d30-9c18-3e6f0a2b4d91"
# The sample's Claude Code sessions, oldest first (see the sample's README for what each one did).
SAMPLE_AUTH_MAP = "3b8e1f52-7c4d-4a19-9e36-0d5f2a8c71e4"  # 2026-02-17, one Explore subagent
SAMPLE_OIDC_TRY = "9d2c6a07-51e8-4f3b-8a64-c1e7b09f3d25"  # 2026-03-11
SAMPLE_SESSION_MODEL = "c7a41e93-2b6f-4d05-b8e2-5f90d3a1c6b7"  # 2026-04-08
SAMPLE_WEBHOOKS = "1f7d3c88-e9a2-4b56-a0c4-7b2e65d9f81a"  # 2026-05-05
SAMPLE_DROP_CELERY = "8a6f2b91-4c0e-4e7d-b3f5-92d1c8e4a076"  # 2026-06-03, auto-compacted, longest
SAMPLE_OIDC_PLAN = "e4c95d20-7f18-4b3a-8e69-a0d7b31f5c42"  # 2026-06-22
SAMPLE_SUBAGENT = "agent-a7c2e9f14b0d3a68"  # the subagent of SAMPLE_AUTH_MAP


def sample_transcript(sid: str) -> Path:
    """The shipped sample's Claude Code transcript of session ``sid`` (read-only)."""
    return SAMPLE_PROJECT / f"{sid}.jsonl"


def copy_sample_session(sid: str, folder: Path) -> Path:
    """Copy a sample Claude Code session into ``folder``, its ``<sid>/subagents/`` folder too."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{sid}.jsonl"
    shutil.copy(sample_transcript(sid), target)
    if (SAMPLE_PROJECT / sid).is_dir():
        shutil.copytree(SAMPLE_PROJECT / sid, folder / sid)
    return target


def edit(n: int, path: str, old: str, new: str, sid: str = SID) -> dict[str, Any]:
    """An assistant record calling the Edit tool on ``path``."""
    rec = bash(n, "", sid)
    rec["message"]["content"] = [
        {
            "type": "tool_use",
            "id": f"toolu_{n}",
            "name": "Edit",
            "input": {"file_path": path, "old_string": old, "new_string": new},
        }
    ]
    return rec


def failed_result(n: int, output: str, sid: str = SID) -> dict[str, Any]:
    """The result of the tool call in record ``n - 1``, marked as an error."""
    rec = result(n, output, sid)
    rec["message"]["content"][0]["is_error"] = True
    return rec


def interrupted(n: int, sid: str = SID) -> dict[str, Any]:
    """The record Claude Code writes when the user stops the agent during a tool call."""
    text = "[Request interrupted by user for tool use]"
    return record(
        "user", n, sid, message={"role": "user", "content": [{"type": "text", "text": text}]}
    )


REJECTED = (
    "The user doesn't want to proceed with this tool use. The tool use was rejected (eg. if it "
    "was a file edit, the new_string was NOT written to the file). STOP what you are doing and "
    "wait for the user to tell you how to proceed."
)


def short_session_records(sid: str = SID) -> list[dict[str, Any]]:
    """A session of one request that the user interrupted: the agent's only command was rejected."""
    return [
        {"type": "permission-mode", "permissionMode": "default", "sessionId": sid},
        user(1, "make serve exits straight away on my laptop", sid),
        assistant(2, "Let me run the server and read the error it prints.", sid),
        bash(3, "make serve 2>&1 | tail -40", sid),
        failed_result(4, REJECTED, sid),
        interrupted(5, sid),
    ]


def failing_session_records(sid: str = SID) -> list[dict[str, Any]]:
    """A session with an edit, a passing and a failing command: the failure's error is verbatim."""
    return [
        {"type": "permission-mode", "permissionMode": "default", "sessionId": sid},
        user(1, "Add a retry to the invoice mailer and push the branch.", sid),
        assistant(2, "I will wrap the SMTP send in a retry with backoff.", sid),
        edit(3, "shop/mailer.py", "send(msg)", "with_retry(send, msg, attempts=3)", sid),
        result(4, "The file shop/mailer.py has been updated.", sid),
        bash(5, "pytest tests/test_mailer.py -q", sid),
        result(6, "4 passed in 0.31s", sid),
        bash(7, "git push 2>&1", sid),
        failed_result(
            8,
            "Exit code 128\nfatal: The current branch mailer-retry has no upstream branch.\n"
            "To push the current branch and set the remote as upstream, use\n\n"
            "    git push --set-upstream origin mailer-retry",
            sid,
        ),
        assistant(9, "The push failed because the branch has no upstream yet.", sid),
    ]


def compaction_helper_records(parent_sid: str) -> list[dict[str, Any]]:
    """A compaction helper's subagent file (``<parent>/subagents/agent-acompact-*.jsonl``): it
    re-summarises the parent's own conversation, so it brings nothing new to fold in."""
    ask = "Summarise the conversation so far so that the session can continue after compaction."
    answer = "Summary: the user asked for a map of the code; the agent read two files."
    return [
        record("user", 1, parent_sid, isSidechain=True, message={"role": "user", "content": ask}),
        {**assistant(2, answer, parent_sid), "isSidechain": True},
    ]
