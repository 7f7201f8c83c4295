"""A customer's premises for direct connect and VPN tests: namespaces, wires, a BGP router.

    site = Premises(prefix="l2lab1a2b3c-", state=lab_dir / "premises", config=PremisesConfig())
    site.build(record)                         # premises-router, premises-host, premises-l2
    cross_connect(site.prefix, 1, "l2lab1a2b3c-edge1", site)   # edge1's xc0 <-> premises
    site.set_peering(1, ["169.254.0.1/31"])    # the customer side of a direct connect
    site.teardown()                            # FRR stopped; the caller removes the namespaces

The site (namespaces named `<prefix>premises-*`):

    premises-host    eth0 192.168.50.10/24, default route via .1
    premises-router  lan0 192.168.50.1/24 (the LAN), xc<i> (cross-connect of edge i),
                     out0 203.0.113.10/24 (the internet, where the premises VPN gateway lives);
                     FRR with ASN 65010 announcing the LAN and accepting BGP from any peer in
                     169.254.0.0/16 (a listen range), so it needs no BGP change per direct
                     connect: only the peering address on xc<i> (set_peering)
    premises-l2      eth0 on edge 1's cross-connect, no address: a customer machine behind a
                     layer-2 direct connect (`udhcpc -i eth0`), taggable with set_l2_vlan

Each edge's hand-off `xc0` is a veth into a cross-connect switch (a bridge in namespace
`<prefix>xc<i>`), where the premises router (and for edge 1 premises-l2) plug in too.
The internet is a bridge 203.0.113.0/24 in namespace `<prefix>inet`, a router holding .1 and
the first address of every edge's public pool (edge i: 203.0.113.(16+16i)/28, gateway .(17+16i)),
forwarding between them; edge i's `out0` plugs into it.
"""

from __future__ import annotations

import ipaddress
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from l2vpc.agent.drivers.linux import frr, vlantag
from l2vpc.agent.drivers.linux.netns import sysctl
from l2vpc.lab.netns import LabNetError, create, exists, ip, path
from l2vpc.lab.topology import HANDOFF, INTERNET_CIDR, INTERNET_GATEWAY, OUTSIDE, public_gateway, public_pool

ROUTER, HOST, L2 = "premises-router", "premises-host", "premises-l2"
NAMES = (ROUTER, HOST, L2)
LAN_IF, OUT_IF, HOST_IF, L2_IF = "lan0", "out0", "eth0", "eth0"
DEFAULT_LAN = "192.168.50.0/24"
DEFAULT_PEERING = "169.254.10.2/30"
DEFAULT_ASN = 65010
PEERING_RANGE = "169.254.0.0/16"
PREMISES_PUBLIC_IP = "203.0.113.10"

Record = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class PremisesConfig:
    lan: str = DEFAULT_LAN
    asn: int = DEFAULT_ASN
    md5_key: str | None = None
    # The customer router's address on edge1's cross-connect from the start, as a customer
    # would configure it; a direct connect that uses this peering (bgp.peering_cidr
    # 169.254.10.0/30, customer_ip .2, provider_ip .1) comes up without `lab premises sync`.
    peering: str | None = DEFAULT_PEERING

    def check(self) -> None:
        """Raise ValueError naming the flag that is wrong."""
        try:
            net = ipaddress.IPv4Network(self.lan)
        except ValueError:
            raise ValueError(f"--premises-lan: {self.lan!r} is not an IPv4 network like 192.168.50.0/24") from None
        if net.prefixlen > 29 or net.overlaps(ipaddress.IPv4Network(PEERING_RANGE)) or net.overlaps(
                ipaddress.IPv4Network(INTERNET_CIDR)):
            raise ValueError(f"--premises-lan: {self.lan} must be /29 or larger and outside {PEERING_RANGE} "
                             f"and {INTERNET_CIDR}")
        if not 1 <= self.asn <= 4294967294 or self.asn == 23456:
            raise ValueError(f"--premises-asn: {self.asn} must be in 1..4294967294 and not 23456")
        if self.md5_key is not None and (why := frr.check_password(self.md5_key)):
            raise ValueError(f"--premises-md5: {why}")

    @property
    def router_ip(self) -> str:
        return str(next(ipaddress.IPv4Network(self.lan).hosts()))

    @property
    def host_ip(self) -> str:
        return str(ipaddress.IPv4Network(self.lan).network_address + 10)


def render_router(config: PremisesConfig) -> str:
    lines = [
        "! the premises router of an l2vpc lab",
        "frr defaults datacenter",
        f"hostname {ROUTER}",
        "log stdout informational",
        "!",
        f"router bgp {config.asn}",
        f" bgp router-id {config.router_ip}",
        " no bgp ebgp-requires-policy",
        " no bgp network import-check",
        f" timers bgp {frr.KEEPALIVE} {frr.HOLD}",
        f" coalesce-time {frr.COALESCE_MS}",
        " neighbor DX peer-group",
        " neighbor DX remote-as external",
    ]
    if config.md5_key:
        lines.append(f" neighbor DX password {config.md5_key}")
    lines += [
        f" bgp listen range {PEERING_RANGE} peer-group DX",
        " address-family ipv4 unicast",
        f"  network {config.lan}",
        " exit-address-family",
        "!",
    ]
    return "\n".join(lines) + "\n"


