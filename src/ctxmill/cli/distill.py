"""Distillation commands: distill (a session into an implementation prompt, or a long prompt into
a short one), lint (is a prompt, context.md or summary complete?), bench distill (retention)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from ctxmill import api
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
from ctxmill.cli.bench import bench_group
from ctxmill.config import Config
from ctxmill.distill import (
    CompressedPrompt,
    Distilled,
    DistillError,
    append_context,
    compress_prompt,
)
from ctxmill.lint import KINDS, LintError, TagResolver, lint_file


def _write(text: str, output: Path | None) -> None:
    if output is None or str(output) == "-":
        click.echo(text, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")


def _runner(cfg: Config, spec: str | None) -> Any:
    """The model runner for --backend (or the [llm] settings); None means extractive."""
    from ctxmill.llm import LLMError, runner_for

    try:
        return runner_for(cfg.llm, spec, purpose="distill")
    except LLMError as exc:
        raise click.UsageError(str(exc)) from exc


@cli.command("distill")
@click.argument("source", required=False)
@memory_options
@ingest_option
@json_option
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the prompt here instead of printing it.",
)
@click.option("--brief", help="Narrow the prompt to this part of the plan.")
@click.option(
    "--with-context",
    is_flag=True,
    help="Append a `ctxmill build` context for the same brief (or the session's goal).",
)
@click.option(
    "--backend",
    metavar="SPEC",
    help="LLM that writes the parts, each claim checked against the turns it cites: fake, "
    "anthropic[:MODEL], openai[:MODEL], claude-cli, or none. Default: [llm] backend, else none.",
)
@click.option(
    "--prompt",
    "prompt_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Compress this long prompt (a policy, a product brief, a CLAUDE.md) instead; needs --budget.",
)
@click.option(
    "--budget",
    type=click.IntRange(1, None),
    help="With --prompt: the token budget the compressed prompt must fit.",
)
def distill_cmd(
    cfg: Config,
    source: str | None,
    no_ingest: bool,
    as_json: bool,
    output: Path | None,
    brief: str | None,
    with_context: bool,
    backend: str | None,
    prompt_file: Path | None,
    budget: int | None,
) -> None:
    """Write a self-contained implementation prompt from a planning session.

    \b
    SOURCE is a transcript (Claude Code, Codex, Gemini CLI, aider, OpenCode, SpecStory), an indexed session id (or a unique
    prefix of one) or a markdown file. The prompt has fixed parts:
      ## Goal / Context / Decisions and rejected alternatives / Files and interfaces /
         Phases (phase | goal | deliverables | exit criteria) / Risks and rollback /
         Test commands / Definition of done
    Every line carries the tag of the turn it came from; what the session never settled is a
    `TODO:` line. Check the result with `ctxmill lint`, then `ctxmill run --prompt FILE`.

    \b
    With --prompt LONG.md --budget N it compresses a long prompt instead: the sentences and
    bullets that read most like rules and facts are kept, duplicates and filler dropped.
    """
    if prompt_file is not None:
        if source:
            raise click.UsageError("give SOURCE or --prompt, not both")
        if budget is None:
            raise click.UsageError("--prompt needs --budget N (the tokens to fit)")
        if brief or with_context or backend:
            raise click.UsageError("--brief, --with-context and --backend apply to a SOURCE only")
        _compress(prompt_file, budget, output, as_json)
        return
    if not source:
        raise click.UsageError(
            "give a SOURCE (transcript, session id or markdown) or --prompt FILE"
        )
    if budget is not None:
        raise click.UsageError("--budget applies to --prompt only")
    runner = _runner(cfg, backend)
    if not Path(source).expanduser().is_file():
        ensure_index(cfg, no_ingest)  # SOURCE is a session id: look it up in a current index
    try:
        result = api.distill(
            source,
            brief=brief,
            backend="none" if runner is None else runner,
            cfg=cfg,
            refresh=False,
        )
    except api.CtxmillError as exc:
        raise Failure(str(exc)) from exc
    if with_context:
        _with_context(cfg, result, brief or _goal_of(result), no_ingest)
    written = output is not None and str(output) != "-"
    if written or not as_json:
        _write(result.text, output)
    _report(result, output if written else None, as_json)


def _goal_of(result: Distilled) -> str:
    """The brief for --with-context when none was given: the first line of the Goal part."""
    lines = result.text.split("## Goal", 1)[-1].strip().splitlines()
    first = next((ln for ln in lines if ln.strip()), "")
    return first.split(" [", 1)[0].strip()[:300]


def _with_context(cfg: Config, result: Distilled, brief: str, no_ingest: bool) -> None:
    try:
        from ctxmill.pipeline import BuildError, build_context
    except ImportError as exc:  # a slim install without the pipeline's dependencies
        result.notes.append(f"--with-context skipped: the build pipeline is unavailable ({exc})")
        return
    from ctxmill.redact import redact
    from ctxmill.tokens import count_tokens

    try:
        ensure_index(cfg, no_ingest)
        built = build_context(cfg, brief)
    except (BuildError, Failure) as exc:
        result.notes.append(f"--with-context skipped: {exc}")
        return
    text, secrets = redact(append_context(result.text, built.text, brief))
    result.text = text
    result.secrets_redacted += secrets
    result.tokens = count_tokens(text)
    result.notes.append(f"appended a {built.tokens}-token context for “{brief}”")


def _report(result: Distilled, output: Path | None, as_json: bool) -> None:
    written = output is not None
    if as_json:
        payload = result.as_json()
        payload["output"] = str(output) if written else None
        if not written:
            payload["text"] = result.text
        click.echo(json.dumps(payload, indent=2))
        return
    for note in result.notes:
        click.echo(f"ctxmill: {note}", err=True)
    for claim in result.dropped[:20]:
        click.echo(f"ctxmill: dropped ({claim.reason}): {claim.text}", err=True)
    where = f"wrote {output}" if written else "distilled"
    click.echo(
        f"ctxmill: {where}: {result.tokens} tokens, {len(result.todos)} TODOs "
        f"(check with `ctxmill lint{' --allow-todo' if result.todos else ''} FILE`)",
        err=True,
    )


def _compress(prompt_file: Path, budget: int, output: Path | None, as_json: bool) -> None:
    try:
        text = prompt_file.read_text(encoding="utf-8")
        result = compress_prompt(text, budget)
    except (OSError, UnicodeDecodeError) as exc:
        raise Failure(f"{prompt_file}: cannot read: {exc}") from exc
    except DistillError as exc:
        raise Failure(str(exc)) from exc
    written = output is not None and str(output) != "-"
    if written or not as_json:
        _write(result.text, output)
    if as_json:
        payload = result.as_json()
        payload["output"] = str(output) if written else None
        if not written:
            payload["text"] = result.text
        click.echo(json.dumps(payload, indent=2))
        return
    _compress_report(result)


def _compress_report(result: CompressedPrompt) -> None:
    counts = result.as_json()["dropped_counts"]
    dropped = ", ".join(f"{n} {why}" for why, n in sorted(counts.items())) or "nothing"
    click.echo(
        f"ctxmill: {result.tokens_before} → {result.tokens_after} tokens (budget {result.budget}); "
        f"kept {len(result.kept)} units, dropped {dropped} (--json lists them)",
        err=True,
    )
    if not result.kept:
        click.echo("ctxmill: nothing fits the budget; raise --budget", err=True)


@cli.command("lint")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@memory_options
@ingest_option
@json_option
@click.option("--allow-todo", is_flag=True, help="Accept `TODO:` lines (still listed).")
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    help="What FILE is; detected from its shape when not given.",
)
def lint_cmd(
    cfg: Config,
    file: Path,
    no_ingest: bool,
    as_json: bool,
    allow_todo: bool,
    kind: str | None,
) -> None:
    """Check an implementation prompt, a context.md or a compressed summary for completeness.

    \b
    prompt   the eight parts present and non-empty; every phase row has deliverables and exit
             criteria; paths in Files exist under --code or are marked (new); no TODO: left
    context  the generation record, '# Context for:' and the five sections in order; every tag
             resolves (files, then the index) and is listed under Citations; tokens <= budget
    summary  front matter schema, the six headings in order, 500-1,500 tokens (cap 2,000)
    One line per problem, FILE:LINE: problem; exit status 1 when there is any.
    """
    resolver = TagResolver(cfg, before_index=lambda: ensure_index(cfg, no_ingest))
    try:
        result = lint_file(
            file,
            kind=kind,
            allow_todo=allow_todo,
            code_root=cfg.code_root,
            resolver=resolver,
        )
    except LintError as exc:
        raise click.UsageError(str(exc)) from exc
    finally:
        resolver.close()
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2))
    else:
        for line in result.lines():
            click.echo(line)
        if result.ok:
            extra = f", {len(result.todos)} TODOs allowed" if result.todos else ""
            click.echo(f"ctxmill: {file}: {result.kind} ok{extra}", err=True)
    if not result.ok:
        raise SystemExit(1)


@bench_group.command("distill")
@click.argument(
    "bench_dir",
    required=False,
    type=click.Path(path_type=Path, exists=True, file_okay=False),
)
@json_option
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1),
    default=0.8,
    show_default=True,
    help="Exit 1 when the average retention is below this.",
)
def bench_distill_cmd(bench_dir: Path | None, as_json: bool, threshold: float) -> None:
    """Measure how many must-keep facts `distill --prompt` retains under each prompt's budget.

    BENCH_DIR (default: bench/distill) holds *.yaml files: `prompt: FILE`, `budget: N`,
    `facts: [{id, keywords: [...]}]`. A fact is retained when all its keywords are in the
    compressed prompt. A head-truncation baseline to the same budget is scored alongside.
    The run is appended to $CTXMILL_HOME/bench/results.jsonl.
    """
    from ctxmill.bench.distill import BenchError, run_bench
    from ctxmill.bench.results import append, default_log, record

    directory = bench_dir or Path("bench/distill")
    if not directory.is_dir():
        raise click.UsageError(f"{directory}: no such folder (pass BENCH_DIR)")
    try:
        run = run_bench(directory)
    except BenchError as exc:
        raise Failure(str(exc)) from exc
    payload = run.as_json()
    settings = {"bench_dir": str(directory.resolve()), "threshold": threshold}
    append(record("distill", settings, payload), default_log())
    if as_json:
        click.echo(json.dumps(payload, indent=2))
    else:
        table = Table(
            "prompt", "budget", "tokens", "retained", "retention", "truncation", "missing"
        )
        for p in payload["prompts"]:
            table.add_row(
                escape(p["id"]),
                str(p["budget"]),
                f"{p['tokens_before']} → {p['tokens_after']}",
                f"{p['retained']}/{p['facts']}",
                f"{p['retention']:.2f}",
                f"{p['baseline_retention']:.2f}",
                escape(", ".join(p["missing"]) or "-"),
            )
        out.print(table)
        out.print(
            f"average retention {payload['average_retention']:.3f} "
            f"(head truncation to the same budgets: {payload['average_baseline_retention']:.3f})"
        )
    if payload["average_retention"] < threshold:
        err.print(
            f"ctxmill: average retention {payload['average_retention']:.3f} is below the "
            f"threshold {threshold:g}"
        )
        raise SystemExit(1)
