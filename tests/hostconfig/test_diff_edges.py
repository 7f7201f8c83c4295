"""Diffing edge routers and VPN gateways (pure), their drift report, and the memory driver."""

from __future__ import annotations

from dataclasses import replace

import pytest

from l2vpc.agent.drivers import MemoryDriver
from l2vpc.agent.facts import drift
from l2vpc.hostconfig import BgpPeer, EdgeRouter, HostConfig, Observation, Segment, VpnGateway
from l2vpc.hostconfig.diff import Change, diff, steps

SEG = Segment(300, "vpc-dx", 1500, ("10.0.0.2",))
SEG_B = Segment(400, "vpc-other", 1500, ())
BGP = BgpPeer(64512, 65010, "169.254.10.0/31", "169.254.10.1", ("10.30.0.0/24",), md5_key="k3y-one")
DX = EdgeRouter("dx-1", 300, "layer3", "xc0", 1000, gateway_ip="10.30.0.1/24", bgp=BGP, secret_digest="d1")
L2 = EdgeRouter("dx-2", 300, "layer2", "xc1", 2000, vlan=100, circuit_key="mp-key-1", secret_digest="c1")
VPN = VpnGateway("vpn-1", 300, "10.30.0.2/24", "203.0.113.33/28", "out0", "203.0.113.10", ("10.30.0.0/24",),
                 ("192.168.50.0/24",), "aes256-sha256-modp2048", "aes256-sha256-modp2048", psk="secret.psk1",
                 secret_digest="p1")


def cfg(*items: EdgeRouter | VpnGateway, segments: tuple[Segment, ...] = (SEG,)) -> HostConfig:
    return HostConfig("h1", "10.0.0.1", 1, segments,
                      edge_routers=tuple(i for i in items if isinstance(i, EdgeRouter)),
                      vpn_gateways=tuple(i for i in items if isinstance(i, VpnGateway)))


def plan(actual: HostConfig, desired: HostConfig) -> list[Change]:
    """What an agent carries out: the steps of the diff of the normalized configs."""
    return steps(diff(actual.normalized(), desired.normalized()))


def names(actual: HostConfig, desired: HostConfig) -> list[str]:
    return [f"{op.verb} {op.path}" for op in plan(actual, desired)]


def test_create_after_segment_remove_before_segment() -> None:
    ops = plan(cfg(segments=()), cfg(DX, L2, VPN))
    assert [f"{o.verb} {o.path}" for o in ops] == [
        "create segments[vni=300]", "create edge_routers[id=dx-1]", "create edge_routers[id=dx-2]",
        "create vpn_gateways[id=vpn-1]",
    ]
    assert all(o.depends_on == ("segments[vni=300]",) for o in ops[1:])
    assert names(cfg(DX, L2, VPN), cfg(segments=())) == [
        "delete edge_routers[id=dx-1]", "delete edge_routers[id=dx-2]", "delete vpn_gateways[id=vpn-1]",
        "delete segments[vni=300]",
    ]


def test_bandwidth_is_a_live_update_secrets_and_bgp_reconfigure() -> None:
    ops = plan(cfg(DX), cfg(replace(DX, bandwidth_mbps=5000)))
    assert [(o.verb, o.path, o.detail) for o in ops] == [
        ("update", "edge_routers[id=dx-1]", "bandwidth_mbps 1000 -> 5000")]
    assert names(cfg(L2), cfg(replace(L2, vlan=200))) == ["update edge_routers[id=dx-2]"]

    new_key = replace(DX, bgp=replace(BGP, md5_key="k3y-two"), secret_digest="d2")
    ops = plan(cfg(DX), cfg(new_key))
    assert [(o.verb, o.detail) for o in ops] == [("reconfigure", "secret_digest changed")]
    # A secret alone, without a new digest, is invisible: the engine's digest is the contract.
    assert plan(cfg(DX), cfg(replace(DX, bgp=replace(BGP, md5_key="other")))) == []

    both = replace(DX, bandwidth_mbps=2000, bgp=replace(BGP, advertised=("10.30.0.0/24", "10.31.0.0/24")))
    ops = plan(cfg(DX), cfg(both))
    assert [o.verb for o in ops] == ["reconfigure"]
    assert "bgp.advertised" in ops[0].detail and "bandwidth_mbps 1000 -> 2000" in ops[0].detail
    assert "k3y" not in ops[0].detail

    assert names(cfg(L2), cfg(replace(L2, circuit_key="mp-key-2", secret_digest="c2"))) == [
        "reconfigure edge_routers[id=dx-2]"]


