"""Cross-object rules and placement through the Engine facade on a real SQLite store.

Every rejected change must leave the store exactly as it was: `snapshot()` reads all rows of
the state file (objects with generations, allocations, counters, host reports) through a
separate read-only connection, and is compared before and after.
"""

from __future__ import annotations

import re
import sqlite3
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from l2vpc.agent.local import LocalAgentPool
from l2vpc.engine.api import ID_PREFIX, Engine
from l2vpc.engine.errors import ConflictError, UserError, ValidationError
from l2vpc.engine.model import VPC, Attachment
from l2vpc.engine.store import open_store

# Names are chosen so that a placement ignoring region or role would win the name tie-break.
HOSTS: list[dict[str, Any]] = [
    {"name": "a-edge", "region": "us-east", "role": "edge", "location": "nyc1", "underlay_ip": "10.200.0.9",
     "public_cidr": "203.0.113.32/28"},
    {"name": "c0-west", "region": "us-west", "underlay_ip": "10.200.0.10"},
    {"name": "c1", "region": "us-east", "underlay_ip": "10.200.0.1"},
    {"name": "c2", "region": "us-east", "underlay_ip": "10.200.0.2"},
    {
        "name": "e-only",
        "region": "edge-land",
        "role": "edge",
        "location": "lon1",
        "underlay_ip": "10.200.0.20",
    },
]
TABLES = ("objects", "allocations", "sequences", "host_reports")


class Env:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.store = open_store(str(path))
        self.engine = Engine(self.store, LocalAgentPool())
        for h in HOSTS:
            self.engine.register_host(h)

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            return {t: sorted(con.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in TABLES}
        finally:
            con.close()

    def vpc(self, name: str, **kw: Any) -> VPC:
        data: dict[str, Any] = {"name": name, "region": "us-east", **kw}
        if data.get("scope") == "multi_region":
            data.pop("region")
        vpc: VPC = self.engine.create("vpc", data)
        return vpc

    def attach(self, vpc: VPC, workload: str, **kw: Any) -> Attachment:
        att: Attachment = self.engine.create("attachment", {"vpc_id": vpc.id, "workload": workload, **kw})
        return att

    def rejected(
        self, fn: Callable[[], Any], path: str, *words: str, error: type[UserError] = ValidationError
    ) -> str:
        """Run a change that must fail with `path` first; return its message; nothing written."""
        before = self.snapshot()
        lists = {k: self.engine.list(k) for k in ("vpc", "attachment")}
        with pytest.raises(error) as ei:
            fn()
        if isinstance(ei.value, ValidationError):
            got_path, message = ei.value.first
            assert got_path == path, ei.value.problems
        else:
            message = str(ei.value)
        for w in words:
            assert w in message, f"{w!r} not in {message!r}"
        assert self.snapshot() == before, "a rejected change wrote to the store"
        assert {k: self.engine.list(k) for k in ("vpc", "attachment")} == lists
        return message


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path / "state.db")
    try:
        yield e
    finally:
        e.store.close()


DHCP = {"range_start": "10.0.0.100", "range_end": "10.0.0.200", "gateway": "10.0.0.1"}


# --- names ---------------------------------------------------------------------------------
def test_vpc_names_are_unique(env: Env) -> None:
    first = env.vpc("prod")
    other = env.vpc("dev")
    msg = env.rejected(lambda: env.vpc("prod"), "name", "'prod'", "already exists")
    assert first.id in msg
    env.rejected(
        lambda: env.engine.update("vpc", other.id, {"name": "prod", "region": "us-east"}),
        "name",
        "already exists",
    )
    # A renamed VPC frees its old name.
    env.engine.update("vpc", other.id, {"name": "dev2", "region": "us-east"})
    assert env.vpc("dev").name == "dev"


def test_vpc_region_must_have_hosts(env: Env) -> None:
    env.rejected(lambda: env.vpc("prod", region="mars"), "region", "'mars'", "us-east", "us-west")


