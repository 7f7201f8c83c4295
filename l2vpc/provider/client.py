"""How the provider reaches the engine: embedded (in-process, SQLite at `state_path`).

Remote mode (a controller at `endpoint`) arrives with the controller. The engine is opened on
first use, not at configure time, so `terraform validate` and the handshake stay fast, and
imports of the engine happen only then.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from l2vpc.engine.api import Engine
    from l2vpc.engine.executor import ExecutionResult

log = logging.getLogger("l2vpc.provider")


class ClientError(Exception):
    """The provider is configured so that it cannot reach an engine."""


class EngineClient:
    def __init__(self, settings: dict[str, Any], stop: threading.Event) -> None:
        self.settings = settings
        self.stop = stop
        self._engine: Engine | None = None
        self._open_lock = threading.Lock()
        # Converges are coalesced: each pushes every host's whole desired state, so a converge
        # that started after a change was committed also serves that change. Terraform applies
        # up to 10 resources at once; they share converges instead of queueing one each.
        self._cond = threading.Condition()
        self._requests = 0  # converge requests so far (each after its change was committed)
        self._served = 0  # requests covered by the last finished converge
        self._running = False
        self._last: ExecutionResult | None = None

    @property
    def engine(self) -> Engine:
        with self._open_lock:
            if self._engine is None:
                if self.settings.get("endpoint"):
                    raise ClientError(
                        "controller endpoints are not available in this version of the provider; "
                        "unset `endpoint` to use the embedded engine with `state_path`"
                    )
                from l2vpc.engine.embedded import open_engine

                self._engine = open_engine(self.settings["state_path"], default_region=self.settings.get("region"))
                self._engine.stop = self.stop
            return self._engine

    def warm_up(self) -> None:
        """Import the engine in the background while Terraform is still busy, so the first
        plan or read does not stall every parallel call on the import."""

        def load() -> None:
            try:
                import l2vpc.engine.embedded
                import l2vpc.engine.model  # noqa: F401
            except Exception:  # the real use reports it
                log.debug("engine warm-up import failed", exc_info=True)

        threading.Thread(target=load, name="engine-warm-up", daemon=True).start()

    def converge(self) -> ExecutionResult:
        """Converge the hosts to everything committed before this call."""
        with self._cond:
            self._requests += 1
            mine = self._requests
            while True:
                if self._served >= mine and self._last is not None:
                    return self._last
                if not self._running:
                    self._running = True
                    covers = self._requests
                    break
                self._cond.wait()
        result: ExecutionResult | None = None
        try:
            _, result = self.engine.converge(progress=lambda host, msg: log.info("host %s: %s", host, msg))
            return result
        finally:
            with self._cond:
                self._running = False
                if result is not None:
                    self._served, self._last = covers, result
                self._cond.notify_all()

    def close(self) -> None:
        with self._open_lock:
            if self._engine is not None:
                close = getattr(self._engine.agents, "close", None)
                if close is not None:
                    close()
                self._engine.store.close()
                self._engine = None
