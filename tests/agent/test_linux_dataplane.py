"""The Linux driver on real namespaces: traffic, isolation, MTU, DHCP, restarts, removal."""

from __future__ import annotations

import ipaddress
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from l2vpc.agent.drivers.linux import LinuxDriver
from l2vpc.agent.drivers.linux import netns as nsmod
from l2vpc.hostconfig import DhcpServer, HostConfig, Port, Reservation, Route, Segment
from l2vpc.hostconfig.names import dhcp_netns_name

from .conftest import Host, Lab, sh

pytestmark = pytest.mark.root


@dataclass(frozen=True)
class Vpc:
    vni: int
    mtu: int = 1500
    dhcp: DhcpServer | None = None
    dhcp_host: int = 0  # index of the host running the DHCP server


@dataclass(frozen=True)
class Nic:
    host: int
    port: Port


def host_configs(lab: Lab, vpcs: list[Vpc], nics: list[Nic], generation: int = 1) -> list[HostConfig]:
    """What the engine would push: a segment wherever a VPC has a port or its DHCP server,
    with every other such host as a remote."""
    where: dict[int, set[int]] = {v.vni: set() for v in vpcs}
    for n in nics:
        where[n.port.vni].add(n.host)
    for v in vpcs:
        if v.dhcp is not None:
            where[v.vni].add(v.dhcp_host)
    out = []
    for i, h in enumerate(lab.hosts):
        segs = tuple(
            Segment(v.vni, f"vpc-{v.vni}", v.mtu,
                    tuple(sorted(lab.hosts[j].underlay_ip for j in where[v.vni] if j != i)))
            for v in vpcs if i in where[v.vni]
        )
        ports = tuple(n.port for n in nics if n.host == i)
        dhcp = tuple(v.dhcp for v in vpcs if v.dhcp is not None and v.dhcp_host == i)
        out.append(HostConfig(h.name, h.underlay_ip, generation, segs, ports, dhcp))
    return out


def converge_all(drivers: list[LinuxDriver], configs: list[HostConfig]) -> None:
    for d, c in zip(drivers, configs, strict=True):
        r = d.converge(c)
        assert r.ok, (d.host, r.failures)
        assert r.actual.same_dataplane(c), (d.host, r.actual, c)


def port(pid: str, vni: int, workload: str, mac_n: int, mtu: int = 1500, ip: str | None = None,
         ifname: str = "net1", mode: str | None = None) -> Port:
    return Port(id=pid, vni=vni, workload=workload, interface_name=ifname, mac=f"02:00:00:00:00:{mac_n:02x}",
                mtu=mtu, ip_mode=mode or ("static" if ip else "none"), ip_address=ip)


def ping(h: Host, workload: str, target: str, *extra: str, wait: str = "2") -> bool:
    return h.run(workload, "ping", "-c", "1", "-W", wait, *extra, target).returncode == 0


def neigh_lladdr(h: Host, workload: str, target: str) -> str | None:
    out = h.run(workload, "ip", "neigh", "show", target).stdout
    m = re.search(r"lladdr (\S+)", out)
    return m.group(1) if m else None


def two_vpcs(lab: Lab) -> tuple[list[Vpc], list[Nic]]:
    # Both VPCs use the same subnet: only layer-2 isolation keeps them apart.
    vpcs = [Vpc(100, mtu=9000), Vpc(200, mtu=1500)]
    nics = [
        Nic(0, port("pa1", 100, "a1", 1, 9000, "10.10.0.1/24")),
        Nic(1, port("pa2", 100, "a2", 2, 9000, "10.10.0.2/24")),
        Nic(2, port("pa3", 100, "a3", 3, 9000, "10.10.0.3/24")),
        Nic(0, port("pb1", 200, "b1", 4, 1500, "10.10.0.11/24")),
        Nic(1, port("pb2", 200, "b2", 5, 1500, "10.10.0.12/24")),
    ]
    return vpcs, nics


