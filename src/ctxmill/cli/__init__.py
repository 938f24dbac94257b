"""The ``ctxmill`` command: parses options, calls the library, prints.  Nothing else lives here.

Each area's commands live in their own module in this package; ``_COMMANDS`` says which, and a
module is imported only when one of its commands runs (``--help`` imports them all).  That keeps
``ctxmill hook session-end``, which runs inside an agent's short hook budget, from paying for
numpy and the pipeline.  Shared options and error handling are here.

Exit status: 0 success, 1 a check or gate failed (or an operational error), 2 a usage error.
Errors are one line on stderr; ``CTXMILL_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console

from ctxmill import __version__
from ctxmill.config import Config, ConfigError, load_config, sample_config

if TYPE_CHECKING:
    from ctxmill.ingest import IngestReport

F = TypeVar("F", bound=Callable[..., Any])
err = Console(stderr=True)
out = Console(highlight=False, soft_wrap=True)


class Failure(click.ClickException):
    """An operational error: one line, exit 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"ctxmill: error: {self.message}", err=True)


def memory_options(fn: F) -> F:
    """--memory/--code/--no-discover/--sample on every command, placed after the command name."""

    @click.option(
        "--memory",
        type=click.Path(path_type=Path, file_okay=False),
        help="Memory root (topics/, sessions/). Default: [memory] root in ctxmill.toml, else ./memory.",
    )
    @click.option(
        "--code",
        type=click.Path(path_type=Path, file_okay=False),
        help="Code root whose git-tracked files are searched for [code:…] excerpts.",
    )
    @click.option(
        "--no-discover",
        is_flag=True,
        help="Do not read agents' own transcript folders (~/.claude/projects, ~/.codex/sessions).",
    )
    @click.option(
        "--sample",
        is_flag=True,
        help="Use the sample memory shipped with ctxmill (a working copy under CTXMILL_HOME).",
    )
    @functools.wraps(fn)
    def wrapper(
        *args: Any,
        memory: Path | None,
        code: Path | None,
        no_discover: bool,
        sample: bool,
        **kwargs: Any,
    ) -> Any:
        try:
            cfg = (
                sample_config()
                if sample
                else load_config(memory, code, False if no_discover else None)
            )
        except ConfigError as exc:
            raise Failure(str(exc)) from exc
        return fn(*args, cfg=cfg, **kwargs)

    return wrapper  # type: ignore[return-value]


def ingest_option(fn: F) -> F:
    return click.option(
        "--no-ingest",
        is_flag=True,
        help="Use the index as it is; do not bring it up to date first.",
    )(fn)


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(fn)


# command name → the modules of this package that define it (`bench distill` lives in distill).
_COMMANDS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("ingest", "reindex", "status", "search", "show", "forget"), ("index",)),
    **dict.fromkeys(("build", "run", "runs"), ("build",)),
    **dict.fromkeys(("compress", "promote"), ("compress",)),
    **dict.fromkeys(("distill", "lint"), ("distill",)),
    **dict.fromkeys(("mcp", "install", "uninstall"), ("integrations",)),
    "bench": ("bench", "distill"),
    "hook": ("hook",),
    "keys": ("keys",),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        for module in _COMMANDS.get(cmd_name, ()):
            importlib.import_module(f"ctxmill.cli.{module}")
        return self.commands.get(cmd_name)


@click.group(
    cls=_LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="ctxmill")
def cli() -> None:
    """Manufacture the context for an AI coding agent's task.

    \b
    Quick start on the shipped sample memory:
      ctxmill search --sample "refresh tokens leaked"
      ctxmill show --sample "[topic:auth.md#L1-L20]"
    On your own memory: put topic notes in ./memory/topics/, run `ctxmill ingest`, then search.
    """


def run_ingest(cfg: Config, *, embed: bool, quiet: bool, rebuild: bool = False) -> IngestReport:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ctxmill.ingest import ingest, reindex

    run = reindex if rebuild else ingest
    if quiet or not err.is_terminal:
        return run(cfg, embed=embed, on_wait=lambda m: err.print(f"ctxmill: {m}"))
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total or None)
            bar.update(tasks[stage], completed=done, total=total or None)

        return run(
            cfg, embed=embed, progress=progress, on_wait=lambda m: err.print(f"ctxmill: {m}")
        )


def ensure_index(cfg: Config, no_ingest: bool) -> None:
    """Commands that read the index bring it up to date first, quietly."""
    if no_ingest:
        return
    from ctxmill.ingest import IngestBusy
    from ctxmill.store.base import StoreError

    try:
        report = run_ingest(cfg, embed=True, quiet=True)
    except IngestBusy as exc:
        raise Failure(str(exc)) from exc
    except StoreError as exc:
        raise Failure(str(exc)) from exc
    if report.problems:
        err.print(f"ctxmill: {len(report.problems)} problems while indexing (see `ctxmill ingest`)")


def print_ingest_report(report: IngestReport, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
        return
    for line in report.problems[:50]:
        err.print(f"ctxmill: skipped: {line}", markup=False)
    if len(report.problems) > 50:
        err.print(f"ctxmill: … and {len(report.problems) - 50} more problems")
    mb = report.bytes_read / 1e6
    out.print(
        f"ingested {report.files_read} files ({mb:.1f} MB, {report.files_tailed} tailed), "
        f"{report.files_unchanged} unchanged; {report.sessions} sessions, "
        f"+{report.chunks_added}/-{report.chunks_removed} chunks, {report.vectors_added} vectors, "
        f"{report.secrets_redacted} secrets redacted, {report.headless_skipped} headless runs skipped, "
        f"{len(report.problems)} problems in {report.seconds:.2f}s"
    )


def main() -> None:
    try:
        cli.main(standalone_mode=True)
    except Exception as exc:  # the last line of defence: one line, not a traceback
        if os.environ.get("CTXMILL_DEBUG"):
            raise
        click.echo(f"ctxmill: error: {exc}", err=True)
        sys.exit(1)
