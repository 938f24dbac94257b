"""Text embedders for the vector index, and exact cosine top-k over a matrix of their vectors.

Two embedders are built in, looked up by name through :func:`get_embedder`:

``m2v-minilm`` (the default)
    A static model2vec model distilled from all-MiniLM-L6-v2, shipped inside the package
    (``ctxmill/data/m2v-minilm``, made by ``scripts/make_static_model.py``).  A text's vector is
    the mean of its tokens' vectors, so embedding needs no transformer, no torch and no network,
    and runs at thousands of chunks a second on two cores.  model2vec is imported on first use
    only, which keeps CLI start-up fast.  Its ``name`` carries a short hash of the model's files
    (``m2v-minilm@1a2b3c4d``): the index records that name with its vectors, so a changed model
    makes the next ingest embed everything again instead of mixing two models' vectors.
``hash``
    A dependency-free bag of hashed words.  Deterministic across processes and machines; it
    matches words, not meanings.  Tests use it, and it is the one to pick where the model is absent.

Every embedder returns float32 rows of unit length.  A text with no usable token (empty, or
only whitespace) gets a zero row, which scores 0 against everything instead of a NaN.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import re
import struct
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from model2vec import StaticModel

DEFAULT_EMBEDDER = "m2v-minilm"
STATIC_MODEL = "m2v-minilm"
# What StaticModel.from_pretrained reads from a model directory.
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json")


class EmbedderError(RuntimeError):
    """An embedder cannot be created; the message is one line, fit for a CLI error."""


class Embedder(Protocol):
    """Turns texts into L2-normalized float32 vectors of a fixed dimension."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return an array of shape ``(len(texts), dim)``, float32, rows of unit length (or 0)."""
        ...


def _normalize_rows(matrix: np.ndarray) -> np.ndarray:
    out = np.ascontiguousarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out


def model_dir(name: str = STATIC_MODEL) -> Path:
    """The directory of a model shipped in the package data."""
    resource = importlib.resources.files("ctxmill") / "data" / name
    if not isinstance(resource, Path):
        # model2vec reads files by path; a zipped install would need extracting first.
        raise EmbedderError(f"ctxmill is installed in a form that has no files on disk: {resource}")
    return resource


