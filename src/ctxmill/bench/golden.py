"""The golden-context benchmark: build each task's context and score it against the ideal one.

A golden directory holds sets (SPEC.md, "Golden-context benchmark directory")::

    <golden-dir>/<set>/memory/      a memory root
    <golden-dir>/<set>/code/        optional code root
    <golden-dir>/<set>/tasks/*.yaml brief, as_of, budget, claims
    <golden-dir>/<set>/data.yaml    optional: third-party transcripts to copy in at run time

A project folder is a set too when it holds a ``ctxmill.toml`` and ``golden/tasks/*.yaml`` (the
layout of the shipped sample): its memory root, code root and transcript folders are the ones its
``ctxmill.toml`` names (``[memory] root``, ``[code] root``, ``[sources] paths``, relative to the
folder), and the folder is copied into the run's temporary directory first, because ingest keeps
an archive of agent-folder transcripts under the memory root.

Each set is indexed once, in a throw-away CTXMILL_HOME, with agent-folder discovery off, so a run
never reads or writes a user's own index; every task of the set is then built with its own
``as_of`` and ``budget`` and scored by :mod:`ctxmill.bench.scoring`.

``data.yaml`` names transcripts that may not be committed with the set (their licence, or their
size): they are copied from a data folder into ``memory/sessions/raw/`` before the set runs, and a
set whose data is absent is skipped with a message rather than scored on half its memory::

    source: claude-code/marot_spotter   # a folder under the data root
    files: ["*.jsonl", "*/subagents/*.jsonl"]
    exclude: ["beads_issues.jsonl"]
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml

from ctxmill.bench.scoring import Claim, ClaimResult, Resolver, coverage, precision
from ctxmill.config import Config
from ctxmill.model import Tag, parse_moment
from ctxmill.store import Store, open_store

DATA_MANIFEST = "data.yaml"
PROJECT_FILE = "ctxmill.toml"
PROJECT_TASKS = Path("golden") / "tasks"
DATA_ENV = "CTXMILL_SHARED_DATA"
CODE_CONTEXT_LINES = 60


class GoldenError(Exception):
    """A golden directory or task file that cannot be used; one line for the user."""


@dataclass
class Task:
    set: str
    id: str
    brief: str
    as_of: datetime | None
    budget: int | None
    claims: list[Claim]
    path: Path


@dataclass
class TaskResult:
    set: str
    id: str
    coverage: float
    precision: float | None
    tokens: int
    claims: list[ClaimResult]
    budget: int | None = None
    as_of: str | None = None
    seconds: float = 0.0
    tagged_units: int = 0
    unresolved: list[str] = field(default_factory=list)
    error: str | None = None
    context_path: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "set": self.set,
            "id": self.id,
            "coverage": round(self.coverage, 4),
            "precision": None if self.precision is None else round(self.precision, 4),
            "tokens": self.tokens,
            "claims": [c.as_json() for c in self.claims],
            "budget": self.budget,
            "as_of": self.as_of,
            "seconds": round(self.seconds, 3),
            "tagged_units": self.tagged_units,
            "unresolved_tags": self.unresolved,
            "error": self.error,
            "context_path": self.context_path,
        }


@dataclass
class GoldenRun:
    tasks: list[TaskResult]
    skipped: list[dict[str, str]]  # {"set", "reason"}

    @property
    def average_coverage(self) -> float | None:
        return sum(t.coverage for t in self.tasks) / len(self.tasks) if self.tasks else None

    @property
    def average_precision(self) -> float | None:
        values = [t.precision for t in self.tasks if t.precision is not None]
        return sum(values) / len(values) if values else None

    @property
    def average_tokens(self) -> float | None:
        return sum(t.tokens for t in self.tasks) / len(self.tasks) if self.tasks else None

    def as_json(self) -> dict[str, Any]:
        def rounded(x: float | None) -> float | None:
            return None if x is None else round(x, 4)

        return {
            "tasks": [t.as_json() for t in self.tasks],
            "average_coverage": rounded(self.average_coverage),
            "average_precision": rounded(self.average_precision),
            "average_tokens": rounded(self.average_tokens),
            "skipped": self.skipped,
        }


# -- loading ------------------------------------------------------------------------------------


def parse_as_of(value: Any, where: str) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    else:
        try:
            moment = parse_moment(str(value))
        except ValueError as exc:
            raise GoldenError(f"{where}: as_of {value!r} is not an ISO-8601 date") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def load_task(path: Path, set_name: str) -> Task:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise GoldenError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(data, dict):
        raise GoldenError(f"{path}: a task file must be a YAML mapping")
    for key in ("brief", "claims"):
        if not data.get(key):
            raise GoldenError(f"{path}: missing {key!r}")
    if not isinstance(data["claims"], list):
        raise GoldenError(f"{path}: 'claims' must be a list")
    try:
        claims = [Claim.from_yaml(c, f"{path} claim {i}") for i, c in enumerate(data["claims"], 1)]
    except ValueError as exc:
        raise GoldenError(str(exc)) from exc
    ids = [c.id for c in claims]
    if len(set(ids)) != len(ids):
        raise GoldenError(f"{path}: claim ids repeat")
    budget = data.get("budget")
    if budget is not None and (not isinstance(budget, int) or budget <= 0):
        raise GoldenError(f"{path}: budget must be a positive integer")
    return Task(
        set=set_name,
        id=str(data.get("id") or path.stem),
        brief=str(data["brief"]),
        as_of=parse_as_of(data.get("as_of"), str(path)),
        budget=budget,
        claims=claims,
        path=path,
    )


def tasks_dir(set_dir: Path) -> Path | None:
    """Where a set keeps its task files: ``tasks/``, or ``golden/tasks/`` in a project folder (one
    with a ``ctxmill.toml``); None when ``set_dir`` is not a set."""
    if (set_dir / "tasks").is_dir():
        return set_dir / "tasks"
    if (set_dir / PROJECT_FILE).is_file() and (set_dir / PROJECT_TASKS).is_dir():
        return set_dir / PROJECT_TASKS
    return None


def find_sets(golden_dir: Path) -> list[Path]:
    """The sets of a golden directory; the directory itself when it is a single set."""
    if tasks_dir(golden_dir) is not None:
        return [golden_dir]
    sets = sorted(p for p in golden_dir.iterdir() if p.is_dir() and tasks_dir(p) is not None)
    if not sets:
        raise GoldenError(
            f"{golden_dir}: no sets found (folders with tasks/, or with {PROJECT_FILE} and "
            f"{PROJECT_TASKS}/)"
        )
    return sets


def load_tasks(set_dir: Path) -> list[Task]:
    folder = tasks_dir(set_dir)
    if folder is None:
        return []
    return [load_task(p, set_dir.name) for p in sorted(folder.glob("*.y*ml"))]


def set_config(set_dir: Path, home: Path) -> Config:
    """The configuration a set is indexed and built with: its own folders only, no discovery.

    A project folder's ``ctxmill.toml`` names its roots; a user's own settings never apply."""
    memory, code, transcripts = set_dir / "memory", set_dir / "code", []
    project = set_dir / PROJECT_FILE
    if project.is_file():
        try:
            raw = tomllib.loads(project.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise GoldenError(f"{project}: cannot read: {exc}") from exc
        memory = set_dir / str(raw.get("memory", {}).get("root", "memory"))
        code = set_dir / str(raw.get("code", {}).get("root", "code"))
        transcripts = [set_dir / str(p) for p in raw.get("sources", {}).get("paths", [])]
    return Config(
        memory_root=memory.resolve(),
        code_root=code.resolve() if code.is_dir() else None,
        transcript_dirs=[p.resolve() for p in transcripts],
        discover=False,
        home=home,
    )


# -- third-party data ---------------------------------------------------------------------------


def find_data_root(golden_dir: Path, explicit: Path | None = None) -> Path | None:
    """Where third-party benchmark data lives: ``explicit``, ``$CTXMILL_SHARED_DATA``, or a
    ``shared/data`` folder beside one of the golden directory's parents."""
    if explicit is not None:
        return explicit
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    for parent in list(golden_dir.resolve().parents)[:5]:
        candidate = parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return None


