from __future__ import annotations

import hashlib
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pytest
from corpus import make_memory

from ctxmill import embed
from ctxmill.embed import (
    Embedder,
    EmbedderError,
    HashEmbedder,
    StaticEmbedder,
    cosine_top_k,
    get_embedder,
    model_dir,
)
from ctxmill.ingest import ingest
from ctxmill.store import open_store


@pytest.fixture(scope="module")
def static() -> StaticEmbedder:
    return StaticEmbedder()


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


# -- the shipped model ------------------------------------------------------------------------


def test_shipped_model_holds_only_what_loading_needs() -> None:
    names = sorted(p.name for p in model_dir().iterdir())
    assert names == ["PROVENANCE.md", "config.json", "model.safetensors", "tokenizer.json"]


def test_provenance_hashes_match_the_shipped_files() -> None:
    folder = model_dir()
    provenance = (folder / "PROVENANCE.md").read_text()
    recorded = dict(
        re.findall(r"^\| `([\w.]+)` \| [\d,]+ \| `([0-9a-f]{64})` \|$", provenance, re.M)
    )
    assert set(recorded) == {"config.json", "model.safetensors", "tokenizer.json"}
    for name, digest in recorded.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name


def test_static_vectors_are_unit_float32_rows(static: StaticEmbedder) -> None:
    vectors = static.embed(["database migration failed", "refactor the auth module", "x"])
    assert re.fullmatch(r"m2v-minilm@[0-9a-f]{8}", static.name)
    assert vectors.shape == (3, static.dim) == (3, 256)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_static_empty_inputs(static: StaticEmbedder) -> None:
    assert static.embed([]).shape == (0, static.dim)
    vectors = static.embed(["", "   ", "hello"])
    assert not vectors[0].any() and not vectors[1].any()
    assert np.linalg.norm(vectors[2]) == pytest.approx(1.0, abs=1e-5)


def test_static_is_deterministic(static: StaticEmbedder) -> None:
    texts = ["the schema migration broke", "cosine similarity of vectors"]
    first = static.embed(texts)
    assert np.array_equal(first, static.embed(texts))
    other = StaticEmbedder()
    assert np.array_equal(first, other.embed(texts))
    assert other._load() is static._load()  # one loaded model per process, not one per instance
    # Batching does not change a row.
    assert np.array_equal(first[1], static.embed(texts[1:])[0])


def test_static_model_captures_meaning(static: StaticEmbedder) -> None:
    query, near, far = static.embed(
        ["database migration failed", "the schema migration broke", "the cat sat on the mat"]
    )
    assert cos(query, near) > cos(query, far) + 0.3
    # Paraphrase with no shared word beats a sentence that shares the topic word only loosely.
    login, oidc, lunch = static.embed(
        ["users cannot sign in", "authentication is broken after the OIDC change", "lunch menu"]
    )
    assert cos(login, oidc) > cos(login, lunch)


def test_static_reads_only_the_head_of_long_texts() -> None:
    short = StaticEmbedder(max_tokens=4)
    head = "alpha beta gamma delta"
    a, b = short.embed([head, head + " epsilon zeta eta theta iota kappa"])
    assert np.array_equal(a, b)


def test_loading_and_embedding_need_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> NoReturn:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    embed._load_static_model.cache_clear()  # load from disk again, not from this process's cache
    fresh = StaticEmbedder()
    vectors = fresh.embed(["no network needed"])
    assert vectors.shape == (1, fresh.dim)


def test_importing_the_module_does_not_import_model2vec() -> None:
    code = "import sys, ctxmill.embed; print('model2vec' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_model_directory_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(EmbedderError) as info:
        StaticEmbedder(tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert "model.safetensors" in message and "tokenizer.json" in message
    assert "config.json," not in message  # present files are not reported missing


# -- the hash embedder ------------------------------------------------------------------------


def test_hash_vectors_are_unit_float32_rows() -> None:
    hashed = HashEmbedder(dim=64)
    vectors = hashed.embed(["Refactor the auth module", "refactor THE auth module!", ""])
    assert (hashed.name, hashed.dim) == ("hash", 64)
    assert vectors.shape == (3, 64) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors[:2], axis=1), 1.0, atol=1e-6)
    # Case and punctuation do not matter; an empty text is a zero row.
    assert np.array_equal(vectors[0], vectors[1])
    assert not vectors[2].any()


def test_hash_similarity_follows_shared_words() -> None:
    a, b, c = HashEmbedder().embed(
        ["sqlite fts5 index rebuild", "rebuild the sqlite fts5 index", "weekend hiking trip photos"]
    )
    assert cos(a, b) > 0.8
    assert cos(a, c) < 0.3


