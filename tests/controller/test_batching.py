"""Group commit of creates (l2vpc/controller/batching.py) on real PostgreSQL: creates waiting
together share one transaction, and a bad create in a batch fails alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from l2vpc.agent.local import LocalAgentPool
from l2vpc.controller.batching import CreateBatcher
from l2vpc.engine.api import Engine
from l2vpc.engine.errors import ValidationError
from l2vpc.engine.store import open_store


def _queue_behind_a_held_lock(db: Any, batcher: CreateBatcher, jobs: list[tuple[str, dict[str, Any]]],
                              kind: str = "vpc") -> list[Any]:
    """Start `jobs` while another session holds the store's write lock, so they pile up in the
    batcher; then let go. Returns each job's result or exception, in order."""
    results: list[Any] = [None] * len(jobs)

    def run(i: int, tenant: str, data: dict[str, Any]) -> None:
        try:
            results[i] = batcher.create(tenant, kind, data)
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
        batcher = CreateBatcher(store, lambda tenant: Engine(store, LocalAgentPool(), tenant=tenant))
        jobs = [("acme" if i % 2 else "globex", {"name": f"net{i}", "region": "us-east"}) for i in range(12)]
        results = _queue_behind_a_held_lock(db, batcher, jobs)
        batcher.close()
        assert all(not isinstance(r, Exception) for r in results), results
        assert batcher.batches == 1  # the 11 that queued went in one transaction
        rows = db.raw("SELECT tenant, data->>'name' FROM objects WHERE kind = 'vpc' ORDER BY 2")
        assert sorted(rows) == sorted((t, d["name"]) for t, d in jobs)


def test_a_bad_create_in_a_batch_fails_alone(db: Any, secret_key: str) -> None:
    with open_store(db.url) as store:
        batcher = CreateBatcher(store, lambda tenant: Engine(store, LocalAgentPool(), tenant=tenant))
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
        assert batcher.batches == 1  # the batch was committed without the two, not run again one by one
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
        batcher = CreateBatcher(store, lambda tenant: Engine(store, LocalAgentPool(), tenant=tenant))
        batcher.create("acme", "vpc", {"name": "a", "region": "us-east"})
        batcher.close()
        with pytest.raises(TemporaryError):
            batcher.create("acme", "vpc", {"name": "b", "region": "us-east"})


def test_batched_attachments_see_each_other(db: Any, secret_key: str) -> None:
    """Creates of one batch read through a shared cache: a workload's NICs in one batch get
    distinct interface names, MACs stay unique, a user's MAC is skipped by allocation, and the
    store ends as sequential creates would leave it."""
    with open_store(db.url) as store:
        engine = Engine(store, LocalAgentPool(), tenant="acme")
        for i in range(2):
            engine.register_host({"name": f"h{i}", "region": "us-east", "underlay_ip": f"10.9.0.{i + 1}"})
        vpcs = [engine.create("vpc", {"name": f"v{i}", "region": "us-east", "cidr": f"10.{i}.0.0/24"}).id
                for i in range(3)]
        # The MAC the counter hands out next is taken by a user's choice: allocation must skip it.
        taken = engine.create("attachment", {"vpc_id": vpcs[0], "workload": "pinned", "host": "h0",
                                             "mac_address": "02:4c:32:00:00:01"})
        batcher = CreateBatcher(store, lambda tenant: Engine(store, LocalAgentPool(), tenant=tenant))
        jobs = [("acme", {"vpc_id": vpcs[0], "workload": "w0", "host": "h1"})]
        jobs += [("acme", {"vpc_id": v, "workload": "w1", "host": "h0"}) for v in vpcs]
        jobs += [("acme", {"vpc_id": vpcs[0], "workload": f"x{i}"}) for i in range(4)]
        results = _queue_behind_a_held_lock(db, batcher, jobs, kind="attachment")
        batcher.close()
        assert batcher.batches == 1, results
        made = list(results)
        assert all(not isinstance(r, Exception) for r in made), made
        assert sorted(r.interface_name for r in made if r.workload == "w1") == ["net1", "net2", "net3"]
        on_v0 = [r for r in made if r.vpc_id == vpcs[0]] + [taken]
        assert len({r.mac_address for r in on_v0}) == len(on_v0)
        stored = {a.id: a for a in engine.list("attachment")}
        assert set(stored) == {r.id for r in made} | {taken.id}
        for r in made:
            assert stored[r.id].mac_address == r.mac_address and stored[r.id].host == r.host
        members = db.raw("SELECT pool, count(*) FROM allocations WHERE pool LIKE 'member:%%' GROUP BY pool")
        assert dict(members) == {f"member:{vpcs[0]}": 7, f"member:{vpcs[1]}": 1, f"member:{vpcs[2]}": 1}
        # Placement saw the batch's earlier creates: the unpinned x0..x3 spread over h0 and h1.
        placed = sorted(r.host for r in made if r.workload.startswith("x"))
        assert placed == ["h0", "h1", "h1", "h1"], placed


