"""The Anthropic Messages API through the official ``anthropic`` SDK.

The SDK's own retries are switched off (``max_retries=0``): :class:`ctxmill.llm.runner.LLMRunner`
retries, so that every attempt is counted, logged and charged to the run's budget.
"""

from __future__ import annotations

import os
import time
from typing import Any

import anthropic

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
)
from ctxmill.llm.keys import resolve_key

DEFAULT_MODEL = "claude-haiku-4-5"
DEFAULT_BASE_URL = "https://api.anthropic.com"

# USD per million (input, output) tokens, list prices when this table was written, matched by the
# longest model-id prefix.  Pass prices= to the backend when they change or for other models.
PRICES: dict[str, tuple[float, float]] = {
    "claude-haiku-4-5": (1.0, 5.0),
    "claude-sonnet-4": (3.0, 15.0),
    "claude-opus-4-5": (5.0, 25.0),
    "claude-opus-4-6": (5.0, 25.0),
    "claude-opus-4-1": (15.0, 75.0),
    "claude-opus-4-0": (15.0, 75.0),
}


def price_for(
    model: str, table: dict[str, tuple[float, float]] = PRICES
) -> tuple[float, float] | None:
    matches = [prefix for prefix in table if model.startswith(prefix)]
    return table[max(matches, key=len)] if matches else None


class AnthropicBackend(Backend):
    name = "anthropic"

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
        self.base_url = (
            base_url or os.environ.get("ANTHROPIC_BASE_URL") or DEFAULT_BASE_URL
        ).rstrip("/")
        self.timeout_s = timeout_s
        key = resolve_key("anthropic", api_key)
        if not key:
            raise AuthError(
                "anthropic: no API key: run `ctxmill keys set anthropic`, or set ANTHROPIC_API_KEY"
            )
        self._key = key
        self._prices = prices or price_for(self.model)
        # http_client: an SDK-compatible client (anthropic.DefaultHttpxClient) for proxies or
        # custom transports; the SDK builds its own when None.
        self._client = anthropic.Anthropic(
            api_key=key,
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
        # temperature is accepted for the common interface but not sent: the Messages API of the
        # current models (and this SDK) no longer takes sampling parameters.
        check_request_allowed(self.name, self.base_url)
        kwargs: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
        }
        if system:
            kwargs["system"] = system
        started = time.perf_counter()
        try:
            response = self._client.messages.create(**kwargs)
        except Exception as exc:  # every SDK failure becomes one of our errors
            raise self._map_error(exc) from exc
        duration = time.perf_counter() - started
        return self._completion(response, duration)

    def _completion(self, response: Any, duration: float) -> Completion:
        content = getattr(response, "content", None)
        usage = getattr(response, "usage", None)
        if isinstance(response, str) or not isinstance(content, list) or usage is None:
            raise BadResponse(
                f"anthropic: the server at {self.base_url} did not answer with a Messages API "
                "response (is base_url right?)"
            )
        text = "".join(
            getattr(block, "text", "") or ""
            for block in content
            if getattr(block, "type", None) == "text"
        )
        try:
            input_tokens = int(usage.input_tokens or 0)
            input_tokens += int(getattr(usage, "cache_creation_input_tokens", 0) or 0)
            input_tokens += int(getattr(usage, "cache_read_input_tokens", 0) or 0)
            output_tokens = int(usage.output_tokens or 0)
        except (AttributeError, TypeError, ValueError) as exc:
            raise BadResponse(f"anthropic: unreadable usage in the response: {exc}") from exc
        model = str(getattr(response, "model", None) or self.model)
        return Completion(
            text=text,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            model=model,
            backend=self.name,
            duration_s=duration,
            cost_usd=self.estimate_cost(input_tokens, output_tokens),
        )

    def _map_error(self, exc: Exception) -> LLMError:
        secrets = (self._key,)
        if isinstance(exc, LLMError):
            return exc
        if isinstance(exc, anthropic.APITimeoutError):
            return BackendTimeout(
                f"anthropic: no answer from {self.base_url} within {self.timeout_s:g}s"
            )
        if isinstance(exc, anthropic.APIConnectionError):
            return LLMError(
                f"anthropic: cannot reach {self.base_url}: {exc.__cause__ or exc}",
                retryable=True,
                secrets=secrets,
            )
        if isinstance(exc, anthropic.APIStatusError):
            return error_for_status(
                exc.status_code,
                error_detail(exc.body) or exc.message,
                backend=self.name,
                headers=exc.response.headers,
                secrets=secrets,
            )
        if isinstance(exc, anthropic.APIResponseValidationError | ValueError):
            return BadResponse(
                f"anthropic: malformed response from {self.base_url} (is base_url right?): {exc}",
                secrets=secrets,
            )
        return LLMError(f"anthropic: {type(exc).__name__}: {exc}", secrets=secrets)

    def close(self) -> None:
        self._client.close()
