"""The lab's record of everything it created: `lab.json` in the lab dir.

Written after every step of `lab up` (atomically, 0600), so an interrupted `up` still leaves
a record that `lab down` cleans by: namespaces, agents (pid + pidfile + marker), files and
directories, host registrations. `down` removes exactly what is listed, never by pattern.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from l2vpc.pki import write_private

FORMAT = 1
STATE_FILE = "lab.json"


class LabStateError(Exception):
    """lab.json is unreadable or from an unknown format."""


@dataclass
class HostRecord:
    name: str
    region: str
    role: str
    underlay_ip: str
    location: str | None
    netns: str | None  # the host's namespace (linux driver); None with the memory driver
    prefix: str  # prefix of the namespaces its agent's driver creates
    agent_dir: str  # the agent's state dir; also the marker in its command line
    address: str  # where the agent listens
    pidfile: str
    log: str
    pid: int | None = None
    public_cidr: str | None = None  # edges: public address pool (registered with the engine)
    # With a controller: where the controller dials the agent (None: `address`), and the file
    # holding the host's agent token (0600, removed at down).
    agent_address: str | None = None
    token_file: str | None = None
    cni_socket: str | None = None  # where the agent answers the l2vpc-cni plugin (Pods)
    argv: list[str] | None = None  # the agent's command line (to start it again)


@dataclass
class LabState:
    id: str
    driver: str  # linux | memory
    state_path: str  # the engine's state the hosts are registered in
    dir: str
    prefix: str
    underlay_cidr: str = ""
    underlay_mtu: int = 0
    switch: str | None = None  # namespace holding the underlay bridge
    namespaces: list[str] = field(default_factory=list)  # in creation order
    hosts: list[HostRecord] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # files we created outside our own dirs (PKI)
    dirs: list[str] = field(default_factory=list)  # directories we created, removed if empty at the end
    registered: list[str] = field(default_factory=list)  # host names registered in the engine
    # The premises site (`lab up --premises`): {"lan": ..., "asn": ...}; None without one.
    premises: dict[str, Any] | None = None
    bandwidth_scale: float = 1.0  # what the lab's agents multiply direct connects' bandwidth by
    # The controller the agents register with (its address as they dial it); None: the lab
    # registers its hosts in the local state and converges them itself.
    controller: str | None = None
    pki_dir: str | None = None  # the CA the agents' certificates come from (None: pki/ beside the state)
    containerd: dict[str, Any] | None = None  # the lab's containerd (lab_pods.py), started on first Pod
    pods: list[dict[str, Any]] = field(default_factory=list)  # lab Pods (pods.PodRecord as dicts)
    vms: list[dict[str, Any]] = field(default_factory=list)  # lab VMs (vm.VmRecord as dicts)
    # The lab's own controllers (`lab up --controllers N`, controller_lab.py): their records
    # (controllers.ControllerRecord as dicts), their store (a path or URL; 0600 like this file),
    # the lab's PostgreSQL cluster (postgres.py) if it made one, and links it made in this
    # machine's namespace (the management veth).
    controllers: list[dict[str, Any]] = field(default_factory=list)
    store: str | None = None
    postgres: dict[str, Any] | None = None
    links: list[str] = field(default_factory=list)
    # Where API clients on this machine reach the controllers (the lab's own, or those given
    # with --controller), the CA their certificates come from, and the tokens the lab wrote.
    endpoints: list[str] = field(default_factory=list)
    controller_ca: str | None = None
    admin_token_file: str | None = None
    tenant_token_file: str | None = None

    @property
    def path(self) -> Path:
        return Path(self.dir) / STATE_FILE

    def host(self, name: str) -> HostRecord | None:
        return next((h for h in self.hosts if h.name == name), None)

    def save(self) -> None:
        data = json.dumps({"format": FORMAT, **asdict(self)}, indent=2, sort_keys=True).encode()
        write_private(self.path, data)

    @classmethod
    def load(cls, lab_dir: Path) -> LabState | None:
        path = lab_dir / STATE_FILE
        try:
            doc: dict[str, Any] = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise LabStateError(f"{path}: unreadable ({e})") from None
        if doc.pop("format", None) != FORMAT:
            raise LabStateError(f"{path}: unknown format; was it written by another l2vpc version?")
        try:
            hosts = [HostRecord(**h) for h in doc.pop("hosts", [])]
            return cls(hosts=hosts, **doc)
        except TypeError as e:
            raise LabStateError(f"{path}: unexpected content ({e})") from None

    def remove_file(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
