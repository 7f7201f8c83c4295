"""The PostgreSQL store on a real, throwaway server (pg_server.py): the semantics of base.Store
as test_store_sqlite.py checks them, migrations, lost connections, secrets in URLs, writers
in several processes, the engine facade on it, and leadership."""

from __future__ import annotations

import dataclasses
import multiprocessing
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

psycopg = pytest.importorskip("psycopg")

import pg_server  # noqa: E402  # tests/engine is on sys.path (rootdir-relative test modules)

from l2vpc.agent.local import LocalAgentPool  # noqa: E402
from l2vpc.engine.api import Engine  # noqa: E402
from l2vpc.engine.errors import (  # noqa: E402
    ConflictError,
    NotFoundError,
    StoreError,
    TemporaryError,
    ValidationError,
)
from l2vpc.engine.store import open_store  # noqa: E402
from l2vpc.engine.store.base import StoredObject  # noqa: E402
from l2vpc.engine.store.migrations import Migration, load_migrations  # noqa: E402
from l2vpc.engine.store.postgres import PostgresStore  # noqa: E402

LATEST = len(load_migrations("postgres"))

pytestmark = pytest.mark.skipif(pg_server.missing_reason() is not None, reason=str(pg_server.missing_reason()))


@pytest.fixture(scope="session")
def pg() -> Iterator[pg_server.PgServer]:
    with pg_server.running_server() as server:
        server.create_database("l2vpc_tests")
        yield server


