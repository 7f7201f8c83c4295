"""Direct connects applied through the provider on real daemons: BGP, routes, shaping, VLAN tags.

Layer 3: edge1's FRR peers with the premises router over the cross-connect; the learned
premises LAN reaches the workload as a route via the direct connect's gateway_ip. Layer 2: the
VPC is bridged to the cross-connect, tagged 802.1Q by a tc-BPF program on the hand-off.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from l2vpc.agent.drivers.linux import frr
from l2vpc.agent.drivers.linux import netns as nsmod
from l2vpc.hostconfig.names import edge_tag, edge_vpc_veth, router_netns_name
from l2vpc.lab.premises import Premises, PremisesConfig, render_router
from l2vpc.testing.capture import Capture
from l2vpc.testing.gateway_probes import Probe, UdpCatcher, answers, mac_of, send_forged_udp
from l2vpc.testing.leftovers import processes_mentioning

from .conftest import EdgeLab, MakeWorkspace, iperf_mbps

pytestmark = [pytest.mark.root, pytest.mark.terraform]

PREMISES_LAN, PREMISES_HOST = "192.168.50.0/24", "192.168.50.10"
CUSTOMER_IP = "169.254.10.2"  # the premises router's address on edge1's cross-connect
LATE_UPDATE_MS = 4000

LAYER3 = """
variable "bandwidth" {
  type = number
}

resource "l2vpc_vpc" "dx" {
  name = "edge-dx"
  cidr = "10.81.0.0/24"
}

resource "l2vpc_direct_connect" "dx" {
  name           = "edge-dx"
  vpc_id         = l2vpc_vpc.dx.id
  location       = "nyc1"
  bandwidth_mbps = var.bandwidth
  bgp = {
    customer_asn = 65010
    peering_cidr = "169.254.10.0/30"
    customer_ip  = "169.254.10.2"
    provider_ip  = "169.254.10.1"
  }
}
"""

WORKLOAD = """
resource "l2vpc_attachment" "w" {
  vpc_id     = l2vpc_vpc.dx.id
  workload   = "dxw1"
  ip_mode    = "static"
  ip_address = "10.81.0.10/24"
}
"""

LAYER2 = """
variable "vlan" {
  type = number
}

resource "l2vpc_vpc" "flat" {
  name = "edge-flat"
  cidr = "10.82.0.0/24"
  dhcp = {
    range_start = "10.82.0.100"
    range_end   = "10.82.0.199"
  }
}

resource "l2vpc_attachment" "w" {
  vpc_id     = l2vpc_vpc.flat.id
  workload   = "flatw1"
  ip_mode    = "static"
  ip_address = "10.82.0.10/24"
}

resource "l2vpc_direct_connect" "flat" {
  name           = "edge-flat"
  vpc_id         = l2vpc_vpc.flat.id
  location       = "nyc1"
  bandwidth_mbps = 1000
  mode           = "layer2"
  vlan           = var.vlan
}
"""


def bgp_neighbor(router: frr.Router, peer: str) -> dict[str, object]:
    data: dict[str, dict[str, object]] = json.loads(router.command("bgpd", f"show bgp neighbors {peer} json"))
    return data[peer]


def edge_devices(lab: EdgeLab, tag: str) -> list[str]:
    """edge1's devices of the direct connect with device tag `tag` (l2eb/l2eh/l2ev<tag>)."""
    out = subprocess.run(["ip", "-n", lab.edge_netns, "-o", "link", "show"], capture_output=True, text=True,
                         check=True).stdout
    return [m for m in re.findall(r"^\d+: ([^:@]+)", out, re.M) if m.endswith(tag)]


def within(measured: float, cap: float, tolerance: float = 0.10) -> bool:
    return abs(measured - cap) <= tolerance * cap