# --- addresses ---------------------------------------------------------------------------
def test_ip_unique_within_a_vpc(env: Env) -> None:
    vpc = env.vpc("prod", cidr="10.0.0.0/24")
    holder = env.attach(vpc, "db1", ip_mode="static", ip_address="10.0.0.5/24")
    msg = env.rejected(
        lambda: env.attach(vpc, "db2", ip_mode="static", ip_address="10.0.0.5/24"),
        "ip_address",
        "10.0.0.5",
        "already used",
    )
    assert holder.id in msg or "db1" in msg, "the error must name the holder"
    # A DHCP reservation competes for the same address space.
    dvpc = env.vpc("apps", cidr="10.0.0.0/24", dhcp=DHCP)
    env.attach(dvpc, "web1", ip_mode="static", ip_address="10.0.0.7/24")
    env.rejected(
        lambda: env.attach(dvpc, "web2", ip_mode="dhcp", ip_address="10.0.0.7/24"),
        "ip_address",
        "already used",
    )
    # The same address in another VPC is fine.
    assert env.attach(dvpc, "db2", ip_mode="static", ip_address="10.0.0.5/24").ip_address == "10.0.0.5/24"


def test_ip_unique_on_update(env: Env) -> None:
    vpc = env.vpc("prod", cidr="10.0.0.0/24")
    env.attach(vpc, "db1", ip_mode="static", ip_address="10.0.0.5/24")
    b = env.attach(vpc, "db2", ip_mode="static", ip_address="10.0.0.6/24")
    env.rejected(
        lambda: env.engine.update("attachment", b.id, {**_user_fields(b), "ip_address": "10.0.0.5/24"}),
        "ip_address",
        "already used",
    )
    # Its old address is released once it moves.
    env.engine.update("attachment", b.id, {**_user_fields(b), "ip_address": "10.0.0.9/24"})
    env.attach(vpc, "db3", ip_mode="static", ip_address="10.0.0.6/24")


def _user_fields(a: Attachment) -> dict[str, Any]:
    return a.model_dump(mode="json", exclude={"id", "status", "interface_name"})


@pytest.mark.parametrize(
    ("ip", "words"),
    [
        ("10.0.1.5/24", ["outside", "10.0.0.0/24"]),
        ("192.168.0.5/24", ["outside"]),
        ("10.0.0.5/16", ["prefix length /24"]),
        ("10.0.0.5/25", ["prefix length /24"]),
        ("10.0.0.0/24", ["network or broadcast"]),
        ("10.0.0.255/24", ["network or broadcast"]),
        ("10.0.0.254/24", ["DHCP server"]),  # the computed default server_ip
        ("10.0.0.1/24", ["gateway"]),
    ],
)
def test_ip_must_be_usable_in_vpc(env: Env, ip: str, words: list[str]) -> None:
    vpc = env.vpc("prod", cidr="10.0.0.0/24", dhcp=DHCP)
    env.rejected(lambda: env.attach(vpc, "db1", ip_mode="static", ip_address=ip), "ip_address", *words)


def test_ip_not_explicit_dhcp_server(env: Env) -> None:
    vpc = env.vpc("prod", cidr="10.0.0.0/24", dhcp={**DHCP, "server_ip": "10.0.0.2"})
    env.rejected(
        lambda: env.attach(vpc, "db1", ip_mode="dhcp", ip_address="10.0.0.2/24"), "ip_address", "DHCP server"
    )
    # With server_ip moved, the default last address is free for a workload.
    env.attach(vpc, "db1", ip_mode="static", ip_address="10.0.0.254/24")


def test_ip_needs_vpc_cidr(env: Env) -> None:
    vpc = env.vpc("flat")
    env.rejected(
        lambda: env.attach(vpc, "db1", ip_mode="static", ip_address="10.0.0.5/24"), "ip_address", "no cidr"
    )


