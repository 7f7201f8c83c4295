"""The engine's plan: the topology projected onto hosts, the shared diff grouped per host, and
what a plan shows (one line per change, disruptions named)."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from l2vpc.engine.model import VPC, Attachment, Dhcp, Host
from l2vpc.engine.planner import plan
from l2vpc.engine.topology import Topology, host_configs
from l2vpc.hostconfig import BgpPeer, EdgeRouter, HostConfig, Segment, VpnGateway
from l2vpc.hostconfig.diff import apply_changes


def _strip(c: HostConfig) -> HostConfig:
    return dataclasses.replace(c.normalized(), generation=0, labels={})


def _topology(n_hosts: int, placements: list[tuple[int, int]]) -> Topology:
    topo = Topology()
    for i in range(n_hosts):
        topo.hosts[f"h{i}"] = Host(name=f"h{i}", region="r1", underlay_ip=f"10.0.0.{i + 1}")
    for v in range(3):
        vpc = VPC(
            id=f"vpc-{v:04x}",
            name=f"v{v}",
            region="r1",
            cidr=f"10.{v}.0.0/24",
            vni=5000 + v,
            dhcp=Dhcp(range_start=f"10.{v}.0.10", range_end=f"10.{v}.0.20") if v == 0 else None,
        )
        topo.vpcs[vpc.id] = vpc
    for n, (vpc_idx, host_idx) in enumerate(placements):
        a = Attachment(
            id=f"att-{n:04x}",
            vpc_id=f"vpc-{vpc_idx:04x}",
            workload=f"w{n}",
            host=f"h{host_idx}",
            mac_address=f"02:00:00:00:01:{n:02x}",
            interface_name="net1",
        )
        topo.attachments[a.id] = a
    first0 = next((a.host for a in topo.attachments.values() if a.vpc_id == "vpc-0000"), None)
    topo.vpcs["vpc-0000"] = topo.vpcs["vpc-0000"].model_copy(update={"dhcp_host": first0})
    return topo


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 3)), max_size=12),
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 3)), max_size=12),
)
def test_topology_projection_and_plans(pa: list[tuple[int, int]], pb: list[tuple[int, int]]) -> None:
    a, b = host_configs(_topology(4, pa)), host_configs(_topology(4, pb))
    # Head-end replication is symmetric: each carrier lists every other carrier.
    by_ip = {c.underlay_ip: c for c in b.values()}
    for cfg in b.values():
        for seg in cfg.segments:
            for r in seg.remotes:
                peer = next(s for s in by_ip[r].segments if s.vni == seg.vni)
                assert cfg.underlay_ip in peer.remotes
    p = plan(b, a)
    for name, hp in p.hosts.items():
        assert _strip(apply_changes(a.get(name), hp.changes, name, b[name].underlay_ip)) == _strip(
            b[name]
        )
    assert plan(b, b).is_empty


SEG = Segment(300, "vpc-dx", 1500)
DX = EdgeRouter("dx-1", 300, "layer3", "xc0", 1000, gateway_ip="10.30.0.1/24",
                bgp=BgpPeer(64600, 65010, "169.254.10.0/31", "169.254.10.1"))
VPN = VpnGateway("vpn-1", 300, "10.30.0.2/24", "203.0.113.33/28", "out0", "203.0.113.10", ("10.30.0.0/24",),
                 ("192.168.50.0/24",), "aes256-sha256-modp2048", "aes256-sha256-modp2048", psk="secret.psk1")


def _edge_host(*items: EdgeRouter | VpnGateway) -> HostConfig:
    return HostConfig("edge1", "10.0.0.9", segments=(SEG,),
                      edge_routers=tuple(i for i in items if isinstance(i, EdgeRouter)),
                      vpn_gateways=tuple(i for i in items if isinstance(i, VpnGateway)))


def test_plan_shows_the_bgp_sessions_and_tunnels_a_change_drops() -> None:
    """The agent rebuilds an edge router or VPN gateway whose place changes; the plan says so
    (it once showed a harmless update while the session and the tunnel dropped)."""
    before = {"edge1": _edge_host(DX, VPN)}
    moved = {"edge1": _edge_host(dataclasses.replace(DX, gateway_ip="10.30.0.9/24"),
                                 dataclasses.replace(VPN, outside_ip="203.0.113.34/28"))}
    p = plan(moved, before)
    assert [(c.path, c.action, c.disruptive) for _h, c in p.changes()] == [
        ("edge_routers[id=dx-1]", "replace", True), ("vpn_gateways[id=vpn-1]", "replace", True)]
    text = p.render()
    assert "[restarts the BGP session]" in text and "[re-establishes the tunnel]" in text
    assert p.counts() == {"create": 0, "update": 0, "replace": 2, "delete": 0, "disruptive": 2}

    peer = {"edge1": _edge_host(dataclasses.replace(DX, bgp=dataclasses.replace(DX.bgp, peer_asn=65020)), VPN)}
    ((_h, c),) = plan(peer, before).changes()
    assert (c.action, c.how, c.disruptive) == ("update", "reconfigure", True)
    assert "bgp.peer_asn 65010 -> 65020" in plan(peer, before).render()

    faster = {"edge1": _edge_host(dataclasses.replace(DX, bandwidth_mbps=2000), VPN)}
    ((_h, c),) = plan(faster, before).changes()
    assert (c.action, c.how, c.disruptive) == ("update", "live", False)
    assert "[" not in plan(faster, before).render().splitlines()[1]


def test_plan_as_data_names_paths_and_hows() -> None:
    before = {"edge1": _edge_host(DX)}
    after = {"edge1": _edge_host(dataclasses.replace(DX, bandwidth_mbps=2000), VPN)}
    data = plan(after, before).to_dict()
    assert data["summary"] == {"create": 1, "update": 1, "replace": 0, "delete": 0, "disruptive": 0}
    rows = [(c["kind"], c["path"], c["action"], c["how"]) for c in data["hosts"]["edge1"]]
    assert rows == [("edge_router", "edge_routers[id=dx-1]", "update", "live"),
                    ("vpn_gateway", "vpn_gateways[id=vpn-1]", "create", "")]
    assert "secret.psk1" not in str(data)


def test_port_security_pins_the_port_to_its_own_address_and_toggles_in_place() -> None:
    topo = _topology(1, [(0, 0), (1, 0)])
    dhcp, static = topo.attachments["att-0000"], topo.attachments["att-0001"]
    # A DHCP reservation is pinned as the address alone, not its network; allowed ones merged.
    topo.attachments[dhcp.id] = dhcp.model_copy(update={
        "ip_mode": "dhcp", "ip_address": "10.0.0.12/24", "port_security": True,
        "allowed_addresses": ("192.168.1.0/24", "192.168.0.0/24", "10.0.0.12")})
    before = host_configs(topo)["h0"]
    ports = {p.id: p for p in before.ports}
    assert ports[dhcp.id].port_security
    assert ports[dhcp.id].allowed_addresses == ("10.0.0.12/32", "192.168.0.0/23")
    assert not ports[static.id].port_security and ports[static.id].allowed_addresses == ()

    topo.attachments[static.id] = static.model_copy(update={
        "ip_mode": "static", "ip_address": "10.1.0.5/24", "port_security": True})
    after = host_configs(topo)["h0"]
    data = plan({"h0": after}, {"h0": before}).to_dict()
    rows = [(c["path"], c["action"], c["how"], c["disruptive"]) for c in data["hosts"]["h0"]]
    assert rows == [(f"ports[id={static.id}]", "update", "live", False)]
    assert {p.id: p for p in after.ports}[static.id].allowed_addresses == ("10.1.0.5/32",)