class Db:
    """A fresh, empty schema of the session's database, as the first of the store's search_path
    (a schema costs a millisecond, a database a third of a second)."""

    database = "l2vpc_tests"

    def __init__(self, server: pg_server.PgServer, schema: str) -> None:
        self.server, self.schema = server, schema
        self.raw(f"CREATE SCHEMA {schema} AUTHORIZATION {pg_server.ROLE}")
        self.url = f"{server.url(self.database)}?options=-csearch_path%3D{schema}"

    def raw(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Read or write behind the store's back, as the superuser."""
        with self.server.admin(self.database) as conn:
            conn.execute(f"SET search_path = {self.schema}")
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []


_counter = iter(range(1_000_000))


@pytest.fixture
def db(pg: pg_server.PgServer) -> Iterator[Db]:
    d = Db(pg, f"t{next(_counter)}")
    try:
        yield d
    finally:
        d.raw(f"DROP SCHEMA {d.schema} CASCADE")


@pytest.fixture
def store(db: Db) -> Iterator[PostgresStore]:
    with PostgresStore(db.url) as s:
        yield s


# --- objects ------------------------------------------------------------------------------


def test_crud_generations_and_order(store: PostgresStore) -> None:
    doc = {"name": "a", "cidr": "10.0.0.0/24", "tags": {"x": [1, 2]}}
    with store.transaction() as tx:
        created = tx.create("vpc", "vpc-b", doc, tenant="t1")
        tx.create("vpc", "vpc-a", {"name": "first"}, tenant="t2")
        tx.create("vpc", "VPC-z", {"name": "upper case sorts first bytewise"})
        tx.create("attachment", "vpc-b", {"other": "kind, same id"})
    assert created == StoredObject("vpc", "vpc-b", 1, doc, "t1")
    doc["name"] = "changed by the caller afterwards"

    with store.transaction() as tx:
        got = tx.get("vpc", "vpc-b")
        assert got == StoredObject(
            "vpc", "vpc-b", 1, {"name": "a", "cidr": "10.0.0.0/24", "tags": {"x": [1, 2]}}, "t1"
        )
        updated = tx.update("vpc", "vpc-b", {"name": "b"}, expected_generation=1)
        assert (updated.generation, updated.data, updated.tenant) == (2, {"name": "b"}, "t1")
        assert tx.update("vpc", "vpc-b", {"name": "c"}, expected_generation=2).generation == 3

    with store.transaction() as tx:
        assert [o.id for o in tx.list("vpc")] == ["VPC-z", "vpc-a", "vpc-b"]  # by id, bytewise
        assert tx.list("vpc", tenant="t2") == [StoredObject("vpc", "vpc-a", 1, {"name": "first"}, "t2")]
        assert [o.id for o in tx.list("vpc", tenant="t1")] == ["vpc-b"]
        assert tx.list("vpc", tenant="t1")[0].data == {"name": "c"}
        assert tx.list("host") == []
        assert tx.get("vpc", "vpc-b", tenant="t2") is None  # another tenant's object is invisible
        assert tx.get("vpc", "vpc-b", tenant="t1") is not None
        tx.delete("vpc", "vpc-b", expected_generation=3)
        tx.delete("vpc", "vpc-a")
        tx.delete("vpc", "VPC-z")
    with store.transaction() as tx:
        assert tx.list("vpc") == []
        assert tx.get("attachment", "vpc-b") is not None  # delete removed nothing else
        with pytest.raises(NotFoundError, match="vpc 'vpc-a' not found"):
            tx.delete("vpc", "vpc-a")
        with pytest.raises(NotFoundError):
            tx.update("vpc", "vpc-a", {}, expected_generation=1)
        with pytest.raises(NotFoundError):
            tx.delete("vpc", "vpc-a", expected_generation=1)


def test_returned_objects_behave_like_stored_objects(store: PostgresStore) -> None:
    with store.transaction() as tx:
        created = tx.create("vpc", "v1", {"n": 1, "nested": {"a": [1]}, "s": "ünï €"})
    with store.transaction() as tx:
        listed, got = tx.list("vpc")[0], tx.get("vpc", "v1")
    plain = StoredObject("vpc", "v1", 1, {"n": 1, "nested": {"a": [1]}, "s": "ünï €"}, "")
    for obj in (created, listed, got):
        assert obj == plain and plain == obj and not obj != plain
        assert obj.data is obj.data  # decoded once
        # jsonb keeps keys in its own order (shorter first): equal as dicts, not as text.
        assert repr(obj) == repr(StoredObject("vpc", "v1", 1, obj.data, ""))
        assert dataclasses.replace(obj, data={"n": 2}).data == {"n": 2}
        assert pickle.loads(pickle.dumps(obj)) == plain
        with pytest.raises(dataclasses.FrozenInstanceError):
            obj.data = {}  # type: ignore[misc]


def test_data_is_jsonb(store: PostgresStore, db: Db) -> None:
    with store.transaction() as tx:
        tx.create("vpc", "v1", {"cidr": "10.0.0.0/24", "n": 5})
        tx.put_host_report("h1", 2, {"ports": [{"id": "p1"}]})
    assert db.raw("SELECT data->>'cidr', (data->'n')::int, pg_typeof(data)::text FROM objects") == [
        ("10.0.0.0/24", 5, "jsonb")
    ]
    assert db.raw("SELECT config->'ports'->0->>'id' FROM host_reports") == [("p1",)]


def test_stale_generation_conflicts_and_keeps_newer_data(store: PostgresStore) -> None:
    with store.transaction() as tx:
        tx.create("attachment", "att-1", {"v": 1})
    with store.transaction() as tx:
        tx.update("attachment", "att-1", {"v": 2}, expected_generation=1)
    with store.transaction() as tx, pytest.raises(ConflictError) as err:
        tx.update("attachment", "att-1", {"v": "stale"}, expected_generation=1)
    message = str(err.value)
    assert "attachment" in message and "att-1" in message
    assert "expected generation 1" in message and "actual generation 2" in message
    with store.transaction() as tx, pytest.raises(ConflictError, match="expected generation 7"):
        tx.delete("attachment", "att-1", expected_generation=7)
    with store.transaction() as tx:
        assert tx.get("attachment", "att-1") == StoredObject("attachment", "att-1", 2, {"v": 2})


def test_create_duplicate_conflicts(store: PostgresStore) -> None:
    with store.transaction() as tx:
        tx.create("host", "h1", {"addr": "192.0.2.1"}, tenant="t1")
    with store.transaction() as tx, pytest.raises(ConflictError, match="host 'h1' already exists"):
        tx.create("host", "h1", {"addr": "overwritten?"}, tenant="t2")
    with store.transaction() as tx:
        assert tx.get("host", "h1") == StoredObject("host", "h1", 1, {"addr": "192.0.2.1"}, "t1")


def test_bad_input_names_the_field_and_leaves_the_transaction_usable(store: PostgresStore) -> None:
    # On PostgreSQL a failed statement would abort the whole transaction: every check must
    # happen before anything is sent, so the caller can go on (and commit) after the error.
    with store.transaction() as tx:
        with pytest.raises(ValidationError, match="kind: unknown object kind 'vcp'; allowed: host, vpc"):
            tx.create("vcp", "x", {})
        with pytest.raises(ValidationError, match=r"^data: vpc 'x': not storable as JSON"):
            tx.create("vpc", "x", {"when": object()})
        with pytest.raises(ValidationError, match=r"^data: .*not storable as JSON"):
            tx.create("vpc", "x", {"ratio": float("nan")})
        with pytest.raises(ValidationError, match=r"^data: .*contains a NUL character"):
            tx.create("vpc", "x", {"name": "a\x00b"})  # jsonb cannot hold it
        with pytest.raises(ValidationError, match=r"^data: .*must be a JSON object"):
            tx.create("vpc", "x", ["not", "a", "dict"])  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match=r"^id: must be a non-empty string"):
            tx.create("vpc", "", {})
        with pytest.raises(ValidationError, match=r"^id: must not contain NUL"):
            tx.create("vpc", "a\x00", {})
        with pytest.raises(ValidationError, match=r"^value: must be a non-empty string"):
            tx.reserve("vni", 5, "vpc-1")  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match=r"^expected_generation: must be an integer"):
            tx.update("vpc", "x", {}, expected_generation="1")  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match="not valid Unicode"):
            tx.create("vpc", "x", {"name": "\ud800"})
        assert tx.get("vpc", "a\x00") is None
        assert tx.list("vpc") == [] and tx.allocations("vni") == {}
        tx.create("vpc", "ok", {"after": "the errors"})
    with store.transaction() as tx:
        assert [o.id for o in tx.list("vpc")] == ["ok"]


