"""What only the PostgreSQL store has, on a real, throwaway server (l2vpc.testing.postgres):
jsonb, lost connections and idle sessions, URLs and secrets, a newer l2vpc migrating under a
running store, schemas, deferred writes sent with the next statement and keyed advisory locks.
The store's semantics, on SQLite and PostgreSQL alike, are test_store_contract.py's; the
controllers' leadership and notifications are tests/controller/test_plane_postgres.py's."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from l2vpc.engine.errors import ConflictError, StoreError, TemporaryError
from l2vpc.engine.store import open_store
from l2vpc.engine.store.base import StoredObject
from l2vpc.engine.store.migrations import Migration, load_migrations
from l2vpc.engine.store.postgres import PostgresStore
from l2vpc.testing.postgres import Schema

LATEST = len(load_migrations("postgres"))


@pytest.fixture
def store(db: Schema) -> Iterator[PostgresStore]:
    with PostgresStore(db.url) as s:
        yield s


# --- jsonb -------------------------------------------------------------------------------


def test_data_is_jsonb(store: PostgresStore, db: Schema) -> None:
    with store.transaction() as tx:
        tx.create("vpc", "v1", {"cidr": "10.0.0.0/24", "n": 5})
        tx.put_host_report("h1", 2, {"ports": [{"id": "p1"}]})
    assert db.raw("SELECT data->>'cidr', (data->'n')::int, pg_typeof(data)::text FROM objects") == [
        ("10.0.0.0/24", 5, "jsonb")
    ]
    assert db.raw("SELECT config->'ports'->0->>'id' FROM host_reports") == [("p1",)]


# --- transactions -------------------------------------------------------------------------


def test_hung_lock_holder_is_cut_off_after_the_idle_timeout(db: Schema) -> None:
    with PostgresStore(db.url, idle_timeout=0.5) as hung, PostgresStore(db.url, busy_timeout=5) as other:
        ctx = hung.transaction()
        tx = ctx.__enter__()
        tx.create("vpc", "never-committed", {})
        started = time.monotonic()
        with other.transaction() as otx:  # waits until the server ends the idle session
            assert otx.get("vpc", "never-committed") is None
        assert 0.4 <= time.monotonic() - started < 4
        with pytest.raises(TemporaryError):
            tx.create("vpc", "too-late", {})
        with pytest.raises(TemporaryError, match="nothing was committed"):
            ctx.__exit__(None, None, None)  # a caller that swallowed the error cannot commit
        with hung.transaction() as tx2:  # a fresh connection
            assert tx2.list("vpc") == []


# --- connections, URLs and secrets --------------------------------------------------------


def test_lost_connections_are_replaced_or_reported(db: Schema) -> None:
    with PostgresStore(db.url, application_name="victim") as s:
        with s.transaction() as tx:
            tx.create("vpc", "v", {})
        # The pooled idle connection dies (server restart, DBA): the next BEGIN reconnects.
        assert db.server.terminate(db.database, "victim") == 1
        with s.transaction() as tx:
            assert tx.get("vpc", "v") is not None
        # Inside a transaction: TemporaryError, nothing of it kept, the store still works.
        with pytest.raises(TemporaryError, match="unreachable"), s.transaction() as tx:
            tx.create("vpc", "lost", {})
            db.server.terminate(db.database, "victim")
            tx.get("vpc", "v")
        with pytest.raises(TemporaryError, match="unknown whether the transaction was committed"):
            with s.transaction() as tx:
                tx.create("vpc", "lost-at-commit", {})
                db.server.terminate(db.database, "victim")
        with s.transaction() as tx:
            assert [o.id for o in tx.list("vpc")] == ["v"]


def test_open_store_urls_and_errors_never_echo_the_password(db: Schema) -> None:
    secret = db.server.password
    with open_store(db.url) as s:
        assert isinstance(s, PostgresStore) and s.schema_version() == LATEST
        assert secret not in s.name and s.name.startswith("postgresql://l2vpc@127.0.0.1:")
    with open_store(db.url.replace("postgresql://", "postgres://", 1)) as s:
        assert s.schema_version() == LATEST
    failures: list[tuple[str, type[Exception], str]] = [
        (db.url.replace(secret, "wrong-" + secret), StoreError, "password authentication failed"),
        (db.url.replace(f"/{db.database}?", "/no_such_db?"), StoreError, 'database "no_such_db" does not exist'),
        (db.url.replace(db.schema, "no_such_schema"), StoreError, "no schema of the search_path exists"),
        (f"postgresql://l2vpc:{secret}@127.0.0.1:1/x", TemporaryError, "is unreachable"),
        (f"postgresql://l2vpc:{secret}@no-such-host.invalid/x", StoreError, "unknown host"),
        (f"postgresql://l2vpc:{secret}%ZZ@127.0.0.1/x", StoreError, "not a valid PostgreSQL URL"),
        (f"postgresql://l2vpc:{secret}@127.0.0.1:port/x", StoreError, "port must be a number"),
        (f"postgresql://l2vpc:{secret}@127.0.0.1/x?bogus=1", StoreError, "not a valid PostgreSQL URL"),
    ]
    for url, error, words in failures:
        with pytest.raises(error) as err:
            open_store(url)
        assert words in str(err.value), (words, str(err.value))
        assert secret not in str(err.value) and secret not in repr(err.value.__cause__), url


def test_a_url_without_a_password_is_a_login_problem_not_a_retry(db: Schema, monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    """It used to be a TemporaryError ("unreachable ...; retry later"): no retry supplies a password."""
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    url = db.url.replace(f":{db.server.password}@", "@")
    with pytest.raises(StoreError) as err:
        open_store(url)
    assert not isinstance(err.value, TemporaryError)
    message = str(err.value)
    assert "login failed" in message and "has none" in message and "PGPASSWORD" in message, message


def test_read_only_server_is_refused_with_a_hint(db: Schema) -> None:
    with pytest.raises(StoreError, match="read-only"):
        PostgresStore(db.url + "%20-cdefault_transaction_read_only%3Don")


# --- migrations ---------------------------------------------------------------------------

V2 = Migration(2, "host_labels", "ALTER TABLE host_reports ADD COLUMN labels jsonb NOT NULL DEFAULT '{}';")


def test_a_running_store_refuses_to_write_after_a_newer_l2vpc_migrated(db: Schema) -> None:
    v1 = load_migrations("postgres")[:1]
    with PostgresStore(db.url, migrations=v1) as s:
        with s.transaction() as tx:
            tx.create("vpc", "v", {"kept": True})
            tx.put_host_report("h1", 1, {})
        assert s.schema_version() == 1
        with PostgresStore(db.url, migrations=(*v1, V2)) as s2:
            assert s2.schema_version() == 2
            with s2.transaction() as tx:
                assert tx.get("vpc", "v") == StoredObject("vpc", "v", 1, {"kept": True})
        # The running store that only knows version 1 now refuses to write the old layout.
        with pytest.raises(StoreError, match=r"upgraded to schema 2 by a newer l2vpc while this one \(schema 1\)"):
            with s.transaction():
                pass
    assert db.raw("SELECT version, name FROM schema_version ORDER BY version") == [(1, "initial"), (2, "host_labels")]
    assert db.raw("SELECT host, labels FROM host_reports") == [("h1", {})]
    with pytest.raises(StoreError, match=r"written by a newer l2vpc \(schema 2\); upgrade l2vpc"):
        PostgresStore(db.url, migrations=v1)


def test_foreign_database_is_refused(db: Schema) -> None:
    db.raw("CREATE TABLE users (name text)")
    db.raw("ALTER TABLE users OWNER TO l2vpc")
    with pytest.raises(StoreError, match="holds other tables but no l2vpc state"):
        PostgresStore(db.url)
    assert db.raw("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()") == [("users",)]
    # A schema of its own in the same database works.
    db.raw(f"CREATE SCHEMA {db.schema}_l2 AUTHORIZATION l2vpc")
    try:
        with PostgresStore(db.url.replace(db.schema, f"{db.schema}_l2")) as s:
            assert s.schema_version() == LATEST
        assert db.raw(f"SELECT count(*) FROM pg_tables WHERE schemaname = '{db.schema}_l2'") == [(6,)]
    finally:
        db.raw(f"DROP SCHEMA {db.schema}_l2 CASCADE")


# --- deferred writes and keyed locks ------------------------------------------------------


def test_deferred_writes_travel_with_the_next_statement(store: PostgresStore) -> None:
    """create_new and claim send nothing by themselves: their clash surfaces at the next
    statement (test_store_contract.py checks that it fails the whole transaction)."""
    with store.transaction() as tx:
        tx.create("vpc", "vpc-1", {"n": 1})
        tx.reserve("name:vpc", "web", "vpc-1")
    with pytest.raises(ConflictError, match="vpc 'vpc-1' already exists"), store.transaction() as tx:
        tx.create_new("vpc", "vpc-1", {"n": 2})
        tx.claim("name:vpc", "web", "vpc-2")
        sent = False  # neither raised: nothing was sent yet
        tx.get("vpc", "other")  # both go with this one
        sent = True
    assert not sent
    with store.transaction() as tx:
        assert tx.get("vpc", "vpc-1") == StoredObject("vpc", "vpc-1", 1, {"n": 1})


def test_keyed_transactions_exclude_only_the_same_keys(store: PostgresStore) -> None:
    """Writers of different keys run side by side; the same key, or a plain transaction,
    waits (Store.keyed_transaction)."""
    order: list[str] = []

    def later(ctx: Any, name: str) -> threading.Thread:
        def run() -> None:
            with ctx as tx:
                tx.next_sequence(name)
                order.append(name)

        t = threading.Thread(target=run)
        t.start()
        return t

    with store.keyed_transaction(["vpc:a", "workload:w"]) as tx:
        tx.next_sequence("first")
        other = later(store.keyed_transaction(["vpc:b"]), "other-key")
        other.join(timeout=10)
        assert order == ["other-key"]  # did not wait for us
        same = later(store.keyed_transaction(["workload:w"]), "same-key")
        plain = later(store.transaction(), "plain")
        time.sleep(0.5)
        assert order == ["other-key"]  # both wait
        order.append("first")
    same.join(timeout=10)
    plain.join(timeout=10)
    assert order[:2] == ["other-key", "first"] and sorted(order[2:]) == ["plain", "same-key"]
