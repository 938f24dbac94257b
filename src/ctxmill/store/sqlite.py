"""The embedded index: one SQLite file with FTS5 for keywords and vectors stored as BLOBs.

Vectors are searched exactly with numpy rather than through an extension: the stock Python on many
machines cannot load SQLite extensions, and a brute-force dot product over a few hundred thousand
rows takes milliseconds once they are in memory (stored as float16, read once per process into a
float32 matrix).  Vectors are keyed by the sha256 of the chunk text, so identical
text is embedded once however often it recurs, and a re-ingest never embeds the same text again.

Schema changes are migrations: named functions applied in order inside one transaction each, and
recorded in ``migrations``.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
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
    return (" AND " if mode == "and" else " OR ").join(fts_terms(text))


def fts_terms(text: str) -> list[str]:
    """The quoted FTS5 phrases of free text, stopwords dropped, in order, each once."""
    terms: list[str] = []
    for raw in _TERM_RE.findall(text):
        term = raw.strip(".-/")
        if not term or term.lower() in _STOPWORDS:
            continue
        quoted = '"' + term.replace('"', '""') + '"'
        if quoted not in terms:
            terms.append(quoted)
    return terms


# A term held by more rows than this is "common": when a query also has rarer terms, rows are
# found through those (see ``SQLiteStore._top_bm25``).  Below a few thousand rows scoring is
# cheap whatever the share, so small indexes always run the whole query.
COMMON_SHARE = 0.05
COMMON_MIN_ROWS = 2000
BM25_K1 = 1.2  # FTS5's bm25() constant
DOC_FREQ_CACHE = 4096  # terms whose row counts are remembered
# A filtered keyword search whose filters keep at least this share of sample rows ranks
# k / share * margin rows unfiltered, then filters them (see ``SQLiteStore._keyword_top``).
MIN_POSTFILTER_SHARE = 0.25
POSTFILTER_MARGIN = 1.25
FILTER_SAMPLE = 256  # rows sampled to estimate that share


def _idf(rows: int, holding: int) -> float:
    """FTS5's bm25() IDF, including its floor for terms in more than half the rows."""
    return max(math.log((rows - holding + 0.5) / (holding + 0.5)), 1e-6)


