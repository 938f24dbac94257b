"""The compression pass without a model: the extractive compressor on the shipped sample's
transcripts and on every real transcript, the validator, and the pass end to end (append-only
versions, incremental runs, subagents, bad input, a full disk and a crash half-way).

The mechanics run on transcripts the project owns (the sample memory in ``ctxmill/data/sample`` and
small sessions built by ``corpus.py``); only the tests whose point is real third-party data use
the shared benchmark data, and skip when it is absent."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from conftest import SHARED_DATA, shared_data
from corpus import (
    SAMPLE_AUTH_MAP,
    SAMPLE_CODEX_ROLLOUT,
    SAMPLE_CODEX_SID,
    SAMPLE_DROP_CELERY,
    SAMPLE_OIDC_PLAN,
    SAMPLE_OIDC_TRY,
    SAMPLE_SESSION_MODEL,
    SAMPLE_SUBAGENT,
    SAMPLE_WEBHOOKS,
    compaction_helper_records,
    copy_sample_session,
    failing_session_records,
    sample_transcript,
    short_session_records,
    write_jsonl,
)

from ctxmill import sources
from ctxmill.cli import cli
from ctxmill.compress import _subagent_files, compress_session, existing_summaries
from ctxmill.config import load_config
from ctxmill.model import Session
from ctxmill.summary_format import HEADINGS, split_summary, validate_summary
from ctxmill.tokens import count_tokens

REPO = Path(__file__).resolve().parent.parent
SPOTTER = "claude-code/marot_spotter"
MAIN_SID = "4d5611e5-241a-462a-8d15-5122611a9569"
TWO_HOURS = 2 * 3600
SAMPLE_SIDS = [
    SAMPLE_AUTH_MAP,
    SAMPLE_OIDC_TRY,
    SAMPLE_SESSION_MODEL,
    SAMPLE_WEBHOOKS,
    SAMPLE_DROP_CELERY,
    SAMPLE_OIDC_PLAN,
]


def _real_transcripts() -> list[str]:
    found = []
    for folder in ("claude-code", "specstory/gryag"):
        root = SHARED_DATA / folder
        if root.is_dir():
            found += [
                str(p.relative_to(SHARED_DATA))
                for p in sorted(root.rglob("*"))
                if p.is_file() and sources.detect(p) is not None
            ]
    return found or ["claude-code/(missing)"]


def _sessions(path: Path) -> list[tuple[Session, list[Session]]]:
    parsed = sources.parse_transcript(sources.detect(path) or "", path)
    out = []
    for s in parsed.sessions:
        if s.parent_id or not any(t.role in ("user", "assistant") for t in s.turns):
            continue
        children = [c for c in parsed.sessions if c.parent_id == s.id]
        out.append((s, children + _subagent_files(path, s.id)))
    return out


def _built(tmp_path: Path, name: str, records: list[dict[str, Any]]) -> Path:
    """A transcript built by ``corpus.py``, where Claude Code would keep it."""
    return write_jsonl(tmp_path / "claude" / "projects" / "-home-dev-shop" / name, records)


def _check_every_summary_of(path: Path) -> int:
    """Compress every session of ``path`` and check each summary; returns how many there were."""
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    found = _sessions(path)
    for session, children in found:
        text = compress_session(session, children=children, sha=sha)
        assert validate_summary(text) == []
        front, body, _ = split_summary(text)
        assert front is not None
        # Files and commands are kept verbatim, the parent's and its subagents'.
        expected_files = {*session.files_touched, *(f for c in children for f in c.files_touched)}
        assert expected_files <= set(front["files_touched"])
        assert set(session.commands) <= set(front["commands"])
        assert [h for h in HEADINGS if f"## {h}\n" in body] == list(HEADINGS)
        assert front["tokens"] == count_tokens(body.strip()) <= 2000
        assert front["source_sha256"] == sha
        assert front["outcome"] in ("completed", "abandoned", "unknown")
        # The compressor is deterministic: the same session gives the same body.
        again = compress_session(session, children=children, sha=sha)
        assert split_summary(again)[1] == body
    return len(found)


@pytest.mark.parametrize(
    "path",
    [*(sample_transcript(sid) for sid in SAMPLE_SIDS), SAMPLE_CODEX_ROLLOUT],
    ids=lambda p: p.name[:40],
)
def test_extractive_summary_of_every_sample_transcript_is_valid(path: Path) -> None:
    assert _check_every_summary_of(path) == 1


@pytest.mark.parametrize("rel", _real_transcripts())
def test_extractive_summary_of_every_real_transcript_is_valid(rel: str) -> None:
    _check_every_summary_of(shared_data(*rel.split("/")))


def test_extractive_summary_keeps_paths_commands_and_errors_verbatim() -> None:
    path = shared_data(SPOTTER, f"{MAIN_SID}.jsonl")
    (session, children), *_ = _sessions(path)
    text = compress_session(session, children=children, sha="0" * 64)
    _, body, _ = split_summary(text)
    assert (
        "`git push 2>&1` failed: fatal: The current branch spotter-dov has no upstream branch."
        in body
    )
    assert "- `lib/spotter_web/live/transcript_computers.ex` (edited)" in body
    assert "- Ran `mix test 2>&1 | tail -10`" in body
    assert "Subagent `agent-a2898e3`" in body
    assert "Work on bead spotter-dov." in body.split("## What happened")[0]


def test_extractive_summary_keeps_an_error_and_an_edit_verbatim(tmp_path: Path) -> None:
    path = _built(tmp_path, "failing.jsonl", failing_session_records())
    (session, children), *_ = _sessions(path)
    _, body, _ = split_summary(compress_session(session, children=children, sha="0" * 64))
    assert (
        "- `git push 2>&1` failed: fatal: The current branch mailer-retry has no upstream branch."
        " (turn 8)" in body.split("## Failed attempts and why")[1]
    )
    assert "- `shop/mailer.py` (edited)" in body.split("## Files")[1]
    assert "- Ran `pytest tests/test_mailer.py -q`" in body
    assert "Add a retry to the invoice mailer" in body.split("## What happened")[0]


def test_extractive_summary_folds_a_subagent_and_keeps_commands_verbatim() -> None:
    (session, children), *_ = _sessions(sample_transcript(SAMPLE_AUTH_MAP))
    assert [c.id for c in children] == [SAMPLE_SUBAGENT]
    text = compress_session(session, children=children, sha="0" * 64)
    front, body, _ = split_summary(text)
    assert front is not None and front["subagents"] == [SAMPLE_SUBAGENT]
    assert f"- Subagent `{SAMPLE_SUBAGENT}`: In the ledgerline repo, find every consumer" in body
    command = (
        "grep '\"legacy session header used\"' logs/prod-sample-2026-02-16.jsonl "
        "| jq -r .user_agent | sort | uniq -c | sort -rn"
    )
    assert command in front["commands"]
    assert f"- Ran `{command}`" in body
    assert "- `ledgerline/auth/session.py` (read)" in body.split("## Files")[1]
    assert "a map of how auth works today" in body.split("## What happened")[0]


def test_short_session_may_be_under_the_target_and_says_why(tmp_path: Path) -> None:
    path = _built(tmp_path, "short.jsonl", short_session_records())
    (session, children), *_ = _sessions(path)
    text = compress_session(session, children=children, sha="0" * 64)
    front, body, _ = split_summary(text)
    assert front is not None and front["tokens"] < 500
    assert front["source_tokens"] < 2000
    assert front["outcome"] == "abandoned"  # the user interrupted the only request
    assert "Last request, interrupted: make serve exits straight away on my laptop" in body
    # The same body claiming a long source is refused.
    long_source = text.replace(f"source_tokens: {front['source_tokens']}", "source_tokens: 50000")
    assert any("under the minimum of 500" in p for p in validate_summary(long_source))


# -- the validator -------------------------------------------------------------------------------


def _valid_text() -> str:
    (session, children), *_ = _sessions(sample_transcript(SAMPLE_AUTH_MAP))
    return compress_session(session, children=children, sha="a" * 64)


def test_validator_reports_each_kind_of_problem() -> None:
    text = _valid_text()
    assert validate_summary(text) == []
    front, body, _ = split_summary(text)
    assert front is not None

    def problems_with(front_changes: dict[str, Any], new_body: str | None = None) -> list[str]:
        data = {**front, **front_changes}
        data = {k: v for k, v in data.items() if v is not ...}
        head = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        return validate_summary(f"---\n{head}---\n\n{new_body if new_body is not None else body}")

    assert problems_with({}) == []
    assert any("lacks 'source_sha256'" in p for p in problems_with({"source_sha256": ...}))
    assert any("64 lowercase hex" in p for p in problems_with({"source_sha256": "abc"}))
    assert any("'outcome'" in p for p in problems_with({"outcome": "maybe"}))
    assert any("'compressor'" in p for p in problems_with({"compressor": "extractive"}))
    assert any("'tokens' says" in p for p in problems_with({"tokens": 3}))
    swapped = body.replace("## Decisions and why", "## X").replace(
        "## Open threads", "## Decisions and why"
    )
    swapped = swapped.replace("## X", "## Open threads")
    assert any(
        "out of order" in p
        for p in problems_with({"tokens": count_tokens(swapped.strip())}, swapped)
    )
    missing = body.replace("## Failed attempts and why", "## Failures")
    found = problems_with({"tokens": count_tokens(missing.strip())}, missing)
    assert any("missing headings: '## Failed attempts and why'" in p for p in found)
    assert any("unexpected headings: '## Failures'" in p for p in found)
    huge = body + "\n" + "- the agent ran `mix test` and 40 tests passed in 2.1 seconds.\n" * 300
    assert any(
        "over the hard cap of 2000" in p
        for p in problems_with({"tokens": count_tokens(huge.strip())}, huge)
    )
    secret = body.replace(
        "## Open threads\n", "## Open threads\n\n- key sk-ant-api03-" + "x9Y8" * 20 + "\n"
    )
    assert any(
        "secret" in p for p in problems_with({"tokens": count_tokens(secret.strip())}, secret)
    )
    assert validate_summary("no front matter") == [
        "no YAML front matter (the file must start with a '---' line)"
    ]


# -- the pass end to end -----------------------------------------------------------------------


def _raw(mem: Path) -> Path:
    return mem / "sessions" / "raw" / "claude-code" / "ledgerline"


def _memory(
    tmp_path: Path, sids: list[str], *, codex: bool = False, age_s: float = TWO_HOURS
) -> Path:
    """A memory root whose sessions/raw/ holds copies of sample transcripts (with their subagent
    folders, and the Codex rollout when ``codex``), last changed ``age_s`` ago."""
    mem = tmp_path / "memory"
    raw = _raw(mem)
    raw.mkdir(parents=True)
    for sid in sids:
        copy_sample_session(sid, raw)
    if codex:
        rollout = mem / "sessions" / "raw" / "codex" / SAMPLE_CODEX_ROLLOUT.name
        rollout.parent.mkdir(parents=True)
        shutil.copy(SAMPLE_CODEX_ROLLOUT, rollout)
    _age(mem / "sessions" / "raw", age_s)
    return mem


def _age(root: Path, age_s: float) -> None:
    when = time.time() - age_s
    for p in [root, *root.rglob("*")]:
        os.utime(p, (when, when))


def _run(*args: str) -> Any:
    result = CliRunner().invoke(cli, ["compress", *args, "--no-discover", "--no-embed", "--json"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def _summaries(mem: Path) -> list[Path]:
    return sorted((mem / "sessions" / "compressed").rglob("*.md"))


def test_pass_writes_one_summary_per_closed_session_and_folds_subagents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sids = [SAMPLE_AUTH_MAP, SAMPLE_SESSION_MODEL, SAMPLE_WEBHOOKS]
    mem = _memory(tmp_path, sids, codex=True)
    # A compaction helper beside the Explore subagent: a subagent session, but it only
    # re-summarises its parent's conversation, so the summary does not list it.
    helper = _raw(mem) / SAMPLE_AUTH_MAP / "subagents" / "agent-acompact-5e1f0c.jsonl"
    write_jsonl(helper, compaction_helper_records(SAMPLE_AUTH_MAP))
    _age(_raw(mem), TWO_HOURS)
    result = _run("--memory", str(mem))
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["written"] == 4  # three Claude Code sessions and the Codex rollout
    assert report["subagents_folded"] == 2  # the Explore subagent and the compaction helper
    names = [p.relative_to(mem / "sessions" / "compressed").as_posix() for p in _summaries(mem)]
    assert names == sorted(f"2026/{sid}.md" for sid in [*sids, SAMPLE_CODEX_SID])
    for path in _summaries(mem):
        assert validate_summary(path.read_text(encoding="utf-8")) == []
    auth_map = mem / "sessions" / "compressed" / "2026" / f"{SAMPLE_AUTH_MAP}.md"
    front, _body, _ = split_summary(auth_map.read_text(encoding="utf-8"))
    assert front is not None and front["subagents"] == [SAMPLE_SUBAGENT]
    rollout = mem / "sessions" / "compressed" / "2026" / f"{SAMPLE_CODEX_SID}.md"
    codex, _, _ = split_summary(rollout.read_text(encoding="utf-8"))
    assert codex is not None and codex["agent"] == "codex"
    assert report["indexed"] is True
    # The new summaries are in the index at once, as the compressed layer.
    found = CliRunner().invoke(
        cli,
        ["search", "legacy session header", "--memory", str(mem), "--no-discover", "--no-ingest",
         "--layer", "compressed", "--mode", "keyword", "--json"],
    )  # fmt: skip
    assert found.exit_code == 0, found.output
    assert any(h["tag"] == f"[session:{SAMPLE_AUTH_MAP}]" for h in json.loads(found.output))

    # A second pass finds nothing new and reads no transcript again.
    read: list[str] = []
    parse = sources.parse_transcript

    def reading(fmt: str, path: Path, **kw: Any) -> Any:
        read.append(Path(path).name)
        return parse(fmt, path, **kw)

    monkeypatch.setattr(sources, "parse_transcript", reading)
    again = json.loads(_run("--memory", str(mem)).output)
    assert again["written"] == 0 and again["unchanged"] == 4
    assert read == []


def test_grown_transcript_gets_a_new_file_that_supersedes_and_old_one_is_untouched(
    tmp_path: Path,
) -> None:
    sid = SAMPLE_WEBHOOKS
    mem = _memory(tmp_path, [])
    raw = _raw(mem)
    full = sample_transcript(sid).read_bytes()
    lines = full.splitlines(keepends=True)
    target = raw / f"{sid}.jsonl"
    target.write_bytes(b"".join(lines[: len(lines) // 2]))
    _age(raw, TWO_HOURS)
    assert json.loads(_run("--memory", str(mem)).output)["written"] == 1
    first = mem / "sessions" / "compressed" / "2026" / f"{sid}.md"
    first_bytes = first.read_bytes()

    target.write_bytes(full)  # the session was resumed and went on
    _age(raw, TWO_HOURS)
    report = json.loads(_run("--memory", str(mem)).output)
    assert report["written"] == 1
    second = mem / "sessions" / "compressed" / "2026" / f"{sid}.2.md"
    assert first.read_bytes() == first_bytes  # append-only: never rewritten
    front, _, _ = split_summary(second.read_text(encoding="utf-8"))
    assert front is not None
    assert front["supersedes"] == f"2026/{sid}.md"
    assert front["source_sha256"] == hashlib.sha256(full).hexdigest()
    assert validate_summary(second.read_text(encoding="utf-8")) == []
    assert sorted(p.name for p in (mem / "sessions" / "compressed").rglob(f"{sid}*.md")) == [
        f"{sid}.2.md",
        f"{sid}.md",
    ]
    assert existing_summaries(mem / "sessions" / "compressed")[sid].newest == second

    # --redo writes a third version although nothing changed; without it nothing is written.
    assert json.loads(_run("--memory", str(mem)).output)["written"] == 0
    assert json.loads(_run("--memory", str(mem), "--redo").output)["written"] == 1
    assert (mem / "sessions" / "compressed" / "2026" / f"{sid}.3.md").exists()


def test_open_sessions_wait_for_the_quiet_period(tmp_path: Path) -> None:
    mem = _memory(tmp_path, [SAMPLE_WEBHOOKS, SAMPLE_SESSION_MODEL], age_s=60)
    report = json.loads(_run("--memory", str(mem)).output)
    assert report["written"] == 0 and report["not_closed"] == 2
    named = json.loads(_run("--memory", str(mem), "--session", SAMPLE_WEBHOOKS).output)
    assert named["written"] == 1  # asking for a session by id takes it, closed or not
    assert [s["session_id"] for s in named["sessions"]] == [SAMPLE_WEBHOOKS]
    rest = json.loads(_run("--memory", str(mem), "--quiet-minutes", "0").output)
    assert rest["written"] == 1 and rest["unchanged"] == 1


def test_dry_run_estimates_and_writes_nothing(tmp_path: Path) -> None:
    mem = _memory(tmp_path, [SAMPLE_WEBHOOKS, SAMPLE_AUTH_MAP])
    CliRunner().invoke(cli, ["ingest", "--memory", str(mem), "--no-discover", "--no-embed"])
    result = CliRunner().invoke(
        cli, ["compress", "--memory", str(mem), "--no-discover", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert "would compress 2 sessions" in result.output
    assert f"{SAMPLE_WEBHOOKS}  new  ~" in result.output and "input tokens" in result.output
    assert "+1 subagents" in result.output  # the Explore subagent of the auth map session
    assert _summaries(mem) == []


def test_empty_and_unreadable_sessions_are_reported_not_written(tmp_path: Path) -> None:
    mem = _memory(tmp_path, [SAMPLE_WEBHOOKS, SAMPLE_SESSION_MODEL])
    raw = _raw(mem)
    # A session that had only started: bookkeeping records, no conversation yet.
    head = sample_transcript(SAMPLE_WEBHOOKS).read_bytes().splitlines(keepends=True)
    assert all(json.loads(line)["type"] not in ("user", "assistant") for line in head[:2])
    (raw / "starting.jsonl").write_bytes(b"".join(head[:2]))
    _age(raw, TWO_HOURS)
    CliRunner().invoke(cli, ["ingest", "--memory", str(mem), "--no-discover", "--no-embed"])
    # A transcript that turned to garbage after it was indexed.
    (raw / f"{SAMPLE_SESSION_MODEL}.jsonl").write_bytes(b"\x00\x01 not a transcript any more\n")
    _age(raw, TWO_HOURS)
    report = json.loads(_run("--memory", str(mem), "--no-ingest").output)
    reasons = {s["session_id"]: s.get("reason", "") for s in report["sessions"]}
    assert report["written"] == 1  # the webhooks session
    assert "not a known transcript format" in reasons[SAMPLE_SESSION_MODEL]
    assert "empty session" in reasons["starting"]
    assert [p.name for p in _summaries(mem)] == [f"{SAMPLE_WEBHOOKS}.md"]
    # The empty session is not read again until its file changes.
    again = json.loads(_run("--memory", str(mem), "--no-ingest").output)
    assert "starting" not in {s["session_id"] for s in again["sessions"]}


def test_full_disk_leaves_nothing_half_written_and_the_next_run_catches_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mem = _memory(tmp_path, [SAMPLE_WEBHOOKS, SAMPLE_SESSION_MODEL, SAMPLE_AUTH_MAP])
    real_replace = os.replace

    def full_disk(src: Any, dst: Any) -> None:
        if str(dst).endswith(f"{SAMPLE_SESSION_MODEL}.md"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full_disk)
    result = _run("--memory", str(mem))
    assert result.exit_code == 1  # a session failed
    report = json.loads(result.output)
    assert report["written"] == 2 and report["failed"] == 1
    failed = next(s for s in report["sessions"] if s["status"] == "failed")
    assert failed["session_id"] == SAMPLE_SESSION_MODEL
    assert "No space left on device" in failed["reason"]
    compressed = mem / "sessions" / "compressed"
    assert sorted(p.name for p in compressed.rglob("*") if p.is_file()) == sorted(
        [f"{SAMPLE_WEBHOOKS}.md", f"{SAMPLE_AUTH_MAP}.md"]
    )

    monkeypatch.setattr(os, "replace", real_replace)
    report = json.loads(_run("--memory", str(mem)).output)
    assert report["written"] == 1 and report["unchanged"] == 2
    assert (compressed / "2026" / f"{SAMPLE_SESSION_MODEL}.md").exists()


def test_a_crash_mid_pass_is_resumed_by_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mem = _memory(
        tmp_path, [SAMPLE_WEBHOOKS, SAMPLE_SESSION_MODEL, SAMPLE_AUTH_MAP, SAMPLE_DROP_CELERY]
    )
    real_replace = os.replace
    summaries_moved = 0

    def crash_on_second_summary(src: Any, dst: Any) -> None:
        nonlocal summaries_moved
        if str(src).endswith(".tmp") and "compressed" in str(dst):
            summaries_moved += 1
            if summaries_moved == 2:
                raise KeyboardInterrupt  # the process dies between writing and renaming
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_second_summary)
    result = CliRunner().invoke(
        cli, ["compress", "--memory", str(mem), "--no-discover", "--no-embed", "--json"]
    )
    assert result.exit_code == 1 and "Aborted" in result.output  # click's answer to Ctrl-C
    compressed = mem / "sessions" / "compressed"
    left = [p for p in compressed.rglob("*") if p.is_file()]
    # One complete summary; the second never reached its name.
    assert [p.suffix for p in left] == [".md"]
    assert validate_summary(left[0].read_text(encoding="utf-8")) == []
    # A process killed outright (no exception handler ran) leaves its temp file behind.
    stale = left[0].parent / f".{SAMPLE_SESSION_MODEL}.md.4242.1.tmp"
    stale.write_text(f"---\nsession_id: {SAMPLE_SESSION_MODEL[:5]}", encoding="utf-8")

    monkeypatch.setattr(os, "replace", real_replace)
    report = json.loads(_run("--memory", str(mem)).output)
    assert report["written"] == 3 and report["unchanged"] == 1
    assert not [p for p in compressed.rglob("*") if p.name.endswith(".tmp")]
    assert len(_summaries(mem)) == 4


def test_jobs_run_in_parallel_with_the_same_result(tmp_path: Path) -> None:
    serial = _memory(tmp_path / "serial", SAMPLE_SIDS, codex=True)
    assert json.loads(_run("--memory", str(serial)).output)["written"] == 7
    mem = _memory(tmp_path / "parallel", SAMPLE_SIDS, codex=True)
    report = json.loads(_run("--memory", str(mem), "--jobs", "3").output)
    assert report["written"] == 7
    assert [p.name for p in _summaries(mem)] == [p.name for p in _summaries(serial)]
    for path, alone in zip(_summaries(mem), _summaries(serial), strict=True):
        text = path.read_text(encoding="utf-8")
        assert validate_summary(text) == []
        # The same summary whether written alone or beside others.
        assert split_summary(text)[1] == split_summary(alone.read_text(encoding="utf-8"))[1]


def test_library_api_and_since_filter(tmp_path: Path) -> None:
    from ctxmill.compress import compress

    mem = _memory(tmp_path, [SAMPLE_AUTH_MAP, SAMPLE_WEBHOOKS])
    cfg = load_config(mem, discover=False)
    cfg.embedder = "none"
    # The auth map session ended 2026-02-17, the webhooks one 2026-05-05; the files' mtimes are
    # older than both.
    for p in (mem / "sessions" / "raw").rglob("*.jsonl"):
        os.utime(p, (0, 0))
    report = compress(cfg, since="2026-03-01T00:00:00Z")
    assert [r.session_id for r in report.written] == [SAMPLE_WEBHOOKS]
    assert report.written[0].tokens is not None and 500 <= report.written[0].tokens <= 1500


def test_installed_command_compresses_all(tmp_path: Path) -> None:
    mem = _memory(tmp_path, [SAMPLE_WEBHOOKS, SAMPLE_SESSION_MODEL])
    exe = Path(sys.executable).parent / "ctxmill"
    if not exe.exists():
        pytest.skip(f"{exe} is not installed (pip install -e .)")
    done = subprocess.run(
        [str(exe), "compress", "--all", "--memory", str(mem), "--no-discover", "--no-embed"],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )
    assert done.returncode == 0, done.stderr
    assert f"wrote 2026/{SAMPLE_WEBHOOKS}.md" in done.stdout
    assert "compressed 2 sessions" in done.stdout
    assert len(_summaries(mem)) == 2
