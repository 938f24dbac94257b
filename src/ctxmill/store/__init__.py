"""The index: one interface (:class:`Store`), one embedded implementation (SQLite)."""

from __future__ import annotations

from ctxmill.config import Config
from ctxmill.store.base import Filters, Hit, SessionRecord, SourceState, Store, StoreError
from ctxmill.store.sqlite import SQLiteStore

__all__ = [
    "Filters",
    "Hit",
    "SQLiteStore",
    "SessionRecord",
    "SourceState",
    "Store",
    "StoreError",
    "open_store",
]


def open_store(cfg: Config, *, readonly: bool = False) -> Store:
    return SQLiteStore(cfg.index_path, readonly=readonly)
