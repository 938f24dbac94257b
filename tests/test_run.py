"""``ctxmill run``: a stand-in agent on PATH records exactly what it was handed."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_pipeline_build import AS_OF, make_parcel

from ctxmill.cli import cli
from ctxmill.config import Config, home_dir
from ctxmill.run import RunError, is_claude, list_runs, prepare, run_agent

AGENT = """#!{python}
import json, os, sys
data = sys.stdin.read() if not sys.stdin.isatty() else None
record = {{"argv": sys.argv, "stdin": data}}
if len(sys.argv) > 2 and sys.argv[-3] == "--append-system-prompt-file":
    record["file"] = open(sys.argv[-2], encoding="utf-8").read()
with open(os.environ["AGENT_LOG"], "a", encoding="utf-8") as fh:
    fh.write(json.dumps(record) + "\\n")
print("agent: working")
print("agent: done")
sys.exit(int(os.environ.get("AGENT_EXIT", "0")))
"""

SECRET = "sk-ant-api03-" + "Q7x9Lm2Vb8Np4Kd6Rt1Zw3Yc5Hf0Js" * 2


@pytest.fixture
def agents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`claude` and `codex` stand-ins first on PATH; returns the log they append to."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("claude", "codex"):
        exe = bin_dir / name
        exe.write_text(AGENT.format(python=sys.executable), encoding="utf-8")
        exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "agent.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("AGENT_LOG", str(log))
    return log


def calls(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text("utf-8").splitlines()]


def cfg_for(tmp_path: Path) -> Config:
    return Config(memory_root=tmp_path / "memory", discover=False, home=home_dir())


def test_claude_gets_the_context_as_an_appended_system_prompt(tmp_path: Path, agents: Path) -> None:
    out: list[str] = []
    record, invocation = run_agent(
        cfg_for(tmp_path),
        "Migrate session auth to OIDC",
        context_text="# Context for: Migrate session auth to OIDC\n\n- a fact [topic:a.md#L1-L1]\n",
        write=out.append,
    )
    (call,) = calls(agents)
    argv = call["argv"]
    assert isinstance(argv, list)
    assert (
        argv[1:3] == ["-p", "--append-system-prompt-file"]
        and argv[-1] == "Migrate session auth to OIDC"
    )
    assert call["file"] == Path(argv[3]).read_text("utf-8")
    assert "- a fact [topic:a.md#L1-L1]" in str(call["file"])
    assert call["stdin"] in (None, "")
    assert "".join(out) == "agent: working\nagent: done\n"
    assert record.exit_status == 0 and record.context == argv[3]
    runs = list_runs(home_dir())
    assert runs[-1]["id"] == record.id and runs[-1]["context_sha256"] == record.context_sha256
    assert runs[-1]["command"] == invocation.argv and runs[-1]["brief"] == record.brief


def test_any_other_command_reads_brief_and_context_on_stdin(tmp_path: Path, agents: Path) -> None:
    record, _ = run_agent(
        cfg_for(tmp_path),
        "Fix the flaky test",
        context_text="# Context\n\nsome context\n",
        command=["codex", "exec", "-"],
        write=lambda text: None,
    )
    (call,) = calls(agents)
    assert call["argv"] == [str(Path(call["argv"][0])), "exec", "-"]  # type: ignore[index]
    assert call["stdin"] == "Fix the flaky test\n\n# Context\n\nsome context\n"
    assert record.exit_status == 0


def test_egress_redaction_before_the_agent_starts(tmp_path: Path, agents: Path) -> None:
    record, invocation = run_agent(
        cfg_for(tmp_path),
        f"Rotate {SECRET}",
        context_text=f"The key was {SECRET}.\n",
        command=["codex"],
        write=lambda text: None,
    )
    (call,) = calls(agents)
    assert SECRET not in str(call["stdin"]) and SECRET not in Path(str(record.context)).read_text()
    assert invocation.redacted == 2 and any("redacted" in n for n in record.notes)


def test_exit_status_and_dry_run(
    tmp_path: Path, agents: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_EXIT", "3")
    record, _ = run_agent(cfg_for(tmp_path), "b", context_text="c", write=lambda text: None)
    assert record.exit_status == 3
    dry, invocation = run_agent(cfg_for(tmp_path), "b", context_text="c", dry_run=True)
    assert dry.exit_status is None and len(calls(agents)) == 1  # nothing started
    assert len(list_runs(home_dir())) == 1  # and nothing recorded
    assert invocation.argv[-1] == "b"


def test_missing_agent_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="not found on PATH"):
        run_agent(
            cfg_for(tmp_path), "b", context_text="c", command=["no-such-agent-xyz"], write=print
        )
    with pytest.raises(RunError, match="empty"):
        prepare(cfg_for(tmp_path), "id", "b", command=[], context_text="c")
    assert is_claude(["/usr/local/bin/claude", "-p"]) and not is_claude(["codex"])


def test_prompt_file_goes_on_stdin(tmp_path: Path, agents: Path) -> None:
    prompt = tmp_path / "plan.md"
    prompt.write_text("# Goal\nDo the thing.\n", "utf-8")
    result = CliRunner().invoke(cli, ["run", "--prompt", str(prompt), "--no-ingest"])
    assert result.exit_code == 0, result.output
    (call,) = calls(agents)
    assert call["argv"][1:] == ["-p"]  # type: ignore[index]
    assert call["stdin"] == "# Goal\nDo the thing.\n"


def test_cli_run_builds_then_runs_and_runs_lists(
    tmp_path: Path, agents: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_parcel(tmp_path)
    (tmp_path / "ctxmill.toml").write_text(
        '[memory]\nroot = "memory"\n[code]\nroot = "code"\n[sources]\ndiscover = false\n'
        '[index]\nembedder = "hash"\n[run]\ncommand = ["codex", "exec", "-"]\n',
        "utf-8",
    )
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    brief = "Migrate session auth to OIDC"
    dry = runner.invoke(cli, ["run", brief, "--as-of", AS_OF.isoformat(), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "command: codex exec -" in dry.output and "# Context for: Migrate session" in dry.output
    assert not agents.exists()

    done = runner.invoke(cli, ["run", brief, "--as-of", AS_OF.isoformat(), "--no-ingest"])
    assert done.exit_code == 0, done.output
    assert "agent: done" in done.output
    (call,) = calls(agents)
    assert str(call["stdin"]).startswith(f"{brief}\n\n---\n")
    assert "## Files likely to touch" in str(call["stdin"])

    listed = runner.invoke(cli, ["runs", "--json"])
    runs = json.loads(listed.output)
    assert len(runs) == 1 and runs[0]["exit_status"] == 0 and runs[0]["brief"] == brief
    assert runs[0]["command"] == ["codex", "exec", "-"]
    table = runner.invoke(cli, ["runs"])
    assert runs[0]["id"] in table.output


def test_cli_run_usage_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["run"]).exit_code == 2
    ctx = tmp_path / "c.md"
    ctx.write_text("x", "utf-8")
    both = runner.invoke(cli, ["run", "b", "--context", str(ctx), "--prompt", str(ctx)])
    assert both.exit_code == 2 and "not both" in both.output
    missing = runner.invoke(
        cli, ["run", "b", "--context", str(ctx), "--agent", "no-such-agent-xyz", "--no-ingest"]
    )
    assert missing.exit_code == 1 and "not found on PATH" in missing.output


def test_cli_run_propagates_the_agents_exit_status(
    tmp_path: Path, agents: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_EXIT", "4")
    ctx = tmp_path / "c.md"
    ctx.write_text("context", "utf-8")
    result = CliRunner().invoke(cli, ["run", "b", "--context", str(ctx), "--no-ingest"])
    assert result.exit_code == 4
