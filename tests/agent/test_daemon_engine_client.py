"""The engine's GrpcAgentPool against real agents (memory driver) over mutual TLS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from l2vpc.engine.agent_client import GrpcAgentPool, engine_tls
from l2vpc.engine.api import Engine
from l2vpc.engine.errors import HostError
from l2vpc.engine.model import Host
from l2vpc.engine.store import open_store
from l2vpc.engine.topology import host_configs
from l2vpc.testing.ports import free_port

from .daemon_helpers import Pki, Running, make_pki, sample, start_agent


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")  # where from_state looks: beside state.db


@pytest.fixture
def agents(tmp_path: Path, pki: Pki) -> Iterator[dict[str, Running]]:
    running = {}
    try:
        for i, name in enumerate(("h1", "h2"), start=1):
            running[name] = start_agent(tmp_path / name, pki.server(name), host=name, underlay=f"10.0.0.{i}")
        yield running
    finally:
        for r in running.values():
            r.stop()


def test_engine_converges_real_agents(tmp_path: Path, agents: dict[str, Running]) -> None:
    state = str(tmp_path / "state.db")
    pool = GrpcAgentPool.from_state(state)
    assert not pool.has_agents()  # no state yet
    store = open_store(state)
    try:
        engine = Engine(store, pool)
        for i, (name, r) in enumerate(agents.items(), start=1):
            engine.register_host({"name": name, "region": "r1", "underlay_ip": f"10.0.0.{i}",
                                  "agent_address": r.address})
        assert pool.has_agents()
        vpc = engine.create("vpc", {"name": "apps", "region": "r1", "cidr": "10.1.0.0/24"})
        for w, h, ip in (("w1", "h1", "10.1.0.11/24"), ("w2", "h2", "10.1.0.12/24")):
            engine.create("attachment", {"vpc_id": vpc.id, "workload": w, "host": h,
                                         "ip_mode": "static", "ip_address": ip})
        _, result = engine.converge()
        assert result.ok, result.failures
        assert set(result.results) == {"h1", "h2"}
        want = host_configs(engine.topology())
        for name, r in agents.items():
            desired, actual = r.agent.state()
            assert actual.same_dataplane(want[name])
            assert desired is not None and desired.generation == result.results[name].generation
        # The reports the engine stored are what the agents run: the next plan is empty.
        assert engine.plan().is_empty
    finally:
        pool.close()
        store.close()


def test_push_errors_are_sorted_for_the_executor(tmp_path: Path, agents: dict[str, Running], pki: Pki) -> None:
    with GrpcAgentPool(engine_tls(tmp_path / "pki")) as pool:
        h1 = Host(name="h1", region="r1", underlay_ip="10.0.0.1", agent_address=agents["h1"].address)
        client = pool.client(h1)
        actual = client.push(sample(3), timeout=5)
        assert actual.same_dataplane(sample(3))
        assert client.report(timeout=5).same_dataplane(sample(3))

        with pytest.raises(HostError) as err:
            client.push(sample(2), timeout=5)
        assert (err.value.host, err.value.step) == ("h1", "stale")
        assert "older than the last accepted generation 3" in err.value.reason

        with pytest.raises(HostError) as err:
            client.push(sample(4, mtu=100), timeout=5)
        assert err.value.step == "validate"
        assert "segments[0].mtu: 100 is outside 576..9000" in err.value.reason

        agents["h1"].driver.fail("ports[id=att-1]", "veth refused")
        with pytest.raises(HostError) as err:
            client.push(sample(5, mtu=1400), timeout=5)  # att-1's MTU changes: its update fails
        assert err.value.step == "converge" and err.value.reason == "ports[id=att-1]: veth refused"
        assert err.value.failure.code == "converge_failed" and not err.value.retryable

        gone = h1.model_copy(update={"agent_address": f"127.0.0.1:{free_port()}"})
        with pytest.raises(HostError, match=r"agent of h1 at 127\.0\.0\.1:\d+: unavailable") as err:
            pool.client(gone).push(sample(6), timeout=2)
        assert err.value.failure.code == "unreachable" and err.value.retryable

        with pytest.raises(HostError, match="no agent address"):
            pool.client(h1.model_copy(update={"agent_address": None})).push(sample(6), timeout=2)

    nopki = GrpcAgentPool(engine_tls(tmp_path / "missing"))
    with pytest.raises(HostError) as err:
        nopki.client(h1).push(sample(6), timeout=2)
    assert err.value.step == "tls" and "l2vpc agent ca" in err.value.reason


def test_executor_retries_an_unreachable_agent_then_reports_it(tmp_path: Path, pki: Pki) -> None:
    state = str(tmp_path / "state.db")
    store = open_store(state)
    pool = GrpcAgentPool.from_state(state)
    try:
        engine = Engine(store, pool)
        engine.register_host({"name": "h1", "region": "r1", "underlay_ip": "10.0.0.1",
                              "agent_address": f"127.0.0.1:{free_port()}"})
        vpc = engine.create("vpc", {"name": "apps", "region": "r1"})
        engine.create("attachment", {"vpc_id": vpc.id, "workload": "w1", "host": "h1"})
        _, result = engine.converge(retries=1, timeout=2)
        r = result.results["h1"]
        assert not r.ok and r.step == "push" and r.attempts == 2
        assert "unavailable" in r.error
    finally:
        pool.close()
        store.close()
