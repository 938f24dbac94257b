"""Compression commands: compress and promote."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ctxmill.cli import Failure, cli, err, json_option, memory_options, out
from ctxmill.compress import DEFAULT_WINDOW
from ctxmill.config import Config


def _runner(
    cfg: Config,
    backend: str | None,
    model: str | None,
    base_url: str | None,
    extractive: bool,
    purpose: str,
) -> Any:
    """The LLM runner the options (or the ``[llm]`` settings) ask for; None for no model."""
    if extractive:
        return None
    from ctxmill.llm import LLMError, runner_for

    try:
        return runner_for(cfg.llm, backend, model=model, base_url=base_url, purpose=purpose)
    except LLMError as exc:
        raise Failure(str(exc)) from exc


def _llm_options(fn: Any) -> Any:
    fn = click.option(
        "--extractive", is_flag=True, help="Use no model even when [llm] configures one."
    )(fn)
    fn = click.option("--base-url", help="Base URL of an OpenAI-compatible server.")(fn)
    fn = click.option("--model", help="Model name for the backend.")(fn)
    fn = click.option(
        "--backend",
        metavar="SPEC",
        help="LLM backend name[:model] (anthropic, openai, claude-cli, fake). "
        "Default: [llm] backend in the config; none means extractive.",
    )(fn)
    return fn


@cli.command("compress")
@memory_options
@json_option
@click.option(
    "--all",
    "all_sessions",
    is_flag=True,
    help="Re-check every closed session by sha256, not just the changed ones.",
)
@click.option("--since", metavar="ISO8601", help="Only sessions active at or after this time.")
@click.option(
    "--session",
    "session_ids",
    multiple=True,
    metavar="ID",
    help="Only this session (repeatable); closed or not.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print what would be compressed, with estimated input tokens and cost.",
)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Sessions compressed in parallel.",
)
@_llm_options
@click.option(
    "--window",
    type=click.IntRange(500),
    default=DEFAULT_WINDOW,
    show_default=True,
    help="Transcript tokens per model call; longer sessions are split and merged.",
)
@click.option(
    "--pace",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="Minimum seconds between model requests (rate-limited backends).",
)
@click.option(
    "--quiet-minutes",
    type=click.IntRange(0),
    help="Minutes without change after which a session counts as closed (default: [compress] quiet_minutes, 30).",
)
@click.option(
    "--redo",
    is_flag=True,
    help="Write a new summary even when the transcript is unchanged (e.g. to upgrade to a model summary).",
)
@click.option(
    "--from-queue",
    is_flag=True,
    help="Only the sessions queued by `ctxmill hook session-end` (what the background worker runs).",
)
@click.option(
    "--no-ingest",
    is_flag=True,
    help="Use the index as it is; do not bring it up to date first or index the new summaries.",
)
@click.option("--no-embed", is_flag=True, help="Index the new summaries by keyword only.")
def compress_cmd(
    cfg: Config,
    as_json: bool,
    all_sessions: bool,
    since: str | None,
    session_ids: tuple[str, ...],
    dry_run: bool,
    jobs: int,
    backend: str | None,
    model: str | None,
    base_url: str | None,
    extractive: bool,
    window: int,
    pace: float,
    quiet_minutes: int | None,
    redo: bool,
    from_queue: bool,
    no_ingest: bool,
    no_embed: bool,
) -> None:
    """Write one summary per closed session to MEMORY/sessions/compressed/YYYY/<id>.md.

    Summaries are append-only: a session whose transcript grew gets a new file (<id>.2.md, …)
    with `supersedes:` naming the old one. Without a model the summary is extractive; with
    --backend (or [llm] in the config) the model writes it and a validator checks it. Sessions
    that have not changed since their last summary are skipped; an interrupted pass resumes.
    """
    from ctxmill import api
    from ctxmill.hook import read_queue

    if quiet_minutes is not None:
        cfg = replace(cfg, quiet_minutes=quiet_minutes)
    # Built for a dry run too: it prices the calls (constructing a backend sends nothing).
    runner = _runner(cfg, backend, model, base_url, extractive, "compress")
    kwargs: dict[str, Any] = {
        "backend": "none" if runner is None else runner,
        "jobs": jobs,
        "session_ids": session_ids,
        "since": since,
        "all_sessions": all_sessions,
        "redo": redo,
        "dry_run": dry_run,
        "from_queue": from_queue,
        "refresh": not no_ingest,
        "embed": not no_embed,
        "window": window,
        "pace_s": pace,
    }
    try:
        with _progress(as_json or from_queue) as progress:
            report = api.compress(cfg=cfg, progress=progress, **kwargs)
            # The background worker keeps going while hooks keep queueing sessions.
            rounds = 1
            while (
                from_queue
                and report.written
                and rounds < 5
                and read_queue(cfg.home, cfg.memory_root)
            ):
                more = api.compress(cfg=cfg, progress=progress, **kwargs)
                report.results += more.results
                rounds += 1
    except api.CtxmillError as exc:
        raise Failure(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    else:
        _print_report(report, cfg)
    if report.of("failed"):
        sys.exit(1)


def _progress(quiet: bool) -> Any:
    """A progress bar on a terminal; otherwise a no-op context yielding None."""
    import contextlib

    if quiet or not err.is_terminal:
        return contextlib.nullcontext(None)

    @contextlib.contextmanager
    def bar() -> Any:
        columns = (TextColumn("compress"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=err, transient=True) as p:
            task = p.add_task("compress", total=None)

            def update(stage: str, done: int, total: int) -> None:
                p.update(task, completed=done, total=total or None)

            yield update

    return bar()


def _print_report(report: Any, cfg: Config) -> None:
    # click.echo, not the rich console: one line per session however wide the terminal.
    for r in report.results:
        if r.status in ("skipped", "failed"):
            click.echo(f"ctxmill: {r.status} {r.session_id}: {r.reason}", err=True)
    for problem in report.problems[:20]:
        click.echo(f"ctxmill: {problem}", err=True)
    if report.dry_run:
        planned = report.of("planned")
        total_in = sum(r.input_tokens or 0 for r in planned)
        costs = [r.cost_usd for r in planned if r.cost_usd is not None]
        for r in planned:
            cost = f"  ~${r.cost_usd:.4f}" if r.cost_usd is not None else ""
            sub = f"  +{r.subagents} subagents" if r.subagents else ""
            out.print(
                f"{r.session_id}  {r.reason}  ~{r.input_tokens:,} input tokens{cost}{sub}",
                markup=False,
            )
        price = (
            f", about ${sum(costs):.4f}"
            if costs
            else (", no model cost" if not report.llm else ", cost unknown for this backend")
        )
        out.print(
            f"would compress {len(planned)} sessions (~{total_in:,} input tokens{price}); "
            f"{len(report.of('unchanged'))} unchanged, {report.not_closed} not yet closed",
            markup=False,
        )
        return
    for r in report.written:
        rel = Path(r.path).relative_to(cfg.compressed_dir) if r.path else r.path
        note = f", supersedes {r.supersedes}" if r.supersedes else ""
        out.print(f"wrote {escape(str(rel))} ({r.tokens} tokens{escape(note)})")
    llm = ""
    if report.llm:
        llm = f"; model: {report.llm['ok']} calls, {report.llm['tokens']:,} tokens, ${report.llm['cost_usd']:.4f}"
    out.print(
        f"compressed {len(report.written)} sessions: {len(report.of('unchanged'))} unchanged, "
        f"{len(report.of('skipped'))} skipped, {len(report.of('failed'))} failed, "
        f"{report.not_closed} not yet closed, {report.subagents} subagent sessions folded into "
        f"their parents{llm} in {report.seconds:.2f}s",
        markup=False,
    )


@cli.command("promote")
@memory_options
@json_option
@click.option(
    "--session",
    "session_ids",
    multiple=True,
    metavar="ID",
    help="Only this session's newest summary (repeatable).",
)
@click.option(
    "--limit",
    type=click.IntRange(1),
    default=20,
    show_default=True,
    help="Read the newest N summaries.",
)
@_llm_options
@click.option(
    "--apply", "do_apply", is_flag=True, help="Write the proposed edits to the topic files."
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write the diff to FILE.",
)
def promote_cmd(
    cfg: Config,
    as_json: bool,
    session_ids: tuple[str, ...],
    limit: int,
    backend: str | None,
    model: str | None,
    base_url: str | None,
    extractive: bool,
    do_apply: bool,
    output: Path | None,
) -> None:
    """Propose edits to topic files from compressed summaries, as a unified diff.

    Decisions, conventions and corrections found in the summaries are proposed as lines in the
    topic they belong to, each ending with `<!-- [session:ID] -->`. Review the diff, then run
    again with --apply to write it. Topics never flow back into summaries.
    """
    from ctxmill.promote import apply, propose

    runner = _runner(cfg, backend, model, base_url, extractive, "promote")
    plan = propose(cfg, session_ids=list(session_ids) or None, limit=limit, runner=runner)
    diff = plan.diff()
    if output is not None:
        output.write_text(diff, encoding="utf-8")
    written = apply(plan) if do_apply else []
    if as_json:
        data = plan.as_json()
        data["applied"] = [str(p) for p in written]
        click.echo(json.dumps(data, indent=2))
        return
    if diff:
        click.echo(diff, nl=False)
    for reason in plan.dropped:
        click.echo(f"ctxmill: dropped: {reason}", err=True)
    click.echo(
        f"ctxmill: {len(plan.proposals)} proposals from {plan.summaries_read} summaries; "
        f"{len(plan.unplaced)} matched no topic file, {len(plan.older)} are older than the topic "
        "they concern (curated since)",
        err=True,
    )
    if written:
        click.echo(f"ctxmill: applied to {', '.join(str(p) for p in written)}", err=True)
    elif plan.proposals and not do_apply:
        click.echo("ctxmill: review the diff, then run again with --apply to write it", err=True)
