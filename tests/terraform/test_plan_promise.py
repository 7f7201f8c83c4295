"""A plan is a promise (issue 18): every valid change applies as planned, nothing is lost.

One regression test per case the update matrix found (all configurations valid, memory lab):
a replacement that cannot be created, an allocated value that moved on an unrelated update,
and computed values kept from the prior state although what they derive from changed.
"""

from __future__ import annotations

import pytest

from .conftest import Workspace, diagnostic_for

pytestmark = pytest.mark.terraform

VPC = """
resource "l2vpc_vpc" "v" {
  name   = "moving"
  region = "%(region)s"
  cidr   = "10.20.0.0/24"
}
"""


def test_a_replacement_that_cannot_be_created_fails_at_plan_and_keeps_the_object(workspace: Workspace) -> None:
    """Case 1: region us-east → eu-north (no host there) used to destroy the VPC, then fail."""
    ws = workspace
    ws.write(VPC % {"region": "us-east"})
    ws.apply()
    [before] = ws.list("vpc")
    ws.write(VPC % {"region": "eu-north"})
    planned = ws.fails("plan", "-input=false")
    assert "no host is in region 'eu-north'" in diagnostic_for(planned, "l2vpc_vpc.v", 'region = "eu-north"')
    applied = ws.fails("apply", "-input=false", "-auto-approve")
    assert "Destruction complete" not in applied.out and "Apply complete" not in applied.out
    assert [v.id for v in ws.list("vpc")] == [before.id]
    assert ws.resources()["l2vpc_vpc.v"]["id"] == before.id
    # A region that has hosts still replaces, as planned.
    ws.write(VPC % {"region": "eu-west"})
    replaced = ws.apply()
    assert "# l2vpc_vpc.v must be replaced" in replaced.out
    assert '~ region      = "us-east" -> "eu-west" # forces replacement' in replaced.out
    [after] = ws.list("vpc")
    assert after.id != before.id and after.region == "eu-west"
    ws.assert_plan_empty()


VPN = """
resource "l2vpc_vpn" "%(name)s" {
  name           = "%(name)s"
  vpc_id         = l2vpc_vpc.v.id
  peer_address   = "198.51.100.%(n)d"
  pre_shared_key = "good.key.%(n)d00"
  remote_cidrs   = ["192.168.%(n)d.0/24"]
  ike            = { lifetime = %(lifetime)d }
}
"""


def vpns(*names: str, lifetime: int = 28800) -> str:
    numbers = {"first": 1, "filler": 2, "second": 3}
    return (VPC % {"region": "us-east"}) + "".join(
        VPN % {"name": n, "n": numbers[n], "lifetime": lifetime} for n in names)


def test_an_update_keeps_the_allocated_public_ip(workspace: Workspace) -> None:
    """Case 2: an in-place update gave back the VPN's public address and allocated again from
    the top of the pool, which another VPN's deletion on the same edge had freed."""
    ws = workspace
    for names in (("first",), ("first", "filler"), ("first", "filler", "second")):
        ws.write(vpns(*names))  # one at a time: first and second land on the same edge
        ws.apply()
    hosts = {v.name: v.vpn_host for v in ws.list("vpn")}
    assert hosts["first"] == hosts["second"] != hosts["filler"]
    public = ws.resources()["l2vpc_vpn.second"]["public_ip"]
    ws.write(vpns("filler", "second"))
    ws.apply()
    ws.write(vpns("filler", "second", lifetime=3600))
    updated = ws.apply()
    assert "# l2vpc_vpn.second will be updated in-place" in updated.out
    assert ws.resources()["l2vpc_vpn.second"]["public_ip"] == public
    second = {v.name: v for v in ws.list("vpn")}["second"]
    assert second.public_ip == public and second.ike.lifetime == 3600
    ws.assert_plan_empty()


DX = """
resource "l2vpc_vpc" "v" {
  name   = "v"
  region = "us-east"
  cidr   = "10.40.0.0/24"
}

resource "l2vpc_direct_connect" "dx" {
  name           = "dx"
  vpc_id         = l2vpc_vpc.v.id
  location       = "nyc1"
  bandwidth_mbps = 1000
%(body)s
}
"""