def test_hash_is_stable_across_processes() -> None:
    # Python salts str hashes per process; the hash embedder must not depend on that.
    code = (
        "from ctxmill.embed import HashEmbedder;"
        "print(HashEmbedder(16).embed(['stable across runs']).tolist())"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(runs) == 1
    assert runs.pop().strip() == str(HashEmbedder(16).embed(["stable across runs"]).tolist())


def test_hash_rejects_a_useless_dimension() -> None:
    with pytest.raises(EmbedderError):
        HashEmbedder(dim=0)


# -- the registry ----------------------------------------------------------------------------


def test_registry_names() -> None:
    assert embed.embedder_names() == ["hash", "m2v-minilm"]
    assert isinstance(get_embedder("hash"), HashEmbedder)
    assert isinstance(get_embedder(), StaticEmbedder)


def test_unknown_embedder_is_a_one_line_error() -> None:
    with pytest.raises(EmbedderError, match=r"unknown embedder 'bert'; choose one of: hash, m2v"):
        get_embedder("bert")


def test_registered_embedder_is_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embed, "_REGISTRY", dict(embed._REGISTRY))

    def small() -> Embedder:
        return HashEmbedder(dim=8, name="small")

    embed.register_embedder("small", small)
    made = get_embedder("small")
    assert (made.name, made.dim) == ("small", 8)


# -- cosine top-k ----------------------------------------------------------------------------


def test_top_k_matches_a_full_sort() -> None:
    rng = np.random.default_rng(7)
    matrix = rng.standard_normal((500, 32)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    query = rng.standard_normal(32).astype(np.float32) * 5  # not normalized on purpose
    hits = cosine_top_k(query, matrix, 10)
    expected = np.argsort(-(matrix @ (query / np.linalg.norm(query))))[:10]
    assert [row for row, _ in hits] == expected.tolist()
    scores = [score for _, score in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(-1.0 - 1e-5 <= s <= 1.0 + 1e-5 for s in scores)


def test_top_k_edges_and_ties() -> None:
    matrix = np.array([[1, 0], [0, 1], [1, 0], [1, 0], [-1, 0]], dtype=np.float32)
    query = np.array([2.0, 0.0])
    # Rows 0, 2 and 3 tie; the earlier rows win, in row order.
    assert [row for row, _ in cosine_top_k(query, matrix, 2)] == [0, 2]
    assert [row for row, _ in cosine_top_k(query, matrix, 99)] == [0, 2, 3, 1, 4]
    assert cosine_top_k(query, matrix, 0) == []
    assert cosine_top_k(query, np.zeros((0, 2), dtype=np.float32), 3) == []
    top = cosine_top_k(query[None, :], matrix, 1)  # a (1, dim) query works too
    assert len(top) == 1 and top[0][0] == 0 and top[0][1] == pytest.approx(1.0)
    assert isinstance(top[0][0], int) and isinstance(top[0][1], float)
    with pytest.raises(ValueError, match="dimensions"):
        cosine_top_k(np.ones(3), matrix, 1)


def test_top_k_over_real_embeddings(static: StaticEmbedder) -> None:
    docs = [
        "Decided to keep SQLite FTS5 for keyword search",
        "The OAuth refresh token leaked into the logs",
        "Grocery list: apples, bread, milk",
    ]
    matrix = static.embed(docs)
    query = static.embed(["why did we stop using that auth library? tokens in logs"])[0]
    assert cosine_top_k(query, matrix, 1)[0][0] == 1


# -- the model's version in the embedder's name ---------------------------------------------------


def copy_model(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    for name in embed.MODEL_FILES:
        (folder / name).write_bytes((model_dir() / name).read_bytes())
    return folder


def test_static_name_changes_with_the_model_files(tmp_path: Path) -> None:
    folder = copy_model(tmp_path)
    name = StaticEmbedder(folder).name
    assert name == StaticEmbedder().name  # the same files: the same name
    config = folder / "config.json"
    config.write_text(config.read_text() + "\n")
    changed = StaticEmbedder(folder).name
    assert changed != name and changed.startswith("m2v-minilm@")


def test_a_recorded_name_finds_its_embedder_only_while_the_model_is_the_same() -> None:
    current = StaticEmbedder().name
    assert get_embedder(current).name == current
    with pytest.raises(EmbedderError, match=r"made by m2v-minilm@00000000.*run `ctxmill ingest`"):
        get_embedder("m2v-minilm@00000000")
    assert get_embedder("hash").name == "hash"


def test_a_changed_model_is_embedded_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = copy_model(tmp_path)
    monkeypatch.setattr(embed, "_REGISTRY", dict(embed._REGISTRY))
    embed.register_embedder("m2v-test", lambda: StaticEmbedder(folder, name="m2v-test"))
    cfg = make_memory(tmp_path / "memory")
    cfg.embedder = "m2v-test"
    first = ingest(cfg)
    assert first.vectors_added > 0
    assert ingest(cfg).vectors_added == 0
    store = open_store(cfg)
    before = store.embedder_name()
    store.close()
    config = folder / "config.json"
    config.write_text(config.read_text() + "\n")  # a new release of the model
    again = ingest(cfg)
    assert again.vectors_added == first.vectors_added  # every vector made again
    store = open_store(cfg)
    after = store.embedder_name()
    store.close()
    assert before != after and after == StaticEmbedder(folder, name="m2v-test").name