def test_mac_unique_per_vpc(env: Env) -> None:
    a, b = env.vpc("prod"), env.vpc("dev")
    first = env.attach(a, "db1", mac_address="02:00:00:00:00:01")
    msg = env.rejected(
        lambda: env.attach(a, "db2", mac_address="02:00:00:00:00:01"),
        "mac_address",
        "02:00:00:00:00:01",
        "already used",
    )
    assert first.id in msg or "db1" in msg
    # Same MAC written in capitals is the same MAC.
    env.rejected(lambda: env.attach(a, "db2", mac_address="02:00:00:00:00:01".upper()), "mac_address")
    # A generated MAC is taken too.
    auto = env.attach(a, "db3")
    assert auto.mac_address
    env.rejected(lambda: env.attach(a, "db4", mac_address=auto.mac_address), "mac_address", "already used")
    # Another VPC is another broadcast domain.
    env.attach(b, "db2", mac_address="02:00:00:00:00:01")


def test_dhcp_mode_needs_dhcp_on_vpc(env: Env) -> None:
    vpc = env.vpc("prod", cidr="10.0.0.0/24")
    env.rejected(lambda: env.attach(vpc, "db1", ip_mode="dhcp"), "ip_mode", "dhcp", "'prod'")


def test_removing_dhcp_with_dhcp_attachments_fails(env: Env) -> None:
    vpc = env.vpc("prod", cidr="10.0.0.0/24", dhcp=DHCP)
    env.attach(vpc, "db1", ip_mode="dhcp")
    before = env.snapshot()
    with pytest.raises(ValidationError) as ei:
        env.engine.update("vpc", vpc.id, {"name": "prod", "region": "us-east", "cidr": "10.0.0.0/24"})
    path, msg = ei.value.first
    assert path.endswith(".ip_mode") and "db1" in path and "dhcp" in msg
    assert env.snapshot() == before


def test_same_workload_twice_on_a_vpc_fails(env: Env) -> None:
    vpc = env.vpc("prod")
    env.attach(vpc, "db1")
    env.rejected(lambda: env.attach(vpc, "db1"), "vpc_id", "already attached")


# --- ten VPCs per workload -------------------------------------------------------------------
def test_eleventh_attachment_fails_and_changes_nothing(env: Env) -> None:
    vpcs = [env.vpc(f"v{i}", cidr=f"10.{i}.0.0/24") for i in range(11)]
    atts = [env.attach(vpcs[i], "big") for i in range(10)]
    assert sorted(a.interface_name or "" for a in atts) == sorted(f"net{i}" for i in range(1, 11))
    assert len({a.host for a in atts}) == 1
    env.rejected(lambda: env.attach(vpcs[10], "big"), "workload", "'big'", "at most 10")
    # Freeing one slot makes room, and the freed interface name is reused.
    freed = atts[2]
    env.engine.delete("attachment", freed.id)
    again = env.attach(vpcs[10], "big")
    assert again.interface_name == freed.interface_name


# --- regions -------------------------------------------------------------------------------
def test_single_region_vpc_rejects_host_of_other_region(env: Env) -> None:
    vpc = env.vpc("prod")
    env.rejected(lambda: env.attach(vpc, "db1", host="c0-west"), "host", "c0-west", "us-west", "multi_region")


def test_multi_region_vpc_allows_any_region(env: Env) -> None:
    vpc = env.vpc("global", scope="multi_region")
    assert env.attach(vpc, "db1", host="c0-west").host == "c0-west"
    assert env.attach(vpc, "db2", host="c1").host == "c1"