# --- allocations --------------------------------------------------------------------------


def test_reserve_conflicts_name_pool_value_and_holder(store: PostgresStore) -> None:
    with store.transaction() as tx:
        tx.reserve("vni", "1001", "vpc-a")
        tx.reserve("vni", "1001", "vpc-a")  # same owner: no-op
        tx.reserve("mac", "1001", "vpc-b")  # pools are independent
    with store.transaction() as tx:
        with pytest.raises(ConflictError) as err:
            tx.reserve("vni", "1001", "vpc-b")
        assert "vni" in str(err.value) and "'1001'" in str(err.value) and "'vpc-a'" in str(err.value)
        # The failed claim leaves the transaction usable: an allocator tries the next value.
        tx.reserve("vni", "1002", "vpc-b")
    with store.transaction() as tx:
        assert tx.allocations("vni") == {"1001": "vpc-a", "1002": "vpc-b"}
        assert tx.allocations("mac") == {"1001": "vpc-b"}


def test_release_owner(store: PostgresStore) -> None:
    with store.transaction() as tx:
        for v in ("1", "2"):
            tx.reserve("vni", v, "vpc-a")
            tx.reserve("mac", v, "vpc-a")
        tx.reserve("vni", "3", "vpc-b")
    with store.transaction() as tx:
        tx.release_owner("vpc-a", pool="mac")
    with store.transaction() as tx:
        assert tx.allocations("mac") == {}
        assert tx.allocations("vni") == {"1": "vpc-a", "2": "vpc-a", "3": "vpc-b"}
        tx.release_owner("vpc-a")
        tx.release_owner("nobody")
    with store.transaction() as tx:
        assert tx.allocations("vni") == {"3": "vpc-b"}
        tx.reserve("vni", "1", "vpc-c")  # freed values can be claimed again


# --- host reports and sequences -----------------------------------------------------------


def test_host_reports(store: PostgresStore) -> None:
    config = {"host": "h1", "segments": [{"vni": 1001, "mtu": 1450}], "ports": []}
    before = time.time()
    with store.transaction() as tx:
        tx.put_host_report("h1", 3, config)
        tx.put_host_report("h2", 1, {})
    with store.transaction() as tx:
        reports = tx.host_reports()
    assert set(reports) == {"h1", "h2"}
    assert (reports["h1"].host, reports["h1"].generation, reports["h1"].config) == ("h1", 3, config)
    assert before - 0.001 <= reports["h1"].updated_at <= time.time()
    with store.transaction() as tx:
        tx.put_host_report("h1", 4, {"host": "h1"})  # replaces
        tx.delete_host_report("h2")
        tx.delete_host_report("never-reported")
    with store.transaction() as tx:
        reports = tx.host_reports()
    assert list(reports) == ["h1"]
    assert (reports["h1"].generation, reports["h1"].config) == (4, {"host": "h1"})