@pytest.mark.parametrize("change", [
    {"vni": 400}, {"mode": "layer2", "bgp": None, "gateway_ip": None}, {"handoff": "xc9"}, {"mtu": 9000},
    {"gateway_ip": "10.30.0.9/24"}, {"bgp": replace(BGP, local_ip="169.254.20.0/31", peer_ip="169.254.20.1")},
])
def test_where_an_edge_router_sits_means_recreate(change: dict[str, object]) -> None:
    new = replace(DX, **change)  # type: ignore[arg-type]
    ops = plan(cfg(DX, segments=(SEG, SEG_B)), cfg(new, segments=(SEG, SEG_B)))
    assert [(o.verb, o.path) for o in ops] == [("delete", "edge_routers[id=dx-1]"), ("create", "edge_routers[id=dx-1]")]
    assert ops[0].detail.startswith("replace: ")


def test_vpn_reconfigure_or_recreate() -> None:
    assert names(cfg(VPN), cfg(replace(VPN, remote_cidrs=("192.168.60.0/24",)))) == [
        "reconfigure vpn_gateways[id=vpn-1]"]
    ops = plan(cfg(VPN), cfg(replace(VPN, psk="new.secret.2", secret_digest="p2")))
    assert [(o.verb, o.detail) for o in ops] == [("reconfigure", "secret_digest changed")]
    assert names(cfg(VPN), cfg(replace(VPN, outside_ip="203.0.113.34/28"))) == [
        "delete vpn_gateways[id=vpn-1]", "create vpn_gateways[id=vpn-1]"]


def test_drift_names_fields_but_never_secrets() -> None:
    have = replace(DX, bandwidth_mbps=0, bgp=replace(BGP, md5_key=None))
    out = [str(d) for d in drift(cfg(DX, VPN), cfg(have))]
    assert out == ["edge_routers[id=dx-1].bandwidth_mbps: want 1000, have 0", "vpn_gateways[id=vpn-1]: missing"]
    assert not any("k3y" in line or "secret.psk1" in line for line in out)


def test_memory_driver_records_items_and_observes_them() -> None:
    d = MemoryDriver("h1", "10.0.0.1")
    r = d.converge(cfg(DX, L2, VPN))
    assert r.ok, r.failures
    assert r.actual.same_dataplane(cfg(DX, L2, VPN))
    assert r.actual.edge_routers[0].bgp is not None and r.actual.edge_routers[0].bgp.md5_key == "k3y-one"
    assert [(o.id, o.state) for o in r.actual.observations] == [
        ("dx-1", "established"), ("dx-2", "up"), ("vpn-1", "up")]
    d.observe("dx-1", Observation("dx-1", "down", "BGP session with 169.254.10.1 is Active"))
    obs = d.facts().observation("dx-1")
    assert obs is not None and obs.state == "down"

    r = d.converge(cfg(replace(DX, bandwidth_mbps=3000), L2, VPN))
    assert [(a.verb, a.path) for a in r.actions] == [("update", "edge_routers[id=dx-1]")]
    # The segment under them cannot go while they sit on it, and the plan removes them first.
    r = d.converge(cfg(segments=()))
    assert r.ok and [a.path for a in r.actions][-1] == "segments[vni=300]"
    assert r.actual.edge_routers == () and r.actual.observations == ()


def test_edge_router_on_an_unknown_segment_is_rejected() -> None:
    d = MemoryDriver("h1", "10.0.0.1")
    r = d.converge(cfg(replace(DX, vni=999)))
    assert r.rejected and [f.path for f in r.failures] == ["edge_routers[0].vni"]
