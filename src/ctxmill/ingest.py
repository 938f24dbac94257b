"""Bring the index up to date with every configured source, reading only what changed.

Each source file is handled in one transaction together with its bookkeeping row, so an ingest
killed at any point leaves the index as it was before that file, and the next run redoes exactly
the files that did not commit.  Append-only transcripts are tailed from where the last turn began;
a file whose head changed or that shrank is read again whole.

Raw transcripts read from an agent's own folder are archived, redacted and gzipped, under the memory
root's ``sessions/raw/`` so that history outlives the agent's clean-up: when the original is gone the
archive keeps the session in the index, and a ``reindex`` reads the archive instead.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ctxmill import redact as redaction
from ctxmill import sources
from ctxmill.config import Config
from ctxmill.model import Chunk, Layer, Session, Tag
from ctxmill.sources import code as code_source
from ctxmill.sources import summaries as summary_source
from ctxmill.sources import topics as topic_source
from ctxmill.store import open_store
from ctxmill.store.base import SessionRecord, SourceState, Store

HEAD_BYTES = 4096
EMBED_BATCH = 2048
ROLES_EMBEDDED = frozenset({"user", "assistant", "summary"})

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


def ingest(
    cfg: Config,
    *,
    embed: bool = True,
    progress: Progress | None = None,
    wait: float = 600.0,
    on_wait: Callable[[str], None] | None = None,
) -> IngestReport:
    """Index everything that changed since the last run; returns what was done."""
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
            return _Ingest(cfg, store, progress).run(embed=embed)
        finally:
            store.close()
    finally:
        lock.release()


def reindex(cfg: Config, **kwargs: Any) -> IngestReport:
    """Rebuild the index from the sources (and the raw archive where originals are gone)."""
    for suffix in ("", "-wal", "-shm"):
        Path(str(cfg.index_path) + suffix).unlink(missing_ok=True)
    return ingest(cfg, **kwargs)


class _Ingest:
    def __init__(self, cfg: Config, store: Store, progress: Progress | None) -> None:
        self.cfg = cfg
        self.store = store
        self.progress = progress or (lambda stage, done, total: None)
        self.report = IngestReport()
        self.forgotten = set(_forgotten(store))

    def run(self, *, embed: bool) -> IngestReport:
        start = time.perf_counter()
        files = self._enumerate()
        self.report.files_seen = len(files)
        seen: set[str] = set()
        summaries: list[Path] = []
        for i, f in enumerate(files, 1):
            self.progress("index", i, len(files))
            seen.add(str(f.path))
            if f.kind == "summary":
                summaries.append(f.path)
                continue
            try:
                if f.kind == "transcript":
                    self._transcript(f)
                elif f.kind == "topic":
                    self._topic(f.path)
                elif f.kind == "code":
                    self._code(f.path)
            except OSError as exc:
                self.report.problems.append(f"{f.path}: cannot read: {exc.strerror or exc}")
        self._summaries(summaries)
        self._vanished(seen)
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
            for path in _walk(root, ("*.jsonl", "*.md")):
                if path.name.endswith(".meta.json"):
                    continue
                files.append(_File(path, "transcript", agent, root))
        for path in _walk(cfg.raw_dir, ("*.jsonl", "*.jsonl.gz", "*.md", "*.md.gz")):
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
    def _transcript(self, f: _File) -> None:
        st = f.path.stat()
        key = str(f.path)
        state = self.store.get_source(key)
        if state and state.size == st.st_size and state.mtime == st.st_mtime:
            self.report.files_unchanged += 1
            return
        head = _head_hash(f.path, min(HEAD_BYTES, st.st_size))
        fmt = sources.detect(f.path)
        if fmt is None:
            self.report.problems.append(f"{f.path}: not a known transcript format; skipped")
            self.store.put_source(SourceState(key, "unknown", st.st_size, st.st_mtime, head))
            return
        tail = (
            state is not None
            and sources.APPEND_ONLY.get(fmt, False)
            and state.head_hash == _head_hash(f.path, min(HEAD_BYTES, state.size))
            and st.st_size >= state.offset
            and not f.path.name.endswith(".gz")
        )
        start, first_turn = (state.resume_offset, state.resume_turn) if tail and state else (0, 1)
        result = sources.parse_transcript(fmt, f.path, start=start, first_turn=first_turn)
        self.report.problems += result.problems
        self.report.bytes_read += st.st_size - start
        with self.store.transaction():
            produced: list[str] = []
            for session in result.sessions:
                if session.headless:
                    self.report.headless_skipped += 1
                    continue
                if session.id in self.forgotten:
                    continue
                produced.append(session.id)
                self._put_session(session, key, tail=bool(tail), from_turn=first_turn)
            if not tail and state:
                for gone in set(state.session_ids) - set(produced):
                    self.report.chunks_removed += self.store.delete_chunks(session_id=gone)
            ids = sorted(set(produced) | (set(state.session_ids) if tail and state else set()))
            self.store.put_source(
                SourceState(
                    key,
                    fmt,
                    st.st_size,
                    st.st_mtime,
                    head,
                    offset=result.offset,
                    resume_offset=result.resume_offset,
                    resume_turn=result.resume_turn,
                    session_ids=ids,
                )
            )
            if f.agent_root is not None and produced:
                self._archive(f, state if tail else None, result.offset, produced)
        self.report.files_read += 1
        self.report.files_tailed += int(bool(tail))

    def _put_session(self, session: Session, source: str, *, tail: bool, from_turn: int) -> None:
        store = self.store
        if tail:
            self.report.chunks_removed += store.delete_chunks(
                session_id=session.id, from_turn=from_turn
            )
        else:
            self.report.chunks_removed += store.delete_chunks(session_id=session.id)
        project = session.project
        title, n_title = redaction.redact(session.title or "")
        self.report.secrets_redacted += n_title
        chunks = []
        for turn in session.turns:
            text, n = redaction.redact(turn.text)
            self.report.secrets_redacted += n
            if not text.strip():
                continue
            chunks.append(
                Chunk(
                    layer=Layer.RAW,
                    tag=Tag.raw(session.id, turn.n),
                    text=text,
                    session_id=session.id,
                    project=project,
                    timestamp=turn.timestamp or session.started,
                    title=title or None,
                    role=turn.role,
                    path=source,
                    embed=turn.role in ROLES_EMBEDDED,
                )
            )
        self.report.chunks_added += store.add_chunks(chunks)
        old = store.get_session(session.id) if tail else None
        turns = max((t.n for t in session.turns), default=(old.turns if old else 0))
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
            files=_union(old.files if old else [], session.files_touched),
            commands=_union(old.commands if old else [], session.commands),
            archive_path=old.archive_path if old else None,
        )
        if not tail:
            existing = store.get_session(session.id)
            record.archive_path = existing.archive_path if existing else None
        store.upsert_session(record)
        self.report.sessions += 1

    def _archive(self, f: _File, state: SourceState | None, end: int, sids: list[str]) -> None:
        """Keep a redacted, gzipped copy of what was read, appending only the new bytes."""
        assert f.agent_root is not None and f.agent is not None
        rel = f.path.relative_to(f.agent_root)
        target = self.cfg.raw_dir / f.agent / (str(rel) + ".gz")
        target.parent.mkdir(parents=True, exist_ok=True)
        begin = state.offset if state is not None and target.exists() else 0
        with f.path.open("rb") as src:
            src.seek(begin)
            data = src.read(max(0, end - begin)) if end > begin else b""
        text, n = redaction.redact(data.decode("utf-8", "replace"))
        del n  # counted once, on the indexed text
        payload = gzip.compress(text.encode("utf-8"), compresslevel=3)
        if begin:
            with target.open("ab") as out:  # a gzip file may hold several members
                out.write(payload)
        else:
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_bytes(payload)
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
