"""The control loop on a real PostgreSQL (conftest `db`) with memory agents: leadership between
two planes, Converge through a follower, liveness and failover of services, drift repair,
batched heartbeats, bad input. Planes of one test share a LocalAgentPool (one set of hosts)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from l2vpc.agent.local import LocalAgentPool
from l2vpc.controller.plane import ClusterPlane, read_status
from l2vpc.engine.api import Engine
from l2vpc.engine.errors import NotFoundError, TemporaryError, ValidationError
from l2vpc.engine.secrets import SecretBox
from l2vpc.engine.store.postgres import PostgresStore
from l2vpc.hostconfig import HostConfig

from ._plane_helpers import HOSTS, Heartbeater, build, wait_for

INTERVAL = 0.2  # heartbeat interval of these tests; down after 2 s (a busy machine stalls for 1)
FAST: dict[str, Any] = {"heartbeat_interval": INTERVAL, "down_after": 2.0, "tick": 0.1, "resync_interval": 30.0}


class Cluster:
    """Planes (controllers) over one database; everything is stopped and closed at the end."""

    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.pool = LocalAgentPool()
        self.secrets = SecretBox(key.encode())
        self.stores: list[PostgresStore] = []
        self.planes: list[ClusterPlane] = []

    def store(self) -> PostgresStore:
        s = PostgresStore(self.url)
        self.stores.append(s)
        return s

    def plane(self, name: str, pool: Any = None, **kw: Any) -> ClusterPlane:
        p = ClusterPlane(self.store(), pool or self.pool, self.secrets, controller_id=name, **{**FAST, **kw})
        self.planes.append(p)
        p.start()
        return p

    def engine(self) -> Engine:
        return Engine(self.store(), self.pool, secrets=self.secrets)

    def close(self) -> None:
        for p in self.planes:
            p.stop()
        for s in self.stores:
            s.close()


@pytest.fixture
def cluster(db: Any, secret_key: str) -> Iterator[Cluster]:
    c = Cluster(db.url, secret_key)
    try:
        yield c
    finally:
        c.close()


def never() -> bool:
    return False


def converge(plane: ClusterPlane, timeout: float = 10.0, progress: Callable[[str, str], None] | None = None) -> Any:
    return plane.wait_converged(plane.request_converge(), timeout, progress, never)


def running(pool: LocalAgentPool) -> Callable[[str], HostConfig]:
    """What an in-process agent runs now (empty before its first push)."""

    def config(host: str) -> HostConfig:
        client = pool.clients().get(host)
        return client.report(1) if client is not None else HostConfig(host, "0.0.0.0")

    return config


def events(plane: ClusterPlane) -> list[str]:
    return [f"{e.host}: {e.what}" for e in plane.status().recent]


def test_one_plane_leads_and_a_follower_converge_is_done_by_it(cluster: Cluster) -> None:
    a = cluster.plane("ctl-a")
    wait_for(lambda: a.leading, 5, "ctl-a to lead")
    b = cluster.plane("ctl-b")
    for h in HOSTS:
        b.register(h)
    ids = build(cluster.engine())
    # Agents heartbeat to the follower: the leader sees them through the store.
    with Heartbeater(b, cluster.pool, [h["name"] for h in HOSTS], INTERVAL):
        time.sleep(0.3)
        assert a.leading and not b.leading

        notes: list[tuple[str, str]] = []
        out = converge(b, progress=lambda h, m: notes.append((h, m)))
        assert out.failures == ()
        # The leader pushed: the DHCP server runs on c1, the edge services on e1.
        runs = running(cluster.pool)
        assert runs("c1").dhcp_servers and {p.id for p in runs("c2").ports} == {ids["att2"]}
        assert [e.id for e in runs("e1").edge_routers] == [ids["dx"]]
        assert [v.id for v in runs("e1").vpn_gateways] == [ids["vpn"]]
        assert notes and all(h == "" for h, _ in notes)  # a follower streams coarse progress
        assert any("leader ctl-a" in m for _, m in notes), notes

        # Nothing to do: a follower's Converge costs little over a notification round trip.
        took = []
        for _ in range(5):
            started = time.monotonic()
            converge(b)
            took.append(time.monotonic() - started)
        print(f"idle Converge through a follower: median {sorted(took)[2] * 1000:.1f} ms")
        assert sorted(took)[2] < 0.5

        status = b.status()
        assert (status.controller, status.leader) == ("ctl-b", "ctl-a")
        assert status.converged_revision == status.desired_revision >= 6
        assert [h.name for h in status.hosts] == ["c1", "c2", "e1", "e2"]
        assert status.recent[0].what == f"leader changed: ctl-a leads (term {status.term})"

        # ctl-a steps down: ctl-b takes over at its next tick, with a newer term.
        a.stop()
        wait_for(lambda: b.leading, 3, "ctl-b to take over")
        status = b.status()
        assert status.leader == "ctl-b" and status.term > 1
        assert any(w == f"leader changed: ctl-b leads (term {status.term}) after ctl-a (term {status.term - 1})"
                   for w in (e.what for e in status.recent))
        assert converge(b).failures == ()


def test_wait_says_what_is_missing(cluster: Cluster) -> None:
    first = cluster.plane("ctl-b")
    wait_for(lambda: first.leading, 5, "ctl-b to lead")
    first.register(HOSTS[0])
    first.stop()
    # Nobody leads: the wait names it.
    lone = ClusterPlane(cluster.store(), cluster.pool, cluster.secrets, controller_id="ctl-x", **FAST)
    rev = lone.request_converge()
    with pytest.raises(TemporaryError, match=r"timed out after 0.3 s: no controller is leading .*ctl-b.*"
                                             rf"waiting for revision {rev}"):
        lone.wait_converged(rev, 0.3, None, never)
    with pytest.raises(TemporaryError, match="stopped waiting: no controller is leading"):
        lone.wait_converged(rev, 30, None, lambda: True)

    # A leader stuck on a slow host: the follower names the host.
    release = threading.Event()

    class SlowPool(LocalAgentPool):
        def client(self, host: Any) -> Any:
            agent = super().client(host)
            if host.name == "c1" and not hasattr(agent, "slowed"):
                push = agent.push

                def slow(config: HostConfig, timeout: float) -> HostConfig:
                    release.wait(10)
                    return push(config, timeout)

                agent.push = slow  # type: ignore[method-assign]
                agent.slowed = True  # type: ignore[attr-defined]
            return agent

    leader = cluster.plane("ctl-a", pool=SlowPool())
    wait_for(lambda: leader.leading, 5, "ctl-a to lead")
    vpc = cluster.engine().create("vpc", {"name": "v", "region": "r1"})
    cluster.engine().create("attachment", {"vpc_id": vpc.id, "workload": "w1", "host": "c1"})
    # Slow but alive: c1 keeps heartbeating (a silent host would be marked down and not waited for).
    with Heartbeater(leader, cluster.pool, ["c1"], INTERVAL):
        rev = lone.request_converge()
        try:
            with pytest.raises(TemporaryError, match=r"still converging: hosts c1 \(leader ctl-a\)"):
                lone.wait_converged(rev, 1.0, None, never)
            with pytest.raises(TemporaryError, match=r"still converging: hosts c1 \(leader ctl-a\)"):
                leader.wait_converged(rev, 0.3, None, never)
        finally:
            release.set()
    assert lone.wait_converged(rev, 10, None, never).revision >= rev


def test_a_silent_host_is_marked_down_its_services_move_and_it_comes_back(cluster: Cluster) -> None:
    plane = cluster.plane("ctl-a")
    wait_for(lambda: plane.leading, 5, "ctl-a to lead")
    for h in HOSTS:
        plane.register(h)
    engine = cluster.engine()
    ids = build(engine)
    with Heartbeater(plane, cluster.pool, [h["name"] for h in HOSTS], INTERVAL) as beats:
        assert converge(plane).failures == ()
        old_ip = engine.get("vpn", ids["vpn"]).public_ip
        time.sleep(2.5)  # longer than down_after: heartbeats keep everyone up
        assert {h.name: h.status for h in engine.hosts()} == {"c1": "up", "c2": "up", "e1": "up", "e2": "up"}

        beats.paused |= {"c1", "e1"}  # their agents die (or their links)
        started = time.monotonic()
        wait_for(lambda: {h.name for h in engine.hosts() if h.status == "down"} == {"c1", "e1"}, 10, "c1, e1 down")
        print(f"marked down {time.monotonic() - started:.2f} s after the last heartbeat (down_after 2 s)")
        wait_for(lambda: engine.get("vpc", ids["vpc"]).dhcp_host == "c2", 2, "DHCP to move to c2")
        assert engine.get("direct_connect", ids["dx"]).edge_host == "e2"
        vpn = engine.get("vpn", ids["vpn"])
        assert vpn.vpn_host == "e2" and vpn.public_ip != old_ip and vpn.public_ip.startswith("203.0.113.")
        # The leader pushed the moved services to their new hosts, skipping the down ones.
        agents = running(cluster.pool)
        wait_for(lambda: agents("c2").dhcp_servers and agents("e2").edge_routers
                 and agents("e2").vpn_gateways, 3, "services to run on c2 and e2")
        assert agents("c1").dhcp_servers  # not pushed to while down: still has it
        log = events(plane)
        assert "c1: host down: no heartbeat for" in "\n".join(log)
        assert f"c1: dhcp server of {ids['vpc']} moved from c1 to c2" in log
        assert f"e1: direct connect {ids['dx']} moved from e1 to e2" in log
        assert any(e.startswith(f"e1: vpn {ids['vpn']} moved from e1 to e2 (public ip {old_ip} -> ") for e in log)
        failed = converge(plane).failures
        assert {f.host for f in failed} <= {"c1", "e1"} and all(f.step == "down" for f in failed)

        beats.paused.clear()  # healed
        wait_for(lambda: all(h.status == "up" for h in engine.hosts()), 5, "hosts back up")
        # Sticky: services stay; the returning hosts get their config again (without them).
        wait_for(lambda: not agents("c1").dhcp_servers and not agents("e1").edge_routers
                 and not agents("e1").vpn_gateways, 5, "c1 and e1 to drop the moved services")
        assert engine.get("vpc", ids["vpc"]).dhcp_host == "c2"
        assert {"c1: host up: heartbeats resumed", "e1: host up: heartbeats resumed"} <= set(events(plane))
        assert converge(plane).failures == ()
        live = {h.name: h for h in plane.status().hosts}
        assert all(h.status == "up" and time.time() - h.last_seen_unix < 2 for h in live.values())


def test_drift_is_repaired_and_reported(cluster: Cluster) -> None:
    plane = cluster.plane("ctl-a")
    wait_for(lambda: plane.leading, 5, "ctl-a to lead")
    for h in HOSTS[:2]:
        plane.register(h)
    engine = cluster.engine()
    ids = build_compute_only(engine)
    agents = cluster.pool.clients
    with Heartbeater(plane, cluster.pool, ["c1", "c2"], INTERVAL):
        notes: list[tuple[str, str]] = []
        converge(plane, progress=lambda h, m: notes.append((h, m)))
        # On the leader, the executor's own progress is streamed.
        assert ("c1", "converged") in notes and ("c2", "converged") in notes
        assert any(h == "c2" and m.startswith("pushing generation") for h, m in notes)
        want = agents()["c2"].report(1)
        assert len(want.ports) == 1

        # A port deleted by hand on c2: its heartbeat digest changes, the leader repairs it.
        agents()["c2"].set_actual(dataclasses.replace(want, ports=()))
        wait_for(lambda: running(cluster.pool)("c2").ports, 5, "the port to be recreated on c2")
        wait_for(lambda: any(e.startswith(f"c2: drift repaired: create ports[id={ids['att2']}]; cause: the host runs "
                                          "something else") for e in events(plane)), 2, "a drift event for c2")

        # The agent of c1 restarts empty.
        c1 = agents()["c1"]
        before = c1.report(1)
        assert before.dhcp_servers
        c1.restart()
        wait_for(lambda: running(cluster.pool)("c1").same_dataplane(before), 5, "c1 repaired")
        wait_for(lambda: any(e.startswith("c1: drift repaired: create segments[vni=") and
                             "cause: agent restarted empty: it accepted generation 0" in e
                             for e in events(plane)), 2, "a drift event for c1")


def build_compute_only(engine: Engine) -> dict[str, str]:
    vpc = engine.create("vpc", {"name": "v", "region": "r1", "cidr": "10.1.0.0/24",
                                "dhcp": {"range_start": "10.1.0.100", "range_end": "10.1.0.150"}})
    atts = [engine.create("attachment", {"vpc_id": vpc.id, "workload": f"w{n}", "host": f"c{n}", "ip_mode": "dhcp"})
            for n in (1, 2)]
    return {"vpc": vpc.id, "att1": atts[0].id, "att2": atts[1].id}


def test_heartbeats_are_written_once_per_flush(cluster: Cluster, db: Any) -> None:
    plane = cluster.plane("ctl-a", heartbeat_interval=1.0, down_after=5.0)  # flushes every 0.5 s
    # Count INSERT statements on the heartbeats table with a statement-level trigger.
    db.raw("CREATE TABLE hb_statements (n int)")
    db.raw("GRANT INSERT ON hb_statements TO PUBLIC")  # the trigger runs as the controller's role
    db.raw("CREATE FUNCTION count_hb() RETURNS trigger LANGUAGE plpgsql AS "
           "$$ BEGIN INSERT INTO hb_statements VALUES (1); RETURN NULL; END $$")
    db.raw("CREATE TRIGGER count_hb AFTER INSERT ON heartbeats FOR EACH STATEMENT EXECUTE FUNCTION count_hb()")
    engine = cluster.engine()
    names = [f"h{i:02d}" for i in range(40)]
    for i, n in enumerate(names):
        engine.register_host({"name": n, "region": "r1", "underlay_ip": f"10.0.1.{i + 1}"})
    time.sleep(0.6)
    db.raw("DELETE FROM hb_statements")
    started = time.monotonic()
    sent = 0
    while time.monotonic() - started < 2.0:  # 40 hosts, each every 20 ms: 4,000 heartbeats
        for n in names:
            plane.heartbeat(n, 1, 1, False, "ab")
            sent += 1
        time.sleep(0.02)
    time.sleep(0.6)
    statements = db.raw("SELECT count(*) FROM hb_statements")[0][0]
    print(f"{sent} heartbeats written in {statements} statements")
    assert 3 <= statements <= 6  # 2.6 s at one flush per 0.5 s
    rows = db.raw("SELECT host, last_seen, controller FROM heartbeats")
    assert sorted(r[0] for r in rows) == names
    assert all(time.time() - r[1] < 2 and r[2] == "ctl-a" for r in rows)


def test_bad_input_names_the_field_and_changes_nothing(cluster: Cluster, db: Any) -> None:
    plane = cluster.plane("ctl-a")
    with pytest.raises(ValidationError) as err:
        plane.register({"name": "h1", "region": "r1"})
    assert err.value.first == ("underlay_ip", "required field is missing")
    with pytest.raises(ValidationError) as err:
        plane.register({"name": "h1", "region": "r1", "underlay_ip": "10.0.0.1", "role": "router"})
    assert err.value.first[0] == "role"
    with pytest.raises(ValidationError, match="host"):
        plane.register("h1")  # type: ignore[arg-type]
    with pytest.raises(NotFoundError, match="host 'h1' not found"):
        plane.heartbeat("h1", 1, 1, False, "ab")
    plane.register({"name": "h1", "region": "r1", "underlay_ip": "10.0.0.1"})
    bad: list[tuple[tuple[Any, ...], str]] = [
        (("", 1, 1, False, "ab"), "host"),
        (("h1", -1, 1, False, "ab"), "accepted_generation"),
        (("h1", 1, "2", False, "ab"), "converged_generation"),
        (("h1", 1, 1, "yes", "ab"), "converging"),
        (("h1", 1, 1, False, "NOT HEX"), "actual_digest"),
    ]
    for args, field in bad:
        with pytest.raises(ValidationError) as err:
            plane.heartbeat(*args)
        assert err.value.first[0] == field, args
    settings: list[tuple[dict[str, Any], str]] = [
        ({"tick": 0}, "tick"), ({"heartbeat_interval": -1}, "heartbeat_interval"),
        ({"down_after": 0.1}, "down_after"), ({"controller_id": ""}, "controller_id")]
    for kw, field in settings:
        with pytest.raises(ValidationError) as err:
            ClusterPlane(cluster.store(), cluster.pool, cluster.secrets, **{"controller_id": "x", **FAST, **kw})
        assert err.value.first[0] == field
    with pytest.raises(ValidationError, match="revision"):
        plane.wait_converged(-1, 1, None, never)
    time.sleep(0.4)
    # Only the registration counted as a heartbeat; the refused ones wrote nothing.
    assert db.raw("SELECT host, accepted_generation, digest FROM heartbeats") == [("h1", 0, "")]
    assert [h.name for h in read_status(cluster.store()).hosts] == ["h1"]


def test_heartbeat_interval_is_paced_to_the_fleet(db: Any, secret_key: str) -> None:
    """With more hosts than the cluster's heartbeat budget, agents are told a longer interval
    and a host counts as down only after as many missed beats as with a small fleet."""
    from l2vpc.controller.plane import ClusterPlane
    from l2vpc.engine.secrets import SecretBox
    from l2vpc.engine.store import open_store

    with open_store(db.url) as store:
        plane = ClusterPlane(store, LocalAgentPool(), SecretBox.for_state(None), controller_id="pace",
                             heartbeat_interval=2.0, down_after=6.0, max_heartbeat_rate=10.0)
        small = plane.register({"name": "h0", "region": "r1", "underlay_ip": "10.9.0.1"})
        assert small == 2.0 and plane.reconciler.down_after == 6.0
        for i in range(1, 50):
            interval = plane.register({"name": f"h{i}", "region": "r1", "underlay_ip": f"10.9.0.{i + 1}"})
        assert interval == 5.0  # 50 hosts at 10 heartbeats/s
        assert plane.heartbeat("h3", 0, 0, False, "") == 5.0
        assert plane.reconciler.down_after == 15.0  # still three missed beats


def test_silence_while_the_store_was_locked_marks_no_host_down(cluster: Cluster, db: Any) -> None:
    """Heartbeats keep arriving, but a long transaction holds the store's write lock so they
    cannot be recorded and the leader cannot look. When it ends, the hosts' recorded
    heartbeats are old, yet none is marked down: the gap says nothing about them."""
    from l2vpc.controller.reconciler import STALL_SECONDS
    from l2vpc.engine.store import open_store

    plane = cluster.plane("ctl-a")
    wait_for(lambda: plane.leading, 5, "ctl-a to lead")
    for h in HOSTS:
        plane.register(h)
    engine = cluster.engine()
    with Heartbeater(plane, cluster.pool, [h["name"] for h in HOSTS], INTERVAL):
        time.sleep(1.5)
        with open_store(db.url) as other, other.transaction() as tx:
            tx.next_sequence("a-long-transaction")
            time.sleep(STALL_SECONDS + 1.5)  # far longer than down_after (2 s)
        time.sleep(2.0)  # the leader looks again, the flush writes the buffered heartbeats
        assert {h.name: h.status for h in engine.hosts()} == {"c1": "up", "c2": "up", "e1": "up", "e2": "up"}
        assert not [e for e in events(plane) if "host down" in e]
