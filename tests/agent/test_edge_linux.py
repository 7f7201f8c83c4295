"""Direct connects on the Linux driver, with real FRR, tc and tc-BPF against a premises site.

Hosts come from the agent lab fixture (namespaces on an underlay); the premises site (a
customer router running FRR, a LAN host, a layer-2 customer machine) and the cross-connect
come from l2vpc.lab.premises, built with this test's prefix and removed afterwards.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from l2vpc.agent.drivers.linux import LinuxDriver, frr, gateway_filter
from l2vpc.agent.drivers.linux import netns as nsmod
from l2vpc.hostconfig import BgpPeer, DhcpServer, EdgeRouter, HostConfig, Observation, Port, Route, Segment
from l2vpc.hostconfig.names import edge_tag, edge_vpc_veth, handoff_veth, router_netns_name
from l2vpc.lab import netns as labnet
from l2vpc.lab.premises import HOST, L2, ROUTER, Premises, cross_connect
from l2vpc.testing.capture import Capture
from l2vpc.testing.gateway_probes import Probe, UdpCatcher, answers, mac_of, send_forged_udp

from .conftest import Host, Lab, sh

pytestmark = pytest.mark.root

SCALE = 0.1  # 1000 Mbps -> a 100 Mbit/s shaper, which iperf3 between namespaces can fill
VNI = 300
GATEWAY = "10.30.0.1/24"
BGP = BgpPeer(64512, 65010, "169.254.10.0/31", "169.254.10.1", ("10.30.0.0/24",))
DX = EdgeRouter("dx-1", VNI, "layer3", "xc0", 1000, gateway_ip=GATEWAY, bgp=BGP)
LAN_ROUTE = Route("192.168.50.0/24", "10.30.0.1")
PREMISES_HOST = "192.168.50.10"


@dataclass
class Site:
    premises: Premises
    namespaces: list[str] = field(default_factory=list)

    def connect(self, host: Host, index: int = 1) -> None:
        cross_connect(self.switch(index), index, host.netns, self.premises, self.namespaces.append)

    def switch(self, index: int = 1) -> str:
        return f"{self.premises.prefix}xc{index}"

    def run(self, name: str, *cmd: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.premises.netns(name), *cmd, check=False, timeout=timeout)


@pytest.fixture
def site(lab: Lab, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setenv("L2VPC_BANDWIDTH_SCALE", str(SCALE))
    s = Site(Premises(prefix, tmp_path / "premises"))
    try:
        s.premises.build(s.namespaces.append)
        yield s
    finally:
        s.premises.teardown()
        for name in reversed(s.namespaces):
            labnet.remove(name)
        # The premises' own; the hosts' routers are the lab fixture's, torn down after this one.
        ours = f"{prefix}premises-"
        left = [p for p in _processes(ours)]
        assert not left, f"processes left: {left}"
        assert not [p.name for p in frr.RUN_BASE.glob(f"{ours}*")], "FRR run dirs left"


def _processes(marker: str) -> list[str]:
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmd:
            out.append(cmd.replace(b"\0", b" ").decode(errors="replace"))
    return out


def wait_observation(d: LinuxDriver, ident: str, pred: Callable[[Observation], bool],
                     timeout: float = 8.0) -> Observation | None:
    deadline = time.monotonic() + timeout
    while True:
        obs = d.facts().observation(ident)
        if obs is not None and pred(obs):
            return obs
        if time.monotonic() > deadline:
            return obs
        time.sleep(0.05)


def established(o: Observation) -> bool:
    return o.state == "established" and bool(o.learned)


def ping(h: Host, workload: str, target: str, tries: int = 10) -> bool:
    for _ in range(tries):
        if h.run(workload, "ping", "-c", "1", "-W", "1", target).returncode == 0:
            return True
        time.sleep(0.1)
    return False


def layer3_configs(edge: Host, other: Host | None, dx: EdgeRouter = DX, generation: int = 1
                   ) -> tuple[HostConfig, HostConfig | None]:
    """The edge host runs the direct connect; the workload sits on `other` (or the edge host)."""
    port = Port("p1", VNI, "w1", "net1", "02:00:00:00:30:01", 1500, ip_mode="static", ip_address="10.30.0.11/24",
                routes=(LAN_ROUTE,))
    if other is None:
        seg = Segment(VNI, "vpc-dx", 1500, ())
        return HostConfig(edge.name, edge.underlay_ip, generation, (seg,), (port,), edge_routers=(dx,)), None
    return (
        HostConfig(edge.name, edge.underlay_ip, generation, (Segment(VNI, "vpc-dx", 1500, (other.underlay_ip,)),),
                   edge_routers=(dx,)),
        HostConfig(other.name, other.underlay_ip, generation, (Segment(VNI, "vpc-dx", 1500, (edge.underlay_ip,)),),
                   (port,)),
    )


def layer3_established(lab: Lab, site: Site) -> tuple[Host, LinuxDriver, HostConfig]:
    """A new edge host running the direct connect and its workload, BGP established."""
    edge = lab.add_host()
    site.connect(edge)
    site.premises.set_peering(1, ["169.254.10.1/31"])
    d = edge.driver()
    cfg, _ = layer3_configs(edge, None)
    assert d.converge(cfg).ok
    obs = wait_observation(d, DX.id, established)
    assert obs is not None and established(obs), obs
    return edge, d, cfg


def assert_gone(d: LinuxDriver, edge: Host, prefix: str) -> None:
    d.teardown()
    tag = edge_tag(DX.id)
    assert not [n for n in edge.links() if n.startswith("l2e")], edge.links()
    assert not labnet.exists(router_netns_name(edge.prefix, DX.id))
    assert not (d.state / "edges" / tag).exists()
    assert not [c for c in _processes(edge.prefix) if "frr" in c]
    assert not (frr.RUN_BASE / router_netns_name(edge.prefix, DX.id)).exists()
    assert "xc0" in edge.links()  # the hand-off is the host's; it stays


def test_layer3_session_routes_traffic_and_md5(lab: Lab, site: Site, prefix: str) -> None:
    edge, compute = lab.add_host(), lab.add_host()
    site.connect(edge)
    site.premises.set_peering(1, ["169.254.10.1/31"])
    d_edge, d_compute = edge.driver(), compute.driver()
    c_edge, c_compute = layer3_configs(edge, compute)
    assert c_compute is not None

    started = time.monotonic()
    r = d_edge.converge(c_edge)
    assert r.ok, r.failures
    assert [str(a) for a in r.actions] == ["create segments[vni=300]", "create edge_routers[id=dx-1]"]
    assert d_compute.converge(c_compute).ok
    obs = wait_observation(d_edge, DX.id, established)
    assert obs is not None and established(obs), obs
    assert obs.learned == ("192.168.50.0/24",)
    assert time.monotonic() - started < 5, "BGP took longer than 5 s to establish"
    assert ping(compute, "w1", PREMISES_HOST)  # VPC -> gateway_ip -> BGP route -> premises LAN
    assert site.run(HOST, "ping", "-c", "1", "-W", "2", "10.30.0.11").returncode == 0  # and back

    facts = d_edge.facts()
    assert facts.same_dataplane(c_edge) and facts.edge_routers == c_edge.edge_routers
    assert d_edge.converge(replace(c_edge, generation=2)).actions == ()

    # MD5: we sign, the customer does not: no session. The key never shows in what we report.
    key = "Tr0ub4dor-3"
    signed = replace(DX, bgp=replace(BGP, md5_key=key), secret_digest="md5-1")
    r = d_edge.converge(replace(c_edge, generation=3, edge_routers=(signed,)))
    assert r.ok and [(a.verb, a.path) for a in r.actions] == [("reconfigure", "edge_routers[id=dx-1]")]
    assert key not in repr(r) and key not in json.dumps(r.actual.to_dict())
    # Two connect retries (1 s apart) fail; then the report says why.
    obs = wait_observation(d_edge, DX.id, lambda o: "no answer from the peer" in o.detail, timeout=15)
    assert obs is not None and obs.state == "down" and "BGP session with 169.254.10.1 is" in obs.detail, obs
    assert key not in obs.detail
    # What was seen and the likely causes, in the operator's words, not FRR's state name.
    assert "no answer from the peer" in obs.detail and "MD5 password as bgp.md5_key" in obs.detail, obs.detail
    assert "bgp.customer_asn" in obs.detail and not re.search(r"\b(Idle|Connect|Active|OpenSent)\b", obs.detail)

    site.premises.set_md5(key)
    # The customer's bgpd restarts and must learn its LAN from zebra again before it announces
    # it: about 1 s here, once over 8 s on a machine loaded 2.5x per core.
    obs = wait_observation(d_edge, DX.id, established, timeout=20)
    assert obs is not None and established(obs), obs
    # The key lives in private files only: the driver's record and bgpd's config.
    record = d_edge.state / "edges" / edge_tag(DX.id) / "edge.json"
    assert key in record.read_text() and stat.S_IMODE(record.stat().st_mode) == 0o600
    conf = frr.RUN_BASE / router_netns_name(edge.prefix, DX.id) / "bgpd.conf"
    assert key in conf.read_text() and stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert stat.S_IMODE(conf.parent.stat().st_mode) == 0o700
    assert d_edge.facts().edge_routers[0].bgp.md5_key == key  # type: ignore[union-attr]

    # A dead bgpd is seen, reported, and the next converge rebuilds the router.
    pid = int((d_edge.state / "edges" / edge_tag(DX.id) / "bgpd.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and d_edge.facts().edge_routers:
        time.sleep(0.02)
    obs = d_edge.facts().observation(DX.id)
    assert obs is not None and obs.state == "down" and "FRR" in obs.detail, obs
    r = d_edge.converge(replace(c_edge, generation=4, edge_routers=(signed,)))
    assert r.ok and ("create", "edge_routers[id=dx-1]") in [(a.verb, a.path) for a in r.actions], r.actions
    obs = wait_observation(d_edge, DX.id, established)
    assert obs is not None and established(obs), obs
    # FRR's scratch dir of the killed bgpd is cleaned up too.
    assert not (frr.FRR_TMP / f"bgpd.{pid}").exists()

    assert_gone(d_edge, edge, prefix)


def _router_holes(site: Site, workload: str, router: str) -> list[str]:
    """Every way past the router namespace `router` other than between the VPC's prefixes and
    the routes learned from the peer, and every answer it gives but BGP to the peer (issue 15)."""
    holes: set[str] = set()
    # Forged sources on the hand-off (a VPC address, one the peer never announced) to a workload.
    with UdpCatcher(workload, 40001) as catch:
        for source in ("10.30.0.99", "203.0.113.77"):
            send_forged_udp(site.premises.netns(L2), "eth0", mac_of(router, "dx0"), source, "10.30.0.11", 40001)
        holes |= {f"hand-off -> workload from forged {src}" for _, src in catch.received()}
    # Forged sources from the VPC (foreign, or the premises' own) to the premises.
    with UdpCatcher(site.premises.netns(HOST), 40002) as catch:
        for source in ("172.16.5.5", "192.168.50.77"):
            send_forged_udp(workload, "net1", mac_of(router, "vpc0"), source, PREMISES_HOST, 40002)
        holes |= {f"workload -> premises from forged {src}" for _, src in catch.received()}
    # The router itself: nothing for the VPC (bgpd's port above all, on either address), and
    # from the hand-off nothing but BGP.
    probes = [Probe(workload, "tcp", address, 179) for address in ("10.30.0.1", "169.254.10.0")]
    probes += [Probe(site.premises.netns(ROUTER), "tcp", "169.254.10.0", 22),
               Probe(site.premises.netns(ROUTER), "ike", "169.254.10.0", 500)]
    holes |= {f"{probe} answered: {answer}" for probe, answer in answers(probes).items()}
    return sorted(holes)


def test_layer3_router_forwards_only_for_the_vpc_and_answers_only_bgp(lab: Lab, site: Site, prefix: str) -> None:
    edge, d, cfg = layer3_established(lab, site)
    router = router_netns_name(edge.prefix, DX.id)
    workload = edge.workload("w1")
    sh("ip", "-n", workload, "route", "add", "169.254.10.0/31", "via", "10.30.0.1")
    holes = _router_holes(site, workload, router)
    assert holes == [], "\n".join(holes)
    # bgpd listens on the peering address only; strict reverse-path filtering.
    listening = sh("ip", "netns", "exec", router, "ss", "-Hltn").stdout.split("\n")
    assert [line.split()[3] for line in listening if line] == ["169.254.10.0:179"], listening
    with nsmod.inside(router), open("/proc/sys/net/ipv4/conf/all/rp_filter") as f:
        assert f.read().strip() == "1"
    # What the direct connect is for still works, both ways.
    assert ping(edge, "w1", PREMISES_HOST)
    assert site.run(HOST, "ping", "-c", "1", "-W", "2", "10.30.0.11").returncode == 0

    # Another advertised prefix: the filter follows in place, with BGP (reconfigure).
    more = replace(DX, bgp=replace(BGP, advertised=("10.30.0.0/24", "10.31.0.0/24")))
    r = d.converge(replace(cfg, generation=2, edge_routers=(more,)))
    assert r.ok and [(a.verb, a.path) for a in r.actions] == [("reconfigure", "edge_routers[id=dx-1]")]
    assert gateway_filter.in_place(router) == gateway_filter.edge_router(more).digest
    assert wait_observation(d, DX.id, established) is not None
    assert d.facts().edge_routers == (more,)
    # The rules lost: the router is not in place, and the next converge rebuilds it.
    sh("ip", "netns", "exec", router, "nft", "delete", "table", "inet", "l2vpc")
    obs = d.facts().observation(DX.id)
    assert d.facts().edge_routers == () and obs is not None and "filter" in obs.detail, obs
    r = d.converge(replace(cfg, generation=3, edge_routers=(more,)))
    assert r.ok and ("create", "edge_routers[id=dx-1]") in [(a.verb, a.path) for a in r.actions], r.actions
    obs = wait_observation(d, DX.id, established)
    assert obs is not None and established(obs), obs
    assert ping(edge, "w1", PREMISES_HOST)
    holes = _router_holes(site, workload, router)
    assert holes == [], "\n".join(holes)
    assert_gone(d, edge, prefix)


def _iperf(client_ns: str, server: str, reverse: bool) -> float:
    cmd = ["ip", "netns", "exec", client_ns, "iperf3", "-c", server, "-t", "1.5", "-O", "0.3", "-J"]
    out = subprocess.run(cmd + (["-R"] if reverse else []), capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stdout[-500:] + out.stderr
    return float(json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"]) / 1e6


def test_layer3_bandwidth_cap_is_measured_and_changed_live(lab: Lab, site: Site, prefix: str) -> None:
    edge, d, cfg = layer3_established(lab, site)
    assert ping(edge, "w1", PREMISES_HOST)

    server = subprocess.Popen(["ip", "netns", "exec", site.premises.netns(HOST), "iperf3", "-s", "-p", "5201"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.2)
        workload = edge.workload("w1")
        for mbps in (1000, 2000):
            if mbps != 1000:
                r = d.converge(replace(cfg, generation=2, edge_routers=(replace(DX, bandwidth_mbps=mbps),)))
                assert r.ok and [(a.verb, a.path) for a in r.actions] == [("update", "edge_routers[id=dx-1]")]
            target = mbps * SCALE
            up, down = _iperf(workload, PREMISES_HOST, False), _iperf(workload, PREMISES_HOST, True)
            print(f"cap {target:.0f} Mbit/s: towards premises {up:.1f}, from premises {down:.1f}")
            assert abs(up - target) <= 0.1 * target, (up, target)
            assert abs(down - target) <= 0.1 * target, (down, target)
    finally:
        server.terminate()
        server.wait(5)
    # The session never dropped: bandwidth changes do not touch BGP.
    router = frr.Router(router_netns_name(edge.prefix, DX.id), d.state / "edges" / edge_tag(DX.id), "")
    summary = json.loads(router.command("bgpd", "show bgp ipv4 unicast summary json"))
    assert summary["peers"][BGP.peer_ip]["connectionsEstablished"] == 1
    assert summary["peers"][BGP.peer_ip]["connectionsDropped"] == 0

    # A shaper removed behind our back shows as bandwidth 0 and is put back in place.
    sh("tc", "-n", edge.netns, "qdisc", "del", "dev", handoff_veth(edge_tag(DX.id)), "root")
    assert d.facts().edge_routers[0].bandwidth_mbps == 0
    r = d.converge(replace(cfg, generation=3, edge_routers=(replace(DX, bandwidth_mbps=2000),)))
    assert r.ok and [a.verb for a in r.actions] == ["update"]
    assert d.facts().edge_routers[0].bandwidth_mbps == 2000
    assert_gone(d, edge, prefix)


def _lease(site: Site, script: Path) -> str | None:
    out = site.run(L2, "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "4", "-T", "1", "-s", str(script), timeout=15)
    m = re.search(r"lease of (\S+) obtained", out.stdout + out.stderr)
    return m.group(1) if m else None


def test_layer2_extension_dhcp_vlan_and_carrier(lab: Lab, site: Site, prefix: str, tmp_path: Path) -> None:
    edge, compute = lab.add_host(), lab.add_host()
    site.connect(edge)
    d_edge, d_compute = edge.driver(), compute.driver()
    l2 = EdgeRouter("dx-2", 400, "layer2", "xc0", 1000, circuit_key="mp-0123-key", secret_digest="c1")
    c_edge = HostConfig(edge.name, edge.underlay_ip, 1, (Segment(400, "vpc-l2", 1500, (compute.underlay_ip,)),),
                        edge_routers=(l2,))
    dhcp = DhcpServer(400, "10.40.0.254/24", "10.40.0.100", "10.40.0.150", lease_time=600)
    c_compute = HostConfig(compute.name, compute.underlay_ip, 1,
                           (Segment(400, "vpc-l2", 1500, (edge.underlay_ip,)),), dhcp_servers=(dhcp,))
    assert d_compute.converge(c_compute).ok
    r = d_edge.converge(c_edge)
    assert r.ok, r.failures
    obs = d_edge.facts().observation("dx-2")
    assert obs == Observation("dx-2", "up")
    assert d_edge.facts().edge_routers == (l2,)  # circuit key restored from the private record

    script = tmp_path / "dhcp-hook"
    script.write_text('#!/bin/sh\n[ "$1" = bound ] || exit 0\nip addr flush dev "$interface"\n'
                      'ip addr add "$ip/$mask" dev "$interface"\n')
    script.chmod(0o700)
    lease = _lease(site, script)  # the premises machine is on the VPC's segment
    assert lease is not None and lease.startswith("10.40.0.1")

    def reaches_server() -> bool:
        return site.run(L2, "ping", "-c", "1", "-W", "1", "10.40.0.254").returncode == 0

    assert reaches_server()

    # Tagged hand-off: untagged frames from the premises are dropped...
    tagged = replace(c_edge, generation=2, edge_routers=(replace(l2, vlan=100),))
    r = d_edge.converge(tagged)
    assert r.ok and [(a.verb, a.path) for a in r.actions] == [("update", "edge_routers[id=dx-2]")]
    assert d_edge.facts().edge_routers[0].vlan == 100
    assert not reaches_server()
    # ...the right tag passes, and the cross-connect carries 802.1Q frames with VID 100...
    site.premises.set_l2_vlan(100)
    with Capture(site.switch(), "edge", "vlan 100 and icmp") as capture:
        assert reaches_server()
    assert any("802.1Q" in line and "vlan 100" in line for line in capture.lines), capture.lines
    # ...and another tag is dropped before the VPC sees it.
    site.premises.set_l2_vlan(200)
    with Capture(edge.netns, edge_vpc_veth(edge_tag("dx-2")), "icmp") as inside:
        assert not reaches_server()
        time.sleep(0.3)
    assert not any("ICMP" in line for line in inside.lines), inside.lines
    site.premises.set_l2_vlan(None)

    # The hand-off's carrier is the observation.
    sh("ip", "-n", site.switch(), "link", "set", "edge", "down")
    assert d_edge.facts().observation("dx-2") == Observation("dx-2", "down", "hand-off xc0 has no carrier", reason="no_carrier")
    sh("ip", "-n", site.switch(), "link", "set", "edge", "up")
    # The kernel reports a carrier coming up with a delay (linkwatch: up to a second, more under
    # load), unlike a carrier going down.
    deadline = time.monotonic() + 5
    while d_edge.facts().observation("dx-2") != Observation("dx-2", "up") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert d_edge.facts().observation("dx-2") == Observation("dx-2", "up")

    # Back to untagged, then removed: the hand-off leaves the bridge, nothing of ours stays.
    r = d_edge.converge(replace(c_edge, generation=3))
    assert r.ok and [a.verb for a in r.actions] == ["update"]
    r = d_edge.converge(replace(c_edge, generation=4, edge_routers=()))
    assert r.ok and [str(a) for a in r.actions] == ["delete edge_routers[id=dx-2]"]
    assert not [n for n in edge.links() if n.startswith("l2e")]
    assert "master" not in edge.ip("-o", "link", "show", "xc0")
    assert not list((d_edge.state / "edges").iterdir())


def test_edge_router_errors_name_the_field(lab: Lab, site: Site) -> None:
    edge = lab.add_host()
    d = edge.driver()
    cfg, _ = layer3_configs(edge, None)
    r = d.converge(cfg)  # no cross-connect on this host: no xc0
    assert not r.ok and [(f.path, f.reason) for f in r.failures] == [
        ("edge_routers[id=dx-1].handoff", "device xc0 does not exist on this host")]
    site.connect(edge)
    second = replace(DX, id="dx-9", gateway_ip="10.30.0.9/24")
    r = d.converge(replace(cfg, edge_routers=(DX, second)))
    assert [(f.path, f.reason) for f in r.failures] == [
        ("edge_routers[id=dx-9].handoff", "device xc0 is already in use by direct connect dx-1")]
    bad = replace(DX, bgp=replace(BGP, md5_key="has space"), secret_digest="x")
    r = d.converge(replace(cfg, generation=2, edge_routers=(bad,)))
    failures = [(f.path, f.reason) for f in r.failures]
    assert failures == [("edge_routers[id=dx-1].bgp.md5_key", "must be printable characters without spaces")]
    d.teardown()
    assert not [n for n in edge.links() if n.startswith("l2e")]
