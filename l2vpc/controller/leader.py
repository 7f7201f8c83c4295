"""Leader election among the controllers of one store, and the leader record everyone reads.

Who leads is decided by the plane store's lock (`PlaneStore.try_leadership`): on PostgreSQL a
session advisory lock that the server frees the moment the holder's connection dies (a killed
controller), on SQLite an flock on a file beside the state file, which the kernel frees when
the process dies. Every controller tries once per tick, so a successor takes over within a tick
of the lock being freed.

The lock decides; the record in the store (`plane_state['leader']`: id, term, lease expiry)
only tells: Status on any controller names the leader, and a waiter tells "no controller is
leading" from an expired lease. The leader renews the lease on every heartbeat flush.

Fencing: every write the leader makes as leader (host status, converged revision) runs
`fence(tx)` first, which refuses when the record names another term: a leader that lost its
lock (partitioned from the database) and was replaced cannot overwrite its successor's work.
Its pushes to agents carry config generations from the shared store counter, so agents
refuse them as stale once the successor has pushed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from l2vpc.controller.planestore import Event, Lease, PlaneStore, PlaneTransaction, open_plane
from l2vpc.engine.errors import TemporaryError
from l2vpc.engine.store.base import Store, Transaction

if TYPE_CHECKING:
    from l2vpc.controller.metrics import ControllerMetrics

log = logging.getLogger(__name__)

LEADER_KEY = "leader"
ELECTION = "reconciler"
CHANNEL = "l2vpc_plane"  # notifications: desired:<rev>, converged:<rev>, leader:<id>


class LostLeadership(TemporaryError):
    """This controller no longer leads; what it was about to write is dropped."""


@dataclass(frozen=True)
class LeaderRecord:
    id: str
    term: int
    since: float  # store clock
    expires: float  # store clock; renewed while the leader runs

    @staticmethod
    def parse(data: dict[str, Any] | None) -> LeaderRecord | None:
        if not data:
            return None
        try:
            return LeaderRecord(str(data["id"]), int(data["term"]), float(data["since"]), float(data["expires"]))
        except (KeyError, TypeError, ValueError):
            return None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "term": self.term, "since": self.since, "expires": self.expires}


def read_leader(p: PlaneTransaction) -> LeaderRecord | None:
    return LeaderRecord.parse(p.get_state(LEADER_KEY))


class Elector:
    """This controller's side of the election. `lease` is None while following.

    Called from the control loop (try_acquire, check) and the heartbeat flusher (renew);
    `lease` is replaced atomically, so both see a consistent value."""

    def __init__(self, store: Store | PlaneStore, controller_id: str, lease_seconds: float,
                 name: str = ELECTION) -> None:
        self.plane = open_plane(store)
        self.controller_id = controller_id
        self.lease_seconds = lease_seconds
        self.name = name
        self.lease: Lease | None = None
        self.since = 0.0  # store clock when this controller took over
        self.metrics: ControllerMetrics | None = None

    @property
    def leading(self) -> bool:
        return self.lease is not None

    @property
    def term(self) -> int:
        lease = self.lease
        return lease.term if lease is not None else 0

    def try_acquire(self) -> bool:
        """Take the lock if it is free; on success record this controller as the leader."""
        if self.lease is not None:
            return True
        lease = self.plane.try_leadership(self.name)
        if lease is None:
            return False
        try:
            with self.plane.transaction() as p:
                now = p.clock()
                previous = read_leader(p)
                if previous is not None and previous.term >= lease.term:
                    raise LostLeadership(f"a newer leader ({previous.id}, term {previous.term}) is recorded")
                p.put_state(LEADER_KEY, LeaderRecord(self.controller_id, lease.term, now,
                                                     now + self.lease_seconds).to_dict())
                was = f" after {previous.id} (term {previous.term})" if previous else ""
                p.add_events([Event(now, "", f"leader changed: {self.controller_id} leads (term {lease.term}){was}")])
                p.notify(CHANNEL, f"leader:{self.controller_id}")
        except BaseException:
            lease.release()
            raise
        self.since = now
        self.lease = lease
        if self.metrics is not None:
            self.metrics.leadership("acquired")
        log.info("controller %s leads (term %d)", self.controller_id, lease.term)
        return True

    def check(self) -> bool:
        """Whether this controller still leads (one round trip to the store's lock)."""
        lease = self.lease
        if lease is None:
            return False
        if lease.is_held():
            return True
        self.drop()
        return False

    def drop(self) -> None:
        lease, self.lease = self.lease, None
        if lease is not None:
            log.warning("controller %s lost leadership (term %d)", self.controller_id, lease.term)
            if self.metrics is not None:
                self.metrics.leadership("lost")
            lease.release()

    def fence(self, tx: Transaction) -> None:
        """Refuse (LostLeadership) unless the store still records this controller's term; `tx`
        is an engine transaction (Engine.set_host_status runs this first in its own)."""
        record = read_leader(self.plane.on(tx))
        term = self.term
        if not term or record is None or record.term != term or record.id != self.controller_id:
            raise LostLeadership(f"controller {self.controller_id} no longer leads")

    def renew(self, p: PlaneTransaction, now: float) -> None:
        """Extend the lease in the record (inside the heartbeat flush's transaction)."""
        self.fence(p.tx)
        p.put_state(LEADER_KEY, LeaderRecord(self.controller_id, self.term, self.since,
                                             now + self.lease_seconds).to_dict())

    def resign(self) -> None:
        """Step down (stopping): end the lease in the record and free the lock, so another
        controller takes over on its next tick instead of when the lease would expire."""
        if self.lease is None:
            return
        try:
            with self.plane.transaction() as p:
                self.fence(p.tx)
                now = p.clock()
                p.put_state(LEADER_KEY, LeaderRecord(self.controller_id, self.term, self.since, now).to_dict())
                p.add_events([Event(now, "", f"leader {self.controller_id} stepped down (term {self.term})")])
                p.notify(CHANNEL, "leader:")
        except Exception as e:  # the lock is freed below anyway; the record then expires
            log.warning("could not record stepping down: %s", e)
        lease, self.lease = self.lease, None
        if lease is not None:
            lease.release()
