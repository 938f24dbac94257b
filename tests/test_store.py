"""The SQLite store on its own: FTS5 query safety, filters, vectors, migrations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ctxmill.model import Chunk, Layer, Tag
from ctxmill.store import Filters, Hit, SQLiteStore, sqlite
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


# -- search at scale, on small corpora with the thresholds lowered ---------------------------------

FILLER = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron".split()
RARE = ["zebra", "quokka", "narwhal", "axolotl", "pangolin"]
COMMON = ["error", "timeout", "worker"]


def _corpus(n: int = 400, seed: int = 3) -> list[Chunk]:
    """Filler prose; common words in about a tenth of the rows, rare ones in a few."""
    rng = np.random.default_rng(seed)
    chunks = []
    for i in range(n):
        words = list(rng.choice(FILLER, size=int(rng.integers(4, 40))))
        for word in COMMON:
            if rng.random() < 0.12:
                words += [word] * int(rng.integers(1, 4))
        if rng.random() < 0.2:
            words += [RARE[int(rng.integers(len(RARE)))]] * int(rng.integers(1, 4))
        rng.shuffle(words)
        chunks.append(
            chunk(
                " ".join(words),
                Tag.raw(f"s{i % 7}", i + 1),
                Layer.TOPIC if i % 11 == 0 else Layer.RAW,
                ts=f"2026-0{1 + i % 6}-1{i % 10}T08:00:00Z",
                session_id=f"s{i % 7}",
                project=f"p{i % 3}",
            )
        )
    return chunks


@pytest.fixture
def big(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SQLiteStore:
    monkeypatch.setattr(sqlite, "COMMON_MIN_ROWS", 0)
    s = SQLiteStore(tmp_path / "big.db")
    with s.transaction():
        s.add_chunks(_corpus())
    return s


def _ranked(hits: list[Hit]) -> list[tuple[str, float]]:
    return [(str(h.tag), round(h.score, 9)) for h in hits]


def _whole_query(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch, query: str, filters: Filters, k: int
) -> list[tuple[str, float]]:
    """The ranking with no term counted as common: every matching row scored."""
    with monkeypatch.context() as m:
        m.setattr(sqlite, "COMMON_SHARE", 2.0)
        m.setattr(sqlite, "MIN_POSTFILTER_SHARE", 2.0)
        return _ranked(store.keyword_search(query, filters, k))


def _spy_bm25(store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    calls: list[list[str]] = []
    real = store._bm25

    def spy(matches: list[str], where: str, args: list[Any], k: int) -> list[tuple[int, float]]:
        calls.append(matches)
        return real(matches, where, args, k)

    monkeypatch.setattr(store, "_bm25", spy)
    return calls


@pytest.mark.parametrize("k", [1, 5, 20, 200])
def test_rows_with_rare_terms_are_ranked_as_the_whole_query_ranks_them(
    big: SQLiteStore, monkeypatch: pytest.MonkeyPatch, k: int
) -> None:
    for query in ["zebra error", "quokka timeout worker", "narwhal axolotl error worker"]:
        expected = _whole_query(big, monkeypatch, query, Filters(), k)
        assert _ranked(big.keyword_search(query, Filters(), k)) == expected


@pytest.mark.parametrize("query", ["zebra error", "quokka timeout", "pangolin worker"])
def test_only_rows_with_rare_terms_are_scored_when_that_is_enough(
    big: SQLiteStore, monkeypatch: pytest.MonkeyPatch, query: str
) -> None:
    calls = _spy_bm25(big, monkeypatch)
    big.keyword_search(query, Filters(), 3)
    assert len(calls) == 1 and " NOT " in calls[0][1]


def test_a_row_reachable_only_through_the_rare_term_is_found(
    big: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    with big.transaction():
        big.add_chunks([chunk("the okapi grazed", Tag.raw("solo", 1), session_id="solo")])
    hits = big.keyword_search("okapi error", Filters(), 5)
    assert "[raw:solo#1]" in [str(h.tag) for h in hits]
    assert _ranked(hits) == _whole_query(big, monkeypatch, "okapi error", Filters(), 5)


def test_a_row_with_only_common_terms_still_wins_when_it_scores_higher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite, "COMMON_MIN_ROWS", 0)
    store = SQLiteStore(tmp_path / "i.db")
    filler = [chunk(" ".join(FILLER[i % 5 :]), Tag.raw("f", i)) for i in range(1, 300)]
    common = [chunk(f"{FILLER[i % 9]} error timeout", Tag.raw("c", i)) for i in range(1, 40)]
    dense = chunk("error error error timeout timeout timeout", Tag.raw("dense", 1))
    long_rare = [chunk(" ".join(FILLER * 8) + " zebra", Tag.raw("z", i)) for i in range(1, 4)]
    with store.transaction():
        store.add_chunks([*filler, *common, dense, *long_rare])
    expected = _whole_query(store, monkeypatch, "zebra error timeout", Filters(), 3)
    assert expected[0][0] == "[raw:dense#1]"  # the case this test is about
    assert _ranked(store.keyword_search("zebra error timeout", Filters(), 3)) == expected


@pytest.mark.parametrize(
    "filters",
    [
        Filters(layers=[Layer.RAW], until="2026-06-01"),
        Filters(layers=[Layer.TOPIC]),
        Filters(session="s3"),
        Filters(project="p1", since="2026-03-01"),
        Filters(until="2026-01-01"),
    ],
)
def test_filtered_keyword_search_matches_filtering_the_whole_ranking(
    big: SQLiteStore, monkeypatch: pytest.MonkeyPatch, filters: Filters
) -> None:
    everything = big.keyword_search("zebra quokka error timeout", Filters(), 10_000)
    for k in (3, 30):
        wanted = [h for h in everything if _passes(h, filters)][:k]
        got = big.keyword_search("zebra quokka error timeout", filters, k)
        assert _ranked(got) == _ranked(wanted)
        assert _ranked(got) == _whole_query(
            big, monkeypatch, "zebra quokka error timeout", filters, k
        )


def _passes(hit: Hit, f: Filters) -> bool:
    ts = hit.timestamp
    return (
        (not f.layers or hit.layer in f.layers)
        and (not f.since or (ts is not None and ts >= f.since))
        and (not f.until or (ts is not None and ts < f.until))
        and (not f.project or hit.project == f.project)
        and (not f.session or hit.session_id == f.session)
    )


def _embed_all(store: SQLiteStore, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    with store.transaction():
        store.set_embedder("toy", 8)
        vecs = {}
        for digest, _ in store.missing_vectors():
            v = rng.normal(size=8).astype(np.float32)
            vecs[digest] = v / np.linalg.norm(v)
        store.put_vectors(list(vecs.items()))
    # As stored: half precision.
    return {d: v.astype(np.float16).astype(np.float32) for d, v in vecs.items()}


@pytest.mark.parametrize(
    "filters",
    [
        Filters(),
        Filters(layers=[Layer.TOPIC]),
        Filters(layers=[Layer.RAW, Layer.TOPIC], since="2026-02-01", until="2026-05-01"),
        Filters(project="p2"),
        Filters(session="s4", until="2026-04-01"),
        Filters(project="nobody"),
    ],
)
def test_vector_filters_keep_what_the_sql_filters_keep(big: SQLiteStore, filters: Filters) -> None:
    with big.transaction():
        big.add_chunks(
            [
                chunk("undated note", Tag.raw("u", 1), ts=None, session_id="s4"),  # type: ignore[arg-type]
                chunk("undated note", Tag.raw("u", 2), ts=None, project="p2"),  # type: ignore[arg-type]
            ]
        )
    vecs = _embed_all(big)
    query = np.ones(8, dtype=np.float32) / np.sqrt(8)
    rows = [h for h in big.iter_chunks() if _passes(h, filters)]
    scores = {
        str(h.tag): float(vecs[Chunk(h.layer, h.tag, h.text).content_hash] @ query) for h in rows
    }
    for k in (15, 1000):
        wanted = sorted(scores.values(), reverse=True)[:k]
        got = big.vector_search(query, filters, k)
        # Rows with the same text tie; their scores, and each hit's own, must be the right ones.
        assert [h.score for h in got] == pytest.approx(wanted, abs=1e-5)
        assert all(h.score == pytest.approx(scores[str(h.tag)], abs=1e-5) for h in got)
    assert all(h.found_by == ["semantic"] for h in got)


def test_vectors_are_reloaded_after_the_index_changes(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "i.db")
    with store.transaction():
        store.add_chunks([chunk(f"note {i}", Tag.raw("a", i)) for i in range(1, 6)])
    _embed_all(store)
    target = np.eye(8, dtype=np.float32)[0]
    assert store.vector_search(target, Filters(), 1)[0].tag != Tag.raw("b", 1)
    # This connection writes: the vectors it holds are stale.
    with store.transaction():
        store.add_chunks([chunk("exactly the target", Tag.raw("b", 1))])
        (digest, _), *_ = store.missing_vectors()
        store.put_vectors([(digest, target)])
    assert store.vector_search(target, Filters(), 1)[0].tag == Tag.raw("b", 1)
    # Another process writes (a `ctxmill ingest` beside a long-lived server).
    other = SQLiteStore(tmp_path / "i.db")
    with other.transaction():
        other.add_chunks([chunk("closer still", Tag.raw("c", 1), Layer.TOPIC)])
        (digest, _), *_ = other.missing_vectors()
        other.put_vectors([(digest, target * 2)])
    other.close()
    best = store.vector_search(target, Filters(layers=[Layer.TOPIC]), 1)
    assert [h.tag for h in best] == [Tag.raw("c", 1)]


def test_identical_texts_share_one_vector_and_are_both_found(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "i.db")
    with store.transaction():
        store.add_chunks(
            [chunk("same words", Tag.raw("a", 1)), chunk("same words", Tag.raw("b", 1))]
            + [chunk(f"other {i}", Tag.raw("c", i)) for i in range(1, 4)]
        )
    vecs = _embed_all(store)
    query = vecs[Chunk(Layer.RAW, Tag.raw("a", 1), "same words").content_hash]
    got = store.vector_search(query, Filters(), 2)
    assert {str(h.tag) for h in got} == {"[raw:a#1]", "[raw:b#1]"}
    assert store._matrix is not None and len(store._matrix.matrix) == 4
