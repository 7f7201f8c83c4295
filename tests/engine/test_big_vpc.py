"""Creates and deletes in a big VPC cost what they cost in a small one: a create reads the values
it takes (its address, its MAC), and either reads the two indexes that say whether the DHCP
server's host still carries the VPC, never a whole pool of the VPC (its addresses, MACs,
members), on SQLite and PostgreSQL, alone and in batches. And the DHCP server stays where a
placement from all the members would put it, whatever creates, deletes and host verdicts come
in between."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l2vpc.engine import allocator as alloc
from l2vpc.engine.api import Engine
from l2vpc.engine.model import VPC, Attachment
from l2vpc.engine.placement import place_dhcp
from l2vpc.engine.secrets import SecretBox
from l2vpc.engine.store import open_store
from l2vpc.engine.store.base import Store
from l2vpc.engine.store.sql import SqlTransaction

KEY = SecretBox(b"eSlB9tWTmjhBSnfzHEO8lfQxjDTutzZqb2RYLeQi0Q8=")
HOSTS = 4
VPC_POOLS = ("ip:", "mac:", "member:")


@pytest.fixture(params=["sqlite", "postgres"])
def open_(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    if request.param == "sqlite":
        return lambda: open_store(str(tmp_path / "state.db"))
    db = request.getfixturevalue("db")
    return lambda: open_store(db.url)


def _engine(store: Store) -> Engine:
    engine = Engine(store, secrets=KEY)
    for i in range(HOSTS):
        engine.register_host({"name": f"h{i}", "region": "r1", "underlay_ip": f"10.200.0.{i + 1}", "status": "up"})
    return engine


def _attachment(vpc: VPC, n: int, host: int) -> dict[str, Any]:
    return {"vpc_id": vpc.id, "workload": f"w{n}", "host": f"h{host}", "ip_mode": "static",
            "ip_address": f"10.0.{n // 200}.{n % 200 + 1}/16"}


@contextmanager
def _whole_pool_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The pools read whole through the store while the block runs."""
    read: list[str] = []
    allocations, allocations_many = SqlTransaction.allocations, SqlTransaction.allocations_many

    def one(self: SqlTransaction, pool: str) -> dict[str, str]:
        read.append(pool)
        return allocations(self, pool)

    def many(self: SqlTransaction, pools: Any) -> dict[str, dict[str, str]]:
        pools = list(pools)
        read.extend(pools)
        return allocations_many(self, pools)

    with monkeypatch.context() as m:
        m.setattr(SqlTransaction, "allocations", one)
        m.setattr(SqlTransaction, "allocations_many", many)
        yield read


@pytest.mark.parametrize("dhcp", [False, True])
def test_a_create_or_delete_reads_no_whole_pool_of_its_vpc(open_: Callable[[], Store], dhcp: bool,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with open_() as store:
        engine = _engine(store)
        data: dict[str, Any] = {"name": "big", "region": "r1", "cidr": "10.0.0.0/16"}
        if dhcp:
            data["dhcp"] = {"range_start": "10.0.200.1", "range_end": "10.0.200.250"}
        vpc = engine.create("vpc", data)
        made = engine.create_many("attachment", [_attachment(vpc, n, n % HOSTS) for n in range(300)])
        assert not [r for r in made if isinstance(r, Exception)]
        with _whole_pool_reads(monkeypatch) as read:
            one = engine.create("attachment", _attachment(vpc, 300, 1))
            batch = engine.create_many("attachment", [_attachment(vpc, n, n % HOSTS) for n in range(301, 305)])
            clash = engine.create_many("attachment", [{**_attachment(vpc, 400, 2), "ip_address": "10.0.0.5/16"}])
            engine.delete("attachment", made[7].id)
        assert [p for p in read if p.startswith(VPC_POOLS)] == []
        # The values are still checked one by one: the clash is refused, naming the holder.
        assert "10.0.0.5 is already used" in str(clash[0])
        atts = [one, *batch]
        assert all(isinstance(a, Attachment) for a in atts)
        macs = {a.mac_address for a in engine.list("attachment")}
        assert len(macs) == 304
        if dhcp:
            assert engine.get("vpc", vpc.id).dhcp_host is not None


ops = st.lists(st.one_of(
    st.tuples(st.just("create"), st.integers(0, HOSTS - 1), st.booleans()),  # host, in a batch
    st.tuples(st.just("delete"), st.integers(0, 30)),
    st.tuples(st.just("down"), st.integers(0, HOSTS - 1)),
    st.tuples(st.just("up"), st.integers(0, HOSTS - 1)),
    # A host record written again with another status (a topology file, a lab): no placement
    # runs then; the next change of the VPC's members must place it as all members would.
    st.tuples(st.just("record"), st.integers(0, HOSTS - 1), st.sampled_from(["up", "down"])),
), min_size=1, max_size=25)


def _placed_from_all_members(engine: Engine, vpc_id: str) -> str | None:
    vpc = engine.get("vpc", vpc_id)
    members = [a for a in engine.list("attachment") if a.vpc_id == vpc_id]
    hosts = {h.name: h for h in engine.hosts()}
    return place_dhcp(vpc, members, hosts).dhcp_host


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=ops)
def test_the_dhcp_server_stays_where_all_members_would_place_it(tmp_path: Path, steps: list[Any]) -> None:
    path = tmp_path / "dhcp.db"
    path.unlink(missing_ok=True)
    with open_store(str(path)) as store:
        engine = _engine(store)
        vpc = engine.create("vpc", {"name": "v", "region": "r1", "cidr": "10.0.0.0/16",
                                    "dhcp": {"range_start": "10.0.200.1", "range_end": "10.0.200.250"}})
        n = 0
        for step in steps:
            if step[0] == "create":
                data = _attachment(vpc, n, step[1])
                n += 1
                made = engine.create_many("attachment", [data]) if step[2] else [engine.create("attachment", data)]
                assert isinstance(made[0], Attachment), made
            elif step[0] == "delete":
                members = sorted(a.id for a in engine.list("attachment"))
                if members:
                    engine.delete("attachment", members[step[1] % len(members)])
            elif step[0] == "record":
                engine.register_host({"name": f"h{step[1]}", "region": "r1", "underlay_ip": f"10.200.0.{step[1] + 1}",
                                      "status": step[2]})
                continue
            else:
                engine.set_host_status(f"h{step[1]}", step[0])
            assert engine.get("vpc", vpc.id).dhcp_host == _placed_from_all_members(engine, vpc.id), step


