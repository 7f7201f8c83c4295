"""Liveness: agents' heartbeats, buffered in memory, and the up/down verdicts drawn from them.

A heartbeat must cost next to nothing: 1,000 hosts every 2 s is 500 a second spread over the
controllers. So `heartbeat()` only checks its input and overwrites the host's slot in a dict;
a flusher thread drains the dict and writes the whole batch in one statement per flush
(PlaneTransaction.put_heartbeats). Only the newest heartbeat of a host in a flush interval matters.

The leader reads the recorded heartbeats and decides (`verdicts`); times are the store's clock
(the flusher converts local receive times with a measured offset), so controllers whose clocks
disagree still agree on who is late.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from l2vpc.engine.errors import ValidationError

_DIGEST = re.compile(r"[0-9a-f]{0,128}")
_MAX_GENERATION = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Beat:
    received: float  # time.time() when it arrived at this controller
    accepted_generation: int
    converged_generation: int
    converging: bool
    digest: str


def check_heartbeat(host: object, accepted_generation: object, converged_generation: object,
                    converging: object, actual_digest: object) -> None:
    """ValidationError naming the first bad field (the gRPC service passes request fields)."""
    if not isinstance(host, str) or not host:
        raise ValidationError(f"must be the host's name, got {host!r}", path="host")
    for field, value in (("accepted_generation", accepted_generation), ("converged_generation", converged_generation)):
        if type(value) is not int or not 0 <= value <= _MAX_GENERATION:
            raise ValidationError(f"must be an integer from 0 to 2^63-1, got {value!r}", path=field)
    if type(converging) is not bool:
        raise ValidationError(f"must be true or false, got {converging!r}", path="converging")
    if not isinstance(actual_digest, str) or not _DIGEST.fullmatch(actual_digest):
        shown = actual_digest[:40] if isinstance(actual_digest, str) else actual_digest
        raise ValidationError(f"must be hostconfig.config_digest() (lowercase hex, at most 128), got {shown!r}",
                              path="actual_digest")


class HeartbeatBuffer:
    """The newest heartbeat of each host since the last flush. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._beats: dict[str, Beat] = {}
        self._digests: dict[str, str] = {}  # the digest each host sent last (across flushes)

    def add(self, host: str, beat: Beat) -> bool:
        """True when the beat's digest differs from the host's previous one: what it runs
        changed (drift, a session that came up), worth recording now rather than at the flush."""
        with self._lock:
            self._beats[host] = beat
            before = self._digests.get(host)
            self._digests[host] = beat.digest
        return bool(beat.digest) and before is not None and before != beat.digest

    def drain(self) -> dict[str, Beat]:
        with self._lock:
            beats, self._beats = self._beats, {}
        return beats

    def restore(self, beats: Mapping[str, Beat]) -> None:
        """Put back a batch whose write failed, under anything newer that arrived meanwhile."""
        with self._lock:
            for host, beat in beats.items():
                newer = self._beats.get(host)
                if newer is None or newer.received < beat.received:
                    self._beats[host] = beat

    def __len__(self) -> int:
        with self._lock:
            return len(self._beats)


def verdicts(statuses: Mapping[str, str], last_seen: Mapping[str, float], now: float, down_after: float,
             leading_since: float) -> dict[str, str]:
    """Hosts whose status must change: host -> 'down' | 'up'.

    Up → down when nothing was heard for `down_after`, counting from no earlier than
    `leading_since`: a leader that just took over (perhaps after every controller was away)
    first gives agents time to be heard again instead of failing every service over at once.
    Down → up only on a heartbeat younger than `down_after`, i.e. one that arrived after the
    host was marked down, so a host at the threshold does not flap. Hosts never heard from
    (registered by other means) keep their status.
    """
    out: dict[str, str] = {}
    for host, status in statuses.items():
        seen = last_seen.get(host)
        if seen is None:
            continue
        if status == "down":
            if now - seen <= down_after:
                out[host] = "up"
        elif now - max(seen, leading_since) > down_after:
            out[host] = "down"
    return out
