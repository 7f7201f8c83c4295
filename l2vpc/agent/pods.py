"""Pods: which pod ports are bound to which runtime-made network namespace, kept across restarts.

A pod port (an attachment of `workload_kind = "pod"`) is realised only once its Pod exists: a
CNI ADD binds the attachment to the Pod's network namespace (its `sandbox`), the agent
converges, and the port appears in the host's facts (the engine then reports it active). Until
then nothing is created for it and the attachment stays pending. DEL unbinds it: the host side
goes (with it the Pod's end), the declared attachment stays (pending again). The agent keeps
bindings in a 0600 file beside its config, so a restarted agent keeps every Pod's interface.

    bindings = PodBindings(state_dir)
    effective = bindings.apply(desired)    # bound pod ports carry their sandbox, unbound ones wait

Bindings are keyed as the CNI spec keys a runtime's state: (network name, container id, ifname).

An on-demand attachment (created by the ADD through the controller) comes with its port as the
controller's next push will carry it (`provisional`): while the accepted config lacks the port
but runs its VPC's segment, that port is realised as announced, so the ADD need not wait for the
push; the push confirms it (the provisional copy is then dropped) and finds nothing to change.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from l2vpc.hostconfig import HostConfig, Port
from l2vpc.pki import write_private

BINDINGS_FILE = "pods.json"
FORMAT = 1


@dataclass(frozen=True, slots=True)
class Binding:
    port_id: str  # the attachment
    sandbox: str  # the Pod's network namespace (a path, as CNI_NETNS gives it)
    container_id: str
    ifname: str
    network: str  # the CNI network configuration's name
    on_demand: bool = False  # created by the ADD (and deleted by the DEL), not declared
    # The sandbox is gone but the Pod's DEL has not come: an on-demand port is then kept, not
    # realised, so that the DEL (or GC) still deletes its attachment.
    orphaned: bool = False
    provisional: Port | None = None  # an on-demand port not pushed yet (see the module docstring)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.network, self.container_id, self.ifname)


class PodBindings:
    """Thread-safe; every change is written before it returns (`state_dir` None: memory only)."""

    def __init__(self, state_dir: Path | None) -> None:
        self.path = state_dir / BINDINGS_FILE if state_dir is not None else None
        self._lock = threading.Lock()
        self._by_port: dict[str, Binding] = self._load()

    def _load(self) -> dict[str, Binding]:
        if self.path is None:
            return {}
        try:
            doc = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except ValueError:
            return {}  # unreadable: Pods re-ADD (runtimes retry), nothing else depends on it
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            return {}
        out: dict[str, Binding] = {}
        for item in doc.get("bindings", ()):
            try:
                b = Binding(**{f.name: item[f.name] for f in dataclasses.fields(Binding) if f.name in item})
                if isinstance(b.provisional, dict):
                    b = dataclasses.replace(b, provisional=port_from_dict(b.provisional))
            except (TypeError, KeyError, ValueError):
                continue
            out[b.port_id] = b
        return out

    def _save(self) -> None:
        if self.path is None:
            return
        doc: dict[str, Any] = {"format": FORMAT,
                               "bindings": [dataclasses.asdict(b) for _, b in sorted(self._by_port.items())]}
        write_private(self.path, json.dumps(doc, sort_keys=True).encode(), durable=False)

    def all(self) -> list[Binding]:
        with self._lock:
            return list(self._by_port.values())

    def of_port(self, port_id: str, *, orphans: bool = False) -> Binding | None:
        """The port's binding (an orphaned one only with `orphans`)."""
        with self._lock:
            b = self._by_port.get(port_id)
            return b if b is not None and (orphans or not b.orphaned) else None

    def find(self, network: str, container_id: str, ifname: str) -> Binding | None:
        with self._lock:
            return next((b for b in self._by_port.values() if b.key == (network, container_id, ifname)), None)

    def bind(self, binding: Binding) -> None:
        with self._lock:
            self._by_port[binding.port_id] = binding
            self._save()

    def unbind(self, port_id: str) -> Binding | None:
        with self._lock:
            gone = self._by_port.pop(port_id, None)
            if gone is not None:
                self._save()
            return gone

    def apply(self, desired: HostConfig) -> HostConfig:
        """What the driver converges to: bound pod ports carry their sandbox; unbound ones are
        left out (their Pod does not exist here yet); every other item as pushed. A sandbox that
        no longer exists (the Pod died without a DEL) unbinds its port, or orphans an on-demand
        one (see Binding.orphaned)."""
        with self._lock:
            provisional = any(b.provisional is not None for b in self._by_port.values())
            if not provisional and not any(p.workload_kind == "pod" for p in desired.ports):
                return desired
            ports = []
            stale = []
            confirmed = []
            for p in desired.ports:
                if p.workload_kind != "pod":
                    ports.append(p)
                    continue
                b = self._by_port.get(p.id)
                if b is None or b.orphaned:
                    continue
                if not os.path.exists(b.sandbox):
                    stale.append(b)
                    continue
                if b.provisional is not None:
                    confirmed.append(b)
                ports.append(dataclasses.replace(p, sandbox=b.sandbox))
            pushed = {p.id for p in desired.ports}
            segments = {s.vni for s in desired.segments}
            for b in list(self._by_port.values()) if provisional else ():
                if b.provisional is None or b.port_id in pushed or b.orphaned:
                    continue
                if not os.path.exists(b.sandbox):
                    stale.append(b)
                elif b.provisional.vni in segments:  # its VPC's bridge runs here: set it up now
                    ports.append(dataclasses.replace(b.provisional, sandbox=b.sandbox))
            for b in confirmed:
                self._by_port[b.port_id] = dataclasses.replace(b, provisional=None)
            for b in stale:
                if b.on_demand:
                    self._by_port[b.port_id] = dataclasses.replace(b, orphaned=True)
                else:
                    self._by_port.pop(b.port_id, None)
            if stale or confirmed:
                self._save()
        return dataclasses.replace(desired, ports=tuple(sorted(ports, key=lambda p: p.id)))


def port_from_dict(data: dict[str, Any]) -> Port:
    """A Port from plain data (as HostConfig.from_dict reads ports); ValueError when malformed."""
    return HostConfig.from_dict({"host": "-", "underlay_ip": "0.0.0.0", "ports": [data]}).ports[0]
