"""Host status and failover in the engine (real SQLite, memory agents): services move off down
hosts in one transaction, stay where they moved (sticky), and down hosts are not pushed to."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from l2vpc.agent.local import LocalAgentPool
from l2vpc.engine import allocator as alloc
from l2vpc.engine.api import Engine
from l2vpc.engine.errors import ConflictError, NotFoundError, ValidationError
from l2vpc.engine.store import open_store
from l2vpc.engine.store.base import Transaction
from l2vpc.hostconfig.failures import HostFailure


class Env:
    def __init__(self, path: Path) -> None:
        self.store = open_store(str(path / "state.db"))
        self.pool = LocalAgentPool()
        self.engine = e = Engine(self.store, self.pool)
        for n in (1, 2):
            e.register_host({"name": f"c{n}", "region": "r1", "underlay_ip": f"10.0.0.{n}"})
            e.register_host({"name": f"e{n}", "region": "r1", "role": "edge", "location": "nyc1",
                             "underlay_ip": f"10.0.0.1{n}", "public_cidr": f"203.0.113.{16 * n + 16}/28",
                             "public_gateway": f"203.0.113.{16 * n + 17}"})
        self.vpc = e.create("vpc", {"name": "v", "region": "r1", "cidr": "10.1.0.0/24",
                                    "dhcp": {"range_start": "10.1.0.100", "range_end": "10.1.0.150"}})
        for n in (1, 2):
            e.create("attachment", {"vpc_id": self.vpc.id, "workload": f"w{n}", "host": f"c{n}", "ip_mode": "dhcp"})
        self.dx = e.create("direct_connect", {"name": "dx", "vpc_id": self.vpc.id, "location": "nyc1",
                                              "bandwidth_mbps": 1000, "mode": "layer2"})
        self.vpn = e.create("vpn", {"name": "vp", "vpc_id": self.vpc.id, "peer_address": "198.51.100.7",
                                    "pre_shared_key": "secretkey123", "remote_cidrs": ["192.168.50.0/24"]})

    def where(self) -> tuple[str | None, str | None, str | None, str | None]:
        e = self.engine
        vpn = e.get("vpn", self.vpn.id)
        return (e.get("vpc", self.vpc.id).dhcp_host, e.get("direct_connect", self.dx.id).edge_host,
                vpn.vpn_host, vpn.public_ip)

    def status(self, host: str) -> str:
        return next(h.status for h in self.engine.hosts() if h.name == host)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    e.store.close()


def test_services_move_off_a_down_host_and_stay_when_it_returns(env: Env) -> None:
    dhcp, edge, vpn_host, public = env.where()
    assert (dhcp, edge, vpn_host) == ("c1", "e1", "e1")
    assert public is not None and public.startswith("203.0.113.") and 32 <= int(public.rsplit(".", 1)[1]) < 48

    moved = env.engine.set_host_status("e1", "down")
    assert env.status("e1") == "down"
    assert any(f"direct connect {env.dx.id} moved from e1 to e2" == m for m in moved), moved
    assert any(m.startswith(f"vpn {env.vpn.id} moved from e1 to e2 (public ip {public} -> ") for m in moved), moved
    _, edge, vpn_host, new_public = env.where()
    assert (edge, vpn_host) == ("e2", "e2")
    # The VPN got an address of e2's block (not its gateway), and e1's address was given back.
    assert new_public is not None and 48 < int(new_public.rsplit(".", 1)[1]) < 63
    with env.store.transaction() as tx:
        assert tx.allocations(alloc.pool_ip("public:e1")) == {}
        assert tx.allocations(alloc.pool_ip("public:e2")) == {new_public: env.vpn.id}

    assert env.engine.set_host_status("c1", "down") == [f"dhcp server of {env.vpc.id} moved from c1 to c2"]
    assert env.engine.set_host_status("c1", "down") == []  # idempotent: nothing left to move

    # Back up: sticky, nothing moves back.
    assert env.engine.set_host_status("c1", "up") == []
    assert env.engine.set_host_status("e1", "up") == []
    assert env.where() == ("c2", "e2", "e2", new_public)


def test_a_service_with_nowhere_to_go_says_so_and_is_placed_again_later(env: Env) -> None:
    env.engine.set_host_status("e2", "down")
    moved = env.engine.set_host_status("e1", "down")
    assert f"direct connect {env.dx.id} stays on e1 (down): no edge host is up at location 'nyc1'" in moved
    assert any(m.startswith(f"vpn {env.vpn.id} stays on e1 (down): no edge host with public addresses") for m in moved)
    assert env.where()[1:3] == ("e1", "e1")

    env.engine.set_host_status("c2", "down")
    moved = env.engine.set_host_status("c1", "down")
    assert moved[0] == f"dhcp server of {env.vpc.id} stopped on c1 (down): no other up host carries the VPC"
    assert env.where()[0] is None
    assert env.engine.set_host_status("c2", "up")[0] == f"dhcp server of {env.vpc.id} placed on c2"
    assert env.engine.set_host_status("e2", "up")[:1] == [f"direct connect {env.dx.id} moved from e1 to e2"]
    assert env.where()[:3] == ("c2", "e2", "e2")


def test_bad_status_or_host_changes_nothing(env: Env) -> None:
    with pytest.raises(ValidationError) as err:
        env.engine.set_host_status("c1", "sideways")
    assert err.value.first == ("status", "must be 'up' or 'down', got 'sideways'")
    with pytest.raises(NotFoundError, match="host 'nope' not found"):
        env.engine.set_host_status("nope", "down")

    def refuse(tx: Transaction) -> None:
        raise ConflictError("deposed")

    with pytest.raises(ConflictError, match="deposed"):
        env.engine.set_host_status("c1", "down", fence=refuse)
    assert env.status("c1") == "up" and env.where()[0] == "c1"


def test_down_hosts_are_not_pushed_and_fail_fast(env: Env) -> None:
    _, first = env.engine.converge()
    assert first.ok
    env.engine.set_host_status("c1", "down")
    env.engine.create("attachment", {"vpc_id": env.vpc.id, "workload": "w3", "host": "c2", "ip_mode": "dhcp"})
    slow = env.pool.client(next(h for h in env.engine.hosts() if h.name == "c1"))
    slow.faults.extend(HostFailure("c1", "push", "internal", "must not be pushed") for _ in range(5))
    started = time.monotonic()
    _, result = env.engine.converge()
    assert time.monotonic() - started < 2
    failures = {f.host: (f.step, f.code, f.detail) for f in result.failures}
    # c1 lost the DHCP server (moved to c2) but is down: skipped, named, not retried.
    assert failures == {"c1": ("down", "down", "host is down (its agent missed heartbeats); not pushed")}
    assert result.results["c2"].ok and len(slow.faults) == 5
    assert len(env.pool.clients()["c2"].report(1).dhcp_servers) == 1


def test_reregistering_keeps_the_recorded_status_when_asked(env: Env) -> None:
    env.engine.set_host_status("c1", "down")
    doc = {"name": "c1", "region": "r1", "underlay_ip": "10.0.0.1", "agent_address": "10.0.0.1:7000"}
    assert env.engine.register_host(doc, keep_status=True).status == "down"
    assert env.status("c1") == "down"
    assert next(h for h in env.engine.hosts() if h.name == "c1").agent_address == "10.0.0.1:7000"
    env.engine.register_host(doc)  # without: the document's status (default up) wins, as before
    assert env.status("c1") == "up"
