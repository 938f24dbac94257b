"""``ctxmill hook``: entry points for coding agents' hooks.

Kept apart from the other commands, with nothing heavy imported, because a hook has a short time
budget: Claude Code waits for SessionEnd hooks before it exits.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ctxmill.cli import cli
from ctxmill.config import ConfigError, home_dir, load_config


@cli.group("hook")
def hook_group() -> None:
    """Entry points for coding agents' hooks (Claude Code's SessionEnd)."""


@hook_group.command("session-end")
@click.option(
    "--memory",
    type=click.Path(path_type=Path, file_okay=False),
    help="Memory root the session's summary goes to (default: from the config).",
)
@click.option(
    "--no-worker", is_flag=True, help="Only queue; leave the job for the next `ctxmill compress`."
)
def session_end_cmd(memory: Path | None, no_worker: bool) -> None:
    """Queue the session in Claude Code's SessionEnd JSON (on stdin) for compression.

    Returns at once: a detached `ctxmill compress --from-queue` does the work. Never fails the
    user's session: problems are one line on stderr and the exit status is 0.
    """
    from ctxmill.hook import MAX_PAYLOAD, session_end

    try:
        raw = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read(MAX_PAYLOAD + 1)
        try:
            memory_root: Path | None = load_config(memory).memory_root
        except ConfigError as exc:
            click.echo(f"ctxmill: hook: {exc}; queued without a memory root", err=True)
            memory_root = memory.resolve() if memory else None
        session_end(raw, home_dir(), memory_root, worker=not no_worker)
    except Exception as exc:  # a hook must never break the session that called it
        click.echo(f"ctxmill: hook: {exc}", err=True)
