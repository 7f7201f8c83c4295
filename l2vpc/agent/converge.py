"""Plan the operations that take a host from its actual config to the desired one (pure).

`plan(actual, desired)` compares two HostConfigs object by object (segments by VNI, ports by
id, DHCP servers by VNI, edge routers and VPN gateways by id) and returns an ordered list of
`Op`s; an empty list means the host already runs the desired config. Drivers carry the ops
out one at a time.

Order matters for a live host: ports, DHCP servers, edge routers and VPN gateways leave before
the segment under them, segments come before whatever sits on them. A port whose identity
changes (VNI, workload, interface name, MAC, kind, restart epoch) is removed early and created
late; changes that can be applied to a running interface (MTU, addressing, routes) are one
`update`. Edge routers and VPN gateways follow the same pattern with three levels:

- `update`: only what the dataplane can change in place (an edge's bandwidth shaper, a layer-2
  VLAN filter); the BGP session is not touched;
- `reconfigure`: the routing daemon or IKE daemon gets a new configuration (BGP peer, ASNs,
  advertised prefixes, any secret: `secret_digest` changed); sessions may restart;
- recreate (a `remove` early plus a `create` late): where the item sits changed (VNI, mode,
  hand-off or outside device, addresses, MTU).

Op details name changed fields, never secret values (secrets are compared through
`secret_digest` only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from l2vpc.hostconfig import DhcpServer, EdgeRouter, HostConfig, Port, Segment, VpnGateway

Kind = Literal["segment", "port", "dhcp_server", "edge_router", "vpn_gateway"]
Verb = Literal["create", "remove", "update", "reload", "restart", "reconfigure"]
Obj = Segment | Port | DhcpServer | EdgeRouter | VpnGateway


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


def edge_path(edge_id: str) -> str:
    return f"edge_routers[id={edge_id}]"


def vpn_path(vpn_id: str) -> str:
    return f"vpn_gateways[id={vpn_id}]"


# Port fields whose change means a new interface in the workload; the rest apply live.
_PORT_IDENTITY = ("vni", "workload", "interface_name", "mac", "workload_kind", "restart_epoch")


def port_needs_recreate(old: Port, new: Port) -> list[str]:
    return [f for f in _PORT_IDENTITY if getattr(old, f) != getattr(new, f)]


def dhcp_needs_restart(old: DhcpServer, new: DhcpServer) -> list[str]:
    """Fields whose change needs a dnsmasq restart; reservations alone only need a reload."""
    fields = ("server_ip", "range_start", "range_end", "lease_time", "gateway", "dns_servers", "routes")
    return [f for f in fields if getattr(old, f) != getattr(new, f)]


# Edge router fields by what a change costs (see the module docstring); `bgp.local_ip` is the
# hand-off address, so it is part of where the router sits.
_EDGE_RECREATE = ("vni", "mode", "handoff", "mtu", "gateway_ip")
_EDGE_LIVE = ("bandwidth_mbps", "vlan")
_BGP_RECONFIGURE = ("local_asn", "peer_asn", "peer_ip", "advertised")
_VPN_RECREATE = ("vni", "gateway_ip", "outside_ip", "outside", "mtu", "outside_gateway")
_VPN_RECONFIGURE = ("peer_address", "peer_id", "local_cidrs", "remote_cidrs", "ike_proposal", "esp_proposal",
                    "ike_lifetime", "esp_lifetime", "dpd_interval", "dpd_timeout")


def edge_change(old: EdgeRouter, new: EdgeRouter) -> tuple[str, str]:
    """(verb, detail) taking `old` to `new`: "" (nothing), update, reconfigure or recreate."""
    recreate = [f for f in _EDGE_RECREATE if getattr(old, f) != getattr(new, f)]
    old_local = old.bgp.local_ip if old.bgp else None
    new_local = new.bgp.local_ip if new.bgp else None
    if recreate or old_local != new_local or (old.bgp is None) != (new.bgp is None):
        detail = _changes(old, new, tuple(recreate))
        if old_local != new_local:
            detail = "; ".join(x for x in (detail, f"bgp.local_ip {old_local!r} -> {new_local!r}") if x)
        return "recreate", detail
    parts = []
    if old.bgp is not None and new.bgp is not None and old.bgp != new.bgp:
        parts.append(_changes(old.bgp, new.bgp, _BGP_RECONFIGURE, prefix="bgp."))
    if old.secret_digest != new.secret_digest:
        parts.append("secret_digest changed")
    live = _changes(old, new, _EDGE_LIVE)
    if parts:
        return "reconfigure", "; ".join(p for p in (*parts, live) if p)
    return ("update", live) if live else ("", "")


def vpn_change(old: VpnGateway, new: VpnGateway) -> tuple[str, str]:
    """(verb, detail) taking `old` to `new`: "" (nothing), reconfigure or recreate."""
    recreate = [f for f in _VPN_RECREATE if getattr(old, f) != getattr(new, f)]
    if recreate:
        return "recreate", _changes(old, new, tuple(recreate))
    parts = [_changes(old, new, _VPN_RECONFIGURE)]
    if old.secret_digest != new.secret_digest:
        parts.append("secret_digest changed")
    detail = "; ".join(p for p in parts if p)
    return ("reconfigure", detail) if detail else ("", "")


def _changes(old: object, new: object, fields: tuple[str, ...], prefix: str = "") -> str:
    return "; ".join(f"{prefix}{f} {getattr(old, f)!r} -> {getattr(new, f)!r}" for f in fields
                     if getattr(old, f) != getattr(new, f))


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
    edge_ops: list[Op] = []
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

    _plan_items(
        "edge_router", edge_path, edge_change,
        {e.id: e for e in a.edge_routers}, {e.id: e for e in d.edge_routers}, needs, removes, edge_ops,
    )
    _plan_items(
        "vpn_gateway", vpn_path, vpn_change,
        {v.id: v for v in a.vpn_gateways}, {v.id: v for v in d.vpn_gateways}, needs, removes, edge_ops,
    )

    # Removal order: ports, edge routers and VPN gateways, DHCP servers, then the segments under them.
    rank = {"port": 0, "edge_router": 1, "vpn_gateway": 1, "dhcp_server": 2, "segment": 3}
    removes.sort(key=lambda op: rank[op.kind])
    return removes + seg_ops + dhcp_ops + port_ops + edge_ops


def _plan_items(
    kind: Kind,
    path: Callable[[str], str],
    change: Callable[[Any, Any], tuple[str, str]],
    actual: dict[str, EdgeRouter] | dict[str, VpnGateway],
    desired: dict[str, EdgeRouter] | dict[str, VpnGateway],
    needs: Callable[[int], tuple[str, ...]],
    removes: list[Op],
    ops: list[Op],
) -> None:
    """Edge routers and VPN gateways: keyed by id, sitting on a segment (see edge_change)."""
    for ident in sorted(actual):
        old = actual[ident]
        new = desired.get(ident)
        if new is None:
            removes.append(Op("remove", kind, path(ident), old=old))
            continue
        verb, detail = change(old, new)
        if verb == "recreate":
            removes.append(Op("remove", kind, path(ident), old=old, detail="recreate: " + detail))
            ops.append(Op("create", kind, path(ident), new=new, detail="recreate: " + detail,
                          depends_on=needs(new.vni)))
        elif verb == "update":
            ops.append(Op("update", kind, path(ident), old=old, new=new, detail=detail))
        elif verb == "reconfigure":
            ops.append(Op("reconfigure", kind, path(ident), old=old, new=new, detail=detail))
    for ident in sorted(desired):
        if ident not in actual:
            item = desired[ident]
            ops.append(Op("create", kind, path(ident), new=item, depends_on=needs(item.vni)))
