"""Sends the heartbeat at once when a BGP session of this host changes.

The controller learns what a host runs from the digest its heartbeats carry (heartbeat.py), so
a session that comes up between heartbeats, with the prefixes the customer announces, would
wait up to an interval (2 s) before anything routes to them. The watch polls the sessions'
state alone (a vty call per router, no netlink dump: the driver's `sessions()`) every
`interval` and nudges the heartbeat when it differs from the last poll.

    watch = SessionWatch(driver.sessions, lambda: beats.nudge(host))
    watch.start()
    ...
    watch.close()
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable

log = logging.getLogger("l2vpc.agent")

INTERVAL = 0.2  # seconds between polls: well under the heartbeat interval, a few ms of CPU each


class SessionWatch:
    def __init__(self, read: Callable[[], Hashable], changed: Callable[[], None], interval: float = INTERVAL) -> None:
        self._read = read
        self._changed = changed
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="session-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        last: Hashable = None
        while not self._stop.wait(self._interval):
            try:
                now = self._read()
            except Exception as e:  # a router being rebuilt: the next poll sees it
                log.debug("reading BGP sessions failed: %s", e)
                continue
            if now != last and last is not None:
                self._changed()
            last = now