def test_to_single_region_names_attachments_elsewhere(env: Env) -> None:
    vpc = env.vpc("global", scope="multi_region")
    env.attach(vpc, "east1", host="c1")
    env.attach(vpc, "west1", host="c0-west")
    env.attach(vpc, "west2", host="c0-west")
    msg = env.rejected(
        lambda: env.engine.update(
            "vpc", vpc.id, {"name": "global", "scope": "single_region", "region": "us-east"}
        ),
        "scope",
        "west1",
        "west2",
        "c0-west",
    )
    assert "east1" not in msg
    msg = env.rejected(
        lambda: env.engine.update(
            "vpc", vpc.id, {"name": "global", "scope": "single_region", "region": "us-west"}
        ),
        "scope",
        "east1",
    )
    assert "west1" not in msg


def test_region_change_of_single_region_vpc_rejected(env: Env) -> None:
    vpc = env.vpc("prod")
    env.rejected(
        lambda: env.engine.update("vpc", vpc.id, {"name": "prod", "region": "us-west"}),
        "region",
        "us-east",
        "us-west",
    )
    # Through multi_region it is an in-place conversion, one step at a time.
    env.engine.update("vpc", vpc.id, {"name": "prod", "scope": "multi_region"})
    assert env.engine.update("vpc", vpc.id, {"name": "prod", "region": "us-west"}).region == "us-west"


def test_scope_change_bumps_epoch_and_plan_is_disruptive(env: Env) -> None:
    vpc = env.vpc("prod", cidr="10.0.0.0/24")
    env.attach(vpc, "db1", ip_mode="static", ip_address="10.0.0.5/24")
    env.attach(vpc, "db2")
    env.engine.converge()
    assert env.engine.plan().is_empty
    # An update that is not a scope conversion restarts nothing.
    env.engine.update(
        "vpc", vpc.id, {"name": "prod", "region": "us-east", "cidr": "10.0.0.0/24", "description": "x"}
    )
    assert env.engine.get("vpc", vpc.id).scope_epoch == 0
    assert env.engine.plan().is_empty

    env.engine.update("vpc", vpc.id, {"name": "prod", "scope": "multi_region", "cidr": "10.0.0.0/24"})
    assert env.engine.get("vpc", vpc.id).scope_epoch == 1
    p = env.engine.plan()
    ports = [c for _host, c in p.changes() if c.kind == "port"]
    assert len(ports) == 2
    assert all(c.action == "replace" and c.disruptive and "scope" in c.detail for c in ports)
    assert p.counts()["disruptive"] == 2
    assert "2 disruptive" in p.render()


def test_delete_vpc_with_attachments_fails(env: Env) -> None:
    vpc = env.vpc("prod")
    att = env.attach(vpc, "db1")
    env.rejected(lambda: env.engine.delete("vpc", vpc.id), "", "'prod'", att.id, error=ConflictError)
    env.engine.delete("attachment", att.id)
    env.engine.delete("vpc", vpc.id)
    assert env.engine.list("vpc") == []
    # Its name is free again.
    env.vpc("prod")


# --- placement -----------------------------------------------------------------------------
def test_placement_least_loaded_compute_host_in_region(env: Env) -> None:
    vpc = env.vpc("prod")
    env.attach(vpc, "busy", host="c1")
    assert env.attach(vpc, "new1").host == "c2"
    # c1 and c2 now carry one each: ties go by name.
    assert env.attach(vpc, "new2").host == "c1"


def test_placement_load_follows_deletes_and_moves(env: Env) -> None:
    vpc = env.vpc("prod")
    first = env.attach(vpc, "w1", host="c1")
    env.attach(vpc, "w2", host="c1")
    env.attach(vpc, "w3", host="c2")
    env.engine.delete("attachment", first.id)  # c1 and c2 carry one each again
    assert env.attach(vpc, "new1").host == "c1"  # tie: by name
    moved = env.attach(vpc, "w4", host="c1")
    env.engine.update("attachment", moved.id, {**_user_fields(moved), "host": "c2"})
    # c1: w2, new1; c2: w3, w4 -> tie again; one more on c1 makes c2 the least loaded.
    assert env.attach(vpc, "new2").host == "c1"
    assert env.attach(vpc, "new3").host == "c2"


