"""Backend specs, key storage and resolution order, the model-request switch, and the fake."""

from __future__ import annotations

import pickle
import stat
from collections.abc import Iterator

import pytest
from llm_servers import ScriptedServer

import ctxmill.llm as llm
from ctxmill.llm import (
    BudgetExceeded,
    Completion,
    FakeBackend,
    LLMError,
    LLMRunner,
    Message,
    RateLimited,
    RequestsNotAllowed,
    get_backend,
    keys_path,
    parse_spec,
    resolve_key,
    set_key,
)
from ctxmill.llm.anthropic_backend import AnthropicBackend
from ctxmill.llm.base import is_loopback_url, one_line, parse_retry_after
from ctxmill.llm.claude_cli import ClaudeCLIBackend
from ctxmill.llm.keys import delete_key, stored_key_names
from ctxmill.llm.openai_compat import OpenAICompatBackend


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as srv:
        yield srv


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("anthropic", ("anthropic", None)),
        ("anthropic:claude-opus-4-6", ("anthropic", "claude-opus-4-6")),
        ("openai:qwen2.5-coder:7b", ("openai", "qwen2.5-coder:7b")),
        ("claude:opus", ("claude-cli", "opus")),
        ("Claude-CLI", ("claude-cli", None)),
        ("fake", ("fake", None)),
    ],
)
def test_parse_spec(spec: str, expected: tuple[str, str | None]) -> None:
    assert parse_spec(spec) == expected


def test_unknown_backend_is_one_line_error() -> None:
    with pytest.raises(LLMError, match="unknown LLM backend 'gemini'; choose one of: anthropic"):
        get_backend("gemini:pro")


def test_unknown_option_is_llm_error() -> None:
    with pytest.raises(LLMError, match=r"fake:.*colour"):
        get_backend("fake", colour="blue")


def test_get_backend_builds_each_kind(server: ScriptedServer) -> None:
    anth = get_backend("anthropic:claude-x", key="k1", base_url=server.url, timeout_s=3)
    assert isinstance(anth, AnthropicBackend)
    assert (anth.model, anth.timeout_s) == ("claude-x", 3)
    oai = get_backend("openai", model="override", base_url=server.url + "/v1")
    assert isinstance(oai, OpenAICompatBackend)
    assert oai.model == "override"
    cli = get_backend("claude-cli:sonnet", executable="my-claude", base_url=None, timeout_s=9)
    assert isinstance(cli, ClaudeCLIBackend)
    assert (cli.model, cli.executable, cli.timeout_s) == ("sonnet", "my-claude", 9)
    assert isinstance(get_backend("fake", timeout_s=1, base_url="x"), FakeBackend)
    assert "k1" not in repr(anth)


def test_set_key_writes_a_private_file() -> None:
    set_key("anthropic", "sk-ant-stored-000000")
    path = keys_path()
    assert path.name == "keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    set_key("openai", "sk-openai-stored-0000")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stored_key_names() == ["anthropic", "openai"]
    assert delete_key("openai")
    assert not delete_key("openai")
    assert stored_key_names() == ["anthropic"]


def test_key_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_key("anthropic") is None
    monkeypatch.setenv("ANTHROPIC_API_KEY", "from-env")
    assert resolve_key("anthropic") == "from-env"
    set_key("anthropic", "from-store")
    assert resolve_key("anthropic") == "from-store"
    assert resolve_key("anthropic", "explicit") == "explicit"
    assert resolve_key("openai") is None


def test_backend_sends_the_resolved_key(
    monkeypatch: pytest.MonkeyPatch, server: ScriptedServer
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-aaaaaaaa")
    base = server.url + "/v1"
    get_backend("openai", base_url=base).complete([Message("user", "1")])
    set_key("openai", "sk-store-bbbbbbbb")
    get_backend("openai", base_url=base).complete([Message("user", "2")])
    get_backend("openai", base_url=base, key="sk-flag-cccccccc").complete([Message("user", "3")])
    sent = [r.headers["authorization"] for r in server.requests]
    assert sent == ["Bearer sk-env-aaaaaaaa", "Bearer sk-store-bbbbbbbb", "Bearer sk-flag-cccccccc"]


def test_damaged_keys_file_is_a_clear_error() -> None:
    keys_path().write_text("{not json")
    with pytest.raises(LLMError, match="cannot read stored keys"):
        resolve_key("anthropic")


def test_switch_blocks_remote_models_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llm, "ALLOW_NETWORK_MODELS", False)
    # .invalid never resolves; the switch must refuse before the SDK even tries.
    remote = get_backend("openai", base_url="https://models.example.invalid/v1", key="k")
    with pytest.raises(RequestsNotAllowed, match=r"models\.example\.invalid"):
        remote.complete([Message("user", "hi")])
    anth = get_backend("anthropic", key="k")  # the official endpoint
    with pytest.raises(RequestsNotAllowed, match=r"api\.anthropic\.com"):
        anth.complete([Message("user", "hi")])
    with pytest.raises(RequestsNotAllowed):
        get_backend("claude-cli").complete([Message("user", "hi")])