LAYER3 = "  bgp = { customer_asn = 65010 }"
LAYER2 = '  mode = "layer2"'


def test_a_mode_change_replaces_without_carrying_computed_values(workspace: Workspace) -> None:
    """Case 3: layer3 → layer2 carried the assigned gateway_ip into the plan ("gateway_ip:
    only for layer3 direct connects"); layer2 → layer3 → layer2 the same."""
    ws = workspace
    for body, mode in ((LAYER3, "layer3"), (LAYER2, "layer2"), (LAYER3, "layer3"), (LAYER2, "layer2")):
        ws.write(DX % {"body": body})
        ws.apply()
        [dx] = ws.list("direct_connect")
        assert dx.mode == mode
        state = ws.resources()["l2vpc_direct_connect.dx"]
        assert (state["gateway_ip"] is None) == (mode == "layer2") and (state["bgp"] is None) == (mode == "layer2")
        ws.assert_plan_empty()


def bgp(**fields: str) -> str:
    inner = ", ".join(f'{k} = "{v}"' for k, v in fields.items())
    return "  bgp = { customer_asn = 65010" + (f", {inner}" if inner else "") + " }"


def test_changing_the_peering_cidr_recomputes_the_assigned_addresses(workspace: Workspace) -> None:
    """Case 4: 169.254.200.0/30 → 169.254.201.0/30 kept the assigned customer_ip/provider_ip."""
    ws = workspace
    ws.write(DX % {"body": bgp(peering_cidr="169.254.200.0/30")})
    ws.apply()
    first = ws.resources()["l2vpc_direct_connect.dx"]["bgp"]
    assert (first["provider_ip"], first["customer_ip"]) == ("169.254.200.1", "169.254.200.2")
    ws.write(DX % {"body": bgp(peering_cidr="169.254.201.0/30")})
    updated = ws.apply()
    assert "# l2vpc_direct_connect.dx will be updated in-place" in updated.out
    after = ws.resources()["l2vpc_direct_connect.dx"]["bgp"]
    assert (after["provider_ip"], after["customer_ip"]) == ("169.254.201.1", "169.254.201.2")
    [dx] = ws.list("direct_connect")
    assert dx.bgp is not None and dx.bgp.peering_cidr == "169.254.201.0/30" and dx.bgp.customer_ip == "169.254.201.2"
    ws.assert_plan_empty()


def test_changing_one_peering_address_recomputes_the_other(workspace: Workspace) -> None:
    """Case 5: customer_ip .2 → .1 kept the assigned provider_ip .1 ("must differ from
    customer_ip"), though the same configuration creates fine; provider_ip the other way round."""
    ws = workspace
    net = "169.254.210.0/30"
    ws.write(DX % {"body": bgp(peering_cidr=net, customer_ip="169.254.210.2")})
    ws.apply()
    assert ws.resources()["l2vpc_direct_connect.dx"]["bgp"]["provider_ip"] == "169.254.210.1"
    ws.write(DX % {"body": bgp(peering_cidr=net, customer_ip="169.254.210.1")})
    ws.apply()
    state = ws.resources()["l2vpc_direct_connect.dx"]["bgp"]
    assert (state["customer_ip"], state["provider_ip"]) == ("169.254.210.1", "169.254.210.2")
    ws.assert_plan_empty()
    # The other way round: provider_ip written, customer_ip assigned.
    ws.write(DX % {"body": bgp(peering_cidr=net, provider_ip="169.254.210.2")})
    ws.apply()
    ws.assert_plan_empty()
    ws.write(DX % {"body": bgp(peering_cidr=net, provider_ip="169.254.210.1")})
    ws.apply()
    state = ws.resources()["l2vpc_direct_connect.dx"]["bgp"]
    assert (state["customer_ip"], state["provider_ip"]) == ("169.254.210.2", "169.254.210.1")
    ws.assert_plan_empty()
