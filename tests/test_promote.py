"""Promotion: summaries → proposed topic edits as a diff, applied only on request, never the reverse."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from click.testing import CliRunner

from ctxmill.cli import cli
from ctxmill.config import load_config
from ctxmill.llm import FakeBackend, LLMRunner
from ctxmill.promote import apply, propose
from ctxmill.summary_format import render_summary

AUTH = """# Auth

## Current state

- OIDC login is planned, not wired yet.
- Session TTL is 12h: `SESSION_TTL_SECONDS = 43200` in `app/settings.py`.
- Sessions live in Redis under `sess:<token>`.

## Decisions

### 2026-01-10: server-side sessions
- Keep server-side sessions in Redis; revocation must be instant.

## Open questions

- Sliding renewal: not decided.
"""

CONVENTIONS = """# Conventions

## Conventions

- Migrations are numbered `NNNN_name.py`.

## Tooling

- Formatting with `ruff format`.
"""

DEPLOY = (
    "# Deploy\n\nReviewed 2026-06-01.\n\n- Deploys go through `make deploy` on the bastion host.\n"
)


def _summary(
    folder: Path, sid: str, ended: str, outcome: str, decisions: str, happened: str
) -> Path:
    body = (
        f"## Goal\n\nWork on {sid}.\n\n## What happened\n\n{happened}\n\n"
        f"## Decisions and why\n\n{decisions}\n\n## Failed attempts and why\n\nNone recorded.\n\n"
        "## Open threads\n\nNone recorded.\n\n## Files\n\n- `app/settings.py` (edited)\n"
    )
    front = {
        "session_id": sid,
        "agent": "claude-code",
        "project": "shop",
        "cwd": "/home/dev/shop",
        "git_branch": "main",
        "started": ended,
        "ended": ended,
        "files_touched": ["app/settings.py"],
        "commands": [],
        "topics": [],
        "outcome": outcome,
        "tokens": 100,
        "compressor": {"backend": "extractive", "model": None, "prompt_version": "extractive-v1"},
        "source_sha256": "0" * 64,
    }
    path = folder / f"{sid}.md"
    path.write_text(render_summary(front, body), encoding="utf-8")
    return path


def _memory(tmp_path: Path) -> Path:
    mem = tmp_path / "memory"
    topics = mem / "topics"
    topics.mkdir(parents=True)
    (topics / "auth.md").write_text(AUTH, encoding="utf-8")
    (topics / "conventions.md").write_text(CONVENTIONS, encoding="utf-8")
    (topics / "deploy.md").write_text(DEPLOY, encoding="utf-8")
    folder = mem / "sessions" / "compressed" / "2026"
    folder.mkdir(parents=True)
    _summary(
        folder,
        "s1",
        "2026-05-02T10:00:00Z",
        "completed",
        "- We decided to shorten the session TTL to 8h (`SESSION_TTL_SECONDS = 28800`) because "
        "finance users share machines. (turn 4)\n"
        "- Going with PKCE for the OIDC login instead of the implicit flow, because tokens must "
        "never reach the browser. (turn 9)",
        "- Agreed that database migrations must always be reversible from now on. (turn 12)",
    )
    _summary(
        folder,
        "s2",
        "2026-04-01T10:00:00Z",
        "completed",
        "- Going with PKCE for OIDC login instead of the implicit flow because tokens never reach "
        "the browser. (turn 3)\n"
        "- Chose Redis streams for the invoice queue because they keep ordering per customer. "
        "(turn 5)",
        "- Ran `pytest -q`",
    )
    _summary(
        folder,
        "s3",
        "2026-05-05T10:00:00Z",
        "abandoned",
        "- Decided to move deploys to Kubernetes because the bastion host is flaky. (turn 2)",
        "- Ran `kubectl apply -f deploy/`",
    )
    _summary(
        folder,
        "s4",
        "2026-05-10T10:00:00Z",
        "completed",
        "- Going with `make release` on the bastion host instead of `make deploy` for deploys, "
        "because it tags the build. (turn 7)",
        "- Ran `make release`",
    )
    return mem


def _hashes(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.md"))
    }


def test_extractive_proposals_as_a_diff_with_session_tags(tmp_path: Path) -> None:
    mem = _memory(tmp_path)
    plan = propose(load_config(mem, discover=False))
    diff = plan.diff()
    assert plan.summaries_read == 4
    # The TTL decision contradicts the topic's 12h line and replaces it.
    assert "-- Session TTL is 12h: `SESSION_TTL_SECONDS = 43200` in `app/settings.py`.\n" in diff
    assert (
        "+- 2026-05-02: We decided to shorten the session TTL to 8h (`SESSION_TTL_SECONDS = 28800`) "
        "because finance users share machines. <!-- [session:s1] -->\n"
    ) in diff
    # A new decision goes into its own sub-entry of the dated Decisions section.
    assert "+### From session summaries\n" in diff
    assert "PKCE for the OIDC login instead of the implicit flow" in diff
    assert diff.count("PKCE") == 1  # the older session's repeat of it is dropped
    # A convention goes to the conventions topic, at the end of its Conventions section.
    assert "--- a/topics/conventions.md\n+++ b/topics/conventions.md\n" in diff
    assert (
        " - Migrations are numbered `NNNN_name.py`.\n"
        "+- 2026-05-02: Agreed that database migrations must always be reversible from now on. "
        "<!-- [session:s1] -->\n"
    ) in diff
    # An abandoned session's decision did not become the current state.
    assert "Kubernetes" not in diff
    # Nothing matched the invoice queue decision: reported, not guessed.
    assert [p.line for p in plan.unplaced] == [
        "Chose Redis streams for the invoice queue because they keep ordering per customer."
    ]
    # The deploy note was reviewed after that session ended: its author has seen it.
    assert "deploy.md" not in diff
    assert [p.session_id for p in plan.older] == ["s4"]


def test_apply_writes_topics_only_and_a_second_run_proposes_nothing(tmp_path: Path) -> None:
    mem = _memory(tmp_path)
    compressed = mem / "sessions" / "compressed"
    before = _hashes(compressed)
    cfg = load_config(mem, discover=False)
    written = apply(propose(cfg))
    assert sorted(p.name for p in written) == ["auth.md", "conventions.md"]
    auth = (mem / "topics" / "auth.md").read_text(encoding="utf-8")
    assert "Session TTL is 12h" not in auth
    assert "<!-- [session:s1] -->" in auth
    assert auth.index("### From session summaries") < auth.index("## Open questions")
    assert _hashes(compressed) == before  # topics never flow back into summaries
    again = propose(cfg)
    assert again.proposals == [] and again.diff() == ""


def test_model_proposals_must_cite_a_section_that_supports_them(tmp_path: Path) -> None:
    mem = _memory(tmp_path)
    answer = json.dumps(
        [
            {
                "topic": "auth.md",
                "line": "Session TTL is 8h (`SESSION_TTL_SECONDS = 28800`) for finance users on shared machines",
                "replaces": "- Session TTL is 12h: `SESSION_TTL_SECONDS = 43200` in `app/settings.py`.",
                "cite": "s1#Decisions and why",
            },
            {
                "topic": "auth.md",
                "line": "Tokens rotate daily",
                "replaces": None,
                "cite": "s9#Decisions and why",
            },
            {
                "topic": "auth.md",
                "line": "Login uses PKCE",
                "replaces": None,
                "cite": "s1#Open threads",
            },
            {
                "topic": "deploy.md",
                "line": "Use GraphQL for every public API",
                "replaces": None,
                "cite": "s1#Decisions and why",
            },
        ]
    )
    fake = FakeBackend([f"Here are my proposals:\n{answer}\nDone."])
    plan = propose(load_config(mem, discover=False), runner=LLMRunner(fake, log=False))
    assert [(p.topic.name, p.kind, p.session_id) for p in plan.proposals] == [
        ("auth.md", "contradiction", "s1")
    ]
    assert len(plan.dropped) == 3
    assert "no section shown" in plan.dropped[0]
    assert "empty section" in plan.dropped[1]
    assert "not supported" in plan.dropped[2]
    diff = plan.diff()
    assert "+- 2026-05-02: Session TTL is 8h (`SESSION_TTL_SECONDS = 28800`)" in diff
    assert "<!-- [session:s1] -->" in diff
    assert "s1" in fake.calls[0].prompt and "auth.md" in fake.calls[0].prompt


def test_promote_command_prints_the_diff_and_applies_on_request(tmp_path: Path) -> None:
    mem = _memory(tmp_path)
    patch = tmp_path / "promote.diff"
    args = ["promote", "--memory", str(mem), "--no-discover"]
    shown = CliRunner().invoke(cli, [*args, "-o", str(patch)])
    assert shown.exit_code == 0, shown.output
    assert "+++ b/topics/auth.md" in shown.output
    assert "review the diff, then run again with --apply" in shown.output
    assert patch.read_text(encoding="utf-8") in shown.output
    assert (mem / "topics" / "auth.md").read_text(encoding="utf-8") == AUTH  # nothing written yet
    applied = CliRunner().invoke(cli, [*args, "--apply", "--json"])
    assert applied.exit_code == 0, applied.output
    data = json.loads(applied.output)
    assert len(data["applied"]) == 2 and len(data["proposals"]) == 3
    assert (mem / "topics" / "auth.md").read_text(encoding="utf-8") != AUTH
    only_s2 = CliRunner().invoke(cli, [*args, "--session", "s2", "--json"])
    assert json.loads(only_s2.output)["summaries_read"] == 1
