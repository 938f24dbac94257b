"""Retries, budgets and a call log around any backend.

Every stage that calls a model goes through an :class:`LLMRunner`, never a backend directly, so that

- transient failures (rate limits, timeouts, 5xx, dropped connections) are retried with exponential
  backoff and jitter, waiting at least as long as the server's ``retry-after``;
- a run cannot spend more than ``max_tokens_total`` tokens or ``max_cost_usd`` dollars: a call whose
  worst case (estimated prompt + ``max_tokens``) would go over is refused before it is sent, and a
  call that went over anyway raises :class:`BudgetExceeded` after it (carrying its answer);
- every attempt is appended as one JSON line to ``$CTXMILL_HOME/llm_calls.jsonl`` (never the
  prompt, never a key), which :func:`usage_summary` reads for ``ctxmill status``.

A runner may be shared by threads; budget checks reserve the worst case of calls in flight.
"""

from __future__ import annotations

import json
import random
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ctxmill.config import home_dir
from ctxmill.llm.base import (
    Backend,
    BudgetExceeded,
    Completion,
    LLMError,
    Message,
    RateLimited,
    estimate_tokens,
)

LOG_NAME = "llm_calls.jsonl"


def calls_log_path() -> Path:
    return home_dir() / LOG_NAME


@dataclass
class RunUsage:
    """What one runner has spent so far."""

    attempts: int = 0
    """Requests that reached the backend, failed ones included."""
    ok: int = 0
    errors: int = 0
    retries: int = 0
    refused: int = 0
    """Calls refused by the budget pre-check (never sent)."""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class LLMRunner:
    """Wrap ``backend`` with retries, a budget and the call log."""

    def __init__(
        self,
        backend: Backend,
        *,
        max_retries: int = 4,
        max_tokens_total: int | None = None,
        max_cost_usd: float | None = None,
        purpose: str | None = None,
        log_path: Path | None = None,
        log: bool = True,
        base_delay_s: float = 1.0,
        max_delay_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        self.backend = backend
        self.max_retries = max_retries
        self.max_tokens_total = max_tokens_total
        self.max_cost_usd = max_cost_usd
        self.purpose = purpose
        self.log_path = log_path
        self.log = log
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.usage = RunUsage()
        self._sleep = sleep
        self._jitter = jitter
        self._lock = threading.Lock()
        self._reserved_tokens = 0
        self._reserved_cost = 0.0
        self._log_warned = False

    # -- the call ---------------------------------------------------------------------------

    def complete(
        self,
        messages: list[Message] | str,
        *,
        system: str | None = None,
        max_tokens: int = 1024,
        temperature: float | None = 0.0,
        purpose: str | None = None,
    ) -> Completion:
        """Call the backend, retrying transient failures; a plain string is one user message."""
        msgs = [Message("user", messages)] if isinstance(messages, str) else list(messages)
        purpose = purpose or self.purpose
        prompt = "\n".join(filter(None, [system, *(m.content for m in msgs)]))
        prompt_estimate = estimate_tokens(prompt)
        reserved = self._reserve(prompt_estimate, max_tokens, purpose)
        try:
            completion = self._attempts(msgs, system, max_tokens, temperature, purpose)
        except BaseException:
            self._release(reserved)
            raise
        self._settle(reserved, completion)
        return completion

    def _attempts(
        self,
        msgs: list[Message],
        system: str | None,
        max_tokens: int,
        temperature: float | None,
        purpose: str | None,
    ) -> Completion:
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                completion = self.backend.complete(
                    msgs, system=system, max_tokens=max_tokens, temperature=temperature
                )
            except LLMError as err:
                self._record_error(err, time.perf_counter() - started, attempt, purpose)
                if not err.retryable or attempt > self.max_retries:
                    raise
                self._sleep(self._delay(attempt, err))
                with self._lock:
                    self.usage.retries += 1
                continue
            except Exception as exc:
                # A backend that let an unexpected exception through: still one line for the user.
                wrapped = LLMError(f"{self.backend.name}: {type(exc).__name__}: {exc}")
                self._record_error(wrapped, time.perf_counter() - started, attempt, purpose)
                raise wrapped from exc
            self._record(completion, attempt, purpose)
            return completion

    def _delay(self, attempt: int, err: LLMError) -> float:
        """Seconds before retry number ``attempt``: backoff with jitter, at least retry-after."""
        backoff = min(self.max_delay_s, self.base_delay_s * 2.0 ** (attempt - 1))
        # "Equal jitter": half fixed, half random, so parallel workers spread out but still wait.
        delay = backoff / 2 + backoff / 2 * self._jitter()
        retry_after = err.retry_after if isinstance(err, RateLimited) else None
        if retry_after is not None:
            if retry_after > self.max_delay_s:
                # Waiting minutes inside a call helps nobody; say so and let the caller decide.
                raise err
            delay = max(delay, retry_after)
        return delay

    # -- budget -----------------------------------------------------------------------------

    def _reserve(
        self, prompt_tokens: int, max_tokens: int, purpose: str | None
    ) -> tuple[int, float]:
        worst_tokens = prompt_tokens + max_tokens
        worst_cost = self.backend.estimate_cost(prompt_tokens, max_tokens)
        with self._lock:
            committed = self.usage.tokens + self._reserved_tokens
            if (
                self.max_tokens_total is not None
                and committed + worst_tokens > self.max_tokens_total
            ):
                err = BudgetExceeded(
                    f"token budget: {committed:,} used or in flight + up to {worst_tokens:,} for "
                    f"this call would pass max_tokens_total={self.max_tokens_total:,}"
                )
            else:
                spent = self.usage.cost_usd + self._reserved_cost
                err = None
                if self.max_cost_usd is not None:
                    if spent >= self.max_cost_usd:
                        err = BudgetExceeded(
                            f"cost budget: ${spent:.4f} already spent of max_cost_usd="
                            f"${self.max_cost_usd:.4f}"
                        )
                    elif worst_cost is not None and spent + worst_cost > self.max_cost_usd:
                        err = BudgetExceeded(
                            f"cost budget: ${spent:.4f} spent + up to ${worst_cost:.4f} for this "
                            f"call would pass max_cost_usd=${self.max_cost_usd:.4f}"
                        )
            if err is None:
                self._reserved_tokens += worst_tokens
                self._reserved_cost += worst_cost or 0.0
                return worst_tokens, worst_cost or 0.0
            self.usage.refused += 1
        self._write(self._entry(ok=False, purpose=purpose, error=err))
        raise err

    def _release(self, reserved: tuple[int, float]) -> None:
        with self._lock:
            self._reserved_tokens -= reserved[0]
            self._reserved_cost -= reserved[1]

    def _settle(self, reserved: tuple[int, float], completion: Completion) -> None:
        """Swap the call's reservation for what it really used, in one step, so that no other
        thread sees the budget with neither counted."""
        with self._lock:
            self._reserved_tokens -= reserved[0]
            self._reserved_cost -= reserved[1]
            self.usage.input_tokens += completion.input_tokens
            self.usage.output_tokens += completion.output_tokens
            self.usage.cost_usd += completion.cost_usd or 0.0
            tokens, cost = self.usage.tokens, self.usage.cost_usd
        if self.max_tokens_total is not None and tokens > self.max_tokens_total:
            raise BudgetExceeded(
                f"token budget: this call took the run to {tokens:,} tokens, over "
                f"max_tokens_total={self.max_tokens_total:,}",
                completion=completion,
            )
        if self.max_cost_usd is not None and cost > self.max_cost_usd:
            raise BudgetExceeded(
                f"cost budget: this call took the run to ${cost:.4f}, over "
                f"max_cost_usd=${self.max_cost_usd:.4f}",
                completion=completion,
            )

    # -- the log ----------------------------------------------------------------------------

    def _record(self, completion: Completion, attempt: int, purpose: str | None) -> None:
        with self._lock:
            self.usage.attempts += 1
            self.usage.ok += 1
        entry = self._entry(ok=True, purpose=purpose, attempt=attempt)
        entry.update(
            backend=completion.backend,
            model=completion.model,
            input_tokens=completion.input_tokens,
            output_tokens=completion.output_tokens,
            duration_s=round(completion.duration_s, 4),
            cost_usd=completion.cost_usd,
        )
        self._write(entry)

    def _record_error(
        self, err: LLMError, duration: float, attempt: int, purpose: str | None
    ) -> None:
        with self._lock:
            self.usage.attempts += 1
            self.usage.errors += 1
        entry = self._entry(ok=False, purpose=purpose, error=err, attempt=attempt)
        entry["duration_s"] = round(duration, 4)
        self._write(entry)

    def _entry(
        self, *, ok: bool, purpose: str | None, error: LLMError | None = None, attempt: int = 0
    ) -> dict[str, Any]:
        return {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "backend": self.backend.name,
            "model": self.backend.model,
            "purpose": purpose,
            "attempt": attempt,
            "input_tokens": 0,
            "output_tokens": 0,
            "duration_s": 0.0,
            "cost_usd": None,
            "ok": ok,
            "error": type(error).__name__ if error else None,
            "message": str(error) if error else None,
        }

    def _write(self, entry: dict[str, Any]) -> None:
        if not self.log:
            return
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        try:
            path = self.log_path or calls_log_path()
            # One write of one line in append mode, so concurrent runners do not interleave.
            with self._lock, path.open("a", encoding="utf-8") as fh:
                fh.write(line)
        except OSError as exc:
            if not self._log_warned:
                self._log_warned = True
                warnings.warn(f"cannot write the LLM call log: {exc}", stacklevel=3)

    def usage_dict(self) -> dict[str, Any]:
        with self._lock:
            data = asdict(self.usage)
        data["tokens"] = data["input_tokens"] + data["output_tokens"]
        return data


def _bucket() -> dict[str, Any]:
    return {
        "calls": 0,
        "ok": 0,
        "errors": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "cost_usd": 0.0,
    }


def _add(bucket: dict[str, Any], ok: bool, numbers: tuple[int, int, float]) -> None:
    bucket["calls"] += 1
    bucket["ok" if ok else "errors"] += 1
    bucket["input_tokens"] += numbers[0]
    bucket["output_tokens"] += numbers[1]
    bucket["cost_usd"] += numbers[2]


def usage_summary(path: Path | None = None, *, since: datetime | None = None) -> dict[str, Any]:
    """Totals from the call log: overall, per ``backend:model``, per purpose and per error type.

    ``calls`` counts log lines (attempts, including retries and budget refusals); ``cost_usd``
    adds only the costs the backends reported.  Damaged lines are counted, not fatal.
    """
    path = path or calls_log_path()
    total = _bucket()
    by_model: dict[str, dict[str, Any]] = {}
    by_purpose: dict[str, dict[str, Any]] = {}
    errors: dict[str, int] = {}
    first = last = None
    damaged = 0
    since_utc = since.astimezone(UTC) if since else None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    for line in lines:
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            ts = str(entry["ts"])
            when = datetime.fromisoformat(ts.replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            numbers = (
                int(entry.get("input_tokens") or 0),
                int(entry.get("output_tokens") or 0),
                float(entry.get("cost_usd") or 0.0),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            damaged += 1
            continue
        if since_utc and when < since_utc:
            continue
        first = first or ts
        last = ts
        ok = bool(entry.get("ok"))
        model = f"{entry.get('backend')}:{entry.get('model')}"
        _add(total, ok, numbers)
        _add(by_model.setdefault(model, _bucket()), ok, numbers)
        _add(by_purpose.setdefault(str(entry.get("purpose") or "-"), _bucket()), ok, numbers)
        if entry.get("error"):
            errors[str(entry["error"])] = errors.get(str(entry["error"]), 0) + 1
    for bucket in (total, *by_model.values(), *by_purpose.values()):
        bucket["cost_usd"] = round(bucket["cost_usd"], 6)
    return {
        "log": str(path),
        **total,
        "first": first,
        "last": last,
        "by_model": by_model,
        "by_purpose": by_purpose,
        "errors_by_type": errors,
        "damaged_lines": damaged,
    }