def test_workload_second_attachment_lands_on_same_host(env: Env) -> None:
    a, b = env.vpc("prod"), env.vpc("dev")
    env.attach(a, "web1", host="c1")
    env.attach(a, "other1", host="c1")
    env.attach(a, "other2", host="c1")
    assert env.attach(b, "web1").host == "c1"  # although c2 is empty


def test_workload_lives_on_one_host(env: Env) -> None:
    a, b = env.vpc("prod"), env.vpc("dev")
    env.attach(a, "web1", host="c1")
    before = env.snapshot()
    with pytest.raises(ValidationError) as ei:
        env.attach(b, "web1", host="c2")
    path, msg = ei.value.first
    # Which attachment the path names is a known bug (next test); the field is right either way.
    assert path.endswith("host") and "web1" in msg and "one host" in msg and "c1" in msg
    assert env.snapshot() == before


def test_workload_one_host_error_names_the_new_attachment(env: Env) -> None:
    # Ids are random: 16 tries make a passing run of the buggy code a 1-in-65536 event.
    paths = []
    for i in range(16):
        a, b = env.vpc(f"a{i}"), env.vpc(f"b{i}")
        env.attach(a, f"w{i}", host="c1")
        with pytest.raises(ValidationError) as ei:
            env.attach(b, f"w{i}", host="c2")
        paths.append(ei.value.first[0])
    assert paths == ["host"] * 16


def test_overlapping_subnets_on_one_workload(env: Env) -> None:
    a, b = env.vpc("prod", cidr="10.0.0.0/24"), env.vpc("wide", cidr="10.0.0.0/16")
    env.attach(a, "web1")
    env.rejected(lambda: env.attach(b, "web1"), "vpc_id", "overlapping", "10.0.0.0/16")


def test_edge_hosts_never_get_workloads(env: Env) -> None:
    vpc = env.vpc("prod")
    env.rejected(lambda: env.attach(vpc, "db1", host="a-edge"), "host", "edge")
    only_edges = env.vpc("lonely", region="edge-land")
    env.rejected(lambda: env.attach(only_edges, "db1"), "host", "no compute host", "edge-land")
    multi = env.vpc("global", scope="multi_region")
    assert env.attach(multi, "db1").host in {"c0-west", "c1", "c2"}


def test_unknown_host_fails(env: Env) -> None:
    vpc = env.vpc("prod")
    env.rejected(lambda: env.attach(vpc, "db1", host="nowhere"), "host", "'nowhere'")


def test_unknown_vpc_fails(env: Env) -> None:
    env.rejected(
        lambda: env.engine.create("attachment", {"vpc_id": "vpc-0000dead", "workload": "db1"}),
        "vpc_id",
        "vpc-0000dead",
    )


# --- direct connects and VPNs against their VPC -------------------------------------------------
def test_vpn_remote_cidrs_must_not_overlap_vpc(env: Env) -> None:
    vpc = env.vpc("prod", cidr="10.0.0.0/24")
    data = {
        "name": "vpn1",
        "vpc_id": vpc.id,
        "peer_address": "203.0.113.5",
        "pre_shared_key": "abcdefgh",
        "remote_cidrs": ["192.168.0.0/24", "10.0.0.128/25"],
    }
    env.rejected(lambda: env.engine.create("vpn", data), "remote_cidrs[1]", "overlaps", "10.0.0.0/24")


def test_layer3_direct_connect_needs_vpc_cidr(env: Env) -> None:
    vpc = env.vpc("flat")
    data = {
        "name": "dx1",
        "vpc_id": vpc.id,
        "location": "nyc1",
        "bandwidth_mbps": 1000,
        "bgp": {"customer_asn": 65000},
    }
    env.rejected(lambda: env.engine.create("direct_connect", data), "mode", "cidr")


