"""``build_context``: the pipeline that manufactures context.md for one brief.

    pre-filter (5 queries) → fan-out (topics | summaries | code, in parallel)
        → raw re-read of flagged sessions → assembly (dedup, precedence) → budget fit
        → optional model rewrite, verified claim by claim → render → egress redaction

Every stage works without a model.  See docs/build.md for what each section holds and why.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ctxmill import __version__
from ctxmill.config import Config
from ctxmill.llm.base import Backend
from ctxmill.model import Layer, Tag
from ctxmill.pipeline import aggregate, render, verify
from ctxmill.pipeline.brief import analyze
from ctxmill.pipeline.fanout import StoreFactory, fan_out
from ctxmill.pipeline.prefilter import QUERIES, iso, prefilter
from ctxmill.store import open_store
from ctxmill.store.base import SessionRecord, Store, StoreError
from ctxmill.store.sqlite import SQLiteStore

__all__ = ["QUERIES", "BuildError", "BuildResult", "build_context"]

# Tokens kept free under the budget for the front matter growing by a digit or two between the
# fit and the final count.
SAFETY_TOKENS = 24
COMPACT_SAFETY_TOKENS = 12  # a compact record has no notes to grow, only its counts
# Below this budget the context is compact: a short generation record (counts instead of lists),
# two-word empty sections, history without sub-headings and excerpts labelled by date only, so
# that the budget goes to evidence.  Every section and every tag stays.
COMPACT_BUDGET = 4000


class BuildError(Exception):
    """The context cannot be built as asked; the message is one line for the user."""


@dataclass
class BuildResult:
    text: str  # the whole context.md
    path: Path | None  # where it was written, if written
    tokens: int
    sections: dict[str, int]  # tokens used per section
    citations: list[str]  # every tag used, printed form
    candidates: list[dict[str, Any]]  # session id, found_by (which of the 5 queries), score
    flagged: list[str]  # sessions flagged for a raw re-read
    timings: dict[str, float]  # seconds per stage
    record: dict[str, Any]  # the generation record (front matter)
    notes: list[str] = field(default_factory=list)  # what the user should know (stderr)

    def as_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path) if self.path else None,
            "tokens": self.tokens,
            "sections": self.sections,
            "citations": self.citations,
            "candidates": self.candidates,
            "flagged": self.flagged,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "record": self.record,
            "notes": self.notes,
        }


def build_context(
    cfg: Config,
    brief: str,
    *,
    as_of: datetime | None = None,
    budget: int | None = None,
    backend: str | Backend | None = None,
    keep_unverified: bool = False,
    store: Store | None = None,
    ingest_first: bool = False,
    output: Path | None = None,
) -> BuildResult:
    """Build context.md for ``brief`` from the memory ``cfg`` points at.

    ``as_of`` is "now": nothing dated at or after it is visible.  ``backend`` is an LLM spec
    (``fake``, ``anthropic:…``, ``openai:…``, ``claude-cli``) or a backend instance; by default
    ``cfg.llm.backend``, and with none the context is extractive.  ``output`` writes the file.
    Raises :class:`BuildError` for what the user must fix (empty brief or index, budget too small).
    """
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    if not brief.strip():
        raise BuildError('the brief is empty: say what the task is, e.g. "migrate auth to OIDC"')
    moment = _utc(as_of) if as_of else datetime.now(UTC)
    budget = cfg.budget if budget is None else budget
    if budget < 1:
        raise BuildError(f"budget {budget} is too small: give a positive number of tokens")
    if ingest_first:
        from ctxmill.ingest import ingest

        t0 = time.perf_counter()
        ingest(cfg)
        timings["ingest"] = time.perf_counter() - t0
    own_store = store is None
    if store is None:
        if not cfg.index_path.exists():
            raise BuildError(
                f"no index for {cfg.memory_root} yet: run `ctxmill ingest` (or drop --no-ingest)"
            )
        store = open_store(cfg)
    try:
        return _build(
            cfg, store, brief, moment, budget, backend, keep_unverified, output, timings, t_start
        )
    finally:
        if own_store:
            store.close()


def _build(
    cfg: Config,
    store: Store,
    brief_text: str,
    as_of: datetime,
    budget: int,
    backend: str | Backend | None,
    keep_unverified: bool,
    output: Path | None,
    timings: dict[str, float],
    t_start: float,
) -> BuildResult:
    from ctxmill.tokens import count_tokens

    stats = store.stats()
    memory_chunks = sum(
        stats.get("chunks", {}).get(layer.value, 0)
        for layer in (Layer.TOPIC, Layer.COMPRESSED, Layer.RAW)
    )
    if memory_chunks == 0:
        raise BuildError(
            f"the index for {cfg.memory_root} holds no topics, summaries or transcripts: add notes "
            "under topics/ or transcripts, then run `ctxmill ingest`"
        )
    notes: list[str] = []
    brief = analyze(brief_text)

    t0 = time.perf_counter()
    pool = prefilter(store, brief, as_of=as_of, window_days=cfg.window_days)
    timings["prefilter"] = time.perf_counter() - t0
    notes += pool.notes

    t0 = time.perf_counter()
    fan = fan_out(cfg, pool, brief, _store_factory(store), parallel=isinstance(store, SQLiteStore))
    timings["fanout"] = time.perf_counter() - t0
    for worker in (fan.topics, fan.compressed, fan.code):
        timings[f"fanout.{worker.name}"] = worker.seconds
        notes += worker.notes

    compact = budget < COMPACT_BUDGET
    t0 = time.perf_counter()
    records = {c.session_id: c.record for c in pool.candidates if c.record is not None}
    raw = aggregate.reread(
        store,
        fan.flagged,
        brief,
        pool.until,
        records,
        pool.turn_scores,
        aggregate.COMPACT_PASSAGE_CHARS if compact else aggregate.PASSAGE_CHARS,
    )
    timings["reread"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    code_paths = fan.code.paths if cfg.code_root is not None and cfg.code_root.is_dir() else None
    assembly = aggregate.assemble(fan, raw, brief, code_paths=code_paths)
    timings["assemble"] = time.perf_counter() - t0
    if not any(e.section != "files" for e in assembly.entries):
        notes.append("nothing in the memory matched the brief; the context has only its structure")

    describe = _Describer(cfg, store, records, compact)
    record = _record_template(brief_text)
    record.update(
        as_of=iso(as_of),
        budget=budget,
        index={
            "path": str(stats.get("index", "")),
            "schema": _schema(store),
            "embedder": stats.get("embedder"),
            "chunks": stats.get("chunks", {}),
        },
        window={"since": pool.since, "until": pool.until, "widened": pool.widened},
        candidates=len(pool.candidates),
        flagged=list(fan.flagged),
        notes=notes,  # the same list: notes added later are measured with the record
    )
    if compact:
        record = _compact_record(record)

    cost_cache: dict[int, int] = {}

    def cost(e: aggregate.Entry) -> int:
        key = id(e)
        if key not in cost_cache:
            cost_cache[key] = count_tokens("\n".join(render.entry_lines(e, compact))) + 1
        return cost_cache[key]

    tag_cost: dict[Tag, int] = {}

    def citation_cost(tag: Tag) -> int:
        # A tag is listed on its source's line; the source's description is shared by the tags
        # cited from it, so each is charged a part of it (the fit measures the real size).
        if tag not in tag_cost:
            shared = count_tokens(describe(tag)) // 3
            tag_cost[tag] = count_tokens(str(tag)) + 1 + shared
        return tag_cost[tag]

    def measure(chosen: list[aggregate.Entry]) -> int:
        body, _ = render.render_body(brief_text, chosen, describe, compact)
        return count_tokens(render.front_matter(_measured(record, chosen)) + body)

    # The floor includes the note that says the budget fits only the structure.
    safety = COMPACT_SAFETY_TOKENS if compact else SAFETY_TOKENS
    structure_note = f"the budget of {budget} tokens fits only the structure; raise --budget"
    notes.append(structure_note)
    fixed = measure([])
    notes.remove(structure_note)
    if budget < fixed + safety:
        raise BuildError(
            f"budget {budget} is too small: the fixed structure of context.md alone takes "
            f"{fixed + safety} tokens (try --budget {max(4 * fixed, 2000)} or more)"
        )
    t0 = time.perf_counter()
    chosen = aggregate.select(
        assembly.entries, budget - fixed, cost, citation_cost, measure, budget - safety
    )
    timings["fit"] = time.perf_counter() - t0
    if assembly.entries and not chosen:
        notes.append(structure_note)

    model = _model(cfg, backend)
    record["backend"] = model[1] if model else "none"
    if model is not None:
        t0 = time.perf_counter()
        rewritten, report = verify.rewrite(
            model[0],
            brief_text,
            chosen,
            label=model[1],
            keep_unverified=keep_unverified,
            max_tokens=min(8192, budget),
        )
        record["verification"] = report.as_json()
        if report.fallback:
            notes.append(f"model step skipped, context is extractive: {report.fallback}")
        elif report.dropped:
            notes.append(f"{len(report.dropped)} model claims dropped as unsupported or miscited")
        picked = {id(e) for e in chosen}
        leftovers = [e for e in assembly.entries if id(e) not in picked]
        chosen = aggregate.select(
            rewritten + leftovers,
            budget - fixed,
            cost,
            citation_cost,
            measure,
            budget - safety,
        )
        timings["verify"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    record["created_at"] = iso(datetime.now(UTC))
    if not compact:
        record["left_out"] = max(0, len(assembly.entries) - len(chosen))
    text, parts, redacted = _finish(brief_text, chosen, describe, record, count_tokens, compact)
    if redacted:
        notes.append(f"{redacted} secrets redacted from the context before writing")
    while True:
        text, parts, _ = _finish(brief_text, chosen, describe, record, count_tokens, compact)
        if record["tokens"] <= budget or not chosen:
            break
        # Only a note or a redaction marker added after the fit can get here: give up the
        # weakest entry rather than exceed the budget.
        chosen = sorted(chosen, key=lambda e: e.score)[1:]
    sections = {key: count_tokens(part) for key, part in parts.items()}
    timings["render"] = time.perf_counter() - t0
    path = None
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        path = output
    timings["total"] = time.perf_counter() - t_start
    return BuildResult(
        text=text,
        path=path,
        tokens=int(record["tokens"]),
        sections=sections,
        citations=[str(t) for t in render.cited_tags(chosen)],
        candidates=[
            {
                "session": c.session_id,
                "title": c.record.title if c.record else None,
                "started": c.record.started if c.record else None,
                "score": round(c.score, 6),
                "found_by": c.found_by,
                "ranks": c.ranks,
            }
            for c in pool.candidates
        ],
        flagged=list(fan.flagged),
        timings=timings,
        record=record,
        notes=notes,
    )


def _finish(
    brief: str,
    chosen: list[aggregate.Entry],
    describe: _Describer,
    record: dict[str, Any],
    count_tokens: Callable[[str], int],
    compact: bool,
) -> tuple[str, dict[str, str], int]:
    """Render, redact on egress, hash, and settle the token count: (text, parts, redacted)."""
    from ctxmill.redact import redact

    body, parts = render.render_body(brief, chosen, describe, compact)
    body, redacted = redact(body)
    record.update(_measured(record, chosen))
    record["body_sha256"] = render.body_hash(body)
    text = ""
    for _ in range(4):  # "tokens" is part of what it counts: settle on a fixed point
        text = render.front_matter(record) + body
        n = count_tokens(text)
        if record["tokens"] == n:
            break
        record["tokens"] = n
    return text, parts, redacted


def _record_template(brief: str) -> dict[str, Any]:
    """The generation record with every field present and of its final shape, so that its size
    barely changes later."""
    return {
        "generator": f"ctxmill {__version__}",
        "brief": " ".join(brief.split()),
        "as_of": iso(datetime.now(UTC)),
        "created_at": iso(datetime.now(UTC)),
        "budget": 0,
        "tokens": 0,
        "backend": "none",
        "sources": {layer.value: 0 for layer in Layer},
        "index": {},
        "window": {},
        "candidates": 0,
        "flagged": [],
        "left_out": 0,
        # A digest of the same shape as the final one: a run of zeros counts as far fewer tokens.
        "body_sha256": hashlib.sha256(brief.encode("utf-8")).hexdigest(),
        "notes": [],
    }


def _compact_record(record: dict[str, Any]) -> dict[str, Any]:
    """The generation record for a small budget: what SPEC.md asks of it (brief, budget, tokens,
    index version, sources per layer, backend, created_at, content hash), the generator and
    ``as_of``.  The index path, the window, the pool's counts, the flagged sessions and the notes
    stay in ``--json``."""
    index = record.get("index") or {}
    return {
        "generator": record["generator"],
        "brief": record["brief"],
        "as_of": record["as_of"],
        "created_at": record["created_at"],
        "budget": record["budget"],
        "tokens": record["tokens"],
        "backend": record["backend"],
        "sources": record["sources"],
        "index": {"schema": index.get("schema"), "embedder": index.get("embedder")},
        "body_sha256": record["body_sha256"],
    }


def _measured(record: dict[str, Any], chosen: list[aggregate.Entry]) -> dict[str, Any]:
    """The record with the counts of tags cited per layer for this selection."""
    counts = {layer.value: 0 for layer in Layer}
    kinds = {"topic": "topic", "session": "compressed", "raw": "raw", "code": "code"}
    for tag in render.cited_tags(chosen):
        counts[kinds[tag.kind]] += 1
    return {**record, "sources": counts}


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _schema(store: Store) -> str | None:
    if isinstance(store, SQLiteStore):
        row = store.db.execute("SELECT name FROM migrations ORDER BY rowid DESC LIMIT 1").fetchone()
        return str(row[0]) if row else None
    return store.meta("schema")


def _store_factory(store: Store) -> StoreFactory:
    """A fresh connection per worker thread (SQLite connections must not cross threads)."""
    if isinstance(store, SQLiteStore):
        path = store.path

        def connect() -> Store:
            try:
                return SQLiteStore(path, readonly=True)
            except StoreError:
                return SQLiteStore(path)

        return connect
    return lambda: _Borrowed(store)


class _Borrowed:
    """Another backend's store lent to the workers as is (they then run one after another)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def close(self) -> None:
        """The lender closes it."""