def test_writers_commit_other_vpcs_while_one_batch_waits(db: Any, secret_key: str) -> None:
    """Several writers per controller: while one batch waits for its VPC's lock (held here by
    another session, as another controller's batch would), a create on another VPC commits."""
    with open_store(db.url) as store:
        engine = Engine(store, LocalAgentPool(), tenant="acme")
        engine.register_host({"name": "h0", "region": "us-east", "underlay_ip": "10.9.0.1"})
        held, free = (engine.create("vpc", {"name": f"v{i}", "region": "us-east"}).id for i in range(2))
        batcher = CreateBatcher(store, lambda tenant: Engine(store, LocalAgentPool(), tenant=tenant), writers=2)
        results: dict[str, Any] = {}

        def create(vpc: str, workload: str) -> None:
            try:
                results[workload] = batcher.create("acme", "attachment", {"vpc_id": vpc, "workload": workload})
            except Exception as e:
                results[workload] = e

        waiting = threading.Thread(target=create, args=(held, "on-held"))
        other = threading.Thread(target=create, args=(free, "on-free"))
        with open_store(db.url) as elsewhere, elsewhere.keyed_transaction([f"vpc:{held}"]):
            waiting.start()
            time.sleep(0.3)  # its batch now waits for the VPC's lock
            other.start()
            other.join(timeout=10)
            assert not other.is_alive() and "on-held" not in results
            assert not isinstance(results["on-free"], Exception), results
        waiting.join(timeout=30)
        batcher.close()
        assert not isinstance(results["on-held"], Exception), results
        assert {a.workload for a in engine.list("attachment")} == {"on-held", "on-free"}


