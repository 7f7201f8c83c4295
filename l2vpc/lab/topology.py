"""What a lab consists of, as a value: hosts and edges on one underlay (mininet's `Topo`).

    topo = LabTopology.build(hosts=3, regions=["us-east", "eu-west"], edges=1)
    [h.name for h in topo.hosts]   # ['host1', 'host2', 'host3', 'edge1']

Building it touches nothing; `l2vpc.lab.lab.Lab` turns it into namespaces and agents. Hosts
take regions round-robin; edges (role `edge`) serve on-ramp locations round-robin and get
their underlay addresses from a second block so adding compute hosts never renumbers them.
Edges also have a hand-off device `xc0` (cross-connect to the premises) and an outside device
`out0` on the lab's internet 203.0.113.0/24, with a block of public addresses each (edge1
203.0.113.32/28, edge2 the next /28, ...; edges beyond the 14th get none) whose first address
is their public gateway (the internet router holds it: a next hop must be on-link).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

MAX_HOSTS = 250
MAX_EDGES = 250
UNDERLAY_CIDR = "10.200.0.0/16"
# VXLAN adds 50 bytes; 9100 leaves room for 9000-byte VPC frames (DESIGN: underlay >= 9050).
UNDERLAY_MTU = 9100
# With a controller (linux driver), agents listen on their underlay address at AGENT_PORT and
# reach the controller at MANAGEMENT_IP, the underlay switch's own address: both paths cross
# the host's uplink, so taking it down partitions the host from the controller too.
AGENT_PORT = 7600
MANAGEMENT_IP = "10.200.255.254"
DEFAULT_REGION = "us-east"
DEFAULT_LOCATION = "nyc1"
_NAME_RE = re.compile(r"^[a-z0-9-]{1,63}$")
# Edge hosts' devices and the lab's internet (see premises.py, which builds them).
HANDOFF, OUTSIDE = "xc0", "out0"
INTERNET_CIDR = "203.0.113.0/24"
INTERNET_GATEWAY = "203.0.113.1"  # the internet router's address on the premises' side
_POOL_BASE, _POOL_SIZE = 32, 16
MAX_PUBLIC_POOLS = (256 - _POOL_BASE) // _POOL_SIZE


def public_gateway(pool: str) -> str:
    """The next hop of a public pool: its first address (the lab's internet router has it)."""
    return str(next(ipaddress.IPv4Network(pool).hosts()))


def public_pool(edge_index: int) -> str | None:
    """Edge i's block of public addresses (edge1: 203.0.113.32/28, then the next /28s)."""
    if not 1 <= edge_index <= MAX_PUBLIC_POOLS:
        return None
    base = int(ipaddress.IPv4Network(INTERNET_CIDR).network_address) + _POOL_BASE + _POOL_SIZE * (edge_index - 1)
    return f"{ipaddress.IPv4Address(base)}/28"


class TopologyError(ValueError):
    """A lab parameter is out of range; the message names it."""


@dataclass(frozen=True, slots=True)
class LabHost:
    name: str
    region: str
    role: str  # compute | edge
    underlay_ip: str
    location: str | None = None
    public_cidr: str | None = None  # edges: their pool of public addresses on the lab's internet

    @property
    def edge_index(self) -> int:
        """i of `edge<i>` (0 for compute hosts)."""
        return int(self.name[4:]) if self.role == "edge" else 0

    def registration(self, agent_address: str) -> dict[str, str | None]:
        """What the engine's register_host takes for this host."""
        reg: dict[str, str | None] = {
            "name": self.name, "region": self.region, "role": self.role, "underlay_ip": self.underlay_ip,
            "agent_address": agent_address, "location": self.location}
        if self.role == "edge":
            reg |= {"handoff": HANDOFF, "outside": OUTSIDE, "public_cidr": self.public_cidr,
                    "public_gateway": public_gateway(self.public_cidr) if self.public_cidr else None}
        return reg


@dataclass(frozen=True, slots=True)
class LabTopology:
    hosts: tuple[LabHost, ...]
    underlay_cidr: str = UNDERLAY_CIDR
    underlay_mtu: int = UNDERLAY_MTU

    def host_documents(self) -> list[dict[str, str]]:
        """What each host is, as an operator enrolls it (`controller host enroll --hosts`):
        the registration without the agent's address."""
        return [{k: v for k, v in h.registration("").items() if v and k != "agent_address"} for h in self.hosts]

    @property
    def prefixlen(self) -> int:
        return ipaddress.IPv4Network(self.underlay_cidr).prefixlen

    def host(self, name: str) -> LabHost:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    @classmethod
    def build(cls, hosts: int = 3, regions: list[str] | None = None, edges: int = 0,
              locations: list[str] | None = None) -> LabTopology:
        regions = regions or [DEFAULT_REGION]
        locations = locations or [DEFAULT_LOCATION]
        if not 1 <= hosts <= MAX_HOSTS:
            raise TopologyError(f"--hosts: {hosts} is outside 1..{MAX_HOSTS}")
        if not 0 <= edges <= MAX_EDGES:
            raise TopologyError(f"--edges: {edges} is outside 0..{MAX_EDGES}")
        for flag, names in (("--regions", regions), ("--locations", locations)):
            for n in names:
                if not _NAME_RE.fullmatch(n):
                    raise TopologyError(f"{flag}: {n!r} must be 1-63 lowercase letters, digits or '-'")
            if len(set(names)) != len(names):
                raise TopologyError(f"{flag}: names must be unique, got {','.join(names)}")
        net = ipaddress.IPv4Network(UNDERLAY_CIDR)
        base = int(net.network_address)
        out = [LabHost(f"host{i}", regions[(i - 1) % len(regions)], "compute", str(ipaddress.IPv4Address(base + i)))
               for i in range(1, hosts + 1)]
        out += [LabHost(f"edge{i}", regions[(i - 1) % len(regions)], "edge",
                        str(ipaddress.IPv4Address(base + 256 + i)), locations[(i - 1) % len(locations)],
                        public_pool(i))
                for i in range(1, edges + 1)]
        return cls(tuple(out))
