"""Actual × desired host config → changes: one vocabulary for the engine and the agents. Pure.

A `Change` takes one item (segment, port, DHCP server, edge router, VPN gateway) from what a
host runs to what it should run:

    action      create | update | replace | delete
    how         for an update, what applying it costs: live (in place), reload (the daemon
                re-reads its data), restart (the daemon restarts), reconfigure (the daemon gets
                a new configuration: its session restarts)
    disruptive  traffic through the item stops for a moment: a workload's interface goes away
                or is recreated, a BGP session or an IPsec tunnel drops
    detail      the changed fields, old -> new; never a secret value (secrets are compared
                through `secret_digest` only)

`diff(actual, desired)` lists the changes (the engine groups them per host and renders them);
`steps(changes)` is the order an agent carries them out: a replace becomes a delete early and a
create late, items leave before the segment under them, segments come before what sits on them.
`depends_on` names the paths of steps that must succeed first (a port needs its new segment; a
segment goes only after everything on it left).

What each change costs:
- ports: identity (VNI, workload, interface name, MAC, kind, restart epoch) → replace;
  MTU, addressing, routes, port security and its allowed addresses → live;
- DHCP servers: reservations only → reload, anything else → restart; leases survive both;
- segments: MTU, remotes, VPC → live;
- edge routers: where the router sits (VNI, mode, hand-off, MTU, gateway address, peering
  address) → replace; BGP peer, ASNs, advertised prefixes or a secret → reconfigure;
  bandwidth, VLAN → live;
- VPN gateways: where it sits (VNI, addresses, outside device and gateway, MTU) → replace;
  peer, proposals, lifetimes, DPD, selectors or the pre-shared key → reconfigure.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from l2vpc.hostconfig.model import (
    DhcpServer,
    EdgeRouter,
    HostConfig,
    Port,
    Segment,
    VpnGateway,
    blank_secrets,
    plain,
)

Kind = Literal["segment", "port", "dhcp_server", "edge_router", "vpn_gateway"]
ChangeAction = Literal["create", "update", "replace", "delete"]
How = Literal["", "live", "reload", "restart", "reconfigure"]
Item = Segment | Port | DhcpServer | EdgeRouter | VpnGateway

_T = TypeVar("_T")

KINDS: tuple[Kind, ...] = ("segment", "port", "dhcp_server", "edge_router", "vpn_gateway")


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


def item_path(kind: Kind, item: Item) -> str:
    """The path naming `item` in a HostConfig (and in agents' reports and failures)."""
    if kind == "segment" or kind == "dhcp_server":
        assert isinstance(item, Segment | DhcpServer)
        return segment_path(item.vni) if kind == "segment" else dhcp_path(item.vni)
    assert isinstance(item, Port | EdgeRouter | VpnGateway)
    return {"port": port_path, "edge_router": edge_path, "vpn_gateway": vpn_path}[kind](item.id)


def items(cfg: HostConfig | None, kind: Kind) -> tuple[Item, ...]:
    if cfg is None:
        return ()
    if kind == "segment":
        return cfg.segments
    if kind == "port":
        return cfg.ports
    if kind == "dhcp_server":
        return cfg.dhcp_servers
    if kind == "edge_router":
        return cfg.edge_routers
    return cfg.vpn_gateways


@dataclass(frozen=True, slots=True)
class Change:
    """One item's change. `before` is what the host runs (None for create), `after` what it
    should run (None for delete)."""

    kind: Kind
    path: str
    action: ChangeAction
    before: Item | None = None
    after: Item | None = None
    how: How = ""
    detail: str = ""
    disruptive: bool = False
    depends_on: tuple[str, ...] = ()

    @property
    def item(self) -> Item:
        item = self.after if self.after is not None else self.before
        assert item is not None
        return item

    @property
    def verb(self) -> str:
        """The action, or for an update how it is applied when that is more than live."""
        return self.how if self.action == "update" and self.how not in ("", "live") else self.action

    @property
    def disruption(self) -> str:
        """What a disruptive change interrupts, in words ('' when it interrupts nothing)."""
        if not self.disruptive:
            return ""
        if self.kind == "port":
            return "restarts workload interface"
        if self.kind == "edge_router":
            return "restarts the BGP session" if self.item_mode() == "layer3" else "interrupts the layer-2 extension"
        if self.kind == "vpn_gateway":
            return "re-establishes the tunnel"
        return "interrupts traffic"

    def item_mode(self) -> str:
        item = self.item
        return item.mode if isinstance(item, EdgeRouter) else ""

    def to_dict(self) -> dict[str, Any]:
        """Plain data for output: secrets blanked (they never leave the engine's pushes)."""
        return {
            "kind": self.kind,
            "path": self.path,
            "action": self.action,
            "how": self.how,
            "before": blank_secrets(plain(self.before)) if self.before is not None else None,
            "after": blank_secrets(plain(self.after)) if self.after is not None else None,
            "depends_on": list(self.depends_on),
            "disruptive": self.disruptive,
            "detail": self.detail,
        }


# Fields by what changing them costs (see the module docstring). `bgp.local_ip` is the peering
# address on the hand-off, so it is part of where an edge router sits.
_PORT_IDENTITY = ("vni", "workload", "interface_name", "mac", "workload_kind", "restart_epoch")
_PORT_LIVE = ("mtu", "ip_mode", "ip_address", "routes", "dhcp_options", "port_security", "allowed_addresses")
_DHCP_RESTART = ("server_ip", "range_start", "range_end", "lease_time", "gateway", "dns_servers", "routes", "mtu")
_EDGE_REPLACE = ("vni", "mode", "handoff", "mtu", "gateway_ip")
_EDGE_LIVE = ("bandwidth_mbps", "vlan")
_BGP_RECONFIGURE = ("local_asn", "peer_asn", "peer_ip", "advertised")
_VPN_REPLACE = ("vni", "gateway_ip", "outside_ip", "outside", "mtu", "outside_gateway")
_VPN_RECONFIGURE = ("peer_address", "peer_id", "local_cidrs", "remote_cidrs", "ike_proposal", "esp_proposal",
                    "ike_lifetime", "esp_lifetime", "dpd_interval", "dpd_timeout")


def _changes(old: object, new: object, fields: Iterable[str], prefix: str = "") -> str:
    return "; ".join(f"{prefix}{f} {getattr(old, f)!r} -> {getattr(new, f)!r}" for f in fields
                     if getattr(old, f) != getattr(new, f))


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def port_change(old: Port, new: Port) -> tuple[ChangeAction, How, str]:
    identity = [f for f in _PORT_IDENTITY if getattr(old, f) != getattr(new, f)]
    if identity:
        if "restart_epoch" in identity:
            return "replace", "", "VPC scope converted: the workload restarts its interface"
        return "replace", "", _changes(old, new, identity)
    return "update", "live", _changes(old, new, _PORT_LIVE)


def dhcp_change(old: DhcpServer, new: DhcpServer) -> tuple[ChangeAction, How, str]:
    restart = _changes(old, new, _DHCP_RESTART)
    gone = len(set(old.clients) - set(new.clients))
    released = f"{gone} lease(s) released" if gone else ""
    if restart:
        return "update", "restart", _join(restart, released)
    if old.reservations != new.reservations:
        return "update", "reload", _join(f"reservations {len(old.reservations)} -> {len(new.reservations)}", released)
    return "update", "live", f"clients {len(old.clients)} -> {len(new.clients)}" + (f", {released}" if gone else "")


def segment_change(old: Segment, new: Segment) -> tuple[ChangeAction, How, str]:
    added = sorted(set(new.remotes) - set(old.remotes))
    gone = sorted(set(old.remotes) - set(new.remotes))
    remotes = "remotes " + " ".join([f"+{r}" for r in added] + [f"-{r}" for r in gone]) if added or gone else ""
    return "update", "live", _join(_changes(old, new, ("vpc_id", "vpc_name", "mtu")), remotes)


def edge_change(old: EdgeRouter, new: EdgeRouter) -> tuple[ChangeAction, How, str]:
    old_local = old.bgp.local_ip if old.bgp else None
    new_local = new.bgp.local_ip if new.bgp else None
    moved = _changes(old, new, _EDGE_REPLACE)
    if moved or old_local != new_local or (old.bgp is None) != (new.bgp is None):
        local = f"bgp.local_ip {old_local!r} -> {new_local!r}" if old_local != new_local else ""
        return "replace", "", _join(moved, local) or "bgp added or removed"
    live = _changes(old, new, _EDGE_LIVE)
    bgp = _changes(old.bgp, new.bgp, _BGP_RECONFIGURE, prefix="bgp.") if old.bgp and new.bgp else ""
    secret = "secret_digest changed" if old.secret_digest != new.secret_digest else ""
    if bgp or secret:
        return "update", "reconfigure", _join(bgp, secret, live)
    return "update", "live", live


def vpn_change(old: VpnGateway, new: VpnGateway) -> tuple[ChangeAction, How, str]:
    moved = _changes(old, new, _VPN_REPLACE)
    if moved:
        return "replace", "", moved
    secret = "secret_digest changed" if old.secret_digest != new.secret_digest else ""
    return "update", "reconfigure", _join(_changes(old, new, _VPN_RECONFIGURE), secret)


_CLASSIFY: Mapping[Kind, Any] = {
    "segment": segment_change, "port": port_change, "dhcp_server": dhcp_change,
    "edge_router": edge_change, "vpn_gateway": vpn_change,
}


def _disruptive(kind: Kind, action: ChangeAction, how: How) -> bool:
    if kind in ("segment", "dhcp_server"):
        return False  # a segment's members go first; leases outlive a dnsmasq restart
    if action in ("delete", "replace"):
        return True
    return how == "reconfigure"


def _keyed(cfg: HostConfig | None, kind: Kind) -> dict[str, Item]:
    return {item_path(kind, i): i for i in items(cfg, kind)}


def diff(actual: HostConfig | None, desired: HostConfig | None) -> tuple[Change, ...]:
    """The changes that take `actual` to `desired` (None: nothing / the host leaves), in an
    order that can be replayed as it is (a topological order of `depends_on`): items deleted,
    segments created or updated, items created, updated or replaced, segments deleted; by kind
    and path within each. Equal items give no change; generation, labels and observations are
    not compared."""
    if actual is not None and desired is not None and actual.dataplane()[1:] == desired.dataplane()[1:]:
        return ()
    new_segments: set[int] = set()
    out: list[Change] = []
    for kind in KINDS:
        old, new = _keyed(actual, kind), _keyed(desired, kind)
        if old == new:
            continue
        for path in sorted(old.keys() | new.keys()):
            a, b = old.get(path), new.get(path)
            if a == b:
                continue
            if a is None:
                assert b is not None
                if kind == "segment":
                    assert isinstance(b, Segment)
                    new_segments.add(b.vni)
                out.append(Change(kind, path, "create", None, b, depends_on=_on_new_segment(kind, b, new_segments)))
            elif b is None:
                out.append(Change(kind, path, "delete", a, None, disruptive=_disruptive(kind, "delete", "")))
            else:
                action, how, detail = _CLASSIFY[kind](a, b)
                deps = _on_new_segment(kind, b, new_segments) if action == "replace" else ()
                out.append(Change(kind, path, action, a, b, how, detail, _disruptive(kind, action, how), deps))
    return _in_dependency_order(out)


def _on_new_segment(kind: Kind, item: Item, new_segments: set[int]) -> tuple[str, ...]:
    if kind != "segment" and item.vni in new_segments:
        return (segment_path(item.vni),)
    return ()


def _in_dependency_order(changes: list[Change]) -> tuple[Change, ...]:
    """Deleted items, segment creates/updates, other items, segment deletes; a deleted segment
    depends on everything leaving its VNI (deleted items, items replaced onto another VNI)."""
    def rank(c: Change) -> int:
        if c.kind == "segment":
            return 3 if c.action == "delete" else 1
        return 0 if c.action == "delete" else 2

    changes = sorted(changes, key=rank)  # stable: kind and path order kept within a rank
    gone = {c.before.vni for c in changes if c.kind == "segment" and c.action == "delete" and c.before}
    if not gone:
        return tuple(changes)
    leaving: dict[int, list[str]] = {}
    for c in changes:
        if c.kind == "segment" or c.before is None or c.before.vni not in gone:
            continue
        if c.action == "delete" or (c.action == "replace" and c.after is not None and c.after.vni != c.before.vni):
            leaving.setdefault(c.before.vni, []).append(c.path)
    out = []
    for c in changes:
        if c.kind == "segment" and c.action == "delete" and c.before is not None and leaving.get(c.before.vni):
            c = Change(c.kind, c.path, c.action, c.before, None, c.how, c.detail, c.disruptive,
                       tuple(sorted(leaving[c.before.vni])))
        out.append(c)
    return tuple(out)


# Removal order on a live host: ports, then edge routers and VPN gateways, then DHCP servers,
# then the segments under them. Additions: segments first, then DHCP servers, ports, edges.
_REMOVE_RANK: Mapping[Kind, int] = {"port": 0, "edge_router": 1, "vpn_gateway": 1, "dhcp_server": 2, "segment": 3}
_ADD_RANK: Mapping[Kind, int] = {"segment": 0, "dhcp_server": 1, "port": 2, "edge_router": 3, "vpn_gateway": 3}


def steps(changes: Iterable[Change]) -> list[Change]:
    """The order an agent carries `changes` out, each step a create, update or delete: a
    replace becomes a delete (early, with the replace's detail) and a create (late)."""
    removals: list[Change] = []
    additions: list[Change] = []
    for c in changes:
        if c.action == "delete":
            removals.append(c)
        elif c.action == "replace":
            removals.append(Change(c.kind, c.path, "delete", c.before, None, "", "replace: " + c.detail, True))
            additions.append(Change(c.kind, c.path, "create", None, c.after, "", "replace: " + c.detail, True,
                                    c.depends_on))
        else:
            additions.append(c)
    removals.sort(key=lambda c: _REMOVE_RANK[c.kind])
    additions.sort(key=lambda c: _ADD_RANK[c.kind])
    return removals + additions


@dataclass(frozen=True, slots=True)
class Action:
    """One change a converge made (a step carried out): verb + the path of the object + a human detail."""

    verb: str  # create | delete | update | reload | restart | reconfigure (Change.verb)
    path: str  # e.g. "segments[vni=100]", "ports[id=a1].mtu"
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.verb} {self.path}" + (f" ({self.detail})" if self.detail else "")