def _model(cfg: Config, spec: str | Backend | None) -> tuple[verify.Completer, str] | None:
    """The model to rewrite with and its label; a spec from settings gets retries and budgets."""
    if isinstance(spec, Backend):
        return spec, f"{spec.name}:{spec.model}"
    from ctxmill.llm import LLMError, runner_for

    try:
        runner = runner_for(cfg.llm, spec, purpose="build")
    except LLMError as exc:
        raise BuildError(f"cannot use backend {spec or cfg.llm.backend!r}: {exc}") from exc
    if runner is None:
        return None
    return runner, f"{runner.backend.name}:{runner.backend.model}"


class _Describer:
    """Resolves a tag to where it points, for the Citations section (cached per tag)."""

    def __init__(
        self, cfg: Config, store: Store, records: dict[str, SessionRecord], compact: bool = False
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.records = dict(records)
        self.compact = compact
        self.cache: dict[Tag, str] = {}

    def __call__(self, tag: Tag) -> str:
        key = Tag(tag.kind, tag.ref)
        if key not in self.cache:
            self.cache[key] = self._describe(tag)
        return self.cache[key]

    def _record(self, sid: str) -> SessionRecord | None:
        if sid not in self.records:
            rec = self.store.get_session(sid)
            if rec is None:
                return None
            self.records[sid] = rec
        return self.records[sid]

    def _describe(self, tag: Tag) -> str:
        """Where a tag's source is: the topic file, the code file, the session (the line or turn
        is in the tag itself)."""
        if tag.kind == "topic":
            return f"topics/{tag.ref}"
        if tag.kind == "code":
            return f"{tag.ref} (code root)"
        rec = self._record(tag.ref)
        title = f"“{rec.title}”" if rec and rec.title else "untitled session"
        agent = rec.agent if rec else "unknown agent"
        date = ((rec.started or "")[:10] if rec else "") or "undated"
        if tag.kind == "session":
            hits = self.store.chunks_for_tag(tag)
            where = f" — {hits[0].path}" if hits and hits[0].path else ""
            return f"summary of {title} ({agent}, {date}){where}"
        if self.compact:
            return f"{rec.title}, {date}" if rec and rec.title else date
        return f"transcript of {title} ({agent}, {date})"
