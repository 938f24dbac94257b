"""LLMRunner: retries (counted, with backoff and retry-after), budgets that stop cleanly, and the
call log, driven through real backends against a scripted server where HTTP matters."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from llm_servers import (
    ANTHROPIC_PATH,
    OPENAI_PATH,
    ScriptedServer,
    anthropic_message,
    openai_chat,
    rate_limited,
    server_error,
    slow,
    unauthorized,
)

from ctxmill.llm import (
    AuthError,
    BackendTimeout,
    BudgetExceeded,
    Completion,
    FakeBackend,
    LLMError,
    LLMRunner,
    RateLimited,
    calls_log_path,
    get_backend,
    runner_from_settings,
    usage_summary,
)
from ctxmill.llm.anthropic_backend import AnthropicBackend
from ctxmill.llm.openai_compat import OpenAICompatBackend


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as srv:
        yield srv


class Sleeps:
    """Records the waits instead of waiting, so retry tests take milliseconds."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def log_entries() -> list[dict[str, object]]:
    return [json.loads(line) for line in calls_log_path().read_text().splitlines()]


def anthropic(server: ScriptedServer, timeout_s: float = 5.0) -> AnthropicBackend:
    return AnthropicBackend(
        "claude-test", api_key="test-key", base_url=server.url, timeout_s=timeout_s
    )


def test_retries_rate_limits_then_succeeds(server: ScriptedServer) -> None:
    server.enqueue(
        rate_limited(retry_after=0), rate_limited(retry_after=0), anthropic_message("ok")
    )
    sleeps = Sleeps()
    runner = LLMRunner(anthropic(server), max_retries=3, sleep=sleeps, purpose="test")
    completion = runner.complete("hi")
    assert completion.text == "ok"
    assert server.count(ANTHROPIC_PATH) == 3
    assert runner.usage.retries == 2
    assert (runner.usage.attempts, runner.usage.ok, runner.usage.errors) == (3, 1, 2)
    assert len(sleeps.waits) == 2
    entries = log_entries()
    assert [e["ok"] for e in entries] == [False, False, True]
    assert [e["error"] for e in entries] == ["RateLimited", "RateLimited", None]
    assert [e["attempt"] for e in entries] == [1, 2, 3]
    assert entries[-1]["purpose"] == "test"


def test_backoff_grows_with_jitter_and_honours_retry_after(server: ScriptedServer) -> None:
    server.enqueue(server_error(), server_error(), rate_limited(retry_after=9), openai_chat("ok"))
    sleeps = Sleeps()
    backend = OpenAICompatBackend("m", base_url=server.url + "/v1", timeout_s=5.0)
    runner = LLMRunner(backend, max_retries=5, base_delay_s=1.0, sleep=sleeps, jitter=lambda: 1.0)
    assert runner.complete("hi").text == "ok"
    # base 1 s doubling, full jitter draw: 1, 2; then retry-after 9 beats the backoff of 4.
    assert sleeps.waits == [1.0, 2.0, 9.0]
    low = LLMRunner(backend, sleep=(lows := Sleeps()), base_delay_s=4.0, jitter=lambda: 0.0)
    server.enqueue(server_error(), openai_chat("ok"))
    low.complete("hi")
    assert lows.waits == [2.0]  # never less than half the backoff


def test_gives_up_after_max_retries(server: ScriptedServer) -> None:
    server.enqueue(*[server_error() for _ in range(5)])
    runner = LLMRunner(anthropic(server), max_retries=2, sleep=Sleeps())
    with pytest.raises(LLMError, match="HTTP 500"):
        runner.complete("hi")
    assert server.count(ANTHROPIC_PATH) == 3
    assert runner.usage.retries == 2
    assert runner.usage.errors == 3


def test_retry_after_longer_than_max_delay_is_not_waited(server: ScriptedServer) -> None:
    server.enqueue(rate_limited(retry_after=3600))
    sleeps = Sleeps()
    runner = LLMRunner(anthropic(server), max_delay_s=60, sleep=sleeps)
    with pytest.raises(RateLimited, match="retry after 3600s"):
        runner.complete("hi")
    assert sleeps.waits == []
    assert server.count(ANTHROPIC_PATH) == 1


def test_auth_errors_are_not_retried(server: ScriptedServer) -> None:
    server.enqueue(unauthorized(), anthropic_message("never reached"))
    runner = LLMRunner(anthropic(server), sleep=Sleeps())
    with pytest.raises(AuthError):
        runner.complete("hi")
    assert server.count(ANTHROPIC_PATH) == 1
    assert runner.usage.retries == 0