def test_two_vpcs_three_hosts_reachability_isolation_and_mtu(lab: Lab) -> None:
    hosts = [lab.add_host() for _ in range(3)]
    drivers = [h.driver() for h in hosts]
    vpcs, nics = two_vpcs(lab)
    converge_all(drivers, host_configs(lab, vpcs, nics))
    h1, h2, _ = hosts

    assert ping(h1, "a1", "10.10.0.2") and ping(h1, "a1", "10.10.0.3") and ping(h2, "a2", "10.10.0.3")
    assert ping(h1, "b1", "10.10.0.12")
    # a1 and b2 share a subnet but not a segment: no ARP answer, no ping.
    assert not ping(h1, "a1", "10.10.0.12", wait="1")
    assert neigh_lladdr(h1, "a1", "10.10.0.12") is None
    assert neigh_lladdr(h1, "a1", "10.10.0.2") == "02:00:00:00:00:02"

    # 9000-byte frames cross hosts over VXLAN (underlay 9100) unfragmented; 1500 does not.
    assert ping(h1, "a1", "10.10.0.2", "-M", "do", "-s", "8972")
    assert not ping(h1, "b1", "10.10.0.12", "-M", "do", "-s", "8972", wait="1")
    assert ping(h1, "b1", "10.10.0.12", "-M", "do", "-s", "1472")


def test_mtu_change_is_live_and_foreign_devices_are_untouched(lab: Lab) -> None:
    h1 = lab.add_host()
    sh("ip", "-n", h1.netns, "link", "add", "l2foo", "type", "bridge")  # l2-ish but not ours
    sh("ip", "-n", h1.netns, "link", "add", "eth9", "type", "bridge")
    d = h1.driver()
    vpcs = [Vpc(100, mtu=1500)]
    nics = [Nic(0, port("pa1", 100, "a1", 1, 1500, "10.10.0.1/24"))]
    converge_all([d], host_configs(lab, vpcs, nics))
    before = h1.run("a1", "ip", "-o", "link", "show", "net1").stdout.split(":")[0]

    nics = [Nic(0, replace(nics[0].port, mtu=9000))]
    converge_all([d], host_configs(lab, [Vpc(100, mtu=9000)], nics))
    after = h1.run("a1", "ip", "-o", "link", "show", "net1").stdout
    assert after.split(":")[0] == before and "mtu 9000" in after  # same interface, new MTU
    # The host has no address of any kind on a customer segment (no IPv6 link-local either).
    assert "l2" not in h1.ip("-o", "addr", "show")

    d.teardown()
    assert h1.links() == ["eth9", "l2foo", "lo", "u0"]


def test_every_device_on_a_bridge_takes_the_vpc_mtu_and_a_converged_host_plans_nothing(lab: Lab) -> None:
    """Issue 18, case 6: the DHCP server's veth joined a 9000 bridge at 1500, the bridge dropped
    to 1500 and every converge planned `segment (changed: mtu)` again."""
    h1, h2 = lab.add_host(), lab.add_host()
    drivers = [h1.driver(), h2.driver()]
    server = DhcpServer(vni=400, server_ip="10.40.0.254/24", range_start="10.40.0.100", range_end="10.40.0.150")

    def mtus() -> dict[str, int]:
        """MTU of h1's bridge of the VPC, of every device on it, and of the DHCP server's dhcp0."""
        def parse(text: str) -> dict[str, int]:
            return {m.group(1): int(m.group(2)) for m in re.finditer(r"^\d+: ([^:@]+)\S*: .* mtu (\d+) ", text, re.M)}
        found = parse(h1.ip("-o", "link", "show", "l2b400"))
        found |= parse(h1.ip("-o", "link", "show", "master", "l2b400"))
        found |= parse(sh("ip", "-n", dhcp_netns_name(h1.prefix, 400), "-o", "link", "show", "dhcp0").stdout)
        assert {"l2b400", "l2x400", "l2d400", "dhcp0"} <= set(found), found
        return found

    for mtu, generation in ((9000, 1), (1500, 2), (9000, 3)):
        vpcs = [Vpc(400, mtu=mtu, dhcp=server, dhcp_host=0)]
        nics = [Nic(0, port("pm1", 400, "m1", 0x31, mtu, "10.40.0.1/24")),
                Nic(1, port("pm2", 400, "m2", 0x32, mtu, "10.40.0.2/24"))]
        configs = host_configs(lab, vpcs, nics, generation)
        converge_all(drivers, configs)
        assert set(mtus().values()) == {mtu}, mtus()
        again = drivers[0].converge(configs[0])
        assert again.ok and again.actions == (), again.actions  # converged: nothing planned
    assert ping(h1, "m1", "10.40.0.2", "-M", "do", "-s", "8972")


