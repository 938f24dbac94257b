"""Search modes and query-type routing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path

import pytest

from ctxmill.embed import HashEmbedder
from ctxmill.model import Chunk, Layer, Tag
from ctxmill.search import date_window, rrf, search
from ctxmill.store import Filters, Hit, SQLiteStore

TODAY = date(2026, 7, 1)


@pytest.mark.parametrize(
    ("query", "window"),
    [
        ("minutes of 2026-03-14", ("2026-03-14", "2026-03-15")),
        ("what happened on 3 May", ("2026-05-03", "2026-05-04")),
        ("decisions from March 2026", ("2026-03-01", "2026-04-01")),
        ("budget in 2025-12", ("2025-12-01", "2026-01-01")),
        ("what did we do in September", ("2025-09-01", "2025-10-01")),
        ("why did we pick Redis", None),
        ("error 2026-13-45", None),
    ],
)
def test_date_window(query: str, window: tuple[str, str] | None) -> None:
    assert date_window(query, TODAY) == window


def test_rrf_rewards_agreement() -> None:
    a = Hit(1, Tag.raw("s", 1), Layer.RAW, "a", 9.0, found_by=["keyword"])
    b = Hit(2, Tag.raw("s", 2), Layer.RAW, "b", 8.0, found_by=["keyword"])
    b2 = Hit(2, Tag.raw("s", 2), Layer.RAW, "b", 0.9, found_by=["semantic"])
    fused = rrf([[a, b], [b2]], 10)
    assert [h.chunk_id for h in fused] == [2, 1]
    assert fused[0].found_by == ["keyword", "semantic"]


def test_auto_routes_dated_queries_to_keyword_in_that_period(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "i.db")
    with store.transaction():
        store.add_chunks(
            [
                Chunk(
                    Layer.RAW,
                    Tag.raw("a", 1),
                    "board minutes: budget approved",
                    timestamp="2026-03-14T10:00:00Z",
                ),
                Chunk(
                    Layer.RAW,
                    Tag.raw("b", 1),
                    "board minutes: budget rejected",
                    timestamp="2026-04-14T10:00:00Z",
                ),
            ]
        )
    result = search(store, "board minutes 2026-03-14", today=TODAY)
    assert result.mode == "keyword" and result.period == ("2026-03-14", "2026-03-15")
    assert [str(h.tag) for h in result.hits] == ["[raw:a#1]"]
    widened = search(store, "board minutes 2026-01-02", today=TODAY)
    assert widened.mode == "hybrid" and widened.notes
    assert search(store, "budget", mode="keyword", filters=Filters(until="2026-04-01")).hits[
        0
    ].tag == Tag.raw("a", 1)
    with pytest.raises(ValueError):
        search(store, "x", mode="fuzzy")


def test_hybrid_marks_terms_in_the_hits_it_keeps_and_only_those(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLiteStore(tmp_path / "i.db")
    embedder = HashEmbedder()
    texts = [f"retry the invoice export, attempt {i}" for i in range(1, 30)]
    texts += ["the ledger closes at midnight", "nightly backup of the ledger"]
    with store.transaction():
        store.add_chunks(
            [Chunk(Layer.RAW, Tag.raw("s", i), text) for i, text in enumerate(texts, 1)]
        )
        store.set_embedder(embedder.name, embedder.dim)
        missing = store.missing_vectors()
        vectors = embedder.embed([text for _, text in missing])
        store.put_vectors([(digest, vectors[i]) for i, (digest, _) in enumerate(missing)])
    marked: list[int] = []
    real = store.keyword_snippets

    def spy(query: str, hits: Sequence[Hit]) -> None:
        marked.append(len(hits))
        real(query, hits)

    monkeypatch.setattr(store, "keyword_snippets", spy)
    result = search(store, "ledger backup", mode="hybrid", k=4, embedder=embedder)
    assert result.mode == "hybrid" and len(result.hits) == 4
    assert marked == [sum("keyword" in h.found_by for h in result.hits)]
    found = {str(h.tag): h for h in result.hits}
    assert "«backup»" in found["[raw:s#31]"].snippet
    assert "«ledger»" in found["[raw:s#30]"].snippet
    others = [h for h in result.hits if "keyword" not in h.found_by]
    assert others and all(h.snippet and "«" not in h.snippet for h in others)