def test_sequences_count_per_name_and_survive_reopen(db: Db) -> None:
    with PostgresStore(db.url) as s, s.transaction() as tx:
        assert [tx.next_sequence("gen:h1") for _ in range(3)] == [1, 2, 3]
        assert tx.next_sequence("gen:h2") == 1
    with PostgresStore(db.url) as s, s.transaction() as tx:
        assert tx.next_sequence("gen:h1") == 4


# --- transactions -------------------------------------------------------------------------


def test_exception_rolls_back_everything(db: Db) -> None:
    with PostgresStore(db.url) as s:
        with s.transaction() as tx:
            tx.create("vpc", "keep", {"v": 1})
            tx.next_sequence("gen")
        with pytest.raises(KeyError), s.transaction() as tx:
            tx.create("vpc", "new", {"v": 1})
            tx.update("vpc", "keep", {"v": 2}, expected_generation=1)
            tx.reserve("vni", "7", "new")
            tx.put_host_report("h1", 1, {})
            assert tx.next_sequence("gen") == 2
            tx.delete("vpc", "keep")
            raise KeyError("boom")
    with PostgresStore(db.url) as s, s.transaction() as tx:
        assert tx.list("vpc") == [StoredObject("vpc", "keep", 1, {"v": 1})]
        assert tx.allocations("vni") == {} and tx.host_reports() == {}
        assert tx.next_sequence("gen") == 2


def test_nested_transaction_is_refused_and_outer_still_commits(store: PostgresStore) -> None:
    with store.transaction() as outer:
        with pytest.raises(RuntimeError, match="nested"):
            store.transaction().__enter__()
        outer.create("vpc", "v", {})
        assert store.schema_version() == LATEST  # allowed inside: it reads on the same connection
    with store.transaction() as tx:
        assert tx.get("vpc", "v") is not None


def test_transaction_unusable_after_its_block_and_closed_store(db: Db) -> None:
    s = PostgresStore(db.url)
    with s.transaction() as tx:
        pass
    with pytest.raises(RuntimeError, match="after its `with` block"):
        tx.create("vpc", "late", {})
    s.close()
    s.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        s.transaction().__enter__()


def test_threads_share_a_store_without_lost_updates(store: PostgresStore) -> None:
    with store.transaction() as tx:
        tx.create("vpc", "counter", {"n": 0})

    def bump() -> None:
        for _ in range(50):
            with store.transaction() as tx:
                cur = tx.get("vpc", "counter")
                assert cur is not None
                tx.update("vpc", "counter", {"n": cur.data["n"] + 1}, cur.generation)

    threads = [threading.Thread(target=bump) for _ in range(6)]  # more threads than connections
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with store.transaction() as tx:
        counter = tx.get("vpc", "counter")
    assert counter is not None and counter.data == {"n": 300} and counter.generation == 301


def test_writer_waits_for_another_connection_then_times_out(db: Db) -> None:
    with PostgresStore(db.url) as holder, PostgresStore(db.url, busy_timeout=0.3) as waiter:
        entered = threading.Event()

        def hold(seconds: float) -> None:
            with holder.transaction() as tx:
                tx.create("vpc", f"held-{seconds}", {})
                entered.set()
                time.sleep(seconds)

        t = threading.Thread(target=hold, args=(0.1,))
        t.start()
        entered.wait(5)
        with waiter.transaction() as tx:
            assert tx.get("vpc", "held-0.1") is not None  # ran after the holder committed
        t.join()

        with holder.transaction():
            started = time.monotonic()
            with pytest.raises(TemporaryError, match=r"postgresql://l2vpc@127\.0\.0\.1:\d+/l2vpc_tests is busy") as err:
                with waiter.transaction():
                    pass
            assert 0.25 <= time.monotonic() - started < 3
            assert "0.3 s" in str(err.value) and db.server.password not in str(err.value)
        with waiter.transaction() as tx:  # the timed-out connection is usable again
            tx.create("vpc", "after", {})


def test_hung_lock_holder_is_cut_off_after_the_idle_timeout(db: Db) -> None:
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


def test_lost_connections_are_replaced_or_reported(db: Db) -> None:
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


def test_open_store_urls_and_errors_never_echo_the_password(db: Db) -> None:
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


