"""The SQLite store on real files: semantics of base.Store, migrations, damage, permissions,
and concurrent writers in several threads and processes."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import pickle
import queue
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from l2vpc.engine.errors import ConflictError, NotFoundError, StoreError, TemporaryError, ValidationError
from l2vpc.engine.store import open_store
from l2vpc.engine.store.base import StoredObject
from l2vpc.engine.store.migrations import Migration, load_migrations, split_statements
from l2vpc.engine.store.sqlite import SqliteStore

LATEST = len(load_migrations("sqlite"))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "l2vpc.db"  # parent missing on purpose: the store creates it


@pytest.fixture
def store(db_path: Path) -> Iterator[SqliteStore]:
    with SqliteStore(db_path) as s:
        yield s


def raw(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Read the file behind the store's back, through a separate connection."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


# --- objects ------------------------------------------------------------------------------


def test_crud_generations_and_order(store: SqliteStore) -> None:
    doc = {"name": "a", "cidr": "10.0.0.0/24", "tags": {"x": [1, 2]}}
    with store.transaction() as tx:
        created = tx.create("vpc", "vpc-b", doc, tenant="t1")
        tx.create("vpc", "vpc-a", {"name": "first"}, tenant="t2")
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
        assert [o.id for o in tx.list("vpc")] == ["vpc-a", "vpc-b"]  # ordered by id
        assert tx.list("vpc") == [
            StoredObject("vpc", "vpc-a", 1, {"name": "first"}, "t2"),
            StoredObject("vpc", "vpc-b", 3, {"name": "c"}, "t1"),
        ]
        assert [o.id for o in tx.list("vpc", tenant="t1")] == ["vpc-b"]
        assert tx.list("host") == []
        assert tx.get("vpc", "vpc-b", tenant="t2") is None  # another tenant's object is invisible
        assert tx.get("vpc", "vpc-b", tenant="t1") is not None
        tx.delete("vpc", "vpc-b", expected_generation=3)
        tx.delete("vpc", "vpc-a")
    with store.transaction() as tx:
        assert tx.list("vpc") == []
        assert tx.get("attachment", "vpc-b") is not None  # delete removed nothing else
        with pytest.raises(NotFoundError, match="vpc 'vpc-a' not found"):
            tx.delete("vpc", "vpc-a")
        with pytest.raises(NotFoundError):
            tx.update("vpc", "vpc-a", {}, expected_generation=1)
        with pytest.raises(NotFoundError):
            tx.delete("vpc", "vpc-a", expected_generation=1)


def test_returned_objects_behave_like_stored_objects(store: SqliteStore) -> None:
    # Documents are decoded lazily; that must not show.
    with store.transaction() as tx:
        created = tx.create("vpc", "v1", {"n": 1, "nested": {"a": [1]}})
    with store.transaction() as tx:
        listed, got = tx.list("vpc")[0], tx.get("vpc", "v1")
    plain = StoredObject("vpc", "v1", 1, {"n": 1, "nested": {"a": [1]}}, "")
    for obj in (created, listed, got):
        assert obj == plain and plain == obj and not obj != plain
        assert obj.data is obj.data  # decoded once
        assert repr(obj) == repr(plain)
        assert dataclasses.replace(obj, data={"n": 2}).data == {"n": 2}
        assert dataclasses.asdict(obj) == dataclasses.asdict(plain)
        assert pickle.loads(pickle.dumps(obj)) == plain
        with pytest.raises(dataclasses.FrozenInstanceError):
            obj.data = {}  # type: ignore[misc]
    assert listed != dataclasses.replace(plain, generation=2)
    assert listed != dataclasses.replace(plain, data={"n": 1})


def test_stale_generation_conflicts_and_keeps_newer_data(store: SqliteStore) -> None:
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


def test_create_duplicate_conflicts(store: SqliteStore) -> None:
    with store.transaction() as tx:
        tx.create("host", "h1", {"addr": "192.0.2.1"}, tenant="t1")
    with store.transaction() as tx, pytest.raises(ConflictError, match="host 'h1' already exists"):
        tx.create("host", "h1", {"addr": "overwritten?"}, tenant="t2")
    with store.transaction() as tx:
        assert tx.get("host", "h1") == StoredObject("host", "h1", 1, {"addr": "192.0.2.1"}, "t1")


def test_bad_input_names_the_field_and_writes_nothing(store: SqliteStore) -> None:
    with store.transaction() as tx:
        with pytest.raises(ValidationError, match="kind: unknown object kind 'vcp'; allowed: host, vpc"):
            tx.create("vcp", "x", {})
        with pytest.raises(ValidationError, match=r"^data: vpc 'x': not storable as JSON"):
            tx.create("vpc", "x", {"when": object()})
        with pytest.raises(ValidationError, match=r"^data: .*not storable as JSON"):
            tx.create("vpc", "x", {"ratio": float("nan")})  # PostgreSQL's jsonb would refuse it
        with pytest.raises(ValidationError, match=r"^data: .*must be a JSON object"):
            tx.create("vpc", "x", ["not", "a", "dict"])  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match=r"^id: must be a non-empty string"):
            tx.create("vpc", "", {})
        with pytest.raises(ValidationError, match=r"^value: must be a non-empty string"):
            tx.reserve("vni", 5, "vpc-1")  # type: ignore[arg-type]
        assert tx.list("vpc") == [] and tx.allocations("vni") == {}


# --- allocations --------------------------------------------------------------------------


def test_reserve_conflicts_name_pool_value_and_holder(store: SqliteStore) -> None:
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


def test_release_owner(store: SqliteStore) -> None:
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


def test_host_reports(store: SqliteStore) -> None:
    config = {"host": "h1", "segments": [{"vni": 1001, "mtu": 1450}], "ports": []}
    before = time.time()
    with store.transaction() as tx:
        tx.put_host_report("h1", 3, config)
        tx.put_host_report("h2", 1, {})
    with store.transaction() as tx:
        reports = tx.host_reports()
    assert set(reports) == {"h1", "h2"}
    assert (reports["h1"].host, reports["h1"].generation, reports["h1"].config) == ("h1", 3, config)
    assert before <= reports["h1"].updated_at <= time.time()
    with store.transaction() as tx:
        tx.put_host_report("h1", 4, {"host": "h1"})  # replaces
        tx.delete_host_report("h2")
        tx.delete_host_report("never-reported")
    with store.transaction() as tx:
        reports = tx.host_reports()
    assert list(reports) == ["h1"]
    assert (reports["h1"].generation, reports["h1"].config) == (4, {"host": "h1"})


def test_sequences_count_per_name_and_survive_reopen(db_path: Path) -> None:
    with SqliteStore(db_path) as s, s.transaction() as tx:
        assert [tx.next_sequence("gen:h1") for _ in range(3)] == [1, 2, 3]
        assert tx.next_sequence("gen:h2") == 1
    with SqliteStore(db_path) as s, s.transaction() as tx:
        assert tx.next_sequence("gen:h1") == 4


# --- transactions -------------------------------------------------------------------------


def test_exception_rolls_back_everything(db_path: Path) -> None:
    with SqliteStore(db_path) as s:
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
    with SqliteStore(db_path) as s, s.transaction() as tx:  # a fresh connection sees the file
        assert tx.list("vpc") == [StoredObject("vpc", "keep", 1, {"v": 1})]
        assert tx.allocations("vni") == {} and tx.host_reports() == {}
        assert tx.next_sequence("gen") == 2


def test_nested_transaction_is_refused_and_outer_still_commits(store: SqliteStore) -> None:
    with store.transaction() as outer:
        with pytest.raises(RuntimeError, match="nested"):
            store.transaction().__enter__()
        outer.create("vpc", "v", {})
        assert store.schema_version() == LATEST  # allowed inside: it reads on the same connection
    with store.transaction() as tx:
        assert tx.get("vpc", "v") is not None


def test_transaction_unusable_after_its_block(store: SqliteStore) -> None:
    with store.transaction() as tx:
        pass
    with pytest.raises(RuntimeError, match="after its `with` block"):
        tx.create("vpc", "late", {})


def test_closed_store_refuses_transactions(db_path: Path) -> None:
    s = SqliteStore(db_path)
    s.close()
    s.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        s.transaction().__enter__()


def test_threads_share_a_store_without_lost_updates(store: SqliteStore) -> None:
    with store.transaction() as tx:
        tx.create("vpc", "counter", {"n": 0})

    def bump() -> None:
        for _ in range(50):
            with store.transaction() as tx:
                cur = tx.get("vpc", "counter")
                assert cur is not None
                tx.update("vpc", "counter", {"n": cur.data["n"] + 1}, cur.generation)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with store.transaction() as tx:
        counter = tx.get("vpc", "counter")
    assert counter is not None and counter.data == {"n": 200} and counter.generation == 201


def test_writer_waits_for_another_connection_then_times_out(db_path: Path) -> None:
    with SqliteStore(db_path) as holder, SqliteStore(db_path, busy_timeout=0.3) as waiter:
        # Released in time: the second writer waits and succeeds.
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

        # Held too long: TemporaryError after about the busy timeout, naming the file.
        with holder.transaction():
            started = time.monotonic()
            with pytest.raises(TemporaryError, match=r"l2vpc\.db is busy") as err:
                with waiter.transaction():
                    pass
            assert 0.25 <= time.monotonic() - started < 3
            assert "0.3 s" in str(err.value)


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


def test_migration_from_version_1_keeps_data(db_path: Path) -> None:
    v1 = load_migrations("sqlite")[:1]
    with SqliteStore(db_path, migrations=v1) as s:
        with s.transaction() as tx:
            tx.create("vpc", "v", {"kept": True})
            tx.put_host_report("h1", 1, {})
        assert s.schema_version() == 1
    with SqliteStore(db_path, migrations=(*v1, V2)) as s:
        assert s.schema_version() == 2
        with s.transaction() as tx:
            assert tx.get("vpc", "v") == StoredObject("vpc", "v", 1, {"kept": True})
    assert raw(db_path, "SELECT version FROM schema_version ORDER BY version") == [(1,), (2,)]
    assert raw(db_path, "SELECT host, labels FROM host_reports") == [("h1", "{}")]
    # The code that only knows version 1 must now refuse the file.
    with pytest.raises(StoreError, match=r"written by a newer l2vpc \(schema 2\); upgrade l2vpc"):
        SqliteStore(db_path, migrations=v1)


def test_failed_migration_changes_nothing(db_path: Path) -> None:
    v1 = load_migrations("sqlite")[:1]
    with SqliteStore(db_path, migrations=v1):
        pass
    broken = Migration(2, "broken", "CREATE TABLE half_done (x);\nINSERT INTO no_such_table VALUES (1);")
    with pytest.raises(StoreError, match=r"migrate to schema 2 \(broken\) failed: no such table"):
        SqliteStore(db_path, migrations=(*v1, broken))
    assert raw(db_path, "SELECT max(version) FROM schema_version") == [(1,)]
    assert raw(db_path, "SELECT name FROM sqlite_master WHERE name = 'half_done'") == []


def test_newer_schema_is_refused(db_path: Path) -> None:
    with SqliteStore(db_path):
        pass
    conn = sqlite3.connect(db_path)
    conn.execute("INSERT INTO schema_version VALUES (99, 'from the future', 0)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=r"was written by a newer l2vpc \(schema 99\); upgrade l2vpc"):
        SqliteStore(db_path)


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


# --- several processes --------------------------------------------------------------------


def _writer(path: str, name: str, barrier: Any, results: Any) -> None:
    """Create 300 objects and bump the shared counter 200 times, interleaved: half the bumps
    read and write in one transaction (BEGIN IMMEDIATE makes them wait, never conflict), half
    read, work a little, then write in another transaction (optimistic: retry on ConflictError).
    """
    conflicts = 0
    with SqliteStore(path) as store:
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


def _reserver(path: str, name: str, barrier: Any, results: Any) -> None:
    won = []
    with SqliteStore(path) as store:
        barrier.wait(30)
        for v in range(100):
            try:
                with store.transaction() as tx:
                    tx.reserve("vni", str(v), name)
                won.append(str(v))
            except ConflictError:
                pass
    results.put((name, won))


def _run_two(target: Any, path: Path) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=target, args=(str(path), name, barrier, results)) for name in ("p1", "p2")]
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
                # A crashed child never reports: fail now with its exit code instead of waiting.
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


def test_two_processes_write_without_lost_updates(db_path: Path) -> None:
    with SqliteStore(db_path) as s, s.transaction() as tx:
        tx.create("vpc", "counter", {"n": 0})
    conflicts = _run_two(_writer, db_path)
    assert set(conflicts) == {"p1", "p2"}
    assert sum(conflicts.values()) > 0  # the processes did race for the counter
    with SqliteStore(db_path) as s:
        with s.transaction() as tx:
            counter = tx.get("vpc", "counter")
            ids = [o.id for o in tx.list("attachment")]
        s.check()
    assert counter is not None and counter.data == {"n": 400}
    assert counter.generation == 401
    assert ids == sorted(f"{p}-{i:03d}" for p in ("p1", "p2") for i in range(300))
    assert raw(db_path, "PRAGMA integrity_check") == [("ok",)]


def test_two_processes_race_for_the_same_values(db_path: Path) -> None:
    # No file yet: both processes also race to create it and apply the migrations.
    won = _run_two(_reserver, db_path)
    assert not set(won["p1"]) & set(won["p2"])
    assert set(won["p1"]) | set(won["p2"]) == {str(v) for v in range(100)}
    with SqliteStore(db_path) as s, s.transaction() as tx:
        held = tx.allocations("vni")
        assert s.schema_version() == LATEST
    assert held == {v: name for name, values in won.items() for v in values}
    assert raw(db_path, "SELECT version FROM schema_version") == [(v,) for v in range(1, LATEST + 1)]


def test_get_many_returns_existing_objects_in_id_order(db_path: Path) -> None:
    with SqliteStore(db_path) as s:
        with s.transaction() as tx:
            for i in (3, 1, 2):
                tx.create("attachment", f"att-{i:04d}", {"n": i})
            tx.create("vpc", "att-0002x", {"other": "kind"})
        with s.transaction() as tx:
            got = tx.get_many("attachment", ["att-0002", "att-0009", "att-0001", "att-0002"])
            assert [(o.id, o.data) for o in got] == [("att-0001", {"n": 1}), ("att-0002", {"n": 2})]
            assert tx.get_many("attachment", []) == []
            many = tx.get_many("attachment", [f"att-{i:04d}" for i in range(1200)])
            assert [o.id for o in many] == ["att-0001", "att-0002", "att-0003"]
