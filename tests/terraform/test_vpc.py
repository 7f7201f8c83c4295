"""`l2vpc_vpc` under the real Terraform: lifecycle, unknown values, import, scope conversion."""

from __future__ import annotations

import pytest

from .conftest import Workspace, diagnostics

pytestmark = pytest.mark.terraform

VPCS = """
resource "l2vpc_vpc" "a" {
  name        = "alpha"
  description = "%(desc)s"
  region      = "%(region)s"
  mtu         = %(mtu)d
  cidr        = "10.1.0.0/24"
  dhcp = {
    range_start = "10.1.0.100"
    range_end   = "10.1.0.200"
    dns_servers = ["10.1.0.1"]
  }
}

# Values unknown at plan time, refined ones included (a known prefix, a bounded length).
resource "l2vpc_vpc" "b" {
  name        = "beta"
  region      = "us-east"
  description = "x-${l2vpc_vpc.a.id}"
  mtu         = 1000 + length(l2vpc_vpc.a.id)
}
"""


def vpcs(desc: str = "first", region: str = "us-east", mtu: int = 1500) -> str:
    return VPCS % {"desc": desc, "region": region, "mtu": mtu}


def test_vpc_create_update_replace_import_destroy(workspace: Workspace) -> None:
    ws = workspace
    ws.write(vpcs())
    created = ws.apply()
    assert "Apply complete! Resources: 2 added, 0 changed, 0 destroyed." in created.out
    by_name = {v.name: v for v in ws.list("vpc")}
    a, b = by_name["alpha"], by_name["beta"]
    assert (a.region, a.mtu, a.cidr, a.dhcp.dns_servers) == ("us-east", 1500, "10.1.0.0/24", ("10.1.0.1",))
    assert b.description == f"x-{a.id}" and b.mtu == 1000 + len(a.id)
    assert a.vni and b.vni and a.vni != b.vni
    state = ws.resources()
    assert state["l2vpc_vpc.a"]["id"] == a.id and state["l2vpc_vpc.a"]["vni"] == a.vni
    assert state["l2vpc_vpc.a"]["dhcp"]["server_ip"] == "10.1.0.254"  # computed default: last usable
    ws.assert_plan_empty()

    # In place: mtu and description.
    ws.write(vpcs(desc="second", mtu=9000))
    updated = ws.apply()
    assert "# l2vpc_vpc.a will be updated in-place" in updated.out
    assert "Resources: 0 added, 1 changed, 0 destroyed." in updated.out
    a2 = {v.name: v for v in ws.list("vpc")}["alpha"]
    assert (a2.id, a2.mtu, a2.description, a2.vni) == (a.id, 9000, "second", a.vni)
    # (No plan here and below: the next apply's exact counts would show any leftover change.)

    # The region of a single_region VPC: replaced; beta follows the new id in place.
    ws.write(vpcs(desc="second", mtu=9000, region="eu-west"))
    replaced = ws.apply()
    assert "# l2vpc_vpc.a must be replaced" in replaced.out
    assert '~ region      = "us-east" -> "eu-west" # forces replacement' in replaced.out
    assert "# l2vpc_vpc.b will be updated in-place" in replaced.out
    assert "Resources: 1 added, 1 changed, 1 destroyed." in replaced.out
    by_name = {v.name: v for v in ws.list("vpc")}
    assert len(by_name) == 2 and by_name["alpha"].id != a.id and by_name["alpha"].region == "eu-west"
    assert by_name["beta"].description == f"x-{by_name['alpha'].id}"

    # Import: one VPC with `terraform import`, one with an import block.
    with ws.engine() as engine:
        gamma = engine.create("vpc", {"name": "gamma", "region": "us-east", "mtu": 1400, "cidr": "10.7.0.0/24",
                                      "dhcp": {"range_start": "10.7.0.10", "range_end": "10.7.0.20", "lease_time": 600}})
        delta = engine.create("vpc", {"name": "delta", "scope": "multi_region", "description": "imported"})
    imported = vpcs(desc="second", mtu=9000, region="eu-west") + """
resource "l2vpc_vpc" "c" {
  name   = "gamma"
  region = "us-east"
  mtu    = 1400
  cidr   = "10.7.0.0/24"
  dhcp   = { range_start = "10.7.0.10", range_end = "10.7.0.20", lease_time = 600 }
}
"""
    ws.write(imported)
    assert "Import successful!" in ws.ok("import", "-input=false", "l2vpc_vpc.c", gamma.id).out
    ws.write(imported + f"""
import {{
  to = l2vpc_vpc.d
  id = "{delta.id}"
}}

resource "l2vpc_vpc" "d" {{
  name        = "delta"
  scope       = "multi_region"
  description = "imported"
}}
""")
    applied = ws.apply()
    assert "# l2vpc_vpc.d will be imported" in applied.out
    assert "Plan: 1 to import, 0 to add, 0 to change, 0 to destroy." in applied.out
    assert ws.resources()["l2vpc_vpc.d"]["id"] == delta.id
    assert ws.resources()["l2vpc_vpc.c"]["dhcp"]["server_ip"] == "10.7.0.254"
    ws.assert_plan_empty()

    destroyed = ws.ok("destroy", "-input=false", "-auto-approve")
    assert "Destroy complete! Resources: 4 destroyed." in destroyed.out
    assert ws.list("vpc") == []


SCOPED = """
resource "l2vpc_vpc" "s" {
  name   = "shared"
  %(scope)s
  cidr   = "10.2.0.0/24"
}

resource "l2vpc_attachment" "w" {
  count      = 3
  vpc_id     = l2vpc_vpc.s.id
  workload   = "vm${count.index}"
  host       = "host1"
  ip_mode    = "static"
  ip_address = "10.2.0.${count.index + 10}/24"
}
%(extra)s
"""


def test_scope_conversion_is_in_place_and_warns_how_many_workloads_restart(workspace: Workspace) -> None:
    ws = workspace
    ws.write(SCOPED % {"scope": 'region = "us-east"', "extra": ""})
    ws.apply()
    epoch = ws.list("vpc")[0].scope_epoch

    ws.write(SCOPED % {"scope": 'scope = "multi_region"', "extra": ""})
    converted = ws.apply()  # prints the plan and its warnings first
    assert "# l2vpc_vpc.s will be updated in-place" in converted.out
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in converted.out
    warnings = [d for d in diagnostics(converted) if d.startswith("Warning: Changing scope restarts 3 workloads")]
    assert warnings and "vm0, vm1, vm2" in warnings[0], diagnostics(converted)
    (vpc,) = ws.list("vpc")
    assert (vpc.scope, vpc.region, vpc.scope_epoch) == ("multi_region", None, epoch + 1)
    with ws.engine() as engine, engine.store.transaction() as tx:
        epochs = [p["restart_epoch"] for r in tx.host_reports().values() for p in r.config["ports"]]
    assert epochs == [epoch + 1] * 3  # the hosts restarted all three interfaces
    ws.assert_plan_empty()

    # A workload in another region joins; going back to single_region must name it.
    eu = """
resource "l2vpc_attachment" "eu" {
  vpc_id   = l2vpc_vpc.s.id
  workload = "euvm"
  host     = "host3"
}
"""
    ws.write(SCOPED % {"scope": 'scope = "multi_region"', "extra": eu})
    ws.apply()
    ws.write(SCOPED % {"scope": 'region = "us-east"', "extra": eu})
    failed = ws.fails("apply", "-input=false", "-auto-approve")
    assert "euvm on host3 (eu-west)" in failed.text, str(failed)
    (vpc,) = ws.list("vpc")
    assert vpc.scope == "multi_region"
