"""The plane store on a real PostgreSQL: leadership is a session advisory lock that passes on
within a second when its holder's connection is cut or its process killed, and notifications
arrive on commit only (the plane store's contract on both backends: test_plane_store.py)."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import time

import pytest

from l2vpc.controller.planestore import Lease, PlaneStore, open_plane
from l2vpc.engine.errors import ValidationError
from l2vpc.engine.store.postgres import PostgresStore
from l2vpc.testing.postgres import Schema

_HOLD = """
import sys, time
from l2vpc.controller.planestore import open_plane
from l2vpc.engine.store.postgres import PostgresStore
lead = open_plane(PostgresStore(sys.argv[1])).try_leadership("controller")
print("held" if lead else "refused", lead.term if lead else 0, flush=True)
time.sleep(120)
"""


def _take_within_a_second(plane: PlaneStore, name: str) -> Lease | None:
    started = time.monotonic()
    lead = None
    while lead is None and time.monotonic() - started < 1.0:
        lead = plane.try_leadership(name)
        time.sleep(0.02)
    return lead


def test_leadership_of_a_cut_connection_is_handed_over(db: Schema) -> None:
    with PostgresStore(db.url) as a, PostgresStore(db.url) as b:
        pa, pb = open_plane(a), open_plane(b)
        first = pa.try_leadership("controller")
        assert first is not None and first.term == 1
        # The holder's connection is lost (network, DBA): it learns so, and the lock is free.
        assert db.server.terminate(db.database, "l2vpc leader controller") == 1
        second = _take_within_a_second(pb, "controller")
        assert second is not None and second.term == 2, "not handed over within a second"
        assert not first.is_held()
        second.release()


def test_leadership_of_a_killed_process_is_handed_over_within_a_second(db: Schema) -> None:
    with PostgresStore(db.url) as s:
        plane = open_plane(s)
        holder = subprocess.Popen([sys.executable, "-c", _HOLD, db.url], stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().split() == ["held", "1"]
            assert plane.try_leadership("controller") is None
            holder.send_signal(signal.SIGKILL)
            holder.wait(10)
            lead = _take_within_a_second(plane, "controller")
            assert lead is not None, "not handed over within a second of the holder's death"
            assert lead.term == 2 and lead.is_held()
            lead.release()
        finally:
            if holder.poll() is None:
                holder.kill()
                holder.wait()


def test_notifications_arrive_on_commit_only(db: Schema) -> None:
    got: queue.SimpleQueue[str | None] = queue.SimpleQueue()
    with PostgresStore(db.url) as s:
        plane = open_plane(s)
        sub = plane.listen("l2vpc_test", got.put)
        assert sub is not None
        try:
            assert got.get(timeout=5) is None  # connected
            with pytest.raises(RuntimeError), plane.transaction() as p:
                p.notify("l2vpc_test", "rolled back")
                raise RuntimeError
            with plane.transaction() as p:
                p.notify("l2vpc_test", "hello")
            assert got.get(timeout=5) == "hello"
            with pytest.raises(ValidationError, match="channel"), plane.transaction() as p:
                p.notify("Bad Channel; DROP", "x")
        finally:
            sub.close()
