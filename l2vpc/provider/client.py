"""How the provider reaches the engine: embedded (in-process, SQLite at `state_path`) or a
controller at `endpoint` (l2vpc.controller.client.RemoteEngine, the same calls over gRPC).

The engine is opened on first use, not at configure time, so `terraform validate` and the
handshake stay fast, and imports of the engine happen only then.

Converging is shared and bounded: each resource waits for the hosts until its own deadline
(its `timeouts` entry) or until Terraform asks us to stop, whichever comes first, and the
converge itself runs in a background thread, so a wait can end at once without leaving a
half-done write behind: every engine write is one transaction, and an abandoned converge
finishes (or stops at its next step) on its own.
"""

from __future__ import annotations

import builtins
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from l2vpc.engine.model import VPC, Host

log = logging.getLogger("l2vpc.provider")

Progress = Callable[[str, str], None]  # (host, message)
# A run that ended is still waited for this long past a waiter's deadline: the controller's
# answer, which names what is pending, arrives right at that deadline.
_GRACE = 1.0
_POLL = 0.05  # how often a waiter looks at the stop flag


class Failure(Protocol):
    @property
    def host(self) -> str: ...
    @property
    def step(self) -> str: ...
    @property
    def error(self) -> str: ...


class Outcome(Protocol):
    """What a converge returns (executor.ExecutionResult, controller.client.ConvergeResult)."""

    @property
    def failures(self) -> Sequence[Failure]: ...
    @property
    def stopped(self) -> bool: ...


class EngineApi(Protocol):
    """The engine calls the provider makes: l2vpc.engine.api.Engine, or RemoteEngine."""

    def hosts(self, region: str | None = None, role: str | None = None) -> builtins.list[Host]: ...
    def get(self, kind: str, ident: str, *, confirm: bool = False) -> Any: ...
    def find(self, kind: str, ident: str, *, confirm: bool = False) -> Any | None: ...
    def list(self, kind: str) -> builtins.list[Any]: ...
    def vpc_by_name(self, name: str) -> VPC | None: ...
    def status_detail(self, kind: str, ident: str) -> str: ...

    def status_reason(self, kind: str, ident: str) -> str: ...

    def learned(self, kind: str, ident: str) -> tuple[str, ...]: ...
    def attached_workloads(self, vpc_id: str) -> builtins.list[str]: ...
    def refresh(self, hosts: Iterable[str] | None = None, timeout: float = 10.0) -> None: ...
    def check(self, kind: str, data: Mapping[str, Any], ident: str | None = None, *,
              replacing: Iterable[str] = (), adopt: bool | str = False) -> Any: ...
    def create(self, kind: str, data: Mapping[str, Any], *, adopt: bool | str = False) -> Any: ...
    def update(self, kind: str, ident: str, data: Mapping[str, Any]) -> Any: ...
    def delete(self, kind: str, ident: str) -> None: ...
    def converge(self, *, progress: Progress | None = None, retries: int = 3,
                 timeout: float = 60.0) -> tuple[Any, Any]: ...


class WaitInterrupted(Exception):
    """A wait ended before the hosts converged: Terraform asked us to stop, or the deadline passed.

    `pending` maps each host that has not confirmed the change to the last thing we heard
    about it; `detail` is the controller's or engine's own account, when there is one.
    """

    def __init__(self, stopped: bool, pending: Mapping[str, str], detail: str = "") -> None:
        self.stopped = stopped
        self.pending = dict(pending)
        self.detail = detail
        super().__init__("stopped" if stopped else "timed out")


@dataclass
class _Run:
    """One converge running in the background for every request up to `covers`."""

    covers: int
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None
    hosts: dict[str, str] = field(default_factory=dict)  # host → its latest progress message


