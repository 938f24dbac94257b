"""The compression pass: one summary per closed session, appended, never rewritten.

``compress(cfg)`` finds the sessions that closed (no change for ``cfg.quiet_minutes``) and whose
transcript changed since their newest summary, writes one summary each under
``MEMORY/sessions/compressed/YYYY/`` and indexes what it wrote.

File names and append-only versions
    The first summary of a session is ``YYYY/<id>.md`` (YYYY: the year the session started).  When
    the transcript later grows (its sha256 differs from the newest summary's ``source_sha256``) a
    new file ``YYYY/<id>.2.md``, then ``<id>.3.md``, … is written with ``supersedes:`` naming the
    previous one (path relative to the compressed folder).  Every name starts with the session id,
    so ``rglob(f"{id}*.md")`` finds all of a session's summaries; the highest version is the
    newest.  A summary file is never modified: it is written to a hidden temp file in the same
    folder and moved into place with ``os.replace``, so a crash or a full disk leaves either the
    whole file or nothing.

Which sessions
    A session counts as closed when its last activity (the later of its ``ended`` time and the
    transcript's mtime) is at least ``quiet_minutes`` old.  A small cache beside the index
    remembers each session's transcript size and mtime at its last pass, so an unchanged
    transcript is skipped without being read; ``all_sessions=True`` ignores the cache and compares
    sha256 hashes instead.  Each summary is independent, so a pass that stops half-way is resumed
    by the next one.  Sessions queued by the ``SessionEnd`` hook are taken first, closed or not.

Subagents
    A subagent's session (``parent_id`` set: Claude Code's ``subagents/agent-*.jsonl`` files and
    the older inline sidechains) gets no summary of its own.  It is folded into its parent's: one
    line per subagent under *What happened* (its prompt and the start of its answer) and its files
    and commands added to the parent's.  ``source_sha256`` covers the parent's transcript only.

Compressors
    Without a model the summary is extractive and deterministic (rules below in
    :func:`extractive_body`).  With an LLM runner the model writes the five narrative sections from
    the pre-stripped transcript (in windows, then merged, when it is long); the system writes the
    front matter and the ``## Files`` section itself, so files and commands are never lost or
    invented.  Every summary passes :func:`ctxmill.summary_format.validate_summary` before it is
    written; a model summary that fails is retried once with the problems listed, then dropped.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock, Timeout

from ctxmill import sources
from ctxmill.config import Config
from ctxmill.llm.base import BudgetExceeded, LLMError, Message
from ctxmill.llm.runner import LLMRunner
from ctxmill.model import Session, Turn
from ctxmill.redact import redact
from ctxmill.sources.base import file_stem, one_line
from ctxmill.summary_format import (
    HEADINGS,
    SHORT_SOURCE_TOKENS,
    TARGET_MAX,
    TARGET_MIN,
    _Loader,
    body_problems,
    headings,
    render_summary,
    sections,
    split_summary,
    validate_summary,
)
from ctxmill.tokens import count_tokens

EXTRACTIVE_VERSION = "extractive-v1"
PROMPT_VERSION = "compress-v1"
DEFAULT_WINDOW = 12_000  # transcript tokens per model call before the session is split
MAX_OUTPUT_TOKENS = 2_200  # the longest valid body (2,000) plus room for the model's own count
SETTLE_S = 2.0  # a queued transcript is read once it has not changed for this long
CHARS_PER_TOKEN = 3.5

Progress = Callable[[str, int, int], None]


class SummaryRejected(Exception):
    """A model's summary failed validation twice; ``problems`` says why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class CompressBusy(Exception):
    """Another compression pass holds the lock."""


# -- results -----------------------------------------------------------------------------------


@dataclass
class SessionResult:
    """What happened to one session in a pass."""

    session_id: str
    status: str  # written | unchanged | skipped | failed | planned
    reason: str = ""
    path: str | None = None
    supersedes: str | None = None
    tokens: int | None = None
    input_tokens: int | None = None
    cost_usd: float | None = None
    subagents: int = 0

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, "", 0) or k == "status"}


@dataclass
class CompressReport:
    results: list[SessionResult] = field(default_factory=list)
    not_closed: int = 0
    subagents: int = 0
    queued: int = 0
    seconds: float = 0.0
    dry_run: bool = False
    llm: dict[str, Any] | None = None
    indexed: bool = False
    problems: list[str] = field(default_factory=list)

    def of(self, status: str) -> list[SessionResult]:
        return [r for r in self.results if r.status == status]

    @property
    def written(self) -> list[SessionResult]:
        return self.of("written")

    @property
    def skipped(self) -> list[SessionResult]:
        return self.of("skipped") + self.of("failed")

    def as_json(self) -> dict[str, Any]:
        counts = Counter(r.status for r in self.results)
        return {
            "dry_run": self.dry_run,
            "written": counts["written"],
            "unchanged": counts["unchanged"],
            "skipped": counts["skipped"],
            "failed": counts["failed"],
            "planned": counts["planned"],
            "not_closed": self.not_closed,
            "subagents_folded": self.subagents,
            "queued": self.queued,
            "indexed": self.indexed,
            "seconds": round(self.seconds, 3),
            "llm": self.llm,
            "problems": self.problems,
            "sessions": [r.as_json() for r in self.results if r.status != "unchanged"],
        }


# -- the pass ----------------------------------------------------------------------------------


@dataclass
class _Target:
    session_id: str
    path: Path
    agent: str
    started: str | None
    ended: str | None
    activity: float  # epoch seconds of the last sign of life
    reason: str  # new | grown | redo | queued
    original_gone: bool = False
    jobs: list[Path] = field(default_factory=list)  # queue files this target settles


@dataclass
class _Existing:
    """The summaries already on disk for one session."""

    paths: list[Path] = field(default_factory=list)
    newest: Path | None = None
    newest_version: int = 0
    sha256: str | None = None


