"""Bring the index up to date with every configured source, reading only what changed.

Each source file is handled in one transaction together with its bookkeeping row, so an ingest
killed at any point leaves the index as it was before that file, and the next run redoes exactly
the files that did not commit.  Append-only transcripts are tailed from where the last turn began;
a file whose head changed or that shrank is read again whole.

Raw transcripts read from an agent's own folder are archived, redacted and gzipped, under the memory
root's ``sessions/raw/`` so that history outlives the agent's clean-up: when the original is gone the
archive keeps the session in the index, and a ``reindex`` reads the archive instead.

Reading a transcript (parse, redact, compress its archive copy) needs nothing from the index, so on
a large ingest worker processes read the next files while this process writes the current one; the
writes, and so the transactions, stay in file order.
"""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from isal import igzip

from ctxmill import redact as redaction
from ctxmill import sources
from ctxmill.config import Config
from ctxmill.model import Chunk, Layer, Session, Tag
from ctxmill.sources import code as code_source
from ctxmill.sources import summaries as summary_source
from ctxmill.sources import topics as topic_source
from ctxmill.sources.base import ParseResult
from ctxmill.store import SQLiteStore, open_store
from ctxmill.store.base import SessionRecord, SourceState, Store

HEAD_BYTES = 4096
EMBED_BATCH = 2048
ROLES_EMBEDDED = frozenset({"user", "assistant", "summary"})
# The archive is written once and read back only by a reindex, so it is compressed for speed: ISA-L
# at level 1 writes standard gzip about 4x faster than zlib's level 1 (547 vs 134 MB/s of CPU on
# the synthetic transcripts) and a slightly smaller copy.
ARCHIVE_GZIP_LEVEL = 1
WORKERS_ENV = "CTXMILL_INGEST_WORKERS"
# Below this much transcript data to read, starting worker processes costs more than they save,
# and merging the FTS index once at the end (a bulk load) saves less than it costs.
LARGE_INGEST_BYTES = 64 << 20

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class IngestReport:
    files_seen: int = 0
    files_read: int = 0
    files_unchanged: int = 0
    files_tailed: int = 0
    bytes_read: int = 0
    sessions: int = 0
    headless_skipped: int = 0
    chunks_added: int = 0
    chunks_removed: int = 0
    secrets_redacted: int = 0
    vectors_added: int = 0
    archived: int = 0
    kept_from_archive: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    embed_seconds: float = 0.0
    workers: int = 0  # processes that read transcripts besides this one

    def as_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["problems"] = self.problems[:200]
        out["problem_count"] = len(self.problems)
        return out


class IngestBusy(Exception):
    """Another ingest holds the lock and did not finish in time."""


@dataclass
class _File:
    path: Path
    kind: str  # topic | summary | transcript | code
    agent: str | None = None
    agent_root: Path | None = None  # set for files in an agent's own folder: they get archived


# -- reading a transcript, in a worker process or in this one -----------------------------------


@dataclass(frozen=True)
class _Job:
    """What reading one changed transcript needs; it carries no handle on the index."""

    path: Path
    size: int
    mtime: float
    state: SourceState | None  # the bookkeeping row of the last run that read it
    archive: Path | None  # where its redacted copy goes (files in an agent's folder)
    archive_size: int | None  # the copy's size as the index recorded it
    forgotten: frozenset[str]


@dataclass
class _ArchiveCopy:
    begin: int  # 0: the payload is the whole copy; else it is appended (a gzip member)
    payload: bytes


@dataclass
class _Kept:
    """One session to index, redacted, and flat so that it crosses between processes cheaply."""

    session: Session  # its turns are in ``turns``
    turns: list[tuple[int, str, str, str | None]]  # (n, role, text, timestamp); blank ones left out
    last_turn: int | None  # the highest turn number read, blank turns included
    files: list[str]
    commands: list[str]


