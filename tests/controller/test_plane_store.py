"""The store's control-plane tables on both backends (real SQLite, real PostgreSQL): batched
heartbeats, shared records, bounded events, report stamps, notifications, leadership locks."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from l2vpc.engine.errors import ValidationError
from l2vpc.engine.store import open_store
from l2vpc.engine.store.base import Event, Heartbeat, Store
from l2vpc.engine.store.postgres import PostgresStore
from l2vpc.engine.store.sqlite import SqliteStore


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        s: Store = open_store(str(tmp_path / "state.db"))
    else:
        s = PostgresStore(request.getfixturevalue("db").url)
    with s.transaction() as tx:
        for h in ("h1", "h2"):
            tx.create("host", h, {"name": h})
    yield s
    s.close()


def beat(host: str, seen: float, acc: int = 1, digest: str = "ab", ctl: str = "c1") -> Heartbeat:
    return Heartbeat(host, seen, acc, acc, False, digest, ctl)


def test_heartbeats_are_written_as_a_batch_newest_wins(store: Store) -> None:
    with store.transaction() as tx:
        now = tx.clock()
        assert abs(now - time.time()) < 5
        unknown = tx.put_heartbeats([beat("h1", now, 3, "d1"), beat("h2", now), beat("ghost", now)])
    assert unknown == {"ghost"}  # not registered: skipped, reported
    with store.transaction() as tx:
        # An older heartbeat (a slower controller's flush) keeps the newer values.
        assert tx.put_heartbeats([beat("h1", now - 5, 9, "old", "c2"), beat("h2", now + 1, 4, "new", "c2")]) == set()
        got = tx.heartbeats()
    assert set(got) == {"h1", "h2"}
    assert got["h1"] == Heartbeat("h1", pytest.approx(now), 3, 3, False, "d1", "c1")  # type: ignore[arg-type]
    assert got["h2"] == Heartbeat("h2", pytest.approx(now + 1), 4, 4, False, "new", "c2")  # type: ignore[arg-type]
    with store.transaction() as tx:
        tx.delete_heartbeat("h2")
        assert set(tx.heartbeats()) == {"h1"}


@pytest.mark.parametrize(("bad", "path"), [
    ({"accepted_generation": -1}, "beats[1].accepted_generation"),
    ({"converging": "yes"}, "beats[1].converging"),
    ({"last_seen": float("nan")}, "beats[1].last_seen"),
    ({"host": ""}, "beats[1].host"),
])
def test_bad_heartbeats_name_the_field_and_write_nothing(store: Store, bad: dict[str, Any], path: str) -> None:
    good = beat("h1", 1.0)
    fields = {**{f: getattr(good, f) for f in Heartbeat.__slots__}, "host": "h2", **bad}
    with pytest.raises(ValidationError) as err, store.transaction() as tx:
        tx.put_heartbeats([good, Heartbeat(**fields)])
    assert err.value.first[0] == path
    with store.transaction() as tx:
        assert tx.heartbeats() == {}


def test_a_host_twice_in_one_batch_is_refused(store: Store) -> None:
    with pytest.raises(ValidationError) as err, store.transaction() as tx:
        tx.put_heartbeats([beat("h1", 1.0), beat("h2", 1.0), beat("h1", 2.0)])
    assert err.value.first == ("beats[2].host", "host 'h1' appears twice in one batch")


def test_state_events_sequences_and_report_stamps(store: Store) -> None:
    with store.transaction() as tx:
        assert tx.get_state("leader") is None and tx.current_sequence("plane:desired") == 0
        tx.put_state("leader", {"id": "c1", "term": 1})
        tx.put_state("leader", {"id": "c2", "term": 2})
        assert tx.next_sequence("plane:desired") == 1
        tx.add_events([Event(float(i), "h1" if i % 2 else "", f"e{i}") for i in range(5)], keep=3)
        tx.add_events([Event(9.0, "", "e9")], keep=3)
        tx.put_host_report("h1", 4, {"host": "h1"})
        tx.put_host_report("h2", 1, {"host": "h2"})
    with store.transaction() as tx:
        assert tx.get_state("leader") == {"id": "c2", "term": 2}
        assert tx.current_sequence("plane:desired") == 1
        assert [e.what for e in tx.events()] == ["e3", "e4", "e9"]  # oldest first, bounded
        assert tx.events(limit=1) == [Event(9.0, "", "e9")]
        stamps = tx.host_report_stamps()
        assert {h: g for h, (g, _) in stamps.items()} == {"h1": 4, "h2": 1}
        assert abs(stamps["h1"][1] - tx.clock()) < 5
        assert set(tx.host_reports(["h2", "nope"])) == {"h2"}
        assert set(tx.host_reports()) == {"h1", "h2"}


def test_file_leadership_is_exclusive_across_stores(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    with SqliteStore(path) as a, SqliteStore(path) as b:
        first = a.try_leadership("reconciler")
        assert first is not None and first.is_held()
        assert b.try_leadership("reconciler") is None
        first.release()
        assert not first.is_held()
        second = b.try_leadership("reconciler")
        assert second is not None and second.term == first.term + 1
        second.release()
        with pytest.raises(ValidationError, match="name"):
            a.try_leadership("../x")


def test_notifications_arrive_on_commit_only(db: Any) -> None:
    got: queue.SimpleQueue[str | None] = queue.SimpleQueue()
    with PostgresStore(db.url) as s, s.listen("l2vpc_test", got.put):
        assert got.get(timeout=5) is None  # connected
        with pytest.raises(RuntimeError), s.transaction() as tx:
            tx.notify("l2vpc_test", "rolled back")
            raise RuntimeError
        with s.transaction() as tx:
            tx.notify("l2vpc_test", "hello")
        assert got.get(timeout=5) == "hello"
        with pytest.raises(ValidationError, match="channel"), s.transaction() as tx:
            tx.notify("Bad Channel; DROP", "x")