def compress(
    cfg: Config,
    *,
    runner: LLMRunner | None = None,
    jobs: int = 1,
    session_ids: Iterable[str] = (),
    since: str | None = None,
    all_sessions: bool = False,
    redo: bool = False,
    dry_run: bool = False,
    from_queue: bool = False,
    index: bool = True,
    embed: bool = True,
    window: int = DEFAULT_WINDOW,
    max_output_tokens: int = MAX_OUTPUT_TOKENS,
    pace_s: float = 0.0,
    now: float | None = None,
    wait: float = 600.0,
    progress: Progress | None = None,
) -> CompressReport:
    """Run one compression pass; see the module docstring for what it selects and writes.

    ``runner`` None means the extractive compressor.  ``from_queue`` limits the pass to the jobs
    the ``SessionEnd`` hook queued.  ``index`` brings the index up to date before (to list the
    sessions) and after (to index the new summaries).
    """
    started = time.perf_counter()
    report = CompressReport(dry_run=dry_run)
    lock = FileLock(str(cfg.home / "compress.lock"))
    try:
        lock.acquire(timeout=wait)
    except Timeout as exc:
        raise CompressBusy(
            f"another compression pass still holds {lock.lock_file} after {wait:.0f}s"
        ) from exc
    try:
        _clean_temp_files(cfg.compressed_dir)
        if index and not dry_run and not from_queue:  # queued jobs name their transcripts
            _ingest(cfg, embed=embed, report=report)
        state = _State.load(_state_path(cfg))
        existing = existing_summaries(cfg.compressed_dir)
        targets = _select(
            cfg,
            state,
            existing,
            report,
            session_ids=set(session_ids),
            since=since,
            all_sessions=all_sessions,
            redo=redo,
            from_queue=from_queue,
            now=time.time() if now is None else now,
        )
        worker = _Worker(
            cfg,
            runner,
            existing,
            state,
            window=window,
            max_output_tokens=max_output_tokens,
            pace_s=pace_s,
        )
        total = len(targets)
        done = 0
        done_lock = threading.Lock()

        def one(target: _Target) -> SessionResult:
            nonlocal done
            result = worker.plan(target) if dry_run else worker.run(target)
            with done_lock:
                done += 1
                if progress:
                    progress("compress", done, total)
            return result

        if jobs <= 1 or len(targets) <= 1:
            results = [one(t) for t in targets]
        else:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                results = list(pool.map(one, targets))
        report.results += results
        if not dry_run:
            for target, result in zip(targets, results, strict=True):
                _settle_jobs(target, result)
            state.save()
        if runner is not None:
            report.llm = runner.usage_dict()
        if index and not dry_run and report.written:
            _ingest(cfg, embed=embed, report=report)
            report.indexed = True
    finally:
        lock.release()
    report.seconds = time.perf_counter() - started
    return report


def _settle_jobs(target: _Target, result: SessionResult) -> None:
    """Remove the queue files a result settles; a failure or a budget stop keeps them queued."""
    if result.status in ("written", "unchanged") or (
        result.status == "skipped" and not result.reason.startswith("budget")
    ):
        for job in target.jobs:
            job.unlink(missing_ok=True)


def _ingest(cfg: Config, *, embed: bool, report: CompressReport) -> None:
    from ctxmill.ingest import ingest

    result = ingest(cfg, embed=embed)
    report.problems += [p for p in result.problems if "compressed" in p]


def _select(
    cfg: Config,
    state: _State,
    existing: dict[str, _Existing],
    report: CompressReport,
    *,
    session_ids: set[str],
    since: str | None,
    all_sessions: bool,
    redo: bool,
    from_queue: bool,
    now: float,
) -> list[_Target]:
    from ctxmill.hook import read_queue

    candidates: dict[str, _Target] = {}
    queued = read_queue(cfg.home, cfg.memory_root)
    report.queued = len(queued)
    for job in queued:
        path = Path(job.transcript_path)
        target = candidates.get(job.session_id)
        if target is None:
            target = _Target(job.session_id, path, "claude-code", None, None, 0.0, "queued")
            candidates[job.session_id] = target
        target.jobs.append(job.file)
    listed = [] if from_queue else _indexed_sessions(cfg)
    quiet_s = cfg.quiet_minutes * 60
    since_epoch = _epoch(since) if since else None
    for rec in listed:
        if rec.parent_id:
            report.subagents += 1
            continue
        if session_ids and rec.id not in session_ids:
            continue
        original = Path(rec.source_path)
        gone = not original.exists()
        path = Path(rec.archive_path) if gone and rec.archive_path else original
        if not path.exists():
            if rec.id not in existing and rec.id not in candidates:
                report.results.append(
                    SessionResult(rec.id, "skipped", f"transcript is gone: {rec.source_path}")
                )
            continue
        activity = max(_epoch(rec.ended) or 0.0, 0.0 if gone else original.stat().st_mtime)
        if since_epoch is not None and activity < since_epoch:
            continue
        if rec.id in candidates:
            queued_target = candidates[rec.id]
            queued_target.agent, queued_target.started, queued_target.ended = (
                rec.agent,
                rec.started,
                rec.ended,
            )
            continue
        if not session_ids and now - activity < quiet_s:
            report.not_closed += 1
            continue
        candidates[rec.id] = _Target(
            rec.id, path, rec.agent, rec.started, rec.ended, activity, "new", gone
        )
    for sid in session_ids - set(candidates):
        report.results.append(SessionResult(sid, "skipped", "no such session in the index"))
    targets: list[_Target] = []
    for target in candidates.values():
        known = existing.get(target.session_id)
        if known and known.newest is not None:
            if target.original_gone and not redo:
                # An archived copy cannot have grown since the original was summarised.
                result = SessionResult(target.session_id, "unchanged")
                report.results.append(result)
                _settle_jobs(target, result)
                continue
            target.reason = "redo" if redo else ("queued" if target.jobs else "grown")
            if (
                not redo
                and not all_sessions
                and not target.jobs
                and state.unchanged(target.session_id, target.path)
            ):
                report.results.append(SessionResult(target.session_id, "unchanged"))
                continue
        elif (
            not all_sessions
            and not target.jobs
            and not session_ids
            and state.settled_empty(target.session_id, target.path)
        ):
            continue  # read before and found nothing to summarise; it has not changed since
        targets.append(target)
    targets.sort(key=lambda t: (0 if t.jobs else 1, t.activity, t.session_id))
    return targets


def _indexed_sessions(cfg: Config) -> list[Any]:
    from ctxmill.model import Layer
    from ctxmill.store import open_store

    if not cfg.index_path.exists():
        return []
    store = open_store(cfg, readonly=True)
    try:
        return [r for r in store.list_sessions() if r.layer is Layer.RAW]
    finally:
        store.close()


