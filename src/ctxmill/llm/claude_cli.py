"""Claude Code in headless mode (``claude -p``), on the user's own subscription or key.

Each call runs ``claude -p --output-format json --no-session-persistence`` with the prompt on stdin
and parses the single result object it prints.  ``--no-session-persistence`` keeps ctxmill's own
calls out of ``~/.claude/projects``, which ctxmill ingests: without it every summary would create a
new transcript to summarise.  Built-in tools are switched off by default (``--tools ""``): ctxmill
only wants text back, and transcripts fed in as prompts must not be able to make the agent act.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from typing import Any

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
    check_request_allowed,
)

DEFAULT_EXECUTABLE = "claude"


def render_prompt(messages: list[Message]) -> str:
    """One prompt from a conversation: the CLI takes a single user turn."""
    if len(messages) == 1 and messages[0].role == "user":
        return messages[0].content
    labels = {"user": "User", "assistant": "Assistant"}
    return "\n\n".join(f"{labels.get(m.role, m.role.title())}: {m.content}" for m in messages)


class ClaudeCLIBackend(Backend):
    name = "claude-cli"

    def __init__(
        self,
        model: str | None = None,
        *,
        executable: str = DEFAULT_EXECUTABLE,
        timeout_s: float = 300.0,
        system_mode: str = "replace",
        allow_tools: bool = False,
        extra_args: Sequence[str] = (),
        cwd: str | os.PathLike[str] | None = None,
    ) -> None:
        if system_mode not in ("replace", "append"):
            raise LLMError(
                f"claude-cli: system_mode must be 'replace' or 'append', not {system_mode!r}"
            )
        self.model = model or "default"
        self._model_flag = model
        self.executable = executable
        self.timeout_s = timeout_s
        self.system_mode = system_mode
        self.allow_tools = allow_tools
        self.extra_args = list(extra_args)
        self.cwd = cwd

    def command(self, system: str | None = None) -> list[str]:
        """The argv of one call (the prompt goes to stdin, so it never shows in ``ps``)."""
        exe = shutil.which(self.executable) or self.executable
        argv = [exe, "-p", "--output-format", "json", "--no-session-persistence"]
        if self._model_flag:
            argv += ["--model", self._model_flag]
        if system:
            flag = "--system-prompt" if self.system_mode == "replace" else "--append-system-prompt"
            argv += [flag, system]
        if not self.allow_tools:
            argv += ["--tools", ""]
        return argv + self.extra_args

    def complete(
        self,
        messages: list[Message],
        *,
        system: str | None = None,
        max_tokens: int = 1024,
        temperature: float | None = 0.0,
    ) -> Completion:
        # max_tokens and temperature have no CLI flag; the runner's budget still counts the usage.
        check_request_allowed(self.name, None)
        if shutil.which(self.executable) is None:
            raise LLMError(
                f"claude-cli: executable {self.executable!r} not found on PATH "
                "(install Claude Code or set the executable option)"
            )
        argv = self.command(system)
        started = time.perf_counter()
        stdout, stderr, returncode = self._run(argv, render_prompt(messages))
        duration = time.perf_counter() - started
        result = _parse_result(stdout)
        if result is None:
            if returncode != 0:
                reason = _last_line(stderr, "no output on stderr")
                raise LLMError(f"claude-cli: exited with status {returncode}: {reason}")
            raise BadResponse(
                "claude-cli: no JSON result on stdout "
                f"({_last_line(stdout, 'empty output')}); is the executable Claude Code?"
            )
        if result.get("is_error") or str(result.get("subtype", "")).startswith("error"):
            raise _result_error(result, returncode)
        return self._completion(result, duration)

    def _run(self, argv: list[str], prompt: str) -> tuple[str, str, int]:
        try:
            # A session of its own so that a timeout kills the CLI's children too.
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                cwd=self.cwd,
                env=_child_env(),
                start_new_session=True,
            )
        except OSError as exc:
            raise LLMError(f"claude-cli: cannot run {argv[0]}: {exc.strerror or exc}") from exc
        try:
            stdout, stderr = proc.communicate(prompt, timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise BackendTimeout(
                f"claude-cli: no result within {self.timeout_s:g}s (process killed)"
            ) from None
        return stdout, stderr, proc.returncode

    def _completion(self, result: dict[str, Any], duration: float) -> Completion:
        text = result.get("result")
        if not isinstance(text, str):
            raise BadResponse("claude-cli: the result object has no text")
        raw_usage = result.get("usage")
        usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
        # Cached prompt tokens are still tokens the call consumed; count them like fresh ones.
        input_tokens = sum(
            _int(usage.get(k))
            for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        )
        model_usage = result.get("modelUsage")
        model = self.model
        if isinstance(model_usage, dict) and model_usage:
            model = str(next(iter(model_usage)))
        cost = result.get("total_cost_usd")
        return Completion(
            text=text,
            input_tokens=input_tokens,
            output_tokens=_int(usage.get("output_tokens")),
            model=model,
            backend=self.name,
            duration_s=duration,
            cost_usd=float(cost) if isinstance(cost, int | float) else None,
        )


def _child_env() -> dict[str, str]:
    # Claude Code refuses to start when it sees CLAUDECODE, which it sets for everything it runs
    # (hooks included).  ctxmill's calls are one-shot, non-persistent and tool-less, so the nested
    # run is safe, and without this a SessionEnd hook could never compress with claude-cli.
    return {k: v for k, v in os.environ.items() if k != "CLAUDECODE"}


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float) else 0


def _last_line(text: str, default: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else default


def _parse_result(stdout: str) -> dict[str, Any] | None:
    """The ``type: result`` object; tolerant of stray lines printed before it."""
    candidates = [stdout.strip()] + [line.strip() for line in reversed(stdout.splitlines())]
    for candidate in candidates:
        if not candidate.startswith("{"):
            continue
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(data, dict) and ("result" in data or data.get("type") == "result"):
            return data
    return None


def _result_error(result: dict[str, Any], returncode: int) -> LLMError:
    subtype = str(result.get("subtype") or "error")
    errors = result.get("errors")
    detail = result.get("result") if isinstance(result.get("result"), str) else ""
    if not detail and isinstance(errors, list) and errors:
        detail = "; ".join(str(e) for e in errors)
    detail = detail or f"exit status {returncode}"
    message = f"claude-cli: {subtype}: {detail}"
    lowered = detail.lower()
    # The CLI reports API failures as text in the result; map the ones callers act on.
    if subtype == "error_max_budget_usd":
        return BudgetExceeded(message)
    if "429" in detail or "rate limit" in lowered or "usage limit" in lowered:
        return RateLimited(message)
    if "401" in detail or "invalid api key" in lowered or "/login" in lowered:
        return AuthError(message)
    if "overloaded" in lowered or "529" in detail:
        return LLMError(message, retryable=True)
    return LLMError(message)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, AttributeError):
        proc.kill()
    proc.communicate()
