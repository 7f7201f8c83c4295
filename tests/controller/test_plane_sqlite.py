"""The plane store and the control loop on SQLite (a single-controller deployment): the flock
on a file beside the state file makes one plane lead, and without notifications a follower's
Converge is still picked up by polling; the heartbeat and liveness paths are the same as on
PostgreSQL (the plane store's contract: test_plane_store.py)."""

from __future__ import annotations

import time
from pathlib import Path

from l2vpc.agent.local import LocalAgentPool
from l2vpc.controller.plane import ClusterPlane
from l2vpc.controller.planestore import open_plane
from l2vpc.engine.api import Engine
from l2vpc.engine.secrets import SecretBox
from l2vpc.engine.store.sqlite import SqliteStore

from ._plane_helpers import wait_for


def test_one_plane_leads_a_sqlite_file_and_converges_for_another(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    pool, box = LocalAgentPool(), SecretBox.for_state(str(path))
    fast = {"heartbeat_interval": 0.2, "down_after": 1.0, "tick": 0.1}
    with SqliteStore(path) as sa, SqliteStore(path) as sb:
        a = ClusterPlane(sa, pool, box, controller_id="a", **fast)
        b = ClusterPlane(sb, pool, box, controller_id="b", **fast)
        a.start()
        try:
            wait_for(lambda: a.leading, 5, "a to lead")
            b.start()
            try:
                b.register({"name": "h1", "region": "r1", "underlay_ip": "10.0.0.1"})
                engine = Engine(sb, pool, secrets=box)
                vpc = engine.create("vpc", {"name": "v", "region": "r1"})
                att = engine.create("attachment", {"vpc_id": vpc.id, "workload": "w1", "host": "h1"})
                time.sleep(0.3)
                assert not b.leading and b.status().leader == "a"
                started = time.monotonic()
                rev = b.request_converge()
                assert b.wait_converged(rev, 5, None, lambda: False).revision >= rev
                assert time.monotonic() - started < 1
                assert [p.id for p in pool.clients()["h1"].report(1).ports] == [att.id]
                # h1 never heartbeats after registering: down after a second.
                wait_for(lambda: b.status().hosts[0].status == "down", 3, "h1 down")
                b.heartbeat("h1", 0, 0, False, "")
                wait_for(lambda: b.status().hosts[0].status == "up", 3, "h1 up again")
            finally:
                b.stop()
        finally:
            a.stop()
        assert [e.what.split(":")[0] for e in ClusterPlane(sa, pool, box, controller_id="c").status().recent][:2] == [
            "leader changed", "host down"]


def test_leadership_is_a_lock_file_beside_the_state_file_and_nothing_listens(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with SqliteStore(path) as a, SqliteStore(path) as b:
        pa, pb = open_plane(a), open_plane(b)
        assert pa.listen("l2vpc_plane", lambda _payload: None) is None  # waiters poll instead
        lease = pa.try_leadership("reconciler")
        assert lease is not None and (tmp_path / "state.db.reconciler.leader").exists()
        assert pb.try_leadership("reconciler") is None
        lease.release()
        with pb.try_leadership("reconciler") as again:  # type: ignore[union-attr]
            assert again.is_held() and again.term == lease.term + 1
        assert not again.is_held()


def test_the_heartbeat_of_a_deregistered_host_goes_with_the_leaders_next_round(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    pool, box = LocalAgentPool(), SecretBox.for_state(str(path))
    with SqliteStore(path) as s:
        plane = ClusterPlane(s, pool, box, controller_id="a", heartbeat_interval=0.2, down_after=1.0, tick=0.1)
        plane.start()

        def beating() -> set[str]:
            with plane.plane.transaction() as p:
                return set(p.heartbeats())

        try:
            wait_for(lambda: plane.leading, 5, "a to lead")
            for i in (1, 2):
                plane.register({"name": f"h{i}", "region": "r1", "underlay_ip": f"10.0.0.{i}"})
            wait_for(lambda: beating() == {"h1", "h2"}, 3, "both heartbeats recorded")
            Engine(s, pool, secrets=box).deregister_host("h1")  # the engine knows no heartbeats
            wait_for(lambda: beating() == {"h2"}, 3, "h1's heartbeat to go")
        finally:
            plane.stop()
