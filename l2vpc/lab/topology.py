"""What a lab consists of, as a value: hosts and edges on one underlay (mininet's `Topo`).

    topo = LabTopology.build(hosts=3, regions=["us-east", "eu-west"], edges=1)
    [h.name for h in topo.hosts]   # ['host1', 'host2', 'host3', 'edge1']

Building it touches nothing; `l2vpc.lab.lab.Lab` turns it into namespaces and agents. Hosts
take regions round-robin; edges (role `edge`) serve on-ramp locations round-robin and get
their underlay addresses from a second block so adding compute hosts never renumbers them.
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
DEFAULT_REGION = "us-east"
DEFAULT_LOCATION = "nyc1"
_NAME_RE = re.compile(r"^[a-z0-9-]{1,63}$")


class TopologyError(ValueError):
    """A lab parameter is out of range; the message names it."""


@dataclass(frozen=True, slots=True)
class LabHost:
    name: str
    region: str
    role: str  # compute | edge
    underlay_ip: str
    location: str | None = None

    def registration(self, agent_address: str) -> dict[str, str | None]:
        """What the engine's register_host takes for this host."""
        return {"name": self.name, "region": self.region, "role": self.role, "underlay_ip": self.underlay_ip,
                "agent_address": agent_address, "location": self.location}


@dataclass(frozen=True, slots=True)
class LabTopology:
    hosts: tuple[LabHost, ...]
    underlay_cidr: str = UNDERLAY_CIDR
    underlay_mtu: int = UNDERLAY_MTU

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
                        str(ipaddress.IPv4Address(base + 256 + i)), locations[(i - 1) % len(locations)])
                for i in range(1, edges + 1)]
        return cls(tuple(out))
