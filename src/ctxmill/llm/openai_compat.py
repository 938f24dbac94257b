"""Any OpenAI-compatible Chat Completions endpoint through the official ``openai`` SDK.

That covers OpenAI itself and the servers that speak its API: Ollama (``/v1``), vLLM, llama.cpp's
``llama-server``, LM Studio, OpenRouter.  Local servers usually need no key; a placeholder is sent
then, because the SDK insists on one.
"""

from __future__ import annotations

import os
import time
from typing import Any

import openai

from ctxmill.llm.base import (
    AuthError,
    Backend,
    BackendTimeout,
    BadResponse,
    Completion,
    LLMError,
    Message,
    check_request_allowed,
    error_detail,
    error_for_status,
    estimate_tokens,
)
from ctxmill.llm.keys import resolve_key

DEFAULT_MODEL = "gpt-4.1-mini"
OFFICIAL_BASE_URL = "https://api.openai.com/v1"
_NO_KEY = "not-needed"


def resolve_base_url(explicit: str | None = None) -> str:
    """``base_url`` option → ``CTXMILL_OPENAI_BASE_URL`` → ``OPENAI_BASE_URL`` → OpenAI's own."""
    for value in (
        explicit,
        os.environ.get("CTXMILL_OPENAI_BASE_URL"),
        os.environ.get("OPENAI_BASE_URL"),
    ):
        if value and value.strip():
            return value.strip().rstrip("/")
    return OFFICIAL_BASE_URL


class OpenAICompatBackend(Backend):
    name = "openai"

    def __init__(
        self,
        model: str | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout_s: float = 120.0,
        http_client: Any = None,
        prices: tuple[float, float] | None = None,
    ) -> None:
        self.model = model or DEFAULT_MODEL
        self.base_url = resolve_base_url(base_url)
        self.timeout_s = timeout_s
        self._official = self.base_url == OFFICIAL_BASE_URL
        key = resolve_key("openai", api_key)
        if not key and self._official:
            raise AuthError(
                "openai: no API key: run `ctxmill keys set openai`, set OPENAI_API_KEY, "
                "or point base_url at a local server"
            )
        self._key = key or _NO_KEY
        self._prices = prices
        self._client = openai.OpenAI(
            api_key=self._key,
            base_url=self.base_url,
            timeout=timeout_s,
            max_retries=0,
            http_client=http_client,
        )

    def estimate_cost(self, input_tokens: int, output_tokens: int) -> float | None:
        if self._prices is None:
            return None
        per_in, per_out = self._prices
        return (input_tokens * per_in + output_tokens * per_out) / 1_000_000

    def complete(
        self,
        messages: list[Message],
        *,
        system: str | None = None,
        max_tokens: int = 1024,
        temperature: float | None = 0.0,
    ) -> Completion:
        check_request_allowed(self.name, self.base_url)
        chat: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
        chat += [{"role": m.role, "content": m.content} for m in messages]
        kwargs: dict[str, Any] = {"model": self.model, "messages": chat}
        # OpenAI's current models reject max_tokens; the compatible servers only know max_tokens.
        kwargs["max_completion_tokens" if self._official else "max_tokens"] = max_tokens
        if temperature is not None:
            kwargs["temperature"] = temperature
        started = time.perf_counter()
        try:
            response = self._client.chat.completions.create(**kwargs)
        except Exception as exc:  # every SDK failure becomes one of our errors
            raise self._map_error(exc) from exc
        duration = time.perf_counter() - started
        return self._completion(response, chat, duration)

    def _completion(self, response: Any, chat: list[dict[str, str]], duration: float) -> Completion:
        choices = getattr(response, "choices", None)
        if isinstance(response, str) or not isinstance(choices, list) or not choices:
            raise BadResponse(
                f"openai: the server at {self.base_url} did not answer with a chat completion "
                "(is base_url right? it usually ends in /v1)"
            )
        message = getattr(choices[0], "message", None)
        text = getattr(message, "content", None)
        if text is not None and not isinstance(text, str):
            raise BadResponse(f"openai: the completion from {self.base_url} has no text")
        text = text or ""
        usage = getattr(response, "usage", None)
        prompt_tokens = getattr(usage, "prompt_tokens", None)
        completion_tokens = getattr(usage, "completion_tokens", None)
        # Some servers omit usage; an estimate keeps budgets and logs meaningful.
        if prompt_tokens is None:
            prompt_tokens = estimate_tokens("\n".join(m["content"] for m in chat))
        if completion_tokens is None:
            completion_tokens = estimate_tokens(text)
        model = str(getattr(response, "model", None) or self.model)
        return Completion(
            text=text,
            input_tokens=int(prompt_tokens),
            output_tokens=int(completion_tokens),
            model=model,
            backend=self.name,
            duration_s=duration,
            cost_usd=self.estimate_cost(int(prompt_tokens), int(completion_tokens)),
        )

    def _map_error(self, exc: Exception) -> LLMError:
        secrets = (self._key,) if self._key != _NO_KEY else ()
        if isinstance(exc, LLMError):
            return exc
        if isinstance(exc, openai.APITimeoutError):
            return BackendTimeout(
                f"openai: no answer from {self.base_url} within {self.timeout_s:g}s"
            )
        if isinstance(exc, openai.APIConnectionError):
            return LLMError(
                f"openai: cannot reach {self.base_url}: {exc.__cause__ or exc}",
                retryable=True,
                secrets=secrets,
            )
        if isinstance(exc, openai.APIStatusError):
            return error_for_status(
                exc.status_code,
                error_detail(exc.body) or exc.message,
                backend=self.name,
                headers=exc.response.headers,
                secrets=secrets,
            )
        if isinstance(exc, openai.APIResponseValidationError | ValueError):
            return BadResponse(
                f"openai: malformed response from {self.base_url} (is base_url right?): {exc}",
                secrets=secrets,
            )
        return LLMError(f"openai: {type(exc).__name__}: {exc}", secrets=secrets)

    def close(self) -> None:
        self._client.close()
