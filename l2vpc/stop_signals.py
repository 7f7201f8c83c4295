"""Daemons (agent, fleet, controller) stop on SIGTERM or SIGINT: the handler sets an event the
main thread waits on.

    with StopSignals(log) as stop:   # handlers installed: a stop request is never lost
        ... serve ...
        stop.wait()                   # until a signal
                                      # leaving the block restores the previous handlers

Why not a plain untimed `Event.wait()`: the kernel may hand a process's signal to any of its
threads (gRPC's, say). CPython then only flags it for the main thread, and a main thread asleep
in an untimed lock wait is never woken to run the handler: the daemon ignores SIGTERM for good.
Waking every half second bounds that to half a second. Imports nothing of l2vpc.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

_WAKE_SECONDS = 0.5
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._event = threading.Event()
        self._previous: dict[int, Any] = {sig: signal.signal(sig, self._on_signal) for sig in SIGNALS}

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._log.info("received %s, stopping", signal.Signals(signum).name)
        self._event.set()

    def wait(self) -> None:
        """Until SIGTERM or SIGINT arrives."""
        while not self._event.wait(_WAKE_SECONDS):
            pass

    def restore(self) -> None:
        """Put back the handlers that were there before."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def __enter__(self) -> StopSignals:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.restore()
