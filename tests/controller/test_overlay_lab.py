"""Issue 12, overlay health by packets: a jumbo VPC (MTU 9000) across two lab hosts; the underlay
switch's port towards host2 gets a 1500 MTU (jumbo frames dropped silently, pings still pass) →
within ~10 s the VPC is degraded, naming the pair and the measured path MTU, in the VPC's status,
`l2vpc controller status` (text and JSON), the controller's /metrics and its status page (loaded
by headless Chromium); the MTU restored → healthy again.

Real everything: namespaces, agents on the Linux driver probing each other over the underlay, a
controller process on PostgreSQL recording what they report (as test_agents_partition.py).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from l2vpc._proto import controller_pb2 as cpb
from l2vpc.cli import main
from l2vpc.controller.auth import create_token
from l2vpc.controller.enrollment import enroll_hosts
from l2vpc.engine.store import open_store
from l2vpc.lab.lab import Lab, LabController
from l2vpc.lab.topology import MANAGEMENT_IP, LabTopology
from l2vpc.testing.lab_controller import Controller, Relay, socket_url
from l2vpc.testing.scrape import get, samples

from ._api_helpers import Client, make_pki
from ._browser_helpers import CHROMIUM, Rows, chromium
from ._plane_helpers import wait_for

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")]

PORT = 7701
METRICS_PORT = 7702  # on loopback in the switch namespace: the status page needs no token there
INTERVAL = 0.5
LOWERED = 1500
DETECT_WITHIN = 10.0


class Site:
    def __init__(self, lab: Lab, client: Client, admin: str, tenant: str, relay: str, pki: Path,
                 token_file: Path, metrics: str) -> None:
        self.lab, self.client, self.admin, self.tenant = lab, client, admin, tenant
        self.relay, self.pki, self.token_file = relay, pki, token_file
        self.metrics = metrics  # http://... of the controller's metrics listener

    def degraded_pairs(self) -> dict[str, float]:
        """l2vpc_overlay_degraded_pairs by reason, as the controller's /metrics says now."""
        return {dict(labels)["reason"]: v for (name, labels), v in samples(self.metrics).items()
                if name == "l2vpc_overlay_degraded_pairs"}

    def status(self) -> cpb.StatusReply:
        return self.client.call("Status", cpb.StatusRequest(), self.admin)

    def cli_status(self, capsys: Any, *extra: str) -> str:
        capsys.readouterr()
        assert main(["controller", "status", "--endpoint", self.relay, "--token-file", str(self.token_file),
                     "--ca", str(self.pki / "ca.pem"), *extra]) == 0
        return str(capsys.readouterr().out)


@pytest.fixture
def site(db: Any, secret_key: str, tmp_path: Path) -> Iterator[Site]:
    pki = make_pki(tmp_path / "pki")
    topo = LabTopology.build(hosts=2)
    store = open_store(db.url)
    try:
        enroll_hosts(store, topo.host_documents())  # the operator says what each host is
        tokens = {h.name: create_token(store, "agent", host=h.name)[1] for h in topo.hosts}
        admin = create_token(store, "admin")[1]
        tenant = create_token(store, "tenant", tenant="acme")[1]
    finally:
        store.close()
    token_file = tmp_path / "admin.token"
    token_file.write_text(admin + "\n")
    token_file.chmod(0o600)
    lab = Lab(str(tmp_path / "state.db"), pki_dir=pki)
    controller: Controller | None = None
    relay: Relay | None = None
    metrics: Relay | None = None
    client: Client | None = None
    try:
        lab.up(topo, "linux", controller=LabController(f"{MANAGEMENT_IP}:{PORT}", pki / "ca.pem", tokens,
                                                       server_name="controller"))
        controller = Controller(lab.switch_netns, socket_url(db), f"{MANAGEMENT_IP}:{PORT}", pki, tmp_path,
                                controller_id="c1", heartbeat_interval=INTERVAL, down_after=3.0,
                                metrics_address=f"127.0.0.1:{METRICS_PORT}")
        relay = Relay(lab.switch_netns, MANAGEMENT_IP, PORT)
        metrics = Relay(lab.switch_netns, "127.0.0.1", METRICS_PORT)
        client = Client(relay.address, pki / "ca.pem")
        yield Site(lab, client, admin, tenant, relay.address, pki, token_file, f"http://{metrics.address}")
    finally:
        if client is not None:
            client.close()
        for r in (relay, metrics):
            if r is not None:
                r.close()
        if controller is not None:
            controller.stop()
        warnings = lab.down()
        assert not [w for w in warnings if "still carries" not in w], warnings


