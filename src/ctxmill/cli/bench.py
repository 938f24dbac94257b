"""Benchmark commands: golden-context coverage, LoCoMo retrieval, the HTML report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from ctxmill.cli import Failure, cli, err, json_option, out


@cli.group("bench")
def bench_group() -> None:
    """Measure the contexts ctxmill builds (every run is appended to a results log).

    \b
      ctxmill bench golden bench/golden        claim coverage of built contexts (CI gate)
      ctxmill bench locomo locomo10.json       retrieval recall on LoCoMo against BM25
      ctxmill bench report -o report.html      scores over time, from the log
    """


def _note(message: str) -> None:
    """One line on stderr, never wrapped."""
    click.echo(f"ctxmill: {message}", err=True)


def _log_paths(log: Path | None) -> list[Path]:
    from ctxmill.bench.results import default_log

    return [default_log(), *([log] if log else [])]


@bench_group.command("golden")
@click.argument("golden_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@json_option
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1),
    default=0.8,
    show_default=True,
    help="Exit 1 when the average coverage is below this.",
)
@click.option("--backend", help="LLM backend for the build (default: none, extractive).")
@click.option(
    "--log",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also append the run to this file (always: $CTXMILL_HOME/bench/results.jsonl).",
)
@click.option(
    "--keep",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write each task's built context.md into this folder.",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder holding third-party transcripts that sets name in data.yaml "
    "(default: $CTXMILL_SHARED_DATA, else a shared/data folder beside a parent).",
)
@click.option(
    "--embedder",
    help="Embedder for the sets' indexes (default: the configured one, m2v-minilm).",
)
def golden_cmd(
    golden_dir: Path,
    as_json: bool,
    threshold: float,
    backend: str | None,
    log: Path | None,
    keep: Path | None,
    data: Path | None,
    embedder: str | None,
) -> None:
    """Build every golden task's context and score its claim coverage and precision.

    GOLDEN_DIR holds sets (<set>/memory, optional <set>/code, <set>/tasks/*.yaml), or is one; a
    project folder with a ctxmill.toml and golden/tasks/*.yaml is a set too. Each set is indexed
    in a temporary CTXMILL_HOME. A set whose third-party transcripts (data.yaml) are not here is
    skipped with a one-line message. Exit status 1 when the average coverage of the tasks run is
    below --threshold; 0 when every set was skipped.
    """
    from ctxmill.bench.golden import GoldenError, run_golden
    from ctxmill.bench.results import append, record

    logs = _log_paths(log)

    def progress(task: Any) -> None:
        if not as_json:
            cov = f"{task.coverage:.2f}"
            _note(f"{task.set}/{task.id}: coverage {cov} ({task.seconds:.1f}s)")

    try:
        run = run_golden(
            golden_dir,
            backend=backend,
            data_root=data,
            keep_dir=keep,
            embedder=embedder,
            on_task=progress,
            on_note=_note,
        )
    except GoldenError as exc:
        raise Failure(str(exc)) from exc
    payload = run.as_json()
    settings = {
        "golden_dir": str(golden_dir.resolve()),
        "threshold": threshold,
        "backend": backend,
        "embedder": embedder,
    }
    append(record("golden", settings, payload), *logs)
    avg = run.average_coverage
    if as_json:
        click.echo(json.dumps(payload, indent=2))
    else:
        _print_golden(payload, threshold)
    if avg is None:
        _note("no task was scored (every set skipped); nothing to gate on")
        return
    if avg < threshold:
        _note(f"average coverage {avg:.3f} is below the threshold {threshold:g}")
        raise SystemExit(1)


def _print_golden(payload: dict[str, Any], threshold: float) -> None:
    if not payload["tasks"]:
        return  # every set was skipped, each with its one-line message
    table = Table(title="golden-context benchmark")
    for col in ("set", "task", "coverage", "precision", "tokens", "missed claims"):
        table.add_column(
            col, justify="right" if col in ("coverage", "precision", "tokens") else "left"
        )
    for t in payload["tasks"]:
        missed = ", ".join(c["id"] for c in t["claims"] if not c["covered"])
        prec = "–" if t["precision"] is None else f"{t['precision']:.2f}"
        note = f" ({t['error']})" if t.get("error") else ""
        table.add_row(
            t["set"],
            t["id"],
            f"{t['coverage']:.2f}",
            prec,
            f"{t['tokens']:,}",
            escape(missed + note),
        )
    avg = payload["average_coverage"]
    prec = payload["average_precision"]
    if avg is not None:
        table.add_row(
            "",
            "average",
            f"{avg:.2f}",
            "–" if prec is None else f"{prec:.2f}",
            f"{payload['average_tokens']:,.0f}",
            f"gate {threshold:g}",
        )
    out.print(table)


@bench_group.command("report")
@click.option(
    "--log",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Results log to read (default: $CTXMILL_HOME/bench/results.jsonl).",
)
@click.option(
    "-o",
    "output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("report.html"),
    show_default=True,
    help="Where to write the HTML page.",
)
def report_cmd(log: Path | None, output: Path) -> None:
    """Write a self-contained HTML page: coverage per task over time, tokens against coverage."""
    from ctxmill.bench.report import render_report
    from ctxmill.bench.results import default_log, read

    path = log or default_log()
    if not path.is_file():
        raise Failure(f"no results log at {path}; run `ctxmill bench golden DIR` first")
    entries, skipped = read(path)
    if skipped:
        _note(f"skipped {skipped} unreadable lines in {path}")
    output.write_text(render_report(entries), encoding="utf-8")
    out.print(f"wrote {output} ({len(entries)} runs from {path})", markup=False)


@bench_group.command("locomo")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@json_option
@click.option(
    "--budget",
    type=click.IntRange(50, 1_000_000),
    default=1000,
    show_default=True,
    help="Token budget of each question's context.",
)
@click.option(
    "--limit-conversations",
    type=click.IntRange(1),
    help="Only the first N conversations.",
)
@click.option(
    "--limit-questions",
    type=click.IntRange(1),
    help="Only the first N questions of each conversation (quick runs).",
)
@click.option(
    "--mode",
    type=click.Choice(["auto", "keyword", "semantic", "hybrid"]),
    default="hybrid",
    show_default=True,
    help="Search mode for ctxmill's ranking (recall@k).",
)
@click.option(
    "--context",
    "context_mode",
    type=click.Choice(["build", "pack"]),
    default="build",
    show_default=True,
    help="build: cite what `ctxmill build` puts in the context; pack: ctxmill's ranking packed "
    "into the budget the way the baselines are.",
)
@click.option(
    "--neighbours",
    type=click.FloatRange(0, 10),
    default=0.3,
    show_default=True,
    help="--context pack: weight of adjacent turns' search scores in a turn's score (0: off).",
)
@click.option("--embedder", help="Embedder for the index (default: m2v-minilm).")
@click.option("--backend", help="LLM backend for the build (default: none, extractive).")
@click.option(
    "--log",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also append the summary to this file (always: $CTXMILL_HOME/bench/results.jsonl).",
)
def locomo_cmd(
    file: Path,
    as_json: bool,
    budget: int,
    limit_conversations: int | None,
    limit_questions: int | None,
    mode: str,
    context_mode: str,
    neighbours: float,
    embedder: str | None,
    backend: str | None,
    log: Path | None,
) -> None:
    """Retrieval recall on LoCoMo (locomo10.json layout) against BM25 and recency baselines.

    Every conversation's sessions become dated transcripts in a temporary memory that the real
    ingest indexes; every question with evidence is searched (recall@1/5/10) and built into a
    context under --budget tokens (in-context evidence recall). Category 5 is reported apart.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ctxmill.bench.locomo import LocomoError, LocomoSettings, run_locomo
    from ctxmill.bench.results import append, record

    settings = LocomoSettings(
        budget=budget,
        mode=mode,
        context=context_mode,
        neighbour_weight=neighbours,
        limit_conversations=limit_conversations,
        limit_questions=limit_questions,
        embedder=embedder,
        backend=backend,
    )
    try:
        if as_json or not err.is_terminal:
            run = run_locomo(file, settings)
        else:
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            with Progress(*columns, console=err, transient=True) as bar:
                task = bar.add_task("questions", total=None)
                run = run_locomo(
                    file,
                    settings,
                    progress=lambda stage, done, total: bar.update(
                        task, completed=done, total=total
                    ),
                )
    except LocomoError as exc:
        raise Failure(str(exc)) from exc
    payload = run.as_json()
    entry = record(
        "locomo",
        {**settings.as_json(), "file": str(file.resolve())},
        {
            "summary": payload["summary"],
            "evidence": payload["evidence"],
            "timings": payload["timings"],
        },
    )
    append(entry, *_log_paths(log))
    if as_json:
        click.echo(json.dumps(payload, indent=2))
        return
    _print_locomo(payload)


def _print_locomo(payload: dict[str, Any]) -> None:
    summary = payload["summary"]
    table = Table(
        title=f"LoCoMo, {summary['questions']} questions (categories 1-4), "
        f"budget {summary['budget']} tokens"
    )
    table.add_column("system")
    table.add_column("category")
    for col in ("questions", "R@1", "R@5", "R@10", "in context"):
        table.add_column(col, justify="right")

    def fmt(x: float | None) -> str:
        return "–" if x is None else f"{x:.3f}"

    for name in ("ctxmill", "bm25", "recency"):
        fig = summary[name]
        rows = [("all", fig), *[(f"{c} {_category(c)}", f) for c, f in fig["per_category"].items()]]
        if fig.get("category_5"):
            rows.append(("5 adversarial", fig["category_5"]))
        for label, f in rows:
            table.add_row(
                name,
                label,
                str(f["questions"]),
                fmt(f["recall@1"]),
                fmt(f["recall@5"]),
                fmt(f["recall@10"]),
                fmt(f["in_context_recall"]),
            )
    out.print(table)
    ev = payload["evidence"]
    out.print(
        f"in-context recall vs BM25: {fmt(summary['ratio_vs_bm25'])}x "
        f"(ahead on every category: {summary['ahead_of_bm25_on_every_category']}); "
        f"evidence ids normalised {ev['normalised']}, split {ev['split']}, dropped "
        f"{ev['dropped_malformed']} malformed and {ev['dropped_unknown']} unknown; "
        f"{ev['questions_without_evidence']} questions without evidence skipped",
        markup=False,
    )


def _category(c: str) -> str:
    from ctxmill.bench.locomo import CATEGORY_NAMES

    return CATEGORY_NAMES.get(int(c), "")
