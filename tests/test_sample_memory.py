"""The sample memory shipped in the package is well formed: every layer parses, the summaries and
golden tasks have the fields SPEC.md fixes, and the planted secrets are there for redaction tests."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

SAMPLE = Path(__file__).resolve().parent.parent / "src" / "ctxmill" / "data" / "sample"
MEMORY = SAMPLE / "memory"
CODE = SAMPLE / "code"
CLAUDE = SAMPLE / "claude" / "projects" / "-home-dev-ledgerline"
CODEX = SAMPLE / "codex" / "sessions"
TASKS = SAMPLE / "golden" / "tasks"

SUMMARY_FIELDS = {
    "session_id",
    "agent",
    "project",
    "cwd",
    "git_branch",
    "started",
    "ended",
    "files_touched",
    "commands",
    "topics",
    "outcome",
    "tokens",
    "compressor",
    "source_sha256",
}
SUMMARY_HEADINGS = [
    "Goal",
    "What happened",
    "Decisions and why",
    "Failed attempts and why",
    "Open threads",
    "Files",
]
SECTIONS = {"recent_state", "history", "unresolved", "files"}
TAG_KINDS = ("raw:", "session:", "topic:", "code:")


def jsonl_files() -> list[Path]:
    return sorted(SAMPLE.rglob("*.jsonl"))


def summary_files() -> list[Path]:
    return sorted((MEMORY / "sessions" / "compressed").rglob("*.md"))


def task_files() -> list[Path]:
    return sorted(TASKS.glob("*.yaml"))


def split_front_matter(path: Path) -> tuple[dict[str, Any], str]:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\n"), f"{path.name}: no front matter"
    head, body = text[4:].split("\n---\n", 1)
    meta = yaml.safe_load(head)
    assert isinstance(meta, dict), f"{path.name}: front matter is not a mapping"
    return meta, body


def session_ids() -> set[str]:
    ids = {p.stem for p in CLAUDE.glob("*.jsonl")}
    for path in CODEX.rglob("rollout-*.jsonl"):
        first = json.loads(path.open(encoding="utf-8").readline())
        ids.add(first["payload"]["id"])
    return ids


def test_layout_is_complete() -> None:
    assert len(list(CLAUDE.glob("*.jsonl"))) >= 6
    assert len(list(CODEX.rglob("rollout-*.jsonl"))) == 1
    assert list(CLAUDE.glob("*/subagents/agent-*.jsonl"))
    assert list(CLAUDE.glob("*/subagents/agent-*.meta.json"))
    topics = {p.name for p in (MEMORY / "topics").glob("*.md")}
    assert {
        "architecture.md",
        "auth.md",
        "payments-webhooks.md",
        "conventions.md",
        "deploy.md",
    } <= topics
    assert len(task_files()) >= 2
    assert (SAMPLE / "README.md").is_file()


@pytest.mark.parametrize("path", jsonl_files(), ids=lambda p: p.name[:24])
def test_every_jsonl_line_is_json_with_a_type(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines, f"{path.name} is empty"
    for number, line in enumerate(lines, 1):
        record = json.loads(line)
        assert isinstance(record, dict) and record.get("type"), f"{path.name}:{number} has no type"


@pytest.mark.parametrize("path", sorted(CLAUDE.glob("*.jsonl")), ids=lambda p: p.name[:8])
def test_claude_transcripts_are_threaded(path: Path) -> None:
    records = [json.loads(line) for line in path.open(encoding="utf-8")]
    assert 15 <= len(records) <= 60
    seen: set[str] = set()
    tool_ids: set[str] = set()
    for record in records:
        if record["type"] in {"user", "assistant", "system", "attachment"}:
            assert record["sessionId"] == path.stem
            parent = record.get("parentUuid")
            assert parent is None or parent in seen, f"dangling parentUuid in {path.name}"
            seen.add(record["uuid"])
        if record["type"] == "assistant":
            assert len(record["message"]["content"]) == 1  # one content block per line
            block = record["message"]["content"][0]
            if block["type"] == "tool_use":
                tool_ids.add(block["id"])
        if record["type"] == "user" and isinstance(record["message"]["content"], list):
            for block in record["message"]["content"]:
                if block.get("type") == "tool_result":
                    assert block["tool_use_id"] in tool_ids
    types = {r["type"] for r in records}
    assert {"permission-mode", "user", "assistant", "system", "ai-title", "last-prompt"} <= types


def test_transcript_features_are_present() -> None:
    records = [
        json.loads(line) for p in CLAUDE.glob("*.jsonl") for line in p.open(encoding="utf-8")
    ]
    subtypes = {r.get("subtype") for r in records if r["type"] == "system"}
    assert {"turn_duration", "compact_boundary"} <= subtypes
    assert any(r.get("isCompactSummary") for r in records)
    blocks = [r["message"]["content"][0] for r in records if r["type"] == "assistant"]
    assert any(b["type"] == "thinking" and b.get("signature") for b in blocks)
    tools = {b["name"] for b in blocks if b["type"] == "tool_use"}
    assert {"Read", "Edit", "Write", "Bash", "Grep", "Agent"} <= tools
    by_message: dict[str, int] = {}
    for r in records:
        if r["type"] == "assistant":
            by_message[r["message"]["id"]] = by_message.get(r["message"]["id"], 0) + 1
    assert max(by_message.values()) >= 3  # one API response split over several lines
    meta = json.loads(next(CLAUDE.glob("*/subagents/*.meta.json")).read_text(encoding="utf-8"))
    assert meta["toolUseId"] in {b["id"] for b in blocks if b["type"] == "tool_use"}


@pytest.mark.parametrize("path", summary_files(), ids=lambda p: p.name[:12] + p.suffixes[0])
def test_summaries_have_front_matter_and_headings(path: Path) -> None:
    meta, body = split_front_matter(path)
    missing = SUMMARY_FIELDS - meta.keys()
    assert not missing, f"{path.name} lacks {sorted(missing)}"
    assert {"backend", "model", "prompt_version"} <= meta["compressor"].keys()
    assert re.fullmatch(r"[0-9a-f]{64}", meta["source_sha256"])
    assert meta["session_id"] in session_ids()
    assert path.parent.name == str(meta["started"])[:4]
    headings = re.findall(r"^## (.+)$", body, flags=re.M)
    assert headings == SUMMARY_HEADINGS, f"{path.name}: {headings}"
    assert 500 <= meta["tokens"] <= 2000


def test_summaries_cover_only_part_of_the_sessions_and_one_is_superseded() -> None:
    metas = [split_front_matter(p)[0] for p in summary_files()]
    summarized = {m["session_id"] for m in metas}
    assert 0 < len(summarized) < len(session_ids())
    newer = [m for m in metas if m.get("supersedes")]
    assert newer, "no superseding summary"
    compressed = MEMORY / "sessions" / "compressed"
    for meta in newer:
        old = compressed / meta["supersedes"]
        assert old.is_file(), "the superseded summary must stay (append-only)"
        assert split_front_matter(old)[0]["session_id"] == meta["session_id"]


def test_summary_source_hashes_match_the_raw_transcripts() -> None:
    for path in summary_files():
        meta, _ = split_front_matter(path)
        raw = CLAUDE / f"{meta['session_id']}.jsonl"
        assert hashlib.sha256(raw.read_bytes()).hexdigest() == meta["source_sha256"], path.name


@pytest.mark.parametrize("path", task_files(), ids=lambda p: p.stem)
def test_golden_tasks_follow_the_spec(path: Path) -> None:
    task = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert task["id"] == path.stem
    assert isinstance(task["brief"], str) and task["brief"]
    assert str(task["as_of"]).startswith("2026-")
    assert isinstance(task.get("budget", 8000), int)
    ids = [c["id"] for c in task["claims"]]
    assert len(ids) == len(set(ids)) and len(ids) >= 5
    known = session_ids()
    for claim in task["claims"]:
        assert claim["section"] in SECTIONS
        assert claim["text"].strip()
        assert claim["sources"] and all(s.startswith(TAG_KINDS) for s in claim["sources"])
        assert all(isinstance(k, str) and k for k in claim.get("keywords", []))
        for source in claim["sources"]:
            kind, ref = source.split(":", 1)
            if kind in {"raw", "session"}:
                assert ref in known, f"{path.name} {claim['id']}: unknown session {ref}"
            if kind == "session":
                assert any(split_front_matter(p)[0]["session_id"] == ref for p in summary_files())
            if kind == "topic":
                assert (MEMORY / "topics" / ref).is_file(), f"{path.name}: no topic {ref}"


def test_golden_code_sources_exist() -> None:
    for path in task_files():
        task = yaml.safe_load(path.read_text(encoding="utf-8"))
        for claim in task["claims"]:
            for source in claim["sources"]:
                if source.startswith("code:"):
                    rel = source[len("code:") :].split(":", 1)[0]
                    assert (CODE / rel).is_file(), f"{path.name} {claim['id']}: {rel} missing"


def test_topics_are_concrete() -> None:
    for path in (MEMORY / "topics").glob("*.md"):
        lines = path.read_text(encoding="utf-8").splitlines()
        assert 40 <= len(lines) <= 120, f"{path.name}: {len(lines)} lines"
        assert lines[0].startswith("# ")


def test_precedence_conflict_is_planted() -> None:
    auth = (MEMORY / "topics" / "auth.md").read_text(encoding="utf-8")
    assert "Session TTL is 12h" in auth
    conflicting = [p for p in summary_files() if "kept at 24h" in p.read_text(encoding="utf-8")]
    assert len(conflicting) == 1
    session_id = split_front_matter(conflicting[0])[0]["session_id"]
    raw = (CLAUDE / f"{session_id}.jsonl").read_text(encoding="utf-8")
    assert "12 * 60 * 60" in raw and "**12h**" in raw


def test_fake_secrets_are_present_for_redaction() -> None:
    raw = "\n".join(p.read_text(encoding="utf-8") for p in CLAUDE.glob("*.jsonl"))
    assert re.search(r"STRIPE_SECRET_KEY=sk_live_[0-9A-Za-z]{24,}", raw)
    assert re.search(r"ANTHROPIC_API_KEY=sk-ant-[0-9A-Za-z_-]{40,}", raw)
    assert re.search(r"whsec_[0-9A-Za-z]{20,}", raw)
    for secret in re.findall(r"sk_live_[0-9A-Za-z]+|sk-ant-[0-9A-Za-z_-]+", raw):
        assert "FAKE" in secret, "sample secrets must be visibly fake"
    elsewhere = [p for p in SAMPLE.rglob("*") if p.is_file() and p.suffix != ".jsonl"]
    for path in elsewhere:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"sk_live_[0-9A-Za-z]{24,}|sk-ant-api03-[0-9A-Za-z_-]{40,}", text), (
            path.name
        )


def test_sample_stays_small() -> None:
    total = sum(p.stat().st_size for p in SAMPLE.rglob("*") if p.is_file())
    assert total < 512_000, f"sample is {total} bytes"


def test_summaries_pass_the_summary_validator() -> None:
    summary_format = pytest.importorskip("ctxmill.summary_format")
    for path in summary_files():
        assert summary_format.validate_summary(path.read_text(encoding="utf-8")) == [], path.name


def test_golden_tasks_load_with_the_bench_loader() -> None:
    golden = pytest.importorskip("ctxmill.bench.golden")
    for path in task_files():
        task = golden.load_task(path, "sample")
        assert task.as_of is not None and task.claims