def test_vpn_psk_not_in_state_file_in_clear(env: Env) -> None:
    vpc = env.vpc("prod", cidr="10.0.0.0/24")
    psk = "Uniq.Secret_4711"
    env.engine.create(
        "vpn",
        {
            "name": "vpn1",
            "vpc_id": vpc.id,
            "peer_address": "203.0.113.5",
            "pre_shared_key": psk,
            "remote_cidrs": ["192.168.0.0/24"],
        },
    )
    raw = b"".join(p.read_bytes() for p in env.path.parent.iterdir() if p.name.startswith(env.path.name))
    assert psk.encode() not in raw


def test_cidr_change_revalidates_vpns(env: Env) -> None:
    vpc = env.vpc("prod", cidr="10.0.0.0/24")
    env.engine.create(
        "vpn",
        {
            "name": "vpn1",
            "vpc_id": vpc.id,
            "peer_address": "203.0.113.5",
            "pre_shared_key": "abcdefgh",
            "remote_cidrs": ["192.168.0.0/24"],
        },
    )
    before = env.snapshot()
    with pytest.raises(ValidationError):
        env.engine.update("vpc", vpc.id, {"name": "prod", "region": "us-east", "cidr": "192.168.0.0/16"})
    assert env.snapshot() == before


def test_cidr_removal_under_layer3_direct_connect(env: Env) -> None:
    vpc = env.vpc("prod", cidr="10.0.0.0/24")
    env.engine.create(
        "direct_connect",
        {
            "name": "dx1",
            "vpc_id": vpc.id,
            "location": "nyc1",
            "bandwidth_mbps": 1000,
            "bgp": {"customer_asn": 65000},
        },
    )
    before = env.snapshot()
    with pytest.raises(ValidationError):
        env.engine.update("vpc", vpc.id, {"name": "prod", "region": "us-east"})
    assert env.snapshot() == before


def test_gateway_default_skips_a_dhcp_range_without_listing_it(env: Env) -> None:
    # A DHCP range of nearly a whole /8: listing its 16 million addresses took minutes and
    # gigabytes; the default gateway is the top address outside it and the DHCP server's.
    vpc = env.vpc("big", cidr="10.0.0.0/8", dhcp={"range_start": "10.0.0.10", "range_end": "10.255.255.200"})
    vpn = {"name": "vpn1", "vpc_id": vpc.id, "peer_address": "203.0.113.5", "pre_shared_key": "abcdefgh",
           "remote_cidrs": ["192.168.0.0/24"]}
    tracemalloc.start()
    try:
        created = env.engine.create("vpn", vpn)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert created.gateway_ip == "10.255.255.253"  # .254: the DHCP server, .255: broadcast
    assert peak < 20_000_000, peak
    # Below the range's top the range itself is skipped too: a gateway is never handed out of it.
    small = env.vpc("small", cidr="10.9.0.0/24", dhcp={"range_start": "10.9.0.100", "range_end": "10.9.0.254",
                                                      "server_ip": "10.9.0.2", "gateway": "10.9.0.99"})
    assert env.engine.create("vpn", {**vpn, "name": "vpn2", "vpc_id": small.id}).gateway_ip == "10.9.0.98"


