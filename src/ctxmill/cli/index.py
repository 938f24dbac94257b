"""Index commands: ingest, reindex, status, search, show, forget."""

from __future__ import annotations

import json
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
    print_ingest_report,
    run_ingest,
)
from ctxmill.config import Config
from ctxmill.ingest import IngestBusy, forget
from ctxmill.model import Layer, Tag
from ctxmill.search import MODES
from ctxmill.store import open_store
from ctxmill.store.base import StoreError


@cli.command("ingest")
@memory_options
@json_option
@click.option("--no-embed", is_flag=True, help="Keyword index only; skip computing vectors.")
def ingest_cmd(cfg: Config, as_json: bool, no_embed: bool) -> None:
    """Read every configured source into the index, reading only what changed.

    Sources: topic notes (MEMORY/topics/**/*.md), compressed summaries
    (MEMORY/sessions/compressed/), transcripts kept in MEMORY/sessions/raw/, agents' own folders
    (~/.claude/projects, $CLAUDE_CONFIG_DIR, ~/.codex/sessions, ~/.gemini/tmp, OpenCode's database,
    the code root's .aider.chat.history.md; off with --no-discover) and the code root's git-tracked
    files. Formats: Claude Code, Codex, Gemini CLI, aider, OpenCode, SpecStory.
    CTXMILL_INGEST_WORKERS=N sets the worker processes of a large ingest (0: none). Transcripts read from an agent's folder are archived, redacted
    and gzipped, under MEMORY/sessions/raw/ so they survive the agent's own clean-up. Secrets are
    redacted before anything is written.
    """
    try:
        report = run_ingest(cfg, embed=not no_embed, quiet=as_json)
    except (IngestBusy, StoreError) as exc:
        raise Failure(str(exc)) from exc
    print_ingest_report(report, as_json)


@cli.command("reindex")
@memory_options
@json_option
@click.option("--no-embed", is_flag=True, help="Keyword index only; skip computing vectors.")
def reindex_cmd(cfg: Config, as_json: bool, no_embed: bool) -> None:
    """Rebuild the index from the sources (the raw archive stands in for deleted originals)."""
    try:
        report = run_ingest(cfg, embed=not no_embed, quiet=as_json, rebuild=True)
    except (IngestBusy, StoreError) as exc:
        raise Failure(str(exc)) from exc
    print_ingest_report(report, as_json)


@cli.command("status")
@memory_options
@json_option
def status_cmd(cfg: Config, as_json: bool) -> None:
    """Show the sources, counts per layer, index size and embedding model."""
    info: dict[str, Any] = {
        "memory_root": str(cfg.memory_root),
        "code_root": str(cfg.code_root) if cfg.code_root else None,
        "agent_dirs": [f"{agent}: {path}" for agent, path in cfg.agent_dirs()],
        "home": str(cfg.home),
    }
    if cfg.index_path.exists():
        try:
            store = open_store(cfg)
            info.update(store.stats())
            store.close()
        except StoreError as exc:
            raise Failure(str(exc)) from exc
    else:
        info["index"] = None
    try:
        from ctxmill.llm.runner import usage_summary

        info["llm_usage"] = usage_summary()
    except ImportError:
        pass
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    table = Table(show_header=False, box=None)
    for key, value in info.items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict | list) else str(value))
    out.print(table)


@cli.command("search")
@click.argument("query")
@memory_options
@ingest_option
@json_option
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default="auto",
    show_default=True,
    help="keyword (FTS5/BM25), semantic (vectors), hybrid (reciprocal rank fusion), auto (dated queries → keyword in that period, others → hybrid).",
)
@click.option(
    "-k", "k", type=click.IntRange(1, 1000), default=10, show_default=True, help="Number of hits."
)
@click.option(
    "--layer",
    type=click.Choice([v.value for v in Layer]),
    multiple=True,
    help="Only these layers (repeatable).",
)
@click.option("--since", help="Only hits dated on or after this ISO date.")
@click.option("--until", help="Only hits dated before this ISO date.")
@click.option("--project", help="Only this project (the basename of the session's working dir).")
@click.option("--session", help="Only this session id.")
def search_cmd(
    cfg: Config,
    query: str,
    no_ingest: bool,
    as_json: bool,
    mode: str,
    k: int,
    layer: tuple[str, ...],
    since: str | None,
    until: str | None,
    project: str | None,
    session: str | None,
) -> None:
    """Search the memory; every hit shows its citation tag, date, score and a snippet."""
    ensure_index(cfg, no_ingest)
    try:
        result = api.search(
            query,
            mode=mode,
            k=k,
            layers=layer,
            since=since,
            until=until,
            project=project,
            session=session,
            cfg=cfg,
            refresh=False,
        )
    except api.CtxmillError as exc:
        raise Failure(str(exc)) from exc
    if as_json:
        click.echo(json.dumps([h.as_json() for h in result.hits], indent=2))
        return
    for note in result.notes:
        err.print(f"ctxmill: {note}")
    if result.period:
        err.print(f"ctxmill: dated query: keyword search in {result.period[0]}..{result.period[1]}")
    if not result.hits:
        out.print("no hits")
        return
    for hit in result.hits:
        date = (hit.timestamp or "")[:10] or "-"
        line = f"{hit.tag}  {date}  {hit.score:.4f}  ({', '.join(hit.found_by)})"
        out.print(escape(line), style="bold")
        out.print(f"    {hit.snippet}", markup=False)


@cli.command("show")
@click.argument("tag")
@memory_options
@ingest_option
@json_option
def show_cmd(cfg: Config, tag: str, no_ingest: bool, as_json: bool) -> None:
    """Print what a citation tag points to: [topic:PATH#Lx-Ly], [session:ID], [raw:ID#N], [code:PATH:LINE]."""
    try:
        parsed = Tag.parse(tag)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    ensure_index(cfg, no_ingest)
    try:
        shown = api.show(parsed, cfg=cfg, refresh=False)
    except api.CtxmillError as exc:
        raise Failure(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(shown.as_json(), indent=2))
    else:
        out.print(shown.text, markup=False)


@cli.command("forget")
@click.argument("session_id")
@memory_options
@json_option
def forget_cmd(cfg: Config, session_id: str, as_json: bool) -> None:
    """Remove a session everywhere ctxmill keeps it: index, raw archive and compressed summaries.

    The session is also remembered as forgotten, so a later ingest does not bring it back from
    the agent's own folder (which ctxmill never deletes: its path is printed).
    """
    try:
        result = forget(cfg, session_id)
    except (StoreError, LookupError) as exc:
        raise Failure(str(exc).strip("'\"")) from exc
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    out.print(
        f"forgot {session_id}: {result['chunks']} chunks, {len(result['files'])} files removed",
        markup=False,
    )
    if result.get("original"):
        out.print(f"the agent's own transcript is untouched: {result['original']}", markup=False)
