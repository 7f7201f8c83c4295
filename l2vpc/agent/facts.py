"""How a host's facts differ from its desired config, field by field (pure).

Drivers report facts as a HostConfig (`Driver.facts()`); this module names the differences so
that the agent can report drift readably ("segments[vni=100].remotes: want [...], have [...]")
and tests can assert on them. It ignores generation, labels and observations, like
`same_dataplane`, and never shows a secret: secret fields are compared through `secret_digest`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from l2vpc.hostconfig import SECRET_FIELDS, HostConfig
from l2vpc.hostconfig.diff import dhcp_path, edge_path, port_path, segment_path, vpn_path


@dataclass(frozen=True, slots=True)
class Drift:
    """One difference. For a whole missing or extra object, `path` names the object and one
    side is None; otherwise `path` names the field."""

    path: str
    desired: Any
    actual: Any

    def __str__(self) -> str:
        if self.actual is None:
            return f"{self.path}: missing"
        if self.desired is None:
            return f"{self.path}: not wanted"
        return f"{self.path}: want {self.desired!r}, have {self.actual!r}"


def drift(desired: HostConfig, actual: HostConfig) -> list[Drift]:
    """Every difference between desired and actual; empty when they describe the same dataplane."""
    d, a = desired.normalized(), actual.normalized()
    out: list[Drift] = []
    if d.underlay_ip != a.underlay_ip:
        out.append(Drift("underlay_ip", d.underlay_ip, a.underlay_ip))
    out += _compare({s.vni: s for s in d.segments}, {s.vni: s for s in a.segments}, segment_path)
    out += _compare({p.id: p for p in d.ports}, {p.id: p for p in a.ports}, port_path)
    out += _compare({x.vni: x for x in d.dhcp_servers}, {x.vni: x for x in a.dhcp_servers}, dhcp_path)
    out += _compare({x.id: x for x in d.edge_routers}, {x.id: x for x in a.edge_routers}, edge_path)
    out += _compare({x.id: x for x in d.vpn_gateways}, {x.id: x for x in a.vpn_gateways}, vpn_path)
    return out


def _compare(want: dict[Any, Any], have: dict[Any, Any], path: Any) -> list[Drift]:
    out: list[Drift] = []
    for key in sorted(want.keys() | have.keys(), key=str):
        w, h = want.get(key), have.get(key)
        if w is None or h is None:
            out.append(Drift(path(key), w, h))
        elif w != h:
            out += [
                Drift(f"{path(key)}.{f.name}", getattr(w, f.name), getattr(h, f.name))
                for f in fields(w)
                if f.name not in SECRET_FIELDS and getattr(w, f.name) != getattr(h, f.name)
            ]
    return out