def test_layer3_bgp_route_ping_bandwidth_in_place_and_destroy(edge_lab: EdgeLab, workspace: MakeWorkspace) -> None:
    lab, ws = edge_lab, workspace("layer3")
    ws.write(LAYER3, bandwidth=1000)
    ws.apply()
    dx = ws.resource("l2vpc_direct_connect.dx")
    assert dx["status"] == "active"
    gateway = dx["gateway_ip"]
    # The premises LAN, learned over BGP, is pushed to a workload via the edge router. (The
    # workload comes in a second apply: in the same one it may miss the route, see
    # test_route_reaches_the_workload_when_the_premises_announces_late.)
    ws.write(LAYER3 + WORKLOAD, bandwidth=1000)
    ws.apply()
    route = lab.exec("dxw1", "ip", "-4", "route", "show", PREMISES_LAN).stdout
    assert re.search(rf"^{re.escape(PREMISES_LAN)} via {re.escape(gateway)} dev net1", route, re.M), route
    assert lab.ping("dxw1", PREMISES_HOST, tries=5)

    # The lab shapes at a tenth: 1000 Mbps is 100 Mbit/s.
    scale = lab.st.bandwidth_scale
    before = iperf_mbps(lab, "dxw1", "premises-host", PREMISES_HOST)
    assert within(before, 1000 * scale), f"{before:.1f} Mbit/s at a {1000 * scale:.0f} Mbit/s cap"

    tag = edge_tag(dx["id"])
    router_ns = router_netns_name(lab.edge.prefix, dx["id"])
    router = frr.Router(router_ns, lab.driver_dir / "edges" / tag, nsmod.path(router_ns))
    session = bgp_neighbor(router, CUSTOMER_IP)
    assert session["bgpState"] == "Established"
    # The router answers the VPC nothing (bgpd listens on the peering address only), the
    # hand-off nothing but BGP, and forged sources on the hand-off do not reach the VPC.
    probes = [Probe(lab.netns("dxw1"), "tcp", gateway, 179), Probe(lab.netns("premises-router"), "tcp", "169.254.10.1", 22)]
    assert answers(probes) == {}
    with UdpCatcher(lab.netns("dxw1"), 40001) as catch:
        send_forged_udp(lab.netns("premises-l2"), "eth0", mac_of(router_ns, "dx0"), "10.81.0.99", "10.81.0.10", 40001)
        assert catch.received() == []

    ws.write(LAYER3 + WORKLOAD, bandwidth=2000)
    changed = ws.apply()
    assert "# l2vpc_direct_connect.dx will be updated in-place" in changed.output
    assert re.search(r"~ bandwidth_mbps += 1000 -> 2000", changed.output), changed.output
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in changed.output
    assert ws.resource("l2vpc_direct_connect.dx")["status"] == "active"
    # Both directions get the new rate (a shaper on each end of the hand-off).
    towards = iperf_mbps(lab, "dxw1", "premises-host", PREMISES_HOST)
    back = iperf_mbps(lab, "dxw1", "premises-host", PREMISES_HOST, reverse=True)
    cap = 2000 * scale
    assert within(towards, cap) and within(back, cap), f"{towards:.1f} / {back:.1f} Mbit/s at a {cap:.0f} Mbit/s cap"
    # The session was never reset by the change.
    after = bgp_neighbor(router, CUSTOMER_IP)
    keys = ("bgpState", "connectionsEstablished", "connectionsDropped")
    assert {k: after[k] for k in keys} == {k: session[k] for k in keys}
    assert int(str(after["bgpTimerUpMsec"])) > int(str(session["bgpTimerUpMsec"]))

    assert processes_mentioning(router_ns), "FRR of the direct connect should run before the destroy"
    ws.destroy()
    assert processes_mentioning(router_ns) == []
    assert router_ns not in nsmod.list_names()
    assert not (lab.driver_dir / "edges" / tag).exists()
    assert not (frr.RUN_BASE / router_ns).exists()
    assert edge_devices(lab, tag) == []