class _Worker:
    """Compresses one target at a time; shared by the pass's threads."""

    def __init__(
        self,
        cfg: Config,
        runner: LLMRunner | None,
        existing: dict[str, _Existing],
        state: _State,
        *,
        window: int,
        max_output_tokens: int,
        pace_s: float,
    ) -> None:
        self.cfg = cfg
        self.runner = runner
        self.existing = existing
        self.state = state
        self.window = window
        self.max_output_tokens = max_output_tokens
        self.pacer = _Pacer(pace_s)
        self.stop = threading.Event()
        self._lock = threading.Lock()

    def _load(self, target: _Target) -> tuple[Session, list[Session], str] | SessionResult:
        """The session, its subagents and the sha256 of what was read; or why it was skipped."""
        if not target.path.exists():
            return SessionResult(
                target.session_id, "skipped", f"transcript not found: {target.path}"
            )
        if target.jobs and not target.original_gone:
            _settle(target.path)
        try:
            fmt = sources.detect(target.path)
            if fmt is None:
                return SessionResult(target.session_id, "skipped", "not a known transcript format")
            parsed = sources.parse_transcript(fmt, target.path)
            sha = _sha256(target.path, parsed.offset if fmt != "specstory" else None)
        except OSError as exc:
            return SessionResult(
                target.session_id, "skipped", f"cannot read: {exc.strerror or exc}"
            )
        main = next((s for s in parsed.sessions if s.id == target.session_id), None)
        if main is None:
            return SessionResult(
                target.session_id, "skipped", f"{target.path.name} holds no session with this id"
            )
        children = [s for s in parsed.sessions if s.parent_id == main.id and s is not main]
        children += _subagent_files(target.path, main.id)
        if not any(t.role in ("user", "assistant") and t.text.strip() for t in main.turns):
            self.state.remember(target.session_id, target.path, None, "empty")
            return SessionResult(target.session_id, "skipped", "empty session (no conversation)")
        return main, children, sha

    def plan(self, target: _Target) -> SessionResult:
        loaded = self._load(target)
        if isinstance(loaded, SessionResult):
            return loaded
        session, children, sha = loaded
        known = self.existing.get(target.session_id)
        if known and known.sha256 == sha and target.reason != "redo":
            return SessionResult(target.session_id, "unchanged")
        transcript = render_transcript(session)
        input_tokens = count_tokens(transcript) if self.runner else 0
        cost = None
        if self.runner is not None:
            cost = self.runner.backend.estimate_cost(input_tokens, TARGET_MAX)
        return SessionResult(
            target.session_id,
            "planned",
            target.reason,
            input_tokens=input_tokens or int(len(transcript) / CHARS_PER_TOKEN),
            cost_usd=cost,
            subagents=len(children),
        )

    def run(self, target: _Target) -> SessionResult:
        if self.stop.is_set():
            return SessionResult(
                target.session_id, "skipped", "budget exhausted earlier in the pass"
            )
        loaded = self._load(target)
        if isinstance(loaded, SessionResult):
            return loaded
        session, children, sha = loaded
        known = self.existing.get(target.session_id) or _Existing()
        if known.sha256 == sha and target.reason != "redo":
            self.state.remember(target.session_id, target.path, sha, "unchanged")
            return SessionResult(target.session_id, "unchanged")
        draft = analyse(session, children)
        try:
            if self.runner is None:
                body = extractive_body(draft)
                compressor = {
                    "backend": "extractive",
                    "model": None,
                    "prompt_version": EXTRACTIVE_VERSION,
                }
            else:
                body, model = model_body(
                    draft,
                    self.runner,
                    window=self.window,
                    max_output_tokens=self.max_output_tokens,
                    before_call=self.pacer.wait,
                )
                compressor = {
                    "backend": self.runner.backend.name,
                    "model": model,
                    "prompt_version": PROMPT_VERSION,
                }
        except BudgetExceeded as exc:
            self.stop.set()
            return SessionResult(target.session_id, "skipped", f"budget: {exc}")
        except LLMError as exc:
            return SessionResult(target.session_id, "failed", f"model: {exc}")
        except SummaryRejected as exc:
            return SessionResult(
                target.session_id,
                "failed",
                f"the model's summary failed validation twice, not written: {exc}",
            )
        with self._lock:
            version = known.newest_version + 1
            supersedes = (
                known.newest.relative_to(self.cfg.compressed_dir).as_posix()
                if known.newest
                else None
            )
            text = summary_text(draft, body, sha=sha, compressor=compressor, supersedes=supersedes)
            problems = validate_summary(text)
            if problems:
                return SessionResult(
                    target.session_id,
                    "failed",
                    "invalid summary, not written: " + "; ".join(problems),
                )
            folder = self.cfg.compressed_dir / _year(session)
            name = f"{session.id}.md" if version == 1 else f"{session.id}.{version}.md"
            try:
                path = write_atomic(folder / name, text)
            except OSError as exc:
                return SessionResult(
                    target.session_id,
                    "failed",
                    f"cannot write {folder / name}: {exc.strerror or exc}",
                )
            known.paths.append(path)
            known.newest, known.newest_version, known.sha256 = path, version, sha
            self.existing[target.session_id] = known
        self.state.remember(target.session_id, target.path, sha, "written")
        _, body_text, _ = split_summary(text)
        return SessionResult(
            target.session_id,
            "written",
            target.reason,
            path=str(path),
            supersedes=supersedes,
            tokens=count_tokens(body_text.strip()),
            subagents=len(children),
        )


class _Pacer:
    """At most one model request per ``interval`` seconds across all threads of a pass."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._next = 0.0

    def wait(self) -> None:
        if self.interval <= 0:
            return
        with self._lock:
            now = time.monotonic()
            at = max(now, self._next)
            self._next = at + self.interval
        if at > now:
            time.sleep(at - now)


# -- files on disk -----------------------------------------------------------------------------

_VERSION_RE = re.compile(r"^(?P<sid>.+?)(?:\.(?P<n>\d+))?\.md$")


def existing_summaries(compressed_dir: Path) -> dict[str, _Existing]:
    """Every session's summaries on disk, with the newest one's ``source_sha256``."""
    out: dict[str, _Existing] = {}
    if not compressed_dir.is_dir():
        return out
    for path in sorted(compressed_dir.rglob("*.md")):
        front = _front_matter(path)
        sid = front.get("session_id") if front else None
        if not isinstance(sid, str):
            continue
        m = _VERSION_RE.match(path.name)
        version = int(m["n"]) if m and m["n"] and m["sid"] == sid else 1
        entry = out.setdefault(sid, _Existing())
        entry.paths.append(path)
        if version >= entry.newest_version:
            entry.newest, entry.newest_version = path, version
            sha = front.get("source_sha256") if front else None
            entry.sha256 = sha if isinstance(sha, str) else None
    return out


def _front_matter(path: Path) -> dict[str, Any] | None:
    try:
        with path.open(encoding="utf-8") as fh:
            if fh.readline() != "---\n":
                return None
            lines: list[str] = []
            for line in fh:
                if line == "---\n":
                    break
                lines.append(line)
    except (OSError, UnicodeDecodeError):
        return None
    try:
        data = yaml.load("".join(lines), Loader=_Loader)
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a hidden temp file; never replaces an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        raise FileExistsError(f"{path} exists; summaries are append-only")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with tmp.open("x", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _clean_temp_files(compressed_dir: Path) -> None:
    """Remove temp files a killed pass left behind (the pass lock says none is in use)."""
    if compressed_dir.is_dir():
        for tmp in compressed_dir.rglob(".*.tmp"):
            tmp.unlink(missing_ok=True)


def _sha256(path: Path, length: int | None) -> str:
    """sha256 of the transcript's bytes as the parser read them (the first ``length`` bytes of
    the decompressed stream: a half-written last line is not part of what was summarised)."""
    digest = hashlib.sha256()
    remaining = length
    with gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb") as fh:
        while remaining is None or remaining > 0:
            block = fh.read(1 << 20 if remaining is None else min(1 << 20, remaining))
            if not block:
                break
            digest.update(block)
            if remaining is not None:
                remaining -= len(block)
    return digest.hexdigest()


def _subagent_files(transcript: Path, session_id: str) -> list[Session]:
    """Subagent sessions in Claude Code's ``<id>/subagents/`` folder beside the transcript."""
    folder = transcript.parent / file_stem(transcript) / "subagents"
    if not folder.is_dir():
        return []
    found: list[Session] = []
    for path in sorted(folder.rglob("agent-*.jsonl*")):
        try:
            parsed = sources.parse_transcript("claude-code", path)
        except OSError:
            continue
        found += [s for s in parsed.sessions if s.parent_id == session_id and s.turns]
    return found