class EngineClient:
    def __init__(self, settings: dict[str, Any], stop: threading.Event) -> None:
        self.settings = settings
        self.stop = stop
        self._engine: EngineApi | None = None
        self._close: Callable[[], None] | None = None
        self._open_lock = threading.Lock()
        # Converges are coalesced: each pushes every host's whole desired state, so a converge
        # that started after a change was committed also serves that change. Terraform applies
        # up to 10 resources at once; they share converges instead of queueing one each.
        self._cond = threading.Condition()
        self._requests = 0  # converge requests so far (each after its change was committed)
        self._served = 0  # requests covered by the last finished converge
        self._last: Any = None
        self._run: _Run | None = None
        self._waiters: dict[int, tuple[float, Progress | None]] = {}  # request → (deadline, progress)
        # Set by the first create, update or delete: this provider serves Terraform's apply walk,
        # whose plans come right before the change they plan (see checks.check_plan). Terraform
        # configures the provider at the start of every walk, and each configure makes a new client.
        self.applying = False

    @property
    def remote(self) -> bool:
        return bool(self.settings.get("endpoint"))

    @property
    def engine(self) -> EngineApi:
        with self._open_lock:
            if self._engine is None:
                if self.remote:
                    from l2vpc.controller.client import RemoteEngine

                    remote = RemoteEngine(self.settings["endpoint"], self.settings["token"],
                                          ca_file=self.settings.get("ca_file"), stop=self.stop)
                    self._engine, self._close = remote, remote.close
                else:
                    from l2vpc.embedded import open_engine

                    engine = open_engine(self.settings["state_path"], default_region=self.settings.get("region"))
                    engine.stop = self.stop
                    self._engine, self._close = engine, lambda: _close_embedded(engine)
            return self._engine

    def check_token(self) -> None:
        """With a controller: L2vpcError when it refuses the token (see RemoteEngine.check_token)."""
        if self.remote:
            check = getattr(self.engine, "check_token", None)
            if check is not None:
                check()

    def warm_up(self) -> None:
        """Import the engine in the background while Terraform is still busy, so the first
        plan or read does not stall every parallel call on the import."""
        remote = self.remote

        def load() -> None:
            try:
                if remote:
                    import l2vpc.controller.client
                else:
                    import l2vpc.embedded
                import l2vpc.engine.model  # noqa: F401
            except Exception:  # the real use reports it
                log.debug("engine warm-up import failed", exc_info=True)

        threading.Thread(target=load, name="engine-warm-up", daemon=True).start()

    def converge(self, deadline: float, progress: Progress | None = None) -> Any:
        """Converge the hosts to everything committed before this call; returns the converge's
        result (with `.failures`). Raises WaitInterrupted when `deadline` (time.monotonic())
        passes or Terraform asks us to stop first, and the engine's error when the converge
        itself failed (e.g. the controller cannot be reached)."""
        with self._cond:
            self._requests += 1
            mine = self._requests
            self._waiters[mine] = (deadline, progress)
        pending: dict[str, str] = {}
        try:
            while True:
                with self._cond:
                    if self._served >= mine:
                        return self._last
                    if self.stop.is_set() or time.monotonic() >= deadline:
                        raise WaitInterrupted(self.stop.is_set(), pending)
                    run = self._run
                    if run is None:
                        run = self._start()
                self._wait_for(run, deadline)
                pending = _pending(run)
                if run.covers >= mine and run.error is not None:
                    raise run.error
        finally:
            with self._cond:
                self._waiters.pop(mine, None)

    def _start(self) -> _Run:
        """Start a converge for every request so far (called with the lock held)."""
        run = self._run = _Run(covers=self._requests)
        # Long enough for the most patient waiter; an impatient one stops waiting on its own.
        latest = max((d for d, _ in self._waiters.values()), default=time.monotonic() + 60)
        budget = max(latest - time.monotonic(), 1.0)
        threading.Thread(target=self._execute, args=(run, budget), name="converge", daemon=True).start()
        return run

    def _execute(self, run: _Run, budget: float) -> None:
        def progress(host: str, message: str) -> None:
            run.hosts[host] = message
            with self._cond:
                listeners = [p for _, p in self._waiters.values() if p is not None]
            for listener in listeners:
                listener(host, message)

        try:
            # Embedded: the per-push limit (a hung agent must not outlast the deadline);
            # remote: the controller's wait.
            _, run.result = self.engine.converge(progress=progress, timeout=min(budget, 60.0)
                                                 if not self.remote else budget)
        except BaseException as e:
            run.error = e
        finally:
            with self._cond:
                self._run = None
                if run.result is not None and not getattr(run.result, "stopped", False):
                    self._served, self._last = run.covers, run.result
                self._cond.notify_all()
            run.done.set()

    def _wait_for(self, run: _Run, deadline: float) -> None:
        while not run.done.wait(_POLL):
            if self.stop.is_set():
                raise WaitInterrupted(True, _pending(run))
            if time.monotonic() >= deadline:
                # The run may be about to answer with its own account of what is missing.
                if run.done.wait(_GRACE) and run.error is not None:
                    raise WaitInterrupted(False, _pending(run), str(run.error))
                if not run.done.is_set():
                    raise WaitInterrupted(False, _pending(run))
                return

    def close(self) -> None:
        with self._open_lock:
            if self._close is not None:
                self._close()
            self._engine = self._close = None


def _pending(run: _Run) -> dict[str, str]:
    """Hosts not converged yet, with their latest progress (a controller's own progress, e.g.
    waiting for a leader, comes without a host)."""
    return {h or "controller": m for h, m in sorted(run.hosts.items()) if m != "converged"}


def _close_embedded(engine: Any) -> None:
    close = getattr(engine.agents, "close", None)
    if close is not None:
        close()
    engine.store.close()
