"""Group commit for creates: the creates that arrive together share one store transaction.

Every write transaction takes the store's one write lock and, on PostgreSQL, waits for its
commit to reach the disk. With many clients (Terraform runs 10 creates at once per apply, and
several applies may run against several controllers) one transaction per create spends most of
its time queueing for the lock and flushing. Here one writer thread per controller takes every
create waiting at that moment (up to `max_batch`) and runs them in one transaction: one lock
acquisition and one flush for the batch.

A create that fails (bad input, a name taken by an earlier create of the same batch) fails
alone: what it kept is dropped and the others are committed (engine/batch.py). Only when some
of its writes had already reached the store is the batch rolled back and its creates run again
one transaction each.
A store failure (connection lost) fails every create of the batch, as it would have alone.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from l2vpc.engine.api import Engine
from l2vpc.engine.batch import Batch, NotUndone
from l2vpc.engine.errors import TemporaryError, UserError
from l2vpc.engine.store.base import Store
from l2vpc.engine.store.cached import CachedTransaction

log = logging.getLogger("l2vpc.controller.batching")

DEFAULT_MAX_BATCH = 64


@dataclass
class _Create:
    tenant: str
    kind: str
    data: Mapping[str, Any]
    adopt: bool | str
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()


class CreateBatcher:
    def __init__(self, store: Store, engine_for: Callable[[str], Engine], *,
                 max_batch: int = DEFAULT_MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch: must be at least 1, got {max_batch}")
        self.store = store
        self.engine_for = engine_for
        self.max_batch = max_batch
        self._waiting: deque[_Create] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._macs: deque[int] = deque()  # MAC counter values taken ahead (writer thread only)
        self.batches = 0  # transactions run for batches of more than one create (for tests, benches)

    def create(self, tenant: str, kind: str, data: Mapping[str, Any], *, adopt: bool | str = False) -> Any:
        """Engine(tenant).create(kind, data, adopt=...), committed together with the creates
        that wait alongside it. Raises what that create would raise."""
        job = _Create(tenant, kind, data, adopt)
        with self._cv:
            if self._closed:
                raise TemporaryError("the controller is shutting down; retry against another one")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="create-batcher", daemon=True)
                self._thread.start()
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
            self._cv.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=60)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._waiting and not self._closed:
                    self._cv.wait()
                if not self._waiting:
                    return
                batch = [self._waiting.popleft() for _ in range(min(self.max_batch, len(self._waiting)))]
            try:
                self._execute(batch)
            except BaseException as e:  # never leave a caller waiting
                log.exception("create batch failed")
                for job in batch:
                    if not job.done.is_set():
                        job.finish(error=e)

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
        if len(self._macs) < count:
            block = max(MAC_BLOCK, count)
            with self.store.keyed_transaction(["counter:mac"]) as tx:
                last = tx.next_sequence_block("mac", block)
            self._macs.extend(range(last - block + 1, last + 1))
        return [self._macs.popleft() for _ in range(count)]

    def _together(self, batch: list[_Create]) -> list[Any]:
        """The creates of `batch` in one transaction. Attachment creates lock only their VPCs
        and workloads (Store.keyed_transaction), so another controller's batch on other VPCs
        runs at the same time; anything else takes the store's whole write lock."""
        keys = _keys(batch)
        attachments = sum(1 for j in batch if j.kind == "attachment")
        numbers = self._mac_numbers(attachments) if attachments else []
        context = self.store.transaction() if keys is None else self.store.keyed_transaction(keys)
        with context as stored:
            # What the creates read, read ahead for all of them (a few queries instead of
            # several per create), their writes sent together; see l2vpc/engine/batch.py.
            tx = CachedTransaction(stored)
            tx.prefetch_creates([(j.kind, j.data) for j in batch], numbers)
            out: list[Any] = []
            batches = [Batch(self.engine_for(j.tenant), tx) for j in batch]
            for job, b in zip(batch, batches, strict=True):
                try:
                    out.append(b.create(job.kind, job.data, adopt=job.adopt))
                except UserError as e:
                    out.append(e)
            batches[0].finish()
            return out


MAC_BLOCK = 1024  # MAC counter values a controller takes at once (of 2**24; unused ones are skipped)


def _keys(batch: list[_Create]) -> list[str] | None:
    """What an all-attachment batch must lock: each create's VPC and workload (its rules -
    one host per workload, at most 10 NICs, the VPC's addresses and members - involve only
    those). None when a create needs the whole store."""
    keys: set[str] = set()
    for job in batch:
        vpc, workload = job.data.get("vpc_id"), job.data.get("workload")
        if job.kind != "attachment" or not isinstance(vpc, str) or not isinstance(workload, str):
            return None
        keys |= {f"vpc:{vpc}", f"workload:{workload}"}
    return sorted(keys)