def apply_changes(actual: HostConfig | None, changes: Iterable[Change], host: str = "",
                  underlay_ip: str = "") -> HostConfig:
    """Replay changes (or steps) on a config, checking that every step comes after what it
    depends on: the contract the property tests check is apply_changes(A, diff(A, B)) == B."""
    keyed: dict[Kind, dict[str, Item]] = {kind: _keyed(actual, kind) for kind in KINDS}
    done: set[str] = set()
    for c in changes:
        missing = [d for d in c.depends_on if d not in done]
        if missing:
            raise ValueError(f"{c.path} runs before what it depends on: {missing}")
        if c.action == "delete":
            keyed[c.kind].pop(c.path, None)
        else:
            assert c.after is not None
            keyed[c.kind][c.path] = c.after
        done.add(c.path)
    return HostConfig(
        host=actual.host if actual else host,
        underlay_ip=actual.underlay_ip if actual else underlay_ip,
        generation=actual.generation if actual else 0,
        segments=tuple(sorted(_of(keyed["segment"], Segment), key=lambda s: s.vni)),
        ports=tuple(sorted(_of(keyed["port"], Port), key=lambda p: p.id)),
        dhcp_servers=tuple(sorted(_of(keyed["dhcp_server"], DhcpServer), key=lambda d: d.vni)),
        edge_routers=tuple(sorted(_of(keyed["edge_router"], EdgeRouter), key=lambda e: e.id)),
        vpn_gateways=tuple(sorted(_of(keyed["vpn_gateway"], VpnGateway), key=lambda v: v.id)),
    )


def _of(values: dict[str, Item], cls: type[_T]) -> Iterator[_T]:
    for v in values.values():
        assert isinstance(v, cls)
        yield v
