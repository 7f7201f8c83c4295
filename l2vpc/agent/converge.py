"""Plan the operations that take a host from its actual config to the desired one (pure).

`plan(actual, desired)` compares two HostConfigs object by object (segments by VNI, ports by
id, DHCP servers by VNI) and returns an ordered list of `Op`s; an empty list means the host
already runs the desired config. Drivers carry the ops out one at a time.

Order matters for a live host: ports and DHCP servers leave before the segment under them,
segments come before whatever sits on them. A port whose identity changes (VNI, workload,
interface name, MAC, kind, restart epoch) is removed early and created late; changes that
can be applied to a running interface (MTU, addressing, routes) are one `update`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from l2vpc.hostconfig import DhcpServer, HostConfig, Port, Segment

Kind = Literal["segment", "port", "dhcp_server"]
Verb = Literal["create", "remove", "update", "reload", "restart"]
Obj = Segment | Port | DhcpServer


@dataclass(frozen=True, slots=True)
class Op:
    """One step. `old` is the actual object (None for create), `new` the desired (None for remove)."""

    verb: Verb
    kind: Kind
    path: str
    old: Obj | None = None
    new: Obj | None = None
    detail: str = ""
    # Paths of ops in the same plan that must succeed first (a port needs its new segment).
    depends_on: tuple[str, ...] = ()


def segment_path(vni: int) -> str:
    return f"segments[vni={vni}]"


def port_path(port_id: str) -> str:
    return f"ports[id={port_id}]"


def dhcp_path(vni: int) -> str:
    return f"dhcp_servers[vni={vni}]"


# Port fields whose change means a new interface in the workload; the rest apply live.
_PORT_IDENTITY = ("vni", "workload", "interface_name", "mac", "workload_kind", "restart_epoch")


def port_needs_recreate(old: Port, new: Port) -> list[str]:
    return [f for f in _PORT_IDENTITY if getattr(old, f) != getattr(new, f)]


def dhcp_needs_restart(old: DhcpServer, new: DhcpServer) -> list[str]:
    """Fields whose change needs a dnsmasq restart; reservations alone only need a reload."""
    fields = ("server_ip", "range_start", "range_end", "lease_time", "gateway", "dns_servers", "routes")
    return [f for f in fields if getattr(old, f) != getattr(new, f)]


def _changes(old: object, new: object, fields: tuple[str, ...]) -> str:
    return "; ".join(f"{f} {getattr(old, f)!r} -> {getattr(new, f)!r}" for f in fields if getattr(old, f) != getattr(new, f))


def plan(actual: HostConfig, desired: HostConfig) -> list[Op]:
    a, d = actual.normalized(), desired.normalized()
    a_seg = {s.vni: s for s in a.segments}
    d_seg = {s.vni: s for s in d.segments}
    a_port = {p.id: p for p in a.ports}
    d_port = {p.id: p for p in d.ports}
    a_dhcp = {x.vni: x for x in a.dhcp_servers}
    d_dhcp = {x.vni: x for x in d.dhcp_servers}

    removes: list[Op] = []
    seg_ops: list[Op] = []
    dhcp_ops: list[Op] = []
    port_ops: list[Op] = []
    created_segments = {vni for vni in d_seg if vni not in a_seg}

    def needs(vni: int) -> tuple[str, ...]:
        return (segment_path(vni),) if vni in created_segments else ()

    for pid, old_p in a_port.items():
        new_p = d_port.get(pid)
        if new_p is None:
            removes.append(Op("remove", "port", port_path(pid), old=old_p))
            continue
        why = port_needs_recreate(old_p, new_p)
        if why:
            detail = "recreate: " + _changes(old_p, new_p, tuple(why))
            removes.append(Op("remove", "port", port_path(pid), old=old_p, detail=detail))
            port_ops.append(Op("create", "port", port_path(pid), new=new_p, detail=detail, depends_on=needs(new_p.vni)))
        elif old_p != new_p:
            port_ops.append(
                Op("update", "port", port_path(pid), old=old_p, new=new_p,
                   detail=_changes(old_p, new_p, ("mtu", "ip_mode", "ip_address", "routes")))
            )
    for pid, new_p in d_port.items():
        if pid not in a_port:
            port_ops.append(Op("create", "port", port_path(pid), new=new_p, depends_on=needs(new_p.vni)))

    for vni, old_x in a_dhcp.items():
        new_x = d_dhcp.get(vni)
        if new_x is None:
            removes.append(Op("remove", "dhcp_server", dhcp_path(vni), old=old_x))
        elif old_x != new_x:
            why = dhcp_needs_restart(old_x, new_x)
            if why:
                dhcp_ops.append(Op("restart", "dhcp_server", dhcp_path(vni), old=old_x, new=new_x,
                                   detail=_changes(old_x, new_x, tuple(why))))
            else:
                dhcp_ops.append(Op("reload", "dhcp_server", dhcp_path(vni), old=old_x, new=new_x,
                                   detail="reservations"))
    for vni, new_x in d_dhcp.items():
        if vni not in a_dhcp:
            dhcp_ops.append(Op("create", "dhcp_server", dhcp_path(vni), new=new_x, depends_on=needs(vni)))

    for vni, old_s in a_seg.items():
        new_s = d_seg.get(vni)
        if new_s is None:
            removes.append(Op("remove", "segment", segment_path(vni), old=old_s))
        elif old_s != new_s:
            added = sorted(set(new_s.remotes) - set(old_s.remotes))
            gone = sorted(set(old_s.remotes) - set(new_s.remotes))
            parts = [_changes(old_s, new_s, ("vpc_id", "mtu"))]
            if added or gone:
                parts.append("remotes " + " ".join([f"+{r}" for r in added] + [f"-{r}" for r in gone]))
            seg_ops.append(Op("update", "segment", segment_path(vni), old=old_s, new=new_s,
                              detail="; ".join(p for p in parts if p)))
    for vni, new_s in d_seg.items():
        if vni not in a_seg:
            seg_ops.append(Op("create", "segment", segment_path(vni), new=new_s))

    # Removal order: ports, then DHCP servers, then the segments under them.
    rank = {"port": 0, "dhcp_server": 1, "segment": 2}
    removes.sort(key=lambda op: rank[op.kind])
    return removes + seg_ops + dhcp_ops + port_ops