# --- computed fields ----------------------------------------------------------------------
def test_computed_fields_from_callers_are_ignored(env: Env) -> None:
    vpc = env.engine.create("vpc", {"name": "prod", "region": "us-east", "id": "vpc-mine", "vni": 7,
                                    "status": "active", "scope_epoch": 9, "dhcp_host": "c2"})
    assert re.fullmatch(rf"{ID_PREFIX['vpc']}-[0-9a-f]{{12}}", vpc.id) and vpc.vni != 7
    assert (vpc.scope_epoch, vpc.dhcp_host) == (0, None)
    att = env.attach(vpc, "web1", host="c1", interface_name="net7", status="active")
    assert re.fullmatch(rf"{ID_PREFIX['attachment']}-[0-9a-f]{{12}}", att.id)
    assert (att.interface_name, att.status) == ("net1", "pending")
    # On update the stored values stay, whatever the caller sends for them.
    updated = env.engine.update("vpc", vpc.id, {"name": "prod2", "region": "us-east", "vni": 8, "id": "x"})
    assert (updated.id, updated.vni, updated.name) == (vpc.id, vpc.vni, "prod2")
    moved = env.engine.update("attachment", att.id, {"vpc_id": vpc.id, "workload": "web1", "host": "c2",
                                                     "interface_name": "net9"})
    assert (moved.interface_name, moved.host) == ("net1", "c2")


# --- adoption and tenants -------------------------------------------------------------------
def test_adoption_is_limited_to_the_creator_key(env: Env) -> None:
    data = {"name": "web", "region": "us-east", "cidr": "10.0.0.0/24"}
    first = env.engine.create("vpc", data, adopt="dir-a")
    # The same creator, crashed before recording it, gets the same object back.
    assert env.engine.create("vpc", data, adopt="dir-a").id == first.id
    # Another configuration with identical values does not share it: a clean name conflict.
    env.rejected(lambda: env.engine.create("vpc", data, adopt="dir-b"), "name", "already exists")
    # Once confirmed (Terraform read it back), not even its creator adopts it again.
    env.engine.get("vpc", first.id, confirm=True)
    env.rejected(lambda: env.engine.create("vpc", data, adopt="dir-a"), "name", "already exists")


def test_an_attachment_is_adopted_by_its_workload_and_vpc(env: Env) -> None:
    vpc = env.vpc("prod", cidr="10.0.0.0/24")
    data = {"vpc_id": vpc.id, "workload": "web1", "ip_mode": "static", "ip_address": "10.0.0.5/24"}
    first = env.engine.create("attachment", data, adopt="dir-a")
    again = env.engine.create("attachment", data, adopt="dir-a")
    assert (again.id, again.interface_name, again.mac_address) == (first.id, "net1", first.mac_address)
    # Other values (an address the first create did not give) are another attachment: refused.
    env.rejected(lambda: env.engine.create("attachment", {**data, "ip_address": "10.0.0.6/24"}, adopt="dir-a"),
                 "vpc_id", "already attached")
    env.engine.confirm(first.id)
    env.rejected(lambda: env.engine.create("attachment", data, adopt="dir-a"), "vpc_id", "already attached")


def test_tenants_have_their_own_names_and_workloads(env: Env) -> None:
    a = Engine(env.store, tenant="acme")
    b = Engine(env.store, tenant="globex")
    va = a.create("vpc", {"name": "web", "region": "us-east"})
    vb = b.create("vpc", {"name": "web", "region": "us-east"})  # same name, other tenant: fine
    assert va.id != vb.id
    assert [v.id for v in a.list("vpc")] == [va.id]
    a.create("attachment", {"vpc_id": va.id, "workload": "vm1"})
    # acme's workload cannot be wired into globex's VPC, and acme's VPC id is unknown to globex.
    with pytest.raises(ValidationError) as ei:
        b.create("attachment", {"vpc_id": vb.id, "workload": "vm1"})
    assert ei.value.first[0] == "workload"
    with pytest.raises(ValidationError) as ei:
        b.create("attachment", {"vpc_id": va.id, "workload": "vm2"})
    assert ei.value.first[0] == "vpc_id"


def test_list_and_get_agree_on_status(env: Env) -> None:
    vpc = env.vpc("prod")
    att = env.attach(vpc, "web1")
    assert [a.status for a in env.engine.list("attachment")] == ["pending"]
    env.engine.converge()  # the (memory) agents now run it and report so
    assert env.engine.get("attachment", att.id).status == "active"
    assert [a.status for a in env.engine.list("attachment")] == ["active"]


