"""ctxmill: manufacture the context for an AI coding agent's task.

The command line's verbs are functions here: ``ctxmill.ingest()``, ``.search()``, ``.show()``,
``.build()``, ``.compress()``, ``.distill()``, with ``ctxmill.load_config()`` and
``ctxmill.CtxmillError``.  They are documented in :mod:`ctxmill.api` and loaded on first use, so
that ``import ctxmill`` costs next to nothing.
"""

from __future__ import annotations

import sys
import types

__version__ = "0.1.0"

# Not ``typing.TYPE_CHECKING``: importing typing costs more than the rest of ``import ctxmill``,
# and type checkers treat any constant of this name the same way.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ctxmill.api import (
        CtxmillError,
        Passage,
        build,
        compress,
        distill,
        ingest,
        load_config,
        search,
        show,
    )

__all__ = [
    "CtxmillError",
    "Passage",
    "__version__",
    "build",
    "compress",
    "distill",
    "ingest",
    "load_config",
    "search",
    "show",
]

_API = frozenset(__all__) - {"__version__"}


def __getattr__(name: str) -> Any:
    if name in _API:
        from ctxmill import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Package(types.ModuleType):
    """Five verbs share their names with the modules that implement them (``ctxmill.search``
    the function, ``ctxmill/search.py`` the module).  Importing such a module makes the import
    system bind it on the package, which would hide the function; this keeps the function.
    ``from ctxmill.search import …`` still reaches the module through ``sys.modules``."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _API and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