def _settle(path: Path, limit_s: float = 10.0) -> None:
    """Wait (bounded) until a just-ended session's transcript stops changing: Claude Code writes
    it asynchronously and the hook may run before the last turn is on disk."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            age = time.time() - path.stat().st_mtime
        except OSError:
            return
        if age >= SETTLE_S:
            return
        time.sleep(min(SETTLE_S - age, 0.5) + 0.01)


def _year(session: Session) -> str:
    for when in (session.started, session.ended):
        if when and re.match(r"\d{4}-", when):
            return when[:4]
    return str(datetime.now(UTC).year)


def _epoch(when: str | None) -> float | None:
    if not when:
        return None
    try:
        parsed = datetime.fromisoformat(when.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _state_path(cfg: Config) -> Path:
    return cfg.index_path.with_name(cfg.index_path.stem + ".compress.json")


class _State:
    """What the last passes saw of each transcript (size, mtime, sha256): a cache, never truth.

    Losing it costs one re-hash per session; the summaries on disk decide what is up to date.
    """

    def __init__(self, path: Path, data: dict[str, dict[str, Any]]) -> None:
        self.path = path
        self.data = data
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path) -> _State:
        try:
            data = json.loads(path.read_text(encoding="utf-8")).get("sessions", {})
        except (OSError, ValueError, AttributeError):
            data = {}
        return cls(path, data if isinstance(data, dict) else {})

    def _stat(self, path: Path) -> tuple[int, float] | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return st.st_size, st.st_mtime

    def unchanged(self, sid: str, path: Path) -> bool:
        entry = self.data.get(sid)
        stat = self._stat(path)
        return bool(
            entry
            and stat
            and entry.get("path") == str(path)
            and (entry.get("size"), entry.get("mtime")) == stat
            and entry.get("status") in ("written", "unchanged")
        )

    def settled_empty(self, sid: str, path: Path) -> bool:
        entry = self.data.get(sid)
        stat = self._stat(path)
        return bool(
            entry
            and stat
            and entry.get("status") == "empty"
            and (entry.get("size"), entry.get("mtime")) == stat
        )

    def remember(self, sid: str, path: Path, sha: str | None, status: str) -> None:
        stat = self._stat(path)
        if stat is None:
            return
        with self._lock:
            self.data[sid] = {
                "path": str(path),
                "size": stat[0],
                "mtime": stat[1],
                "sha256": sha,
                "status": status,
            }

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with self._lock:
            payload = json.dumps({"sessions": self.data}, indent=0)
        try:
            tmp.write_text(payload, encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)  # only a cache: the next pass re-hashes


# -- reading a session -------------------------------------------------------------------------

EDIT_TOOLS = frozenset(
    {"Write", "Edit", "MultiEdit", "NotebookEdit", "apply_patch", "write_file", "edit_file",
     "replace", "create_file", "str_replace_editor"}
)  # fmt: skip
_FENCED_RE = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(\[*_])|\n+")
_BULLET_RE = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+")
_MD_HEADING_RE = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_INTERRUPTED_RE = re.compile(r"^\[Request interrupted", re.IGNORECASE)
_CODEX_REQUEST_RE = re.compile(r"## My request for Codex:\s*", re.IGNORECASE)

_DECISION_STRONG = re.compile(
    r"\b(decided|decide to|decision|going with|go with|instead of|rather than|chose|chosen|"
    r"opted|opt for|settled on|switch(?:ed|ing)? to|we'll use|we will use|let's use|let's go with|"
    r"let's keep|keep using|stick with|the plan is|approach is)\b",
    re.IGNORECASE,
)
# What a user tells the agent to do or not to do is a decision, with or without the word.
_USER_DIRECTIVE = re.compile(
    r"\b(i don't want|i do not want|i'm not shipping|not shipping|we need|we must|must not|"
    r"don't use|do not use|never|no more|revert|keep (?:the|it|using)|decide[sd]?)\b",
    re.IGNORECASE,
)
_DECISION_WEAK = re.compile(r"\b(we'll|we will|let's|plan|approach|use)\b", re.IGNORECASE)
_WHY = re.compile(
    r"\b(because|since|so that|due to|in order to|to avoid|to keep|otherwise|which means)\b",
    re.IGNORECASE,
)
_FAIL_STRONG = re.compile(
    r"\b(failed|fails|failing|failure|didn't work|did not work|doesn't work|does not work|"
    r"not working|broke|broken|revert(?:ed|ing)?|roll(?:ed)? back|rolled back|undid|undo|"
    r"abandon(?:ed)?|gave up|give up|dead end|no luck|won't work|still fail\w*|couldn't|"
    r"could not|unable to)\b",
    re.IGNORECASE,
)
_FAIL_WEAK = re.compile(r"\b(error|errors|wrong|mistake|exception|traceback|crash\w*|bug)\b", re.I)
_OPEN = re.compile(
    r"\b(todo(?!\.\w)|to-do|fixme|follow[- ]?up|next steps?|remaining|still need\w*|still to|not yet|"
    r"left to|open question|pending|unresolved|we should|you (?:may|might|could) want|"
    r"consider|later|future|out of scope|deferred|postpone\w*|haven't|has not been|"
    r"needs? to be|comes? first|i'll do that|will do that|tomorrow|next time)\b",
    re.IGNORECASE,
)
_DONE = re.compile(
    r"(\b(done|completed?|finished|fixed|implemented|resolved|all tests pass\w*|tests pass\w*|"
    r"successfully|now works|is working|works now|updated|created|added|merged|committed|"
    r"ready)\b|✅)",
    re.IGNORECASE,
)
_STOPWORDS = frozenset(
    """about above after again against also because been before being below between both but
    could does doing down during each few from further have having here into just more most
    must need only other over same should some such than that their them then there these they
    this those through under until very what when where which while will with would your yours
    file files code line lines make sure let like want please using used uses first need
    now see check look think going still already well also okay sure know thing things
    session user assistant tool turn turns output input true false none null error""".split()
)
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{3,}")
_INTENT = re.compile(
    r"\b(make sure|ensure|to verify|to check|check (?:if|whether|that)|let me know)\b"
    r"|^(?:now,? |first,? |next,? |ok(?:ay)?,? )?(?:let me|i'll (?:start|now|first|check|read|"
    r"look|run|analy[sz]e|create|update|search|examine|review))\b",
    re.IGNORECASE,
)
_KEY_COMMAND = re.compile(r"\b(test|pytest|build|migrat\w*|deploy|commit|push|install|lint)\b")


@dataclass(frozen=True)
class _Item:
    """A candidate line: picked by ``score``, printed in ``turn`` order."""

    score: float
    turn: int
    line: str


@dataclass
class Draft:
    """What the compressors need from a session, computed once."""

    session: Session
    children: list[Session]
    goal: str
    outcome: str
    topics: list[str]
    files: list[str]
    edited: list[str]
    commands: list[str]
    source_tokens: int
    transcript: str
    items: dict[str, list[_Item]]  # section → candidate lines
    fixed: dict[str, list[str]]  # section → lines always written


def _real_user_turns(session: Session) -> list[Turn]:
    out = []
    for turn in session.turns:
        if turn.role != "user":
            continue
        text = turn.text.strip()
        if not text or _INTERRUPTED_RE.match(text):
            continue
        if re.fullmatch(r"/[\w:-]+", text):  # a bare slash command such as /clear
            continue
        if text.startswith("<task-notification>"):  # the harness reporting a background task
            continue
        out.append(turn)
    return out


def _request_text(text: str) -> str:
    # Codex prepends the IDE context; the user's words follow this marker.
    m = _CODEX_REQUEST_RE.search(text)
    return text[m.end() :] if m else text


def _prose(text: str) -> str:
    """A turn's text without code blocks, tool-call lines and thinking markers."""
    text = _FENCED_RE.sub(" ", text)
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("→ ")]
    return "\n".join(lines).replace("(thinking) ", "")