def link_set_data(set_dir: Path, data_root: Path | None) -> tuple[int, str | None]:
    """Copy the transcripts ``data.yaml`` names into the set's ``memory/sessions/raw/``.

    Returns (files copied or already current, reason the set cannot run or None).  Sets without a
    manifest need nothing.  Copies keep their modification times, so a second run re-indexes
    nothing.
    """
    manifest = set_dir / DATA_MANIFEST
    if not manifest.is_file():
        return 0, None
    try:
        spec = yaml.safe_load(manifest.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise GoldenError(f"{manifest}: cannot read: {exc}") from exc
    if not isinstance(spec, dict) or not spec.get("source"):
        raise GoldenError(f"{manifest}: needs a 'source' folder (relative to the data root)")
    if data_root is None:
        return 0, (
            f"its transcripts ({spec['source']}) are not here: set {DATA_ENV} or pass --data "
            "to the folder that holds them"
        )
    source = data_root / str(spec["source"])
    if not source.is_dir():
        return 0, f"data folder {source} not found (set {DATA_ENV} or pass --data)"
    patterns = [str(p) for p in spec.get("files") or ["**/*"]]
    excluded = {str(p) for p in spec.get("exclude") or []}
    target = set_dir / "memory" / "sessions" / "raw"
    count = 0
    for pattern in patterns:
        for src in sorted(source.glob(pattern)):
            rel = src.relative_to(source)
            if not src.is_file() or str(rel) in excluded or src.name in excluded:
                continue
            dst = target / rel
            st = src.stat()
            if dst.is_file():
                dt = dst.stat()
                if dt.st_size == st.st_size and int(dt.st_mtime) == int(st.st_mtime):
                    count += 1
                    continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
            count += 1
    if not count:
        return 0, f"no files in {source} match {patterns}"
    return count, None


# -- resolving tags -----------------------------------------------------------------------------


def store_resolver(cfg: Config, store: Store) -> Resolver:
    """Resolve tags the way ``ctxmill show`` does: topics and code from their files (the lines the
    tag names), transcripts and summaries from the index."""

    def resolve(tag: Tag) -> str | None:
        if tag.kind == "topic":
            path = cfg.topics_dir / tag.ref
            if not path.is_file():
                return None
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            start = tag.start or 1
            end = min(tag.end or len(lines), len(lines))
            if start > len(lines) or end < start:
                return None
            return "\n".join(lines[start - 1 : end])
        if tag.kind == "code":
            if cfg.code_root is None:
                return None
            path = cfg.code_root / tag.ref
            if not path.is_file():
                return None
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            line = tag.start or 1
            if line > len(lines):
                return None
            lo = max(0, line - 1 - CODE_CONTEXT_LINES // 4)
            return "\n".join(lines[lo : line - 1 + CODE_CONTEXT_LINES])
        hits = store.chunks_for_tag(tag)
        if not hits:
            return None
        # A rendered excerpt may label itself with what the index knows of its span (role, date,
        # session, title); those words are supported by the span's record, so they count as cited.
        return "\n".join(
            " ".join(
                x
                for x in (h.role, (h.timestamp or "")[:10], h.session_id, h.title, "\n", h.text)
                if x
            )
            for h in hits
        )

    return resolve


# -- running ------------------------------------------------------------------------------------


@contextlib.contextmanager
def isolated_home(home: Path) -> Iterator[None]:
    """Point CTXMILL_HOME at ``home`` for the duration (the pipeline may write run records)."""
    before = os.environ.get("CTXMILL_HOME")
    os.environ["CTXMILL_HOME"] = str(home)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("CTXMILL_HOME", None)
        else:
            os.environ["CTXMILL_HOME"] = before


OnTask = Callable[[TaskResult], None]


def run_golden(
    golden_dir: Path,
    *,
    backend: str | None = None,
    data_root: Path | None = None,
    keep_dir: Path | None = None,
    embedder: str | None = None,
    on_task: OnTask | None = None,
    on_note: Callable[[str], None] | None = None,
) -> GoldenRun:
    """Build and score every task of every set under ``golden_dir``."""
    note = on_note or (lambda message: None)
    try:
        from ctxmill.pipeline import build_context  # noqa: F401
    except ImportError as exc:
        raise GoldenError(f"the build pipeline is not available: {exc}") from exc
    root = find_data_root(golden_dir, data_root)
    results: list[TaskResult] = []
    skipped: list[dict[str, str]] = []
    for set_dir in find_sets(golden_dir):
        tasks = load_tasks(set_dir)
        if not tasks:
            note(f"skipping set {set_dir.name}: no task files")
            skipped.append({"set": set_dir.name, "reason": "no task files"})
            continue
        linked, reason = link_set_data(set_dir, root)
        if reason:
            note(f"skipping set {set_dir.name}: {reason}")
            skipped.append({"set": set_dir.name, "reason": reason})
            continue
        if linked:
            note(f"set {set_dir.name}: {linked} transcript files in memory/sessions/raw/")
        results += _run_set(set_dir, tasks, backend, keep_dir, embedder, on_task)
    return GoldenRun(results, skipped)


def _run_set(
    set_dir: Path,
    tasks: list[Task],
    backend: str | None,
    keep_dir: Path | None,
    embedder: str | None,
    on_task: OnTask | None,
) -> list[TaskResult]:
    from ctxmill.ingest import ingest

    results: list[TaskResult] = []
    with tempfile.TemporaryDirectory(prefix=f"ctxmill-golden-{set_dir.name}-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        if (set_dir / PROJECT_FILE).is_file():
            # Ingest archives agent-folder transcripts under the memory root: work on a copy.
            copy = Path(tmp) / set_dir.name
            shutil.copytree(set_dir, copy, ignore=shutil.ignore_patterns(".git", "__pycache__"))
            cfg = set_config(copy, home)
        else:
            cfg = set_config(set_dir, home)
        if embedder:
            cfg.embedder = embedder
        with isolated_home(home):
            ingest(cfg, embed=cfg.embedder != "none")
            store = open_store(cfg)
            try:
                resolve = store_resolver(cfg, store)
                for task in tasks:
                    result = _run_task(cfg, store, task, backend, resolve, keep_dir)
                    results.append(result)
                    if on_task:
                        on_task(result)
            finally:
                store.close()
    return results


def _run_task(
    cfg: Config,
    store: Store,
    task: Task,
    backend: str | None,
    resolve: Resolver,
    keep_dir: Path | None,
) -> TaskResult:
    from ctxmill.pipeline import build_context

    start = time.perf_counter()
    as_of = task.as_of.isoformat().replace("+00:00", "Z") if task.as_of else None
    try:
        built = build_context(
            cfg, task.brief, as_of=task.as_of, budget=task.budget, backend=backend, store=store
        )
    except Exception as exc:  # a failed build scores zero, and says why
        return TaskResult(
            task.set,
            task.id,
            0.0,
            None,
            0,
            [ClaimResult(c.id, False) for c in task.claims],
            budget=task.budget,
            as_of=as_of,
            seconds=time.perf_counter() - start,
            error=f"{type(exc).__name__}: {exc}",
        )
    seconds = time.perf_counter() - start
    claims = coverage(task.claims, built.text)
    prec = precision(built.text, resolve)
    kept = None
    if keep_dir is not None:
        out = keep_dir / task.set / f"{task.id}.context.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(built.text, encoding="utf-8")
        kept = str(out)
    covered = sum(1 for c in claims if c.covered)
    return TaskResult(
        task.set,
        task.id,
        covered / len(claims) if claims else 0.0,
        prec.value,
        built.tokens,
        claims,
        budget=task.budget,
        as_of=as_of,
        seconds=seconds,
        tagged_units=prec.tagged,
        unresolved=prec.unresolved,
        context_path=kept,
    )