def test_read_only_server_is_refused_with_a_hint(db: Db) -> None:
    with pytest.raises(StoreError, match="read-only"):
        PostgresStore(db.url + "%20-cdefault_transaction_read_only%3Don")


# --- migrations ---------------------------------------------------------------------------

V2 = Migration(2, "host_labels", "ALTER TABLE host_reports ADD COLUMN labels jsonb NOT NULL DEFAULT '{}';")


def test_migration_from_version_1_keeps_data(db: Db) -> None:
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


def test_failed_migration_changes_nothing(db: Db) -> None:
    v1 = load_migrations("postgres")[:1]
    with PostgresStore(db.url, migrations=v1):
        pass
    broken = Migration(2, "broken", "CREATE TABLE half_done (x int);\nINSERT INTO no_such_table VALUES (1);")
    with pytest.raises(StoreError, match=r'migrate to schema 2 \(broken\) failed: relation "no_such_table"'):
        PostgresStore(db.url, migrations=(*v1, broken))
    assert db.raw("SELECT max(version) FROM schema_version") == [(1,)]
    assert db.raw("SELECT to_regclass('half_done')") == [(None,)]


def test_newer_schema_is_refused(db: Db) -> None:
    with PostgresStore(db.url):
        pass
    db.raw("INSERT INTO schema_version (version, name) VALUES (99, 'from the future')")
    with pytest.raises(StoreError, match=r"was written by a newer l2vpc \(schema 99\); upgrade l2vpc"):
        PostgresStore(db.url)


def test_foreign_database_is_refused(db: Db) -> None:
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
        assert db.raw(f"SELECT count(*) FROM pg_tables WHERE schemaname = '{db.schema}_l2'") == [(8,)]
    finally:
        db.raw(f"DROP SCHEMA {db.schema}_l2 CASCADE")


def test_shipped_migrations_are_numbered() -> None:
    migrations = load_migrations("postgres")
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert [m.name for m in migrations][:1] == ["initial"]


# --- several processes --------------------------------------------------------------------


def _writer(url: str, name: str, barrier: Any, results: Any) -> None:
    """As in test_store_sqlite: 300 creates, 200 counter bumps, half read-modify-write inside one
    transaction (waits, never conflicts), half optimistic across two (retries on ConflictError)."""
    conflicts = 0
    with PostgresStore(url) as store:
        barrier.wait(30)
        for i in range(300):
            with store.transaction() as tx:
                tx.create("attachment", f"{name}-{i:03d}", {"by": name, "i": i})
            if i >= 200:
                continue
            if i % 2:
                with store.transaction() as tx:
                    cur = tx.get("vpc", "counter")
                    assert cur is not None
                    time.sleep(0.001)  # the other process must wait, not slip in or fail
                    tx.update("vpc", "counter", {"n": cur.data["n"] + 1}, cur.generation)
                continue
            while True:
                with store.transaction() as tx:
                    cur = tx.get("vpc", "counter")
                assert cur is not None
                time.sleep(0.001)  # the window in which the other process commits
                try:
                    with store.transaction() as tx:
                        tx.update("vpc", "counter", {"n": cur.data["n"] + 1}, cur.generation)
                    break
                except ConflictError:
                    conflicts += 1
    results.put((name, conflicts))


def _reserver(url: str, name: str, barrier: Any, results: Any) -> None:
    won = []
    barrier.wait(30)
    with PostgresStore(url) as store:  # opened at once: both race to migrate the empty database
        for v in range(100):
            try:
                with store.transaction() as tx:
                    tx.reserve("vni", str(v), name)
                won.append(str(v))
            except ConflictError:
                pass
    results.put((name, won))


def _attacher(url: str, name: str, barrier: Any, results: Any) -> None:
    """Attach workload `big` to every VPC, in an order of its own, through the engine."""
    outcomes: dict[str, str] = {}
    with PostgresStore(url) as store:
        engine = Engine(store)
        vpcs = sorted(v.id for v in engine.list("vpc"))
        if name == "p2":
            vpcs.reverse()
        barrier.wait(30)
        for vpc_id in vpcs:
            try:
                att = engine.create("attachment", {"vpc_id": vpc_id, "workload": "big"})
                outcomes[vpc_id] = att.id
            except ValidationError as e:
                outcomes[vpc_id] = f"refused: {e}"
    results.put((name, outcomes))