def test_a_smaller_underlay_mtu_degrades_the_jumbo_vpc_naming_pair_and_mtu_then_heals(site: Site, capsys: Any,
                                                                                       tmp_path: Path) -> None:
    wait_for(lambda: {h.name: h.status for h in site.status().hosts} == {"host1": "up", "host2": "up"}, 60,
             "both lab agents registered over the underlay")
    vpc = site.client.create(site.tenant, "vpc", {"name": "jumbo", "region": "us-east", "mtu": 9000})
    small = site.client.create(site.tenant, "vpc", {"name": "small", "region": "us-east", "mtu": 1400})
    for v in (vpc, small):
        for i in (1, 2):
            site.client.create(site.tenant, "attachment", {"vpc_id": v["id"], "workload": f"{v['name']}{i}",
                                                           "host": f"host{i}"})
    done = site.client.call("Converge", cpb.ConvergeRequest(timeout_seconds=60), site.tenant, timeout=70)[-1]
    assert done.done and not done.failures

    time.sleep(4.0)  # several probe rounds: a healthy underlay stays healthy
    assert list(site.status().overlay) == []
    assert site.client.get(site.tenant, "vpc", vpc["id"])["status"] == "available"
    assert "overlay: healthy" in site.cli_status(capsys)
    assert site.degraded_pairs() == {"path_mtu": 0, "peer_not_responding": 0}

    site.lab.set_uplink_mtu("host2", LOWERED)
    try:
        lowered = time.monotonic()
        pairs = wait_for(lambda: list(site.status().overlay), 3 * DETECT_WITHIN, "the VPC degraded", step=0.1)
        took = time.monotonic() - lowered
        print(f"overlay degraded detected in {took:.1f}s")
        # Both directions cross the lowered port: each host reports its own side of the pair.
        assert {(p.vpc, p.host, p.peer_host, p.reason) for p in pairs} <= {
            ("jumbo", "host1", "host2", "path_mtu"), ("jumbo", "host2", "host1", "path_mtu")}, pairs
        # A veth takes frames up to its MTU + 4 (room for a VLAN tag): 1504 passes into the
        # switch, towards host2 the bridge holds to 1500.
        for p in pairs:
            assert LOWERED <= p.path_mtu <= LOWERED + 4 and p.needed_mtu == 9050, p
        assert took <= DETECT_WITHIN, f"degraded after {took:.1f}s (target {DETECT_WITHIN:g}s)"
        # The 1400 VPC's frames (1450 on the underlay) still fit: it is not degraded.
        assert site.client.get(site.tenant, "vpc", vpc["id"])["status"] == "degraded"
        assert site.client.get(site.tenant, "vpc", small["id"])["status"] == "available"
        detail = site.client.call("StatusDetail", cpb.StatusDetailRequest(kind="vpc", id=vpc["id"]), site.tenant)
        assert detail.reason == "path_mtu" and "host2" in detail.detail, detail
        assert re.search(r"underlay path MTU 150[0-4] < 9050 needed", detail.detail), detail
        text = site.cli_status(capsys)
        assert "overlay: degraded: jumbo" in text
        assert re.search(r"vpc jumbo degraded: host(1 -> host2|2 -> host1): underlay path MTU 150[0-4] < 9050 needed",
                         text), text
        data = json.loads(site.cli_status(capsys, "--json"))
        assert {o["vpc"] for o in data["overlay"]} == {"jumbo"}, data["overlay"]
        assert all(LOWERED <= o["path_mtu"] <= LOWERED + 4 for o in data["overlay"]), data["overlay"]

        # Each host reports its side once its own probes have been judged: wait for both, then
        # the controller's metrics count the same rows (read at scrape time, cached ~1 s).
        pairs = wait_for(lambda: [p for p in site.status().overlay if p.reason == "path_mtu"]
                         if len(site.status().overlay) == 2 else [], DETECT_WITHIN, "both sides of the pair")
        wait_for(lambda: site.degraded_pairs() == {"path_mtu": 2, "peer_not_responding": 0}, 5,
                 "l2vpc_overlay_degraded_pairs on /metrics")
        assert samples(site.metrics)[("l2vpc_overlay_degraded_vpcs", ())] == 1
        if CHROMIUM is not None:  # the status page as a browser renders it
            dom = chromium("--dump-dom", f"{site.metrics}/status", profile=tmp_path / "chrome")
            assert dom.returncode == 0, dom.stderr[-2000:]
            page = Rows()
            page.feed(dom.stdout)
            rows = [r for r in page.rows if "data-pair" in r]
            assert sorted((r["data-overlay-vpc"], r["data-pair"], r["data-status"]) for r in rows) == [
                ("jumbo", "host1|host2", "degraded"), ("jumbo", "host2|host1", "degraded")], rows
            vpcs = {r["data-vpc"]: r["data-status"] for r in page.rows if "data-vpc" in r}
            assert vpcs == {"jumbo": "degraded", "small": "available"}, vpcs
            text = " ".join(page.text)
            assert re.search(r"\b150[0-4]\b", text) and "9050" in text, text
    finally:
        site.lab.set_uplink_mtu("host2", None)
    wait_for(lambda: not list(site.status().overlay), 30, "the VPC healthy again")
    assert site.client.get(site.tenant, "vpc", vpc["id"])["status"] == "available"
    assert "overlay: healthy" in site.cli_status(capsys)
    wait_for(lambda: site.degraded_pairs() == {"path_mtu": 0, "peer_not_responding": 0}, 5, "metrics healthy")
    status, body = get(f"{site.metrics}/status")
    assert status == 200 and "Every probed pair is healthy" in body and 'data-pair=' not in body
