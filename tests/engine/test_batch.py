"""Engine.create_many (engine/batch.py) on SQLite and PostgreSQL: many creates in one
transaction leave the store as the same creates one after the other would, and a bad create
fails alone with its own error naming the field."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from l2vpc.engine.api import Engine
from l2vpc.engine.errors import ValidationError
from l2vpc.engine.store import open_store
from l2vpc.engine.store.base import Store


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = str(tmp_path / "state.db") if request.param == "sqlite" else request.getfixturevalue("db").url
    with open_store(url) as s:
        yield s


def _engine(store: Store) -> Engine:
    engine = Engine(store)
    for i in range(3):
        engine.register_host({"name": f"h{i}", "region": "us-east", "underlay_ip": f"10.9.0.{i + 1}"})
    return engine


def _pools(store: Store, *pools: str) -> dict[str, dict[str, str]]:
    with store.transaction() as tx:
        return tx.allocations_many(pools)


def test_a_bad_create_fails_alone_with_its_own_error(store: Store) -> None:
    engine = _engine(store)
    vpc = engine.create("vpc", {"name": "v", "region": "us-east", "cidr": "10.1.0.0/24"})
    items: list[dict[str, Any]] = [
        {"vpc_id": vpc.id, "workload": "a", "ip_mode": "static", "ip_address": "10.1.0.5/24"},
        {"vpc_id": vpc.id, "workload": "b", "ip_mode": "static", "ip_address": "10.2.0.5/24"},  # outside
        {"vpc_id": vpc.id, "workload": "c", "ip_mode": "static", "ip_address": "10.1.0.5/24"},  # a's
        {"vpc_id": vpc.id, "workload": "d", "ip_mode": "static", "ip_address": "10.1.0.6/24", "host": "h9"},
        {"vpc_id": vpc.id, "workload": "a"},  # a attaches v already (item 0)
        {"vpc_id": vpc.id, "workload": "e", "mac_address": "02:00:00:00:00:01"},
        {"vpc_id": vpc.id, "workload": "f", "mac_address": "02:00:00:00:00:01"},  # e's MAC
        {"vpc_id": vpc.id, "workload": "g", "ip_mode": "static", "ip_address": "10.1.0.6/24"},  # d's, but d failed
    ]
    results = engine.create_many("attachment", items)
    errors = {i: r for i, r in enumerate(results) if isinstance(r, Exception)}
    assert set(errors) == {1, 2, 3, 4, 6}, results
    assert all(isinstance(e, ValidationError) for e in errors.values())
    assert {i: e.first[0] for i, e in errors.items()} == {
        1: "ip_address", 2: "ip_address", 3: "host", 4: "vpc_id", 6: "mac_address"}
    assert "already used" in errors[2].first[1] and "outside" in errors[1].first[1]
    made = [r for r in results if not isinstance(r, Exception)]
    assert sorted(a.workload for a in engine.list("attachment")) == ["a", "e", "g"]
    pools = _pools(store, f"ip:{vpc.id}", f"mac:{vpc.id}", f"member:{vpc.id}", "ifname:d", "ifname:b")
    assert pools[f"ip:{vpc.id}"] == {"10.1.0.5": made[0].id, "10.1.0.6": made[2].id}
    assert set(pools[f"mac:{vpc.id}"].values()) == {a.id for a in made}
    assert pools[f"member:{vpc.id}"] == {a.id: a.id for a in made}
    assert pools["ifname:d"] == pools["ifname:b"] == {}  # nothing of a refused create is left


def test_a_batch_ends_as_one_create_after_the_other(store: Store) -> None:
    engine = _engine(store)
    dhcp = {"range_start": "10.3.0.100", "range_end": "10.3.0.200"}
    vpcs = engine.create_many("vpc", [{"name": f"v{i}", "region": "us-east", "cidr": f"10.{i}.0.0/24",
                                       **({"dhcp": {k: v.replace("10.3.", f"10.{i}.") for k, v in dhcp.items()}}
                                          if i % 2 else {})} for i in range(4)])
    assert len({v.vni for v in vpcs}) == 4
    items = [{"vpc_id": v.id, "workload": f"w{w}"} for w in range(5) for v in vpcs]
    made = engine.create_many("attachment", items)
    assert not [r for r in made if isinstance(r, Exception)], made
    for w in range(5):
        mine = [a for a in made if a.workload == f"w{w}"]
        assert sorted(a.interface_name for a in mine) == sorted(f"net{i}" for i in range(1, 5))
        assert len({a.host for a in mine}) == 1
    assert len({a.mac_address for a in made}) == len(made)
    # Placement saw the batch's earlier creates: the workloads spread over the hosts.
    assert sorted(Counter(a.host for a in made if a.interface_name == "net1").values()) == [1, 2, 2]
    # Each DHCP VPC's server was placed (once, at the end) on a host carrying it.
    for v in engine.list("vpc"):
        carriers = {a.host for a in made if a.vpc_id == v.id}
        assert (v.dhcp_host in carriers) if v.dhcp else v.dhcp_host is None
    assert engine.plan().hosts  # what the batch wrote plans like any other state

