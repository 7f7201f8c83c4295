"""Drift made behind Terraform's back, and the data sources `l2vpc_vpc` and `l2vpc_hosts`."""

from __future__ import annotations

import json

import pytest

from .conftest import Workspace, diagnostic_for

pytestmark = pytest.mark.terraform

DRIFT = """
resource "l2vpc_vpc" "d" {
  name   = "drift"
  region = "us-east"
  cidr   = "10.30.0.0/24"
  mtu    = %d
}

resource "l2vpc_attachment" "a" {
  vpc_id   = l2vpc_vpc.d.id
  workload = "vm-a"
}

resource "l2vpc_attachment" "b" {
  vpc_id     = l2vpc_vpc.d.id
  workload   = "vm-b"
  ip_mode    = "static"
  ip_address = "10.30.0.5/24"
}
"""


def reported_ports(ws: Workspace) -> set[str]:
    with ws.engine() as engine, engine.store.transaction() as tx:
        return {p["id"] for r in tx.host_reports().values() for p in r.config.get("ports", ())}


def lose_port(ws: Workspace, host: str, attachment_id: str) -> None:
    """The host stops reporting the attachment's port (someone deleted the veth)."""
    with ws.engine() as engine, engine.store.transaction() as tx:
        report = tx.host_reports()[host]
        config = {**report.config, "ports": [p for p in report.config["ports"] if p["id"] != attachment_id]}
        tx.put_host_report(host, report.generation, config)


def test_drift_is_planned_and_repaired(workspace: Workspace) -> None:
    ws = workspace
    ws.write(DRIFT % 1500)
    ws.apply()
    state = ws.resources()
    a_id, b_id = state["l2vpc_attachment.a"]["id"], state["l2vpc_attachment.b"]["id"]
    assert reported_ports(ws) == {a_id, b_id}

    with ws.engine() as engine:
        engine.delete("attachment", a_id)  # the object is gone
        vpc = engine.vpc_by_name("drift")
        assert vpc is not None
        engine.update("vpc", vpc.id, {**vpc.model_dump(), "description": "changed by hand"})
    lose_port(ws, state["l2vpc_attachment.b"]["host"], b_id)

    planned = ws.plan()
    assert "# l2vpc_attachment.a will be created" in planned.out
    assert "# l2vpc_attachment.b will be updated in-place" in planned.out
    assert '~ description = "changed by hand" -> ""' in planned.out
    assert "Plan: 1 to add, 2 to change, 0 to destroy." in planned.out

    ws.apply()
    state = ws.resources()
    new_a = state["l2vpc_attachment.a"]["id"]
    assert new_a != a_id and state["l2vpc_attachment.b"]["status"] == "active"
    assert reported_ports(ws) == {new_a, b_id}  # b repaired, the deleted a's port removed
    assert ws.list("vpc")[0].description == ""
    ws.assert_plan_empty()


def test_drift_repair_while_the_vpc_mtu_changes(workspace: Workspace) -> None:
    ws = workspace
    ws.write(DRIFT % 1500)
    ws.apply()
    b = ws.resources()["l2vpc_attachment.b"]
    lose_port(ws, b["host"], b["id"])
    ws.write(DRIFT % 9000)
    ws.apply()
    assert ws.resources()["l2vpc_attachment.b"]["mtu"] == 9000


DATA = """
resource "l2vpc_vpc" "a" {
  name   = "made-here"
  scope  = "multi_region"
  mtu    = 1450
}

data "l2vpc_vpc" "by_name" {
  name = "seeded"
}

data "l2vpc_vpc" "by_id" {
  id = l2vpc_vpc.a.id
}

data "l2vpc_hosts" "all" {}

data "l2vpc_hosts" "us_edges" {
  region = "us-east"
  role   = "edge"
}

data "l2vpc_hosts" "eu" {
  region = "eu-west"
}

output "seeded" { value = data.l2vpc_vpc.by_name }
output "made"   { value = data.l2vpc_vpc.by_id }
output "all"    { value = [for h in data.l2vpc_hosts.all.hosts : h.name] }
output "edges"  { value = data.l2vpc_hosts.us_edges.hosts }
output "eu"     { value = [for h in data.l2vpc_hosts.eu.hosts : "${h.name}/${h.role}"] }
"""


def test_data_sources_vpc_by_name_and_id_and_hosts_filtered_and_sorted(workspace: Workspace) -> None:
    ws = workspace
    with ws.engine() as engine:
        seeded = engine.create("vpc", {"name": "seeded", "region": "eu-west", "cidr": "10.40.0.0/24",
                                       "dhcp": {"range_start": "10.40.0.10", "range_end": "10.40.0.50"}})
    ws.write(DATA)
    ws.apply()
    out = {k: v["value"] for k, v in json.loads(ws.ok("output", "-json").out).items()}
    assert out["seeded"]["id"] == seeded.id and out["seeded"]["vni"] == seeded.vni
    assert (out["seeded"]["region"], out["seeded"]["cidr"]) == ("eu-west", "10.40.0.0/24")
    assert out["seeded"]["dhcp"]["server_ip"] == "10.40.0.254" and out["seeded"]["dhcp"]["lease_time"] == 3600
    made = ws.resources()["l2vpc_vpc.a"]
    assert out["made"]["id"] == made["id"] and out["made"]["name"] == "made-here" and out["made"]["mtu"] == 1450
    assert out["made"]["scope"] == "multi_region" and out["made"]["region"] is None
    assert out["all"] == ["edge1", "edge2", "host1", "host2", "host3"]
    assert out["edges"] == [{"name": "edge1", "region": "us-east", "role": "edge", "location": "nyc1", "status": "up"}]
    assert out["eu"] == ["edge2/edge", "host3/compute"]
    ws.assert_plan_empty()

    ws.write(DATA.replace('name = "seeded"', 'name = "nope"'))
    failed = ws.fails("plan", "-input=false")
    assert "no VPC with name 'nope'" in diagnostic_for(failed, "data.l2vpc_vpc.by_name", 'name = "nope"')