def test_concurrent_writers_of_two_controllers_hand_out_nothing_twice(db: Any, secret_key: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Two controllers' batchers, every writer allowed to start at once (no stall wait), many
    clients on shared VPCs and workloads: every create lands, and no MAC of a VPC, address of a
    VPC or interface name of a workload is handed out twice."""
    import l2vpc.controller.batching as batching

    monkeypatch.setattr(batching, "STALLED_AFTER", 0.0)
    with open_store(db.url) as setup:
        engine = Engine(setup, LocalAgentPool(), tenant="acme")
        engine.register_host({"name": "h0", "region": "us-east", "underlay_ip": "10.9.0.1"})
        vpcs = [engine.create("vpc", {"name": f"v{i}", "region": "us-east", "cidr": f"10.{i}.0.0/24"}).id
                for i in range(3)]
    stores = [open_store(db.url) for _ in range(2)]
    def engines(store: Any) -> Callable[[str], Engine]:
        return lambda tenant: Engine(store, LocalAgentPool(), tenant=tenant)

    batchers = [CreateBatcher(s, engines(s), writers=4) for s in stores]
    made: list[Any] = []
    lock = threading.Lock()

    def client(c: int) -> None:
        for j in range(12):
            # Clients c and c + 4 share workloads (on other VPCs): their interface names contend.
            vpc = vpcs[(c // 4 + j) % len(vpcs)]
            data = {"vpc_id": vpc, "workload": f"w{c % 4}-{j}", "host": "h0", "ip_mode": "static",
                    "ip_address": f"10.{vpcs.index(vpc)}.0.{10 + c * 12 + j}/24"}
            result = batchers[c % 2].create("acme", "attachment", data)
            with lock:
                made.append(result)

    try:
        threads = [threading.Thread(target=client, args=(c,)) for c in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        for b in batchers:
            b.close()
        for s in stores:
            s.close()
    assert len(made) == 96
    with open_store(db.url) as store:
        stored = Engine(store, LocalAgentPool(), tenant="acme").list("attachment")
    assert len(stored) == 96
    for key in (lambda a: (a.vpc_id, a.mac_address), lambda a: (a.vpc_id, a.ip_address),
                lambda a: (a.workload, a.interface_name)):
        seen = [key(a) for a in stored]
        assert len(set(seen)) == len(seen), sorted(seen)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_quota_is_exact_under_concurrent_writers_of_two_controllers(backend: str, request: pytest.FixtureRequest,
                                                                    tmp_path: Any, secret_key: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Two controllers' batchers, every writer allowed to start at once, many clients creating
    attachments on disjoint VPCs and workloads (keyed transactions that run side by side on
    PostgreSQL) against a quota of N: exactly N creates land, every other one fails with the
    quota's error naming the limit, and the tenant's kept count is N. Three tenants one after
    the other (without the re-read after the writes, PostgreSQL let 21-26 in, 4 runs in 4)."""
    import l2vpc.controller.batching as batching
    from l2vpc.engine import quotas

    monkeypatch.setattr(batching, "STALLED_AFTER", 0.0)
    url = request.getfixturevalue("db").url if backend == "postgres" else str(tmp_path / "state.db")
    limit, clients, each = 20, 16, 4
    tenants = ("acme", "globex", "initech")
    vpcs: dict[str, list[str]] = {}
    with open_store(url) as setup:
        Engine(setup, LocalAgentPool()).register_host({"name": "h0", "region": "us-east", "underlay_ip": "10.9.0.1"})
        for tenant in tenants:
            engine = Engine(setup, LocalAgentPool(), tenant=tenant)
            vpcs[tenant] = [engine.create("vpc", {"name": f"{tenant}{i}", "region": "us-east"}).id for i in range(8)]
            quotas.set_limits(setup, tenant, {"attachment": limit})
    stores = [open_store(url) for _ in range(2)]

    def engines(store: Any) -> Callable[[str], Engine]:
        return lambda tenant: Engine(store, LocalAgentPool(), tenant=tenant)

    batchers = [CreateBatcher(s, engines(s), writers=4) for s in stores]
    lock = threading.Lock()

    def wave(tenant: str) -> list[Any]:
        results: list[Any] = []
        start = threading.Barrier(clients)

        def client(c: int) -> None:
            start.wait(30)
            for j in range(each):
                data = {"vpc_id": vpcs[tenant][(c + j) % 8], "workload": f"{tenant}-w{c}-{j}", "host": "h0"}
                try:
                    result = batchers[c % 2].create(tenant, "attachment", data)
                except Exception as e:
                    result = e
                with lock:
                    results.append(result)

        threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        return results

    try:
        waves = {tenant: wave(tenant) for tenant in tenants}
    finally:
        for b in batchers:
            b.close()
        for s in stores:
            s.close()
    with open_store(url) as store:
        for tenant, results in waves.items():
            assert len(results) == clients * each
            made = [r for r in results if not isinstance(r, Exception)]
            refused = [r for r in results if isinstance(r, Exception)]
            assert all(isinstance(e, ValidationError) and f"at most {limit} attachment objects" in str(e)
                       for e in refused), refused
            stored = Engine(store, LocalAgentPool(), tenant=tenant).list("attachment")
            assert quotas.usage(store, tenant)["attachment"] == (limit, limit), tenant
            assert (len(made), len(stored)) == (limit, limit), tenant
            assert {a.id for a in stored} == {a.id for a in made}


def test_a_tenant_over_a_lowered_quota_fails_alone_in_a_batch(db: Any, secret_key: str) -> None:
    """An operator lowered a tenant's quota below what it holds: its creates fail with the
    quota's error, and another tenant's creates of the same batch are committed (the re-read
    after the writes concerns only the counts the batch added to)."""
    from l2vpc.engine import quotas

    with open_store(db.url) as store:
        for tenant in ("acme", "globex"):
            engine = Engine(store, LocalAgentPool(), tenant=tenant)
            if tenant == "acme":
                engine.register_host({"name": "h0", "region": "us-east", "underlay_ip": "10.9.0.1"})
            vpc = engine.create("vpc", {"name": tenant, "region": "us-east"}).id
            for i in range(3):
                engine.create("attachment", {"vpc_id": vpc, "workload": f"{tenant}-{i}", "host": "h0"})
        quotas.set_limits(store, "acme", {"attachment": 2})
        vpcs = {t: Engine(store, LocalAgentPool(), tenant=t).list("vpc")[0].id for t in ("acme", "globex")}
        batcher = CreateBatcher(store, lambda tenant: Engine(store, LocalAgentPool(), tenant=tenant))
        jobs = [(t, {"vpc_id": vpcs[t], "workload": f"{t}-new", "host": "h0"}) for t in ("globex", "acme", "globex")]
        jobs[2][1]["workload"] = "globex-new2"
        results = _queue_behind_a_held_lock(db, batcher, jobs, kind="attachment")
        batcher.close()
        assert isinstance(results[1], ValidationError) and "at most 2 attachment objects" in str(results[1])
        assert not isinstance(results[0], Exception) and not isinstance(results[2], Exception), results
        assert quotas.usage(store, "globex")["attachment"][0] == 5
        assert quotas.usage(store, "acme")["attachment"][0] == 3