def _sentences(text: str) -> Iterator[str]:
    for raw in _SENTENCE_RE.split(_prose(text)):
        s = _BULLET_RE.sub("", raw.strip()).strip(" *_#>|")
        s = re.sub(r"\*\*(.+?)\*\*", r"\1", s)
        if 25 <= len(s) <= 400 and re.search(r"[A-Za-z]{3}", s):
            yield " ".join(s.split())


def _cap(text: str, limit: int) -> str:
    return one_line(text, limit)


def _ref(turn: Turn) -> str:
    return f"(turn {turn.n})"


def _error_line(text: str) -> str:
    """The most telling line of a failed tool result, verbatim (trimmed to one line)."""
    body = re.sub(r"^ERROR(?: \(exit \d+\))?:\s*", "", text.strip())
    body = re.sub(r"</?tool_use_error>", "", body).replace("\\n", "\n")
    lines = [ln.strip() for ln in body.splitlines() if ln.strip()]
    for ln in lines:
        if re.search(r"error|exception|failed|fatal|denied|not found|no such", ln, re.I):
            return _cap(ln, 200)
    return _cap(lines[0], 200) if lines else "(no output)"


def _tool_errors(session: Session) -> list[_Item]:
    """One line per failed tool call, paired with the call that produced it, error verbatim."""
    out: list[_Item] = []
    pending: list[Any] = []
    seen: set[str] = set()
    for turn in session.turns:
        if turn.role == "assistant":
            pending = list(turn.tool_calls)
            continue
        if turn.role != "tool":
            continue
        call = pending.pop(0) if pending else None
        text = turn.text.strip()
        if not text.startswith("ERROR") or "Sibling tool call errored" in text:
            continue
        label = f"`{_cap(call.command or call.summary, 120)}`" if call else "A tool call"
        if "doesn't want to proceed" in text or "was rejected" in text:
            line, score = f"- {label} was rejected by the user {_ref(turn)}", 1.5
        else:
            line = f"- {label} failed: {_error_line(text)} {_ref(turn)}"
            score = 2.5 if call and call.command else 2.0
        key = line.rsplit(" (turn ", 1)[0]
        if key not in seen:
            seen.add(key)
            out.append(_Item(score, turn.n, line))
    return out


def render_transcript(session: Session, *, tool_chars: int = 600, turn_chars: int = 4000) -> str:
    """The pre-stripped transcript a model reads: one block per turn, tool output cut short."""
    parts = []
    for turn in session.turns:
        limit = tool_chars if turn.role == "tool" else turn_chars
        text = turn.text.strip()
        if len(text) > limit:
            cut = len(text) - limit
            text = f"{text[: limit * 2 // 3]}\n[… {cut} chars elided …]\n{text[-limit // 3 :]}"
        parts.append(f"[turn {turn.n}] {turn.role.upper()}: {text}")
    return "\n\n".join(parts)


_LATE = 10**9  # sorts after every turn


def analyse(session: Session, children: list[Session] | None = None) -> Draft:
    """Everything both compressors need, found by rules (see :func:`extractive_body`)."""
    # Compaction helpers re-summarise the parent's own conversation: nothing new to fold in.
    children = [c for c in children or [] if not c.id.startswith("agent-acompact")]
    users = _real_user_turns(session)
    first = users[0] if users else None
    transcript = render_transcript(session)
    files = _unique([*session.files_touched, *(f for c in children for f in c.files_touched)])
    edited = _unique(
        f for s in (session, *children) for t in s.turns for c in t.tool_calls
        if c.name in EDIT_TOOLS for f in c.files
    )  # fmt: skip
    commands = _unique([*session.commands, *(c for ch in children for c in ch.commands)])
    items: dict[str, list[_Item]] = {h: [] for h in HEADINGS}
    fixed: dict[str, list[str]] = {h: [] for h in HEADINGS}
    happened = items["What happened"]

    # What happened: counts, later requests, commands, subagents, how it ended.
    fixed["What happened"].append(_stats_line(session, children))
    for turn in users[1:]:
        happened.append(
            _Item(3.0, turn.n, f"- Asked: {_cap(_request_text(turn.text), 220)} {_ref(turn)}")
        )
    shown: set[str] = set()
    for turn in session.turns:
        for cmd in turn.commands:
            if cmd not in shown:
                shown.add(cmd)
                score = 2.4 if _KEY_COMMAND.search(cmd) else 2.2
                happened.append(_Item(score, turn.n, f"- Ran `{_cap(cmd, 160)}`"))
        if turn.role == "summary":
            happened.append(
                _Item(1.0, turn.n, f"- Context compacted {_ref(turn)}: {_cap(turn.text, 200)}")
            )
    for child in children:
        happened.append(_Item(2.6, _LATE - 1, _subagent_line(child)))
    assistants = [t for t in session.turns if t.role == "assistant" and _prose(t.text).strip()]
    last = assistants[-1] if assistants else None
    for turn in assistants:
        for m in _MD_HEADING_RE.finditer(_prose(turn.text)):
            title = m.group(1).replace("**", "").strip(" *_")
            if len(title) >= 12:
                happened.append(_Item(0.8, turn.n, f"- {_cap(title, 160)} {_ref(turn)}"))
        first_sentence = next(_sentences(turn.text), None)
        if first_sentence and turn is not last:
            happened.append(_Item(0.6, turn.n, f"- {_cap(first_sentence, 200)} {_ref(turn)}"))
    if last is not None:
        ending = " ".join(list(_sentences(last.text))[:6])
        if ending:
            happened.append(_Item(3.5, _LATE, f"- Ended with: {_cap(ending, 700)} {_ref(last)}"))

    # Decisions, failures and open threads from what was said.
    items["Failed attempts and why"] += _tool_errors(session)
    _said(session, items)
    tail = _unanswered(session)
    if tail:
        fixed["Open threads"].append(tail)
    for i, line in enumerate(_file_lines(files, edited, children)):
        items["Files"].append(_Item(4.0 - i * 0.001, i, line))
    return Draft(
        session=session,
        children=children,
        goal=_goal(first, session),
        outcome=_outcome(session, last),
        topics=_topics(session),
        files=files,
        edited=edited,
        commands=commands,
        source_tokens=int(len(transcript) / CHARS_PER_TOKEN),
        transcript=transcript,
        items=items,
        fixed=fixed,
    )


