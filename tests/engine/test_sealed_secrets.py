"""Sealed secrets are marked out of band, not by a prefix a user can type (issue 15, item 7).

A key typed as "sealed:v1:..." is refused, naming its field; a state file written before the
marker changed is migrated (old sealed values open, typed ones become unreadable); an object
whose secret cannot be opened fails alone: others of its tenant and other tenants converge,
and it can still be read, given a new key and deleted.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from l2vpc.agent.local import LocalAgentPool
from l2vpc.engine.api import Engine
from l2vpc.engine.errors import ValidationError
from l2vpc.engine.kinds.context import UNREADABLE
from l2vpc.engine.secrets import SecretBox
from l2vpc.engine.store import open_store

KEY = Fernet.generate_key()
HOSTS = [
    {"name": "edge1", "region": "us-east", "role": "edge", "location": "nyc1", "underlay_ip": "10.200.0.9",
     "public_cidr": "203.0.113.32/28"},
    {"name": "c1", "region": "us-east", "underlay_ip": "10.200.0.1"},
]
PSK_GOOD = "Good.Key_4711"
MD5_GOOD = "md5-good-key"


def rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    conn = sqlite3.connect(path)
    try:
        with conn:
            return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


class World:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.agents = LocalAgentPool()
        self.store = open_store(str(path))
        self.admin = self.engine("")
        for h in HOSTS:
            self.admin.register_host(h)

    def engine(self, tenant: str) -> Engine:
        return Engine(self.store, self.agents, tenant=tenant, secrets=SecretBox(KEY))

    def reopen(self) -> None:
        self.store.close()
        self.store = open_store(str(self.path))
        self.admin = self.engine("")

    def dx(self, tenant: str, name: str, md5: str) -> Any:
        e = self.engine(tenant)
        vpc = e.create("vpc", {"name": f"{name}-net", "region": "us-east", "cidr": "10.1.0.0/24"})
        return e.create("direct_connect", {"name": name, "vpc_id": vpc.id, "location": "nyc1", "bandwidth_mbps": 1000,
                                           "bgp": {"customer_asn": 65001, "md5_key": md5}})


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path / "state.db")
    try:
        yield w
    finally:
        w.store.close()


def test_the_old_prefix_is_refused_in_input_naming_the_field(world: World) -> None:
    e = world.engine("acme")
    vpc = e.create("vpc", {"name": "net", "region": "us-east", "cidr": "10.1.0.0/24"})
    before = rows(world.path, "SELECT kind, id, generation FROM objects ORDER BY kind, id")
    cases = [
        ("direct_connect", {"name": "dx", "vpc_id": vpc.id, "location": "nyc1", "bandwidth_mbps": 1000,
                            "bgp": {"customer_asn": 65001, "md5_key": "sealed:v1:bogus"}}, "bgp.md5_key"),
        ("direct_connect", {"name": "mp", "vpc_id": vpc.id, "location": "nyc1", "bandwidth_mbps": 1000,
                            "partner": "megaport", "service_key": "sealed:v1:bogus",
                            "bgp": {"customer_asn": 65001}}, "service_key"),
        ("vpn", {"name": "v", "vpc_id": vpc.id, "peer_address": "198.51.100.1", "pre_shared_key": "sealed:v1:bogus",
                 "remote_cidrs": ["192.168.0.0/24"]}, "pre_shared_key"),
    ]
    for kind, data, field in cases:
        with pytest.raises(ValidationError) as ei:
            e.create(kind, data)
        assert ei.value.first[0] == field, ei.value.problems
        assert "bogus" not in str(ei.value)  # never echoed
    with pytest.raises(ValidationError, match="must not start with 'sealed:'"):
        e.create(*cases[0][:2])
    assert rows(world.path, "SELECT kind, id, generation FROM objects ORDER BY kind, id") == before


def test_stored_secrets_carry_an_out_of_band_marker(world: World) -> None:
    dx = world.dx("acme", "dx", MD5_GOOD)
    (text,) = rows(world.path, "SELECT data FROM objects WHERE id = ?", (dx.id,))[0]
    sealed = json.loads(text)["bgp"]["md5_key"]
    assert set(sealed) == {"$sealed", "token"} and sealed["$sealed"] == "v1"
    assert MD5_GOOD not in text


def test_a_legacy_state_is_migrated_and_an_unopenable_secret_fails_alone(world: World) -> None:
    good = world.dx("acme", "good", MD5_GOOD)
    bad = world.dx("acme", "bad", "placeholder-key")
    other = world.dx("globex", "other", "other-tenant-key")
    vpn_vpc = world.engine("globex").create("vpc", {"name": "vpn-net", "region": "us-east", "cidr": "10.2.0.0/24"})
    vpn = world.engine("globex").create("vpn", {"name": "v", "vpc_id": vpn_vpc.id, "peer_address": "198.51.100.1",
                                                "pre_shared_key": PSK_GOOD, "remote_cidrs": ["192.168.0.0/24"]})
    # Rewrite the state as schema 2 wrote it: sealed values as prefixed strings; "bad" holds a
    # key a user typed with the prefix (schema 2 stored it as if sealed).
    world.store.close()
    legacy = "sealed:v1:" + Fernet(KEY).encrypt(MD5_GOOD.encode()).decode()
    for ident, path, value in ((good.id, "$.bgp.md5_key", legacy), (bad.id, "$.bgp.md5_key", "sealed:v1:bogus"),
                               (other.id, "$.bgp.md5_key", "sealed:v1:" + Fernet(KEY).encrypt(b"other-tenant-key").decode()),
                               (vpn.id, "$.pre_shared_key", "sealed:v1:" + Fernet(KEY).encrypt(PSK_GOOD.encode()).decode())):
        rows(world.path, f"UPDATE objects SET data = json_set(data, '{path}', ?) WHERE id = ?", (value, ident))
    rows(world.path, "DELETE FROM schema_version WHERE version >= 3")
    world.reopen()
    assert world.store.schema_version() >= 3
    for (text,) in rows(world.path, "SELECT data FROM objects WHERE kind IN ('vpn', 'direct_connect')"):
        assert "sealed:v1:" not in text  # every prefixed value now carries the marker

    # The topology opens the good secrets and leaves the bad object out: every host converges.
    topo = world.admin.topology()
    assert topo.direct_connects[good.id].bgp.md5_key == MD5_GOOD  # type: ignore[union-attr]
    assert topo.vpns[vpn.id].pre_shared_key == PSK_GOOD
    assert other.id in topo.direct_connects and bad.id not in topo.direct_connects
    _, result = world.admin.converge()
    assert result.ok, result.results
    actual = world.admin.actual_configs()["edge1"]
    assert {r.id for r in actual.edge_routers} == {good.id, other.id}

    # The bad one can be read (its status says why), and its detail names the way out.
    acme = world.engine("acme")
    got = acme.get("direct_connect", bad.id)
    assert got.status == UNREADABLE and got.bgp is not None and got.bgp.md5_key is None
    assert "cannot be decrypted" in acme.status_detail("direct_connect", bad.id)
    assert {d.name: d.status for d in acme.list("direct_connect")}["bad"] == UNREADABLE
    # A new key repairs it; deleting works too.
    data = got.model_dump(mode="json", exclude={"id", "status", "edge_host"})
    data["bgp"]["md5_key"] = "a-new-key"
    repaired = acme.update("direct_connect", bad.id, data)
    assert repaired.status != UNREADABLE
    assert world.admin.topology().direct_connects[bad.id].bgp.md5_key == "a-new-key"  # type: ignore[union-attr]
    acme.delete("direct_connect", bad.id)
    assert acme.find("direct_connect", bad.id) is None


def test_an_unopenable_secret_in_a_new_state_fails_alone_and_can_be_deleted(world: World) -> None:
    # A secret sealed with another key (a controller started with the wrong L2VPC_SECRET_KEY).
    bad = world.dx("acme", "bad", "first-key-1")
    ok = world.dx("globex", "ok", "second-key-2")
    foreign = SecretBox(Fernet.generate_key()).seal("first-key-1")
    rows(world.path, "UPDATE objects SET data = json_set(data, '$.bgp.md5_key', json(?)) WHERE id = ?",
         (json.dumps(foreign), bad.id))
    world.reopen()
    _, result = world.admin.converge()
    assert result.ok
    assert [r.id for r in world.admin.actual_configs()["edge1"].edge_routers] == [ok.id]
    world.engine("acme").delete("direct_connect", bad.id)
    assert [d.id for d in world.admin.list("direct_connect")] == [ok.id]
