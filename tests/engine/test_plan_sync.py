"""`l2vpc plan -f` plans from a dry-run batch (topology_file.plan_sync): its plan must be the
plan that syncing the file for real and then planning from the store gives, on SQLite and
PostgreSQL, from empty and after changes (deletes, updates, new attachments on VPCs whose DHCP
server is placed again), and the dry run must write nothing. `apply -f` converges from the
topology its sync batch leaves (sync_topology): it must equal the topology read back."""

from __future__ import annotations

import copy
import itertools
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from l2vpc.agent.local import LocalAgentPool
from l2vpc.engine.api import Engine
from l2vpc.engine.kinds.base import Kind
from l2vpc.engine.secrets import SecretBox
from l2vpc.engine.store import open_store
from l2vpc.engine.store.base import Store
from l2vpc.engine.topology_file import parse_document, plan_sync, sync_topology

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from bench_write_path import topology


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(tmp_path / "state.db") if request.param == "sqlite" else request.getfixturevalue("db").url


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    with open_store(url) as s:
        yield s


def document() -> dict[str, Any]:
    doc: dict[str, Any] = topology(8, 8, 40)
    doc["hosts"].append({"name": "e1", "region": "r0", "role": "edge", "location": "nyc1",
                         "underlay_ip": "10.255.9.1", "public_cidr": "198.51.100.0/28"})
    doc["vpns"] = [{"vpc": "v00000", "name": "vpn1", "peer_address": "203.0.113.5",
                    "pre_shared_key": "secretkey1", "remote_cidrs": ["192.168.0.0/24"]}]
    # Attachments without a host or address: placed, and on DHCP VPCs (v00001 has a dhcp block).
    doc["attachments"] += [{"vpc": "v00001", "workload": "free1", "ip_mode": "dhcp"},
                           {"vpc": "v00003", "workload": "free2"},
                           # A tuple field (allowed_addresses): unchanged, it is no update.
                           {"vpc": "v00003", "workload": "secured", "ip_mode": "static", "ip_address": "10.0.3.90/24",
                            "port_security": True, "allowed_addresses": ["10.0.3.64/27"]}]
    return doc


def rows(store: Store) -> dict[str, Any]:
    with store.transaction() as tx:
        return {kind: sorted((o.id, o.generation, o.data) for o in tx.list(kind))
                for kind in ("host", "vpc", "attachment", "vpn")}


@pytest.fixture(autouse=True)
def repeatable_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """New ids from a counter that each run restarts (ids are random): the dry run and the
    real sync then name the same objects alike. Counters (VNI, MAC) restart by themselves:
    the dry run rolls back."""
    monkeypatch.setattr(Kind, "new_id", lambda self: f"{self.id_prefix}-{next(IDS[0]):012x}")


IDS = [itertools.count()]
BOX = SecretBox(Fernet.generate_key())  # one key for every engine here (PostgreSQL has no key file)


def same_plan_as_a_real_sync(store: Store, doc: dict[str, Any]) -> dict[str, int]:
    """plan_sync's plan, counts and names equal sync's then Engine.plan's; the dry run wrote nothing."""
    engine = Engine(store, LocalAgentPool(), secrets=BOX)
    before = rows(store)
    start = next(IDS[0]) + 1
    IDS[0] = itertools.count(start)
    dry, counts, names = plan_sync(engine, parse_document(copy.deepcopy(doc), engine.hosts()))
    assert rows(store) == before
    IDS[0] = itertools.count(start)
    real_counts, topo = sync_topology(engine, parse_document(copy.deepcopy(doc), engine.hosts()))
    assert topo == engine.topology()  # what `apply` converges from: as read back
    real = engine.plan()
    assert dry.to_dict() == real.to_dict()
    assert counts == real_counts
    assert names == {v.id: v.name for v in engine.list("vpc")}
    return counts


def test_dry_run_plans_like_a_real_sync(store: Store) -> None:
    doc = document()
    counts = same_plan_as_a_real_sync(store, doc)
    assert counts["created"] == len(doc["vpcs"]) + len(doc["attachments"]) + 1
    engine = Engine(store, LocalAgentPool(), secrets=BOX)
    _, result = engine.converge()
    assert result.ok
    # Converged: the dry run plans nothing and counts nothing.
    dry, counts, _ = plan_sync(engine, parse_document(copy.deepcopy(doc), engine.hosts()))
    assert dry.is_empty and counts == {"created": 0, "updated": 0, "deleted": 0}

    # Changes: attachments removed and added (on DHCP VPCs too), a VPC changed.
    changed = copy.deepcopy(doc)
    changed["attachments"] = [
        *changed["attachments"][5:],
        {"vpc": "v00001", "workload": "free3", "ip_mode": "dhcp"},
        {"vpc": "v00005", "workload": "free4", "ip_mode": "static", "ip_address": "10.0.5.77/24"},
    ]
    changed["vpcs"][2]["mtu"] = 9000
    counts = same_plan_as_a_real_sync(store, changed)
    assert counts == {"created": 2, "updated": 1, "deleted": 5}

    # An attachment's own fields changed: an update each (its address, its allowed sources).
    engine.converge()
    again = copy.deepcopy(changed)
    moved = next(a for a in again["attachments"] if a.get("ip_address") == "10.0.5.77/24")
    moved["ip_address"] = "10.0.5.78/24"
    next(a for a in again["attachments"] if a["workload"] == "secured")["allowed_addresses"] = ["10.0.3.96/27"]
    counts = same_plan_as_a_real_sync(store, again)
    assert counts == {"created": 0, "updated": 2, "deleted": 0}
