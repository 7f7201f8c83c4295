"""The store contract (engine/store/base.py), run against SQLite and a real, throwaway
PostgreSQL alike: objects and generations, allocations, host reports, counters, transactions in
threads and processes, migrations, and the engine's cross-object rules on top. What only one
backend has (files, WAL and damage; lost connections, URLs, advisory locks) is tested in
test_store_sqlite.py and test_store_postgres.py. Longer than most test modules: it is the
whole contract of both stores in one place."""

from __future__ import annotations

import dataclasses
import multiprocessing
import pickle
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from l2vpc.agent.local import LocalAgentPool
from l2vpc.engine.api import Engine
from l2vpc.engine.errors import ConflictError, NotFoundError, StoreError, TemporaryError, ValidationError
from l2vpc.engine.store import open_store
from l2vpc.engine.store.base import COUNTED_POOL_PREFIX, Store, StoredObject
from l2vpc.engine.store.cached import CachedTransaction
from l2vpc.engine.store.migrations import Migration, load_migrations
from l2vpc.engine.store.sqlite import SqliteStore


@dataclasses.dataclass
class Backend:
    name: str  # the dialect: "sqlite" | "postgres"
    url: str  # what open_store() takes
    raw: Callable[[str], list[Any]]  # a statement behind the store's back
    busy: str  # how a busy message names the database (a regex)
    secret: str = ""  # never in a message

    def open(self, **kw: Any) -> Store:
        if self.name == "sqlite":
            return SqliteStore(self.url, **kw)
        from l2vpc.engine.store.postgres import PostgresStore

        return PostgresStore(self.url, **kw)

    def tables(self) -> set[str]:
        query = ("SELECT name FROM sqlite_master WHERE type = 'table'" if self.name == "sqlite" else
                 "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        return {r[0] for r in self.raw(query)}

    @property
    def latest(self) -> int:
        return len(load_migrations(self.name))


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        path = tmp_path / "state" / "l2vpc.db"  # parent missing on purpose: the store creates it

        def raw(sql: str) -> list[Any]:
            conn = sqlite3.connect(path)
            try:
                with conn:
                    return conn.execute(sql).fetchall()
            finally:
                conn.close()

        return Backend("sqlite", str(path), raw, r"l2vpc\.db is busy")
    db = request.getfixturevalue("db")
    return Backend("postgres", db.url, db.raw, rf"postgresql://l2vpc@127\.0\.0\.1:\d+/{db.database} is busy",
                   db.server.password)


@pytest.fixture
def store(backend: Backend) -> Iterator[Store]:
    with backend.open() as s:
        yield s


# --- objects ------------------------------------------------------------------------------


def test_crud_generations_and_order(store: Store) -> None:
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


def test_returned_objects_behave_like_stored_objects(store: Store) -> None:
    # Documents are decoded lazily; that must not show.
    doc = {"n": 1, "nested": {"a": [1]}, "s": "ünï €"}
    with store.transaction() as tx:
        created = tx.create("vpc", "v1", doc)
    with store.transaction() as tx:
        listed, got = tx.list("vpc")[0], tx.get("vpc", "v1")
    plain = StoredObject("vpc", "v1", 1, doc, "")
    for obj in (created, listed, got):
        assert obj is not None
        assert obj == plain and plain == obj and not obj != plain
        assert obj.data is obj.data  # decoded once
        # jsonb keeps keys in its own order (shorter first): equal as dicts, not as text.
        assert repr(obj) == repr(StoredObject("vpc", "v1", 1, obj.data, ""))
        assert dataclasses.replace(obj, data={"n": 2}).data == {"n": 2}
        assert dataclasses.asdict(obj) == dataclasses.asdict(plain)
        assert pickle.loads(pickle.dumps(obj)) == plain
        with pytest.raises(dataclasses.FrozenInstanceError):
            obj.data = {}  # type: ignore[misc]
    assert listed != dataclasses.replace(plain, generation=2)
    assert listed != dataclasses.replace(plain, data={"n": 1})


def test_stale_generation_conflicts_and_keeps_newer_data(store: Store) -> None:
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


def test_create_duplicate_conflicts(store: Store) -> None:
    with store.transaction() as tx:
        tx.create("host", "h1", {"addr": "192.0.2.1"}, tenant="t1")
    with store.transaction() as tx, pytest.raises(ConflictError, match="host 'h1' already exists"):
        tx.create("host", "h1", {"addr": "overwritten?"}, tenant="t2")
    with store.transaction() as tx:
        assert tx.get("host", "h1") == StoredObject("host", "h1", 1, {"addr": "192.0.2.1"}, "t1")


def test_bad_input_names_the_field_and_leaves_the_transaction_usable(store: Store) -> None:
    # On PostgreSQL a failed statement would abort the whole transaction: every check must
    # happen before anything is sent, so the caller can go on (and commit) after the error.
    # Both stores accept and refuse the same input.
    with store.transaction() as tx:
        with pytest.raises(ValidationError, match="kind: unknown object kind 'vcp'; allowed: host, vpc"):
            tx.create("vcp", "x", {})
        with pytest.raises(ValidationError, match="kind: unknown object kind 'token'"):
            tx.create("token", "x", {})  # the controller's plane store keeps those
        with pytest.raises(ValidationError, match=r"^data: vpc 'x': not storable as JSON"):
            tx.create("vpc", "x", {"when": object()})
        with pytest.raises(ValidationError, match=r"^data: .*not storable as JSON"):
            tx.create("vpc", "x", {"ratio": float("nan")})  # PostgreSQL's jsonb would refuse it
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
        with pytest.raises(ValidationError, match=r"^count: must be a positive integer"):
            tx.next_sequence_block("gen", 0)
        with pytest.raises(ValidationError, match="not valid Unicode"):
            tx.create("vpc", "x", {"name": "\ud800"})
        assert tx.get("vpc", "a\x00") is None
        assert tx.list("vpc") == [] and tx.allocations("vni") == {}
        tx.create("vpc", "ok", {"after": "the errors"})
    with store.transaction() as tx:
        assert [o.id for o in tx.list("vpc")] == ["ok"]


def test_get_many_returns_existing_objects_in_id_order(store: Store) -> None:
    with store.transaction() as tx:
        for i in (3, 1, 2):
            tx.create("attachment", f"att-{i:04d}", {"n": i})
        tx.create("vpc", "att-0002x", {"other": "kind"})
    with store.transaction() as tx:
        got = tx.get_many("attachment", ["att-0002", "att-0009", "att-0001", "att-0002", "bad\x00id"])
        assert [(o.id, o.data) for o in got] == [("att-0001", {"n": 1}), ("att-0002", {"n": 2})]
        assert tx.get_many("attachment", []) == []
        many = tx.get_many("attachment", [f"att-{i:04d}" for i in range(1200)])
        assert [o.id for o in many] == ["att-0001", "att-0002", "att-0003"]


# --- allocations --------------------------------------------------------------------------


def test_reserve_conflicts_name_pool_value_and_holder(store: Store) -> None:
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
        assert tx.allocations_many(["vni", "mac", "none"]) == {
            "vni": {"1001": "vpc-a", "1002": "vpc-b"}, "mac": {"1001": "vpc-b"}, "none": {}}
        assert tx.pool_sizes(["vni", "mac", "none"]) == {"vni": 2, "mac": 1}


def test_counted_pools_sizes_follow_claims_releases_and_writers_side_by_side(store: Store, backend: Backend) -> None:
    # A counted pool's size (a tenant's objects, engine/quotas.py) is kept by the store as rows
    # come and go, not counted: it must equal a count of the rows after every kind of write,
    # also of keyed writers that run at the same time on PostgreSQL.
    pool, other = f"{COUNTED_POOL_PREFIX}attachment:t1", f"{COUNTED_POOL_PREFIX}vpc:t1"
    with store.transaction() as tx:
        for i in range(3):
            tx.reserve(pool, f"att-{i}", f"att-{i}")
        tx.reserve(pool, "att-0", "att-0")  # held already: no change
        tx.reserve(other, "vpc-1", "vpc-1")
        tx.reserve("ip:vpc-1", "10.0.0.5", "att-0")  # the same owner in a pool not counted
    with store.transaction() as tx:
        assert tx.pool_sizes([pool, other, "ip:vpc-1", f"{COUNTED_POOL_PREFIX}vpn:t1"]) == {
            pool: 3, other: 1, "ip:vpc-1": 1}
        tx.release_owner("att-0")
        tx.release_owner("vpc-1", other)
        assert tx.pool_sizes([pool, other, "ip:vpc-1"]) == {pool: 2}
    with store.transaction() as tx:
        cached = CachedTransaction(tx)
        cached.claim(pool, "att-9", "att-9")  # kept in memory, written with the batch
        assert cached.pool_sizes([pool]) == {pool: 3}
        cached.flush()
    with pytest.raises(RuntimeError):
        with store.transaction() as tx:
            tx.reserve(pool, "att-7", "att-7")
            raise RuntimeError("rolled back: its count with it")

    def claim(n: int) -> None:
        barrier.wait(10)  # then all at once (on PostgreSQL side by side: other keys)
        with store.keyed_transaction([f"vpc:{n}"]) as tx:
            for i in range(20):
                tx.claim(pool, f"w{n}-{i}", f"w{n}-{i}")

    barrier = threading.Barrier(4)
    threads = [threading.Thread(target=claim, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    with store.transaction() as tx:
        assert tx.pool_sizes([pool]) == {pool: 3 + 80}
    assert backend.raw(f"SELECT count(*) FROM allocations WHERE pool = '{pool}'") == [(83,)]


def test_get_each_reads_objects_of_several_kinds_at_once(store: Store) -> None:
    # What a batch reads before its creates (its VPCs, hosts and quota rows) in one query.
    with store.transaction() as tx:
        tx.create("vpc", "vpc-1", {"name": "a"}, tenant="t1")
        tx.create("host", "h1", {"name": "h1"})
        tx.create("quota", "default", {"vpc": 3})
    with store.transaction() as tx:
        for t in (tx, CachedTransaction(tx)):
            found = t.get_each([("vpc", "vpc-1"), ("host", "h1"), ("host", "nope"), ("quota", "default"),
                                ("vpc", "h1"), ("vpc", "vpc-1")])
            assert sorted((o.kind, o.id, o.tenant, o.data) for o in found) == [
                ("host", "h1", "", {"name": "h1"}), ("quota", "default", "", {"vpc": 3}),
                ("vpc", "vpc-1", "t1", {"name": "a"})]
            assert t.get_each([]) == []
        with pytest.raises(ValidationError):
            tx.get_each([("router", "r1")])


def test_locked_pool_sizes_hold_off_other_writers_of_the_pool_until_commit(store: Store) -> None:
    # An exact quota check under keyed writers (controller/batching.py): the sizes read with
    # lock_pool_sizes stay true until the transaction ends, as another writer adding to the pool
    # (on other keys) waits for it; pools with no row read as absent and stay so.
    pool, empty = f"{COUNTED_POOL_PREFIX}attachment:t1", f"{COUNTED_POOL_PREFIX}attachment:t2"
    with store.transaction() as tx:
        tx.reserve(pool, "att-0", "att-0")
    done: list[float] = []

    def other_writer() -> None:
        with store.keyed_transaction(["vpc:b"]) as tx:
            tx.claim(pool, "att-2", "att-2")
        done.append(time.monotonic())

    writer = threading.Thread(target=other_writer)
    with store.keyed_transaction(["vpc:a"]) as tx:
        assert tx.lock_pool_sizes([pool, empty]) == {pool: 1}
        writer.start()
        time.sleep(0.5)
        assert not done and tx.pool_sizes([pool]) == {pool: 1}
        tx.claim(pool, "att-1", "att-1")
        committed = time.monotonic()
    writer.join(10)
    assert done and done[0] >= committed
    with store.transaction() as tx:
        assert tx.pool_sizes([pool, empty]) == {pool: 3}
        assert CachedTransaction(tx).lock_pool_sizes([pool, empty]) == {pool: 3}


def test_holder_and_holds_answer_for_one_value(store: Store) -> None:
    # What adoption asks per create (engine/adoption.py): one value's holder, whether an owner
    # holds anything in a pool; in a plain and in a batch's cached transaction alike.
    from l2vpc.engine.store.cached import CachedTransaction

    with store.transaction() as tx:
        tx.reserve("name:vpc", "web", "vpc-1")
        tx.reserve("unconfirmed", "key/vpc-1", "vpc-1")
    with store.transaction() as tx:
        cached = CachedTransaction(tx)
        cached.claim("name:vpc", "db", "vpc-2")  # kept in memory until the batch flushes
        for t in (tx, cached):
            assert t.holder("name:vpc", "web") == "vpc-1"
            assert t.holder("name:vpc", "nope") is None and t.holder("other", "web") is None
            assert t.holder("name:vpc", "we\x00b") is None  # cannot be stored: held by nobody
            assert t.holds("vpc-1", "unconfirmed") and not t.holds("vpc-1", "other")
            assert not t.holds("vpc-2", "unconfirmed") and not t.holds("vpc-\x001", "unconfirmed")
        assert cached.holder("name:vpc", "db") == "vpc-2" and cached.holds("vpc-2", "name:vpc")
        assert tx.holder("name:vpc", "db") is None  # not flushed


def test_release_owner(store: Store) -> None:
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


def test_deferred_writes_clash_and_commit_nothing(store: Store) -> None:
    """create_new and claim may travel with the next statement (PostgreSQL); a clash still
    fails the whole transaction, and reads in between see the writes (read-your-writes)."""
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
        tx.create_new("vpc", "vpc-1", {"n": 3})  # raises when the transaction ends, at the latest
    with store.transaction() as tx:
        assert tx.get("vpc", "vpc-2") is None
        assert tx.get("vpc", "vpc-1") == StoredObject("vpc", "vpc-1", 1, {"n": 1})
        assert tx.allocations("name:vpc") == {"web": "vpc-1"}


# --- host reports and sequences -----------------------------------------------------------


def test_host_reports(store: Store) -> None:
    config = {"host": "h1", "segments": [{"vni": 1001, "mtu": 1450}], "ports": []}
    before = time.time()
    with store.transaction() as tx:
        tx.put_host_report("h1", 3, config)
        tx.put_host_report("h2", 1, {})
    with store.transaction() as tx:
        reports = tx.host_reports()
        assert set(tx.host_reports(["h2", "nope"])) == {"h2"}
        stamps = tx.host_report_stamps()
    assert set(reports) == {"h1", "h2"}
    assert (reports["h1"].host, reports["h1"].generation, reports["h1"].config) == ("h1", 3, config)
    assert before - 0.001 <= reports["h1"].updated_at <= time.time()
    assert stamps == {h: (r.generation, r.updated_at) for h, r in reports.items()}
    with store.transaction() as tx:
        tx.put_host_report("h1", 4, {"host": "h1"})  # replaces
        tx.delete_host_report("h2")
        tx.delete_host_report("never-reported")
    with store.transaction() as tx:
        reports = tx.host_reports()
    assert list(reports) == ["h1"]
    assert (reports["h1"].generation, reports["h1"].config) == (4, {"host": "h1"})


def test_host_observations_are_the_reports_observations(store: Store) -> None:
    seen = [{"id": "dc-1", "state": "up", "learned": ["192.168.0.0/24"]}, {"id": "vpn-1", "state": "down"}]
    with store.transaction() as tx:
        tx.put_host_report("e1", 2, {"host": "e1", "ports": [{"id": "p"}], "observations": seen})
        tx.put_host_report("h1", 1, {"host": "h1"})
        tx.put_host_report("h2", 1, {"host": "h2", "observations": []})
    with store.transaction() as tx:
        assert tx.host_observations() == {"e1": seen, "h1": [], "h2": []}
        assert CachedTransaction(tx).host_observations() == {"e1": seen, "h1": [], "h2": []}


def test_update_many_checks_each_generation(store: Store) -> None:
    with store.transaction() as tx:
        tx.create("vpc", "a", {"n": 1})
        tx.create("vpc", "b", {"n": 1})
    with store.transaction() as tx:
        tx.update_many([("vpc", "a", {"n": 2}, 1), ("vpc", "b", {"n": 2}, 1)])
    with store.transaction() as tx:
        assert [(o.id, o.generation, o.data) for o in tx.list("vpc")] == [("a", 2, {"n": 2}), ("b", 2, {"n": 2})]
    with pytest.raises(ConflictError, match="generation"), store.transaction() as tx:
        tx.update_many([("vpc", "a", {"n": 3}, 2), ("vpc", "b", {"n": 3}, 1)])  # b is at 2
    with pytest.raises(NotFoundError), store.transaction() as tx:
        tx.update_many([("vpc", "nope", {"n": 3}, 1)])
    with store.transaction() as tx:  # neither failed batch changed anything
        assert [(o.id, o.generation) for o in tx.list("vpc")] == [("a", 2), ("b", 2)]


def test_cached_vpc_updates_are_kept_until_flush_and_undone_alone(store: Store) -> None:
    with store.transaction() as tx:
        tx.create("vpc", "a", {"n": 1})
    with store.transaction() as raw:
        tx = CachedTransaction(raw)
        so = tx.get("vpc", "a")
        assert so is not None
        mark = tx.mark()
        assert tx.update("vpc", "a", {"n": 2}, so.generation).generation == 2
        assert tx.get("vpc", "a").data == {"n": 2}  # type: ignore[union-attr]
        with pytest.raises(ConflictError, match="generation"):
            tx.update("vpc", "a", {"n": 3}, 1)  # stale: checked here, before anything is sent
        assert tx.rollback_to(mark)
        assert tx.get("vpc", "a").data == {"n": 1}  # type: ignore[union-attr]
        tx.update("vpc", "a", {"n": 4}, 1)
        tx.update("vpc", "a", {"n": 5}, 2)
        assert [o.data for o in tx.view("vpc")] == [{"n": 5}]
        assert [o.data for o in raw.list("vpc")] == [{"n": 1}]  # nothing sent yet
        tx.flush()
    with store.transaction() as tx:
        assert [(o.generation, o.data) for o in tx.list("vpc")] == [(2, {"n": 5})]


def test_sequences_count_per_name_and_survive_reopen(backend: Backend) -> None:
    with backend.open() as s, s.transaction() as tx:
        assert tx.current_sequence("gen:h1") == 0
        assert [tx.next_sequence("gen:h1") for _ in range(3)] == [1, 2, 3]
        assert tx.next_sequence("gen:h2") == 1
        assert tx.next_sequence_block("gen:h2", 5) == 6  # took 2 ... 6
    with backend.open() as s, s.transaction() as tx:
        assert tx.next_sequence("gen:h1") == 4
        assert tx.current_sequence("gen:h2") == 6


# --- transactions -------------------------------------------------------------------------


def test_exception_rolls_back_everything(backend: Backend) -> None:
    with backend.open() as s:
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
    with backend.open() as s, s.transaction() as tx:  # a fresh connection sees the database
        assert tx.list("vpc") == [StoredObject("vpc", "keep", 1, {"v": 1})]
        assert tx.allocations("vni") == {} and tx.host_reports() == {}
        assert tx.next_sequence("gen") == 2


def test_nested_transaction_is_refused_and_outer_still_commits(backend: Backend, store: Store) -> None:
    with store.transaction() as outer:
        with pytest.raises(RuntimeError, match="nested"):
            store.transaction().__enter__()
        outer.create("vpc", "v", {})
        assert store.schema_version() == backend.latest  # allowed inside: it reads on the same connection
    with store.transaction() as tx:
        assert tx.get("vpc", "v") is not None


def test_transaction_unusable_after_its_block_and_closed_store(backend: Backend) -> None:
    s = backend.open()
    with s.transaction() as tx:
        pass
    with pytest.raises(RuntimeError, match="after its `with` block"):
        tx.create("vpc", "late", {})
    s.close()
    s.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        s.transaction().__enter__()


def test_keyed_transaction_refuses_bad_keys(store: Store) -> None:
    with pytest.raises(ValidationError) as ei:
        store.keyed_transaction(["ok", ""])
    assert ei.value.first[0] == "keys[1]"
    with store.keyed_transaction(["vpc:a"]) as tx:
        tx.next_sequence("keyed")
    with store.transaction() as tx:
        assert tx.current_sequence("keyed") == 1


def test_threads_share_a_store_without_lost_updates(store: Store) -> None:
    with store.transaction() as tx:
        tx.create("vpc", "counter", {"n": 0})

    def bump() -> None:
        for _ in range(50):
            with store.transaction() as tx:
                cur = tx.get("vpc", "counter")
                assert cur is not None
                tx.update("vpc", "counter", {"n": cur.data["n"] + 1}, cur.generation)

    threads = [threading.Thread(target=bump) for _ in range(6)]  # more threads than PostgreSQL's connections
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with store.transaction() as tx:
        counter = tx.get("vpc", "counter")
    assert counter is not None and counter.data == {"n": 300} and counter.generation == 301


def test_writer_waits_for_another_connection_then_times_out(backend: Backend) -> None:
    with backend.open() as holder, backend.open(busy_timeout=0.3) as waiter:
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

        # Held too long: TemporaryError after about the busy timeout, naming the database.
        with holder.transaction():
            started = time.monotonic()
            with pytest.raises(TemporaryError, match=backend.busy) as err:
                with waiter.transaction():
                    pass
            assert 0.25 <= time.monotonic() - started < 3
            assert "0.3 s" in str(err.value)
            assert not backend.secret or backend.secret not in str(err.value)
        with waiter.transaction() as tx:  # the store that timed out is usable again
            tx.create("vpc", "after", {})


# --- migrations ---------------------------------------------------------------------------

V2 = Migration(2, "host_labels", "ALTER TABLE host_reports ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';")


def test_migration_5_counts_the_counted_pools_already_there(backend: Backend) -> None:
    pool = f"{COUNTED_POOL_PREFIX}attachment:t1"
    with backend.open(migrations=load_migrations(backend.name)[:4]) as s:
        with s.transaction() as tx:
            for i in range(5):
                tx.reserve(pool, f"att-{i}", f"att-{i}")
            tx.reserve("ip:vpc-1", "10.0.0.5", "att-0")
    with backend.open() as s:
        with s.transaction() as tx:
            assert tx.pool_sizes([pool, "ip:vpc-1"]) == {pool: 5, "ip:vpc-1": 1}
            tx.reserve(pool, "att-5", "att-5")
            tx.release_owner("att-0")
        with s.transaction() as tx:
            assert tx.pool_sizes([pool, "ip:vpc-1"]) == {pool: 5}


def test_migration_from_version_1_keeps_data(backend: Backend) -> None:
    v1 = load_migrations(backend.name)[:1]
    with backend.open(migrations=v1) as s:
        with s.transaction() as tx:
            tx.create("vpc", "v", {"kept": True})
            tx.put_host_report("h1", 1, {})
        assert s.schema_version() == 1
    with backend.open(migrations=(*v1, V2)) as s:
        assert s.schema_version() == 2
        with s.transaction() as tx:
            assert tx.get("vpc", "v") == StoredObject("vpc", "v", 1, {"kept": True})
    assert backend.raw("SELECT version, name FROM schema_version ORDER BY version") == [
        (1, "initial"), (2, "host_labels")]
    assert backend.raw("SELECT host, labels FROM host_reports") == [("h1", "{}")]
    # The code that only knows version 1 must now refuse the database.
    with pytest.raises(StoreError, match=r"written by a newer l2vpc \(schema 2\); upgrade l2vpc"):
        backend.open(migrations=v1)


def test_failed_migration_changes_nothing(backend: Backend) -> None:
    v1 = load_migrations(backend.name)[:1]
    with backend.open(migrations=v1):
        pass
    broken = Migration(2, "broken", "CREATE TABLE half_done (x int);\nINSERT INTO no_such_table VALUES (1);")
    with pytest.raises(StoreError, match=r"migrate to schema 2 \(broken\) failed: .*no_such_table"):
        backend.open(migrations=(*v1, broken))
    assert backend.raw("SELECT max(version) FROM schema_version") == [(1,)]
    assert "half_done" not in backend.tables()


def test_newer_schema_is_refused(backend: Backend) -> None:
    with backend.open():
        pass
    backend.raw("INSERT INTO schema_version (version, name, applied_at) VALUES (99, 'from the future', "
                "CURRENT_TIMESTAMP)")
    with pytest.raises(StoreError, match=r"was written by a newer l2vpc \(schema 99\); upgrade l2vpc"):
        backend.open()


def test_shipped_migrations_are_numbered_and_make_only_the_engines_tables(backend: Backend) -> None:
    migrations = load_migrations(backend.name)
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert [m.name for m in migrations][:2] == ["initial", "control_plane"]
    with backend.open() as s:
        assert s.schema_version() == len(migrations)
    # Version 2 once made the controllers' tables; they are the controller's now (planestore.py).
    assert backend.tables() == {"schema_version", "objects", "allocations", "host_reports", "sequences", "pool_counts"}


# --- several processes --------------------------------------------------------------------


def _writer(url: str, name: str, barrier: Any, results: Any) -> None:
    """Create 300 objects and bump the shared counter 200 times, interleaved: half the bumps
    read and write in one transaction (the write lock makes them wait, never conflict), half
    read, work a little, then write in another transaction (optimistic: retry on ConflictError).
    """
    conflicts = 0
    with open_store(url) as store:
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
    with open_store(url) as store:  # opened at once: both race to create and migrate the database
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
    with open_store(url) as store:
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


def test_two_processes_write_without_lost_updates(backend: Backend) -> None:
    with backend.open() as s, s.transaction() as tx:
        tx.create("vpc", "counter", {"n": 0})
    conflicts = _run_two(_writer, backend.url)
    assert set(conflicts) == {"p1", "p2"}
    assert sum(conflicts.values()) > 0  # the processes did race for the counter
    with backend.open() as s:
        with s.transaction() as tx:
            counter = tx.get("vpc", "counter")
            ids = [o.id for o in tx.list("attachment")]
        if isinstance(s, SqliteStore):
            s.check()
    assert counter is not None and counter.data == {"n": 400}
    assert counter.generation == 401
    assert ids == sorted(f"{p}-{i:03d}" for p in ("p1", "p2") for i in range(300))


def test_two_processes_race_for_the_same_values(backend: Backend) -> None:
    # Nothing there yet: both processes also race to create the schema.
    won = _run_two(_reserver, backend.url)
    assert not set(won["p1"]) & set(won["p2"])
    assert set(won["p1"]) | set(won["p2"]) == {str(v) for v in range(100)}
    with backend.open() as s, s.transaction() as tx:
        held = tx.allocations("vni")
        assert s.schema_version() == backend.latest
    assert held == {v: name for name, values in won.items() for v in values}
    assert backend.raw("SELECT version FROM schema_version ORDER BY version") == [
        (v,) for v in range(1, backend.latest + 1)]


def test_engine_keeps_cross_object_rules_under_concurrency(backend: Backend) -> None:
    """Two processes (controllers, or CLI runs on one file) attach one workload to 14 VPCs at
    once: at most 10 per workload, one host, distinct interface names and MACs; rules spanning
    objects hold because transactions are serial."""
    with backend.open() as s:
        engine = Engine(s, LocalAgentPool())
        for h in ({"name": "c1", "region": "us-east", "underlay_ip": "10.200.0.1"},
                  {"name": "c2", "region": "us-east", "underlay_ip": "10.200.0.2"}):
            engine.register_host(h)
        vpcs = [engine.create("vpc", {"name": f"v{i}", "region": "us-east", "cidr": f"10.{i}.0.0/24"})
                for i in range(14)]
        assert len({v.vni for v in vpcs}) == 14
        assert engine.vpc_by_name("v3") == vpcs[3]
    outcomes = _run_two(_attacher, backend.url)
    with backend.open() as s:
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


def test_backends_are_told_apart_by_url(backend: Backend) -> None:
    with open_store(backend.url) as s:
        assert re.sub("Store$", "", type(s).__name__).lower() == backend.name


def test_migration_3_marks_sealed_secrets_out_of_band(backend: Backend) -> None:
    # Up to schema 2 a sealed secret was a string "sealed:v1:<token>" (a prefix users could
    # type); schema 3 holds {"$sealed": "v1", "token": <token>} instead (engine/secrets.py).
    v2 = load_migrations(backend.name)[:2]
    with backend.open(migrations=v2) as s:
        with s.transaction() as tx:
            tx.create("vpn", "vpn-1", {"name": "v", "pre_shared_key": "sealed:v1:tokA"})
            tx.create("direct_connect", "dx-1", {"service_key": "sealed:v1:tokB",
                                                 "bgp": {"customer_asn": 1, "md5_key": "sealed:v1:tokC"}})
            tx.create("direct_connect", "dx-2", {"service_key": None, "bgp": {"md5_key": None}})
            tx.create("vpc", "vpc-1", {"description": "sealed:v1:not a secret field"})
    with backend.open() as s:
        with s.transaction() as tx:
            assert tx.get("vpn", "vpn-1").data == {  # type: ignore[union-attr]
                "name": "v", "pre_shared_key": {"$sealed": "v1", "token": "tokA"}}
            assert tx.get("direct_connect", "dx-1").data == {  # type: ignore[union-attr]
                "service_key": {"$sealed": "v1", "token": "tokB"},
                "bgp": {"customer_asn": 1, "md5_key": {"$sealed": "v1", "token": "tokC"}}}
            assert tx.get("direct_connect", "dx-2").data == {"service_key": None, "bgp": {"md5_key": None}}  # type: ignore[union-attr]
            assert tx.get("vpc", "vpc-1").data == {"description": "sealed:v1:not a secret field"}  # type: ignore[union-attr]
