"""Drive agents to their desired configs: concurrent across hosts, retried, stoppable, recorded.

The executor pushes each changed host's whole desired config (declarative, with a fresh
generation) and records what the agent reports back. The desired state in the store is never
touched here, so a failure leaves the store consistent: the host's report says what it really
runs, and the next plan repairs the difference (level-triggered).

Agents are reached through `AgentPool.client(host)`: over gRPC (engine/agent_client.py) or
in-process (l2vpc/agent/local.py, the real agent on the memory driver). A client raises
`HostFailed` carrying the shared typed `HostFailure`; its `retryable` decides a retry.
"""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Protocol, TypeVar

from l2vpc.engine.errors import HostError
from l2vpc.engine.model import Host
from l2vpc.engine.planner import HostPlan, Plan
from l2vpc.engine.store.base import Store
from l2vpc.hostconfig import HostConfig
from l2vpc.hostconfig.failures import HostFailed, HostFailure


class AgentClient(Protocol):
    def push(self, config: HostConfig, timeout: float) -> HostConfig:
        """Converge the host to `config`; return what it runs afterwards.
        Raises HostFailed (retryable when the host was not reached or was busy)."""
        ...

    def report(self, timeout: float) -> HostConfig:
        """What the host runs now; raises HostFailed."""
        ...


class AgentPool(Protocol):
    def client(self, host: Host) -> AgentClient: ...


class _Unconnected:
    def __init__(self, host: str) -> None:
        self.failure = HostFailure(host, "connect", "internal", "this engine was opened without a way to reach agents")

    def push(self, config: HostConfig, timeout: float) -> HostConfig:
        raise HostFailed(self.failure)

    def report(self, timeout: float) -> HostConfig:
        raise HostFailed(self.failure)


class NoAgents:
    """The pool of an engine that only reads and writes desired state (every host fails)."""

    def client(self, host: Host) -> AgentClient:
        return _Unconnected(host.name)


@dataclass
class HostResult:
    host: str
    ok: bool
    failure: HostFailure | None = None
    attempts: int = 0
    seconds: float = 0.0
    changes: int = 0
    generation: int = 0
    # After a push: what the host runs, and the report written for it (plain data, as stored).
    actual: HostConfig | None = field(default=None, repr=False, compare=False)
    report: dict[str, object] | None = field(default=None, repr=False, compare=False)

    @property
    def step(self) -> str:
        return self.failure.step if self.failure else "done"

    @property
    def error(self) -> str:
        return self.failure.detail if self.failure else ""

    def to_dict(self) -> dict[str, object]:
        return {"host": self.host, "ok": self.ok, "step": self.step, "error": self.error,
                "code": self.failure.code if self.failure else "", "attempts": self.attempts,
                "seconds": self.seconds, "changes": self.changes, "generation": self.generation}


@dataclass
class ExecutionResult:
    results: dict[str, HostResult] = field(default_factory=dict)
    stopped: bool = False

    @property
    def ok(self) -> bool:
        return not self.stopped and all(r.ok for r in self.results.values())

    @property
    def failures(self) -> list[HostFailure]:
        return [r.failure for r in sorted(self.results.values(), key=lambda r: r.host) if r.failure is not None]

    def raise_for_failures(self) -> None:
        if self.failures:
            f = self.failures[0]
            more = f" (and {len(self.failures) - 1} more hosts)" if len(self.failures) > 1 else ""
            raise HostError(f.host, f.step, f.detail + more, f.code)


Progress = Callable[[str, str], None]  # (host, message)
T = TypeVar("T")
WAKE_EVERY = 0.25  # seconds between looks at the abandoned hosts while pushes run