class Premises:
    def __init__(self, prefix: str, state: Path, config: PremisesConfig | None = None) -> None:
        self.prefix = prefix
        self.state = state
        self.config = config or PremisesConfig()

    def netns(self, name: str) -> str:
        """The namespace of `premises-router`, `premises-host` or `premises-l2`."""
        return f"{self.prefix}{name}"

    @property
    def router(self) -> frr.Router:
        ns = self.netns(ROUTER)
        return frr.Router(ns, self.state / "frr", path(ns))

    def build(self, record: Record) -> None:
        """Create the three namespaces, the LAN, and start the router's FRR."""
        cfg = self.config
        for name in NAMES:
            ns = self.netns(name)
            record(ns)
            create(ns)
        router, host = self.netns(ROUTER), self.netns(HOST)
        plen = ipaddress.IPv4Network(cfg.lan).prefixlen
        ip("link", "add", LAN_IF, "type", "veth", "peer", "name", HOST_IF, "netns", host, netns=router)
        ip("addr", "add", f"{cfg.router_ip}/{plen}", "dev", LAN_IF, netns=router)
        ip("link", "set", LAN_IF, "up", netns=router)
        ip("addr", "add", f"{cfg.host_ip}/{plen}", "dev", HOST_IF, netns=host)
        ip("link", "set", HOST_IF, "up", netns=host)
        ip("route", "add", "default", "via", cfg.router_ip, netns=host)
        _sysctl(router, "net/ipv4/ip_forward", "1")
        self.state.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            self.router.start(render_router(cfg), ROUTER)
        except frr.FrrError as e:
            raise LabNetError(f"premises router: {e}") from None

    def set_md5(self, key: str | None) -> None:
        """The customer router's BGP password (None: none); bgpd restarts."""
        self.config = PremisesConfig(self.config.lan, self.config.asn, key)
        self.config.check()
        self.router.reconfigure(render_router(self.config))

    def set_peering(self, edge_index: int, addresses: list[str]) -> list[str]:
        """Make `addresses` (CIDR form) exactly the peering addresses on xc<edge_index>; returns
        what changed, e.g. ['+169.254.0.1/31']."""
        router, dev = self.netns(ROUTER), f"xc{edge_index}"
        have = set()
        for line in ip("-4", "-o", "addr", "show", "dev", dev, netns=router).splitlines():
            parts = line.split()
            if "inet" in parts:
                have.add(parts[parts.index("inet") + 1])
        want = set(addresses)
        for a in sorted(have - want):
            ip("addr", "del", a, "dev", dev, netns=router)
        for a in sorted(want - have):
            ip("addr", "add", a, "dev", dev, netns=router)
        return [f"-{a}" for a in sorted(have - want)] + [f"+{a}" for a in sorted(want - have)]

    def set_l2_vlan(self, vid: int | None) -> None:
        """premises-l2 tags what it sends with `vid` and accepts only that tag (None: untagged)."""
        ns = self.netns(L2)
        try:
            if vid is None:
                vlantag.detach(ns, L2_IF)
            else:
                vlantag.attach(ns, L2_IF, vid, self.state / "bpf", inward=False)
        except vlantag.VlanTagError as e:
            raise LabNetError(f"premises-l2 vlan: {e}") from None

    def teardown(self) -> None:
        """Stop the router's daemons and remove the site's files; namespaces are the caller's."""
        self.router.stop()
        shutil.rmtree(self.state, ignore_errors=True)


def make_switch(ns: str, mtu: int = 1500, address: str | None = None) -> None:
    """Namespace `ns` with a bridge br0 (holding `address` if given)."""
    create(ns)
    ip("link", "add", "br0", "mtu", str(mtu), "type", "bridge", netns=ns)
    ip("link", "set", "br0", "up", netns=ns)
    if address:
        ip("addr", "add", address, "dev", "br0", netns=ns)


def plug(switch: str, port: str, other_ns: str, ifname: str, mtu: int = 1500, address: str | None = None) -> None:
    """A veth from the switch's bridge (`port`) to `ifname` in `other_ns`, up (and addressed)."""
    ip("link", "add", port, "mtu", str(mtu), "type", "veth", "peer", "name", ifname, "netns", other_ns,
       "mtu", str(mtu), netns=switch)
    ip("link", "set", port, "master", "br0", "up", netns=switch)
    if address:
        ip("addr", "add", address, "dev", ifname, netns=other_ns)
    ip("link", "set", ifname, "up", netns=other_ns)


def cross_connect(switch: str, edge_index: int, edge_ns: str, site: Premises | None, record: Record) -> None:
    """Edge i's hand-off `xc0`, on a switch with the premises router's xc<i> (and premises-l2)."""
    record(switch)
    make_switch(switch)
    plug(switch, "edge", edge_ns, HANDOFF)
    if site is not None:
        plug(switch, "router", site.netns(ROUTER), f"xc{edge_index}")
        if edge_index == 1:
            plug(switch, "l2", site.netns(L2), L2_IF)


def internet(switch: str, edges: list[tuple[int, str]], site: Premises | None, record: Record) -> None:
    """The internet bridge: every edge's `out0`, and the premises router's out0 at .10."""
    record(switch)
    make_switch(switch, address=f"{INTERNET_GATEWAY}/24")
    _sysctl(switch, "net/ipv4/ip_forward", "1")
    for i, edge_ns in edges:
        plug(switch, f"edge{i}", edge_ns, OUTSIDE)
        pool = public_pool(i)
        if pool is not None:
            plen = ipaddress.IPv4Network(pool).prefixlen
            ip("addr", "add", f"{public_gateway(pool)}/{plen}", "dev", "br0", netns=switch)
    if site is not None:
        plug(switch, "premises", site.netns(ROUTER), OUT_IF, address=f"{PREMISES_PUBLIC_IP}/24")


def _sysctl(ns: str, key: str, value: str) -> None:
    if not exists(ns):
        raise LabNetError(f"namespace {ns} is missing")
    try:
        sysctl(ns, {key: value})
    except OSError as e:
        raise LabNetError(f"sysctl {key} in {ns}: {e.strerror or e}") from None