def test_timeouts_are_retried(server: ScriptedServer) -> None:
    server.enqueue(slow(3.0), anthropic_message("second try"))
    runner = LLMRunner(anthropic(server, timeout_s=0.3), sleep=Sleeps())
    assert runner.complete("hi").text == "second try"
    assert [e["error"] for e in log_entries()] == ["BackendTimeout", None]


def test_timeout_on_every_attempt_raises_backend_timeout(server: ScriptedServer) -> None:
    server.enqueue(slow(3.0), slow(3.0))
    runner = LLMRunner(anthropic(server, timeout_s=0.2), max_retries=1, sleep=Sleeps())
    with pytest.raises(BackendTimeout):
        runner.complete("hi")


def test_token_budget_refuses_before_sending(server: ScriptedServer) -> None:
    runner = LLMRunner(anthropic(server), max_tokens_total=1000, sleep=Sleeps())
    server.enqueue(anthropic_message("ok", input_tokens=400, output_tokens=100))
    runner.complete("short", max_tokens=200)
    assert runner.usage.tokens == 500
    # 500 used + ~2 prompt + 600 max_tokens would pass 1,000: refused without a request.
    with pytest.raises(BudgetExceeded, match="max_tokens_total=1,000"):
        runner.complete("short", max_tokens=600)
    assert server.count(ANTHROPIC_PATH) == 1
    assert runner.usage.refused == 1
    assert log_entries()[-1]["error"] == "BudgetExceeded"
    # A call that fits is still allowed after a refusal.
    server.enqueue(anthropic_message("ok", input_tokens=100, output_tokens=50))
    runner.complete("short", max_tokens=300)
    assert runner.usage.tokens == 650


def test_token_budget_raises_after_a_call_that_went_over(server: ScriptedServer) -> None:
    server.enqueue(anthropic_message("expensive", input_tokens=5000, output_tokens=20))
    runner = LLMRunner(anthropic(server), max_tokens_total=2000)
    # The prompt estimate is tiny, so the pre-check lets it through; the server says otherwise.
    with pytest.raises(BudgetExceeded, match="over max_tokens_total") as info:
        runner.complete("tiny", max_tokens=100)
    assert info.value.completion is not None
    assert info.value.completion.text == "expensive"
    with pytest.raises(BudgetExceeded):
        runner.complete("tiny", max_tokens=1)
    assert server.count(ANTHROPIC_PATH) == 1


def test_cost_budget_uses_the_price_estimate(server: ScriptedServer) -> None:
    backend = AnthropicBackend("claude-test", api_key="k", base_url=server.url, prices=(3.0, 15.0))
    runner = LLMRunner(backend, max_cost_usd=0.01)
    # Worst case 1,000 output tokens at $15/M = $0.015 > $0.01: refused before sending.
    with pytest.raises(BudgetExceeded, match="max_cost_usd"):
        runner.complete("hi", max_tokens=1000)
    assert server.count(ANTHROPIC_PATH) == 0
    server.enqueue(anthropic_message("ok", input_tokens=100, output_tokens=100))
    completion = runner.complete("hi", max_tokens=200)
    assert completion.cost_usd == pytest.approx((100 * 3 + 100 * 15) / 1e6)
    assert runner.usage.cost_usd == pytest.approx(0.0018)


def test_cost_budget_without_prices_stops_after_the_spend() -> None:
    spent = Completion("x", 1, 1, "m", "fake", 0.0, cost_usd=0.30)
    fake = FakeBackend([spent, spent, spent])
    runner = LLMRunner(fake, max_cost_usd=0.50)
    runner.complete("one")
    with pytest.raises(BudgetExceeded, match=r"\$0.6000"):
        runner.complete("two")
    with pytest.raises(BudgetExceeded, match="already spent"):
        runner.complete("three")
    assert len(fake.calls) == 2


