"""Drive agents to their desired configs: concurrent across hosts, retried, stoppable, recorded.

The executor pushes each changed host's whole desired config (declarative, with a fresh
generation) and records what the agent reports back. The desired state in the store is never
touched here, so a failure leaves the store consistent: the host's report says what it really
runs, and the next plan repairs the difference (level-triggered).

Agents are reached through `AgentPool.client(host)`; `MemoryAgentPool` records what a host would
run without touching the machine (the gRPC pool arrives with the agent).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Protocol

from l2vpc.engine.errors import HostError, TemporaryError
from l2vpc.engine.model import Host
from l2vpc.engine.planner import HostPlan, Operation, Plan, apply_operations, diff_host
from l2vpc.engine.store.base import Store
from l2vpc.hostconfig import HostConfig, Observation


class AgentClient(Protocol):
    def push(self, config: HostConfig, timeout: float) -> HostConfig:
        """Converge the host to `config`; return what it runs afterwards.
        Raises TemporaryError when unreachable, HostError when the host rejects or fails."""
        ...

    def report(self, timeout: float) -> HostConfig:
        """What the host runs now."""
        ...


class AgentPool(Protocol):
    def client(self, host: Host) -> AgentClient: ...


@dataclass
class MemoryAgent:
    """A host that exists only in memory: applies the operations it is sent, logs them."""

    host: Host
    config: HostConfig | None = None
    log: list[Operation] = field(default_factory=list)
    # Test hooks: errors raised by the next pushes, in order.
    faults: list[Exception] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def push(self, config: HostConfig, timeout: float) -> HostConfig:
        with self.lock:
            if self.faults:
                raise self.faults.pop(0)
            from l2vpc.hostconfig import validate_host_config

            problems = validate_host_config(config)
            if problems:
                raise HostError(self.host.name, "validate", "; ".join(problems))
            ops = diff_host(self.host.name, config, self.config)
            self.log.extend(ops)
            applied = apply_operations(self.config, ops, self.host.name, config.underlay_ip)
            # A simulated host has no peers to wait for: sessions and tunnels come up at once.
            seen = tuple(
                [Observation(e.id, "established" if e.mode == "layer3" else "up") for e in applied.edge_routers]
                + [Observation(v.id, "up") for v in applied.vpn_gateways]
            )
            self.config = replace(applied, generation=config.generation, underlay_ip=config.underlay_ip,
                                  observations=seen)
            return self.config

    def report(self, timeout: float) -> HostConfig:
        with self.lock:
            return self.config or HostConfig(self.host.name, self.host.underlay_ip)


class MemoryAgentPool:
    """Memory agents, seeded from the store's last reports so CLI runs carry on where they left."""

    def __init__(self, seed: Mapping[str, HostConfig] | None = None) -> None:
        self._agents: dict[str, MemoryAgent] = {}
        self._seed = dict(seed or {})
        self._lock = threading.Lock()

    def client(self, host: Host) -> MemoryAgent:
        with self._lock:
            agent = self._agents.get(host.name)
            if agent is None:
                agent = self._agents[host.name] = MemoryAgent(host, self._seed.get(host.name))
            return agent

    def agents(self) -> dict[str, MemoryAgent]:
        return dict(self._agents)


@dataclass
class HostResult:
    host: str
    ok: bool
    step: str = ""
    error: str = ""
    attempts: int = 0
    seconds: float = 0.0
    operations: int = 0
    generation: int = 0


@dataclass
class ExecutionResult:
    results: dict[str, HostResult] = field(default_factory=dict)
    stopped: bool = False

    @property
    def ok(self) -> bool:
        return not self.stopped and all(r.ok for r in self.results.values())

    @property
    def failures(self) -> list[HostResult]:
        return [r for r in sorted(self.results.values(), key=lambda r: r.host) if not r.ok]

    def raise_for_failures(self) -> None:
        if self.failures:
            f = self.failures[0]
            more = f" (and {len(self.failures) - 1} more hosts)" if len(self.failures) > 1 else ""
            raise HostError(f.host, f.step, f.error + more)


