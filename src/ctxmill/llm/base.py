"""The one interface every LLM backend implements, and the errors they may raise.

A backend turns a list of messages into a :class:`Completion` and maps whatever its SDK or process
throws onto the small error tree below, so that callers (the runner, the pipeline, the CLI) handle
five cases instead of fifty SDK classes::

    LLMError                 one-line message; .retryable says whether trying again may help
    ├── RateLimited          429 and friends; .retry_after in seconds when the server said so
    ├── BackendTimeout       no answer within timeout_s
    ├── BadResponse          an answer that is not what the API promises (malformed JSON, no text)
    ├── AuthError            missing, wrong or unauthorised key
    ├── BudgetExceeded       the run's token or cost budget would be, or was, exceeded
    └── RequestsNotAllowed   a non-loopback model request while model requests are switched off

Server errors (5xx) and dropped connections are plain ``LLMError`` with ``retryable=True``.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

# Close to the measured chars per token of transcripts and code (dependencies.md: chars/3.5 is
# within a few per cent overall).  Only used for budget pre-checks and servers that omit usage.
CHARS_PER_TOKEN = 3.5

_MAX_MESSAGE = 400
# Secrets that SDK error messages sometimes repeat (OpenAI echoes a masked key on 401).
_KEY_PATTERN = re.compile(r"\bsk-[A-Za-z0-9_\-*]{6,}")


@dataclass(frozen=True)
class Message:
    """One turn of the conversation sent to a model."""

    role: str
    """``"user"`` or ``"assistant"``; the system prompt is passed separately."""
    content: str


@dataclass(frozen=True)
class Completion:
    """A model's answer with what it cost."""

    text: str
    input_tokens: int
    output_tokens: int
    model: str
    backend: str
    duration_s: float
    cost_usd: float | None = None
    """None when the backend cannot price the call (local servers, unknown models)."""


class LLMError(Exception):
    """A model call failed; ``str(err)`` is one line fit to show a user."""

    retryable: bool = False

    def __init__(self, message: str, *, retryable: bool | None = None, secrets: Iterable[str] = ()):
        super().__init__(one_line(message, secrets))
        if retryable is not None:
            self.retryable = retryable

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep retry_after, completion and retryable across processes (a worker pool pickles the
        # errors it raises); the default reduce would call __init__ with the message alone.
        return (_restore_error, (type(self), str(self), dict(self.__dict__)))


def _restore_error(cls: type[LLMError], message: str, state: dict[str, Any]) -> LLMError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class RateLimited(LLMError):
    retryable = True

    def __init__(
        self, message: str, retry_after: float | None = None, *, secrets: Iterable[str] = ()
    ):
        super().__init__(message, secrets=secrets)
        self.retry_after: float | None = retry_after


class BackendTimeout(LLMError):
    retryable = True


class BadResponse(LLMError):
    """Not retried: the usual cause is a base_url that points at something other than a model."""


class AuthError(LLMError):
    pass


class BudgetExceeded(LLMError):
    def __init__(self, message: str, completion: Completion | None = None):
        super().__init__(message)
        self.completion = completion
        """The answer of the call that went over the budget, if any (it was paid for)."""


class RequestsNotAllowed(LLMError):
    pass


class Backend(ABC):
    """A model behind one call.  Implementations must not retry: :class:`LLMRunner` does that."""

    name: ClassVar[str]
    model: str

    @abstractmethod
    def complete(
        self,
        messages: list[Message],
        *,
        system: str | None = None,
        max_tokens: int = 1024,
        temperature: float | None = 0.0,
    ) -> Completion:
        """Send ``messages`` and return the answer, or raise an :class:`LLMError`."""

    def estimate_cost(self, input_tokens: int, output_tokens: int) -> float | None:
        """USD for a call of this size, or None when unknown; used for budget pre-checks."""
        return None

    def close(self) -> None:
        """Release connections or processes; the backend may not be used afterwards."""
        return None

    def __repr__(self) -> str:
        # Deliberately no key or URL credentials in the repr: backends end up in logs and errors.
        return f"<{type(self).__name__} {self.name}:{self.model}>"


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def one_line(message: str, secrets: Iterable[str] = ()) -> str:
    """Collapse whitespace, remove secrets and cap the length, so any error prints as one line."""
    text = " ".join(str(message).split())
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, "[key]")
    text = _KEY_PATTERN.sub("[key]", text)
    if len(text) > _MAX_MESSAGE:
        text = text[: _MAX_MESSAGE - 1] + "…"
    return text


def parse_retry_after(headers: Mapping[str, str] | Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``retry-after`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    try:
        millis = headers.get("retry-after-ms")
        if millis is not None:
            return max(0.0, float(millis) / 1000.0)
        value = headers.get("retry-after")
    except (AttributeError, TypeError, ValueError):
        return None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from datetime import UTC, datetime

        when = parsedate_to_datetime(str(value))
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def error_detail(body: object) -> str:
    """The human part of an API error body (``{"error": {"message": ...}}``), or ""."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    return ""


def error_for_status(
    status: int,
    detail: str,
    *,
    backend: str,
    headers: Mapping[str, str] | Any = None,
    secrets: Iterable[str] = (),
) -> LLMError:
    """The error for an HTTP error status, with the server's own explanation when it gave one."""
    detail = detail.strip() or "no details"
    if status == 429:
        retry_after = parse_retry_after(headers)
        hint = f" (retry after {retry_after:g}s)" if retry_after is not None else ""
        return RateLimited(
            f"{backend}: rate limited{hint}: {detail}", retry_after=retry_after, secrets=secrets
        )
    if status in (401, 403):
        return AuthError(
            f"{backend}: the server refused the API key (HTTP {status}): {detail}", secrets=secrets
        )
    if status == 408:
        return BackendTimeout(f"{backend}: the server timed out (HTTP 408)", secrets=secrets)
    if status >= 500:
        # 529 is Anthropic's "overloaded"; a 503 may carry retry-after too.
        retry_after = parse_retry_after(headers)
        if retry_after is not None:
            return RateLimited(
                f"{backend}: server busy (HTTP {status}): {detail}",
                retry_after=retry_after,
                secrets=secrets,
            )
        return LLMError(
            f"{backend}: server error (HTTP {status}): {detail}", retryable=True, secrets=secrets
        )
    return LLMError(f"{backend}: request rejected (HTTP {status}): {detail}", secrets=secrets)


def is_loopback_url(url: str | None) -> bool:
    if not url:
        return False
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_FALSE = {"0", "false", "no", "off"}


def model_requests_allowed() -> bool:
    """Whether non-loopback model calls may go out (``ctxmill.llm.ALLOW_NETWORK_MODELS``)."""
    import ctxmill.llm as package  # read at call time so tests can flip it

    if package.ALLOW_NETWORK_MODELS is not None:
        return bool(package.ALLOW_NETWORK_MODELS)
    return os.environ.get("CTXMILL_ALLOW_MODEL_REQUESTS", "1").strip().lower() not in _FALSE


def check_request_allowed(backend: str, url: str | None) -> None:
    """Refuse a request to a real model when requests are switched off; loopback always passes."""
    if is_loopback_url(url) or model_requests_allowed():
        return
    where = f" at {urlsplit(url).hostname}" if url else ""
    raise RequestsNotAllowed(
        f"{backend}: model requests{where} are switched off "
        "(CTXMILL_ALLOW_MODEL_REQUESTS=0 or ctxmill.llm.ALLOW_NETWORK_MODELS=False)"
    )
