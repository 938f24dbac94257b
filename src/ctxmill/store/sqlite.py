"""The embedded index: one SQLite file with FTS5 for keywords and vectors stored as BLOBs.

Vectors are searched exactly with numpy rather than through an extension: the stock Python on many
machines cannot load SQLite extensions, and a brute-force dot product over a few hundred thousand
float16 rows takes milliseconds.  Vectors are keyed by the sha256 of the chunk text, so identical
text is embedded once however often it recurs, and a re-ingest never embeds the same text again.

Schema changes are migrations: named functions applied in order inside one transaction each, and
recorded in ``migrations``.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ctxmill.model import Chunk, Layer, Tag
from ctxmill.store.base import Filters, Hit, SessionRecord, SourceState, StoreError

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append(fn)
    return fn


def _run_script(db: sqlite3.Connection, script: str) -> None:
    """Run statements one by one: ``executescript`` would commit the migration's transaction."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""


@migration
def m001_initial(db: sqlite3.Connection) -> None:
    _run_script(
        db,
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
        CREATE TABLE sources (
            path TEXT PRIMARY KEY, kind TEXT NOT NULL, size INTEGER, mtime REAL, head_hash TEXT,
            offset INTEGER, resume_offset INTEGER, resume_turn INTEGER, session_ids TEXT
        );
        CREATE TABLE sessions (
            id TEXT PRIMARY KEY, agent TEXT, layer TEXT, source_path TEXT, project TEXT, cwd TEXT,
            git_branch TEXT, title TEXT, started TEXT, ended TEXT, parent_id TEXT, turns INTEGER,
            files TEXT, commands TEXT, archive_path TEXT
        );
        CREATE TABLE chunks (
            id INTEGER PRIMARY KEY,
            layer TEXT NOT NULL, kind TEXT NOT NULL, ref TEXT NOT NULL, start INTEGER, "end" INTEGER,
            session_id TEXT, project TEXT, ts TEXT, title TEXT, role TEXT, path TEXT,
            text TEXT NOT NULL, hash TEXT NOT NULL, embed INTEGER NOT NULL
        );
        CREATE INDEX chunks_session ON chunks(session_id, start);
        CREATE INDEX chunks_ref ON chunks(kind, ref, start);
        CREATE INDEX chunks_path ON chunks(path);
        CREATE INDEX chunks_ts ON chunks(ts);
        CREATE INDEX chunks_hash ON chunks(hash);
        CREATE VIRTUAL TABLE chunks_fts USING fts5(
            text, title, content='chunks', content_rowid='id', tokenize='porter unicode61'
        );
        CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN
            INSERT INTO chunks_fts(rowid, text, title) VALUES (new.id, new.text, new.title);
        END;
        CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN
            INSERT INTO chunks_fts(chunks_fts, rowid, text, title)
            VALUES ('delete', old.id, old.text, old.title);
        END;
        CREATE TABLE vectors (hash TEXT PRIMARY KEY, vec BLOB NOT NULL);
        """,
    )


_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "been",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "let",
        "me",
        "my",
        "no",
        "not",
        "of",
        "on",
        "or",
        "our",
        "should",
        "so",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "too",
        "us",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
    ]
)
_TERM_RE = re.compile(r"[\w][\w.\-/]*", re.UNICODE)


def fts_query(text: str, mode: str = "or") -> str:
    """Turn free text into a safe FTS5 query: every term quoted, stopwords dropped, OR-joined.

    Quoting makes user input inert (no FTS5 syntax errors from ``:``, ``-`` or ``"``) while
    identifiers such as ``get_current_user`` or ``auth/session.py`` still match as phrases.
    """
    terms: list[str] = []
    for raw in _TERM_RE.findall(text):
        term = raw.strip(".-/")
        if not term or term.lower() in _STOPWORDS:
            continue
        quoted = '"' + term.replace('"', '""') + '"'
        if quoted not in terms:
            terms.append(quoted)
    if not terms:
        return ""
    return (" AND " if mode == "and" else " OR ").join(terms)


class SQLiteStore:
    """The default :class:`~ctxmill.store.base.Store`."""

    def __init__(self, path: Path, *, timeout: float = 30.0, readonly: bool = False) -> None:
        self.path = path
        self._matrix: tuple[np.ndarray, np.ndarray] | None = None
        self._depth = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if readonly:
                uri = f"file:{path}?mode=ro"
                self.db = sqlite3.connect(
                    uri, uri=True, timeout=timeout, check_same_thread=False, isolation_level=None
                )
            else:
                # Autocommit mode: transactions are explicit (``transaction()``), never implicit.
                self.db = sqlite3.connect(
                    path, timeout=timeout, check_same_thread=False, isolation_level=None
                )
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            if not readonly:
                self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(_explain(exc, path)) from exc

    # -- plumbing ---------------------------------------------------------------------------
    def _migrate(self) -> None:
        self.db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY)")
        done = {row[0] for row in self.db.execute("SELECT name FROM migrations")}
        for fn in MIGRATIONS:
            if fn.__name__ in done:
                continue
            with self.transaction():
                fn(self.db)
                self.db.execute("INSERT INTO migrations(name) VALUES (?)", (fn.__name__,))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A transaction; nested calls join the outer one, so a batch commits all or nothing."""
        if self._depth == 0:
            self.db.execute("BEGIN IMMEDIATE")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self.db.execute("ROLLBACK")
            raise
        self._depth -= 1
        if self._depth == 0:
            self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # -- sources ----------------------------------------------------------------------------
    def get_source(self, path: str) -> SourceState | None:
        row = self.db.execute(
            "SELECT path, kind, size, mtime, head_hash, offset, resume_offset, resume_turn, "
            "session_ids FROM sources WHERE path = ?",
            (path,),
        ).fetchone()
        return None if row is None else _source(row)

    def put_source(self, state: SourceState) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO sources VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                state.path,
                state.kind,
                state.size,
                state.mtime,
                state.head_hash,
                state.offset,
                state.resume_offset,
                state.resume_turn,
                json.dumps(state.session_ids),
            ),
        )

    def delete_source(self, path: str) -> None:
        self.db.execute("DELETE FROM sources WHERE path = ?", (path,))

    def list_sources(self) -> list[SourceState]:
        rows = self.db.execute(
            "SELECT path, kind, size, mtime, head_hash, offset, resume_offset, resume_turn, "
            "session_ids FROM sources ORDER BY path"
        )
        return [_source(row) for row in rows]

    # -- sessions ---------------------------------------------------------------------------
    def upsert_session(self, record: SessionRecord) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.id,
                record.agent,
                record.layer.value,
                record.source_path,
                record.project,
                record.cwd,
                record.git_branch,
                record.title,
                record.started,
                record.ended,
                record.parent_id,
                record.turns,
                json.dumps(record.files),
                json.dumps(record.commands),
                record.archive_path,
            ),
        )

    def get_session(self, session_id: str) -> SessionRecord | None:
        row = self.db.execute(f"SELECT {_SESSION_COLS} FROM sessions WHERE id = ?", (session_id,))
        found = row.fetchone()
        return None if found is None else _session(found)

    def list_sessions(self, filters: Filters | None = None) -> list[SessionRecord]:
        where, args = ["1=1"], []
        f = filters or Filters()
        if f.layers:
            where.append(f"layer IN ({','.join('?' * len(f.layers))})")
            args += [layer.value for layer in f.layers]
        if f.since:
            where.append("COALESCE(ended, started) >= ?")
            args.append(f.since)
        if f.until:
            where.append("started < ?")
            args.append(f.until)
        if f.project:
            where.append("project = ?")
            args.append(f.project)
        if f.session:
            where.append("id = ?")
            args.append(f.session)
        sql = f"SELECT {_SESSION_COLS} FROM sessions WHERE {' AND '.join(where)} ORDER BY started"
        return [_session(row) for row in self.db.execute(sql, args)]

    def forget_session(self, session_id: str) -> int:
        with self.transaction():
            removed = self.delete_chunks(session_id=session_id)
            self.db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
        return removed

    # -- chunks -----------------------------------------------------------------------------
    def add_chunks(self, chunks: Iterable[Chunk]) -> int:
        rows = [
            (
                c.layer.value,
                c.tag.kind,
                c.tag.ref,
                c.tag.start,
                c.tag.end,
                c.session_id,
                c.project,
                c.timestamp,
                c.title,
                c.role,
                c.path,
                c.text,
                c.content_hash,
                int(c.embed),
            )
            for c in chunks
        ]
        self.db.executemany(
            'INSERT INTO chunks(layer, kind, ref, start, "end", session_id, project, ts, title, '
            "role, path, text, hash, embed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        if rows:
            self._matrix = None
        return len(rows)

    def delete_chunks(
        self,
        *,
        session_id: str | None = None,
        path: str | None = None,
        from_turn: int | None = None,
        layer: Layer | None = None,
    ) -> int:
        if session_id is None and path is None:
            raise ValueError("delete_chunks needs a session_id or a path")
        where: list[str] = []
        args: list[Any] = []
        if session_id is not None:
            where.append("session_id = ?")
            args.append(session_id)
        if path is not None:
            where.append("path = ?")
            args.append(path)
        if from_turn is not None:
            where.append("kind = 'raw' AND start >= ?")
            args.append(from_turn)
        if layer is not None:
            where.append("layer = ?")
            args.append(layer.value)
        cur = self.db.execute(f"DELETE FROM chunks WHERE {' AND '.join(where)}", args)
        if cur.rowcount:
            self._matrix = None
        return cur.rowcount

    def chunks_for_tag(self, tag: Tag) -> list[Hit]:
        if tag.kind == "topic" and tag.start is not None:
            sql = "kind = 'topic' AND ref = ? AND start <= ? AND \"end\" >= ?"
            args: list[Any] = [tag.ref, tag.end or tag.start, tag.start]
        elif tag.kind == "code" and tag.start is not None:
            sql = "kind = 'code' AND ref = ? AND start <= ? AND COALESCE(\"end\", start) >= ?"
            args = [tag.ref, tag.start, tag.start]
        elif tag.kind == "raw":
            sql = "kind = 'raw' AND ref = ? AND start = ?"
            args = [tag.ref, tag.start]
        else:
            sql = "kind = ? AND ref = ?"
            args = [tag.kind, tag.ref]
        return self._hits(f"SELECT {_HIT_COLS}, 0.0 FROM chunks WHERE {sql} ORDER BY start", args)

    def chunks_for_session(self, session_id: str, layer: Layer | None = None) -> list[Hit]:
        sql = f"SELECT {_HIT_COLS}, 0.0 FROM chunks WHERE session_id = ?"
        args: list[Any] = [session_id]
        if layer is not None:
            sql += " AND layer = ?"
            args.append(layer.value)
        return self._hits(sql + " ORDER BY start, id", args)

    def iter_chunks(self, layer: Layer | None = None) -> Iterator[Hit]:
        sql = f"SELECT {_HIT_COLS}, 0.0 FROM chunks"
        args: list[Any] = []
        if layer is not None:
            sql += " WHERE layer = ?"
            args.append(layer.value)
        for row in self.db.execute(sql + " ORDER BY id", args):
            yield _hit(row)

    # -- search -----------------------------------------------------------------------------
    def keyword_search(self, query: str, filters: Filters, k: int) -> list[Hit]:
        match = fts_query(query)
        if not match:
            return []
        where, args = _filter_sql(filters)
        sql = (
            f"SELECT {_HIT_COLS_C}, -bm25(chunks_fts, 1.0, 3.0) AS score "
            "FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
            f"WHERE chunks_fts MATCH ? {where} ORDER BY bm25(chunks_fts, 1.0, 3.0) LIMIT ?"
        )
        try:
            hits = self._hits(sql, [match, *args, k])
        except sqlite3.OperationalError as exc:
            raise StoreError(f"keyword search failed for {query!r}: {exc}") from exc
        if hits:
            ids = ",".join(str(h.chunk_id) for h in hits)
            snippets = dict(
                self.db.execute(
                    "SELECT rowid, snippet(chunks_fts, 0, '«', '»', ' … ', 28) FROM chunks_fts "
                    f"WHERE chunks_fts MATCH ? AND rowid IN ({ids})",
                    (match,),
                ).fetchall()
            )
            for hit in hits:
                hit.snippet = snippets.get(hit.chunk_id) or _snippet(hit.text)
                hit.found_by.append("keyword")
        return hits

    def vector_search(self, vector: np.ndarray, filters: Filters, k: int) -> list[Hit]:
        ids, matrix = self._vectors(filters)
        if len(ids) == 0:
            return []
        scores = matrix @ vector.astype(np.float32)
        take = min(k, len(ids))
        top = np.argpartition(-scores, take - 1)[:take]
        top = top[np.argsort(-scores[top])]
        by_id = {int(ids[i]): float(scores[i]) for i in top}
        marks = ",".join(str(i) for i in by_id)
        hits = self._hits(f"SELECT {_HIT_COLS}, 0.0 FROM chunks WHERE id IN ({marks})", [])
        for hit in hits:
            hit.score = by_id[hit.chunk_id]
            hit.snippet = _snippet(hit.text)
            hit.found_by.append("semantic")
        hits.sort(key=lambda h: -h.score)
        return hits

    def _vectors(self, filters: Filters) -> tuple[np.ndarray, np.ndarray]:
        """Vectors of the embeddable chunks matching the filters; the unfiltered set is cached."""
        unfiltered = filters == Filters()
        if unfiltered and self._matrix is not None:
            return self._matrix
        where, args = _filter_sql(filters)
        rows = self.db.execute(
            "SELECT c.id, v.vec FROM chunks c JOIN vectors v ON v.hash = c.hash "
            f"WHERE c.embed = 1 {where}",
            args,
        ).fetchall()
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 1), dtype=np.float32)
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float16)
        matrix = matrix.reshape(len(rows), -1).astype(np.float32)
        if unfiltered:
            self._matrix = (ids, matrix)
        return ids, matrix

    # -- vectors ----------------------------------------------------------------------------
    def missing_vectors(self, limit: int | None = None) -> list[tuple[str, str]]:
        sql = (
            "SELECT c.hash, MIN(c.text) FROM chunks c LEFT JOIN vectors v ON v.hash = c.hash "
            "WHERE c.embed = 1 AND v.hash IS NULL GROUP BY c.hash"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [(str(h), str(t)) for h, t in self.db.execute(sql)]

    def put_vectors(self, items: Sequence[tuple[str, np.ndarray]]) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO vectors(hash, vec) VALUES (?, ?)",
            [(h, np.asarray(v, dtype=np.float16).tobytes()) for h, v in items],
        )
        if items:
            self._matrix = None

    def embedder_name(self) -> str | None:
        return self.meta("embedder")

    def set_embedder(self, name: str, dim: int) -> None:
        """Record the embedder; vectors from a different one are meaningless and are dropped."""
        if self.meta("embedder") not in (None, name) or self.meta("embedder_dim") != str(dim):
            self.db.execute("DELETE FROM vectors")
            self._matrix = None
        self.set_meta("embedder", name)
        self.set_meta("embedder_dim", str(dim))

    # -- bookkeeping ------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        per_layer = dict(self.db.execute("SELECT layer, COUNT(*) FROM chunks GROUP BY layer"))
        sessions = dict(self.db.execute("SELECT layer, COUNT(*) FROM sessions GROUP BY layer"))
        agents = dict(self.db.execute("SELECT agent, COUNT(*) FROM sessions GROUP BY agent"))
        (vectors,) = self.db.execute("SELECT COUNT(*) FROM vectors").fetchone()
        (sources,) = self.db.execute("SELECT COUNT(*) FROM sources").fetchone()
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*"))
        return {
            "index": str(self.path),
            "index_bytes": size,
            "chunks": {layer.value: int(per_layer.get(layer.value, 0)) for layer in Layer},
            "sessions": {k: int(v) for k, v in sessions.items()},
            "agents": {k: int(v) for k, v in agents.items()},
            "sources": int(sources),
            "vectors": int(vectors),
            "embedder": self.meta("embedder"),
        }

    def _hits(self, sql: str, args: Sequence[Any]) -> list[Hit]:
        return [_hit(row) for row in self.db.execute(sql, list(args))]


