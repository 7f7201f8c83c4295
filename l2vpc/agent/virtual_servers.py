"""How this host realises virtual servers' ports: tap devices for a hypervisor, or namespaces.

A real host's virtual servers are VMs: each port is a tap device their hypervisor opens
(`mode = "tap"`, the agent's default). The lab's synthetic workloads are namespaces the agent
makes (`"netns"`, what the lab runs its agents with). One workload can be switched
(`realize`): the lab's `vm up` turns a workload's namespace into taps for the VM it boots. The
switches are kept in a 0600 file beside the agent's config.

    vms = VirtualServers(state_dir, mode="netns")
    effective = vms.apply(desired)        # the ports of taps' workloads carry tap=True
"""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

from l2vpc.hostconfig import HostConfig
from l2vpc.pki import write_private

MODES = ("tap", "netns")
FILE = "virtual_servers.json"
FORMAT = 1


class VirtualServers:
    def __init__(self, state_dir: Path | None, mode: str = "tap") -> None:
        if mode not in MODES:
            raise ValueError(f"virtual servers are realised as one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        self.path = state_dir / FILE if state_dir is not None else None
        self._lock = threading.Lock()
        self._switched: dict[str, str] = self._load()

    def _load(self) -> dict[str, str]:
        if self.path is None:
            return {}
        try:
            doc = json.loads(self.path.read_bytes())
        except (FileNotFoundError, ValueError):
            return {}
        found = doc.get("workloads") if isinstance(doc, dict) and doc.get("format") == FORMAT else None
        return {str(w): str(m) for w, m in (found or {}).items() if m in MODES}

    def mode_of(self, workload: str) -> str:
        with self._lock:
            return self._switched.get(workload, self.mode)

    def realize(self, workload: str, mode: str) -> bool:
        """Realise virtual server `workload` as `mode` from now on; False if it already is."""
        if mode not in MODES:
            raise ValueError(f"virtual servers are realised as one of {', '.join(MODES)}, not {mode!r}")
        with self._lock:
            if self._switched.get(workload, self.mode) == mode:
                return False
            if mode == self.mode:
                del self._switched[workload]
            else:
                self._switched[workload] = mode
            if self.path is not None:
                doc = {"format": FORMAT, "workloads": dict(sorted(self._switched.items()))}
                write_private(self.path, json.dumps(doc).encode(), durable=False)
            return True

    def apply(self, desired: HostConfig) -> HostConfig:
        """`desired` with the ports of virtual servers realised as taps marked so."""
        with self._lock:
            if self.mode == "netns" and not self._switched:
                return desired
            ports = tuple(
                dataclasses.replace(p, tap=True)
                if p.workload_kind == "virtual_server" and self._switched.get(p.workload, self.mode) == "tap" else p
                for p in desired.ports)
        return dataclasses.replace(desired, ports=ports)
