"""Task commands: build (context.md for a brief), run (a fresh agent on it), runs (the record)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from ctxmill.cli import (
    Failure,
    cli,
    ensure_index,
    err,
    ingest_option,
    json_option,
    memory_options,
    out,
)
from ctxmill.config import Config, home_dir
from ctxmill.model import parse_moment
from ctxmill.pipeline import QUERIES, BuildError, BuildResult, build_context
from ctxmill.run import RunError, describe, list_runs, run_agent, split_command
from ctxmill.store.base import StoreError


def _as_of(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_moment(value)
    except ValueError as exc:
        raise click.BadParameter(
            f"{value!r} is not an ISO-8601 date or time (e.g. 2026-04-01 or 2026-04-01T09:00:00Z)",
            param_hint="--as-of",
        ) from exc


def build_options(fn: Any) -> Any:
    """Options shared by build and run (run builds the context unless given one)."""
    for option in reversed(
        [
            click.option(
                "--as-of",
                metavar="ISO",
                help="Build as of this moment: nothing dated later is visible. Default: now.",
            ),
            click.option(
                "--budget",
                type=click.IntRange(1, None),
                help="Token budget for context.md. Default: [build] budget in ctxmill.toml, else 50000.",
            ),
            click.option(
                "--backend",
                metavar="SPEC",
                help="LLM that rewrites excerpts into verified claims: fake, anthropic[:MODEL], "
                "openai[:MODEL], claude-cli, or none. Default: [llm] backend, else none (extractive).",
            ),
            click.option(
                "--keep-unverified",
                is_flag=True,
                help="Keep model claims that fail verification, marked (unverified), instead of dropping them.",
            ),
        ]
    ):
        fn = option(fn)
    return fn


def _build(
    cfg: Config,
    brief: str,
    *,
    no_ingest: bool,
    as_of: str | None,
    budget: int | None,
    backend: str | None,
    keep_unverified: bool,
    output: Path | None,
) -> BuildResult:
    moment = _as_of(as_of)
    ensure_index(cfg, no_ingest)
    try:
        return build_context(
            cfg,
            brief,
            as_of=moment,
            budget=budget,
            backend=backend,
            keep_unverified=keep_unverified,
            output=output,
        )
    except (BuildError, StoreError) as exc:
        raise Failure(str(exc)) from exc


@cli.command("build")
@click.argument("brief")
@memory_options
@ingest_option
@json_option
@build_options
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("context.md"),
    show_default=True,
    help="Where to write context.md; '-' prints it to stdout.",
)
@click.option(
    "--explain",
    is_flag=True,
    help="Also print the candidate sessions with the queries that found them, and per-stage times.",
)
def build_cmd(
    cfg: Config,
    brief: str,
    no_ingest: bool,
    as_json: bool,
    as_of: str | None,
    budget: int | None,
    backend: str | None,
    keep_unverified: bool,
    output: Path,
    explain: bool,
) -> None:
    """Write context.md for the task BRIEF, under a token budget, every claim tagged.

    \b
    Five queries pick candidate sessions (time window, topic overlap, file-path overlap, keyword,
    semantic); three workers read the topic notes, the candidates' summaries and the code; the
    flagged sessions' transcripts are re-read; then the sections are assembled with the layers'
    precedence applied (topics win; a transcript decides over its summary):

    \b
      # Context for: BRIEF
      ## Recent state           what the topic notes say is true now
      ## Relevant history       decisions, failed attempts, what happened (summaries, transcripts)
      ## Unresolved threads     open questions, and where the layers disagree
      ## Files likely to touch  files the brief names or matches, and every consumer to check
      ## Citations              every tag used, resolved to where it points

    \b
    Examples:
      ctxmill build "Migrate session auth to OIDC"
      ctxmill build --sample "Migrate session auth to OIDC" --as-of 2026-07-01 --explain
      ctxmill build "why did we drop JWTs?" --budget 8000 -o - | less
    """
    to_stdout = str(output) == "-"
    result = _build(
        cfg,
        brief,
        no_ingest=no_ingest,
        as_of=as_of,
        budget=budget,
        backend=backend,
        keep_unverified=keep_unverified,
        output=None if to_stdout else output,
    )
    for note in result.notes:
        err.print(f"ctxmill: {note}", markup=False, highlight=False)
    if as_json:
        data = result.as_json()
        if to_stdout:
            data["text"] = result.text
        click.echo(json.dumps(data, indent=2))
        return
    if to_stdout:
        click.echo(result.text, nl=False)
    report = err if to_stdout else out
    if explain:
        _print_explain(result, report)
    where = "stdout" if to_stdout else str(result.path)
    used = ", ".join(f"{k} {v}" for k, v in result.sections.items())
    report.print(
        f"wrote {where}: {result.tokens} tokens of {result.record['budget']} "
        f"({used}); {len(result.citations)} citations, {len(result.candidates)} candidate "
        f"sessions, {len(result.flagged)} re-read, {result.timings.get('total', 0.0):.2f}s",
        markup=False,
        highlight=False,
    )


def _print_explain(result: BuildResult, console: Any) -> None:
    table = Table(title="candidate sessions, and their rank in each query that found them")
    table.add_column("session", no_wrap=True)
    table.add_column("started", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("re-read", no_wrap=True)
    table.add_column("found by", overflow="fold")
    flagged = set(result.flagged)
    for cand in result.candidates:
        ranks = cand["ranks"]
        table.add_row(
            escape(cand["session"][:8]),
            (cand["started"] or "")[:10],
            f"{cand['score']:.3f}",
            "yes" if cand["session"] in flagged else "",
            " ".join(f"{q}:{ranks[q]}" for q in QUERIES if q in ranks),
        )
    console.print(table)
    times = Table(title="stage times (s)")
    times.add_column("stage")
    times.add_column("seconds", justify="right")
    for stage, seconds in result.timings.items():
        times.add_row(stage, f"{seconds:.3f}")
    console.print(times)


@cli.command("run")
@click.argument("brief", required=False, default="")
@memory_options
@ingest_option
@build_options
@click.option(
    "--context",
    "context_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Use this context.md instead of building one.",
)
@click.option(
    "--prompt",
    "prompt_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Hand over this self-contained prompt (e.g. from `ctxmill distill`) instead of a context.",
)
@click.option(
    "--agent",
    metavar="CMD",
    help="Agent command to start, shell-quoted. Default: [run] command in ctxmill.toml, else 'claude -p'.",
)
@click.option("--dry-run", is_flag=True, help="Print the exact command and input; start nothing.")
def run_cmd(
    cfg: Config,
    brief: str,
    no_ingest: bool,
    as_of: str | None,
    budget: int | None,
    backend: str | None,
    keep_unverified: bool,
    context_file: Path | None,
    prompt_file: Path | None,
    agent: str | None,
    dry_run: bool,
) -> None:
    """Start a fresh agent whose only input is BRIEF and its context.md.

    \b
    Without --context or --prompt the context is built first (as `ctxmill build` would).
    How it is handed over:
      claude (default 'claude -p')  --append-system-prompt-file CONTEXT, BRIEF as the prompt
      any other command             BRIEF, a blank line, then the context, on stdin
      --prompt FILE                 the prompt (after BRIEF, if given) on stdin, for any command
    Everything handed over is redacted first and kept under $CTXMILL_HOME/runs/ID/; the agent's
    output streams through; the run is recorded in $CTXMILL_HOME/runs.jsonl (see `ctxmill runs`).
    The exit status is the agent's.

    \b
    Examples:
      ctxmill run "Migrate session auth to OIDC" --dry-run
      ctxmill run "Fix the flaky webhook test" --agent "codex exec -"
      ctxmill run --prompt plan.md
    """
    if context_file and prompt_file:
        raise click.UsageError("give --context or --prompt, not both")
    if not brief.strip() and not prompt_file:
        raise click.UsageError("give a BRIEF (or --prompt FILE)")
    try:
        command = split_command(agent) if agent else list(cfg.agent_command)
    except RunError as exc:
        raise click.UsageError(str(exc)) from exc
    context_text = prompt_text = None
    notes: list[str] = []
    if prompt_file:
        prompt_text = prompt_file.read_text(encoding="utf-8", errors="replace")
    elif context_file:
        context_text = context_file.read_text(encoding="utf-8", errors="replace")
    else:
        result = _build(
            cfg,
            brief,
            no_ingest=no_ingest,
            as_of=as_of,
            budget=budget,
            backend=backend,
            keep_unverified=keep_unverified,
            output=None,
        )
        notes = result.notes
        for note in notes:
            err.print(f"ctxmill: {note}", markup=False, highlight=False)
        err.print(
            f"ctxmill: built the context: {result.tokens} tokens, {len(result.citations)} citations",
            markup=False,
            highlight=False,
        )
        context_text = result.text
    try:
        record, invocation = run_agent(
            cfg,
            brief,
            context_text=context_text,
            prompt_text=prompt_text,
            command=command,
            dry_run=dry_run,
            write=lambda text: click.echo(text, nl=False),
            notes=notes,
        )
    except RunError as exc:
        raise Failure(str(exc)) from exc
    if dry_run:
        click.echo(f"command: {describe(invocation)}")
        if invocation.context_path:
            click.echo(f"file: {invocation.context_path} (sha256 {invocation.context_sha256})")
        if invocation.stdin is not None:
            click.echo("stdin:")
            click.echo(invocation.stdin, nl=not invocation.stdin.endswith("\n"))
        else:
            click.echo("stdin: (none)")
        return
    err.print(
        f"ctxmill: run {record.id}: exit {record.exit_status} in {record.duration_s:.1f}s "
        "(recorded; see `ctxmill runs`)",
        markup=False,
        highlight=False,
    )
    if record.exit_status:
        raise click.exceptions.Exit(record.exit_status)


@cli.command("runs")
@json_option
def runs_cmd(as_json: bool) -> None:
    """List the recorded agent runs (from $CTXMILL_HOME/runs.jsonl), oldest first."""
    runs = list_runs(home_dir())
    if as_json:
        click.echo(json.dumps(runs, indent=2))
        return
    if not runs:
        out.print("no runs recorded yet")
        return
    table = Table()
    table.add_column("id", no_wrap=True)
    for column in ("started", "exit", "seconds", "command", "brief"):
        table.add_column(column, overflow="fold")
    for run in runs:
        command = run.get("command") or []
        table.add_row(
            escape(str(run.get("id", ""))),
            escape(str(run.get("started", ""))),
            escape(str(run.get("exit_status", ""))),
            f"{float(run.get('duration_s') or 0):.1f}",
            escape(" ".join(str(c) for c in command[:2])),
            escape(str(run.get("brief", ""))[:60]),
        )
    out.print(table)
