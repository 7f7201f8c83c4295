"""A driver that keeps the dataplane in memory: no privileges, no kernel, deterministic.

Used by unit tests (engine, daemon) and by a lab that runs without root. It behaves like the
Linux driver as far as the interface can tell: same planning, same actions, same facts, and
the device names the Linux driver would create are listed by `devices()`.

`fail(path, reason)` makes every step on `path` (e.g. "segments[vni=100]") fail until
`heal(path)`, so callers can test how they handle a host that cannot converge.

Edge routers and VPN gateways are recorded (secrets included, as the Linux driver keeps them in
its private state) and observed as healthy: a layer-3 edge router `established` and learning
nothing, a layer-2 one `up`, a VPN gateway `up`. `observe(id, Observation)` overrides that, so
the engine's status handling can be tested against a session that is down.
"""

from __future__ import annotations

from l2vpc.agent.drivers.base import DataplaneError, Driver
from l2vpc.hostconfig import (
    DhcpServer,
    EdgeRouter,
    HostConfig,
    Observation,
    Port,
    Segment,
    VpnGateway,
    bridge_name,
    port_device_name,
    vxlan_name,
)
from l2vpc.hostconfig.diff import Change


class MemoryDriver(Driver):
    def __init__(self, host: str, underlay_ip: str) -> None:
        super().__init__(host, underlay_ip)
        self._segments: dict[int, Segment] = {}
        self._ports: dict[str, Port] = {}
        self._dhcp: dict[int, DhcpServer] = {}
        self._edges: dict[str, EdgeRouter] = {}
        self._vpns: dict[str, VpnGateway] = {}
        self._observed: dict[str, Observation] = {}
        self._generation = 0
        self._faults: dict[str, str] = {}
        self._drift: dict[str, tuple[str, ...]] = {}
        # Every step applied, in order: lets tests see what a converge did (or that it did nothing).
        self.applied: list[Change] = []

    def facts(self) -> HostConfig:
        return HostConfig(
            host=self.host,
            underlay_ip=self.underlay_ip,
            generation=self._generation,
            segments=tuple(self._segments[k] for k in sorted(self._segments)),
            ports=tuple(self._ports[k] for k in sorted(self._ports)),
            dhcp_servers=tuple(self._dhcp[k] for k in sorted(self._dhcp)),
            edge_routers=tuple(self._edges[k] for k in sorted(self._edges)),
            vpn_gateways=tuple(self._vpns[k] for k in sorted(self._vpns)),
            observations=tuple(self._observation(k) for k in sorted([*self._edges, *self._vpns])),
        ).normalized()

    def _observation(self, ident: str) -> Observation:
        if ident in self._observed:
            return self._observed[ident]
        edge = self._edges.get(ident)
        if edge is None:
            return Observation(ident, "up")
        return Observation(ident, "established" if edge.mode == "layer3" else "up")

    def observe(self, ident: str, observation: Observation | None) -> None:
        """Report `observation` for item `ident` from now on (None: back to healthy)."""
        if observation is None:
            self._observed.pop(ident, None)
        else:
            self._observed[ident] = observation

    def sandbox_drift(self, port: Port) -> list[str]:
        """What `drift(port_id, ...)` set (none by default) for a port this driver set up."""
        if port.id not in self._ports:
            return [f"interface {port.interface_name} was never set up in {port.sandbox or '(no namespace)'}"]
        return list(self._drift.get(port.id, ()))

    def drift(self, port_id: str, *problems: str) -> None:
        """Make sandbox_drift report `problems` for a port (none: back to clean)."""
        if problems:
            self._drift[port_id] = problems
        else:
            self._drift.pop(port_id, None)

    def restore(self, cfg: HostConfig) -> None:
        """Start from `cfg` as if it had been converged (a simulated host resumed from its last
        report: see l2vpc/agent/local.py)."""
        self.teardown()
        self._segments = {s.vni: s for s in cfg.segments}
        self._ports = {p.id: p for p in cfg.ports}
        self._dhcp = {d.vni: d for d in cfg.dhcp_servers}
        self._edges = {e.id: e for e in cfg.edge_routers}
        self._vpns = {v.id: v for v in cfg.vpn_gateways}
        self._generation = cfg.generation

    def teardown(self) -> None:
        self._segments.clear()
        self._ports.clear()
        self._dhcp.clear()
        self._edges.clear()
        self._vpns.clear()
        self._generation = 0

    def devices(self) -> list[str]:
        """Names of the host devices the Linux driver would have for this state."""
        names = [n for s in self._segments.values() for n in (bridge_name(s.vni), vxlan_name(s.vni))]
        names += [port_device_name(p.id) for p in self._ports.values()]
        return sorted(names)

    def fail(self, path: str, reason: str = "injected failure") -> None:
        self._faults[path] = reason

    def heal(self, path: str) -> None:
        self._faults.pop(path, None)

    def _set_generation(self, generation: int) -> None:
        self._generation = generation

    def _apply(self, step: Change) -> None:
        if step.path in self._faults:
            raise DataplaneError(step.path, self._faults[step.path])
        self.applied.append(step)
        if step.action == "delete":
            self._delete(step)
            return
        item = step.after
        if isinstance(item, Segment):
            self._segments[item.vni] = item
            return
        assert item is not None
        if item.vni not in self._segments:
            raise DataplaneError(step.path, f"no bridge for VNI {item.vni}")
        if isinstance(item, EdgeRouter):
            self._edges[item.id] = item
        elif isinstance(item, VpnGateway):
            self._vpns[item.id] = item
        elif isinstance(item, Port):
            self._ports[item.id] = item
        else:
            assert isinstance(item, DhcpServer)
            self._dhcp[item.vni] = item

    def _delete(self, step: Change) -> None:
        item = step.before
        if isinstance(item, Segment):
            if any(p.vni == item.vni for p in self._ports.values()):
                raise DataplaneError(step.path, "segment still has ports")
            riders = [e.vni for e in self._edges.values()] + [v.vni for v in self._vpns.values()]
            if item.vni in riders:
                raise DataplaneError(step.path, "segment still has edge routers or VPN gateways")
            del self._segments[item.vni]
        elif isinstance(item, EdgeRouter):
            del self._edges[item.id]
        elif isinstance(item, VpnGateway):
            del self._vpns[item.id]
        elif isinstance(item, Port):
            del self._ports[item.id]
        else:
            assert isinstance(item, DhcpServer)
            del self._dhcp[item.vni]
