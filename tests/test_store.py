"""The SQLite store on its own: FTS5 query safety, filters, vectors, migrations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ctxmill.model import Chunk, Layer, Tag
from ctxmill.store import Filters, SQLiteStore
from ctxmill.store.sqlite import fts_query


def chunk(
    text: str, tag: Tag, layer: Layer = Layer.RAW, ts: str = "2026-03-01T10:00:00Z", **kw: object
) -> Chunk:
    return Chunk(layer=layer, tag=tag, text=text, timestamp=ts, **kw)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    s = SQLiteStore(tmp_path / "index.db")
    with s.transaction():
        s.add_chunks(
            [
                chunk(
                    "the refresh token leaked into request logs",
                    Tag.raw("s1", 1),
                    session_id="s1",
                    project="api",
                ),
                chunk(
                    "we call get_current_user in every handler",
                    Tag.raw("s1", 2),
                    session_id="s1",
                    project="api",
                ),
                chunk(
                    "sessions live in Redis with a 12h TTL",
                    Tag.topic("auth.md", 3, 9),
                    Layer.TOPIC,
                    ts="2026-06-01T00:00:00Z",
                ),
                chunk(
                    "def get_current_user(request):",
                    Tag.code("app/auth.py", 10),
                    Layer.CODE,
                    embed=False,
                ),
                chunk(
                    "webhook duplicates fixed with a unique event id",
                    Tag.raw("s2", 1),
                    session_id="s2",
                    project="billing",
                    ts="2026-05-02T08:00:00Z",
                ),
            ]
        )
    return s


def test_fts_query_makes_any_input_safe() -> None:
    assert fts_query('what is "foo:bar" - (baz') == '"foo" OR "bar" OR "baz"'
    assert fts_query("the and of") == ""
    assert (
        fts_query("auth/session.py get_current_user") == '"auth/session.py" OR "get_current_user"'
    )


@pytest.mark.parametrize("query", ['"unbalanced', "NEAR(", "a:b:c", "* OR AND", "-x", "é ü ß 漢字"])
def test_keyword_search_never_raises_on_odd_input(store: SQLiteStore, query: str) -> None:
    assert isinstance(store.keyword_search(query, Filters(), 5), list)


def test_identifiers_match_across_layers(store: SQLiteStore) -> None:
    hits = store.keyword_search("get_current_user", Filters(), 10)
    assert {str(h.tag) for h in hits} == {"[raw:s1#2]", "[code:app/auth.py:10]"}
    assert all("«" in h.snippet for h in hits)


def test_filters(store: SQLiteStore) -> None:
    assert [
        str(h.tag) for h in store.keyword_search("webhook token", Filters(project="billing"), 10)
    ] == ["[raw:s2#1]"]
    assert [
        str(h.tag) for h in store.keyword_search("webhook token", Filters(since="2026-04-01"), 10)
    ] == ["[raw:s2#1]"]
    assert [
        h.layer for h in store.keyword_search("Redis token", Filters(layers=[Layer.TOPIC]), 10)
    ] == [Layer.TOPIC]
    assert store.keyword_search("token", Filters(session="s2"), 10) == []


def test_vectors_are_content_addressed_and_reset_on_model_change(store: SQLiteStore) -> None:
    with store.transaction():
        store.set_embedder("toy", 4)
    missing = store.missing_vectors()
    assert len(missing) == 4  # the code chunk is keyword-only
    rng = np.random.default_rng(0)
    vecs = {h: rng.normal(size=4).astype(np.float32) for h, _ in missing}
    with store.transaction():
        store.put_vectors([(h, v / np.linalg.norm(v)) for h, v in vecs.items()])
    assert store.missing_vectors() == []
    target_hash, target_text = missing[0]
    query = vecs[target_hash] / np.linalg.norm(vecs[target_hash])
    top = store.vector_search(query, Filters(), 1)[0]
    assert top.text == target_text and top.found_by == ["semantic"]
    with store.transaction():
        store.set_embedder("other", 8)
    assert len(store.missing_vectors()) == 4


def test_delete_from_turn_keeps_earlier_turns(store: SQLiteStore) -> None:
    with store.transaction():
        assert store.delete_chunks(session_id="s1", from_turn=2) == 1
    assert [str(h.tag) for h in store.chunks_for_session("s1")] == ["[raw:s1#1]"]


def test_tag_lookup(store: SQLiteStore) -> None:
    assert store.chunks_for_tag(Tag.topic("auth.md", 5, 5))[0].text.startswith("sessions live")
    assert store.chunks_for_tag(Tag.code("app/auth.py", 10))[0].layer is Layer.CODE
    assert store.chunks_for_tag(Tag.raw("s1", 9)) == []


def test_migrations_run_once(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "i.db").close()
    again = SQLiteStore(tmp_path / "i.db")
    assert again.db.execute("SELECT COUNT(*) FROM migrations").fetchone()[0] == 1
