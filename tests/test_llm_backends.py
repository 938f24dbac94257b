"""The HTTP backends drive the official SDKs against a scripted server on 127.0.0.1: right answers
come back as Completions, and every failure comes back as the right one-line LLMError."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from llm_servers import (
    ANTHROPIC_PATH,
    OPENAI_PATH,
    Reply,
    ScriptedServer,
    anthropic_message,
    error_reply,
    malformed,
    openai_chat,
    rate_limited,
    server_error,
    slow,
    unauthorized,
)

from ctxmill.llm import (
    AuthError,
    Backend,
    BackendTimeout,
    BadResponse,
    LLMError,
    Message,
    RateLimited,
    get_backend,
)
from ctxmill.llm.anthropic_backend import AnthropicBackend
from ctxmill.llm.openai_compat import OpenAICompatBackend

SECRET = "sk-test-0123456789abcdef"


@dataclass
class API:
    name: str
    path: str
    answer: Callable[..., Reply]
    make: Callable[..., Backend]


APIS = [
    API(
        "anthropic",
        ANTHROPIC_PATH,
        anthropic_message,
        lambda url, **kw: AnthropicBackend("claude-test", base_url=url, **kw),
    ),
    API(
        "openai",
        OPENAI_PATH,
        openai_chat,
        lambda url, **kw: OpenAICompatBackend("test-model", base_url=url + "/v1", **kw),
    ),
]


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as srv:
        yield srv


@pytest.fixture(params=APIS, ids=[a.name for a in APIS])
def api(request: pytest.FixtureRequest) -> API:
    result: API = request.param
    return result


def backend_for(api: API, server: ScriptedServer, **kw: Any) -> Backend:
    kw.setdefault("api_key", SECRET)
    kw.setdefault("timeout_s", 5.0)
    return api.make(server.url, **kw)


def ask(backend: Backend, text: str = "hello", **kw: Any) -> Any:
    return backend.complete([Message("user", text)], **kw)


def test_answer_and_usage(api: API, server: ScriptedServer) -> None:
    server.enqueue(api.answer("the answer", model="served-model"))
    completion = ask(backend_for(api, server), system="be brief", max_tokens=77)
    assert completion.text == "the answer"
    assert (completion.input_tokens, completion.output_tokens) == (12, 5)
    assert completion.model == "served-model"
    assert completion.backend == api.name
    assert completion.duration_s >= 0
    [request] = server.requests
    assert request.path == api.path


def test_request_carries_system_model_and_key(server: ScriptedServer) -> None:
    ask(backend_for(APIS[0], server), "what changed?", system="sys prompt", max_tokens=77)
    ask(backend_for(APIS[1], server), "what changed?", system="sys prompt", max_tokens=77)
    anth, oai = server.requests
    # The SDK decides the header (x-api-key or a bearer token); the key must arrive either way.
    assert SECRET in (anth.headers.get("x-api-key"), anth.headers.get("authorization", "")[7:])
    assert anth.body["system"] == "sys prompt"
    assert anth.body["model"] == "claude-test"
    assert anth.body["max_tokens"] == 77
    assert anth.body["messages"] == [{"role": "user", "content": "what changed?"}]
    assert oai.headers["authorization"] == f"Bearer {SECRET}"
    assert oai.body["messages"][0] == {"role": "system", "content": "sys prompt"}
    assert oai.body["max_tokens"] == 77  # compatible servers get max_tokens, not the new name
    assert oai.body["temperature"] == 0.0


def test_rate_limit_maps_to_rate_limited_with_retry_after(api: API, server: ScriptedServer) -> None:
    server.enqueue(rate_limited(retry_after=7))
    with pytest.raises(RateLimited) as info:
        ask(backend_for(api, server))
    assert info.value.retry_after == 7.0
    assert info.value.retryable
    assert "rate limited" in str(info.value)
    assert server.count(api.path) == 1, "the SDK's own retries must be off"


def test_server_error_is_retryable_llm_error(api: API, server: ScriptedServer) -> None:
    server.enqueue(server_error())
    with pytest.raises(LLMError) as info:
        ask(backend_for(api, server))
    assert type(info.value) is LLMError
    assert info.value.retryable
    assert "HTTP 500" in str(info.value)
    assert "internal failure for this test" in str(info.value)


def test_unauthorized_maps_to_auth_error_without_the_key(api: API, server: ScriptedServer) -> None:
    server.enqueue(error_reply(401, f"Incorrect API key provided: {SECRET}"))
    with pytest.raises(AuthError) as info:
        ask(backend_for(api, server))
    assert not info.value.retryable
    assert SECRET not in str(info.value)
    assert "[key]" in str(info.value)


def test_plain_401_message(api: API, server: ScriptedServer) -> None:
    server.enqueue(unauthorized())
    with pytest.raises(AuthError, match="refused the API key"):
        ask(backend_for(api, server))


def test_malformed_json_maps_to_bad_response(api: API, server: ScriptedServer) -> None:
    server.enqueue(malformed())
    with pytest.raises(BadResponse) as info:
        ask(backend_for(api, server))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "reply",
    [
        Reply(body=b"<html>a login page</html>", content_type="text/html"),
        Reply(body=b"<html>sent as json</html>"),
        Reply(body={}),
        Reply(body={"choices": []}),
    ],
    ids=["html", "html-as-json", "empty-object", "no-choices"],
)
def test_wrong_shape_maps_to_bad_response(api: API, server: ScriptedServer, reply: Reply) -> None:
    server.enqueue(reply)
    with pytest.raises(BadResponse, match="base_url"):
        ask(backend_for(api, server))


def test_slow_server_maps_to_backend_timeout(api: API, server: ScriptedServer) -> None:
    server.enqueue(slow(3.0, api.answer("too late")))
    with pytest.raises(BackendTimeout, match=r"within 0\.3s") as info:
        ask(backend_for(api, server, timeout_s=0.3))
    assert info.value.retryable


def test_connection_refused_is_retryable(api: API) -> None:
    with ScriptedServer() as gone:
        url = gone.url
    backend = api.make(url, api_key=SECRET, timeout_s=2.0)
    with pytest.raises(LLMError, match="cannot reach") as info:
        ask(backend)
    assert info.value.retryable


def test_bad_request_is_not_retryable(api: API, server: ScriptedServer) -> None:
    server.enqueue(error_reply(400, "max_tokens: too large"))
    with pytest.raises(LLMError, match=r"HTTP 400.*too large") as info:
        ask(backend_for(api, server))
    assert not info.value.retryable


def test_overloaded_with_retry_after_is_rate_limited(server: ScriptedServer) -> None:
    server.enqueue(error_reply(529, "overloaded", retry_after=2))
    with pytest.raises(RateLimited) as info:
        ask(backend_for(APIS[0], server))
    assert info.value.retry_after == 2.0


def test_openai_local_server_needs_no_key(server: ScriptedServer) -> None:
    backend = get_backend("openai:llama3.2:3b", base_url=server.url + "/v1")
    assert backend.model == "llama3.2:3b"
    assert ask(backend, "hi").text == "echo: hi"
    assert server.requests[0].body["model"] == "llama3.2:3b"


def test_openai_missing_usage_is_estimated(server: ScriptedServer) -> None:
    reply = openai_chat("x" * 35)
    assert isinstance(reply.body, dict)
    del reply.body["usage"]
    server.enqueue(reply)
    completion = ask(backend_for(APIS[1], server), "y" * 70)
    assert (completion.input_tokens, completion.output_tokens) == (20, 10)


def test_anthropic_cost_from_price_table(server: ScriptedServer) -> None:
    server.enqueue(anthropic_message("ok", input_tokens=1_000_000, output_tokens=100_000))
    backend = AnthropicBackend(
        "claude-haiku-4-5", api_key=SECRET, base_url=server.url, timeout_s=5.0
    )
    completion = ask(backend)
    assert completion.cost_usd == pytest.approx(1.0 + 0.5)


def test_anthropic_counts_cached_prompt_tokens(server: ScriptedServer) -> None:
    reply = anthropic_message("ok", input_tokens=10, output_tokens=2)
    assert isinstance(reply.body, dict)
    reply.body["usage"].update(cache_read_input_tokens=100, cache_creation_input_tokens=5)
    server.enqueue(reply)
    assert ask(backend_for(APIS[0], server)).input_tokens == 115


def test_anthropic_without_any_key_is_auth_error() -> None:
    with pytest.raises(AuthError, match="ANTHROPIC_API_KEY"):
        AnthropicBackend(base_url="http://127.0.0.1:9")


def test_openai_official_endpoint_without_key_is_auth_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("CTXMILL_OPENAI_BASE_URL", raising=False)
    with pytest.raises(AuthError, match="OPENAI_API_KEY"):
        OpenAICompatBackend()


def test_errors_print_as_one_line(api: API, server: ScriptedServer) -> None:
    body = {"error": {"type": "api_error", "message": "line one\nline two\n\ttrace"}}
    server.enqueue(Reply(status=503, body=body))
    with pytest.raises(LLMError) as info:
        ask(backend_for(api, server))
    assert str(info.value) == (f"{api.name}: server error (HTTP 503): line one line two trace")


def test_base_url_from_environment(monkeypatch: pytest.MonkeyPatch, server: ScriptedServer) -> None:
    monkeypatch.setenv("CTXMILL_OPENAI_BASE_URL", server.url + "/v1")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # loses to ours
    backend = get_backend("openai")
    assert ask(backend, "via env").text == "echo: via env"
    assert json.loads(json.dumps(server.requests[0].body))["model"] == backend.model
