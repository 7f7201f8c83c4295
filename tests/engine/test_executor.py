"""The executor against in-process agents (the real agent on the memory driver) and a real SQLite
store: concurrency, retries, failures, stop."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from l2vpc.agent.local import LocalAgentPool
from l2vpc.engine.api import Engine
from l2vpc.engine.errors import HostError
from l2vpc.engine.executor import Executor
from l2vpc.engine.incremental import IncrementalPlanner
from l2vpc.engine.planner import plan
from l2vpc.engine.store import open_store
from l2vpc.engine.topology import host_configs
from l2vpc.hostconfig import HostConfig
from l2vpc.hostconfig.failures import HostFailed, HostFailure


@pytest.fixture
def engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = open_store(str(tmp_path / "state.db"))
    pool = LocalAgentPool()
    eng = Engine(store, pool)
    for i in range(1, 5):
        eng.register_host({"name": f"host{i}", "region": "r1", "underlay_ip": f"10.9.0.{i}"})
    vpc = eng.create(
        "vpc",
        {
            "name": "v1",
            "region": "r1",
            "cidr": "10.1.0.0/24",
            "dhcp": {"range_start": "10.1.0.100", "range_end": "10.1.0.150"},
        },
    )
    for i in range(1, 5):
        eng.create(
            "attachment",
            {
                "vpc_id": vpc.id,
                "workload": f"w{i}",
                "host": f"host{i}",
                "ip_mode": "static",
                "ip_address": f"10.1.0.{i + 10}/24",
            },
        )
    yield eng
    store.close()


def test_converge_reaches_desired_and_is_idempotent(engine: Engine) -> None:
    _p, result = engine.converge()
    assert result.ok and set(result.results) == {"host1", "host2", "host3", "host4"}
    desired = host_configs(engine.topology())
    actual = engine.actual_configs()
    for name, cfg in desired.items():
        assert actual[name].same_dataplane(cfg)
        assert actual[name].generation >= 1
    # Exactly one DHCP server for the VPC, on one of the carrying hosts.
    assert sum(len(c.dhcp_servers) for c in actual.values()) == 1
    p2, r2 = engine.converge()
    assert p2.is_empty and r2.results == {}


def test_transient_failures_are_retried_then_succeed(engine: Engine) -> None:
    pool = engine.agents
    assert isinstance(pool, LocalAgentPool)
    host = engine.hosts()[0]
    refused = HostFailure("host1", "push", "unreachable", "connection refused")
    pool.client(host).faults = [refused, refused]
    _, result = engine.converge(retries=3)
    r = result.results["host1"]
    assert r.ok and r.attempts == 3


def test_persistent_failure_names_host_and_step_and_keeps_others(engine: Engine) -> None:
    pool = engine.agents
    assert isinstance(pool, LocalAgentPool)
    host2 = next(h for h in engine.hosts() if h.name == "host2")
    pool.client(host2).faults = [HostFailure("host2", "push", "unreachable", "unreachable: refused")] * 10
    _, result = engine.converge(retries=2)
    assert not result.ok
    (failure,) = result.failures
    assert (failure.host, failure.step, failure.code, failure.retryable) == ("host2", "push", "unreachable", True)
    assert result.results["host2"].attempts == 3
    with pytest.raises(HostError, match="host host2: push: unreachable"):
        result.raise_for_failures()
    reports = engine.actual_configs()
    assert "host2" not in reports and {"host1", "host3", "host4"} <= set(reports)
    # Level-triggered: once the host is back, the next run repairs only host2.
    pool.client(host2).faults.clear()
    _p, r = engine.converge()
    assert set(r.results) == {"host2"} and r.ok


def test_rejection_is_not_retried(engine: Engine) -> None:
    pool = engine.agents
    assert isinstance(pool, LocalAgentPool)
    host3 = next(h for h in engine.hosts() if h.name == "host3")
    pool.client(host3).faults = [HostFailure("host3", "validate", "rejected", "ports[0].mtu: 20000 is outside 576..9000")]
    _, result = engine.converge(retries=3)
    r = result.results["host3"]
    assert not r.ok and r.attempts == 1 and r.step == "validate" and "ports[0].mtu" in r.error
    assert r.failure is not None and r.failure.code == "rejected" and not r.failure.retryable


def test_a_config_the_agent_rejects_is_a_typed_failure(engine: Engine) -> None:
    """The in-process agent is the real one: it validates like any agent and says so by code."""
    pool = engine.agents
    assert isinstance(pool, LocalAgentPool)
    host1 = engine.hosts()[0]
    bad = HostConfig("host1", "10.9.0.99")  # not this host's underlay address
    with pytest.raises(HostFailed) as info:
        pool.client(host1).push(bad, 1.0)
    failure = info.value.failure
    assert (failure.step, failure.code, failure.retryable) == ("validate", "rejected", False)
    assert "underlay_ip" in failure.detail


class SlowPool(LocalAgentPool):
    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.active = 0
        self.peak = 0
        self.lock = threading.Lock()

    def client(self, host):  # type: ignore[no-untyped-def]
        agent = super().client(host)
        outer = self
        push = agent.push

        def slow_push(config: HostConfig, timeout: float) -> HostConfig:
            with outer.lock:
                outer.active += 1
                outer.peak = max(outer.peak, outer.active)
            time.sleep(outer.delay)
            with outer.lock:
                outer.active -= 1
            return push(config, timeout)

        agent.push = slow_push  # type: ignore[method-assign]
        return agent


def test_hosts_converge_concurrently_and_stop_is_clean(engine: Engine) -> None:
    pool = SlowPool(0.3)
    topo = engine.topology()
    p = plan(host_configs(topo), {})
    ex = Executor(pool, engine.store)
    t = time.monotonic()
    result = ex.execute(p, topo.hosts)
    assert result.ok and pool.peak == 4 and time.monotonic() - t < 1.0
    # A stop before the run: no host is touched, every result says so.
    stop = threading.Event()
    stop.set()
    pool2 = LocalAgentPool()
    result = Executor(pool2, engine.store, stop=stop).execute(p, topo.hosts)
    assert not result.ok and all(r.step == "stopped" for r in result.results.values())
    assert all(c.driver.applied == [] for c in pool2.clients().values())


def test_incremental_plan_touches_only_affected_hosts(engine: Engine) -> None:
    engine.converge()
    topo = engine.topology()
    inc = IncrementalPlanner(topo, engine.actual_configs())
    att = next(a for a in topo.attachments.values() if a.host == "host3")
    # Same VPC membership: only host3's port changes.
    plans = inc.update_attachment(att.model_copy(update={"ip_address": "10.1.0.99/24"}))
    changed = {h for h, hp in plans.items() if hp.changes}
    assert changed == {"host3"}
    # Removing host3's only port drops it from the VPC: every carrier's remotes change.
    plans = inc.remove_attachment(att.id)
    changed = {h for h, hp in plans.items() if hp.changes}
    assert changed == {"host1", "host2", "host3", "host4"}
    full = plan(host_configs(inc.index.topo), engine.actual_configs())
    assert {h for h, hp in full.hosts.items() if hp.changes} == changed


def test_every_pushed_host_is_recorded_with_its_generation(tmp_path: Path) -> None:
    """Reports are written in groups (whoever holds the writer writes every report waiting):
    with 16 workers pushing 60 hosts, every host's report is in the store when execute
    returns, each with the generation pushed to it."""
    store = open_store(str(tmp_path / "state.db"))
    try:
        eng = Engine(store, LocalAgentPool())
        for i in range(60):
            eng.register_host({"name": f"h{i:02d}", "region": "r1", "underlay_ip": f"10.9.1.{i + 1}"})
        vpc = eng.create("vpc", {"name": "v", "region": "r1", "cidr": "10.1.0.0/24"})
        eng.create_many("attachment", [{"vpc_id": vpc.id, "workload": f"w{i}", "host": f"h{i:02d}"} for i in range(60)])
        _p, result = eng.converge()
        assert result.ok and len(result.results) == 60
        reports = eng.actual_configs()
        assert {h: r.generation for h, r in reports.items()} == {h: r.generation for h, r in result.results.items()}
        assert all(len(reports[h].ports) == 1 for h in reports)
        assert eng.plan().is_empty
    finally:
        store.close()