def test_the_shortcut_is_taken_only_while_the_server_host_carries_the_vpc(tmp_path: Path) -> None:
    """A new member elsewhere keeps the server where it is; with its host down the placement
    runs from the members (the evacuation moved it already; a new create agrees)."""
    with open_store(str(tmp_path / "s.db")) as store:
        engine = _engine(store)
        vpc = engine.create("vpc", {"name": "v", "region": "r1", "cidr": "10.0.0.0/16",
                                    "dhcp": {"range_start": "10.0.200.1", "range_end": "10.0.200.250"}})
        engine.create("attachment", _attachment(vpc, 0, 2))
        assert engine.get("vpc", vpc.id).dhcp_host == "h2"
        engine.create("attachment", _attachment(vpc, 1, 0))
        assert engine.get("vpc", vpc.id).dhcp_host == "h2"  # kept: h2 still carries the VPC
        engine.set_host_status("h2", "down")
        assert engine.get("vpc", vpc.id).dhcp_host == "h0"
        with store.transaction() as tx:
            assert tx.pools_share(alloc.pool_members(vpc.id), alloc.pool_on_host("h0"))
            assert not tx.pools_share(alloc.pool_members(vpc.id), alloc.pool_on_host("h3"))


def test_a_server_host_recorded_down_is_left_at_the_next_create(tmp_path: Path) -> None:
    """A host record written down without an evacuation (a topology file): the next create
    places the DHCP server from the members, as the old full placement did."""
    with open_store(str(tmp_path / "s.db")) as store:
        engine = _engine(store)
        vpc = engine.create("vpc", {"name": "v", "region": "r1", "cidr": "10.0.0.0/16",
                                    "dhcp": {"range_start": "10.0.200.1", "range_end": "10.0.200.250"}})
        engine.create("attachment", _attachment(vpc, 0, 1))
        engine.create("attachment", _attachment(vpc, 1, 3))
        assert engine.get("vpc", vpc.id).dhcp_host == "h1"
        engine.register_host({"name": "h1", "region": "r1", "underlay_ip": "10.200.0.2", "status": "down"})
        assert engine.get("vpc", vpc.id).dhcp_host == "h1"  # a record alone moves nothing
        engine.create_many("attachment", [_attachment(vpc, 2, 2)])
        assert engine.get("vpc", vpc.id).dhcp_host == "h2"  # h1 is down: the first carrier up


def test_a_mac_a_user_chose_in_the_counters_range_is_skipped(open_: Callable[[], Store]) -> None:
    """The counter's next MACs are looked up as one range per VPC: a MAC a user took in that
    range is still seen, and the create that would have got it takes the next one."""
    with open_() as store:
        engine = _engine(store)
        vpc = engine.create("vpc", {"name": "v", "region": "r1", "cidr": "10.0.0.0/16"})

        def next_macs(count: int) -> list[str]:
            with store.transaction() as tx:
                current = tx.current_sequence("mac")
            return [alloc.counter_mac(current + k) for k in range(1, count + 1)]

        taken = next_macs(2)
        for n, mac in enumerate(taken):  # the next two counter values' MACs, chosen by users
            engine.create("attachment", {**_attachment(vpc, 900 + n, 0), "mac_address": mac})
        batch = engine.create_many("attachment", [_attachment(vpc, n, 1) for n in range(3)])
        assert all(isinstance(a, Attachment) for a in batch), batch
        one_taken = next_macs(1)
        engine.create("attachment", {**_attachment(vpc, 910, 0), "mac_address": one_taken[0]})
        alone = engine.create("attachment", _attachment(vpc, 3, 2))
        macs = [a.mac_address for a in engine.list("attachment")]
        assert len(macs) == len(set(macs)) == 7
        assert not {a.mac_address for a in [*batch, alone]} & {*taken, *one_taken}