_SESSION_COLS = (
    "id, agent, layer, source_path, project, cwd, git_branch, title, started, ended, parent_id, "
    "turns, files, commands, archive_path"
)
_HIT_COLS = 'id, layer, kind, ref, start, "end", text, session_id, project, ts, title, role, path'
_HIT_COLS_C = ", ".join(f"c.{c}" for c in _HIT_COLS.split(", "))


def _filter_sql(f: Filters) -> tuple[str, list[Any]]:
    where, args = [], []
    if f.layers:
        where.append(f"c.layer IN ({','.join('?' * len(f.layers))})")
        args += [layer.value for layer in f.layers]
    if f.since:
        where.append("c.ts >= ?")
        args.append(f.since)
    if f.until:
        where.append("c.ts < ?")
        args.append(f.until)
    if f.project:
        where.append("c.project = ?")
        args.append(f.project)
    if f.session:
        where.append("c.session_id = ?")
        args.append(f.session)
    return ("".join(f" AND {w}" for w in where), args)


def _tag(kind: str, ref: str, start: int | None, end: int | None) -> Tag:
    return Tag(kind, ref, start, end)


def _hit(row: Sequence[Any]) -> Hit:
    cid, layer, kind, ref, start, end, text, sid, project, ts, title, role, path, score = row
    return Hit(
        chunk_id=int(cid),
        tag=_tag(kind, ref, start, end),
        layer=Layer(layer),
        text=text,
        score=float(score),
        session_id=sid,
        project=project,
        timestamp=ts,
        title=title,
        role=role,
        path=path,
    )


