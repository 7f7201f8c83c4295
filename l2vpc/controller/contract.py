"""What the API service needs from the control loop (leadership, liveness, reconciliation).

The gRPC service (service.py) is thin: object calls go to a per-tenant Engine; agent calls,
converge waits and status go to a `ControlPlane`. Kept as a Protocol so the service and the
reconciler can be built and tested apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from l2vpc.engine.model import Host
from l2vpc.hostconfig.failures import HostFailure

__all__ = ["ControlPlane", "ConvergeOutcome", "HostFailure", "HostLiveness", "OverlayPair", "PlaneStatus",
           "Progress", "ReconcileEvent"]


@dataclass(frozen=True)
class ConvergeOutcome:
    revision: int  # the desired-state revision the hosts now run (>= the one waited for)
    failures: tuple[HostFailure, ...] = ()


@dataclass(frozen=True)
class HostLiveness:
    name: str
    status: str  # up | down
    last_seen_unix: float  # 0: never


@dataclass(frozen=True)
class OverlayPair:
    """A failing overlay host pair of a VPC (engine/overlay.py), as `host` reports it."""

    vpc: str  # name
    vpc_id: str
    host: str
    peer_host: str
    peer_ip: str
    reason: str  # path_mtu | peer_not_responding
    path_mtu: int  # measured; 0: not measured
    needed_mtu: int  # the VPC's MTU + 50
    detail: str


@dataclass(frozen=True)
class ReconcileEvent:
    time_unix: float
    host: str  # '' for cluster-wide events
    what: str


@dataclass(frozen=True)
class PlaneStatus:
    controller: str
    leader: str
    term: int
    desired_revision: int
    converged_revision: int
    hosts: tuple[HostLiveness, ...] = ()
    recent: tuple[ReconcileEvent, ...] = field(default=())
    overlay: tuple[OverlayPair, ...] = field(default=())  # every VPC's failing overlay pairs


Progress = Callable[[str, str], None]  # (host, message)


class ControlPlane(Protocol):
    def register(self, host: Host) -> float:
        """Record (create or update) an agent's host; returns the heartbeat interval (s)."""
        ...

    def register_agent(self, host: Host, given: Iterable[str]) -> float:
        """An agent's registration of its host (enrollment.py): refused (enrollment.Refused)
        unless the host is enrolled and every identity field in `given` (the fields the agent
        spelled out) matches; refreshes only the agent address. Returns the heartbeat interval."""
        ...

    def heartbeat(self, host: str, accepted_generation: int, converged_generation: int,
                  converging: bool, actual_digest: str) -> float:
        """Note that `host` is alive (cheap: buffered); returns the heartbeat interval (s).
        Raises engine NotFoundError when the host never registered."""
        ...

    def request_converge(self) -> int:
        """Everything committed before this call must reach the hosts: bump the desired
        revision, wake the leader, return the revision to wait for."""
        ...

    def wait_converged(self, revision: int, timeout: float, progress: Progress | None,
                       cancelled: Callable[[], bool]) -> ConvergeOutcome:
        """Block until the leader has converged `revision` (or later). Raises engine
        TemporaryError naming what is missing (no leader, still converging host X) when
        `timeout` passes or `cancelled()` turns true."""
        ...

    def status(self) -> PlaneStatus: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...
