"""A driver that keeps the dataplane in memory: no privileges, no kernel, deterministic.

Used by unit tests (engine, daemon) and by a lab that runs without root. It behaves like the
Linux driver as far as the interface can tell: same planning, same actions, same facts, and
the device names the Linux driver would create are listed by `devices()`.

`fail(path, reason)` makes every operation on `path` (e.g. "segments[vni=100]") fail until
`heal(path)`, so callers can test how they handle a host that cannot converge.

Edge routers and VPN gateways are recorded (secrets included, as the Linux driver keeps them in
its private state) and observed as healthy: a layer-3 edge router `established` and learning
nothing, a layer-2 one `up`, a VPN gateway `up`. `observe(id, Observation)` overrides that, so
the engine's status handling can be tested against a session that is down.
"""

from __future__ import annotations

from dataclasses import replace

from l2vpc.agent.converge import Op
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
        # Every op applied, in order: lets tests see what a converge did (or that it did nothing).
        self.applied: list[Op] = []

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

    def _apply(self, op: Op) -> None:
        if op.path in self._faults:
            raise DataplaneError(op.path, self._faults[op.path])
        self.applied.append(op)
        if op.kind == "segment":
            if op.verb == "remove":
                assert isinstance(op.old, Segment)
                if any(p.vni == op.old.vni for p in self._ports.values()):
                    raise DataplaneError(op.path, "segment still has ports")
                riders = [e.vni for e in self._edges.values()] + [v.vni for v in self._vpns.values()]
                if op.old.vni in riders:
                    raise DataplaneError(op.path, "segment still has edge routers or VPN gateways")
                del self._segments[op.old.vni]
            else:
                assert isinstance(op.new, Segment)
                self._segments[op.new.vni] = op.new
        elif op.kind in ("edge_router", "vpn_gateway"):
            if op.verb == "remove":
                assert isinstance(op.old, EdgeRouter | VpnGateway)
                (self._edges if op.kind == "edge_router" else self._vpns).pop(op.old.id)
            else:
                assert isinstance(op.new, EdgeRouter | VpnGateway)
                if op.new.vni not in self._segments:
                    raise DataplaneError(op.path, f"no bridge for VNI {op.new.vni}")
                if isinstance(op.new, EdgeRouter):
                    self._edges[op.new.id] = op.new
                else:
                    self._vpns[op.new.id] = op.new
        elif op.kind == "port":
            if op.verb == "remove":
                assert isinstance(op.old, Port)
                del self._ports[op.old.id]
            else:
                assert isinstance(op.new, Port)
                if op.new.vni not in self._segments:
                    raise DataplaneError(op.path, f"no bridge for VNI {op.new.vni}")
                self._ports[op.new.id] = replace(op.new)
        else:
            if op.verb == "remove":
                assert isinstance(op.old, DhcpServer)
                del self._dhcp[op.old.vni]
            else:
                assert isinstance(op.new, DhcpServer)
                if op.new.vni not in self._segments:
                    raise DataplaneError(op.path, f"no bridge for VNI {op.new.vni}")
                self._dhcp[op.new.vni] = op.new