def _safetensors_dim(path: Path) -> int:
    """The embedding width, read from the safetensors header so that ``dim`` is known without
    importing model2vec or loading the matrix."""
    with path.open("rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(size))
    return int(header["embeddings"]["shape"][1])


def model_version(path: Path) -> str:
    """A short hash of the files a model directory is loaded from."""
    stamps = tuple((name, (path / name).stat()) for name in MODEL_FILES)
    return _model_version(path.resolve(), tuple((n, s.st_size, s.st_mtime_ns) for n, s in stamps))


@lru_cache(maxsize=8)
def _model_version(path: Path, stamps: tuple[tuple[str, int, int], ...]) -> str:
    # Cached by size and mtime: search may create an embedder per query, and hashing the model
    # (~8 MB) each time would cost more than the query.
    digest = hashlib.sha256()
    for name, _, _ in stamps:
        digest.update(name.encode() + b"\0")
        digest.update(hashlib.sha256((path / name).read_bytes()).digest())
    return digest.hexdigest()[:8]


@lru_cache(maxsize=4)
def _load_static_model(path: Path) -> StaticModel:
    """One loaded model per directory and process: callers such as search may ask the registry
    for a fresh embedder per query, and reading the model again each time would cost ~0.3 s."""
    # A local directory never reaches the hub; huggingface_hub reads this flag once, at import,
    # so it is set before model2vec imports it: were a hub id ever passed here by mistake,
    # loading would fail at once instead of downloading.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from model2vec import StaticModel

    return StaticModel.from_pretrained(path, force_download=False)


class StaticEmbedder:
    """The shipped model2vec model (or any model2vec directory), loaded on first use.

    Texts longer than ``max_tokens`` tokens are cut to their head: a static model averages token
    vectors, so the head of a chunk already carries its topic and the tail would only cost time.
    """

    def __init__(
        self,
        path: Path | None = None,
        *,
        name: str = STATIC_MODEL,
        max_tokens: int = 512,
        batch_size: int = 1024,
    ) -> None:
        self.path = model_dir() if path is None else Path(path)
        missing = [f for f in MODEL_FILES if not (self.path / f).is_file()]
        if missing:
            raise EmbedderError(
                f"embedding model {name!r} is missing {', '.join(missing)} in {self.path} "
                "(reinstall ctxmill or run scripts/make_static_model.py; the 'hash' embedder needs none)"
            )
        self.name = f"{name}@{model_version(self.path)}"
        self.dim = _safetensors_dim(self.path / "model.safetensors")
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self._model: StaticModel | None = None

    def _load(self) -> StaticModel:
        if self._model is None:
            self._model = _load_static_model(self.path.resolve())
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._load()
        # Normalized here rather than by model2vec so that an empty text stays a zero row.
        vectors = model.encode(
            list(texts),
            max_length=self.max_tokens,
            batch_size=self.batch_size,
            use_multiprocessing=False,
            normalize=False,
        )
        return _normalize_rows(vectors)


_WORD_RE = re.compile(r"\w+")


@lru_cache(maxsize=1 << 16)
def _bucket(word: str, dim: int) -> tuple[int, float]:
    # blake2b, not hash(): Python salts str hashes per process, and vectors must be stable.
    value = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
    # A hash-derived sign makes colliding words cancel on average instead of always adding up.
    return value % dim, (1.0 if value >> 63 else -1.0)


class HashEmbedder:
    """Hashed bag of lower-cased words into ``dim`` buckets, counts damped by log1p."""

    def __init__(self, dim: int = 256, *, name: str = "hash") -> None:
        if dim < 1:
            raise EmbedderError(f"hash embedder dimension must be positive, got {dim}")
        self.name = name
        self.dim = dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            counts: dict[str, int] = {}
            for word in _WORD_RE.findall(text.lower()):
                counts[word] = counts.get(word, 0) + 1
            for word, count in counts.items():
                bucket, sign = _bucket(word, self.dim)
                out[row, bucket] += sign * float(np.log1p(count))
        return _normalize_rows(out)


_REGISTRY: dict[str, Callable[[], Embedder]] = {
    STATIC_MODEL: StaticEmbedder,
    "hash": HashEmbedder,
}


def register_embedder(name: str, factory: Callable[[], Embedder]) -> None:
    """Make ``get_embedder(name)`` return ``factory()``; a later registration replaces one."""
    _REGISTRY[name] = factory


def embedder_names() -> list[str]:
    return sorted(_REGISTRY)


def get_embedder(name: str = DEFAULT_EMBEDDER) -> Embedder:
    """The embedder registered under ``name``; :class:`EmbedderError` for an unknown name or a
    model whose files are missing.

    ``name`` may also be an embedder's full name as an index records it (``m2v-minilm@1a2b3c4d``):
    that is an error when the installed model is no longer the one that made the vectors.
    """
    factory = _REGISTRY.get(name)
    base, _, version = name.partition("@")
    if factory is None and version:
        factory = _REGISTRY.get(base)
    if factory is None:
        raise EmbedderError(
            f"unknown embedder {base!r}; choose one of: {', '.join(embedder_names())}"
        )
    embedder = factory()
    if version and name not in _REGISTRY and embedder.name != name:
        raise EmbedderError(
            f"the index's vectors were made by {name}, but the installed model is "
            f"{embedder.name}; run `ctxmill ingest` to embed again"
        )
    return embedder


def cosine_top_k(query: np.ndarray, matrix: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The ``k`` rows of ``matrix`` most similar to ``query``, best first, as (row, cosine).

    Exact: one matrix-vector product and ``argpartition``, no approximate index.  The rows are
    expected to be L2-normalized, as every :class:`Embedder` returns them (normalizing 100k rows
    per query would double the cost); the query is normalized here.  Equal scores come out in row
    order, so results are deterministic.
    """
    if matrix.ndim != 2:
        raise ValueError(f"matrix must be 2-D, got shape {matrix.shape}")
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    if q.shape[0] != matrix.shape[1]:
        raise ValueError(f"query has {q.shape[0]} dimensions, matrix rows have {matrix.shape[1]}")
    n = matrix.shape[0]
    if k <= 0 or n == 0:
        return []
    norm = float(np.linalg.norm(q))
    if norm > 0:
        q = q / norm
    scores = matrix @ q
    if k < n:
        candidates = np.argpartition(-scores, k - 1)[:k]
        # argpartition splits ties at the k-th score arbitrarily; take every row that ties with
        # it, so the row-order tie rule below decides which of them survive.
        kth = scores[candidates].min()
        candidates = np.union1d(candidates, np.flatnonzero(scores == kth))
    else:
        candidates = np.arange(n)
    order = np.lexsort((candidates, -scores[candidates]))[:k]
    return [(int(candidates[i]), float(scores[candidates[i]])) for i in order]
