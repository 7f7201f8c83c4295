"""Group commit of creates (l2vpc/controller/batching.py) on real PostgreSQL: creates waiting
together share one transaction, and a bad create in a batch fails alone."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from l2vpc.controller.batching import CreateBatcher
from l2vpc.engine.api import Engine
from l2vpc.engine.errors import ValidationError
from l2vpc.engine.executor import MemoryAgentPool
from l2vpc.engine.store import open_store


def _queue_behind_a_held_lock(db: Any, batcher: CreateBatcher, jobs: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """Start `jobs` while another session holds the store's write lock, so they pile up in the
    batcher; then let go. Returns each job's result or exception, in order."""
    results: list[Any] = [None] * len(jobs)

    def run(i: int, tenant: str, data: dict[str, Any]) -> None:
        try:
            results[i] = batcher.create(tenant, "vpc", data)
        except Exception as e:
            results[i] = e

    with open_store(db.url) as other, other.transaction() as tx:
        tx.next_sequence("hold-the-write-lock")
        threads = [threading.Thread(target=run, args=(i, t, d)) for i, (t, d) in enumerate(jobs)]
        threads[0].start()
        time.sleep(0.3)  # the first create is now inside its transaction, waiting for the lock
        for t in threads[1:]:
            t.start()
        time.sleep(0.3)  # the rest are queued in the batcher
    for t in threads:
        t.join(timeout=30)
    return results


def test_waiting_creates_share_one_transaction(db: Any, secret_key: str) -> None:
    with open_store(db.url) as store:
        batcher = CreateBatcher(store, lambda tenant: Engine(store, MemoryAgentPool(), tenant=tenant))
        jobs = [("acme" if i % 2 else "globex", {"name": f"net{i}", "region": "us-east"}) for i in range(12)]
        results = _queue_behind_a_held_lock(db, batcher, jobs)
        batcher.close()
        assert all(not isinstance(r, Exception) for r in results), results
        assert batcher.batches == 1  # the 11 that queued went in one transaction
        rows = db.raw("SELECT tenant, data->>'name' FROM objects WHERE kind = 'vpc' ORDER BY 2")
        assert sorted(rows) == sorted((t, d["name"]) for t, d in jobs)


def test_a_bad_create_in_a_batch_fails_alone(db: Any, secret_key: str) -> None:
    with open_store(db.url) as store:
        batcher = CreateBatcher(store, lambda tenant: Engine(store, MemoryAgentPool(), tenant=tenant))
        jobs = [("acme", {"name": "first", "region": "us-east"}),
                ("acme", {"name": "dup", "region": "us-east"}),
                ("acme", {"name": "ok1", "region": "us-east"}),
                ("acme", {"name": "dup", "region": "us-east"}),  # taken by an earlier create of the batch
                ("acme", {"name": "bad", "region": "us-east", "mtu": 99999}),
                ("acme", {"name": "ok2", "region": "us-east"})]
        results = _queue_behind_a_held_lock(db, batcher, jobs)
        batcher.close()
        errors = {i: r for i, r in enumerate(results) if isinstance(r, Exception)}
        assert set(errors) == {3, 4}, results
        assert isinstance(errors[3], ValidationError) and errors[3].first[0] == "name"
        assert isinstance(errors[4], ValidationError) and errors[4].first[0] == "mtu"
        names = sorted(r[0] for r in db.raw("SELECT data->>'name' FROM objects WHERE kind = 'vpc'"))
        assert names == ["dup", "first", "ok1", "ok2"]
        # Nothing of the failed creates is left behind (names, VNIs).
        pools = db.raw("SELECT value FROM allocations WHERE pool LIKE 'name:vpc%%'")
        assert sorted(v for (v,) in pools) == ["dup", "first", "ok1", "ok2"]
        assert len(db.raw("SELECT 1 FROM allocations WHERE pool = 'vni'")) == 4


def test_closed_batcher_refuses(db: Any, secret_key: str) -> None:
    from l2vpc.engine.errors import TemporaryError

    with open_store(db.url) as store:
        batcher = CreateBatcher(store, lambda tenant: Engine(store, MemoryAgentPool(), tenant=tenant))
        batcher.create("acme", "vpc", {"name": "a", "region": "us-east"})
        batcher.close()
        with pytest.raises(TemporaryError):
            batcher.create("acme", "vpc", {"name": "b", "region": "us-east"})
