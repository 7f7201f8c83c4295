"""Agents against a real controller (ClusterPlane on PostgreSQL, TLS, tokens): they register,
heartbeat, are converged, have drift repaired, and are marked down when silent.

Agents run in this process: a fleet of simulated hosts behind one server plus one single agent,
each host with its own role-agent token, exactly as `l2vpc agent fleet` / `agent run` wire them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from l2vpc._proto import controller_pb2 as cpb
from l2vpc.agent.daemon import Agent, serve
from l2vpc.agent.drivers.memory import MemoryDriver
from l2vpc.agent.fleet import Fleet, issue_fleet_certificate, serve_fleet
from l2vpc.agent.heartbeat import ControllerLink, ControllerSettings, HeartbeatScheduler, TokenSource
from l2vpc.controller.auth import create_token
from l2vpc.controller.enrollment import enroll_hosts
from l2vpc.controller.server import ControllerHandle
from l2vpc.engine.store import open_store
from l2vpc.pki import CertificateAuthority

from ._api_helpers import Client, make_pki, running_controller

FLEET = 12
INTERVAL = 0.5
DOWN_AFTER = 2.0


def wait_for(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


@dataclass
class Site:
    handle: ControllerHandle
    client: Client
    admin: str
    tenant: str
    fleet: Fleet
    single: Agent
    fleet_beats: HeartbeatScheduler
    single_link: ControllerLink
    settings: ControllerSettings
    solo_beats: HeartbeatScheduler | None = None

    def status(self) -> cpb.StatusReply:
        reply: cpb.StatusReply = self.client.call("Status", cpb.StatusRequest(), self.admin)
        return reply

    def liveness(self) -> dict[str, str]:
        return {h.name: h.status for h in self.status().hosts}

    def converge(self, timeout: float = 30.0) -> cpb.ConvergeEvent:
        events = self.client.call("Converge", cpb.ConvergeRequest(timeout_seconds=timeout), self.tenant,
                                  timeout=timeout + 5)
        assert events and events[-1].done
        done: cpb.ConvergeEvent = events[-1]
        return done

    def agent(self, host: str) -> Agent:
        return self.single if host == "solo" else self.fleet.agents[host]


SOLO = {"name": "solo", "region": "r1", "underlay_ip": "10.50.1.1"}


def fleet_hosts() -> list[dict[str, str]]:
    return [{"name": f"f{i:02d}", "region": "r1", "role": "compute", "underlay_ip": f"10.50.0.{i}"}
            for i in range(1, FLEET + 1)]


@pytest.fixture
def site(db: Any, secret_key: str, tmp_path: Path) -> Iterator[Site]:
    pki = make_pki(tmp_path / "pki")
    ca = CertificateAuthority.load(pki)
    store = open_store(db.url)
    try:
        hosts = fleet_hosts()
        enroll_hosts(store, [*hosts, SOLO])  # the operator says what each host is
        tokens = {h["name"]: create_token(store, "agent", host=h["name"])[1] for h in hosts}
        tokens["solo"] = create_token(store, "agent", host="solo")[1]
        admin = create_token(store, "admin")[1]
        tenant = create_token(store, "tenant", tenant="acme")[1]
    finally:
        store.close()
    stack: list[Callable[[], None]] = []
    try:
        with running_controller(db.url, pki, controller_id="c1", heartbeat_interval=INTERVAL,
                                down_after=DOWN_AFTER, resync_interval=30.0) as handle:
            settings = ControllerSettings((handle.address,), pki / "ca.pem")
            source = TokenSource(tokens)

            fleet = Fleet.open(hosts, tmp_path / "fleet")
            stack.append(fleet.close)
            server, addresses = serve_fleet(fleet, ["127.0.0.1:0"],
                                            issue_fleet_certificate(ca, "fleet1", [h["name"] for h in hosts]))
            stack.append(lambda: server.stop(0).wait())
            links = [ControllerLink(fleet.agents[h["name"]], {**h, "agent_address": addresses[0]}, source)
                     for h in hosts]
            fleet_beats = HeartbeatScheduler(settings, links, per_host_logs=False)
            fleet_beats.start()
            stack.append(fleet_beats.stop)

            single = Agent(MemoryDriver("solo", "10.50.1.1"), tmp_path / "solo", driver_name="memory")
            stack.append(single.close)
            solo_server, solo_address = serve(single, "127.0.0.1:0", ca.issue_server("solo"))
            stack.append(lambda: solo_server.stop(0).wait())
            solo_link = ControllerLink(single, {**SOLO, "agent_address": solo_address}, source)
            client = Client(handle.address, pki / "ca.pem")
            stack.append(client.close)
            s = Site(handle, client, admin, tenant, fleet, single, fleet_beats, solo_link, settings)
            s.solo_beats = HeartbeatScheduler(settings, [solo_link])
            s.solo_beats.start()
            stack.append(lambda: s.solo_beats.stop() if s.solo_beats else None)
            yield s
            for undo in reversed(stack):
                undo()
            stack.clear()
    finally:
        for undo in reversed(stack):
            undo()


def test_agents_register_heartbeat_and_are_converged(site: Site) -> None:
    names = [h["name"] for h in fleet_hosts()] + ["solo"]
    assert site.fleet_beats.wait(lambda s: s.registered == FLEET and s.heartbeats_ok >= FLEET, timeout=30)
    live = wait_for(lambda: (lv := site.liveness()) and all(lv.get(n) == "up" for n in names) and lv,
                    10, "every host up in the controller's status")
    assert set(live) == set(names)

    vpc = site.client.create(site.tenant, "vpc", {"name": "apps", "region": "r1", "cidr": "10.9.0.0/24"})
    wanted = {}
    for i, host in enumerate(names, start=1):
        att = site.client.create(site.tenant, "attachment", {
            "vpc_id": vpc["id"], "workload": f"w{i}", "host": host, "ip_mode": "static",
            "ip_address": f"10.9.0.{10 + i}/24"})
        wanted[host] = att["id"]
    done = site.converge()
    assert not done.failures, [(f.host, f.step, f.error) for f in done.failures]
    for host, att_id in wanted.items():
        _, actual = site.agent(host).state()
        assert [p.id for p in actual.ports] == [att_id], host
        assert {s.vni for s in actual.segments} == {vpc["vni"]}
    # What the heartbeats report now: every host's generations caught up, nothing converging.
    for host in names:
        h = site.agent(host).health()
        assert h.accepted_generation > 0 and h.converged_generation == h.accepted_generation and not h.converging


def test_drift_reported_by_a_heartbeat_is_repaired(site: Site) -> None:
    assert site.fleet_beats.wait(lambda s: s.registered == FLEET, timeout=30)
    vpc = site.client.create(site.tenant, "vpc", {"name": "apps", "region": "r1", "cidr": "10.9.0.0/24"})
    att = site.client.create(site.tenant, "attachment", {"vpc_id": vpc["id"], "workload": "w1", "host": "f03",
                                                         "ip_mode": "static", "ip_address": "10.9.0.11/24"})
    assert not site.converge().failures
    agent = site.fleet.agents["f03"]
    driver = agent.driver
    assert isinstance(driver, MemoryDriver)
    with agent._converge_lock:  # as an operator deleting the device: behind the agent's back
        driver._ports.pop(att["id"])
    generation = agent.accepted_generation
    # Only the heartbeat's digest tells the controller; its leader re-reads the host and pushes.
    wait_for(lambda: [p.id for p in agent.state()[1].ports] == [att["id"]], 15, "the port put back")
    assert agent.accepted_generation > generation
    # The leader records what it did once the round is over: shortly after the push.
    wait_for(lambda: [e.what for e in site.status().recent if e.host == "f03"], 5, "the repair in recent events")


def test_a_silent_host_is_marked_down_and_back_up(site: Site) -> None:
    wait_for(lambda: site.liveness().get("solo") == "up", 30, "solo up")
    assert site.solo_beats is not None
    site.solo_beats.stop()  # the agent goes silent (hung, or cut off)
    silent_at = time.monotonic()
    wait_for(lambda: site.liveness().get("solo") == "down", DOWN_AFTER + 10, "solo marked down")
    assert time.monotonic() - silent_at >= DOWN_AFTER * 0.5
    assert all(v == "up" for k, v in site.liveness().items() if k != "solo")  # the others kept beating
    site.solo_beats = HeartbeatScheduler(site.settings, [site.single_link])
    site.solo_beats.start()
    wait_for(lambda: site.liveness().get("solo") == "up", 10, "solo back up")
