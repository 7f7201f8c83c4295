"""The plane store contract (controller/planestore.py), run against SQLite and a real, throwaway
PostgreSQL alike: batched heartbeats, shared records, bounded events, API tokens, leadership,
checked notifications, its own migrations, and databases written by the previous l2vpc, whose
engine schema 2 made the plane's tables. Notification delivery and leadership lost with a
connection are test_plane_postgres.py's; the file lock and the loop on SQLite
test_plane_sqlite.py's."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from l2vpc.controller.planestore import Event, Heartbeat, PlaneStore, open_plane
from l2vpc.engine.errors import ConflictError, StoreError, ValidationError
from l2vpc.engine.store import Store, open_store
from l2vpc.engine.store.migrations import Migration, load_migrations
from l2vpc.engine.store.sql import SqlStore
from l2vpc.engine.store.sqlite import SqliteStore

PLANE_MIGRATIONS = "l2vpc.controller.migrations"


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "state.db")
    return str(request.getfixturevalue("db").url)


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    with open_store(url) as s:
        with s.transaction() as tx:
            for h in ("h1", "h2"):
                tx.create("host", h, {"name": h})
        yield s


@pytest.fixture
def plane(store: Store) -> PlaneStore:
    return open_plane(store)


def beat(host: str, seen: float, acc: int = 1, digest: str = "ab", ctl: str = "c1") -> Heartbeat:
    return Heartbeat(host, seen, acc, acc, False, digest, ctl)


# --- heartbeats ---------------------------------------------------------------------------


def test_heartbeats_are_written_as_a_batch_newest_wins(plane: PlaneStore) -> None:
    with plane.transaction() as p:
        now = p.clock()
        assert abs(now - time.time()) < 5
        unknown = p.put_heartbeats([beat("h1", now, 3, "d1"), beat("h2", now), beat("ghost", now)])
    assert unknown == {"ghost"}  # not registered: skipped, reported
    with plane.transaction() as p:
        # An older heartbeat (a slower controller's flush) keeps the newer values.
        assert p.put_heartbeats([beat("h1", now - 5, 9, "old", "c2"), beat("h2", now + 1, 4, "new", "c2")]) == set()
        got = p.heartbeats()
    assert set(got) == {"h1", "h2"}
    assert got["h1"] == Heartbeat("h1", pytest.approx(now), 3, 3, False, "d1", "c1")  # type: ignore[arg-type]
    assert got["h2"] == Heartbeat("h2", pytest.approx(now + 1), 4, 4, False, "new", "c2")  # type: ignore[arg-type]
    with plane.transaction() as p:
        p.put_heartbeats([Heartbeat("h2", now + 2, 5, 4, True, "", "c1")])
        assert p.heartbeats()["h2"].converging is True
        p.delete_heartbeats(["h2", "never-seen", "bad\x00"])
        assert set(p.heartbeats()) == {"h1"}


@pytest.mark.parametrize(("bad", "path"), [
    ({"accepted_generation": -1}, "beats[1].accepted_generation"),
    ({"converging": "yes"}, "beats[1].converging"),
    ({"last_seen": float("nan")}, "beats[1].last_seen"),
    ({"host": ""}, "beats[1].host"),
    ({"digest": "a\x00"}, "beats[1].digest"),
])
def test_bad_heartbeats_name_the_field_and_write_nothing(plane: PlaneStore, bad: dict[str, Any], path: str) -> None:
    good = beat("h1", 1.0)
    fields = {**{f: getattr(good, f) for f in Heartbeat.__slots__}, "host": "h2", **bad}
    with pytest.raises(ValidationError) as err, plane.transaction() as p:
        p.put_heartbeats([good, Heartbeat(**fields)])
    assert err.value.first[0] == path
    with plane.transaction() as p:
        assert p.heartbeats() == {}


def test_a_host_twice_in_one_batch_is_refused(plane: PlaneStore) -> None:
    with pytest.raises(ValidationError) as err, plane.transaction() as p:
        p.put_heartbeats([beat("h1", 1.0), beat("h2", 1.0), beat("h1", 2.0)])
    assert err.value.first == ("beats[2].host", "host 'h1' appears twice in one batch")


# --- shared records, events, notifications ------------------------------------------------


def test_state_events_sequences_and_report_stamps(plane: PlaneStore) -> None:
    with plane.transaction() as p:
        assert p.get_state("leader") is None and p.tx.current_sequence("plane:desired") == 0
        p.put_state("leader", {"id": "c1", "term": 1})
        p.put_state("leader", {"id": "c2", "term": 2})
        assert p.tx.next_sequence("plane:desired") == 1
        p.add_events([Event(float(i), "h1" if i % 2 else "", f"e{i}") for i in range(5)], keep=3)
        p.add_events([Event(9.0, "", "e9")], keep=3)
        p.tx.put_host_report("h1", 4, {"host": "h1"})
        p.tx.put_host_report("h2", 1, {"host": "h2"})
    with plane.transaction() as p:
        assert p.get_state("leader") == {"id": "c2", "term": 2}
        assert p.get_state("nothing") is None and p.get_state("bad\x00") is None
        assert p.tx.current_sequence("plane:desired") == 1
        assert [e.what for e in p.events()] == ["e3", "e4", "e9"]  # oldest first, bounded
        assert p.events(limit=1) == [Event(9.0, "", "e9")]
        stamps = p.tx.host_report_stamps()
        assert {h: g for h, (g, _) in stamps.items()} == {"h1": 4, "h2": 1}
        assert abs(stamps["h1"][1] - p.clock()) < 5  # host reports and heartbeats share the clock
    with pytest.raises(ValidationError, match="NUL"), plane.transaction() as p:
        p.add_events([Event(1.0, "", "a\x00b")])
    with pytest.raises(ValidationError, match="not storable as JSON"), plane.transaction() as p:
        p.put_state("leader", {"at": float("inf")})


def test_records_roll_back_with_the_engine_transaction(plane: PlaneStore) -> None:
    with pytest.raises(KeyError), plane.transaction() as p:
        p.put_state("leader", {"id": "c1"})
        p.add_events([Event(1.0, "", "e1")])
        p.tx.create("vpc", "v1", {})
        raise KeyError("boom")
    with plane.store.transaction() as tx:
        p = plane.on(tx)  # the plane's records inside an engine transaction already open
        assert p.get_state("leader") is None and p.events() == [] and tx.list("vpc") == []


def test_on_refuses_another_stores_transaction(plane: PlaneStore, url: str) -> None:
    with open_store(url) as other, other.transaction() as tx, pytest.raises(TypeError, match="not a transaction"):
        plane.on(tx)


def test_notifications_are_checked_and_sent_only_on_commit(plane: PlaneStore) -> None:
    got: list[str | None] = []
    sub = plane.listen("l2vpc_test", got.append)  # None where there are no notifications
    try:
        with plane.transaction() as p:
            p.notify("l2vpc_test", "hello")
        with pytest.raises(ValidationError, match="channel"), plane.transaction() as p:
            p.notify("Bad Channel; DROP", "x")
        with pytest.raises(ValidationError, match="payload"), plane.transaction() as p:
            p.notify("l2vpc_test", "x" * 8000)
        with pytest.raises(ValidationError, match="channel"):
            plane.listen("Bad Channel", got.append)
    finally:
        if sub is not None:
            sub.close()


# --- API tokens ---------------------------------------------------------------------------


def test_tokens_are_the_planes_not_the_engines(plane: PlaneStore) -> None:
    with plane.transaction() as p:
        p.create_token("tok-000000000002", {"role": "admin", "digest": "d2"})
        p.create_token("tok-000000000001", {"role": "tenant", "tenant": "acme", "digest": "d1"})
        with pytest.raises(ConflictError, match="already exists"):
            p.create_token("tok-000000000001", {})
        with pytest.raises(ValidationError, match="kind"):
            p.tx.list("token")  # the engine's interface serves its own kinds only
    with plane.transaction() as p:
        assert [(t.id, t.data["role"]) for t in p.tokens()] == [("tok-000000000001", "tenant"),
                                                                 ("tok-000000000002", "admin")]
        one = p.get_token("tok-000000000001")
        assert one is not None and one.generation == 1 and one.data == {"role": "tenant", "tenant": "acme",
                                                                         "digest": "d1"}
        assert p.update_token(one.id, {**one.data, "revoked": 5.0}, one.generation)
        assert not p.update_token(one.id, {}, one.generation)  # stale
        assert p.get_token("tok-unknown") is None and p.get_token("a\x00") is None
        assert p.tx.list("vpc") == []
    with plane.transaction() as p:
        again = p.get_token("tok-000000000001")
        assert again is not None and again.generation == 2 and again.data["revoked"] == 5.0


# --- leadership ---------------------------------------------------------------------------


def test_leadership_is_exclusive_and_handed_over(url: str) -> None:
    with open_store(url) as a, open_store(url) as b:
        pa, pb = open_plane(a), open_plane(b)
        first = pa.try_leadership("reconciler")
        assert first is not None and first.is_held() and first.name == "reconciler"
        assert pb.try_leadership("reconciler") is None
        assert pa.try_leadership("reconciler") is None  # also refused to the holder's own store
        other = pb.try_leadership("another-name")  # names are independent
        assert other is not None
        other.release()
        # Released: the next one gets it at once, with a higher term.
        first.release()
        first.release()  # idempotent
        assert not first.is_held()
        second = pb.try_leadership("reconciler")
        assert second is not None and second.is_held() and second.term == first.term + 1
        second.release()
        with pytest.raises(ValidationError, match="name"):
            pa.try_leadership("../x")


# --- migrations and databases of the previous l2vpc ---------------------------------------


def open_sql(url: str) -> SqlStore:
    store = open_store(url)
    assert isinstance(store, SqlStore)
    return store


def tables(store: SqlStore) -> set[str]:
    query = ("SELECT name FROM sqlite_master WHERE type = 'table'" if store.dialect.name == "sqlite" else
             "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    with store.transaction() as tx:
        return {r[0] for r in tx.rows(query)}


def test_a_fresh_database_gets_the_plane_tables_on_opening(url: str) -> None:
    with open_sql(url) as s:
        assert not tables(s) & {"heartbeats", "plane_state", "plane_events"}  # the engine makes none
        plane = open_plane(s)
        assert plane.schema_version() == len(load_migrations(s.dialect.name, PLANE_MIGRATIONS))
        assert open_plane(s).schema_version() == plane.schema_version()  # opening again changes nothing
        assert {"heartbeats", "plane_state", "plane_events", "plane_schema_version"} <= tables(s)


def test_a_newer_plane_schema_is_refused(store: Store) -> None:
    plane = open_plane(store)
    shipped = load_migrations(plane.store.dialect.name, PLANE_MIGRATIONS)
    newer = (*shipped, Migration(len(shipped) + 1, "later", "CREATE TABLE plane_later (x int);"))
    assert type(plane)(plane.store, migrations=newer).schema_version() == len(shipped) + 1
    with pytest.raises(StoreError, match=rf"newer l2vpc \(plane schema {len(shipped) + 1}\)"):
        open_plane(store)


# What the previous l2vpc wrote: its engine schema 2 made the plane's tables with the very
# statements of the plane's version 1 (kept in l2vpc/controller/migrations), and its
# controllers kept tokens in the objects table.
_OLD_ROWS = [
    "INSERT INTO objects (kind, id, tenant, generation, data) VALUES ('host', 'h1', '', 1, '{\"name\": \"h1\"}')",
    "INSERT INTO objects (kind, id, tenant, generation, data) VALUES ('token', 'tok-0123456789ab', '', 2, "
    "'{\"role\": \"admin\", \"digest\": \"d\", \"revoked\": 0}')",
    "INSERT INTO heartbeats VALUES ('h1', 1000.5, 3, 3, false, 'ab', 'c1')",
    "INSERT INTO plane_state (key, value) VALUES ('converged', '{\"revision\": 7}')",
    "INSERT INTO plane_events (time, host, what) VALUES (999.0, 'h1', 'host up: heartbeats resumed')",
]


def test_a_database_of_the_previous_version_keeps_working(url: str) -> None:
    dialect = "postgres" if url.startswith("postgresql://") else "sqlite"
    old_schema = (load_migrations(dialect)[0],
                  Migration(2, "control_plane", load_migrations(dialect, PLANE_MIGRATIONS)[0].sql))
    old: SqlStore
    if dialect == "sqlite":
        old = SqliteStore(url, migrations=old_schema)
    else:
        from l2vpc.engine.store.postgres import PostgresStore

        old = PostgresStore(url, migrations=old_schema)
    with old, old.transaction() as tx:
        for statement in _OLD_ROWS:
            tx.change(statement)
    # The new l2vpc: the engine climbs from schema 2 (its later versions touch no plane table),
    # the plane takes its tables over.
    with open_store(url) as s:
        assert s.schema_version() == len(load_migrations(dialect))
        plane = open_plane(s)
        assert plane.schema_version() == 1
        with plane.transaction() as p:
            assert p.heartbeats() == {"h1": Heartbeat("h1", 1000.5, 3, 3, False, "ab", "c1")}
            assert p.get_state("converged") == {"revision": 7}
            assert p.events() == [Event(999.0, "h1", "host up: heartbeats resumed")]
            token = p.get_token("tok-0123456789ab")
            assert token is not None and token.generation == 2 and token.data["role"] == "admin"
            assert [o.id for o in p.tx.list("host")] == ["h1"]
            assert p.put_heartbeats([beat("h1", 2000.0)]) == set()
            p.add_events([Event(2000.0, "", "after the upgrade")])
        with plane.transaction() as p:
            assert p.heartbeats()["h1"].last_seen == 2000.0
            assert [e.what for e in p.events()] == ["host up: heartbeats resumed", "after the upgrade"]