def test_dhcp_dynamic_lease_reservation_options_and_reload(lab: Lab, wait_for: Callable[..., bool]) -> None:
    hosts = [lab.add_host() for _ in range(3)]
    drivers = [h.driver() for h in hosts]
    resolv_before = Path("/etc/resolv.conf").read_bytes() if Path("/etc/resolv.conf").exists() else b""
    server = DhcpServer(
        vni=300, server_ip="10.30.0.254/24", range_start="10.30.0.100", range_end="10.30.0.150",
        lease_time=600, gateway="10.30.0.1", dns_servers=("10.30.0.53",),
        reservations=(Reservation("02:00:00:00:00:22", "10.30.0.50"),),
        routes=(Route("172.16.0.0/12", "10.30.0.1"),),
    )
    vpcs = [Vpc(300, dhcp=server, dhcp_host=0)]
    nics = [Nic(1, port("pd1", 300, "d1", 0x21, mode="dhcp")), Nic(2, port("pd2", 300, "d2", 0x22, mode="dhcp"))]
    t0 = time.monotonic()
    converge_all(drivers, host_configs(lab, vpcs, nics))

    def addr(h: Host, w: str) -> str | None:
        m = re.search(r"inet (\S+)", h.run(w, "ip", "-4", "addr", "show", "dev", "net1").stdout)
        return m.group(1) if m else None

    assert wait_for(lambda: addr(hosts[1], "d1") and addr(hosts[2], "d2"), timeout=10.0), "no lease within 10 s"
    elapsed = time.monotonic() - t0
    dyn = addr(hosts[1], "d1")
    assert dyn is not None
    assert ipaddress.IPv4Address("10.30.0.100") <= ipaddress.IPv4Interface(dyn).ip <= ipaddress.IPv4Address("10.30.0.150")
    assert dyn.endswith("/24")
    assert addr(hosts[2], "d2") == "10.30.0.50/24"
    routes = hosts[1].run("d1", "ip", "route").stdout
    assert "172.16.0.0/12 via 10.30.0.1" in routes and "default via 10.30.0.1" in routes
    assert "nameserver 10.30.0.53" in (drivers[1].state / "clients" / "pd1.dns").read_text()
    assert (Path("/etc/resolv.conf").read_bytes() if Path("/etc/resolv.conf").exists() else b"") == resolv_before
    assert ping(hosts[1], "d1", "10.30.0.50")
    print(f"leases after {elapsed:.2f} s")

    # A reservation change reloads dnsmasq (same pid); a re-created port then gets the new address.
    pid_file = drivers[0].state / "dhcp" / "300" / "pid"
    pid = pid_file.read_text()
    moved = replace(server, reservations=(Reservation("02:00:00:00:00:22", "10.30.0.60"),))
    r = drivers[0].converge(host_configs(lab, [Vpc(300, dhcp=moved)], nics, 2)[0])
    assert r.ok and [(a.verb, a.path) for a in r.actions] == [("reload", "dhcp_servers[vni=300]")]
    assert pid_file.read_text() == pid
    nics2 = [nics[0], Nic(2, replace(nics[1].port, restart_epoch=1))]
    r = drivers[2].converge(host_configs(lab, [Vpc(300, dhcp=moved)], nics2, 2)[2])
    assert r.ok
    assert wait_for(lambda: addr(hosts[2], "d2") == "10.30.0.60/24", timeout=10.0)

    # Dropping DHCP from a port stops its client; the port stays.
    nics3 = [Nic(1, replace(nics[0].port, ip_mode="none")), nics2[1]]
    r = drivers[1].converge(host_configs(lab, [Vpc(300, dhcp=moved)], nics3, 3)[1])
    assert r.ok and [a.verb for a in r.actions] == ["update"]
    assert not list((drivers[1].state / "clients").glob("*.pid"))
    assert addr(hosts[1], "d1") is None


