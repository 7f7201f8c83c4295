"""Where things run: workloads' hosts, DHCP servers, direct-connect edges, VPN instances. Pure.

Placements are sticky: an existing placement is kept while it is still valid, so services do
not move (and lose leases or sessions) just because another host became equally good.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from l2vpc.engine.errors import ValidationError
from l2vpc.engine.model import VPC, Attachment, Host


def pick_compute_host(
    hosts: Iterable[Host], vpc: VPC, load: Counter[str], preferred_region: str | None = None
) -> Host:
    """The least-loaded compute host that may carry `vpc` (ties: by name)."""
    candidates = [h for h in hosts if h.role == "compute" and h.status == "up"]
    if vpc.scope == "single_region":
        candidates = [h for h in candidates if h.region == vpc.region]
        where = f"region {vpc.region!r}"
    else:
        where = "any region"
        if preferred_region and any(h.region == preferred_region for h in candidates):
            candidates = [h for h in candidates if h.region == preferred_region]
    if not candidates:
        raise ValidationError(
            f"no compute host is up in {where}; register one (l2vpc lab up) or set host", path="host"
        )
    return min(candidates, key=lambda h: (load[h.name], h.name))


def pick_service_host(current: str | None, carrying: Iterable[str], up: set[str]) -> str | None:
    """A host for a VPC's DHCP server among those carrying the VPC; keeps `current` if valid."""
    eligible = sorted(h for h in carrying if h in up)
    if current in eligible:
        return current
    return eligible[0] if eligible else None


def place_dhcp(vpc: VPC, members: Iterable[Attachment], hosts: Mapping[str, Host]) -> VPC:
    """`vpc` with its DHCP server on an up host carrying the VPC (`members`: its attachments),
    or on none when no carrier is up; `vpc` itself when nothing changes."""
    if vpc.dhcp is None:
        return vpc.model_copy(update={"dhcp_host": None}) if vpc.dhcp_host else vpc
    up = {h.name for h in hosts.values() if h.status == "up"}
    chosen = pick_service_host(vpc.dhcp_host, (a.host for a in members if a.host), up)
    return vpc.model_copy(update={"dhcp_host": chosen}) if chosen != vpc.dhcp_host else vpc


def pick_edge_host(hosts: Iterable[Host], location: str | None, load: Counter[str], current: str | None,
                   *, public: bool = False) -> Host:
    """An edge host at `location` (any when None); `public`: one with public addresses (VPNs)."""
    edges = [h for h in hosts if h.role == "edge" and h.status == "up" and (location is None or h.location == location)
             and (h.public_cidr or not public)]
    for h in edges:
        if h.name == current:
            return h
    if not edges:
        where = f"location {location!r}" if location else "any location"
        what = "edge host with public addresses (public_cidr)" if public else "edge host"
        raise ValidationError(f"no {what} is up at {where}", path="location" if location else "vpc_id")
    return min(edges, key=lambda h: (load[h.name], h.name))