@dataclass
class _Read:
    """A transcript as read: sessions to index, redacted, and the archive copy to write."""

    head: str
    fmt: str | None
    tail: bool = False
    start: int = 0
    first_turn: int = 1
    result: ParseResult = field(default_factory=ParseResult)
    kept: list[_Kept] = field(default_factory=list)
    headless: int = 0
    secrets: int = 0
    archive: _ArchiveCopy | None = None


def _read_transcript(job: _Job) -> _Read:
    """Parse one transcript from where the last run left it, redact it, gzip its archive copy."""
    path = job.path
    head = _head_hash(path, min(HEAD_BYTES, job.size))
    fmt = sources.detect(path)
    if fmt is None:
        return _Read(head, None)
    state = job.state
    tail = (
        state is not None
        and sources.APPEND_ONLY.get(fmt, False)
        and state.head_hash == _head_hash(path, min(HEAD_BYTES, state.size))
        and job.size >= state.offset
        and not path.name.endswith(".gz")
    )
    start, first_turn = (state.resume_offset, state.resume_turn) if tail and state else (0, 1)
    if fmt in sources.DATABASE:
        # Rows change in place: no byte offset applies.  The last read's ``offset`` is the newest
        # change it saw; the sessions changed since are read again, whole.
        tail = state is not None and state.kind == fmt
        since = state.offset if tail and state else 0
        result = sources.parse_transcript(fmt, path, start=since)
    else:
        result = sources.parse_transcript(fmt, path, start=start, first_turn=first_turn)
    read = _Read(head, fmt, bool(tail), start, first_turn, result)
    for session in result.sessions:
        if session.headless:
            read.headless += 1
            continue
        if session.id in job.forgotten:
            continue
        title, n = redaction.redact(session.title or "")
        session.title = title or None
        read.secrets += n
        turns = []
        for turn in session.turns:
            text, n = redaction.redact(turn.text)
            read.secrets += n
            if text.strip():
                turns.append((turn.n, turn.role, text, turn.timestamp))
        last = max((t.n for t in session.turns), default=None)
        files, commands = session.files_touched, session.commands
        session.turns = []
        read.kept.append(_Kept(session, turns, last, files, commands))
    if job.archive is not None and read.kept and fmt not in sources.NO_ARCHIVE:
        read.archive = _archive_copy(job, state if tail else None, result.offset)
    return read


def _archive_copy(job: _Job, state: SourceState | None, end: int) -> _ArchiveCopy:
    """The redacted, gzipped bytes of what was read: all of it, or what follows the copy so far."""
    assert job.archive is not None
    begin = 0
    if state is not None and job.archive_size is not None:
        try:
            on_disk = job.archive.stat().st_size
        except FileNotFoundError:
            on_disk = -1
        if on_disk >= job.archive_size:
            begin = state.offset
    if begin and end <= begin:
        return _ArchiveCopy(begin, b"")
    with job.path.open("rb") as src:
        src.seek(begin)
        data = src.read(max(0, end - begin))
    clean, _ = redaction.redact_utf8(data)  # secrets are counted once, on the indexed text
    return _ArchiveCopy(begin, igzip.compress(clean, compresslevel=ARCHIVE_GZIP_LEVEL))


def _attempt(job: _Job) -> _Read | OSError:
    try:
        return _read_transcript(job)
    except OSError as exc:
        return exc