def test_budget_holds_with_parallel_callers() -> None:
    fake = FakeBackend(lambda messages, system: "y" * 35)  # 10 output tokens each
    runner = LLMRunner(fake, max_tokens_total=200)
    outcomes: list[str] = []

    def call() -> None:
        try:
            runner.complete("x" * 35, max_tokens=10)  # worst case 10 + 10 tokens
            outcomes.append("ok")
        except BudgetExceeded:
            outcomes.append("refused")

    threads = [threading.Thread(target=call) for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == 10
    assert runner.usage.tokens == 200


def test_unexpected_exception_becomes_one_line_llm_error() -> None:
    runner = LLMRunner(FakeBackend([RuntimeError("choices\nsecond line")]))
    with pytest.raises(LLMError, match=r"^fake: RuntimeError: choices second line$"):
        runner.complete("hi")


def test_log_records_fields_and_never_the_prompt(server: ScriptedServer) -> None:
    server.enqueue(anthropic_message("answer", input_tokens=30, output_tokens=4))
    LLMRunner(anthropic(server), purpose="compress").complete("secret prompt text")
    [entry] = log_entries()
    assert entry["backend"] == "anthropic"
    assert entry["model"] == "claude-test"
    assert (entry["input_tokens"], entry["output_tokens"]) == (30, 4)
    assert entry["ok"] is True
    assert entry["purpose"] == "compress"
    assert isinstance(entry["duration_s"], float)
    assert str(entry["ts"]).endswith("Z")
    raw = calls_log_path().read_text()
    assert "secret prompt text" not in raw
    assert "test-key" not in raw


def test_usage_summary_totals(tmp_path: Path, server: ScriptedServer) -> None:
    server.enqueue(
        rate_limited(retry_after=0), anthropic_message("a", input_tokens=10, output_tokens=2)
    )
    LLMRunner(anthropic(server), sleep=Sleeps(), purpose="compress").complete("x")
    spent = Completion("b", 5, 5, "fake-model", "fake", 0.0, cost_usd=0.25)
    LLMRunner(FakeBackend([spent]), purpose="build").complete("y")
    with calls_log_path().open("a") as fh:
        fh.write('{damaged\n{"ts": "2026-01-01T00:00:00", "input_tokens": "many"}\n')
    summary = usage_summary()
    assert summary["calls"] == 3
    assert (summary["ok"], summary["errors"]) == (2, 1)
    assert (summary["input_tokens"], summary["output_tokens"]) == (15, 7)
    assert summary["cost_usd"] == 0.25
    assert summary["by_model"]["anthropic:claude-test"]["calls"] == 2
    assert summary["by_purpose"]["build"]["cost_usd"] == 0.25
    assert summary["errors_by_type"] == {"RateLimited": 1}
    assert summary["damaged_lines"] == 2
    later = usage_summary(since=datetime.now(UTC) + timedelta(minutes=1))
    assert later["calls"] == 0
    assert usage_summary(tmp_path / "none.jsonl")["calls"] == 0


def test_log_can_be_switched_off() -> None:
    LLMRunner(FakeBackend(), log=False).complete("x")
    assert not calls_log_path().exists()


def test_runner_from_settings(server: ScriptedServer) -> None:
    from ctxmill.config import LLMSettings

    assert runner_from_settings(LLMSettings()) is None
    settings = LLMSettings(
        backend="openai:local-model",
        base_url=server.url + "/v1",
        timeout_s=5.0,
        max_retries=1,
        max_tokens_total=5000,
    )
    runner = runner_from_settings(settings, purpose="build")
    assert runner is not None
    assert (runner.max_retries, runner.max_tokens_total, runner.purpose) == (1, 5000, "build")
    assert runner.complete("ping").text == "echo: ping"
    assert server.requests[0].path == OPENAI_PATH
    assert server.requests[0].body["model"] == "local-model"


def test_backend_spec_inherits_only_its_own_settings(server: ScriptedServer) -> None:
    from ctxmill.config import LLMSettings
    from ctxmill.llm import runner_for

    local = LLMSettings(
        backend="openai", model="configured-model", base_url=server.url + "/v1", max_retries=3
    )
    # The same backend keeps the configured server and model; a model in the spec wins.
    same = runner_for(local, "openai", purpose="compress")
    assert same is not None and same.max_retries == 3
    same.complete("one")
    named = runner_for(local, "openai:spec-model")
    assert named is not None
    named.complete("two")
    # In the settings alone, `model` wins over a model in `backend = "name:model"`.
    from_settings = runner_for(
        LLMSettings(backend="openai:in-backend", model="configured-model", base_url=local.base_url)
    )
    assert from_settings is not None
    from_settings.complete("three")
    assert [r.body["model"] for r in server.requests] == [
        "configured-model",
        "spec-model",
        "configured-model",
    ]
    # Another backend must not be sent to the local server's URL or under its model name.
    other = runner_for(local, "fake")
    assert other is not None and other.backend.model == "fake"
    assert runner_for(local, "none") is None
    assert runner_for(LLMSettings()) is None


def test_fake_backend_from_registry_through_runner() -> None:
    fake = get_backend("fake:tiny")
    assert isinstance(fake, FakeBackend)
    runner = LLMRunner(fake)
    assert runner.complete("echo me", system="s").text == "echo me"
    assert fake.calls[0].system == "s"
