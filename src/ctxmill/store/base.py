"""The index behind one small interface, so that a server backend never touches the pipeline.

Everything the index holds is derived from the sources and can be rebuilt by ``ctxmill reindex``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ctxmill.model import Chunk, Layer, Tag


class StoreError(Exception):
    """The index cannot be used (locked, corrupted, wrong version); one line for the user."""


@dataclass
class SourceState:
    """What ingest remembers about one source file, so that a re-ingest reads only what changed."""

    path: str
    kind: str  # claude-code | codex | specstory | topic | summary | code | archive
    size: int
    mtime: float
    head_hash: str  # sha1 of the first bytes: a changed head means the file was rewritten
    offset: int = 0
    resume_offset: int = 0
    resume_turn: int = 1
    session_ids: list[str] = field(default_factory=list)


@dataclass
class SessionRecord:
    id: str
    agent: str
    layer: Layer
    source_path: str
    project: str | None = None
    cwd: str | None = None
    git_branch: str | None = None
    title: str | None = None
    started: str | None = None
    ended: str | None = None
    parent_id: str | None = None
    turns: int = 0
    files: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    archive_path: str | None = None


@dataclass
class Filters:
    layers: Sequence[Layer] | None = None
    since: str | None = None  # ISO-8601, inclusive
    until: str | None = None  # ISO-8601, exclusive
    project: str | None = None
    session: str | None = None


@dataclass
class Hit:
    """One search result; ``tag`` is the citation the system attached at ingest."""

    chunk_id: int
    tag: Tag
    layer: Layer
    text: str
    score: float
    session_id: str | None = None
    project: str | None = None
    timestamp: str | None = None
    title: str | None = None
    role: str | None = None
    path: str | None = None
    snippet: str = ""
    found_by: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "tag": str(self.tag),
            "layer": self.layer.value,
            "session_id": self.session_id,
            "project": self.project,
            "timestamp": self.timestamp,
            "title": self.title,
            "role": self.role,
            "score": round(self.score, 6),
            "snippet": self.snippet,
            "found_by": self.found_by,
        }


class Store(Protocol):
    """What ingest, search and the pipeline need from an index."""

    def transaction(self) -> AbstractContextManager[None]: ...

    def close(self) -> None: ...

    # sources
    def get_source(self, path: str) -> SourceState | None: ...
    def put_source(self, state: SourceState) -> None: ...
    def delete_source(self, path: str) -> None: ...
    def list_sources(self) -> list[SourceState]: ...

    # sessions
    def upsert_session(self, record: SessionRecord) -> None: ...
    def get_session(self, session_id: str) -> SessionRecord | None: ...
    def list_sessions(self, filters: Filters | None = None) -> list[SessionRecord]: ...
    def forget_session(self, session_id: str) -> int: ...

    # chunks
    def add_chunks(self, chunks: Iterable[Chunk]) -> int: ...
    def delete_chunks(
        self,
        *,
        session_id: str | None = None,
        path: str | None = None,
        from_turn: int | None = None,
        layer: Layer | None = None,
    ) -> int: ...
    def chunks_for_tag(self, tag: Tag) -> list[Hit]: ...
    def chunks_for_session(self, session_id: str, layer: Layer | None = None) -> list[Hit]: ...

    # search; ``snippets=False`` leaves keyword snippets to ``keyword_snippets``, for the few hits
    # a caller keeps out of many
    def keyword_search(
        self, query: str, filters: Filters, k: int, *, snippets: bool = True
    ) -> list[Hit]: ...
    def keyword_snippets(self, query: str, hits: Sequence[Hit]) -> None: ...
    def vector_search(self, vector: np.ndarray, filters: Filters, k: int) -> list[Hit]: ...

    # vectors, content-addressed so that no text is embedded twice
    def missing_vectors(self, limit: int | None = None) -> list[tuple[str, str]]: ...
    def put_vectors(self, items: Sequence[tuple[str, np.ndarray]]) -> None: ...
    def embedder_name(self) -> str | None: ...
    def set_embedder(self, name: str, dim: int) -> None: ...

    # bookkeeping
    def meta(self, key: str) -> str | None: ...
    def set_meta(self, key: str, value: str) -> None: ...
    def stats(self) -> dict[str, Any]: ...
    def iter_chunks(self, layer: Layer | None = None) -> Iterator[Hit]: ...
