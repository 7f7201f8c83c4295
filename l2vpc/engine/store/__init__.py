"""Durable desired state of the engine behind one interface (base.py): SQLite embedded,
PostgreSQL for controllers, both through one SQL layer (sql.py over each backend's dialect).

    base.py       the interface: objects, allocations, host reports, counters
    documents.py  what both accept and refuse; objects decoded on first access
    sql.py        every statement once: Dialect, Statements, SqlTransaction, SqlStore
    sqlite.py     SQLite: one connection, BEGIN IMMEDIATE, migrations, its dialect
    postgres.py   PostgreSQL: a pool, advisory locks, migrations, deferred writes, its dialect
    cached.py     a transaction read ahead for a batch of creates
    migrations/   the schema ladder of each dialect
"""

from __future__ import annotations

from l2vpc.engine.errors import StoreError
from l2vpc.engine.store.base import KINDS, HostReport, Store, StoredObject, Transaction
from l2vpc.engine.store.sqlite import SqliteStore


def open_store(path: str) -> Store:
    """Open the state store at `path`: a file path or `sqlite://` URL (SQLite, created with its
    directory if missing), or a `postgresql://` URL (PostgreSQL; never echoed, it may carry a
    password)."""
    if path.startswith(("postgresql://", "postgres://")):
        # Imported here: psycopg is needed only by controllers using PostgreSQL.
        try:
            from l2vpc.engine.store.postgres import PostgresStore
        except ImportError as exc:
            raise StoreError(f"PostgreSQL state stores need psycopg 3 ({exc}); "
                             "install it: pip install 'psycopg[binary]'") from None

        return PostgresStore(path)
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