def _filler(session: Session, items: dict[str, list[_Item]]) -> list[_Item]:
    """Plain narration for a session whose rules-based lines fall short of the minimum length:
    the rest of what was said, then what each tool call returned (its first line)."""
    used = {it.line.rsplit(" (turn ", 1)[0] for lines in items.values() for it in lines}
    out: list[_Item] = []
    pending: list[Any] = []
    for turn in session.turns:
        if turn.role in ("user", "assistant"):
            pending = list(turn.tool_calls)
            for s in _sentences(turn.text):
                line = f"- {_cap(s, 240)}"
                if line not in used:
                    out.append(_Item(0.3, turn.n, f"{line} {_ref(turn)}"))
        elif turn.role == "tool" and pending:
            call = pending.pop(0)
            first = next((ln.strip() for ln in turn.text.splitlines() if ln.strip()), "")
            if first and not turn.text.startswith("ERROR"):
                label = _cap(call.command or f"{call.name} {call.summary}", 100)
                out.append(_Item(0.2, turn.n, f"- `{label}` → {_cap(first, 160)} {_ref(turn)}"))
    return out


def _said(session: Session, items: dict[str, list[_Item]]) -> None:
    """Sort the sentences of user and assistant turns into decisions, failures, open threads."""
    seen: set[str] = set()
    cutoff = session.turns[-1].n * 0.6 if session.turns else 0
    for turn in session.turns:
        if turn.role not in ("user", "assistant"):
            continue
        text = _request_text(turn.text) if turn.role == "user" else turn.text
        for s in _sentences(text):
            key = s.lower()[:120]
            # "Let me run the tests to make sure nothing broke:" announces a step; it is no
            # decision, failure or open thread.
            if key in seen or s.endswith(":") or _INTENT.search(s):
                continue
            line = f"- {_cap(s, 300)} {_ref(turn)}"
            why = 1.0 if _WHY.search(s) else 0.0
            user = 0.5 if turn.role == "user" else 0.0
            section, score = None, 0.0
            if s.endswith("?"):
                pass  # a question decides nothing; it may still be an open thread below
            elif user and _USER_DIRECTIVE.search(s):
                section, score = "Decisions and why", 2.5 + why
            elif _FAIL_STRONG.search(s):
                section, score = "Failed attempts and why", 2.0 + why
            elif _DECISION_STRONG.search(s):
                section, score = "Decisions and why", 2.0 + why + user
            elif why and _DECISION_WEAK.search(s):
                section, score = "Decisions and why", 1.2 + user
            elif why and _FAIL_WEAK.search(s):
                section, score = "Failed attempts and why", 0.9
            elif why and user:
                section, score = "Decisions and why", 0.7
            if section:
                items[section].append(_Item(score, turn.n, line))
                seen.add(key)
            late = turn.n >= cutoff
            if _OPEN.search(s) and (late or re.search(r"todo|fixme|follow", s, re.I)):
                items["Open threads"].append(_Item(1.5 + late, turn.n, line))
                seen.add(key)


def _goal(first: Turn | None, session: Session) -> str:
    if first is None:
        title = f" The session is titled “{session.title}”." if session.title else ""
        return f"No user request was recorded.{title}"
    text = _request_text(first.text).strip()
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]
    goal = "\n\n".join(paragraphs)
    if count_tokens(goal) > 220:
        from ctxmill.tokens import truncate_to_tokens

        goal = truncate_to_tokens(goal, 200).rstrip() + " …"
    title = f"\n\nSession title: {session.title}" if session.title else ""
    return f"{goal} {_ref(first)}{title}"


def _stats_line(session: Session, children: list[Session]) -> str:
    roles = Counter(t.role for t in session.turns)
    tools = Counter(c.name for t in session.turns for c in t.tool_calls)
    top = ", ".join(f"{name} ×{n}" for name, n in tools.most_common(6))
    when = f" from {session.started} to {session.ended}" if session.started else ""
    line = (
        f"- {len(session.turns)} turns ({roles['user']} user, {roles['assistant']} assistant, "
        f"{roles['tool']} tool results){when}"
    )
    if top:
        line += f"; tools: {top}"
    if children:
        line += f"; {len(children)} subagent run(s) folded in"
    return line + "."


def _subagent_line(child: Session) -> str:
    prompt = next((t.text for t in child.turns if t.role == "user" and t.text.strip()), "")
    answers = [t for t in child.turns if t.role == "assistant" and _prose(t.text).strip()]
    answer = next(_sentences(answers[-1].text), "") if answers else ""
    line = f"- Subagent `{child.id}`: {_cap(prompt, 160)}"
    return line + (f" → {_cap(answer, 200)}" if answer else "")


def _outcome(session: Session, last: Turn | None) -> str:
    tail = [t for t in session.turns if t.role in ("user", "assistant")]
    if not tail:
        return "unknown"
    final = tail[-1]
    if final.role == "user" and _INTERRUPTED_RE.match(final.text.strip()):
        return "abandoned"
    if last is None:
        return "abandoned"
    text = _prose(last.text)
    ending = text[-600:]
    if _FAIL_STRONG.search(ending) and not _DONE.search(ending):
        return "abandoned"
    if _DONE.search(ending):
        return "completed"
    return "unknown"


def _unanswered(session: Session) -> str | None:
    """The last user request when nothing after it answered it (interrupted or left open)."""
    users = _real_user_turns(session)
    if not users:
        return None
    last_user = users[-1]
    answered = any(t.role == "assistant" and t.n > last_user.n for t in session.turns)
    interrupted = any(
        t.role == "user" and t.n > last_user.n and _INTERRUPTED_RE.match(t.text.strip())
        for t in session.turns
    )
    if answered and not interrupted:
        return None
    state = "interrupted" if interrupted else "not answered"
    return f"- Last request, {state}: {_cap(_request_text(last_user.text), 240)} {_ref(last_user)}"


def _file_lines(files: list[str], edited: list[str], children: list[Session]) -> list[str]:
    from_children = {f for c in children for f in c.files_touched}
    lines = []
    for f in edited:
        lines.append(f"- `{f}` (edited)")
    for f in files:
        if f in edited:
            continue
        note = " (read by a subagent)" if f in from_children else " (read)"
        lines.append(f"- `{f}`{note}")
    return lines


