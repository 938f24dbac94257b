"""The Python API: the command line's verbs as functions, also available as ``ctxmill.<verb>``.

    import ctxmill

    cfg = ctxmill.load_config(sample=True)          # or load_config(): ctxmill.toml from the cwd
    for hit in ctxmill.search("why did we drop JWTs", k=5, cfg=cfg).hits:
        print(hit.tag, hit.snippet)
    built = ctxmill.build("Migrate session auth to OIDC", output="context.md", cfg=cfg)
    print(ctxmill.show(built.citations[0], cfg=cfg).text)

Each function wraps the library module that does the work (``ingest``, ``search``, ``show``,
``pipeline``, ``compress``, ``distill``); the command line and the MCP server call these same
functions.  Conventions shared by all of them:

- ``cfg`` is a :class:`~ctxmill.config.Config`; left out, it is :func:`load_config` (the settings
  found from the working directory, as the CLI resolves them).
- Functions that read the index bring it up to date first, incrementally, as the CLI does; pass
  ``refresh=False`` to use it as it is (the CLI's ``--no-ingest``).
- A problem the caller can act on (bad input, no index, a busy lock, an unknown backend) raises
  :class:`CtxmillError` with a one-line message; the library's own exception is its ``__cause__``.

Library modules are imported inside the functions, so that importing this module (and
``import ctxmill``) stays cheap for the hook that must return within a second.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ctxmill.model import parse_moment

if TYPE_CHECKING:
    from ctxmill.compress import CompressReport
    from ctxmill.config import Config
    from ctxmill.distill import Distilled
    from ctxmill.ingest import IngestReport
    from ctxmill.llm import LLMRunner
    from ctxmill.model import Layer, Tag
    from ctxmill.pipeline import BuildResult
    from ctxmill.search import SearchResult

__all__ = [
    "CtxmillError",
    "Passage",
    "build",
    "compress",
    "distill",
    "ingest",
    "load_config",
    "search",
    "show",
]

Progress = Callable[[str, int, int], None]  # (stage, done, total)

# How long a refresh waits for another ingest (the hook's background worker, a CLI run) before
# going on with the index as it is: an answer from a slightly stale index beats a long stall.
REFRESH_WAIT_S = 30.0


class CtxmillError(Exception):
    """Something the caller must fix or retry; the message is one line, fit to show a user."""


@dataclass(frozen=True)
class Passage:
    """What a citation tag points to."""

    tag: str  # the tag, printed in its canonical form
    source: str  # the file it was read from (the topic, the transcript or its archive, the code)
    text: str

    def as_json(self) -> dict[str, str]:
        return {"tag": self.tag, "source": self.source, "text": self.text}


def load_config(
    memory: str | Path | None = None,
    code: str | Path | None = None,
    *,
    discover: bool | None = None,
    sample: bool = False,
) -> Config:
    """Resolve the settings the way the CLI does.

    ``memory`` and ``code`` override the memory and code roots; ``discover=False`` stops reading
    agents' own transcript folders (``~/.claude/projects``, ``~/.codex/sessions``).  With
    ``sample=True`` the result points at a working copy of the sample memory shipped with
    ctxmill (under ``$CTXMILL_HOME/sample``) and the other arguments are ignored.
    """
    from ctxmill.config import ConfigError, sample_config
    from ctxmill.config import load_config as _load

    try:
        if sample:
            return sample_config()
        return _load(
            Path(memory) if memory is not None else None,
            Path(code) if code is not None else None,
            discover,
        )
    except ConfigError as exc:
        raise CtxmillError(str(exc)) from exc


def ingest(
    *,
    cfg: Config | None = None,
    embed: bool = True,
    rebuild: bool = False,
    progress: Progress | None = None,
) -> IngestReport:
    """Bring the index up to date with every source, reading only what changed.

    ``rebuild=True`` starts from an empty index (``ctxmill reindex``); ``embed=False`` builds the
    keyword index only.  ``progress(stage, done, total)`` is called as files are read.  Waits for
    another ingest holding the lock (up to ten minutes) before raising :class:`CtxmillError`.
    """
    from ctxmill.ingest import IngestBusy, reindex
    from ctxmill.ingest import ingest as _ingest
    from ctxmill.store.base import StoreError

    cfg = _config(cfg)
    run = reindex if rebuild else _ingest
    try:
        return run(cfg, embed=embed, progress=progress)
    except (IngestBusy, StoreError) as exc:
        raise CtxmillError(str(exc)) from exc


def search(
    query: str,
    *,
    mode: str = "auto",
    k: int = 10,
    layers: Sequence[Layer | str] | None = None,
    since: str | None = None,
    until: str | None = None,
    project: str | None = None,
    session: str | None = None,
    cfg: Config | None = None,
    refresh: bool = True,
) -> SearchResult:
    """Search the memory; every hit carries its citation tag.

    ``mode`` is ``auto`` (a query naming a date or period goes to the keyword index restricted
    to it, any other to hybrid), ``keyword`` (FTS5/BM25), ``semantic`` (vectors) or ``hybrid``
    (reciprocal rank fusion of both).  The filters keep hits from these ``layers`` (``topic``,
    ``compressed``, ``raw``, ``code``), dated in [``since``, ``until``) (ISO-8601), from one
    ``project`` (the basename of a session's working directory) or one ``session`` id.
    The result's ``mode`` is the mode that ran and ``notes`` what the caller should know.
    """
    from ctxmill.search import search as _search
    from ctxmill.store import Filters, open_store
    from ctxmill.store.base import StoreError

    if not query.strip():
        raise CtxmillError("the query is empty")
    if k < 1:
        raise CtxmillError(f"k must be at least 1, not {k}")
    cfg = _config(cfg)
    filters = Filters(
        layers=_layers(layers),
        since=since,
        until=until,
        project=project,
        session=session,
    )
    notes = _refresh(cfg) if refresh else []
    try:
        store = open_store(cfg)
        try:
            result = _search(store, query, mode=mode, k=k, filters=filters)
        finally:
            store.close()
    except (StoreError, ValueError) as exc:
        raise CtxmillError(str(exc)) from exc
    result.notes[:0] = notes
    return result


def show(tag: str | Tag, *, cfg: Config | None = None, refresh: bool = True) -> Passage:
    """The text a citation tag (``[topic:PATH#Lx-Ly]``, ``[session:ID]``, ``[raw:ID#N]``,
    ``[code:PATH:LINE]``; brackets optional) points to, read from the source where it exists."""
    from ctxmill.model import Tag
    from ctxmill.show import show_tag
    from ctxmill.store.base import StoreError

    try:
        parsed = tag if isinstance(tag, Tag) else Tag.parse(tag)
    except ValueError as exc:
        raise CtxmillError(str(exc)) from exc
    if parsed.kind in ("topic", "code") and not _inside(parsed.ref):
        # Ingest only ever tags paths relative to their root; anything else would read outside it.
        raise CtxmillError(f"{parsed}: the path must be relative to the {parsed.kind} root")
    cfg = _config(cfg)
    if refresh and parsed.kind in ("raw", "session"):
        _refresh(cfg)  # topics and code are read from their files, not the index
    try:
        shown = show_tag(cfg, parsed)
    except (LookupError, StoreError) as exc:
        raise CtxmillError(str(exc).strip("'\"")) from exc
    return Passage(str(shown["tag"]), str(shown["source"]), str(shown["text"]))


def build(
    brief: str,
    *,
    budget: int | None = None,
    as_of: datetime | str | None = None,
    backend: str | None = None,
    keep_unverified: bool = False,
    output: str | Path | None = None,
    cfg: Config | None = None,
    refresh: bool = True,
) -> BuildResult:
    """Build context.md for the task ``brief``: every claim tagged, under ``budget`` tokens.

    ``as_of`` (a datetime or an ISO-8601 string; naive means UTC) hides everything dated at or
    after it.  ``backend`` is an LLM spec (``fake``, ``anthropic[:MODEL]``, ``openai[:MODEL]``,
    ``claude-cli``, ``none``) that rewrites excerpts into claims verified one by one; left out,
    the ``[llm]`` settings decide, and with none the context is extractive.  ``output`` writes
    the file; the result always holds the text (``.text``), the tokens per section and the
    citations.
    """
    from ctxmill.pipeline import BuildError, build_context
    from ctxmill.store.base import StoreError

    moment = _moment(as_of)
    cfg = _config(cfg)
    notes = _refresh(cfg) if refresh else []
    try:
        result = build_context(
            cfg,
            brief,
            as_of=moment,
            budget=budget,
            backend=backend,
            keep_unverified=keep_unverified,
            output=Path(output) if output is not None else None,
        )
    except (BuildError, StoreError) as exc:
        raise CtxmillError(str(exc)) from exc
    result.notes[:0] = notes
    return result


def compress(
    *,
    session_ids: Iterable[str] = (),
    since: str | None = None,
    all_sessions: bool = False,
    redo: bool = False,
    dry_run: bool = False,
    from_queue: bool = False,
    backend: str | LLMRunner | None = None,
    jobs: int = 1,
    window: int | None = None,
    pace_s: float = 0.0,
    embed: bool = True,
    cfg: Config | None = None,
    refresh: bool = True,
    progress: Progress | None = None,
) -> CompressReport:
    """Write one summary per closed session under ``MEMORY/sessions/compressed/YYYY/``.

    Summaries are append-only: a session whose transcript grew gets a new file that supersedes
    the old one.  ``session_ids`` limits the pass to these sessions, closed or not; sessions
    queued by ``ctxmill hook session-end`` are always taken (``from_queue=True``: only those).
    ``backend`` is an LLM spec, a ready :class:`~ctxmill.llm.LLMRunner`, or ``"none"`` for the
    extractive compressor; left out, the ``[llm]`` settings decide.  ``refresh`` indexes the
    sources before and the new summaries after.  ``dry_run`` plans and prices without writing.
    """
    from ctxmill.compress import DEFAULT_WINDOW, CompressBusy
    from ctxmill.compress import compress as _compress
    from ctxmill.ingest import IngestBusy
    from ctxmill.store.base import StoreError

    cfg = _config(cfg)
    runner = _runner(cfg, backend, "compress")
    try:
        return _compress(
            cfg,
            runner=runner,
            jobs=jobs,
            session_ids=session_ids,
            since=since,
            all_sessions=all_sessions,
            redo=redo,
            dry_run=dry_run,
            from_queue=from_queue,
            index=refresh,
            embed=embed,
            window=DEFAULT_WINDOW if window is None else window,
            pace_s=pace_s,
            progress=progress,
        )
    except (CompressBusy, IngestBusy, StoreError) as exc:
        raise CtxmillError(str(exc)) from exc


def distill(
    source: str | Path,
    *,
    brief: str | None = None,
    backend: str | LLMRunner | None = None,
    cfg: Config | None = None,
    refresh: bool = True,
) -> Distilled:
    """Turn a planning session into a self-contained implementation prompt (``.text``).

    ``source`` is a transcript file (Claude Code, Codex, SpecStory), a markdown plan, or the id
    (or a unique prefix of one) of an indexed session.  ``brief`` narrows the prompt to part of
    the plan.  ``backend`` is as for :func:`compress`: with a model, each claim it writes is
    checked against the turns it cites.  Every line carries the tag of the turn it came from.
    """
    from ctxmill.distill import DistillError, distill_session, find_session, load_source

    cfg = _config(cfg)
    runner = _runner(cfg, backend, "distill")
    path = Path(source).expanduser()
    try:
        if path.is_file():
            loaded = load_source(path)
        else:
            if refresh:
                _refresh(cfg)
            found, session_id = find_session(cfg, str(source))
            loaded = load_source(found, session_id)
        return distill_session(loaded, brief=brief, runner=runner, code_root=cfg.code_root)
    except DistillError as exc:
        raise CtxmillError(str(exc)) from exc


# -- helpers -----------------------------------------------------------------------------------


def _config(cfg: Config | None) -> Config:
    return cfg if cfg is not None else load_config()


def _refresh(cfg: Config) -> list[str]:
    """Bring the index up to date quietly; returns notes for the caller."""
    from ctxmill.ingest import IngestBusy
    from ctxmill.ingest import ingest as _ingest
    from ctxmill.store.base import StoreError

    try:
        report = _ingest(cfg, embed=True, wait=REFRESH_WAIT_S)
    except IngestBusy:
        return ["another ingest is running; used the index as it was"]
    except StoreError as exc:
        raise CtxmillError(str(exc)) from exc
    if report.problems:
        return [f"{len(report.problems)} problems while indexing (see `ctxmill ingest`)"]
    return []


def _layers(values: Sequence[Layer | str] | None) -> list[Layer] | None:
    from ctxmill.model import Layer

    if not values:
        return None
    try:
        return [Layer(v) for v in values]
    except ValueError as exc:
        choices = ", ".join(v.value for v in Layer)
        raise CtxmillError(f"{exc}; layers are {choices}") from exc


def _moment(value: datetime | str | None) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if value is None:
        return None
    try:
        return parse_moment(value)
    except ValueError as exc:
        raise CtxmillError(
            f"as_of {value!r} is not an ISO-8601 date or time (e.g. 2026-04-01T09:00:00Z)"
        ) from exc


def _inside(ref: str) -> bool:
    path = Path(ref)
    return not path.is_absolute() and ".." not in path.parts


def _runner(cfg: Config, backend: str | LLMRunner | None, purpose: str) -> LLMRunner | None:
    """The model runner ``backend`` asks for; None means no model (extractive)."""
    from ctxmill.llm import LLMError, LLMRunner, runner_for

    if isinstance(backend, LLMRunner):
        return backend
    try:
        return runner_for(cfg.llm, backend, purpose=purpose)
    except LLMError as exc:
        raise CtxmillError(str(exc)) from exc
