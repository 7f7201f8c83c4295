"""Desired × actual host configs of every host → a plan, grouped by host and printable. Pure.

The changes themselves come from the shared host model (`l2vpc.hostconfig.diff`), the same
function the agents converge with, so a plan shows exactly what the agents will do: which
interfaces restart, which BGP sessions and tunnels drop (`disruptive`). This module groups them
per host, counts and renders them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from l2vpc.engine.gcpause import paused_gc
from l2vpc.hostconfig import DhcpServer, EdgeRouter, HostConfig, Port, Segment, VpnGateway
from l2vpc.hostconfig.diff import Change, diff


@dataclass(frozen=True)
class HostPlan:
    host: str
    desired: HostConfig | None  # None: the host leaves (all its items removed)
    changes: tuple[Change, ...]


@dataclass(frozen=True)
class Plan:
    hosts: Mapping[str, HostPlan] = field(default_factory=dict)

    def changes(self) -> list[tuple[str, Change]]:
        """(host, change) for every change, hosts by name."""
        with paused_gc():  # a list as long as the plan: see gcpause.py
            return [(name, c) for name in sorted(self.hosts) for c in self.hosts[name].changes]

    @property
    def is_empty(self) -> bool:
        return not any(hp.changes for hp in self.hosts.values())

    def counts(self) -> dict[str, int]:
        out = {"create": 0, "update": 0, "replace": 0, "delete": 0, "disruptive": 0}
        for hp in self.hosts.values():
            for c in hp.changes:
                out[c.action] += 1
                out["disruptive"] += c.disruptive
        return out

    def to_dict(self) -> dict[str, Any]:
        with paused_gc():
            return self._to_dict()

    def _to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.counts(),
            "hosts": {name: [c.to_dict() for c in hp.changes] for name, hp in sorted(self.hosts.items()) if hp.changes},
        }

    def render(self, vpc_names: Mapping[str, str] | None = None) -> str:
        """Human-readable plan, one line per change, grouped by host."""
        with paused_gc():
            return self._render(vpc_names)

    def _render(self, vpc_names: Mapping[str, str] | None) -> str:
        names = vpc_names or {}
        if self.is_empty:
            return "No changes. Every host already runs its desired configuration."
        lines: list[str] = []
        sym = {"create": "+", "delete": "-", "update": "~", "replace": "-/+"}
        for name, hp in sorted(self.hosts.items()):
            if not hp.changes:
                continue
            lines.append(f"host {name}:")
            for c in hp.changes:
                how = f"{c.how}: " if c.how not in ("", "live") else ""
                detail = f" ({how}{c.detail})" if c.detail or how else ""
                mark = f"  [{c.disruption}]" if c.disruptive else ""
                lines.append(f"  {sym[c.action]:>3} {describe(c, names)}{detail}{mark}")
        n = self.counts()
        lines.append(
            f"Plan: {n['create']} to create, {n['update']} to update, {n['replace']} to replace, "
            f"{n['delete']} to delete; {n['disruptive']} disruptive."
        )
        return "\n".join(lines)


def describe(c: Change, vpc_names: Mapping[str, str]) -> str:
    item = c.item
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


def plan(desired: Mapping[str, HostConfig], actual: Mapping[str, HostConfig]) -> Plan:
    """The whole plan: every host that is desired or reported."""
    with paused_gc():
        return Plan(plan_hosts(desired.keys() | actual.keys(), desired, actual))


def plan_hosts(
    names: Iterable[str], desired: Mapping[str, HostConfig], actual: Mapping[str, HostConfig]
) -> dict[str, HostPlan]:
    """Plans for some hosts only (incremental planning)."""
    return {n: HostPlan(n, desired.get(n), diff(actual.get(n), desired.get(n))) for n in names}