def route_to(lab: EdgeLab, workload: str, prefix: str, timeout: float) -> str:
    """The workload's route to `prefix` ('' if none comes within `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        route = lab.exec(workload, "ip", "-4", "route", "show", prefix).stdout.strip()
        if route or time.monotonic() > deadline:
            return route
        time.sleep(0.2)


def test_route_reaches_the_workload_when_the_premises_announces_late(edge_lab: EdgeLab,
                                                                    workspace: MakeWorkspace) -> None:
    """The workload and the direct connect in one apply, the customer router announcing its LAN
    a few seconds after the session comes up (its update coalescing timer, as busy routers do).

    Without the delay the same race hits about one apply in ten on a loaded machine: the
    provider's settle sees `established` with nothing learned yet, pushes no route, and nothing
    pushes one later (edge1 then reports the prefix, the workload never gets it)."""
    lab, ws = edge_lab, workspace("late")
    config = PremisesConfig()  # what the lab's premises router runs
    site = Premises(lab.st.prefix, Path(lab.st.dir) / "premises", config)
    normal = render_router(config)
    late = normal.replace(f" coalesce-time {frr.COALESCE_MS}\n", f" coalesce-time {LATE_UPDATE_MS}\n")
    assert late != normal
    site.router.reconfigure(late)
    try:
        ws.write(LAYER3 + WORKLOAD, bandwidth=1000)
        ws.apply()
        dx = ws.resource("l2vpc_direct_connect.dx")
        assert dx["status"] == "active"
        deadline = time.monotonic() + 10
        while not lab.learned(dx["id"]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert lab.learned(dx["id"]) == (PREMISES_LAN,)  # BGP delivered it to edge1 ...
        route = route_to(lab, "dxw1", PREMISES_LAN, timeout=3)
        assert route.startswith(f"{PREMISES_LAN} via {dx['gateway_ip']}"), route  # ... and to the workload?
    finally:
        site.router.reconfigure(normal)


def dhcp_lease(lab: EdgeLab, tries: int = 2) -> str | None:
    """The address premises-l2 is offered (udhcpc, leaving the interface alone), None without one."""
    out = lab.exec("premises-l2", "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-t", str(tries), "-T", "1",
                   "-s", "/bin/true")
    m = re.search(r"lease of (\S+) obtained", out.stdout + out.stderr)
    return m.group(1) if m else None


def test_layer2_vlan_lease_tag_on_the_wire_and_wrong_tag_dropped(edge_lab: EdgeLab,
                                                                 workspace: MakeWorkspace) -> None:
    lab, ws = edge_lab, workspace("layer2")
    l2_mac = json.loads(lab.exec("premises-l2", "ip", "-j", "link", "show", "eth0").stdout)[0]["address"]
    cross_connect = f"{lab.st.prefix}xc1"  # the switch of edge1's xc0, premises-router and premises-l2
    address: str | None = None
    try:
        ws.write(LAYER2, vlan=120)
        ws.apply()
        dx = ws.resource("l2vpc_direct_connect.flat")
        assert dx["status"] == "active"
        tag = edge_tag(dx["id"])

        # A frame with the wrong tag stops at the edge: nothing of premises-l2 enters the VPC.
        lab.lab.premises_vlan(121)
        with Capture(lab.edge_netns, edge_vpc_veth(tag), f"ether src {l2_mac}") as inside:
            assert dhcp_lease(lab) is None
        assert inside.lines == []

        lab.lab.premises_vlan(120)
        with Capture(cross_connect, "edge") as wire, Capture(lab.edge_netns, edge_vpc_veth(tag),
                                                             f"ether src {l2_mac}") as inside:
            address = dhcp_lease(lab)
        assert address is not None and address.startswith("10.82.0.")
        dhcp = [line for line in wire.lines if "BOOTP/DHCP" in line]
        # Both ways tagged on the cross-connect; the reply was tagged by the edge.
        assert any("Request from" in line for line in dhcp) and any("Reply" in line for line in dhcp), wire.lines
        assert all("vlan 120," in line for line in dhcp), dhcp
        # Inside the VPC the tag is gone.
        assert inside.lines and not any("802.1Q" in line for line in inside.lines), inside.lines

        # The premises machine is in the VPC's subnet: it reaches a workload directly.
        assert lab.exec("premises-l2", "ip", "addr", "add", f"{address}/24", "dev", "eth0").returncode == 0
        assert lab.ping("premises-l2", "10.82.0.10", tries=3)

        # A new tag in place: the old one is now wrong.
        ws.write(LAYER2, vlan=130)
        changed = ws.apply()
        assert "# l2vpc_direct_connect.flat will be updated in-place" in changed.output
        assert re.search(r"~ vlan += 120 -> 130", changed.output), changed.output
        assert not lab.ping("premises-l2", "10.82.0.10")
        assert dhcp_lease(lab) is None
        lab.lab.premises_vlan(130)
        assert dhcp_lease(lab) == address
        assert lab.ping("premises-l2", "10.82.0.10", tries=3)

        ws.destroy()
        assert edge_devices(lab, tag) == []
        assert not (lab.driver_dir / "edges" / tag).exists()
    finally:
        lab.lab.premises_vlan(None)
        if address is not None:
            lab.exec("premises-l2", "ip", "addr", "flush", "dev", "eth0")