def test_switch_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llm, "ALLOW_NETWORK_MODELS", None)
    monkeypatch.setenv("CTXMILL_ALLOW_MODEL_REQUESTS", "0")
    remote = get_backend("anthropic", key="k", base_url="https://proxy.example.invalid")
    runner = LLMRunner(remote)
    with pytest.raises(RequestsNotAllowed):
        runner.complete("hi")
    assert runner.usage.retries == 0


def test_switch_always_lets_loopback_through(
    monkeypatch: pytest.MonkeyPatch, server: ScriptedServer
) -> None:
    monkeypatch.setattr(llm, "ALLOW_NETWORK_MODELS", False)
    backend = get_backend(
        "anthropic", key="k", base_url=server.url.replace("127.0.0.1", "localhost")
    )
    assert backend.complete([Message("user", "hi")]).text == "echo: hi"


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:8080/v1", True),
        ("http://127.5.0.1", True),
        ("http://localhost:11434/v1", True),
        ("http://[::1]:8000", True),
        ("https://api.openai.com/v1", False),
        ("http://10.0.0.5:8000", False),
        ("http://localhost.example.com", False),
        (None, False),
    ],
)
def test_is_loopback_url(url: str | None, loopback: bool) -> None:
    assert is_loopback_url(url) is loopback


def test_one_line_scrubs_keys_and_length() -> None:
    text = one_line("bad key sk-abcdef0123456789\n\n  and  the secret hunter2xyz", ["hunter2xyz"])
    assert text == "bad key [key] and the secret [key]"
    assert len(one_line("x" * 5000)) == 400


def test_errors_survive_pickling() -> None:
    done = Completion("paid for", 1, 2, "m", "fake", 0.0)
    for err in (
        RateLimited("busy", retry_after=3.0),
        BudgetExceeded("over", completion=done),
        LLMError("flaky", retryable=True),
    ):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err)
        assert (str(back), back.retryable) == (str(err), err.retryable)
        assert back.__dict__ == err.__dict__


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after": "2.5"}) == 2.5
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_fake_queue_function_echo_and_errors() -> None:
    fake = FakeBackend(["first"])
    fake.enqueue(RateLimited("slow down", retry_after=0.0), "third")
    assert fake.complete([Message("user", "a")]).text == "first"
    with pytest.raises(RateLimited):
        fake.complete([Message("user", "b")])
    assert fake.complete([Message("user", "c")]).text == "third"
    assert fake.complete([Message("user", "echo this")]).text == "echo this"
    assert [c.prompt for c in fake.calls] == ["a", "b", "c", "echo this"]
    shout = FakeBackend(lambda messages, system: f"{system}:{messages[-1].content.upper()}")
    assert shout.complete([Message("user", "hi")], system="s").text == "s:HI"


def test_fake_token_counts_are_deterministic() -> None:
    fake = FakeBackend(["y" * 70], usd_per_million_tokens=1_000_000.0)
    completion = fake.complete([Message("user", "x" * 35)], system="z" * 34)
    # (35 + 1 newline + 34) / 3.5 = 20 in, 70 / 3.5 = 20 out.
    assert (completion.input_tokens, completion.output_tokens) == (20, 20)
    assert completion.cost_usd == 40.0
    clipped = FakeBackend(["w" * 1000]).complete([Message("user", "q")], max_tokens=10)
    assert (len(clipped.text), clipped.output_tokens) == (35, 10)


def test_fake_drives_runner_retries_and_budget() -> None:
    fake = FakeBackend([RateLimited("busy", retry_after=0.0), "done"])
    runner = LLMRunner(fake, sleep=lambda s: None, max_tokens_total=100)
    assert runner.complete("go", max_tokens=10).text == "done"
    assert runner.usage.retries == 1
    with pytest.raises(BudgetExceeded):
        runner.complete("go", max_tokens=1000)
    assert len(fake.calls) == 2
