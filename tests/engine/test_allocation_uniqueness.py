"""Property: many creators at once never get the same value twice, on SQLite and PostgreSQL.

Hypothesis draws what several creators do at the same moment (threads, each with its own store
connection): VPC creates (VNIs) and attachment creates, one at a time or as batches
(Engine.create_many, engine/batch.py), with or without a chosen address, MAC and host, many of
them clashing on purpose. Whatever interleaving the databases allow, the state afterwards holds
no VNI, address, MAC or interface name twice, each workload stays on one host with at most 10
interfaces, and the allocation pools hold exactly what the objects use (a refused or rolled-back
create leaves nothing behind)."""

from __future__ import annotations

import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l2vpc.engine.api import Engine
from l2vpc.engine.errors import TemporaryError, UserError
from l2vpc.engine.quotas import pool_count
from l2vpc.engine.secrets import SecretBox
from l2vpc.engine.store import open_store
from l2vpc.engine.store.base import Store

VPCS, WORKLOADS, HOSTS = 6, 8, 3
KEY = SecretBox(b"eSlB9tWTmjhBSnfzHEO8lfQxjDTutzZqb2RYLeQi0Q8=")

attachment = st.fixed_dictionaries({
    "vpc": st.integers(0, VPCS - 1),
    "workload": st.integers(0, WORKLOADS - 1),
    "ip": st.one_of(st.none(), st.integers(2, 6)),  # few addresses: creators clash on them
    "mac": st.one_of(st.none(), st.integers(1, 3)),
    "host": st.one_of(st.none(), st.integers(0, HOSTS - 1)),
})
step = st.one_of(
    st.tuples(st.just("vpc"), st.integers(VPCS // 2, VPCS - 1)),  # the other half exist from the start
    st.tuples(st.just("attach"), attachment),
    st.tuples(st.just("batch"), st.lists(attachment, min_size=2, max_size=6)),
)
creators = st.lists(st.lists(step, min_size=1, max_size=6), min_size=3, max_size=5)


def _vpc(i: int) -> dict[str, Any]:
    return {"name": f"v{i}", "region": "us-east", "cidr": f"10.{i}.0.0/24"}


def _attachment(a: dict[str, Any], ids: dict[str, str]) -> dict[str, Any] | None:
    vpc = ids.get(f"v{a['vpc']}")
    if vpc is None:
        return None  # not created (yet)
    data: dict[str, Any] = {"vpc_id": vpc, "workload": f"w{a['workload']}"}
    if a["ip"] is not None:
        data |= {"ip_mode": "static", "ip_address": f"10.{a['vpc']}.0.{a['ip']}/24"}
    if a["mac"] is not None:
        data["mac_address"] = f"02:00:00:00:00:{a['mac']:02x}"
    if a["host"] is not None:
        data["host"] = f"h{a['host']}"
    return data


def _creator(open_: Callable[[], Store], steps: list[Any], start: threading.Barrier, errors: list[BaseException]) -> None:
    try:
        with open_() as store:
            engine = Engine(store, secrets=KEY)
            start.wait(30)
            for kind, arg in steps:
                ids = {v.name: v.id for v in engine.list("vpc")}
                try:
                    if kind == "vpc":
                        engine.create("vpc", _vpc(arg))
                    elif kind == "attach":
                        data = _attachment(arg, ids)
                        if data is not None:
                            engine.create("attachment", data)
                    else:
                        items = [d for d in (_attachment(a, ids) for a in arg) if d is not None]
                        for r in engine.create_many("attachment", items):
                            assert isinstance(r, UserError) or r.id, r
                except (UserError, TemporaryError):
                    pass  # refused (a clash, a rule) or the lock wait ran out: nothing written
    except BaseException as e:  # reported by the test
        errors.append(e)


def _check(store: Store) -> None:
    engine = Engine(store, secrets=KEY)
    vpcs = engine.list("vpc")
    atts = engine.list("attachment")
    with store.transaction() as tx:
        pools = tx.allocations_many(["vni"] + [f"{p}:{v.id}" for v in vpcs for p in ("ip", "mac", "member")]
                                    + [f"ifname:w{i}" for i in range(WORKLOADS)])
        # The quotas' counts, kept by the store as rows come and go (not counted): exact.
        counted = tx.pool_sizes([pool_count("vpc", ""), pool_count("attachment", "")])
    assert counted == {k: n for k, n in ((pool_count("vpc", ""), len(vpcs)),
                                         (pool_count("attachment", ""), len(atts))) if n}, counted
    vnis = [v.vni for v in vpcs]
    assert len(set(vnis)) == len(vnis), vnis
    assert pools["vni"] == {str(v.vni): v.id for v in vpcs}
    for v in vpcs:
        mine = [a for a in atts if a.vpc_id == v.id]
        ips = [a.ip_address.split("/")[0] for a in mine if a.ip_address]
        macs = [a.mac_address for a in mine]
        assert len(set(ips)) == len(ips), (v.name, Counter(ips))
        assert len(set(macs)) == len(macs), (v.name, Counter(macs))
        assert pools[f"ip:{v.id}"] == {a.ip_address.split("/")[0]: a.id for a in mine if a.ip_address}
        assert pools[f"mac:{v.id}"] == {a.mac_address: a.id for a in mine}
        assert pools[f"member:{v.id}"] == {a.id: a.id for a in mine}
    by_workload: dict[str, list[Any]] = defaultdict(list)
    for a in atts:
        by_workload[a.workload].append(a)
    for w in range(WORKLOADS):
        mine = by_workload.get(f"w{w}", [])
        names = [a.interface_name for a in mine]
        assert len(set(names)) == len(names) <= 10, names
        assert len({a.host for a in mine}) <= 1, [a.host for a in mine]
        assert len({a.vpc_id for a in mine}) == len(mine)
        assert pools[f"ifname:w{w}"] == {a.interface_name: a.id for a in mine}


def _run(open_: Callable[[], Store], plan: list[list[Any]]) -> None:
    with open_() as store:
        engine = Engine(store, secrets=KEY)
        for i in range(HOSTS):
            engine.register_host({"name": f"h{i}", "region": "us-east", "underlay_ip": f"10.200.0.{i + 1}"})
        for i in range(VPCS // 2):
            engine.create("vpc", _vpc(i))
    start = threading.Barrier(len(plan))
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_creator, args=(open_, steps, start, errors)) for steps in plan]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    with open_() as store:
        _check(store)


@contextmanager
def _sqlite(tmp: Path) -> Iterator[Callable[[], Store]]:
    path = tmp / f"{uuid.uuid4().hex}.db"
    yield lambda: open_store(str(path))


@contextmanager
def _postgres(pg: Any) -> Iterator[Callable[[], Store]]:
    from l2vpc.testing.postgres import Schema

    with Schema(pg, "l2vpc_tests", f"u{uuid.uuid4().hex[:12]}") as db:
        yield lambda: open_store(db.url)


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Any]:
    """A factory of contexts, each a fresh empty state (hypothesis runs many examples per test)."""
    if request.param == "sqlite":
        return lambda: _sqlite(tmp_path)
    pg = request.getfixturevalue("pg")
    return lambda: _postgres(pg)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(plan=creators)
def test_concurrent_creators_never_share_a_value(fresh_store: Callable[[], Any], plan: list[list[Any]]) -> None:
    with fresh_store() as open_:
        _run(open_, plan)
