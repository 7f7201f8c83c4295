"""`l2vpc_direct_connect` under the real Terraform: lifecycle, secrets kept out of output, import."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import Workspace, files_holding

pytestmark = pytest.mark.terraform

MD5 = "md5.Secret.4711"
SERVICE_KEY = "mp-svc-Key-0815"

CONFIG = """
resource "l2vpc_vpc" "a" {
  name   = "dx-a"
  region = "us-east"
  cidr   = "10.10.0.0/24"
}

resource "l2vpc_vpc" "b" {
  name   = "dx-b"
  region = "us-east"
  cidr   = "10.11.0.0/24"
}

resource "l2vpc_direct_connect" "routed" {
  name           = "routed"
  vpc_id         = %(routed_vpc)s
  location       = "nyc1"
  bandwidth_mbps = %(bandwidth)d
  bgp = {
    customer_asn = 65000 + length(l2vpc_vpc.a.id) # unknown (refined) inside a nested attribute
    md5_key      = "%(md5)s"
  }
}

resource "l2vpc_direct_connect" "flat" {
  name           = "flat"
  vpc_id         = l2vpc_vpc.a.id
  location       = "%(flat_location)s"
  bandwidth_mbps = 1000
  partner        = "megaport"
  service_key    = "%(service_key)s"
  mode           = "layer2"
  vlan           = 100
}
"""


def config(routed_vpc: str = "l2vpc_vpc.a.id", bandwidth: int = 1000, flat_location: str = "nyc1") -> str:
    return CONFIG % {"routed_vpc": routed_vpc, "bandwidth": bandwidth, "flat_location": flat_location,
                     "md5": MD5, "service_key": SERVICE_KEY}


def assert_no_secrets(text: str) -> None:
    assert MD5 not in text and SERVICE_KEY not in text


def test_direct_connect_create_update_replace_import_destroy(workspace: Workspace) -> None:
    ws = workspace
    ws.write(config())
    created = ws.apply()
    assert_no_secrets(created.out + created.err)
    assert "(sensitive value)" in created.out
    routed = ws.resources()["l2vpc_direct_connect.routed"]
    # Computed defaults: a gateway inside the VPC cidr, a peering /30 from 169.254.0.0/16.
    assert routed["gateway_ip"].startswith("10.10.0.")
    assert routed["bgp"]["peering_cidr"].startswith("169.254.") and routed["bgp"]["provider_asn"] == 64600
    assert routed["bgp"]["advertised_prefixes"] == ["10.10.0.0/24"]
    assert routed["bgp"]["customer_asn"] == 65000 + len(ws.resources()["l2vpc_vpc.a"]["id"])
    dxs = {d.name: d for d in ws.list("direct_connect")}
    assert dxs["routed"].edge_host == dxs["flat"].edge_host == "edge1"
    assert dxs["flat"].vlan == 100 and dxs["flat"].service_key is None  # reads return no secret
    assert ws.stored("direct_connect")["flat"].service_key == SERVICE_KEY
    # The engine's state (objects and the host reports) holds the secrets sealed only.
    assert files_holding(ws.root, MD5) == [] and files_holding(ws.root, SERVICE_KEY) == []
    key_file = Path(f"{ws.state_path}.key")  # what unseals them: private to the user
    assert key_file.stat().st_mode & 0o777 == 0o600
    ws.assert_plan_empty()

    # In place: bandwidth.
    ws.write(config(bandwidth=5000))
    updated = ws.apply()
    assert "# l2vpc_direct_connect.routed will be updated in-place" in updated.out
    assert "~ bandwidth_mbps = 1000 -> 5000" in updated.out
    assert "Resources: 0 added, 1 changed, 0 destroyed." in updated.out
    assert_no_secrets(updated.out + updated.err)
    assert {d.name: d for d in ws.list("direct_connect")}["routed"].bandwidth_mbps == 5000

    # Replaced: vpc_id of one, location of the other.
    ws.write(config(routed_vpc="l2vpc_vpc.b.id", bandwidth=5000, flat_location="ams1"))
    replaced = ws.apply()
    assert "# l2vpc_direct_connect.routed must be replaced" in replaced.out
    assert "# l2vpc_direct_connect.flat must be replaced" in replaced.out
    assert '~ location       = "nyc1" -> "ams1" # forces replacement' in replaced.out
    assert "Resources: 2 added, 0 changed, 2 destroyed." in replaced.out
    assert_no_secrets(replaced.out + replaced.err)
    dxs = {d.name: d for d in ws.list("direct_connect")}
    assert dxs["flat"].edge_host == "edge2" and dxs["routed"].gateway_ip.startswith("10.11.0.")
    # (No plan here: the import apply below must change nothing else.)

    # Import: by command and by block.
    with ws.engine() as engine:
        vpc_b = engine.vpc_by_name("dx-b")
        assert vpc_b is not None
        one = engine.create("direct_connect", {"name": "one", "vpc_id": vpc_b.id, "location": "nyc1",
                                               "bandwidth_mbps": 2000, "bgp": {"customer_asn": 65010}})
        two = engine.create("direct_connect", {"name": "two", "vpc_id": vpc_b.id, "location": "ams1",
                                               "bandwidth_mbps": 10000, "mode": "layer2"})
    base = config(routed_vpc="l2vpc_vpc.b.id", bandwidth=5000, flat_location="ams1") + """