class SQLiteStore:
    """The default :class:`~ctxmill.store.base.Store`."""

    def __init__(self, path: Path, *, timeout: float = 30.0, readonly: bool = False) -> None:
        self.path = path
        # Search caches, valid for one state of the index (see ``_generation``).
        self._matrix: _VectorIndex | None = None
        self._doc_freqs: dict[str, int] = {}
        self._doc_freqs_at: tuple[int, int] | None = None
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
        if not rows:
            return 0
        # Every statement that fires the FTS trigger makes FTS5 flush its pending terms to a new
        # segment (a statement savepoint), so one INSERT per row would write and merge one segment
        # per chunk.  Rows are staged in a temp table and moved with one statement instead.
        with self.transaction():
            self.db.execute(f"CREATE TEMP TABLE IF NOT EXISTS chunks_new ({_CHUNK_COLS})")
            self.db.executemany(
                f"INSERT INTO temp.chunks_new({_CHUNK_COLS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            self.db.execute(
                f"INSERT INTO chunks({_CHUNK_COLS}) "
                f"SELECT {_CHUNK_COLS} FROM temp.chunks_new ORDER BY rowid"
            )
            self.db.execute("DELETE FROM temp.chunks_new")
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
    def keyword_search(
        self, query: str, filters: Filters, k: int, *, snippets: bool = True
    ) -> list[Hit]:
        terms = fts_terms(query)
        if not terms or k < 1:
            return []
        try:
            scores = dict(self._keyword_top(terms, filters, k))
            hits = self._hits_by_id(list(scores))
        except sqlite3.OperationalError as exc:
            raise StoreError(f"keyword search failed for {query!r}: {exc}") from exc
        for hit in hits:
            hit.score = scores[hit.chunk_id]
            hit.found_by.append("keyword")
        if snippets:
            self.keyword_snippets(query, hits)
        return hits

    def keyword_snippets(self, query: str, hits: Sequence[Hit]) -> None:
        """Mark the query's terms «like this» in each hit's snippet.

        One row at a time: FTS5 seeks each term to the row, where ``rowid IN (…)`` would walk
        every row any term matches.  A hit the terms do not occur in (a semantic one) keeps its
        own snippet.
        """
        match = fts_query(query)
        for hit in hits:
            marked = None
            if match:
                try:
                    row = self.db.execute(
                        "SELECT snippet(chunks_fts, 0, '«', '»', ' … ', 28) FROM chunks_fts "
                        "WHERE chunks_fts MATCH ? AND rowid = ?",
                        (match, hit.chunk_id),
                    ).fetchone()
                except sqlite3.OperationalError as exc:
                    raise StoreError(f"keyword search failed for {query!r}: {exc}") from exc
                marked = row[0] if row else None
            if marked and "«" in marked:
                hit.snippet = marked
            elif not hit.snippet:
                hit.snippet = _snippet(hit.text)

    def vector_search(self, vector: np.ndarray, filters: Filters, k: int) -> list[Hit]:
        index = self._vector_index()
        if index is None or k < 1:
            return []
        scores = dict(index.top(vector, k, index.select(filters)))
        hits = self._hits_by_id(list(scores))
        for hit in hits:
            hit.score = scores[hit.chunk_id]
            hit.snippet = _snippet(hit.text)
            hit.found_by.append("semantic")
        return hits

    def _keyword_top(self, terms: list[str], filters: Filters, k: int) -> list[tuple[int, float]]:
        where, args = _filter_sql(filters)
        if not where:
            return self._top_bm25(terms, "", [], k)
        # Filtering in SQL costs a table lookup for every row any term matches, yet most filters
        # keep most rows (a build's "sessions and summaries before now").  For those, rank
        # unfiltered and drop what the filters exclude: exact when k rows survive or when every
        # match was ranked.  Narrow filters (one session, topics only) filter in SQL.
        share = self._filter_share(where, args)
        if share >= MIN_POSTFILTER_SHARE:
            wide_k = math.ceil(k * POSTFILTER_MARGIN / share)
            wide = self._top_bm25(terms, "", [], wide_k)
            ids = ",".join(str(cid) for cid, _ in wide)
            kept = {
                int(cid)
                for (cid,) in self.db.execute(
                    f"SELECT c.id FROM chunks c WHERE c.id IN ({ids}){where}", args
                )
            }
            if len(kept) >= k or len(wide) < wide_k:
                return [(cid, score) for cid, score in wide if cid in kept][:k]
        return self._top_bm25(terms, where, args, k, share)

    def _filter_share(self, where: str, args: list[Any]) -> float:
        """About what share of the rows the filters keep, from evenly spaced sample rows."""
        (top,) = self.db.execute("SELECT COALESCE(MAX(id), 0) FROM chunks").fetchone()
        step = max(top // FILTER_SAMPLE, 1)
        sample = ",".join(str(i) for i in range(1, top + 1, step))
        if not sample:
            return 0.0
        (seen, kept) = self.db.execute(
            f"SELECT COUNT(*), COUNT(*) FILTER (WHERE 1{where}) FROM chunks c "
            f"WHERE c.id IN ({sample})",
            args,
        ).fetchone()
        return kept / seen if seen else 0.0

    def _top_bm25(
        self, terms: list[str], where: str, args: list[Any], k: int, share: float = 1.0
    ) -> list[tuple[int, float]]:
        """The ``k`` best (chunk id, BM25) for the OR of ``terms``, best first.

        FTS5 scores every row that any term matches, so one common word ("test", "error") makes
        a query score a large share of the index.  When the query also has rarer terms, only rows
        holding one of those are scored, in two disjoint parts (with and without the common
        terms) that carry the same phrases as the whole query, so every row gets exactly the
        score the whole query gives it.  A row holding only common terms scores below
        (k1 + 1) × the sum of their IDFs; when the k-th row found beats that, none of them can
        enter the top k and the answer is the whole query's.  Otherwise the whole query runs.
        ``share`` is about how many rows the filters keep: a filter too narrow for the rare terms
        to yield k rows goes straight to the whole query.
        """
        if len(terms) > 1:
            rare, common, ceiling, rare_rows = self._split_common(terms)
            if rare and common and rare_rows * share >= k:
                r, c = " OR ".join(rare), " OR ".join(common)
                top = self._bm25([f"({r}) AND ({c})", f"({r}) NOT ({c})"], where, args, k)
                if len(top) == k and top[-1][1] >= ceiling:
                    return top
        return self._bm25([" OR ".join(terms)], where, args, k)

    def _bm25(
        self, matches: list[str], where: str, args: list[Any], k: int
    ) -> list[tuple[int, float]]:
        # Only the id and the score go through the sort: sorting whole rows (text included) of
        # every match was most of a query's time.  The join is there only to filter.
        part = (
            "SELECT chunks_fts.rowid AS id, -bm25(chunks_fts, 1.0, 3.0) AS score FROM chunks_fts"
            + (" JOIN chunks c ON c.id = chunks_fts.rowid" if where else "")
            + f" WHERE chunks_fts MATCH ?{where}"
        )
        sql = " UNION ALL ".join([part] * len(matches)) + " ORDER BY score DESC, id LIMIT ?"
        params = [p for match in matches for p in (match, *args)]
        return [(int(i), float(s)) for i, s in self.db.execute(sql, [*params, k])]

    def _split_common(self, terms: list[str]) -> tuple[list[str], list[str], float, int]:
        """Terms split into rare and common by how many rows hold them, the most BM25 can give a
        row for the common ones together, and how many rows the rare ones match at most."""
        # max(id) is at least the row count and costs one index step: an over-count only makes
        # fewer terms common and the ceiling higher, both on the safe side.
        (rows,) = self.db.execute("SELECT COALESCE(MAX(id), 0) FROM chunks").fetchone()
        freqs = self._doc_freqs_of(terms)
        limit = max(COMMON_MIN_ROWS, COMMON_SHARE * rows)
        common = [t for t in terms if freqs[t] > limit]
        ceiling = (BM25_K1 + 1) * sum(_idf(rows, freqs[t]) for t in common)
        rare = [t for t in terms if freqs[t] <= limit]
        return rare, common, ceiling, sum(freqs[t] for t in rare)

    def _doc_freqs_of(self, terms: list[str]) -> dict[str, int]:
        """How many rows hold each term (phrase), remembered while the index is unchanged.

        Counted through the FTS index itself rather than ``fts5vocab``: a quoted term may be
        several tokens (``auth/session.py``) and the vocabulary holds porter stems.
        """
        generation = self._generation()
        if generation != self._doc_freqs_at or len(self._doc_freqs) > DOC_FREQ_CACHE:
            self._doc_freqs, self._doc_freqs_at = {}, generation
        for term in terms:
            if term not in self._doc_freqs:
                (n,) = self.db.execute(
                    "SELECT COUNT(*) FROM chunks_fts WHERE chunks_fts MATCH ?", (term,)
                ).fetchone()
                self._doc_freqs[term] = int(n)
        return {t: self._doc_freqs[t] for t in terms}

    def _generation(self) -> tuple[int, int]:
        """A value that changes whenever the index may have: another connection committed
        (SQLite's data_version) or this one wrote (its change counter)."""
        (version,) = self.db.execute("PRAGMA data_version").fetchone()
        return int(version), self.db.total_changes

    def _vector_index(self) -> _VectorIndex | None:
        """The vectors of every embeddable chunk, loaded once and kept while the index is
        unchanged; ``None`` when there are none."""
        generation = self._generation()
        if self._matrix is not None and self._matrix.generation == generation:
            return self._matrix
        self._matrix = None
        chunks = self.db.execute(
            "SELECT id, layer, ts, project, session_id, hash FROM chunks WHERE embed = 1"
        ).fetchall()
        vectors = self.db.execute("SELECT hash, vec FROM vectors")
        index = _VectorIndex.build(generation, chunks, vectors)
        self._matrix = index
        return index

    def _hits_by_id(self, ids: Sequence[int]) -> list[Hit]:
        """Hits for chunk ids, in the order given."""
        if not ids:
            return []
        marks = ",".join(str(int(i)) for i in ids)
        found = {
            h.chunk_id: h
            for h in self._hits(f"SELECT {_HIT_COLS}, 0.0 FROM chunks WHERE id IN ({marks})", [])
        }
        return [found[i] for i in ids if i in found]

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

    # -- bulk loads -------------------------------------------------------------------------
    def begin_bulk_load(self) -> None:
        """Set this connection and the FTS index up for a long run of small write transactions.

        FTS5 merges its segments as they are written, so over a large load every term is
        rewritten again and again; here merging waits for :meth:`end_bulk_load`, which merges
        once.  The merge setting lives in the index, so a ``bulk_load`` mark in ``meta`` says a
        load is open: a load that was killed is finished by the next one that ends.
        """
        # A page cache that keeps the indexes' hot pages from one transaction to the next, and
        # fewer checkpoints (each rewrites and syncs every page changed since the last); the
        # larger WAL is cut back once a checkpoint has emptied it.
        self.db.execute("PRAGMA cache_size=-65536")
        self.db.execute("PRAGMA wal_autocheckpoint=10000")
        self.db.execute("PRAGMA journal_size_limit=67108864")
        with self.transaction():
            self._fts_merging(automerge=0, crisismerge=_FTS_MAX_CRISISMERGE)
            self.set_meta("bulk_load", "1")

    def bulk_load_open(self) -> bool:
        return self.meta("bulk_load") is not None

    def end_bulk_load(self) -> None:
        """Merge the FTS index into one segment and restore its merge settings."""
        with self.transaction():
            self._fts_merging(automerge=_FTS_AUTOMERGE, crisismerge=_FTS_CRISISMERGE)
            self.db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('optimize')")
            self.db.execute("DELETE FROM meta WHERE key = 'bulk_load'")
        self.db.execute("PRAGMA wal_autocheckpoint=1000")
        # PASSIVE: a reader still looking at an older snapshot is not waited for.
        self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _fts_merging(self, *, automerge: int, crisismerge: int) -> None:
        for option, value in (("automerge", automerge), ("crisismerge", crisismerge)):
            self.db.execute(
                "INSERT INTO chunks_fts(chunks_fts, rank) VALUES (?, ?)", (option, value)
            )

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
# FTS5's own defaults, and the most segments a level may hold before a merge is forced.
_FTS_AUTOMERGE = 4
_FTS_CRISISMERGE = 16
_FTS_MAX_CRISISMERGE = 1999
_CHUNK_COLS = (
    'layer, kind, ref, start, "end", session_id, project, ts, title, role, path, text, hash, embed'
)
_HIT_COLS = 'id, layer, kind, ref, start, "end", text, session_id, project, ts, title, role, path'


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


_LAYER_CODES = {layer.value: code for code, layer in enumerate(Layer)}


@dataclass
class _VectorIndex:
    """Every embedded chunk's vector in one float32 matrix, with the columns filters read.

    Reading the vectors out of SQLite costs far more than the dot products, so a process loads
    them once and keeps them while the index is unchanged; filters are numpy masks, not SQL.
    """

    generation: tuple[int, int]
    ids: np.ndarray  # chunk id per chunk
    rows: np.ndarray  # each chunk's row in ``matrix``: chunks with the same text share one
    matrix: np.ndarray  # C-contiguous float32, one row per distinct vector
    layers: np.ndarray  # code per chunk (``_LAYER_CODES``), -1 for an unknown layer
    ts: np.ndarray  # timestamp per chunk, "" where there is none
    dated: np.ndarray  # whether the chunk has a timestamp
    projects: np.ndarray  # code per chunk, -1 where there is none
    sessions: np.ndarray
    project_codes: dict[str, int]
    session_codes: dict[str, int]

    @classmethod
    def build(
        cls,
        generation: tuple[int, int],
        chunks: list[Any],
        vectors: Iterable[tuple[str, bytes]],
    ) -> _VectorIndex | None:
        """From (id, layer, ts, project, session_id, hash) rows and the stored (hash, vector)
        pairs; chunks not embedded yet are left out."""
        # The vectors go into one buffer as they are read, not into a Python object each.
        position: dict[str, int] = {}
        buffer = bytearray()
        for digest, blob in vectors:
            position[digest] = len(position)
            buffer += blob
        # Column at a time: a Python loop over every chunk was most of the load.
        kept = [row for row in chunks if row[5] in position]
        if not kept:
            return None
        ids, layers, stamps, projects, sessions, digests = zip(*kept, strict=True)
        # Only the vectors some chunk uses (those of forgotten chunks stay in the table), once
        # each however many chunks share the text.
        used, rows = np.unique([position[d] for d in digests], return_inverse=True)
        stored = np.frombuffer(buffer, dtype=np.float16).reshape(len(position), -1)
        matrix = stored[used] if len(used) < len(stored) else stored
        layer_names = np.array(layers, dtype=str)
        layer_codes = np.full(len(kept), -1, dtype=np.int8)
        for name, code in _LAYER_CODES.items():
            layer_codes[layer_names == name] = code
        project_codes: dict[str, int] = {}
        session_codes: dict[str, int] = {}
        return cls(
            generation=generation,
            ids=np.array(ids, dtype=np.int64),
            rows=rows.astype(np.intp),
            matrix=np.ascontiguousarray(matrix, dtype=np.float32),
            layers=layer_codes,
            ts=np.array([t or "" for t in stamps], dtype=str),
            dated=np.array([t is not None for t in stamps], dtype=bool),
            projects=_codes(projects, project_codes),
            sessions=_codes(sessions, session_codes),
            project_codes=project_codes,
            session_codes=session_codes,
        )

    def select(self, f: Filters) -> np.ndarray | None:
        """Positions of the chunks the filters keep (as ``_filter_sql`` would); None for all."""
        masks: list[np.ndarray] = []
        if f.layers:
            masks.append(np.isin(self.layers, [_LAYER_CODES[Layer(x).value] for x in f.layers]))
        if f.since:
            masks.append(self.dated & (self.ts >= f.since))
        if f.until:
            masks.append(self.dated & (self.ts < f.until))
        if f.project:
            masks.append(self.projects == self.project_codes.get(f.project, -2))
        if f.session:
            masks.append(self.sessions == self.session_codes.get(f.session, -2))
        if not masks:
            return None
        return np.flatnonzero(np.logical_and.reduce(masks))

    def top(self, vector: np.ndarray, k: int, chosen: np.ndarray | None) -> list[tuple[int, float]]:
        """The ``k`` best (chunk id, cosine) among the ``chosen`` positions, best first."""
        query = np.ascontiguousarray(vector, dtype=np.float32)
        if chosen is None:
            scores = _dot(self.matrix, query)[self.rows]
        elif len(chosen) * 4 < len(self.matrix):
            # A narrow filter: multiplying only its rows beats the whole matrix.
            scores = _dot(self.matrix[self.rows[chosen]], query)
        else:
            scores = _dot(self.matrix, query)[self.rows[chosen]]
        take = min(k, len(scores))
        if take < 1:
            return []
        best = np.argpartition(scores, len(scores) - take)[len(scores) - take :]
        best = best[np.argsort(-scores[best], kind="stable")]
        positions = best if chosen is None else chosen[best]
        return [(int(self.ids[p]), float(scores[b])) for p, b in zip(positions, best, strict=True)]


def _codes(values: Sequence[str | None], table: dict[str, int]) -> np.ndarray:
    """One int per value, numbering new values into ``table``; -1 for None."""
    return np.array(
        [-1 if v is None else table.setdefault(v, len(table)) for v in values], dtype=np.int32
    )


def _dot(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """Matrix-vector product in numpy's own single-threaded loop.

    A product over the whole matrix is bound by memory bandwidth, which one core nearly
    saturates; BLAS's threaded gemv was 3-6x slower on a busy 2-core machine, where its threads
    wait for a core.
    """
    product: np.ndarray = np.einsum("ij,j->i", matrix, vector)
    return product


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
