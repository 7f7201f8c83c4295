"""Port security on real namespaces, proved by packets: forged frames from a workload are dropped
on the host side with it on and pass with it off; what the port may send always passes."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from l2vpc.agent.drivers.linux import LinuxDriver
from l2vpc.hostconfig import HostConfig, Port, Segment
from l2vpc.hostconfig.names import tap_device_name
from l2vpc.testing.port_probes import BROADCAST, BROADCAST_MAC, Sniffer, TapWriter, arp, inject, udp

from .conftest import Host, Lab, sh

pytestmark = pytest.mark.root

VNI = 100
MAC = {name: f"02:00:00:00:00:0{i}" for i, name in enumerate(("att", "obs", "rtr", "vm"), start=2)}
IP = {name: f"10.0.0.{i}" for i, name in enumerate(("att", "obs", "rtr", "vm"), start=2)}
FOREIGN_MAC = "02:00:00:00:00:99"
_round = itertools.count()


def config(secured: bool, generation: int = 1) -> HostConfig:
    def port(name: str, **extra: object) -> Port:
        p = Port(id=f"att-{name}", vni=VNI, workload=name, interface_name="net1", mac=MAC[name], mtu=1500,
                 ip_mode="static", ip_address=f"{IP[name]}/24")
        return replace(p, **extra)  # type: ignore[arg-type]

    def pinned(name: str, *more: str) -> dict[str, object]:
        return {"port_security": True, "allowed_addresses": (f"{IP[name]}/32", *more)} if secured else {}

    return HostConfig("h1", "10.99.0.1", generation, (Segment(VNI, "vpc-a", 1500),), ports=(
        port("att", **pinned("att")),
        port("obs"),
        port("rtr", **pinned("rtr", "192.168.7.0/24")),  # a router forwarding another network
        port("vm", tap=True, **pinned("vm")),
    ))


def probes(h: Host, tap: TapWriter) -> dict[str, bool]:
    """Every probe, sent once; which of them reached the observer."""
    n = next(_round)
    att, rtr = h.workload("att"), h.workload("rtr")

    def u(name: str, src_mac: str, src_ip: str, sport: int = 5000, dport: int = 5001,
          dst: str = IP["obs"]) -> tuple[str, bytes]:
        marker = f"{name}-{n}".encode()
        return name, udp(src_mac, BROADCAST_MAC, src_ip, dst, sport, dport, marker)

    def a(name: str, sender_ip: str, sender_mac: str | None = None, reply: bool = False) -> tuple[str, bytes]:
        return name, arp(MAC["att"], sender_ip, IP["obs"], f"{name}-{n}".encode(), sender_mac, reply)

    from_att = dict([
        u("legit", MAC["att"], IP["att"]),
        u("spoofed-ip", MAC["att"], "10.0.0.99"),
        u("spoofed-mac", FOREIGN_MAC, IP["att"]),
        a("arp-legit", IP["att"]),
        a("arp-probe", "0.0.0.0"),
        a("arp-spoofed-ip", IP["obs"], reply=True),  # gratuitous: "the observer's address is mine"
        a("arp-spoofed-mac", IP["att"], sender_mac=FOREIGN_MAC),
        u("rogue-offer", MAC["att"], IP["att"], sport=67, dport=68, dst=BROADCAST),
        u("dhcp-discover", MAC["att"], "0.0.0.0", sport=68, dport=67, dst=BROADCAST),
    ])
    from_rtr = dict([
        u("allowed", MAC["rtr"], "192.168.7.5"),
        u("not-allowed", MAC["rtr"], "192.168.8.5"),
    ])
    from_vm = dict([
        u("tap-legit", MAC["vm"], IP["vm"]),
        u("tap-spoofed-mac", FOREIGN_MAC, IP["vm"]),
        u("tap-spoofed-ip", MAC["vm"], "10.0.0.98"),
    ])
    with Sniffer(h.workload("obs"), "net1") as sniff:
        inject(att, "net1", *from_att.values())
        inject(rtr, "net1", *from_rtr.values())
        tap.send(*from_vm.values())
        wanted = [*from_att, *from_rtr, *from_vm]
        # Wait for the ones that pass; the drops then had as long to show up.
        return {name: sniff.seen(f"{name}-{n}".encode(), wait=1.0 if i == 0 else 0.1)
                for i, name in enumerate(wanted)}


PASS_ALWAYS = {"legit", "arp-legit", "arp-probe", "dhcp-discover", "allowed", "tap-legit"}
DROPPED_WHEN_SECURED = {"spoofed-ip", "spoofed-mac", "arp-spoofed-ip", "arp-spoofed-mac", "rogue-offer",
                        "not-allowed", "tap-spoofed-mac", "tap-spoofed-ip"}


def devices(h: Host) -> list[tuple[str, str, str]]:
    """(index, name, MAC) of every device: what a recreate would change (operational state,
    which the kernel moves on its own as a bridge port starts forwarding, would not)."""
    out = []
    for line in h.ip("-o", "link", "show").splitlines():
        index, name, rest = line.split(": ", 2)
        out.append((index, name.split("@")[0], rest.split("link/")[1].split()[1]))
    return out


def converge(d: LinuxDriver, cfg: HostConfig) -> list[tuple[str, str]]:
    r = d.converge(cfg)
    assert r.ok, r.failures
    assert r.actual.same_dataplane(cfg), r.actual.ports
    return sorted((a.verb, a.path) for a in r.actions)


def test_forged_frames_are_dropped_with_port_security_and_pass_without(lab: Lab) -> None:
    h = lab.add_host()
    d = h.driver()
    converge(d, config(secured=False))
    tap = TapWriter(h.netns, tap_device_name("att-vm"))
    try:
        got = probes(h, tap)
        assert {k for k, v in got.items() if v} == PASS_ALWAYS | DROPPED_WHEN_SECURED, got

        # On: an update of each secured port in place, no device recreated.
        links = devices(h)
        assert converge(d, config(secured=True, generation=2)) == [
            ("update", "ports[id=att-att]"), ("update", "ports[id=att-rtr]"), ("update", "ports[id=att-vm]")]
        assert devices(h) == links
        assert d.converge(config(secured=True, generation=2)).actions == ()
        got = probes(h, tap)
        assert {k for k, v in got.items() if v} == PASS_ALWAYS, got

        # Drift: our table deleted by hand is seen and put back.
        sh("ip", "netns", "exec", h.netns, "nft", "delete", "table", "bridge", "l2vpc")
        assert len(converge(d, config(secured=True, generation=2))) == 3
        # An agent restart adopts the pins: nothing to do.
        assert h.driver().converge(config(secured=True, generation=2)).actions == ()
        got = probes(h, tap)
        assert {k for k, v in got.items() if v} == PASS_ALWAYS, got

        # Off again: flat layer 2, and our table holds no pins any more.
        assert len(converge(d, config(secured=False, generation=3))) == 3
        got = probes(h, tap)
        assert {k for k, v in got.items() if v} == PASS_ALWAYS | DROPPED_WHEN_SECURED, got
        assert "jump" not in sh("ip", "netns", "exec", h.netns, "nft", "list", "map", "bridge", "l2vpc", "ports").stdout
    finally:
        tap.close()
