"""A VPN gateway through LinuxDriver.converge (vpn.py's VpnManager inside the driver), against the
lab's premises VPN gateway on the lab internet: plan, facts, observation, traffic, removal."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from l2vpc.hostconfig import HostConfig, Port, Route, Segment, VpnGateway
from l2vpc.hostconfig.names import vpn_device_name, vpn_netns_name
from l2vpc.lab import netns as labnet
from l2vpc.lab import premises_vpn
from l2vpc.lab.premises import PREMISES_PUBLIC_IP, ROUTER, Premises, internet

from .conftest import Lab
from .test_edge_linux import _processes

pytestmark = pytest.mark.root

PSK = "vpn.psk.test1"
GW = VpnGateway("vpn-1", 700, "10.70.0.2/24", "203.0.113.34/28", "out0", PREMISES_PUBLIC_IP, ("10.70.0.0/24",),
                ("192.168.50.0/24",), "aes256-sha256-modp2048", "aes256-sha256-modp2048",
                outside_gateway="203.0.113.33", psk=PSK, secret_digest="p1")


@pytest.fixture
def vpn_site(lab: Lab, prefix: str, tmp_path: Path) -> Iterator[tuple[Premises, list[str]]]:
    site = Premises(prefix, tmp_path / "premises")
    names: list[str] = []
    try:
        site.build(names.append)
        yield site, names
    finally:
        premises_vpn.teardown(tmp_path / "premises-vpn")
        site.teardown()
        for name in reversed(names):
            labnet.remove(name)


def test_vpn_gateway_converges_carries_traffic_and_goes(lab: Lab, vpn_site: tuple[Premises, list[str]],
                                                      tmp_path: Path) -> None:
    site, names = vpn_site
    edge = lab.add_host()
    internet(f"{site.prefix}inet", [(1, edge.netns)], site, names.append)
    premises_vpn.setup(site.netns(ROUTER), f"{PREMISES_PUBLIC_IP}/24", "192.168.50.0/24", psk=PSK,
                       state_dir=tmp_path / "premises-vpn")
    port = Port("p1", 700, "w1", "net1", "02:00:00:00:70:01", 1500, ip_mode="static", ip_address="10.70.0.11/24",
                routes=(Route("192.168.50.0/24", "10.70.0.2"),))
    cfg = HostConfig(edge.name, edge.underlay_ip, 1, (Segment(700, "vpc-vpn", 1500, ()),), (port,),
                     vpn_gateways=(GW,))
    d = edge.driver()
    r = d.converge(cfg)
    assert r.ok, r.failures
    assert ("create", "vpn_gateways[id=vpn-1]") in [(a.verb, a.path) for a in r.actions]
    assert PSK not in repr(r.actions) and PSK not in str(r.actual.to_dict())

    deadline = time.monotonic() + 5
    while (obs := d.facts().observation("vpn-1")) is None or obs.state != "up":
        assert time.monotonic() < deadline, obs
        time.sleep(0.05)
    assert any(edge.run("w1", "ping", "-c", "1", "-W", "1", "192.168.50.10").returncode == 0 for _ in range(5))
    facts = d.facts()
    assert facts.same_dataplane(cfg) and facts.vpn_gateways[0].psk == PSK  # restored from private state
    assert d.converge(replace(cfg, generation=2)).actions == ()

    # Remote networks change in place (a re-key), the gateway stays where it is.
    wider = replace(GW, remote_cidrs=("192.168.50.0/24", "192.168.51.0/24"))
    r = d.converge(replace(cfg, generation=3, vpn_gateways=(wider,)))
    assert r.ok and [(a.verb, a.path) for a in r.actions] == [("reconfigure", "vpn_gateways[id=vpn-1]")]

    r = d.converge(replace(cfg, generation=4, vpn_gateways=()))
    assert r.ok and [str(a) for a in r.actions] == ["delete vpn_gateways[id=vpn-1]"]
    assert vpn_device_name(GW.id) not in edge.links()
    assert not labnet.exists(vpn_netns_name(edge.prefix, GW.id))
    assert not [c for c in _processes(str(d.state)) if "charon" in c]
    d.teardown()
    assert not (d.state / "vpn").exists() or not any((d.state / "vpn").rglob("*.json"))