def test_new_dhcp_options_reach_the_clients_at_once(lab: Lab, wait_for: Callable[..., bool]) -> None:
    """A route the DHCP server starts offering (a direct connect learned it) reaches a running
    client within seconds: its port's dhcp_options change and the agent has it renew."""
    hosts = [lab.add_host() for _ in range(2)]
    drivers = [h.driver() for h in hosts]
    server = DhcpServer(vni=310, server_ip="10.31.0.254/24", range_start="10.31.0.100", range_end="10.31.0.150",
                        lease_time=3600, gateway="10.31.0.1")
    nics = [Nic(1, port("pr1", 310, "r1", 0x31, mode="dhcp"))]
    nics = [Nic(1, replace(nics[0].port, dhcp_options="offer-1"))]
    converge_all(drivers, host_configs(lab, [Vpc(310, dhcp=server, dhcp_host=0)], nics))
    assert wait_for(lambda: "10.31.0." in hosts[1].run("r1", "ip", "-4", "addr", "show", "dev", "net1").stdout,
                    timeout=3.0)
    learned = replace(server, routes=(Route("192.168.77.0/24", "10.31.0.1"),))
    renewed = [Nic(1, replace(nics[0].port, dhcp_options="offer-2"))]
    t0 = time.monotonic()
    configs = host_configs(lab, [Vpc(310, dhcp=learned, dhcp_host=0)], renewed, 2)
    r = drivers[1].converge(configs[1])  # the client's host first: its first renewal finds the old offer
    assert r.ok and [(a.verb, a.path) for a in r.actions] == [("update", "ports[id=pr1]")]
    assert drivers[0].converge(configs[0]).ok
    assert wait_for(lambda: "192.168.77.0/24 via 10.31.0.1" in hosts[1].run("r1", "ip", "route").stdout,
                    timeout=3.0), hosts[1].run("r1", "ip", "route").stdout
    print(f"new route in the workload after {time.monotonic() - t0:.2f} s (lease time 3600 s)")


