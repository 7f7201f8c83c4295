"""Issue 6 fault test: a network partition of one host (its underlay link down) → the host is
marked down and the services placed on it move; when the link comes back the host is up again
and what moved away is removed from it.

Real everything: a lab of network namespaces with agents on the Linux driver, a controller
process on PostgreSQL. Agents live in their hosts' namespaces and reach the controller over the
underlay (the controller runs in the underlay switch's namespace, see l2vpc/lab/lab.py), and the
controller pushes to them over the underlay too: taking a host's uplink down cuts its
heartbeats, the controller's pushes and its VXLAN traffic at once, as a real partition does.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from l2vpc._proto import agent_pb2 as apb
from l2vpc._proto import controller_pb2 as cpb
from l2vpc.agentapi import wire
from l2vpc.agentapi.channel import open_channel, stub
from l2vpc.controller.auth import create_token
from l2vpc.controller.enrollment import enroll_hosts
from l2vpc.engine.agent_client import engine_tls
from l2vpc.engine.store import open_store
from l2vpc.hostconfig import HostConfig, port_device_name
from l2vpc.lab import netns
from l2vpc.lab.lab import Lab, LabController
from l2vpc.lab.topology import MANAGEMENT_IP, LabTopology
from l2vpc.testing.lab_controller import Controller, Relay, socket_url

from ._api_helpers import Client, make_pki

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")]

PORT = 7700
INTERVAL = 0.5
DOWN_AFTER = 3.0


def wait_for(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.1)


@dataclass
class Site:
    lab: Lab
    client: Client
    admin: str
    tenant: str

    def liveness(self) -> dict[str, str]:
        reply = self.client.call("Status", cpb.StatusRequest(), self.admin)
        return {h.name: h.status for h in reply.hosts}

    def events(self) -> list[str]:
        reply = self.client.call("Status", cpb.StatusRequest(), self.admin)
        return [f"{e.host}: {e.what}" for e in reply.recent]

    def actual(self, host: str) -> HostConfig:
        """What the host's agent runs, asked over its unix socket (not across the underlay)."""
        rec = self.lab.require().host(host)
        assert rec is not None
        with open_channel(rec.address, host, engine_tls(self.lab.pki_dir)) as channel:
            reply: apb.GetStateResponse = stub(channel).GetState(apb.GetStateRequest(), timeout=10)
        return wire.config_from_pb(reply.actual)

    def dhcp_vnis(self, host: str) -> set[int]:
        return {d.vni for d in self.actual(host).dhcp_servers}


@contextlib.contextmanager
def controller_site(db: Any, tmp_path: Path, port: int = PORT, down_after: float = DOWN_AFTER,
                    before_down: Callable[[Lab], None] | None = None) -> Iterator[Site]:
    """A lab of 3 enrolled hosts whose agents (Linux driver) register with a controller process
    on `db`, reached through a relay; `before_down` runs first at teardown (also on failure)."""
    pki = make_pki(tmp_path / "pki")
    topo = LabTopology.build(hosts=3)
    store = open_store(db.url)
    try:
        enroll_hosts(store, topo.host_documents())  # the operator says what each host is
        tokens = {h.name: create_token(store, "agent", host=h.name)[1] for h in topo.hosts}
        admin = create_token(store, "admin")[1]
        tenant = create_token(store, "tenant", tenant="acme")[1]
    finally:
        store.close()
    lab = Lab(str(tmp_path / "state.db"), pki_dir=pki)
    controller: Controller | None = None
    relay: Relay | None = None
    client: Client | None = None
    try:
        lab.up(topo, "linux", controller=LabController(f"{MANAGEMENT_IP}:{port}", pki / "ca.pem", tokens,
                                                       server_name="controller"))
        controller = Controller(lab.switch_netns, socket_url(db), f"{MANAGEMENT_IP}:{port}", pki, tmp_path,
                                controller_id="c1", heartbeat_interval=INTERVAL, down_after=down_after)
        relay = Relay(lab.switch_netns, MANAGEMENT_IP, port)
        # The relay reaches the controller as 127.0.0.1, a name its certificate carries.
        client = Client(relay.address, pki / "ca.pem")
        yield Site(lab, client, admin, tenant)
    finally:
        if before_down is not None:
            before_down(lab)
        if client is not None:
            client.close()
        if relay is not None:
            relay.close()
        if controller is not None:
            controller.stop()
        warnings = lab.down()
        assert not [w for w in warnings if "still carries" not in w], warnings


