"""The update matrix (issue 18): every attribute of every resource changed, removed, changed back.

The cases come from the schemas (matrix.py): for each, Terraform must plan "replace" exactly
when the attribute requires replacement, apply it, plan nothing more, and the same back. All
cases are objects of one configuration, so a handful of Terraform runs apply them all.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from . import matrix
from .conftest import Workspace

pytestmark = pytest.mark.terraform

# Every direct connect waits a few seconds for routes its session learns (none in this lab): the
# cases wait side by side rather than ten at a time.
PARALLELISM = "-parallelism=64"

# More edge hosts with public addresses: every VPN case needs one.
EDGES = [
    {"name": "edge3", "region": "us-east", "role": "edge", "location": "nyc2", "underlay_ip": "10.200.0.11",
     "public_cidr": "203.0.114.0/24"},
    {"name": "edge4", "region": "eu-west", "role": "edge", "location": "ams2", "underlay_ip": "10.200.0.12",
     "public_cidr": "203.0.115.0/24"},
]


def test_every_configurable_attribute_has_cases() -> None:
    schemas = matrix.schemas()
    assert set(schemas) == set(matrix.BASE) == set(matrix.OTHER) == set(matrix.TOGETHER)
    for type_name, schema in schemas.items():
        assert matrix.uncovered(schema, type_name) == [], type_name
        paths = {p for p, _ in matrix.attribute_paths(schema.attributes)}
        declared = set(matrix.OTHER[type_name]) | {p for t in matrix.TOGETHER[type_name] for p in t.values}
        assert declared <= paths, declared - paths
    cases = matrix.cases(schemas)
    assert len(cases) < 250  # numbers end up in addresses
    # Spot checks of the expectations the schemas give.
    expected = {(c.type_name, c.what): c.expected for c in cases}
    assert expected["l2vpc_vpc", "change region"] == "replace"
    assert expected["l2vpc_vpc", "together scope+region"] == "update"
    assert expected["l2vpc_vpc", "remove dhcp.server_ip"] == "no-op"
    assert expected["l2vpc_vpc", "remove mtu"] == "update"
    assert expected["l2vpc_attachment", "change mac_address"] == "replace"
    assert expected["l2vpc_attachment", "change host"] == "update"
    assert expected["l2vpc_attachment", "change port_security"] == "update"
    assert expected["l2vpc_attachment", "change allowed_addresses"] == "update"
    assert expected["l2vpc_direct_connect", "together mode+bgp+gateway_ip+vlan"] == "replace"
    assert expected["l2vpc_direct_connect", "change bgp.peering_cidr"] == "update"
    assert expected["l2vpc_vpn", "remove ike"] == "update"


def actions(ws: Workspace, cases: list[matrix.Case]) -> dict[str, str]:
    """Plan to a file; each case's action as Terraform shows it."""
    ws.ok("plan", "-input=false", PARALLELISM, "-out=matrix.plan")
    shown = json.loads(ws.ok("show", "-json", "matrix.plan").out)
    wanted = {c.address for c in cases}
    out: dict[str, str] = {}
    for rc in shown.get("resource_changes", []):
        if rc["address"] not in wanted:
            continue
        acts = rc["change"]["actions"]
        out[rc["address"]] = "replace" if "delete" in acts and "create" in acts else acts[0]
    return out


def run_phase(ws: Workspace, cases: list[matrix.Case], phase: str, times: dict[str, float]) -> None:
    started = time.monotonic()
    ws.write(matrix.configuration(cases, phase))
    got = actions(ws, cases)
    wrong = [f"{c.address} ({c.type_name}: {c.what}): planned {got.get(c.address)}, expected {c.expected}"
             for c in cases if got.get(c.address, "no-op") != c.expected]
    assert wrong == [], "\n".join(wrong)
    ws.ok("apply", "-input=false", PARALLELISM, "matrix.plan")
    ws.assert_plan_empty()
    times[phase] = time.monotonic() - started


def test_update_matrix(workspace: Workspace) -> None:
    ws = workspace
    with ws.engine() as engine:
        for host in EDGES:
            engine.register_host(host)
    cases = matrix.cases(matrix.schemas())
    times: dict[str, float] = {}
    started = time.monotonic()
    ws.write(matrix.configuration(cases, "base"))
    ws.apply(PARALLELISM)
    ws.assert_plan_empty()
    times["create"] = time.monotonic() - started
    run_phase(ws, cases, "changed", times)
    # And back: the same actions (a replacement's way back is one too).
    run_phase(ws, cases, "base", times)
    print(f"{len(cases)} cases; seconds per phase: " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
    state: dict[str, Any] = ws.resources()
    assert all(c.address in state for c in cases)