def test_restart_adopts_everything_and_traffic_keeps_flowing(lab: Lab) -> None:
    hosts = [lab.add_host() for _ in range(3)]
    drivers = [h.driver() for h in hosts]
    vpcs, nics = two_vpcs(lab)
    server = DhcpServer(vni=200, server_ip="10.10.0.254/24", range_start="10.10.0.100", range_end="10.10.0.110")
    vpcs[1] = Vpc(200, mtu=1500, dhcp=server, dhcp_host=2)
    configs = host_configs(lab, vpcs, nics)
    converge_all(drivers, configs)
    def link_ids() -> list[list[str]]:
        return [[line.split("@")[0].split(":")[0] + line.split(":")[1] for line in h.ip("-o", "link").splitlines()]
                for h in hosts]

    links_before = link_ids()

    pinger = subprocess.Popen(
        ["ip", "netns", "exec", hosts[0].workload("a1"), "ping", "-i", "0.02", "-c", "50", "-W", "1", "10.10.0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        for d in drivers:
            d.close()  # the agent exits: no teardown
        drivers = [h.driver() for h in hosts]
        for d, c in zip(drivers, configs, strict=True):
            r = d.converge(c)
            assert r.ok and r.actions == (), (d.host, r.actions)
            assert r.actual.same_dataplane(c)
        out, _ = pinger.communicate(timeout=10)
    finally:
        if pinger.poll() is None:
            pinger.kill()
            pinger.wait()
    assert " 0% packet loss" in out, out
    assert link_ids() == links_before  # same devices, same ifindexes: nothing recreated


def test_host_leaving_a_vpc_removes_its_segment_everywhere(lab: Lab) -> None:
    hosts = [lab.add_host() for _ in range(3)]
    drivers = [h.driver() for h in hosts]
    vpcs, nics = two_vpcs(lab)
    converge_all(drivers, host_configs(lab, vpcs, nics))
    h3_ns = hosts[2].workload("a3")
    assert nsmod.exists(h3_ns)

    nics = [n for n in nics if n.port.id != "pa3"]
    converge_all(drivers, host_configs(lab, vpcs, nics, 2))

    assert not {"l2b100", "l2x100"} & set(hosts[2].links())
    assert not nsmod.exists(h3_ns)
    for h, other in ((hosts[0], "10.99.0.2"), (hosts[1], "10.99.0.1")):
        fdb = sh("bridge", "-n", h.netns, "fdb", "show", "dev", "l2x100").stdout
        assert f"dst {other}" in fdb and "dst 10.99.0.3" not in fdb, fdb
    assert ping(hosts[0], "a1", "10.10.0.2")

    # A flood entry removed behind the agent's back shows in the facts and is put back.
    sh("bridge", "-n", hosts[0].netns, "fdb", "del", "00:00:00:00:00:00", "dev", "l2x100", "dst", "10.99.0.2")
    seg = next(s for s in drivers[0].facts().segments if s.vni == 100)
    assert seg.remotes == ()
    r = drivers[0].converge(host_configs(lab, vpcs, nics, 3)[0])
    assert [str(a) for a in r.actions] == ["update segments[vni=100] (remotes +10.99.0.2)"]
    assert ping(hosts[0], "a1", "10.10.0.2")


def test_drift_is_repaired(lab: Lab, wait_for: Callable[..., bool]) -> None:
    h1 = lab.add_host()
    d = h1.driver()
    server = DhcpServer(vni=100, server_ip="10.10.0.254/24", range_start="10.10.0.100", range_end="10.10.0.110")
    vpcs = [Vpc(100, dhcp=server)]
    nics = [Nic(0, port("pa1", 100, "a1", 1, mode="dhcp")), Nic(0, port("pa2", 100, "a2", 2, ip="10.10.0.2/24"))]
    (cfg,) = host_configs(lab, vpcs, nics)
    converge_all([d], [cfg])

    sh("ip", "-n", h1.netns, "link", "del", "l2x100")
    sh("kill", (d.state / "dhcp" / "100" / "pid").read_text().strip())
    client_pid = (d.state / "clients" / "pa1.pid").read_text().strip()
    sh("kill", client_pid)
    h1.run("a2", "ip", "addr", "flush", "dev", "net1", check=True)
    def drifted() -> bool:
        f = d.facts()
        modes = {p.id: (p.ip_mode, p.ip_address) for p in f.ports}
        return (f.segments, f.dhcp_servers, modes) == ((), (), {"pa1": ("none", None), "pa2": ("static", None)})

    assert wait_for(drifted), d.facts()

    r = d.converge(cfg)
    assert r.ok and r.actual.same_dataplane(cfg), r
    assert {(a.verb, a.path) for a in r.actions} >= {("create", "segments[vni=100]"),
                                                     ("create", "dhcp_servers[vni=100]"),
                                                     ("update", "ports[id=pa1]"), ("update", "ports[id=pa2]")}
    assert d.converge(cfg).actions == ()
    assert (d.state / "clients" / "pa1.pid").read_text().strip() != client_pid
    assert wait_for(lambda: "inet 10.10.0.1" in h1.run("a1", "ip", "-4", "addr", "show", "net1").stdout, 3.0)
    assert ping(h1, "a1", "10.10.0.2")
