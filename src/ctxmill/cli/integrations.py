"""Integration commands: mcp (the MCP server), install / uninstall claude-code."""

from __future__ import annotations

import tomllib
from typing import Any

import click

from ctxmill.cli import Failure, cli, memory_options
from ctxmill.config import Config, user_config_file


@cli.command("mcp")
@memory_options
def mcp_cmd(cfg: Config) -> None:
    """Serve ctxmill to an MCP client over stdin/stdout.

    \b
    Tools: search_memory (query, mode, filters, k), build_context (brief, budget, as_of),
    show_citation (tag), compress_session (session_id). Like the CLI, they bring the index up to
    date before reading it. Started by the client, not by hand; `ctxmill install claude-code`
    registers it with Claude Code.
    """
    from ctxmill.mcp_server import serve

    serve(cfg)


def _scope_options(fn: Any) -> Any:
    fn = click.option("--dry-run", is_flag=True, help="Print the planned changes; write nothing.")(
        fn
    )
    fn = click.option(
        "--user",
        "scope",
        flag_value="user",
        help="For every project: ~/.claude/ and ~/.claude.json.",
    )(fn)
    fn = click.option(
        "--project",
        "scope",
        flag_value="project",
        default=True,
        help="For this project only: ./.claude/ and ./.mcp.json (the default).",
    )(fn)
    return fn


@cli.group("install")
def install_group() -> None:
    """Install ctxmill into a coding agent."""


@cli.group("uninstall")
def uninstall_group() -> None:
    """Remove what `ctxmill install` added."""


@install_group.command("claude-code")
@_scope_options
def install_claude_code(scope: str, dry_run: bool) -> None:
    """Add the /deep-context skill and command, the SessionEnd hook and the MCP server.

    \b
                          --project (default)                   --user
      skill               .claude/skills/deep-context/SKILL.md  ~/.claude/skills/deep-context/SKILL.md
      command             .claude/commands/deep-context.md      ~/.claude/commands/deep-context.md
      SessionEnd hook     .claude/settings.json                 ~/.claude/settings.json
      MCP server ctxmill  .mcp.json                             ~/.claude.json

    Settings files are merged (other keys, hooks and servers stay) and backed up once to
    FILE.bak; nothing that differs from what ctxmill writes is replaced. Running it again
    changes nothing. The hook runs `ctxmill hook session-end`, which queues the closed session
    for `ctxmill compress` and returns at once.
    """
    from ctxmill.integrations import claude_code as cc

    target = cc.Target.for_scope("user" if scope == "user" else "project")
    try:
        plan = cc.plan_install(target)
    except cc.InstallError as exc:
        raise Failure(str(exc)) from exc
    where = f"Claude Code, {target.scope} scope ({target.root})"
    for note in plan.notes:
        click.echo(f"ctxmill: {note}", err=True)
    if not plan.steps:
        click.echo(f"already installed in {where}" if not plan.notes else "nothing to change")
        return
    if not _carry_out(plan, target, dry_run=dry_run, install=True):
        return
    warning = cc.path_warning()
    if warning:
        click.echo(f"ctxmill: warning: {warning}", err=True)
    if target.scope == "user" and not _user_memory_root():
        click.echo(
            "ctxmill: note: the hook summarises each session into the memory root configured "
            "where it ran (./memory without a ctxmill.toml); set [memory] root in "
            f"{user_config_file()} to keep every project's summaries in one place",
            err=True,
        )
    click.echo(
        f"installed in {where}; start a new Claude Code session there and type "
        "/deep-context <brief>"
    )


@uninstall_group.command("claude-code")
@_scope_options
def uninstall_claude_code(scope: str, dry_run: bool) -> None:
    """Remove exactly what `ctxmill install claude-code` added, and nothing else.

    The hook is found by its command (`ctxmill hook session-end`), the MCP server by its whole
    entry, the skill and command files by their content: a file edited since install is kept
    (and reported). Settings files are backed up once to FILE.bak before they change.
    """
    from ctxmill.integrations import claude_code as cc

    target = cc.Target.for_scope("user" if scope == "user" else "project")
    try:
        plan = cc.plan_uninstall(target)
    except cc.InstallError as exc:
        raise Failure(str(exc)) from exc
    for note in plan.notes:
        click.echo(f"ctxmill: {note}", err=True)
    if not plan.steps:
        click.echo(f"nothing of ctxmill's to remove in {target.scope} scope ({target.root})")
        return
    _carry_out(plan, target, dry_run=dry_run, install=False)


def _carry_out(plan: Any, target: Any, *, dry_run: bool, install: bool) -> bool:
    """Apply the plan (unless a dry run) and print its steps; True when something was written."""
    from ctxmill.integrations import claude_code as cc

    if not dry_run:
        try:
            cc.apply(plan, install=install)
        except OSError as exc:
            raise Failure(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")) from exc
    for step in plan.steps:
        click.echo(step.describe(target, done=not dry_run))
    if dry_run:
        click.echo("dry run: nothing was written")
    return not dry_run


def _user_memory_root() -> str | None:
    """``[memory] root`` in the user config, if set (a broken file counts as unset here)."""
    try:
        with user_config_file().open("rb") as fh:
            root = tomllib.load(fh).get("memory", {}).get("root")
    except (OSError, tomllib.TOMLDecodeError, AttributeError):
        return None
    return str(root) if root else None
