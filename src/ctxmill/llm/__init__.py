"""LLM backends behind one small interface.

    backend = get_backend("anthropic:claude-haiku-4-5")
    runner = LLMRunner(backend, max_cost_usd=0.50, purpose="compress")
    answer = runner.complete("Summarise: ...", system="You write session summaries.")

Backend specs are ``name[:model]``: ``anthropic``, ``openai`` (any OpenAI-compatible server, with
``base_url``), ``claude-cli`` and ``fake``.  Everything after the first colon is the model, so
Ollama tags such as ``openai:llama3.2:3b`` work.

``ALLOW_NETWORK_MODELS`` is the switch that makes accidental real model calls impossible (tests set
it to False, or set ``CTXMILL_ALLOW_MODEL_REQUESTS=0``).  None, the default, follows that variable,
which defaults to allowed.  Requests to loopback addresses are always allowed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ctxmill.llm.base import (
    AuthError,
    Backend,
    BackendTimeout,
    BadResponse,
    BudgetExceeded,
    Completion,
    LLMError,
    Message,
    RateLimited,
    RequestsNotAllowed,
)
from ctxmill.llm.fake import FakeBackend
from ctxmill.llm.keys import delete_key, keys_path, resolve_key, set_key, stored_key_names
from ctxmill.llm.runner import LLMRunner, calls_log_path, usage_summary

if TYPE_CHECKING:
    from ctxmill.config import LLMSettings

ALLOW_NETWORK_MODELS: bool | None = None

BACKENDS = ("anthropic", "openai", "claude-cli", "fake")
_ALIASES = {"claude": "claude-cli", "openai-compat": "openai", "echo": "fake"}


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``"openai:llama3.2:3b"`` → ``("openai", "llama3.2:3b")``; aliases resolved."""
    name, _, model = spec.strip().partition(":")
    name = _ALIASES.get(name.lower(), name.lower())
    if name not in BACKENDS:
        raise LLMError(f"unknown LLM backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    return name, (model or None)


def get_backend(spec: str, **options: Any) -> Backend:
    """A backend from ``name[:model]`` plus its options (``api_key``, ``base_url``, ``timeout_s``,
    ``executable``, ...).  A ``model`` option wins over the model in the spec.  Options that are
    None are ignored, so settings can be passed through as they are."""
    name, model = parse_spec(spec)
    opts = {k: v for k, v in options.items() if v is not None}
    model = opts.pop("model", model)
    if "key" in opts:
        opts["api_key"] = opts.pop("key")
    try:
        if name == "anthropic":
            from ctxmill.llm.anthropic_backend import AnthropicBackend

            return AnthropicBackend(model, **opts)
        if name == "openai":
            from ctxmill.llm.openai_compat import OpenAICompatBackend

            return OpenAICompatBackend(model, **opts)
        if name == "claude-cli":
            from ctxmill.llm.claude_cli import ClaudeCLIBackend

            opts.pop("base_url", None)  # shared settings may carry one; the CLI has none
            opts.pop("api_key", None)
            return ClaudeCLIBackend(model, **opts)
        opts.pop("base_url", None)
        opts.pop("timeout_s", None)
        opts.pop("api_key", None)
        return FakeBackend(model=model or "fake", **opts)
    except TypeError as exc:
        if "keyword argument" not in str(exc):
            raise
        # An option the backend does not take: a usage error, told in one line.
        raise LLMError(f"{name}: {exc}") from None


def runner_for(
    settings: LLMSettings,
    spec: str | None = None,
    *,
    model: str | None = None,
    base_url: str | None = None,
    purpose: str | None = None,
    **options: Any,
) -> LLMRunner | None:
    """The runner a ``--backend`` spec asks for, else the one the ``[llm]`` settings describe;
    None means no model (``spec`` "none", or nothing configured).

    The configured model and base URL apply only to the configured backend: ``--backend
    anthropic`` under settings for a local OpenAI-compatible server must not inherit that
    server's URL or model name.  ``model`` wins; then a model in a ``--backend`` spec
    ("anthropic:claude-…"); the ``[llm] model`` wins over one in ``[llm] backend``.  Retries, budgets and the timeout always come from the settings."""
    if spec is not None and spec.strip().lower() == "none":
        return None
    chosen = spec or settings.backend
    if not chosen:
        return None
    name, spec_model = parse_spec(chosen)
    same = not settings.backend or parse_spec(settings.backend)[0] == name
    if spec:  # asked for now: its model is more specific than the configured one
        model = model or spec_model or (settings.model if same else None)
    else:  # the settings' own `model` wins over one in `backend = "name:model"` (documented)
        model = model or settings.model or spec_model
    backend = get_backend(
        chosen,
        model=model,
        base_url=base_url or (settings.base_url if same else None),
        timeout_s=settings.timeout_s,
        **options,
    )
    return LLMRunner(
        backend,
        max_retries=settings.max_retries,
        max_tokens_total=settings.max_tokens_total,
        max_cost_usd=settings.max_cost_usd,
        purpose=purpose,
    )


def runner_from_settings(
    settings: LLMSettings, *, purpose: str | None = None, **options: Any
) -> LLMRunner | None:
    """The runner the ``[llm]`` settings describe, or None when no backend is configured."""
    return runner_for(settings, purpose=purpose, **options)


__all__ = [
    "ALLOW_NETWORK_MODELS",
    "BACKENDS",
    "AuthError",
    "Backend",
    "BackendTimeout",
    "BadResponse",
    "BudgetExceeded",
    "Completion",
    "FakeBackend",
    "LLMError",
    "LLMRunner",
    "Message",
    "RateLimited",
    "RequestsNotAllowed",
    "calls_log_path",
    "delete_key",
    "get_backend",
    "keys_path",
    "parse_spec",
    "resolve_key",
    "runner_for",
    "runner_from_settings",
    "set_key",
    "stored_key_names",
    "usage_summary",
]
