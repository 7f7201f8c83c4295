"""Desired × actual host configs → an ordered plan of host operations. Pure: no I/O.

An operation changes one item (segment, port or DHCP server) on one host. Within a host,
operations are ordered so that a segment exists before its ports and DHCP server, and ports
and the DHCP server go before their segment is removed; `depends_on` records those edges and
`operations` is a topological order of them. `disruptive` marks operations that interrupt a
workload's traffic (a port recreated, e.g. after a scope conversion or a MAC change).

`apply_operations(actual, ops)` replays a host's operations on its config; the planner's
contract (checked by property tests) is apply_operations(A, plan(A→B)) == B and plan(B→B) = ∅.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from l2vpc.engine.gcpause import paused_gc
from l2vpc.hostconfig import DhcpServer, EdgeRouter, HostConfig, Port, Segment, VpnGateway

Action = Literal["create", "update", "delete", "replace"]
Kind = Literal["segment", "port", "dhcp", "edge_router", "vpn_gateway"]
Item = Segment | Port | DhcpServer | EdgeRouter | VpnGateway

# Port fields whose change needs the interface recreated (the workload sees a link flap).
_PORT_REPLACE_FIELDS = ("vni", "workload", "interface_name", "mac", "workload_kind", "restart_epoch")


@dataclass(frozen=True, slots=True)
class Operation:
    id: str  # "<host>/<kind>/<key>"
    host: str
    action: Action
    kind: Kind
    key: str
    before: Item | None
    after: Item | None
    depends_on: tuple[str, ...] = ()
    disruptive: bool = False
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {
            "id": self.id,
            "host": self.host,
            "action": self.action,
            "kind": self.kind,
            "key": self.key,
            "before": asdict(self.before) if self.before is not None else None,
            "after": asdict(self.after) if self.after is not None else None,
            "depends_on": list(self.depends_on),
            "disruptive": self.disruptive,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class HostPlan:
    host: str
    desired: HostConfig | None  # None: the host leaves (all its items removed)
    operations: tuple[Operation, ...]


@dataclass(frozen=True)
class Plan:
    hosts: Mapping[str, HostPlan] = field(default_factory=dict)

    @property
    def operations(self) -> list[Operation]:
        return [op for name in sorted(self.hosts) for op in self.hosts[name].operations]

    @property
    def is_empty(self) -> bool:
        return not any(hp.operations for hp in self.hosts.values())

    def counts(self) -> dict[str, int]:
        out = {"create": 0, "update": 0, "replace": 0, "delete": 0, "disruptive": 0}
        for op in self.operations:
            out[op.action] += 1
            out["disruptive"] += op.disruptive
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.counts(),
            "hosts": {
                name: [op.to_dict() for op in hp.operations]
                for name, hp in sorted(self.hosts.items())
                if hp.operations
            },
        }

    def render(self, vpc_names: Mapping[str, str] | None = None) -> str:
        """Human-readable plan, one line per operation, grouped by host."""
        names = vpc_names or {}
        if self.is_empty:
            return "No changes. Every host already runs its desired configuration."
        lines: list[str] = []
        sym = {"create": "+", "delete": "-", "update": "~", "replace": "-/+"}
        for name, hp in sorted(self.hosts.items()):
            if not hp.operations:
                continue
            lines.append(f"host {name}:")
            for op in hp.operations:
                mark = "  [restarts workload interface]" if op.disruptive else ""
                detail = f" ({op.reason})" if op.reason else ""
                lines.append(f"  {sym[op.action]:>3} {describe(op, names)}{detail}{mark}")
        c = self.counts()
        lines.append(
            f"Plan: {c['create']} to create, {c['update']} to update, {c['replace']} to replace, "
            f"{c['delete']} to delete; {c['disruptive']} disruptive."
        )
        return "\n".join(lines)


def describe(op: Operation, vpc_names: Mapping[str, str]) -> str:
    item = op.after or op.before
    if isinstance(item, Segment):
        return f"segment vni {item.vni} (vpc {vpc_names.get(item.vpc_id, item.vpc_id)}, mtu {item.mtu}, {len(item.remotes)} remote hosts)"
    if isinstance(item, Port):
        addr = item.ip_address or item.ip_mode
        return f"port {item.workload}/{item.interface_name} on vni {item.vni} ({item.mac}, {addr}) [{item.id}]"
    if isinstance(item, EdgeRouter):
        return f"direct connect {item.id} ({item.mode}, {item.bandwidth_mbps} Mbps) on vni {item.vni} via {item.handoff}"
    if isinstance(item, VpnGateway):
        return f"vpn gateway {item.id} on vni {item.vni} at {item.gateway_ip}, peer {item.peer_address}"
    assert isinstance(item, DhcpServer)
    return f"dhcp server vni {item.vni} at {item.server_ip} ({len(item.reservations)} reservations)"


def _key(kind: Kind, item: Item) -> str:
    if kind == "segment":
        assert isinstance(item, Segment)
        return f"vni-{item.vni}"
    if kind == "dhcp":
        assert isinstance(item, DhcpServer)
        return f"vni-{item.vni}"
    assert isinstance(item, Port | EdgeRouter | VpnGateway)
    return item.id


def _changed_fields(a: Any, b: Any) -> list[str]:
    return [f for f in a.__slots__ if getattr(a, f) != getattr(b, f)]


def _diff_items(
    host: str, kind: Kind, before: Iterable[Item], after: Iterable[Item],
    deps_for: Callable[[Item], tuple[str, ...]] | None = None,
) -> list[Operation]:
    old = {_key(kind, i): i for i in before}
    new = {_key(kind, i): i for i in after}
    ops: list[Operation] = []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        oid = f"{host}/{kind}/{key}"
        deps = deps_for(b) if deps_for is not None and b is not None else ()
        if a is None:
            ops.append(Operation(oid, host, "create", kind, key, None, b, deps))
        elif b is None:
            ops.append(Operation(oid, host, "delete", kind, key, a, None, disruptive=kind == "port"))
        else:
            changed = _changed_fields(a, b)
            replace = kind == "port" and any(f in _PORT_REPLACE_FIELDS for f in changed)
            reason = "changed: " + ", ".join(changed)
            if kind == "port" and "restart_epoch" in changed:
                reason = "VPC scope converted: the workload restarts its interface"
            ops.append(
                Operation(oid, host, "replace" if replace else "update", kind, key, a, b, deps,
                          disruptive=replace, reason=reason)
            )
    return ops


def _vni(item: Item | None) -> int:
    assert item is not None
    return item.vni


def diff_host(host: str, desired: HostConfig | None, actual: HostConfig | None) -> tuple[Operation, ...]:
    """Operations that take `actual` to `desired` on one host, in dependency order."""
    if desired is not None and actual is not None and desired.dataplane()[1:] == actual.dataplane()[1:]:
        return ()
    seg_ops = _diff_items(host, "segment", actual.segments if actual else (), desired.segments if desired else ())
    # Ports and DHCP servers that are (re)created or updated depend on their segment's creation
    # or update in the same plan.
    seg_dep = {_vni(op.after): (op.id,) for op in seg_ops if op.action != "delete"}

    def deps_for(item: Item) -> tuple[str, ...]:
        return seg_dep.get(item.vni, ())

    port_ops = _diff_items(host, "port", actual.ports if actual else (), desired.ports if desired else (), deps_for)
    dhcp_ops = _diff_items(host, "dhcp", actual.dhcp_servers if actual else (),
                           desired.dhcp_servers if desired else (), deps_for)
    edge_ops = _diff_items(host, "edge_router", actual.edge_routers if actual else (),
                           desired.edge_routers if desired else (), deps_for)
    vpn_ops = _diff_items(host, "vpn_gateway", actual.vpn_gateways if actual else (),
                          desired.vpn_gateways if desired else (), deps_for)
    members = port_ops + dhcp_ops + edge_ops + vpn_ops
    if not (seg_ops or members):
        return ()
    removals = [op for op in members if op.action == "delete"]
    additions = [op for op in members if op.action != "delete"]
    if any(op.action == "delete" for op in seg_ops):
        # A segment goes after everything leaving its VNI: deleted items and ports replaced away.
        leaving: dict[int, list[str]] = {}
        for op in removals:
            leaving.setdefault(_vni(op.before), []).append(op.id)
        for op in additions:
            if op.action == "replace" and _vni(op.before) != _vni(op.after):
                leaving.setdefault(_vni(op.before), []).append(op.id)
        seg_ops = [_with_deps(op, leaving.get(_vni(op.before), [])) if op.action == "delete" else op
                   for op in seg_ops]
    seg_deletes = [op for op in seg_ops if op.action == "delete"]
    seg_rest = [op for op in seg_ops if op.action != "delete"]
    # Order: removals, segment creates/updates, additions, segment deletes (a topological order).
    return tuple(removals + seg_rest + additions + seg_deletes)


def _with_deps(op: Operation, deps: list[str]) -> Operation:
    if not deps:
        return op
    return Operation(op.id, op.host, op.action, op.kind, op.key, op.before, op.after,
                     tuple(sorted(set(deps))), op.disruptive, op.reason)


def plan(desired: Mapping[str, HostConfig], actual: Mapping[str, HostConfig]) -> Plan:
    """The whole plan: every host that is desired or reported."""
    hosts: dict[str, HostPlan] = {}
    with paused_gc():
        for name in desired.keys() | actual.keys():
            d, a = desired.get(name), actual.get(name)
            hosts[name] = HostPlan(name, d, diff_host(name, d, a))
    return Plan(hosts)


def plan_hosts(
    names: Iterable[str], desired: Mapping[str, HostConfig], actual: Mapping[str, HostConfig]
) -> dict[str, HostPlan]:
    """Plans for a subset of hosts only (incremental planning)."""
    return {n: HostPlan(n, desired.get(n), diff_host(n, desired.get(n), actual.get(n))) for n in names}


def apply_operations(actual: HostConfig | None, ops: Iterable[Operation], host: str = "",
                     underlay_ip: str = "") -> HostConfig:
    """Replay operations on a config (the memory agent and the property tests use this)."""
    items: dict[Kind, dict[str, Any]] = {
        "segment": {f"vni-{s.vni}": s for s in (actual.segments if actual else ())},
        "port": {p.id: p for p in (actual.ports if actual else ())},
        "dhcp": {f"vni-{d.vni}": d for d in (actual.dhcp_servers if actual else ())},
        "edge_router": {e.id: e for e in (actual.edge_routers if actual else ())},
        "vpn_gateway": {v.id: v for v in (actual.vpn_gateways if actual else ())},
    }
    done: set[str] = set()
    for op in ops:
        missing = [d for d in op.depends_on if d not in done]
        if missing:
            raise ValueError(f"operation {op.id} runs before its dependencies {missing}")
        if op.action == "delete":
            items[op.kind].pop(op.key, None)
        else:
            items[op.kind][op.key] = op.after
        done.add(op.id)
    return HostConfig(
        host=actual.host if actual else host,
        underlay_ip=actual.underlay_ip if actual else underlay_ip,
        generation=actual.generation if actual else 0,
        segments=tuple(sorted(items["segment"].values(), key=lambda s: s.vni)),
        ports=tuple(sorted(items["port"].values(), key=lambda p: p.id)),
        dhcp_servers=tuple(sorted(items["dhcp"].values(), key=lambda d: d.vni)),
        edge_routers=tuple(sorted(items["edge_router"].values(), key=lambda e: e.id)),
        vpn_gateways=tuple(sorted(items["vpn_gateway"].values(), key=lambda v: v.id)),
    )