def _topics(session: Session, n: int = 6) -> list[str]:
    """A few keywords for routing: words of the title and the user's requests, by frequency."""
    counts: Counter[str] = Counter()
    texts = [session.title or ""] * 3 + [_request_text(t.text) for t in _real_user_turns(session)]
    for text in texts:
        for w in _WORD_RE.findall(_prose(text)):
            lw = w.lower().strip("-_")
            if len(lw) >= 4 and lw not in _STOPWORDS and not lw.isdigit():
                counts[lw] += 1
    return [w for w, _ in counts.most_common(n)]


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


# -- the extractive compressor -----------------------------------------------------------------

_SECTION_WEIGHT = {
    "Goal": 1.0,
    "What happened": 1.0,
    "Decisions and why": 1.3,
    "Failed attempts and why": 1.3,
    "Open threads": 1.2,
    "Files": 1.0,
}
_SECTION_CAP = {  # tokens, so that no section crowds out the rest
    "What happened": 650,
    "Decisions and why": 350,
    "Failed attempts and why": 300,
    "Open threads": 200,
    "Files": 280,
}
_EMPTY = {
    "What happened": "None recorded.",
    "Decisions and why": "None recorded.",
    "Failed attempts and why": "None recorded.",
    "Open threads": "None recorded.",
    "Files": "No files were read or written through tools.",
}
_FILL_TO = 1_200  # stop adding lines here, leaving room under TARGET_MAX
_FLOOR = TARGET_MIN + 60  # filler stops here, with a margin for how the count varies when joined


def extractive_body(draft: Draft, *, sections_from: tuple[str, ...] = HEADINGS) -> str:
    """The summary body by rules, no model.

    - Goal: the first real user request (interruptions, bare slash commands and harness
      notifications skipped), trimmed to about 200 tokens, with the session title if recorded.
    - What happened: turn and tool counts, every later user request, the commands run
      (verbatim), one line per folded subagent, the assistant's own section headings and opening
      sentences, and how the session ended.
    - Decisions and why: sentences that state a choice ("decided", "going with", "instead of",
      "chose", "switch to", …), ranked up when they give a reason ("because", "so that", …).
    - Failed attempts and why: failed tool calls with their error line verbatim, and sentences
      with failure or revert language ("didn't work", "reverted", "gave up", …).
    - Open threads: a last request left unanswered or interrupted, and TODO / follow-up /
      "not yet" sentences from the last 40% of the session.
    - Files: every file touched through tools, edited ones first.

    Lines are taken best score first until the body nears 1,200 tokens, each section within its
    own cap, then printed in session order; each line names the turn it came from.
    """
    chosen: dict[str, list[_Item]] = {h: [] for h in HEADINGS}
    used = dict.fromkeys(HEADINGS, 0)
    total = count_tokens(draft.goal) + sum(
        count_tokens(line) + 1 for lines in draft.fixed.values() for line in lines
    )
    pool = [
        (item.score * _SECTION_WEIGHT[h], h, item) for h in sections_from for item in draft.items[h]
    ]
    pool.sort(key=lambda p: -p[0])
    for _, heading, item in pool:
        cost = count_tokens(item.line) + 1
        if used[heading] + cost > _SECTION_CAP.get(heading, _FILL_TO) or total + cost > _FILL_TO:
            continue
        chosen[heading].append(item)
        used[heading] += cost
        total += cost
    if "What happened" in sections_from and draft.source_tokens >= SHORT_SOURCE_TOKENS:
        # Computed only here: few sessions need it, and it reads every turn again.
        for item in sorted(
            _filler(draft.session, draft.items), key=lambda it: (-it.score, it.turn)
        ):
            if total >= _FLOOR:
                break
            chosen["What happened"].append(item)
            total += count_tokens(item.line) + 1
    return _render_body(draft, chosen)


def _render_body(draft: Draft, chosen: dict[str, list[_Item]]) -> str:
    out: list[str] = []
    for heading in HEADINGS:
        if heading == "Goal":
            out.append(f"## Goal\n\n{draft.goal}\n")
            continue
        picked = sorted(chosen[heading], key=lambda it: it.turn)
        lines = [*draft.fixed[heading], *(it.line for it in picked)]
        if heading == "What happened":
            ran = sum(1 for it in picked if it.line.startswith("- Ran `"))
            if len(draft.commands) > ran:
                lines.append(
                    f"- … and {len(draft.commands) - ran} more command(s), all listed in "
                    "`commands` above"
                )
        if heading == "Files" and len(draft.items["Files"]) > len(picked):
            more = len(draft.items["Files"]) - len(picked)
            lines.append(f"- … and {more} more, all listed in `files_touched` above")
        out.append(f"## {heading}\n\n" + "\n".join(lines or [_EMPTY[heading]]) + "\n")
    return "\n".join(out)


# -- the model compressor ----------------------------------------------------------------------

_NARRATIVE = HEADINGS[:-1]  # the model writes these; the system writes ## Files

SYSTEM_PROMPT = """You write the summary of one coding-agent session for a team's long-term memory.
Write markdown with exactly these five headings, in this order, and no other headings:

## Goal
## What happened
## Decisions and why
## Failed attempts and why
## Open threads

Rules:
- Between 350 and 1000 words in total. Bullet points are fine.
- Keep file paths, commands, identifiers, error messages and numbers exactly as written, in backticks.
- Under "Decisions and why" give each decision with its reason; under "Failed attempts and why"
  each thing that did not work and why it failed.
- Write "None recorded." under a heading with nothing to say.
- Only state what the transcript shows. No preamble, no closing remarks, no front matter."""

_MAP_PROMPT = """Below is part {i} of {n} of a coding-agent session transcript ({project}).
Write notes on this part under the five headings (## Goal, ## What happened, ## Decisions and why,
## Failed attempts and why, ## Open threads), at most 350 words, keeping paths, commands, errors and
numbers verbatim.

{chunk}"""

_FINAL_PROMPT = """Summarise this coding-agent session.
Project: {project}; branch: {branch}; {started} to {ended}; {n_files} files touched.

{material}"""

_MERGE_MATERIAL = """Notes on consecutive parts of the session, in order:

{notes}"""

_RETRY_PROMPT = """That summary was rejected: {problems}.
Write the whole summary again with exactly the five headings in order (## Goal, ## What happened,
## Decisions and why, ## Failed attempts and why, ## Open threads), 350 to 1000 words."""