resource "l2vpc_direct_connect" "one" {
  name           = "one"
  vpc_id         = l2vpc_vpc.b.id
  location       = "nyc1"
  bandwidth_mbps = 2000
  bgp            = { customer_asn = 65010 }
}
"""
    ws.write(base)
    ws.ok("import", "-input=false", "l2vpc_direct_connect.one", one.id)
    ws.write(base + f"""
import {{
  to = l2vpc_direct_connect.two
  id = "{two.id}"
}}

resource "l2vpc_direct_connect" "two" {{
  name           = "two"
  vpc_id         = l2vpc_vpc.b.id
  location       = "ams1"
  bandwidth_mbps = 10000
  mode           = "layer2"
}}
""")
    imported = ws.apply()
    assert "Plan: 1 to import, 0 to add, 0 to change, 0 to destroy." in imported.out
    ws.assert_plan_empty()

    destroyed = ws.ok("destroy", "-input=false", "-auto-approve")
    assert "Resources: 6 destroyed." in destroyed.out
    assert ws.list("direct_connect") == [] and ws.list("vpc") == []


WO_CONFIG = """
resource "l2vpc_vpc" "a" {
  name   = "dx-wo"
  region = "us-east"
  cidr   = "10.12.0.0/24"
}

resource "l2vpc_direct_connect" "routed" {
  name           = "routed"
  vpc_id         = l2vpc_vpc.a.id
  location       = "nyc1"
  bandwidth_mbps = 1000
  bgp = {
    customer_asn       = 65020
    md5_key_wo         = "%(md5)s"
    md5_key_wo_version = %(md5_version)d
  }
}

resource "l2vpc_direct_connect" "mp" {
  name                   = "mp"
  vpc_id                 = l2vpc_vpc.a.id
  location               = "nyc1"
  bandwidth_mbps         = 1000
  partner                = "megaport"
  service_key_wo         = "%(service_key)s"
  service_key_wo_version = 1
  mode                   = "layer2"
}
"""
MD5_WO_1, MD5_WO_2, SERVICE_KEY_WO = "md5.WriteOnly.1", "md5.WriteOnly.2", "mp-WriteOnly-Key-7"


def test_write_only_md5_and_service_keys_never_reach_the_state(workspace: Workspace) -> None:
    ws = workspace
    ws.write(WO_CONFIG % {"md5": MD5_WO_1, "md5_version": 1, "service_key": SERVICE_KEY_WO})
    created = ws.apply()
    assert "Resources: 3 added, 0 changed, 0 destroyed." in created.out
    for secret in (MD5_WO_1, SERVICE_KEY_WO):
        assert secret not in created.out + created.err
        assert secret not in ws.state_text()  # terraform.tfstate holds no secret
        assert files_holding(ws.root, secret) == []
    state = ws.resources()
    assert state["l2vpc_direct_connect.routed"]["bgp"]["md5_key"] is None
    assert state["l2vpc_direct_connect.routed"]["bgp"]["md5_key_wo_version"] == 1
    assert state["l2vpc_direct_connect.mp"]["service_key"] is None
    # The engine has them (it pushes them to the edge), its reads return none.
    stored = ws.stored("direct_connect")
    assert stored["routed"].bgp.md5_key == MD5_WO_1 and stored["mp"].service_key == SERVICE_KEY_WO
    read = {d.name: d for d in ws.list("direct_connect")}
    assert read["routed"].bgp.md5_key is None and read["mp"].service_key is None
    ws.assert_plan_empty()

    # A version bump re-keys in place.
    ws.write(WO_CONFIG % {"md5": MD5_WO_2, "md5_version": 2, "service_key": SERVICE_KEY_WO})
    rekeyed = ws.apply()
    assert "Resources: 0 added, 1 changed, 0 destroyed." in rekeyed.out
    assert "Warning: The BGP session re-keys" in rekeyed.out + rekeyed.err
    assert MD5_WO_2 not in rekeyed.out + rekeyed.err + ws.state_text()
    assert ws.stored("direct_connect")["routed"].bgp.md5_key == MD5_WO_2
    ws.assert_plan_empty()

    # Both forms at once: refused at plan, naming them.
    both = WO_CONFIG.replace('md5_key_wo         = "%(md5)s"', 'md5_key_wo = "%(md5)s"\n    md5_key = "x1"')
    ws.write(both % {"md5": MD5_WO_2, "md5_version": 2, "service_key": SERVICE_KEY_WO})
    refused = ws.fails("plan", "-input=false")
    assert "Conflicting attributes" in refused.out + refused.err
    assert "bgp.md5_key and bgp.md5_key_wo cannot be set together" in " ".join((refused.out + refused.err).split())
