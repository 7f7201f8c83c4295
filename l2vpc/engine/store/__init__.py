"""Durable state of the engine behind one interface (base.py): SQLite embedded, PostgreSQL later."""

from __future__ import annotations

from l2vpc.engine.errors import StoreError
from l2vpc.engine.store.base import KINDS, HostReport, Store, StoredObject, Transaction
from l2vpc.engine.store.sqlite import SqliteStore


def open_store(path: str) -> Store:
    """Open the state store at `path`: a file path or `sqlite://` URL (SQLite, created with its
    directory if missing), or a `postgresql://` URL once that store exists."""
    if path.startswith(("postgresql://", "postgres://")):
        # The URL may carry a password: never echo it.
        raise StoreError("PostgreSQL state stores are not available yet; use a file path (SQLite)")
    if path.startswith("sqlite://"):
        path = path[len("sqlite://") :]
    elif "://" in path:
        scheme = path.split("://", 1)[0]
        raise StoreError(f"unsupported state store URL scheme {scheme!r}; use a file path or postgresql://")
    if not path.strip():
        raise StoreError("state store path is empty")
    return SqliteStore(path)


__all__ = [
    "KINDS",
    "HostReport",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoredObject",
    "Transaction",
    "open_store",
]
