"""What only the SQLite store has: a file (created with its directory, private, WAL), damage
and foreign files, threads queueing on its one connection, and script splitting. The store's
semantics, on SQLite and PostgreSQL alike, are test_store_contract.py's."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from l2vpc.engine.errors import StoreError, TemporaryError
from l2vpc.engine.store import open_store
from l2vpc.engine.store.migrations import Migration, load_migrations, split_statements
from l2vpc.engine.store.sqlite import SqliteStore

LATEST = len(load_migrations("sqlite"))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "l2vpc.db"  # parent missing on purpose: the store creates it


def raw(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Read the file behind the store's back, through a separate connection."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


# --- threads ------------------------------------------------------------------------------


def test_thread_waiting_on_the_same_store_times_out(db_path: Path) -> None:
    with SqliteStore(db_path, busy_timeout=0.2) as s:
        entered, done = threading.Event(), threading.Event()

        def hold() -> None:
            with s.transaction():
                entered.set()
                done.wait(5)

        t = threading.Thread(target=hold)
        t.start()
        entered.wait(5)
        try:
            with pytest.raises(TemporaryError, match="another thread's transaction"), s.transaction():
                pass
        finally:
            done.set()
            t.join()


# --- opening, migrations, damage, permissions ---------------------------------------------


def test_open_creates_directory_and_an_empty_file_is_a_new_store(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "state.db"
    with SqliteStore(path) as s:
        assert s.schema_version() == LATEST
    empty = tmp_path / "empty.db"
    empty.touch()
    with open_store(str(empty)) as s:
        assert s.schema_version() == LATEST
    assert raw(empty, "SELECT version, name FROM schema_version") == [
        (m.version, m.name) for m in load_migrations("sqlite")]
    assert raw(empty, "PRAGMA journal_mode") == [("wal",)]
    with open_store(f"sqlite://{tmp_path / 'url.db'}") as s:
        assert s.schema_version() == LATEST


def test_open_store_refuses_other_urls_without_echoing_secrets() -> None:
    with pytest.raises(StoreError) as err:
        open_store("postgresql://admin:hunter2@db/l2vpc")
    assert "hunter2" not in str(err.value)
    with pytest.raises(StoreError, match="unsupported state store URL scheme 'mysql'"):
        open_store("mysql://x/y")


V2 = Migration(2, "host_labels", "ALTER TABLE host_reports ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';")


def test_shipped_migrations_and_statement_splitting(tmp_path: Path) -> None:
    migrations = load_migrations("sqlite")
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert split_statements(
        "-- c; not a split\nCREATE TABLE a (x TEXT DEFAULT ';');\n\nSELECT 1;\n-- end"
    ) == [
        "-- c; not a split\nCREATE TABLE a (x TEXT DEFAULT ';');",
        "SELECT 1;",
    ]
    with pytest.raises(ValueError, match="incomplete statement"):
        split_statements("SELECT 1; SELECT")
    with pytest.raises(RuntimeError, match=r"not numbered 1\.\.N"):
        SqliteStore(tmp_path / "never-created.db", migrations=[V2])
    assert not (tmp_path / "never-created.db").exists()


def test_not_a_database_is_a_store_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database, just some text that is long enough " * 100)
    with pytest.raises(StoreError, match=rf"{path} is damaged or not an l2vpc state file"):
        SqliteStore(path)


def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other-app.db"
    raw(path, "CREATE TABLE users (name TEXT)")
    with pytest.raises(StoreError, match="is a SQLite database but not an l2vpc state file"):
        SqliteStore(path)
    assert raw(path, "SELECT name FROM sqlite_master") == [("users",)]  # untouched


def test_damaged_pages_are_a_store_error_naming_the_path(db_path: Path) -> None:
    with SqliteStore(db_path) as s, s.transaction() as tx:
        for i in range(2000):
            tx.create("attachment", f"att-{i:05d}", {"i": i, "pad": "x" * 300})
    assert not Path(f"{db_path}-wal").exists()  # closing checkpointed everything into the file
    size = db_path.stat().st_size
    with open(db_path, "r+b") as f:  # overwrite pages in the middle of the objects table
        f.seek(size // 2 // 4096 * 4096)
        f.write(b"\xff" * 4096 * 4)
    with pytest.raises(StoreError, match=str(db_path)):
        with SqliteStore(db_path) as s, s.transaction() as tx:
            for obj in tx.list("attachment"):
                obj.data  # noqa: B018
    with SqliteStore(db_path) as s, pytest.raises(StoreError, match="is damaged"):
        s.check()


def test_files_are_private(db_path: Path, tmp_path: Path) -> None:
    with SqliteStore(db_path) as s:
        with s.transaction() as tx:
            tx.create("direct_connect", "dc", {"service_key": "secret"})
        files = [db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm")]
        for f in files:
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    # An existing file that is too open is tightened on open.
    loose = tmp_path / "loose.db"
    loose.touch()
    os.chmod(loose, 0o644)
    with SqliteStore(loose):
        assert stat.S_IMODE(loose.stat().st_mode) == 0o600
