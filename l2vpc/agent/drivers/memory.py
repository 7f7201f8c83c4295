"""A driver that keeps the dataplane in memory: no privileges, no kernel, deterministic.

Used by unit tests (engine, daemon) and by a lab that runs without root. It behaves like the
Linux driver as far as the interface can tell: same planning, same actions, same facts, and
the device names the Linux driver would create are listed by `devices()`.

`fail(path, reason)` makes every operation on `path` (e.g. "segments[vni=100]") fail until
`heal(path)`, so callers can test how they handle a host that cannot converge.
"""

from __future__ import annotations

from dataclasses import replace

from l2vpc.agent.converge import Op
from l2vpc.agent.drivers.base import DataplaneError, Driver
from l2vpc.hostconfig import (
    DhcpServer,
    HostConfig,
    Port,
    Segment,
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
        ).normalized()

    def teardown(self) -> None:
        self._segments.clear()
        self._ports.clear()
        self._dhcp.clear()
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
                del self._segments[op.old.vni]
            else:
                assert isinstance(op.new, Segment)
                self._segments[op.new.vni] = op.new
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