def model_body(
    draft: Draft,
    runner: LLMRunner,
    *,
    window: int = DEFAULT_WINDOW,
    max_output_tokens: int = MAX_OUTPUT_TOKENS,
    before_call: Callable[[], None] = lambda: None,
) -> tuple[str, str]:
    """``(body, model)``: the model writes the narrative sections, the system adds ``## Files``.

    A transcript longer than ``window`` tokens is cut at turn boundaries into windows; each is
    summarised into notes and the notes are merged (in rounds, if they too pass the window).
    The final answer is checked with :func:`body_problems`; a failing one is retried once with
    the problems quoted back, then :class:`SummaryRejected` is raised.
    """
    s = draft.session
    chunks = _windows(draft.transcript, window)
    model = runner.backend.model
    if len(chunks) == 1:
        material = f"Transcript:\n\n{chunks[0]}"
    else:
        notes = []
        for i, chunk in enumerate(chunks, 1):
            before_call()
            prompt = _MAP_PROMPT.format(i=i, n=len(chunks), project=s.project or "-", chunk=chunk)
            done = runner.complete(prompt, system=SYSTEM_PROMPT, max_tokens=700, purpose="compress")
            notes.append(f"### Part {i}\n{_clean_model_text(done.text)}")
        while count_tokens("\n\n".join(notes)) > window and len(notes) > 1:
            notes = _merge_round(notes, runner, window, before_call)
        material = _MERGE_MATERIAL.format(notes="\n\n".join(notes))
    prompt = _FINAL_PROMPT.format(
        project=s.project or "-",
        branch=s.git_branch or "-",
        started=s.started or "?",
        ended=s.ended or "?",
        n_files=len(draft.files),
        material=material,
    )
    messages = [Message("user", prompt)]
    files = _files_section(draft)
    problems: list[str] = []
    for _attempt in range(2):
        before_call()
        done = runner.complete(
            messages, system=SYSTEM_PROMPT, max_tokens=max_output_tokens, purpose="compress"
        )
        model = done.model or model
        narrative = _normalise_headings(_clean_model_text(done.text))
        body, _ = redact(f"{narrative.strip()}\n\n{files}")
        problems = body_problems(body, source_tokens=draft.source_tokens)
        if not problems:
            return body, model
        messages += [
            Message("assistant", done.text or "(empty)"),
            Message("user", _RETRY_PROMPT.format(problems="; ".join(problems))),
        ]
    raise SummaryRejected(problems)


def _merge_round(
    notes: list[str], runner: LLMRunner, window: int, before_call: Callable[[], None]
) -> list[str]:
    merged: list[str] = []
    group: list[str] = []
    for note in [*notes, ""]:
        if note and (not group or count_tokens("\n\n".join([*group, note])) <= window // 2):
            group.append(note)
            continue
        if group:
            before_call()
            done = runner.complete(
                "Merge these notes on consecutive parts of one session into one set of notes "
                "under the same five headings, at most 500 words:\n\n" + "\n\n".join(group),
                system=SYSTEM_PROMPT,
                max_tokens=900,
                purpose="compress",
            )
            merged.append(f"### Parts {len(merged) + 1}\n{_clean_model_text(done.text)}")
        group = [note] if note else []
    return merged


def _windows(transcript: str, window: int) -> list[str]:
    """Cut at turn boundaries into pieces of at most ``window`` tokens (a longer turn is cut)."""
    if count_tokens(transcript) <= window:
        return [transcript]
    from ctxmill.tokens import truncate_to_tokens

    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for block in transcript.split("\n\n[turn "):
        block = block if block.startswith("[turn ") else "[turn " + block
        n = count_tokens(block)
        if n > window:
            block = truncate_to_tokens(block, window - 50) + " [… turn cut …]"
            n = window - 40
        if current and size + n > window:
            pieces.append("\n\n".join(current))
            current, size = [], 0
        current.append(block)
        size += n
    if current:
        pieces.append("\n\n".join(current))
    return pieces


def _clean_model_text(text: str) -> str:
    """The answer without a wrapping code fence and without chatter before the first heading."""
    text = text.strip()
    fence = re.match(r"^```[\w-]*\n(.*)\n```$", text, re.DOTALL)
    if fence:
        text = fence.group(1).strip()
    first = re.search(r"^#{1,3} ", text, re.MULTILINE)
    return text[first.start() :] if first else text


def _normalise_headings(text: str) -> str:
    """Accept a right heading in the wrong case or level (``# goal``); drop a ``## Files`` the
    model wrote (the system writes that one); leave anything else for the validator to reject."""
    canonical = {h.lower(): h for h in HEADINGS}
    out: list[str] = []
    skipping = False
    for line in text.splitlines():
        m = re.match(r"^#{1,4}\s+\**(.+?)\**\s*:?\s*$", line)
        if m and m.group(1).strip().lower() in canonical:
            name = canonical[m.group(1).strip().lower()]
            skipping = name == "Files"
            if not skipping:
                out.append(f"## {name}")
            continue
        if m and line.startswith("## "):
            skipping = False
        if not skipping:
            out.append(line)
    return "\n".join(out)


def _files_section(draft: Draft) -> str:
    body = extractive_body(draft, sections_from=("Files",))
    return "## Files\n" + sections(body)["Files"] + "\n"


# -- the file ----------------------------------------------------------------------------------


def summary_text(
    draft: Draft,
    body: str,
    *,
    sha: str,
    compressor: dict[str, Any],
    supersedes: str | None = None,
) -> str:
    """The full summary file: redacted front matter and body, ``tokens`` counted last."""
    s = draft.session
    body, _ = redact(body.strip())
    front: dict[str, Any] = {
        "session_id": s.id,
        "agent": s.agent,
        "project": s.project,
        "cwd": s.cwd,
        "git_branch": s.git_branch,
        "title": s.title,
        "started": s.started,
        "ended": s.ended,
        "files_touched": draft.files,
        "commands": draft.commands,
        "topics": draft.topics,
        "outcome": draft.outcome,
        "tokens": count_tokens(body),
        "source_tokens": draft.source_tokens,
        "compressor": compressor,
        "source_path": s.source_path,
        "source_sha256": sha,
        "subagents": [c.id for c in draft.children],
        "compressed_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    if supersedes:
        front["supersedes"] = supersedes
    return render_summary(_redact_value(front), body)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)[0]
    if isinstance(value, list):
        return [_redact_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    return value


def compress_session(
    session: Session,
    *,
    children: list[Session] | None = None,
    sha: str,
    runner: LLMRunner | None = None,
    window: int = DEFAULT_WINDOW,
    supersedes: str | None = None,
) -> str:
    """The summary file text for one parsed session (no disk access); raises on a bad summary."""
    draft = analyse(session, children)
    if runner is None:
        body = extractive_body(draft)
        compressor: dict[str, Any] = {
            "backend": "extractive",
            "model": None,
            "prompt_version": EXTRACTIVE_VERSION,
        }
    else:
        body, model = model_body(draft, runner, window=window)
        compressor = {
            "backend": runner.backend.name,
            "model": model,
            "prompt_version": PROMPT_VERSION,
        }
    text = summary_text(draft, body, sha=sha, compressor=compressor, supersedes=supersedes)
    problems = validate_summary(text)
    if problems:
        raise SummaryRejected(problems)
    return text


__all__ = [
    "DEFAULT_WINDOW",
    "EXTRACTIVE_VERSION",
    "PROMPT_VERSION",
    "TARGET_MAX",
    "TARGET_MIN",
    "CompressBusy",
    "CompressReport",
    "Draft",
    "SessionResult",
    "SummaryRejected",
    "analyse",
    "compress",
    "compress_session",
    "existing_summaries",
    "extractive_body",
    "headings",
    "model_body",
    "render_transcript",
    "summary_text",
    "validate_summary",
    "write_atomic",
]