@pytest.fixture
def site(db: Any, secret_key: str, tmp_path: Path) -> Iterator[Site]:
    with controller_site(db, tmp_path) as s:
        yield s


def converge(site: Site) -> None:
    done = site.client.call("Converge", cpb.ConvergeRequest(timeout_seconds=60), site.tenant, timeout=70)[-1]
    assert done.done and not done.failures, [(f.host, f.step, f.error) for f in done.failures]


def test_device_deleted_by_hand_is_put_back(site: Site) -> None:
    """Drift on a real host reaches the controller through the heartbeat's digest alone."""
    wait_for(lambda: all(site.liveness().get(n) == "up" for n in ("host1", "host2", "host3")), 60, "agents up")
    vpc = site.client.create(site.tenant, "vpc", {"name": "apps", "region": "us-east", "cidr": "10.9.0.0/24"})
    att = site.client.create(site.tenant, "attachment", {"vpc_id": vpc["id"], "workload": "w1", "host": "host2",
                                                         "ip_mode": "static", "ip_address": "10.9.0.11/24"})
    converge(site)
    assert [p.id for p in site.actual("host2").ports] == [att["id"]]
    rec = site.lab.require().host("host2")
    assert rec is not None and rec.netns is not None
    netns.ip("link", "del", port_device_name(att["id"]), netns=rec.netns)  # an operator's mistake
    assert site.actual("host2").ports == ()
    wait_for(lambda: [p.id for p in site.actual("host2").ports] == [att["id"]], 30, "the port recreated")
    # The leader records the repair once the push has returned: a moment after the port is back.
    wait_for(lambda: any(e.startswith("host2: drift repaired") for e in site.events()), 10, "the repair's event")


def test_partitioned_host_is_marked_down_its_services_move_and_it_comes_back(site: Site) -> None:
    names = ["host1", "host2", "host3"]
    wait_for(lambda: all(site.liveness().get(n) == "up" for n in names), 60,
             "every lab agent registered over the underlay")
    vpc = site.client.create(site.tenant, "vpc", {
        "name": "apps", "region": "us-east", "cidr": "10.9.0.0/24",
        "dhcp": {"range_start": "10.9.0.100", "range_end": "10.9.0.200"}})
    for i, host in enumerate(names, start=1):
        site.client.create(site.tenant, "attachment", {"vpc_id": vpc["id"], "workload": f"w{i}", "host": host,
                                                       "ip_mode": "dhcp"})
    converge(site)
    vni = int(vpc["vni"])
    before = site.client.get(site.tenant, "vpc", vpc["id"])["dhcp_host"]
    assert before in names and site.dhcp_vnis(before) == {vni}

    site.lab.set_uplink(before, up=False)
    cut_at = time.monotonic()
    wait_for(lambda: site.liveness().get(before) == "down", DOWN_AFTER + 15, f"{before} marked down")
    assert time.monotonic() - cut_at >= DOWN_AFTER * 0.5  # by missed heartbeats, not at once
    assert all(site.liveness()[n] == "up" for n in names if n != before)
    after = wait_for(lambda: (h := site.client.get(site.tenant, "vpc", vpc["id"])["dhcp_host"]) not in (before, None)
                     and h, 20, "the DHCP server placed on another host")
    wait_for(lambda: site.dhcp_vnis(after) == {vni}, 30, f"dnsmasq for VNI {vni} running on {after}")
    events = site.events()
    assert any(before in e and "down" in e for e in events), events
    assert any("moved" in e for e in events), events
    # The partitioned host still runs its copy (nobody could tell it otherwise).
    assert site.dhcp_vnis(before) == {vni}

    site.lab.set_uplink(before, up=True)
    wait_for(lambda: site.liveness().get(before) == "up", 30, f"{before} up again once healed")
    # Back in touch, the controller removes the server that moved away; the new one stays.
    wait_for(lambda: not site.dhcp_vnis(before), 30, f"the stale DHCP server removed from {before}")
    assert site.dhcp_vnis(after) == {vni}
    assert json.dumps(site.client.get(site.tenant, "vpc", vpc["id"])["dhcp_host"]) == json.dumps(after)