# --- plan-time checks (Engine.check) and what updates keep ------------------------------------
def test_rules_are_reported_before_placement(env: Env) -> None:
    """A bad address in a region without an up compute host is reported as the bad address."""
    lonely = env.vpc("lonely", region="edge-land", cidr="10.0.0.0/24")
    env.rejected(lambda: env.attach(lonely, "db1", ip_mode="static", ip_address="10.9.0.5/24"),
                 "ip_address", "outside VPC cidr")
    env.rejected(lambda: env.attach(lonely, "db1", ip_mode="static", ip_address="10.0.0.5/24"),
                 "host", "no compute host")


def test_check_writes_nothing_and_sees_replacements_and_orphans(env: Env) -> None:
    vpc = env.vpc("prod", cidr="10.0.0.0/24")
    att = env.attach(vpc, "web1", ip_mode="static", ip_address="10.0.0.5/24")
    before = env.snapshot()
    # A create is checked exactly as it would run: the name is taken, the address too...
    with pytest.raises(ValidationError) as ei:
        env.engine.check("vpc", {"name": "prod", "region": "us-west"})
    assert ei.value.first[0] == "name"
    with pytest.raises(ValidationError) as ei:
        env.engine.check("attachment", {"vpc_id": vpc.id, "workload": "web2", "ip_mode": "static",
                                        "ip_address": "10.0.0.5/24"})
    assert ei.value.first[0] == "ip_address"
    # ...unless it replaces their holder (Terraform destroys that first).
    assert env.engine.check("vpc", {"name": "prod", "region": "us-west"}, replacing=[vpc.id]).region == "us-west"
    replacement = env.engine.check("attachment", {"vpc_id": vpc.id, "workload": "web1", "workload_kind": "pod",
                                                  "ip_mode": "static", "ip_address": "10.0.0.5/24"},
                                   replacing=[att.id])
    assert replacement.id != att.id and replacement.interface_name == "net1"
    # A replacement that cannot be created fails: the region has no host.
    with pytest.raises(ValidationError) as ei:
        env.engine.check("vpc", {"name": "prod", "region": "mars"}, replacing=[vpc.id])
    assert ei.value.first[0] == "region"
    assert env.snapshot() == before
    # An object an interrupted create left unconfirmed passes for its creator only.
    orphan = env.engine.create("vpc", {"name": "orphan", "region": "us-east"}, adopt="dir-a")
    before = env.snapshot()
    assert env.engine.check("vpc", {"name": "orphan", "region": "us-east"}, adopt="dir-a").id == orphan.id
    with pytest.raises(ValidationError):
        env.engine.check("vpc", {"name": "orphan", "region": "us-east"}, adopt="dir-b")
    assert env.snapshot() == before


def test_an_update_keeps_the_public_ip_on_its_edge(env: Env) -> None:
    vpc = env.vpc("prod", cidr="10.0.0.0/24")
    vpn = {"vpc_id": vpc.id, "peer_address": "203.0.113.5", "pre_shared_key": "abcdefgh",
           "remote_cidrs": ["192.168.0.0/24"]}
    first = env.engine.create("vpn", {**vpn, "name": "first"})
    second = env.engine.create("vpn", {**vpn, "name": "second", "remote_cidrs": ["192.168.1.0/24"]})
    assert (first.public_ip, second.public_ip) == ("203.0.113.46", "203.0.113.45")
    env.engine.delete("vpn", first.id)  # frees the top of the block
    updated = env.engine.update("vpn", second.id, {**vpn, "name": "second", "remote_cidrs": ["192.168.1.0/24"],
                                                   "ike": {"lifetime": 3600}})
    assert updated.public_ip == "203.0.113.45" and updated.ike.lifetime == 3600
    assert env.engine.create("vpn", {**vpn, "name": "third"}).public_ip == "203.0.113.46"