def _worker_start(parent: int) -> None:
    """Set up a worker: Ctrl-C is for the ingest to handle, and a worker whose ingest died (even
    by SIGKILL) exits instead of waiting for work forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="ctxmill-parent-watch", daemon=True).start()


def ingest(
    cfg: Config,
    *,
    embed: bool = True,
    progress: Progress | None = None,
    wait: float = 600.0,
    on_wait: Callable[[str], None] | None = None,
    workers: int | None = None,
) -> IngestReport:
    """Index everything that changed since the last run; returns what was done.

    ``workers`` is how many processes read transcripts on a large ingest (0: this process alone);
    by default ``$CTXMILL_INGEST_WORKERS``, else one per CPU core but one, up to three.
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        # A worker starts by importing the caller's main module; one that calls ingest() at its
        # top level would run it again in every worker, each waiting for the caller's lock.
        raise RuntimeError(
            "ingest() was called while an ingest worker was starting: put the calling script's "
            "code under `if __name__ == '__main__':`"
        )
    n_workers = worker_count(workers)
    lock = FileLock(str(cfg.home / "ingest.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if on_wait:
            on_wait(f"another ingest is running (lock {lock.lock_file}); waiting up to {wait:.0f}s")
        try:
            lock.acquire(timeout=wait)
        except Timeout as exc:
            raise IngestBusy(
                f"another ingest still holds {lock.lock_file} after {wait:.0f}s; try again later"
            ) from exc
    try:
        store = open_store(cfg)
        try:
            return _Ingest(cfg, store, progress, n_workers).run(embed=embed)
        finally:
            store.close()
    finally:
        lock.release()


def reindex(cfg: Config, **kwargs: Any) -> IngestReport:
    """Rebuild the index from the sources (and the raw archive where originals are gone)."""
    for suffix in ("", "-wal", "-shm"):
        Path(str(cfg.index_path) + suffix).unlink(missing_ok=True)
    return ingest(cfg, **kwargs)


def worker_count(requested: int | None = None) -> int:
    """Worker processes for reading transcripts: ``requested``, else ``$CTXMILL_INGEST_WORKERS``,
    else one per CPU core but the one this process writes the index on, up to three (writing is
    then the slower side)."""
    if requested is None:
        env = os.environ.get(WORKERS_ENV, "").strip()
        if not env:
            return max(0, min((os.cpu_count() or 1) - 1, 3))
        try:
            requested = int(env)
        except ValueError:
            raise ValueError(f"{WORKERS_ENV} must be a whole number, got {env!r}") from None
    return max(0, requested)


class _Ingest:
    def __init__(
        self, cfg: Config, store: Store, progress: Progress | None, workers: int = 0
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.progress = progress or (lambda stage, done, total: None)
        self.report = IngestReport()
        self.forgotten = frozenset(_forgotten(store))
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._pool_failed = False
        # A bulk load that a killed ingest left open is finished by this one.
        self._bulk = isinstance(store, SQLiteStore) and store.bulk_load_open()
        self._done = 0
        self._total = 0

    def run(self, *, embed: bool) -> IngestReport:
        try:
            return self._run(embed=embed)
        finally:
            self._close_pool()

    def _close_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _run(self, *, embed: bool) -> IngestReport:
        start = time.perf_counter()
        files = self._enumerate()
        self.report.files_seen = self._total = len(files)
        seen = {str(f.path) for f in files}
        summaries: list[Path] = []
        # Consecutive transcripts are read as a batch.  Agents' folders form their own batches:
        # the archive copies they write must be recorded before the archive folder is looked at.
        batches = itertools.groupby(files, key=lambda f: (f.kind, f.agent_root is not None))
        for (kind, _), batch in batches:
            if kind == "transcript":
                self._transcripts(list(batch))
                continue
            for f in batch:
                self._step()
                if f.kind == "summary":
                    summaries.append(f.path)
                    continue
                try:
                    if f.kind == "topic":
                        self._topic(f.path)
                    elif f.kind == "code":
                        self._code(f.path)
                except OSError as exc:
                    self._cannot_read(f.path, exc)
        self._close_pool()
        self._summaries(summaries)
        self._vanished(seen)
        if self._bulk and isinstance(self.store, SQLiteStore):
            self.store.end_bulk_load()
            self._bulk = False
        if embed and self.cfg.embedder != "none":
            t0 = time.perf_counter()
            self._embed()
            self.report.embed_seconds = time.perf_counter() - t0
        self.report.seconds = time.perf_counter() - start
        return self.report

    # -- enumeration ------------------------------------------------------------------------
    def _enumerate(self) -> list[_File]:
        cfg = self.cfg
        files: list[_File] = []
        # Agents' folders first: reading an original refreshes its archive, and the archive's
        # bookkeeping row then marks the archive copy as already indexed.
        for agent, root in cfg.agent_dirs():
            listed = sources.agent_files(agent, root)
            for path in _walk(root, ("*.jsonl", "*.md")) if listed is None else listed:
                if path.name.endswith(".meta.json"):
                    continue
                files.append(_File(path, "transcript", agent, root))
        for path in _walk(
            cfg.raw_dir, ("*.jsonl", "*.jsonl.gz", "*.md", "*.md.gz", "*.json", "*.json.gz")
        ):
            files.append(_File(path, "transcript"))
        for path in _walk(cfg.topics_dir, ("*.md",)):
            files.append(_File(path, "topic"))
        for path in _walk(cfg.compressed_dir, ("*.md",)):
            files.append(_File(path, "summary"))
        if cfg.code_root is not None:
            if not cfg.code_root.is_dir():
                self.report.problems.append(f"{cfg.code_root}: code root does not exist; skipped")
            else:
                files += [_File(p, "code") for p in code_source.list_code_files(cfg.code_root)]
        return files

    # -- transcripts ------------------------------------------------------------------------
    def _step(self) -> None:
        self._done += 1
        self.progress("index", self._done, self._total)

    def _cannot_read(self, path: Path, exc: OSError) -> None:
        self.report.problems.append(f"{path}: cannot read: {exc.strerror or exc}")

    def _transcripts(self, files: list[_File]) -> None:
        jobs: list[_Job] = []
        for f in files:
            try:
                job = self._plan(f)
            except OSError as exc:
                self._cannot_read(f.path, exc)
                job = None
            if job is None:
                self._step()
            else:
                jobs.append(job)
        for job, read in self._reads(jobs):
            self._step()
            if isinstance(read, OSError):
                self._cannot_read(job.path, read)
                continue
            try:
                self._commit(job, read)
            except OSError as exc:
                self._cannot_read(job.path, exc)

    def _plan(self, f: _File) -> _Job | None:
        """What reading a changed transcript needs; None when it is unchanged."""
        size, mtime = sources.version(f.path, f.path.stat())
        state = self.store.get_source(str(f.path))
        if state and state.size == size and state.mtime == mtime:
            self.report.files_unchanged += 1
            return None
        if state and state.kind == "archive" and self._originals_exist(state):
            # A run that wrote this copy stopped before recording it.  The original is what the
            # index follows; the copy is cut back to its recorded size when the original is
            # next read.
            self.report.files_unchanged += 1
            return None
        archive = archive_size = None
        if f.agent_root is not None and f.agent is not None:
            rel = f.path.relative_to(f.agent_root)
            archive = self.cfg.raw_dir / f.agent / (str(rel) + ".gz")
            recorded = self.store.get_source(str(archive))
            archive_size = recorded.size if recorded is not None else None
        return _Job(f.path, size, mtime, state, archive, archive_size, self.forgotten)

    def _originals_exist(self, archive: SourceState) -> bool:
        for sid in archive.session_ids:
            record = self.store.get_session(sid)
            if record is not None and Path(record.source_path).exists():
                return True
        return False

    def _reads(self, jobs: list[_Job]) -> Iterator[tuple[_Job, _Read | OSError]]:
        """Each job with what reading it gave, in order; read ahead by workers when worth it."""
        todo = sum(job.size - (job.state.resume_offset if job.state else 0) for job in jobs)
        large = todo >= LARGE_INGEST_BYTES
        if large:
            self._begin_bulk(todo)
        pool = self._executor() if large and len(jobs) > 1 else self._pool
        if pool is None:
            for job in jobs:
                yield job, _attempt(job)
            return
        # A bounded window: each finished read holds a whole file's text until it is written.
        ahead = 2 * self.workers
        pending: deque[tuple[_Job, Future[_Read] | None]] = deque()
        queue = iter(jobs)
        for job in itertools.chain(itertools.islice(queue, ahead), queue):
            pending.append((job, self._submit(pool, job)))
            if len(pending) > ahead:
                yield self._collect(*pending.popleft())
        while pending:
            yield self._collect(*pending.popleft())

    def _executor(self) -> ProcessPoolExecutor | None:
        if self._pool is not None or self._pool_failed or self.workers < 1:
            return self._pool
        try:
            # spawn, not fork: the caller may run threads (a progress bar), and a forked child
            # would inherit their locks.
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_start,
                initargs=(os.getpid(),),
            )
            self.report.workers = self.workers
        except (OSError, ImportError, NotImplementedError, ValueError):
            self._pool_failed = True  # no process support here: read in this process
        return self._pool

    def _begin_bulk(self, todo: int) -> None:
        """Many chunks are about to be written: defer FTS merging to the end of the run, unless
        the index already holds much more (the final merge rewrites all of it)."""
        try:
            index_bytes = self.cfg.index_path.stat().st_size
        except OSError:
            index_bytes = 0
        if isinstance(self.store, SQLiteStore) and todo >= index_bytes:
            self.store.begin_bulk_load()
            self._bulk = True

    def _submit(self, pool: ProcessPoolExecutor, job: _Job) -> Future[_Read] | None:
        if self._pool_failed:
            return None
        try:
            return pool.submit(_read_transcript, job)
        except (BrokenProcessPool, RuntimeError):
            self._pool_failed = True
            return None

    def _collect(self, job: _Job, future: Future[_Read] | None) -> tuple[_Job, _Read | OSError]:
        if future is not None:
            try:
                return job, future.result()
            except OSError as exc:
                return job, exc
            except BrokenProcessPool:
                # A worker died (out of memory, killed): this process reads the rest itself.
                self._pool_failed = True
        return job, _attempt(job)

    def _commit(self, job: _Job, read: _Read) -> None:
        """Write what was read, with the file's bookkeeping row, in one transaction."""
        key = str(job.path)
        state = job.state
        if read.fmt is None:
            self.report.problems.append(f"{job.path}: not a known transcript format; skipped")
            self.store.put_source(SourceState(key, "unknown", job.size, job.mtime, read.head))
            return
        result = read.result
        self.report.problems += result.problems
        self.report.bytes_read += job.size - read.start
        self.report.headless_skipped += read.headless
        self.report.secrets_redacted += read.secrets
        tail = read.tail
        with self.store.transaction():
            produced = [kept.session.id for kept in read.kept]
            for kept in read.kept:
                self._put_session(kept, key, tail=tail, from_turn=read.first_turn)
            if not tail and state:
                for gone in set(state.session_ids) - set(produced):
                    self.report.chunks_removed += self.store.delete_chunks(session_id=gone)
            ids = sorted(set(produced) | (set(state.session_ids) if tail and state else set()))
            self.store.put_source(
                SourceState(
                    key,
                    read.fmt,
                    job.size,
                    job.mtime,
                    read.head,
                    offset=result.offset,
                    resume_offset=result.resume_offset,
                    resume_turn=result.resume_turn,
                    session_ids=ids,
                )
            )
            if job.archive is not None and read.archive is not None and produced:
                self._archive(job, read.archive, produced)
        self.report.files_read += 1
        self.report.files_tailed += int(tail)

    def _put_session(self, kept: _Kept, source: str, *, tail: bool, from_turn: int) -> None:
        """Index one session whose title and turns are already redacted."""
        store = self.store
        session = kept.session
        if tail:
            self.report.chunks_removed += store.delete_chunks(
                session_id=session.id, from_turn=from_turn
            )
        else:
            self.report.chunks_removed += store.delete_chunks(session_id=session.id)
        project = session.project
        title = session.title
        chunks = [
            Chunk(
                layer=Layer.RAW,
                tag=Tag.raw(session.id, n),
                text=text,
                session_id=session.id,
                project=project,
                timestamp=timestamp or session.started,
                title=title,
                role=role,
                path=source,
                embed=role in ROLES_EMBEDDED,
            )
            for n, role, text, timestamp in kept.turns
        ]
        self.report.chunks_added += store.add_chunks(chunks)
        old = store.get_session(session.id) if tail else None
        turns = kept.last_turn if kept.last_turn is not None else (old.turns if old else 0)
        record = SessionRecord(
            id=session.id,
            agent=session.agent,
            layer=Layer.RAW,
            source_path=source,
            project=project,
            cwd=session.cwd,
            git_branch=session.git_branch,
            title=title or (old.title if old else None),
            started=(old.started if old and old.started else session.started),
            ended=session.ended or (old.ended if old else None),
            parent_id=session.parent_id,
            turns=turns,
            files=_union(old.files if old else [], kept.files),
            commands=_union(old.commands if old else [], kept.commands),
            archive_path=old.archive_path if old else None,
        )
        if not tail:
            existing = store.get_session(session.id)
            record.archive_path = existing.archive_path if existing else None
        store.upsert_session(record)
        self.report.sessions += 1

    def _archive(self, job: _Job, copy: _ArchiveCopy, sids: list[str]) -> None:
        """Write the redacted, gzipped copy a worker made: the whole file, or a tail appended."""
        assert job.archive is not None
        target = job.archive
        target.parent.mkdir(parents=True, exist_ok=True)
        if copy.begin:
            assert job.archive_size is not None
            with target.open("r+b") as out:  # a gzip file may hold several members
                # Bytes past the recorded size were appended by a run killed before its commit;
                # this tail holds them again.
                out.truncate(job.archive_size)
                out.seek(job.archive_size)
                out.write(copy.payload)
        else:
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_bytes(copy.payload)
            os.replace(tmp, target)
        ast = target.stat()
        self.store.put_source(
            SourceState(str(target), "archive", ast.st_size, ast.st_mtime, "", session_ids=sids)
        )
        for sid in sids:
            rec = self.store.get_session(sid)
            if rec is not None:
                rec.archive_path = str(target)
                self.store.upsert_session(rec)
        self.report.archived += 1

    # -- topics, summaries, code ------------------------------------------------------------
    def _changed(self, path: Path, kind: str) -> SourceState | None:
        st = path.stat()
        state = self.store.get_source(str(path))
        if state and state.size == st.st_size and state.mtime == st.st_mtime:
            self.report.files_unchanged += 1
            return None
        return SourceState(str(path), kind, st.st_size, st.st_mtime, "")

    def _replace_file(self, path: Path, state: SourceState, chunks: Iterable[Chunk]) -> None:
        with self.store.transaction():
            self.report.chunks_removed += self.store.delete_chunks(path=str(path))
            self.report.chunks_added += self.store.add_chunks(self._redacted(chunks))
            self.store.put_source(state)
        self.report.files_read += 1
        self.report.bytes_read += state.size

    def _redacted(self, chunks: Iterable[Chunk]) -> list[Chunk]:
        out = []
        for c in chunks:
            c.text, n = redaction.redact(c.text)
            self.report.secrets_redacted += n
            out.append(c)
        return out

    def _topic(self, path: Path) -> None:
        state = self._changed(path, "topic")
        if state is None:
            return
        chunks, problems = topic_source.parse_topic(path, self.cfg.topics_dir)
        self.report.problems += problems
        for c in chunks:
            c.path = str(path)
        self._replace_file(path, state, chunks)

    def _code(self, path: Path) -> None:
        state = self._changed(path, "code")
        if state is None:
            return
        assert self.cfg.code_root is not None
        chunks = code_source.code_chunks(path, self.cfg.code_root)
        for c in chunks:
            c.path = str(path)
        self._replace_file(path, state, chunks)

    def _summaries(self, paths: list[Path]) -> None:
        """Index the newest summary of each session; older ones stay on disk (append-only)."""
        changed = {str(p) for p in paths if self._changed(p, "summary") is not None}
        if not changed:
            return
        newest, problems = summary_source.newest_summaries(paths)
        self.report.problems += problems
        with self.store.transaction():
            for p in paths:
                st = p.stat()
                self.store.put_source(SourceState(str(p), "summary", st.st_size, st.st_mtime, ""))
            for sid, summary in newest.items():
                if str(summary.path) not in changed:
                    continue
                self.report.chunks_removed += self.store.delete_chunks(
                    session_id=sid, layer=Layer.COMPRESSED
                )
                chunks = summary_source.summary_chunks(summary)
                for c in chunks:
                    c.path = str(summary.path)
                self.report.chunks_added += self.store.add_chunks(self._redacted(chunks))
                self.report.files_read += 1
                if self.store.get_session(sid) is None:
                    self.store.upsert_session(
                        SessionRecord(
                            id=sid,
                            agent=summary.agent or "unknown",
                            layer=Layer.COMPRESSED,
                            source_path=str(summary.path),
                            project=summary.project,
                            cwd=summary.cwd,
                            git_branch=summary.git_branch,
                            started=summary.started,
                            ended=summary.ended,
                            files=list(summary.files_touched),
                        )
                    )

    def _vanished(self, seen: set[str]) -> None:
        """Drop what the user deleted from their own files; keep transcripts (they are history)."""
        for state in self.store.list_sources():
            if state.path in seen or Path(state.path).exists():
                continue
            with self.store.transaction():
                if state.kind in ("topic", "summary", "code"):
                    self.report.chunks_removed += self.store.delete_chunks(path=state.path)
                    self.store.delete_source(state.path)
                elif state.kind != "archive":
                    self.report.kept_from_archive += len(state.session_ids)

    # -- embeddings -------------------------------------------------------------------------
    def _embed(self) -> None:
        from ctxmill.embed import get_embedder

        embedder = get_embedder(self.cfg.embedder)
        with self.store.transaction():
            self.store.set_embedder(embedder.name, embedder.dim)
        while True:
            batch = self.store.missing_vectors(limit=EMBED_BATCH)
            if not batch:
                break
            vectors = embedder.embed([text for _, text in batch])
            with self.store.transaction():
                self.store.put_vectors([(h, vectors[i]) for i, (h, _) in enumerate(batch)])
            self.report.vectors_added += len(batch)
            self.progress("embed", self.report.vectors_added, 0)


def _walk(root: Path, patterns: Iterable[str]) -> list[Path]:
    if not root.is_dir():
        return []
    out: set[Path] = set()
    for pattern in patterns:
        out.update(p for p in root.rglob(pattern) if p.is_file())
    return sorted(out)


def _head_hash(path: Path, n: int) -> str:
    """Hash of the first n bytes: a file rewritten rather than appended to changes its head."""
    with path.open("rb") as fh:
        return hashlib.sha1(fh.read(n)).hexdigest()


def _union(a: list[str], b: list[str]) -> list[str]:
    return list(dict.fromkeys([*a, *b]))


def forget(cfg: Config, session_id: str) -> dict[str, Any]:
    """Remove a session from the index, the raw archive and the compressed summaries.

    The only operation allowed to delete summaries.  The id is recorded so that a later ingest of
    the agent's own file (never touched) does not bring the session back.
    """
    store = open_store(cfg)
    try:
        record = store.get_session(session_id)
        summaries = [
            h.path for h in store.chunks_for_session(session_id) if h.layer is Layer.COMPRESSED
        ]
        if record is None and not summaries:
            raise LookupError(f"no session {session_id} in the index")
        removed_files: list[str] = []
        with store.transaction():
            chunks = store.forget_session(session_id)
            forgotten = set(_forgotten(store)) | {session_id}
            store.set_meta("forgotten", ",".join(sorted(forgotten)))
        for path in {*summaries, *(_summary_files(cfg, session_id))}:
            if path and Path(path).exists():
                Path(path).unlink()
                removed_files.append(path)
        if record and record.archive_path and Path(record.archive_path).exists():
            Path(record.archive_path).unlink()
            removed_files.append(record.archive_path)
        original = record.source_path if record and record.archive_path else None
        return {
            "session": session_id,
            "chunks": chunks,
            "files": removed_files,
            "original": original,
        }
    finally:
        store.close()


def _forgotten(store: Store) -> list[str]:
    return [s for s in (store.meta("forgotten") or "").split(",") if s]


def _summary_files(cfg: Config, session_id: str) -> list[str]:
    if not cfg.compressed_dir.is_dir():
        return []
    return [str(p) for p in cfg.compressed_dir.rglob(f"{session_id}*.md")]