Progress = Callable[[str, str], None]  # (host, message)


class Executor:
    def __init__(
        self,
        agents: AgentPool,
        store: Store | None = None,
        *,
        max_workers: int = 16,
        retries: int = 3,
        backoff: float = 0.2,
        timeout: float = 60.0,
        stop: threading.Event | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.agents = agents
        self.store = store
        self.max_workers = max_workers
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.stop = stop or threading.Event()
        self.progress = progress

    def execute(self, plan: Plan, hosts: Mapping[str, Host]) -> ExecutionResult:
        todo = [hp for _, hp in sorted(plan.hosts.items()) if hp.operations]
        result = ExecutionResult()
        if not todo:
            return result
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(todo))) as pool:
            futures = {hp.host: pool.submit(self._run_host, hp, hosts.get(hp.host)) for hp in todo}
            for name, fut in futures.items():
                result.results[name] = fut.result()
        result.stopped = self.stop.is_set() and any(r.step == "stopped" for r in result.results.values())
        return result

    def _note(self, host: str, msg: str) -> None:
        if self.progress:
            self.progress(host, msg)

    def _run_host(self, hp: HostPlan, host: Host | None) -> HostResult:
        started = time.monotonic()
        res = HostResult(hp.host, ok=False, operations=len(hp.operations))
        if self.stop.is_set():
            res.step, res.error = "stopped", "stopped before this host was started"
            return res
        if host is None:
            res.step, res.error = "lookup", "host is no longer registered; its agent cannot be reached"
            return res
        if host.status == "down":
            # The controller saw its agent miss heartbeats: fail at once instead of spending
            # the retries and timeouts on it; it is converged when it comes back up.
            res.step, res.error = "down", "host is down (its agent missed heartbeats); not pushed"
            self._note(host.name, "skipped: host is down")
            return res
        desired = hp.desired or HostConfig(host.name, host.underlay_ip)
        generation = self._next_generation(host.name)
        config = replace(desired, generation=generation)
        client = self.agents.client(host)
        delay = self.backoff
        for attempt in range(1, self.retries + 2):
            res.attempts = attempt
            if self.stop.is_set():
                res.step, res.error = "stopped", f"stopped after {attempt - 1} attempts"
                break
            self._note(host.name, f"pushing generation {generation} ({len(hp.operations)} changes), attempt {attempt}")
            try:
                actual = client.push(config, self.timeout)
            except TemporaryError as e:
                res.step, res.error = "push", str(e)
                if attempt <= self.retries:
                    self._note(host.name, f"temporary failure: {e}; retrying in {delay:.1f}s")
                    if self.stop.wait(delay):
                        res.step, res.error = "stopped", f"stopped while retrying: {e}"
                        break
                    delay *= 2
                continue
            except HostError as e:
                res.step, res.error = e.step or "converge", e.reason
                self._record(host.name, client)
                break
            res.ok, res.step, res.error, res.generation = True, "done", "", generation
            self._record(host.name, client, actual)
            self._note(host.name, "converged")
            break
        res.seconds = time.monotonic() - started
        return res

    def _next_generation(self, host: str) -> int:
        if self.store is None:
            return int(time.time() * 1000)
        with self.store.transaction() as tx:
            return tx.next_sequence(f"generation:{host}")

    def _record(self, host: str, client: AgentClient, actual: HostConfig | None = None) -> None:
        """Keep the host's report current, also after a failure (what it runs now)."""
        if self.store is None:
            return
        if actual is None:
            try:
                actual = client.report(self.timeout)
            except Exception:  # the host is unreachable: keep its previous report
                return
        with self.store.transaction() as tx:
            tx.put_host_report(host, actual.generation, actual.to_dict())