def _run_two(target: Any, url: str) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=target, args=(url, name, barrier, results)) for name in ("p1", "p2")]
    for p in procs:
        p.start()
    try:
        out: dict[str, Any] = {}
        deadline = time.monotonic() + 120
        while len(out) < len(procs):
            try:
                name, value = results.get(timeout=0.2)
                out[name] = value
            except queue.Empty:
                crashed = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                assert not crashed, f"a writer process failed (exit codes {crashed}); see its stderr"
                assert time.monotonic() < deadline, "writer processes did not finish in 120 s"
        for p in procs:
            p.join(30)
            assert p.exitcode == 0
        return out
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()


def test_two_processes_write_without_lost_updates(db: Db) -> None:
    with PostgresStore(db.url) as s, s.transaction() as tx:
        tx.create("vpc", "counter", {"n": 0})
    conflicts = _run_two(_writer, db.url)
    assert set(conflicts) == {"p1", "p2"}
    assert sum(conflicts.values()) > 0  # the processes did race for the counter
    with PostgresStore(db.url) as s, s.transaction() as tx:
        counter = tx.get("vpc", "counter")
        ids = [o.id for o in tx.list("attachment")]
    assert counter is not None and counter.data == {"n": 400}
    assert counter.generation == 401
    assert ids == sorted(f"{p}-{i:03d}" for p in ("p1", "p2") for i in range(300))


def test_two_processes_race_for_the_same_values(db: Db) -> None:
    won = _run_two(_reserver, db.url)
    assert not set(won["p1"]) & set(won["p2"])
    assert set(won["p1"]) | set(won["p2"]) == {str(v) for v in range(100)}
    with PostgresStore(db.url) as s, s.transaction() as tx:
        held = tx.allocations("vni")
        assert s.schema_version() == LATEST
    assert held == {v: name for name, values in won.items() for v in values}
    assert db.raw("SELECT version FROM schema_version") == [(v,) for v in range(1, LATEST + 1)]


def test_engine_on_postgres_keeps_cross_object_rules_under_concurrency(db: Db) -> None:
    """Two controllers attach one workload to 14 VPCs at once: at most 10 per workload, one
    host, distinct interface names and MACs; rules spanning objects hold because transactions
    are serial."""
    with PostgresStore(db.url) as s:
        engine = Engine(s, LocalAgentPool())
        for h in ({"name": "c1", "region": "us-east", "underlay_ip": "10.200.0.1"},
                  {"name": "c2", "region": "us-east", "underlay_ip": "10.200.0.2"}):
            engine.register_host(h)
        vpcs = [engine.create("vpc", {"name": f"v{i}", "region": "us-east", "cidr": f"10.{i}.0.0/24"})
                for i in range(14)]
        assert len({v.vni for v in vpcs}) == 14
        assert engine.vpc_by_name("v3") == vpcs[3]
    outcomes = _run_two(_attacher, db.url)
    with PostgresStore(db.url) as s:
        engine = Engine(s, LocalAgentPool())
        atts = [a for a in engine.list("attachment") if a.workload == "big"]
        with s.transaction() as tx:
            members = {v.id: tx.allocations(f"member:{v.id}") for v in vpcs}
        first, result = engine.converge()  # pushes to in-memory agents, records what they run
        assert result.ok and not first.is_empty
        assert engine.plan().is_empty
        reports = engine.actual_configs()
    created = {a for o in outcomes.values() for a in o.values() if not a.startswith("refused")}
    assert len(atts) == 10 and {a.id for a in atts} == created
    assert len({a.vpc_id for a in atts}) == 10 and len({a.host for a in atts}) == 1
    assert sorted(a.interface_name or "" for a in atts) == sorted(f"net{i}" for i in range(1, 11))
    assert len({a.mac_address for a in atts}) == 10
    assert sum(len(m) for m in members.values()) == 10
    refusals = [r for o in outcomes.values() for r in o.values() if r.startswith("refused")]
    assert len(refusals) == 18 and all("at most 10" in r or "already attached" in r for r in refusals)
    assert {p.id for p in reports[atts[0].host].ports} == {a.id for a in atts}


# --- leadership ---------------------------------------------------------------------------

_HOLD = """
import sys, time
from l2vpc.engine.store.postgres import PostgresStore
store = PostgresStore(sys.argv[1])
lead = store.try_leadership("controller")
print("held" if lead else "refused", lead.term if lead else 0, flush=True)
time.sleep(120)
"""