class Abandoned:
    """Hosts whose running calls the caller stopped waiting for (a controller marked them
    down: a hung agent). A converge then finishes without them instead of holding every other
    host's verdicts and pushes up to the push timeout; their threads end on their own timeout
    and try no further. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hosts: set[str] = set()

    def add(self, host: str) -> None:
        with self._lock:
            self._hosts.add(host)

    def discard(self, host: str) -> None:
        with self._lock:
            self._hosts.discard(host)

    def __contains__(self, host: object) -> bool:
        with self._lock:
            return host in self._hosts

    def among(self, hosts: set[str]) -> set[str]:
        """Those of `hosts` that are abandoned (one look under the lock)."""
        with self._lock:
            return hosts & self._hosts


def _put(finished: queue.SimpleQueue[str], host: str, _future: object) -> None:
    finished.put(host)


def gather(futures: Mapping[str, Future[T]], abandoned: Abandoned | None) -> tuple[dict[str, Future[T]], set[str]]:
    """Wait until each host's future is done or the host is abandoned; returns (the done
    futures, the hosts given up on). Per host, not all-or-nothing: a hung host costs the
    others nothing once it is abandoned.

    Each future reports its own end (a done-callback), so the wait costs the same per host
    whatever the number of hosts: waking on the first of all pending futures and looking at
    each of them again made a converge of 2,000 hosts quadratic (~4 million lock takes)."""
    finished: queue.SimpleQueue[str] = queue.SimpleQueue()
    for host, fut in futures.items():
        fut.add_done_callback(partial(_put, finished, host))
    pending = set(futures)
    done: dict[str, Future[T]] = {}
    given_up: set[str] = set()
    while pending:
        name: str | None
        try:
            name = finished.get(timeout=None if abandoned is None else WAKE_EVERY)
        except queue.Empty:
            name = None
        while name is not None:
            if name in pending:
                pending.discard(name)
                done[name] = futures[name]
            try:
                name = finished.get_nowait()
            except queue.Empty:
                name = None
        if abandoned is not None and pending:
            gone = abandoned.among(pending)
            pending -= gone
            given_up |= gone
    return done, given_up


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
        abandoned: Abandoned | None = None,
    ) -> None:
        self.agents = agents
        self.store = store
        self.max_workers = max_workers
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.stop = stop or threading.Event()
        self.progress = progress
        self.abandoned = abandoned
        # Reports waiting to be written, and the one writer at a time (see _record).
        self._reports: list[tuple[str, int, dict[str, object]]] = []
        self._reports_lock = threading.Lock()
        self._writer = threading.Lock()

    def execute(self, plan: Plan, hosts: Mapping[str, Host]) -> ExecutionResult:
        todo = [hp for _, hp in sorted(plan.hosts.items()) if hp.changes]
        result = ExecutionResult()
        if not todo:
            return result
        pool = ThreadPoolExecutor(max_workers=min(self.max_workers, len(todo)))
        try:
            # Each push runs in the caller's context: its request id goes with it (to the agent).
            generations = self._next_generations([hp.host for hp in todo])
            futures = {hp.host: pool.submit(contextvars.copy_context().run, self._run_host, hp, hosts.get(hp.host),
                                            generations[hp.host])
                       for hp in todo}
            done, given_up = gather(futures, self.abandoned)
        finally:
            pool.shutdown(wait=False)  # an abandoned host's push ends on its own timeout
        for hp in todo:
            if hp.host in done:
                result.results[hp.host] = done[hp.host].result()
            elif hp.host in given_up:
                res = HostResult(hp.host, ok=False, changes=len(hp.changes))
                res.failure = HostFailure(hp.host, "down", "down",
                                          "host went down during the push (its agent missed heartbeats); not waited for")
                result.results[hp.host] = res
        result.stopped = self.stop.is_set() and any(r.step == "stopped" for r in result.results.values())
        return result

    def _note(self, host: str, msg: str) -> None:
        if self.progress:
            self.progress(host, msg)

    def _run_host(self, hp: HostPlan, host: Host | None, generation: int) -> HostResult:
        started = time.monotonic()
        res = HostResult(hp.host, ok=False, changes=len(hp.changes))
        if self.stop.is_set():
            res.failure = HostFailure(hp.host, "stopped", "stopped", "stopped before this host was started")
            return res
        if host is None:
            res.failure = HostFailure(hp.host, "lookup", "not_registered",
                                      "host is no longer registered; its agent cannot be reached")
            return res
        if host.status == "down":
            # The controller saw its agent miss heartbeats: fail at once instead of spending
            # the retries and timeouts on it; it is converged when it comes back up.
            res.failure = HostFailure(host.name, "down", "down", "host is down (its agent missed heartbeats); not pushed")
            self._note(host.name, "skipped: host is down")
            return res
        desired = hp.desired or HostConfig(host.name, host.underlay_ip)
        config = replace(desired, generation=generation)
        client = self.agents.client(host)
        delay = self.backoff
        for attempt in range(1, self.retries + 2):
            res.attempts = attempt
            if self.stop.is_set():
                res.failure = HostFailure(host.name, "stopped", "stopped", f"stopped after {attempt - 1} attempts")
                break
            if attempt > 1 and self.abandoned is not None and host.name in self.abandoned:
                break  # marked down meanwhile: nobody waits for this push any more
            self._note(host.name, f"pushing generation {generation} ({len(hp.changes)} changes), attempt {attempt}")
            try:
                actual = client.push(config, self.timeout)
            except HostFailed as e:
                res.failure = e.failure
                if not e.retryable:
                    self._record(host.name, client)
                    break
                if attempt <= self.retries:
                    self._note(host.name, f"temporary failure: {e.reason}; retrying in {delay:.1f}s")
                    if self.stop.wait(delay):
                        res.failure = HostFailure(host.name, "stopped", "stopped", f"stopped while retrying: {e.reason}")
                        break
                    delay *= 2
                continue
            res.ok, res.failure, res.generation = True, None, generation
            res.actual, res.report = actual, self._record(host.name, client, actual)
            self._note(host.name, "converged")
            break
        res.seconds = time.monotonic() - started
        return res

    def _next_generations(self, hosts: list[str]) -> dict[str, int]:
        """Each host's next config generation, all in one transaction (one per host cost
        1,000 commits, queued on the store's lock, in a 1,000-host apply)."""
        if self.store is None:
            now = int(time.time() * 1000)
            return dict.fromkeys(hosts, now)
        with self.store.transaction() as tx:
            return {h: tx.next_sequence(f"generation:{h}") for h in hosts}

    def _record(self, host: str, client: AgentClient, actual: HostConfig | None = None) -> dict[str, object] | None:
        """Keep the host's report current, also after a failure (what it runs now); returns
        the report written (None: none)."""
        if self.store is None:
            return None
        if actual is None:
            try:
                actual = client.report(self.timeout)
            except HostFailed:  # the host is unreachable: keep its previous report
                return None
        report = actual.to_dict()
        with self._reports_lock:
            self._reports.append((host, actual.generation, report))
        # Group commit: whoever holds the writer writes every report waiting, in one
        # transaction (one per host queued 1,000 commits on the store's lock). When this
        # thread gets the writer, its own report was written already or is written now.
        with self._writer:
            with self._reports_lock:
                reports, self._reports = self._reports, []
            if reports:
                with self.store.transaction() as tx:
                    for name, generation, config in reports:
                        tx.put_host_report(name, generation, config)
        return report
