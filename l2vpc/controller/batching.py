"""Group commit for creates: the creates that arrive together share one store transaction.

Every write transaction takes the store's write lock (for attachments: their VPCs' and
workloads' keys only) and, on PostgreSQL, waits for its commit to reach the disk. With many
clients (Terraform runs 10 creates at once per apply, and several applies may run against
several controllers) one transaction per create spends most of its time queueing for the lock,
in round trips and flushing. Here a writer thread takes the creates waiting at that moment (up
to `max_batch`) and runs them in one transaction: one lock acquisition, a dozen statements and
one flush for the batch. While that batch runs, new creates wait for the next one. Only when
a batch is stalled (running for more than STALLED_AFTER: waiting for another controller's lock
on its VPC, or for a whole-store transaction) does another of the `writers` threads take the
creates it does not block: a writer never takes a create whose VPC or workload a running batch
holds, nor one queued behind such a create (creates of one key keep their order), so the
writers of one controller never wait on each other's locks.

A create that fails (bad input, a name taken by an earlier create of the same batch) fails
alone: what it kept is dropped and the others are committed (engine/batch.py). Only when some
of its writes had already reached the store is the batch rolled back and its creates run again
one transaction each.
A store failure (connection lost) fails every create of the batch, as it would have alone.
Measured in bench/bench_controller_api.py (creates/s, p99, where the time goes).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from l2vpc.engine.api import Engine
from l2vpc.engine.batch import Batch, NotUndone
from l2vpc.engine.errors import TemporaryError, UserError
from l2vpc.engine.quotas import DEFAULTS_ID, LIMITED, QUOTA_KIND, overdrawn, pool_count, quota_id
from l2vpc.engine.store.base import Store
from l2vpc.engine.store.cached import CachedTransaction

log = logging.getLogger("l2vpc.controller.batching")

DEFAULT_MAX_BATCH = 64
DEFAULT_WRITERS = 4
# A batch running longer than this waits for a lock (another controller's batch on the same VPC,
# a whole-store transaction) or for the disk: only then may the next writer start one. Sooner,
# the creates wait for the running batch and go in the next, larger one: each batch costs the
# database a dozen statements, so on a busy machine writers starting at once cost 3.7 ms (two)
# and 4.6 ms (four) of CPU per create against 2.6 ms for one (bench_controller_api.py, 2 controllers).
STALLED_AFTER = 0.1
# A create whose transaction needs the whole store (anything but an attachment): it conflicts
# with every other batch of this controller.
_WHOLE_STORE = frozenset({"*"})


@dataclass
class _Create:
    tenant: str
    kind: str
    data: Mapping[str, Any]
    adopt: bool | str
    keys: frozenset[str] = _WHOLE_STORE  # what its transaction locks (see _keys)
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()


class CreateBatcher:
    def __init__(self, store: Store, engine_for: Callable[[str], Engine], *,
                 max_batch: int = DEFAULT_MAX_BATCH, writers: int = DEFAULT_WRITERS) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch: must be at least 1, got {max_batch}")
        if writers < 1:
            raise ValueError(f"writers: must be at least 1, got {writers}")
        self.store = store
        self.engine_for = engine_for
        self.max_batch = max_batch
        self.writers = writers
        self._waiting: deque[_Create] = deque()
        self._cv = threading.Condition()
        self._busy: list[tuple[frozenset[str], float]] = []  # (keys, start) of the batches being written
        self._closed = False
        self._threads: list[threading.Thread] = []
        self._macs: deque[int] = deque()  # MAC counter values taken ahead
        self._macs_lock = threading.Lock()
        self.batches = 0  # transactions run for batches of more than one create (for tests, benches)

    def create(self, tenant: str, kind: str, data: Mapping[str, Any], *, adopt: bool | str = False) -> Any:
        """Engine(tenant).create(kind, data, adopt=...), committed together with the creates
        that wait alongside it. Raises what that create would raise."""
        job = _Create(tenant, kind, data, adopt, _keys(kind, data))
        with self._cv:
            if self._closed:
                raise TemporaryError("the controller is shutting down; retry against another one")
            if not self._threads:
                self._threads = [threading.Thread(target=self._run, name=f"create-writer-{i}", daemon=True)
                                 for i in range(self.writers)]
                for t in self._threads:
                    t.start()
            self._waiting.append(job)
            self._cv.notify()
        # No timeout: the writer always finishes a job, and giving up here would not undo a
        # create it commits afterwards.
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    def close(self) -> None:
        """Finish what is queued, then refuse new creates."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=60)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not (batch := self._take()):
                    if self._closed and not self._waiting:
                        self._cv.notify_all()  # the other writers may stop too
                        return
                    self._cv.wait(timeout=STALLED_AFTER if self._busy and self._waiting else None)
                keys = frozenset().union(*(job.keys for job in batch))
                entry = (keys, time.monotonic())
                self._busy.append(entry)
            try:
                self._execute(batch)
            except BaseException as e:  # never leave a caller waiting
                log.exception("create batch failed")
                for job in batch:
                    if not job.done.is_set():
                        job.finish(error=e)
            finally:
                with self._cv:
                    self._busy.remove(entry)
                    self._cv.notify_all()

    def _take(self) -> list[_Create]:
        """The waiting creates this writer may run now (under self._cv), in queue order, up to
        max_batch: keyed ones whose keys no running batch holds and no earlier waiting create
        it leaves behind; a whole-store create when nothing runs, with everything after it."""
        if self._busy and time.monotonic() - max(start for _, start in self._busy) < STALLED_AFTER:
            return []  # the running batch is not stalled: what waits goes in the next one
        busy = frozenset().union(*(keys for keys, _ in self._busy))
        if "*" in busy:
            return []
        batch: list[_Create] = []
        blocked = set(busy)
        whole = False
        left: deque[_Create] = deque()
        while self._waiting and len(batch) < self.max_batch:
            job = self._waiting.popleft()
            if whole:
                batch.append(job)  # under the whole store's lock every create may run
            elif "*" in job.keys and not batch and not blocked:
                whole = True
                batch.append(job)
            elif "*" in job.keys:
                left.append(job)  # it waits for the running batches; what follows waits for it
                break
            elif blocked.isdisjoint(job.keys):
                batch.append(job)
            else:
                blocked |= job.keys
                left.append(job)
        left.extend(self._waiting)
        self._waiting = left
        return batch

    def _execute(self, batch: list[_Create]) -> None:
        try:
            results = self._together(batch)
        except (UserError, NotUndone) as e:
            if len(batch) == 1:
                batch[0].finish(error=e.error if isinstance(e, NotUndone) else e)
                return
            # A create failed after some of its writes reached the store: all rolled back;
            # each runs alone now.
            for job in batch:
                try:
                    result = self._together([job])[0]
                    job.finish(error=result) if isinstance(result, UserError) else job.finish(result)
                except NotUndone as e1:
                    job.finish(error=e1.error)
                except Exception as e1:
                    job.finish(error=e1)
            return
        except Exception as e:  # the store failed: every create fails as it would alone
            for job in batch:
                job.finish(error=e)
            return
        if len(batch) > 1:
            self.batches += 1
        for job, result in zip(batch, results, strict=True):
            # A create that failed fails alone: the others of the batch are committed.
            job.finish(error=result) if isinstance(result, UserError) else job.finish(result)

    def _mac_numbers(self, count: int) -> list[int]:
        """Values of the global MAC counter for `count` creates. Taken from the store a block at
        a time, in a short transaction of its own: the counter's row stays locked until commit,
        so taking values inside the batch would make every controller's batches wait on each
        other. Values left over when the controller stops are never used (gaps are harmless)."""
        with self._macs_lock:
            if len(self._macs) < count:
                block = max(MAC_BLOCK, count)
                with self.store.keyed_transaction(["counter:mac"]) as tx:
                    last = tx.next_sequence_block("mac", block)
                self._macs.extend(range(last - block + 1, last + 1))
            return [self._macs.popleft() for _ in range(count)]

    def _together(self, batch: list[_Create]) -> list[Any]:
        """The creates of `batch` in one transaction. Attachment creates lock only their VPCs
        and workloads (Store.keyed_transaction), so another controller's batch on other VPCs
        runs at the same time; anything else takes the store's whole write lock.

        Quotas stay exact under that concurrency: after the batch's writes reached the store, its
        tenants' counts are read again (quotas.overdrawn); when another transaction took the
        last places at the same time, this one rolls back and runs again with the tenants'
        counters locked from the start, so exactly the creates over the limit fail."""
        try:
            return self._attempt(batch, exact=False)
        except _Overdrawn:
            return self._attempt(batch, exact=True)

    def _attempt(self, batch: list[_Create], *, exact: bool) -> list[Any]:
        keys = frozenset().union(*(j.keys for j in batch))
        attachments = sum(1 for j in batch if j.kind == "attachment")
        numbers = self._mac_numbers(attachments) if attachments else []
        counted = sorted({(j.kind, j.tenant) for j in batch if j.kind in LIMITED})
        context = self.store.transaction() if "*" in keys else self.store.keyed_transaction(sorted(keys))
        with context as stored:
            # What the creates read, read ahead for all of them (a few queries instead of
            # several per create), their writes sent together; see l2vpc/engine/batch.py.
            tx = CachedTransaction(stored)
            # With them the quota rows and counts of every tenant of the batch, not two queries
            # per tenant (quotas.admit reads them through the cache).
            tenants = sorted({j.tenant for j in batch})
            quota_rows = [(QUOTA_KIND, q) for q in (DEFAULTS_ID, *(quota_id(t) for t in tenants))]
            tx.prefetch_creates([(j.kind, j.data) for j in batch], numbers, also=quota_rows)
            pools = [pool_count(kind, tenant) for kind, tenant in counted]
            held = tx.lock_pool_sizes(pools) if exact else tx.pool_sizes(pools)
            out: list[Any] = []
            batches = [Batch(self.engine_for(j.tenant), tx) for j in batch]
            for job, b in zip(batch, batches, strict=True):
                try:
                    out.append(b.create(job.kind, job.data, adopt=job.adopt))
                except UserError as e:
                    out.append(e)
            # The counts this batch added to (a tenant already above a lowered quota added none).
            now = tx.pool_sizes(pools)
            grown = [c for c, p in zip(counted, pools, strict=True) if now.get(p, 0) > held.get(p, 0)]
            batches[0].finish()
            if grown and overdrawn(tx, stored, grown):
                if exact:  # nobody else can add to locked counters: a bug, not a race
                    raise TemporaryError("quota counters changed while locked; retry")
                raise _Overdrawn()
            return out


class _Overdrawn(Exception):
    """Another transaction filled a tenant's quota while this batch ran: roll back, run again."""


MAC_BLOCK = 1024  # MAC counter values a controller takes at once (of 2**24; unused ones are skipped)


def _keys(kind: str, data: Mapping[str, Any]) -> frozenset[str]:
    """What an attachment create's transaction must lock: its VPC and workload (its rules -
    one host per workload, at most 10 NICs, the VPC's addresses and members - involve only
    those). Any other create needs the whole store (_WHOLE_STORE)."""
    vpc, workload = data.get("vpc_id"), data.get("workload")
    if kind != "attachment" or not isinstance(vpc, str) or not isinstance(workload, str):
        return _WHOLE_STORE
    return frozenset({f"vpc:{vpc}", f"workload:{workload}"})