def test_leadership_is_exclusive_and_handed_over(db: Db) -> None:
    with PostgresStore(db.url) as a, PostgresStore(db.url) as b:
        first = a.try_leadership("controller")
        assert first is not None and first.is_held() and first.term == 1
        assert b.try_leadership("controller") is None
        assert a.try_leadership("controller") is None  # also refused on the holder's own store
        other = b.try_leadership("another-name")  # names are independent
        assert other is not None
        other.release()

        # Released: the next one gets it at once, with a higher term.
        first.release()
        assert not first.is_held()
        second = b.try_leadership("controller")
        assert second is not None and second.term == 2

        # The holder's connection is lost (network, DBA): it learns so, and the lock is free.
        assert db.server.terminate(db.database, "l2vpc leader controller") == 1
        started = time.monotonic()
        third = None
        while third is None and time.monotonic() - started < 1.0:
            third = a.try_leadership("controller")
            time.sleep(0.02)
        assert third is not None and third.term == 3, "not handed over within a second"
        assert not second.is_held()
        third.release()


def test_leadership_of_a_killed_process_is_handed_over_within_a_second(db: Db) -> None:
    with PostgresStore(db.url) as s:
        holder = subprocess.Popen([sys.executable, "-c", _HOLD, db.url], stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().split() == ["held", "1"]
            assert s.try_leadership("controller") is None
            holder.send_signal(signal.SIGKILL)
            holder.wait(10)
            started = time.monotonic()
            lead = None
            while lead is None and time.monotonic() - started < 1.0:
                lead = s.try_leadership("controller")
                time.sleep(0.02)
            assert lead is not None, "not handed over within a second of the holder's death"
            assert lead.term == 2 and lead.is_held()
            lead.release()
        finally:
            if holder.poll() is None:
                holder.kill()
                holder.wait()


def test_get_many_returns_existing_objects_in_id_order(store: PostgresStore) -> None:
    with store.transaction() as tx:
        for i in (3, 1, 2):
            tx.create("attachment", f"att-{i:04d}", {"n": i})
        tx.create("vpc", "att-0002x", {"other": "kind"})
    with store.transaction() as tx:
        got = tx.get_many("attachment", ["att-0002", "att-0009", "att-0001", "att-0002", "bad\x00id"])
        assert [(o.id, o.data) for o in got] == [("att-0001", {"n": 1}), ("att-0002", {"n": 2})]
        assert tx.get_many("attachment", []) == []


def test_deferred_writes_clash_at_the_next_statement_and_commit_nothing(store: PostgresStore) -> None:
    """create_new and claim travel with the next statement; a clash still fails the whole
    transaction, and reads in between see the writes (read-your-writes)."""
    with store.transaction() as tx:
        tx.create_new("vpc", "vpc-1", {"n": 1})
        tx.claim("name:vpc", "web", "vpc-1")
        assert tx.allocations("name:vpc") == {"web": "vpc-1"}  # flushed with this read
        assert tx.get("vpc", "vpc-1") == StoredObject("vpc", "vpc-1", 1, {"n": 1})
        tx.claim("name:vpc", "web", "vpc-1")  # the same owner again: no clash
    with pytest.raises(ConflictError, match="already held"), store.transaction() as tx:
        tx.create_new("vpc", "vpc-2", {"n": 2})
        tx.claim("name:vpc", "web", "vpc-2")  # held by vpc-1
        tx.allocations("other")
    with pytest.raises(ConflictError, match="vpc 'vpc-1' already exists"), store.transaction() as tx:
        tx.claim("name:vpc", "api", "vpc-1")
        tx.create_new("vpc", "vpc-1", {"n": 3})  # raises when the transaction ends
    with store.transaction() as tx:
        assert tx.get("vpc", "vpc-2") is None
        assert tx.get("vpc", "vpc-1") == StoredObject("vpc", "vpc-1", 1, {"n": 1})
        assert tx.allocations("name:vpc") == {"web": "vpc-1"}


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


def test_keyed_transaction_refuses_bad_keys(store: PostgresStore) -> None:
    with pytest.raises(ValidationError) as ei:
        store.keyed_transaction(["ok", ""])
    assert ei.value.first[0] == "keys[1]"
