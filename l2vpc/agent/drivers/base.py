"""The dataplane driver interface: converge one host to a HostConfig and report what it runs.

A driver owns one host. The agent daemon calls it from one thread at a time:

    driver = LinuxDriver(host="h1", underlay_ip="10.0.0.1", ...)   # or MemoryDriver(...)
    result = driver.converge(desired)    # idempotent; never raises for dataplane trouble
    actual = driver.facts()              # what the host really runs now
    driver.teardown()                    # remove everything the driver created, nothing else
    driver.close()                       # release sockets; leaves the dataplane running

`converge` is a template shared by every driver: validate, read facts, diff them against the
desired config and order the changes into steps (`l2vpc.hostconfig.diff`, the same diff the
engine plans with), apply the steps one by one, read facts again. A concrete driver implements
`facts`, `teardown` and `_apply` (one step: a create, update or delete of one item); it reports a
failed step by raising `DataplaneError`, which becomes a `Failure` and does not stop the others
(except the steps that depend on it, which are skipped with a reason).
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass
from types import TracebackType

from l2vpc.hostconfig import HostConfig, Port, validate_host_config
from l2vpc.hostconfig.diff import Action, Change, diff, steps
from l2vpc.hostconfig.failures import Failure, split_reason


class DataplaneError(Exception):
    """One operation on the host failed; `path` names the object (e.g. `ports[id=a1]`)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True, slots=True)
class ConvergeResult:
    """Outcome of one converge.

    `rejected` means the desired config was invalid (or meant for another host) and the host
    was not touched; `failures` then holds validate_host_config's reasons split into
    (path, reason). Otherwise `actions` lists what was changed (empty on a no-op) and
    `failures` what could not be done. `actual` is the facts read after the run.
    """

    actions: tuple[Action, ...]
    failures: tuple[Failure, ...]
    actual: HostConfig
    rejected: bool = False

    @property
    def ok(self) -> bool:
        return not self.failures and not self.rejected

    @property
    def changed(self) -> bool:
        return bool(self.actions)


class Driver(abc.ABC):
    """Converges one host. Subclasses implement facts, teardown and _apply."""

    def __init__(self, host: str, underlay_ip: str) -> None:
        self.host = host
        self.underlay_ip = underlay_ip

    # -- the interface -------------------------------------------------------------------

    @abc.abstractmethod
    def facts(self) -> HostConfig:
        """The host's actual dataplane as a HostConfig (read fresh, never cached).

        `host`/`underlay_ip` are the driver's own; `generation` is that of the last converge
        that finished without failures (0 before any); labels are empty.
        """

    def dhcp_leases(self) -> dict[int, int]:
        """Active leases of each DHCP server this host runs, by VNI ({}: the driver cannot tell)."""
        return {}

    def rejections(self, desired: HostConfig) -> list[str]:
        """Why this host cannot run `desired` ([]: it can): the config's own rules, and that it
        is for this host and underlay."""
        reasons = validate_host_config(desired)
        if desired.host != self.host:
            reasons.append(f"host: config is for host {desired.host!r}, this agent runs {self.host!r}")
        if desired.underlay_ip != self.underlay_ip:
            reasons.append(
                f"underlay_ip: config says {desired.underlay_ip}, this host's underlay is {self.underlay_ip}"
            )
        return reasons

    def converge(self, desired: HostConfig, *, checked: bool = False) -> ConvergeResult:
        """Make the host run `desired`. Idempotent: a second call with the same config does
        nothing and returns no actions. Invalid configs are rejected without touching the host.
        `checked`: the caller ran these same checks on this very config (the Agent does on every
        push; they cost as much as a memory driver's whole converge).
        """
        reasons = [] if checked else self.rejections(desired)
        if reasons:
            return ConvergeResult((), tuple(split_reason(r) for r in reasons), self.facts(), rejected=True)

        actions: list[Action] = []
        failures: list[Failure] = []
        failed_paths: set[str] = set()
        before = self.facts()
        for step in steps(diff(before.normalized(), desired.normalized())):
            blocker = next((d for d in step.depends_on if d in failed_paths), None)
            if blocker is not None:
                failed_paths.add(step.path)
                failures.append(Failure(step.path, f"not attempted: {blocker} failed"))
                continue
            try:
                self._apply(step)
            except DataplaneError as e:
                failed_paths.add(step.path)
                failures.append(Failure(e.path, e.reason))
                continue
            actions.append(Action(step.verb, step.path, step.detail))
        try:
            actions.extend(self._collect_garbage(desired))
        except DataplaneError as e:
            failures.append(Failure(e.path, e.reason))
        if not failures:
            self._set_generation(desired.generation)
            if not actions:
                # Nothing changed: the facts just read are still the truth (a no-op reconcile
                # is the common case and should cost one read of the host, not two).
                return ConvergeResult((), (), dataclasses.replace(before, generation=desired.generation))
        return ConvergeResult(tuple(actions), tuple(failures), self.facts())

    @abc.abstractmethod
    def sandbox_drift(self, port: Port) -> list[str]:
        """How the end of pod port `port` inside its Pod's namespace differs from what the
        driver set up there (missing, MAC, MTU, address), read only: the runtime owns it."""

    @abc.abstractmethod
    def teardown(self) -> None:
        """Remove every device, namespace, process and file this driver created; nothing else."""

    def close(self) -> None:  # noqa: B027 - optional hook, most drivers hold nothing
        """Release resources (sockets). The dataplane stays as it is."""

    # -- for subclasses ------------------------------------------------------------------

    @abc.abstractmethod
    def _apply(self, step: Change) -> None:
        """Carry out one step (a create, update or delete of one item); raise DataplaneError
        on failure."""

    def _collect_garbage(self, desired: HostConfig) -> list[Action]:
        """Remove what the driver owns but neither facts nor `desired` account for (half-made
        devices, namespaces left empty); runs after the steps. Default: nothing."""
        return []

    @abc.abstractmethod
    def _set_generation(self, generation: int) -> None:
        """Remember the generation of the last fully converged config (reported by facts)."""

    def __enter__(self) -> Driver:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