def _source(row: Sequence[Any]) -> SourceState:
    path, kind, size, mtime, head, offset, resume_offset, resume_turn, sids = row
    return SourceState(
        path=path,
        kind=kind,
        size=size,
        mtime=mtime,
        head_hash=head,
        offset=offset,
        resume_offset=resume_offset,
        resume_turn=resume_turn,
        session_ids=json.loads(sids or "[]"),
    )


def _session(row: Sequence[Any]) -> SessionRecord:
    (sid, agent, layer, source, project, cwd, branch, title, started, ended, parent, turns,
     files, commands, archive) = row  # fmt: skip
    return SessionRecord(
        id=sid,
        agent=agent,
        layer=Layer(layer),
        source_path=source,
        project=project,
        cwd=cwd,
        git_branch=branch,
        title=title,
        started=started,
        ended=ended,
        parent_id=parent,
        turns=turns or 0,
        files=json.loads(files or "[]"),
        commands=json.loads(commands or "[]"),
        archive_path=archive,
    )


def _snippet(text: str, width: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _explain(exc: sqlite3.DatabaseError, path: Path) -> str:
    msg = str(exc)
    if "locked" in msg:
        return f"index {path} is locked by another process; try again when it finishes"
    if "not a database" in msg or "malformed" in msg:
        return f"index {path} is damaged ({msg}); run `ctxmill reindex` to rebuild it from sources"
    return f"index {path}: {msg}"
