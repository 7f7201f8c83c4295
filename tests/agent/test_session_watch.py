"""The agent's BGP session watch (l2vpc/agent/session_watch.py): a change between two polls
nudges the heartbeat, once per change; the first read and unchanged reads do not."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from l2vpc.agent.session_watch import SessionWatch


def test_each_change_nudges_once_and_a_failed_read_changes_nothing() -> None:
    states: Iterator[tuple[str, str] | Exception] = iter([
        ("dx", "Active"), ("dx", "Active"), RuntimeError("vty gone"), ("dx", "Established"), ("dx", "Established")])
    done = threading.Event()
    nudges: list[float] = []

    def read() -> tuple[str, str]:
        try:
            value = next(states)
        except StopIteration:
            done.set()
            return ("dx", "Established")
        if isinstance(value, Exception):
            raise value
        return value

    watch = SessionWatch(read, lambda: nudges.append(time.monotonic()), interval=0.01)
    watch.start()
    try:
        assert done.wait(5)
    finally:
        watch.close()
    assert len(nudges) == 1  # Active -> Established; not the first read, not the failed one
