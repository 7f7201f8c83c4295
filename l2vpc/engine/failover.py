"""Failover: hosts marked up or down, and services moved off the hosts that are down.

A controller's reconciler gives the verdicts (from heartbeats) and calls these through the
facade, inside one transaction with its leadership fence. What moves: a VPC's DHCP server to
another up host carrying the VPC, a direct connect to another up edge host at its location, a
VPN to another up edge host with public addresses (with a new public address from that host's
block). A service with nowhere to go stays and says so; a VPC whose DHCP server had nowhere to
go gets one again when a carrier is up. Placements are sticky: a host coming back gets nothing
back. Level-triggered: running it again changes nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from l2vpc.engine import allocator as alloc
from l2vpc.engine.errors import NotFoundError, ValidationError
from l2vpc.engine.kinds.context import Context, dump
from l2vpc.engine.model import VPC, Host
from l2vpc.engine.placement import pick_edge_host, place_dhcp
from l2vpc.engine.store.base import StoredObject

HOST_STATUSES = ("up", "down")


def check_verdict(status: str) -> None:
    if status not in HOST_STATUSES:
        raise ValidationError(f"must be 'up' or 'down', got {status!r}", path="status")


def set_host_status(cx: Context, name: str, status: str) -> list[str]:
    """Record the verdict on host `name`, then `evacuate`; returns what moved, one line each."""
    check_verdict(status)
    so = cx.tx.get("host", name)
    if so is None:
        raise NotFoundError("host", name)
    if so.data.get("status", "up") != status:
        cx.tx.update("host", name, {**so.data, "status": status}, so.generation)
    return evacuate(cx)


def evacuate(cx: Context) -> list[str]:
    """Move services off hosts that are down (see the module docstring); what moved, one line each."""
    hosts = cx.hosts()
    down = {n for n, h in hosts.items() if h.status == "down"}
    out = _move_dhcp_servers(cx, hosts, down)
    if down:
        out += _move_direct_connects(cx, hosts, down)
        out += _move_vpns(cx, hosts, down)
    return out


def _move_dhcp_servers(cx: Context, hosts: dict[str, Host], down: set[str]) -> list[str]:
    out: list[str] = []
    for so in cx.tx.list("vpc"):
        current = so.data.get("dhcp_host")
        if not so.data.get("dhcp") or (current and current not in down):
            continue
        vpc = VPC.model_validate(so.data)
        placed = place_dhcp(vpc, cx.members(vpc.id), hosts)
        if placed.dhcp_host == current:
            continue
        cx.tx.update("vpc", vpc.id, dump(placed), so.generation)
        if placed.dhcp_host is None:
            out.append(f"dhcp server of {vpc.id} stopped on {current} (down): no other up host carries the VPC")
        elif current is None:
            out.append(f"dhcp server of {vpc.id} placed on {placed.dhcp_host}")
        else:
            out.append(f"dhcp server of {vpc.id} moved from {current} to {placed.dhcp_host}")
    return out


# Where a service goes: (its new host, other fields that change, a note for the report line);
# raises ValidationError when there is nowhere to go. `load`: services per host.
Placer = Callable[[StoredObject, Counter[str]], tuple[str, dict[str, Any], str]]


def _move_direct_connects(cx: Context, hosts: dict[str, Host], down: set[str]) -> list[str]:
    def place(so: StoredObject, load: Counter[str]) -> tuple[str, dict[str, Any], str]:
        return pick_edge_host(hosts.values(), so.data.get("location"), load, None).name, {}, ""

    return _move_services(cx, "direct_connect", "edge_host", "direct connect", down, place)


def _move_vpns(cx: Context, hosts: dict[str, Host], down: set[str]) -> list[str]:
    def place(so: StoredObject, load: Counter[str]) -> tuple[str, dict[str, Any], str]:
        edge = pick_edge_host(hosts.values(), None, load, None, public=True)
        public = alloc.allocate_public_ip(cx.tx, edge, so.id)  # from the new host's block
        cx.tx.release_owner(so.id, pool=alloc.pool_ip(alloc.public_space(so.data["vpn_host"])))
        return edge.name, {"public_ip": public}, f" (public ip {so.data.get('public_ip')} -> {public})"

    return _move_services(cx, "vpn", "vpn_host", "vpn", down, place)


def _move_services(cx: Context, kind: str, field: str, label: str, down: set[str], place: Placer) -> list[str]:
    """Every `kind` object whose host (`field`) is down, to where `place` puts it."""
    out: list[str] = []
    objects = cx.tx.list(kind)
    load = Counter(str(o.data.get(field)) for o in objects if o.data.get(field))
    for so in objects:
        old = so.data.get(field)
        if old not in down:
            continue
        try:
            new, changes, note = place(so, load)
        except ValidationError as e:
            out.append(f"{label} {so.id} stays on {old} (down): {e.first[1]}")
            continue
        cx.tx.update(kind, so.id, {**so.data, field: new, **changes}, so.generation)
        load[new] += 1
        load[str(old)] -= 1
        out.append(f"{label} {so.id} moved from {old} to {new}{note}")
    return out
