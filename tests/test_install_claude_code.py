"""`ctxmill install claude-code` / `uninstall claude-code` against a temporary HOME and project."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from corpus import SAMPLE_OIDC_PLAN, sample_transcript
from filelock import FileLock

from ctxmill.cli import cli
from ctxmill.config import home_dir
from ctxmill.summary_format import validate_summary

HOOK = "ctxmill hook session-end"
SERVER = {"type": "stdio", "command": "ctxmill", "args": ["mcp"]}

SETTINGS = {
    "permissions": {"allow": ["Bash(git status)"]},
    "env": {"FOO": "1"},
    "hooks": {
        "SessionEnd": [{"hooks": [{"type": "command", "command": "notify-send bye"}]}],
        "Stop": [{"matcher": "", "hooks": [{"type": "command", "command": "make lint"}]}],
    },
}
MCP = {"mcpServers": {"notes": {"type": "http", "url": "https://notes.example.test/mcp"}}}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.chdir(root)
    return root


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def snapshot(root: Path, skip: Path | None = None) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (ctxmill's own data dir left out)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not (skip and p.is_relative_to(skip))
    }


def write_json(path: Path, data: dict[str, Any]) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = json.dumps(data).encode()  # one line, unlike what install writes
    path.write_bytes(raw)
    return raw


def front_matter(path: Path) -> tuple[dict[str, Any], str]:
    _, head, body = path.read_text(encoding="utf-8").split("---\n", 2)
    return yaml.safe_load(head), body


def session_end_commands(settings: dict[str, Any]) -> list[str]:
    return [h["command"] for g in settings["hooks"]["SessionEnd"] for h in g["hooks"]]


def test_project_install_merges_backs_up_once_repeats_as_a_no_op_and_uninstalls_exactly(
    project: Path,
) -> None:
    settings_raw = write_json(project / ".claude" / "settings.json", SETTINGS)
    mcp_raw = write_json(project / ".mcp.json", MCP)
    before = snapshot(project)

    dry = run("install", "claude-code", "--project", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert snapshot(project) == before
    assert not (home_dir() / "installs").exists()
    planned = dry.output.splitlines()
    assert sum(line.startswith("would ") for line in planned) == 4
    assert any(".claude/skills/deep-context/SKILL.md" in line for line in planned)
    assert any(HOOK in line and ".claude/settings.json" in line for line in planned)

    first = run("install", "claude-code", "--project")
    assert first.exit_code == 0, first.output
    assert "/deep-context" in first.output

    meta, body = front_matter(project / ".claude" / "skills" / "deep-context" / "SKILL.md")
    assert meta["name"] == "deep-context" and meta["description"]
    assert meta["disable-model-invocation"] is True
    assert "ctxmill build" in body and "ctxmill run" in body and "$ARGUMENTS" in body
    meta, body = front_matter(project / ".claude" / "commands" / "deep-context.md")
    assert meta["description"] and meta["argument-hint"] == "<brief>"
    assert "ctxmill build" in body and "$ARGUMENTS" in body

    settings = json.loads((project / ".claude" / "settings.json").read_text())
    assert {k: v for k, v in settings.items() if k != "hooks"} == {
        "permissions": SETTINGS["permissions"],
        "env": SETTINGS["env"],
    }
    assert settings["hooks"]["Stop"] == SETTINGS["hooks"]["Stop"]
    assert session_end_commands(settings) == ["notify-send bye", HOOK]
    servers = json.loads((project / ".mcp.json").read_text())["mcpServers"]
    assert servers == {**MCP["mcpServers"], "ctxmill": SERVER}
    assert (project / ".claude" / "settings.json.bak").read_bytes() == settings_raw
    assert (project / ".mcp.json.bak").read_bytes() == mcp_raw

    installed = snapshot(project)
    again = run("install", "claude-code")  # --project is the default
    assert again.exit_code == 0
    assert again.output.startswith("already installed")
    assert snapshot(project) == installed

    # A later change by the user is kept, and the backup still holds the original.
    settings["model"] = "opus"
    (project / ".claude" / "settings.json").write_text(json.dumps(settings))
    assert run("install", "claude-code").output.startswith("already installed")
    assert (project / ".claude" / "settings.json.bak").read_bytes() == settings_raw

    dry = run("uninstall", "claude-code", "--dry-run")
    assert dry.exit_code == 0 and "would remove" in dry.output
    assert (project / ".claude" / "skills" / "deep-context" / "SKILL.md").exists()

    gone = run("uninstall", "claude-code", "--project")
    assert gone.exit_code == 0, gone.output
    after = json.loads((project / ".claude" / "settings.json").read_text())
    assert after == {**SETTINGS, "model": "opus"}
    assert json.loads((project / ".mcp.json").read_text()) == MCP
    assert not (project / ".claude" / "skills").exists()
    assert not (project / ".claude" / "commands").exists()
    assert sorted(snapshot(project)) == sorted(
        [*before, ".claude/settings.json.bak", ".mcp.json.bak"]
    )
    assert (project / ".claude" / "settings.json.bak").read_bytes() == settings_raw

    assert run("uninstall", "claude-code").output.startswith("nothing of ctxmill's to remove")


def test_user_install_keeps_claude_json_and_uninstall_leaves_home_as_it_was(
    project: Path, isolated_env: Path
) -> None:
    home = isolated_env
    state = {"numStartups": 7, "projects": {str(project): {"allowedTools": []}}, "theme": "dark"}
    raw = write_json(home / ".claude.json", state)
    before = snapshot(home, skip=home_dir())

    result = run("install", "claude-code", "--user")
    assert result.exit_code == 0, result.output
    assert (home / ".claude" / "skills" / "deep-context" / "SKILL.md").is_file()
    assert (home / ".claude" / "commands" / "deep-context.md").is_file()
    assert session_end_commands(json.loads((home / ".claude" / "settings.json").read_text())) == [
        HOOK
    ]
    claude = json.loads((home / ".claude.json").read_text())
    assert claude == {**state, "mcpServers": {"ctxmill": SERVER}}
    assert (home / ".claude.json.bak").read_bytes() == raw
    assert not (project / ".claude").exists() and not (project / ".mcp.json").exists()

    assert run("install", "claude-code", "--user").output.startswith("already installed")

    result = run("uninstall", "claude-code", "--user")
    assert result.exit_code == 0, result.output
    # Everything install created is gone, ~/.claude/ included; what was there is as it was.
    assert snapshot(home, skip=home_dir()) == {**before, ".claude.json.bak": raw} | {
        ".claude.json": (home / ".claude.json").read_bytes()
    }
    assert json.loads((home / ".claude.json").read_text()) == state
    assert not (home / ".claude").exists()


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (".claude/settings.json", '{"hooks": {"SessionEnd": [}', "is not valid JSON"),
        (".claude/settings.json", '{"hooks": []}', '"hooks" is not an object'),
        (".claude/settings.json", '{"hooks": {"SessionEnd": {}}}', "is not a list"),
        (".mcp.json", "[1, 2]", "does not hold a JSON object"),
        (".mcp.json", '{"mcpServers": "ctxmill"}', '"mcpServers" is not an object'),
    ],
)
def test_a_malformed_settings_file_stops_the_install_and_nothing_is_written(
    project: Path, name: str, text: str, message: str
) -> None:
    (project / name).parent.mkdir(parents=True, exist_ok=True)
    (project / name).write_text(text)
    before = snapshot(project)
    result = CliRunner().invoke(cli, ["install", "claude-code"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("ctxmill: error:")
    assert snapshot(project) == before
    assert CliRunner().invoke(cli, ["uninstall", "claude-code"]).exit_code == 1
    assert snapshot(project) == before


def test_what_is_not_ctxmills_is_left_alone_on_install_and_uninstall(project: Path) -> None:
    own_skill = project / ".claude" / "skills" / "deep-context" / "SKILL.md"
    own_skill.parent.mkdir(parents=True)
    own_skill.write_text("---\nname: deep-context\ndescription: mine\n---\nMy own skill.\n")
    other = {"type": "stdio", "command": "ctxmill", "args": ["mcp", "--memory", "/srv/memory"]}
    write_json(project / ".mcp.json", {"mcpServers": {"ctxmill": other}})
    skill_before = own_skill.read_bytes()

    result = run("install", "claude-code")
    assert result.exit_code == 0
    assert "SKILL.md exists and is not ctxmill's; left as it is" in result.output
    assert "already has an MCP server named `ctxmill`" in result.output
    assert own_skill.read_bytes() == skill_before
    assert json.loads((project / ".mcp.json").read_text()) == {"mcpServers": {"ctxmill": other}}
    assert not (project / ".mcp.json.bak").exists()
    command = project / ".claude" / "commands" / "deep-context.md"
    assert command.is_file()

    # The user edits the command install wrote: uninstall keeps it and says so.
    command.write_text(command.read_text() + "\nAlso run the linters.\n")
    result = run("uninstall", "claude-code")
    assert result.exit_code == 0
    assert "deep-context.md changed since install; kept" in result.output
    assert command.is_file() and own_skill.read_bytes() == skill_before
    assert json.loads((project / ".mcp.json").read_text()) == {"mcpServers": {"ctxmill": other}}
    assert not (project / ".claude" / "settings.json").exists()  # install created it for the hook


def test_the_installed_hook_gets_a_closed_session_summarised(project: Path) -> None:
    """The hook exactly as installed, run by a shell as Claude Code runs it."""
    bindir = Path(sys.executable).parent
    if not (bindir / "ctxmill").exists():
        pytest.skip(f"{bindir / 'ctxmill'} is not installed (pip install -e .)")
    (project / "ctxmill.toml").write_text(
        '[memory]\nroot = "memory"\n[sources]\ndiscover = false\n'
    )
    transcript = project / "transcripts" / f"{SAMPLE_OIDC_PLAN}.jsonl"
    transcript.parent.mkdir()
    shutil.copy(sample_transcript(SAMPLE_OIDC_PLAN), transcript)
    assert run("install", "claude-code").exit_code == 0

    settings = json.loads((project / ".claude" / "settings.json").read_text())
    (handler,) = [h for g in settings["hooks"]["SessionEnd"] for h in g["hooks"]]
    payload = {
        "session_id": SAMPLE_OIDC_PLAN,
        "transcript_path": str(transcript),
        "cwd": str(project),
        "hook_event_name": "SessionEnd",
        "reason": "prompt_input_exit",
    }
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        handler["command"],
        shell=True,
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        cwd=project,
        env=env,
        timeout=handler["timeout"],
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr

    summary = project / "memory" / "sessions" / "compressed" / "2026" / f"{SAMPLE_OIDC_PLAN}.md"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not (summary.exists() and _queue_empty()):
        time.sleep(0.2)
    log = home_dir() / "queue" / "worker.log"
    assert summary.exists(), log.read_text() if log.exists() else "no worker log"
    assert validate_summary(summary.read_text(encoding="utf-8")) == []
    # Let the worker finish indexing what it wrote before the folders go away.
    FileLock(str(home_dir() / "compress.lock")).acquire(timeout=60)


def _queue_empty() -> bool:
    folder = home_dir() / "queue"
    return not any(folder.glob("*.json")) if folder.is_dir() else True
