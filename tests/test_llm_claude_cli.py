"""The claude-cli backend runs a stand-in `claude` (first on PATH) and must call it with the right
flags, feed the prompt on stdin, and turn every way the CLI can fail into the right LLMError."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from llm_servers import FakeClaude

import ctxmill.llm as llm
from ctxmill.llm import (
    AuthError,
    BackendTimeout,
    BadResponse,
    BudgetExceeded,
    LLMError,
    LLMRunner,
    Message,
    RateLimited,
    get_backend,
)
from ctxmill.llm.claude_cli import ClaudeCLIBackend


@pytest.fixture
def claude(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeClaude:
    fake = FakeClaude(tmp_path / "bin")
    monkeypatch.setenv("PATH", fake.path_with_me_first())
    # The only `claude` these tests can reach is the stand-in above, so model requests may go.
    monkeypatch.setattr(llm, "ALLOW_NETWORK_MODELS", True)
    return fake


def ask(backend: ClaudeCLIBackend, text: str = "summarise this", **kw: object) -> llm.Completion:
    return backend.complete([Message("user", text)], **kw)  # type: ignore[arg-type]


def test_flags_stdin_and_result(claude: FakeClaude) -> None:
    completion = ask(ClaudeCLIBackend("sonnet"), "the prompt", system="you summarise")
    [call] = claude.calls()
    assert call["argv"] == [
        "-p",
        "--output-format",
        "json",
        "--no-session-persistence",
        "--model",
        "sonnet",
        "--system-prompt",
        "you summarise",
        "--tools",
        "",
    ]
    assert call["stdin"] == "the prompt"
    assert completion.text == "echo: the prompt"
    assert completion.input_tokens == 140  # 40 fresh + 100 read from the prompt cache
    assert completion.output_tokens == 7
    assert completion.cost_usd == 0.0125
    assert completion.model == "claude-test-model"
    assert completion.backend == "claude-cli"


def test_default_model_append_mode_tools_and_extra_args(claude: FakeClaude) -> None:
    backend = get_backend(
        "claude-cli", system_mode="append", allow_tools=True, extra_args=["--max-turns", "1"]
    )
    assert isinstance(backend, ClaudeCLIBackend)
    ask(backend, system="extra rules")
    ask(backend)
    with_system, without = (c["argv"] for c in claude.calls())
    assert with_system == [
        "-p",
        "--output-format",
        "json",
        "--no-session-persistence",
        "--append-system-prompt",
        "extra rules",
        "--max-turns",
        "1",
    ]
    assert "--model" not in without
    assert "--append-system-prompt" not in without


def test_conversation_is_rendered_into_one_prompt(claude: FakeClaude) -> None:
    messages = [Message("user", "q1"), Message("assistant", "a1"), Message("user", "q2")]
    ClaudeCLIBackend().complete(messages)
    assert claude.calls()[0]["stdin"] == "User: q1\n\nAssistant: a1\n\nUser: q2"


def test_executable_name_is_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeClaude(tmp_path / "other", name="claude-work")
    monkeypatch.setenv("PATH", fake.path_with_me_first())
    monkeypatch.setattr(llm, "ALLOW_NETWORK_MODELS", True)
    assert ask(ClaudeCLIBackend(executable="claude-work")).text == "echo: summarise this"
    assert len(fake.calls()) == 1


def test_runs_nested_in_a_claude_code_hook(
    claude: FakeClaude, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CLAUDECODE", "1")  # what a SessionEnd hook inherits
    ask(ClaudeCLIBackend(cwd=tmp_path))
    [call] = claude.calls()
    assert call["CLAUDECODE"] is None
    assert call["cwd"] == str(tmp_path)


def test_missing_executable(claude: FakeClaude) -> None:
    with pytest.raises(LLMError, match="'no-such-claude' not found on PATH"):
        ask(ClaudeCLIBackend(executable="no-such-claude"))


def test_nonzero_exit_reports_last_stderr_line(claude: FakeClaude) -> None:
    claude.behave(mode="exit", code=2, stderr="some noise\nerror: unknown option '--bogus'\n")
    with pytest.raises(LLMError) as info:
        ask(ClaudeCLIBackend())
    assert str(info.value) == "claude-cli: exited with status 2: error: unknown option '--bogus'"
    assert not info.value.retryable


def test_timeout_kills_the_process(claude: FakeClaude) -> None:
    claude.behave(mode="sleep", sleep_s=30)
    with pytest.raises(BackendTimeout, match=r"within 0\.5s"):
        ask(ClaudeCLIBackend(timeout_s=0.5))
    with pytest.raises(ProcessLookupError):
        os.kill(claude.calls()[0]["pid"], 0)  # killed and reaped, not left sleeping


def test_garbage_output_is_bad_response(claude: FakeClaude) -> None:
    claude.behave(mode="garbage")
    with pytest.raises(BadResponse, match="this is not json"):
        ask(ClaudeCLIBackend())


@pytest.mark.parametrize(
    ("behaviour", "error", "retryable"),
    [
        ({"subtype": "error_max_turns", "result": "hit the turn limit"}, LLMError, False),
        ({"subtype": "error_max_budget_usd", "result": ""}, BudgetExceeded, False),
        ({"subtype": "success", "result": "API Error: 429 rate limit exceeded"}, RateLimited, True),
        ({"subtype": "success", "result": "Invalid API key · Please run /login"}, AuthError, False),
        ({"subtype": "error_during_execution", "result": "API Error: Overloaded"}, LLMError, True),
    ],
)
def test_error_results_are_mapped(
    claude: FakeClaude, behaviour: dict[str, str], error: type[LLMError], retryable: bool
) -> None:
    claude.behave(mode="error", **behaviour)
    with pytest.raises(error) as info:
        ask(ClaudeCLIBackend())
    assert type(info.value) is error
    assert info.value.retryable is retryable
    assert str(info.value).startswith(f"claude-cli: {behaviour['subtype']}:")


def test_runner_retries_a_rate_limited_cli(claude: FakeClaude) -> None:
    claude.behave(mode="error", result="API Error: 429 rate limit")
    runner = LLMRunner(ClaudeCLIBackend(), max_retries=1, sleep=lambda s: None)
    with pytest.raises(RateLimited):
        runner.complete("x")
    assert len(claude.calls()) == 2
    assert runner.usage.retries == 1
