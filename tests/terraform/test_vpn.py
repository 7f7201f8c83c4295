"""`l2vpc_vpn` under the real Terraform: plain and write-only keys, re-keying, replacement, import."""

from __future__ import annotations

import re

import pytest

from .conftest import Result, Workspace, files_holding

pytestmark = pytest.mark.terraform

PSK = "Plain.Key_4711"
WO_1 = "WriteOnly.Key_1"
WO_2 = "WriteOnly.Key_2"

CONFIG = """
resource "l2vpc_vpc" "a" {
  name   = "vpn-a"
  region = "us-east"
  cidr   = "10.20.0.0/24"
}

resource "l2vpc_vpc" "b" {
  name   = "vpn-b"
  region = "us-east"
  cidr   = "10.21.0.0/24"
}

resource "l2vpc_vpn" "plain" {
  name           = "plain"
  vpc_id         = %(plain_vpc)s
  peer_address   = "203.0.113.10"
  peer_id        = "peer-${l2vpc_vpc.a.id}"
  pre_shared_key = "%(psk)s"
  remote_cidrs   = %(remote)s
  %(ike)s
}

resource "l2vpc_vpn" "wo" {
  name                      = "wo"
  vpc_id                    = l2vpc_vpc.a.id
  peer_address              = "203.0.113.20"
  pre_shared_key_wo         = "%(wo)s"
  pre_shared_key_wo_version = %(version)d
  remote_cidrs              = ["192.168.20.0/24"]
}
"""


def config(plain_vpc: str = "l2vpc_vpc.a.id", remote: str = '["192.168.10.0/24"]', ike: str = "",
           wo: str = WO_1, version: int = 1) -> str:
    return CONFIG % {"plain_vpc": plain_vpc, "psk": PSK, "remote": remote, "ike": ike, "wo": wo, "version": version}


def assert_keys_hidden(result: Result) -> None:
    for key in (PSK, WO_1, WO_2):
        assert key not in result.out + result.err


def changed_attributes(result: Result) -> set[str]:
    """Attribute names on the +/-/~ lines of a plan: resource headers and computed values that an
    update makes unknown left out."""
    names = set()
    for line in result.out.splitlines():
        m = re.match(r"^\s+[-+~] (\w+)\s+=", line)
        if m and not line.endswith("(known after apply)"):
            names.add(m.group(1))
    return names


def test_vpn_create_rekey_update_replace_import_destroy(workspace: Workspace) -> None:
    ws = workspace
    ws.write(config())
    created = ws.apply()
    assert_keys_hidden(created)
    assert "Resources: 4 added, 0 changed, 0 destroyed." in created.out
    state = ws.resources()
    assert state["l2vpc_vpn.plain"]["pre_shared_key"] == PSK  # sensitive, kept in Terraform's state
    assert state["l2vpc_vpn.wo"]["pre_shared_key"] is None and state["l2vpc_vpn.wo"]["pre_shared_key_wo"] is None
    assert WO_1 not in ws.state_text()  # write-only: never stored
    assert state["l2vpc_vpn.plain"]["local_cidrs"] == ["10.20.0.0/24"]  # default: the VPC cidr
    assert state["l2vpc_vpn.plain"]["gateway_ip"].startswith("10.20.0.")
    assert state["l2vpc_vpn.plain"]["ike"] == {"encryption": "aes256", "integrity": "sha256", "dh_group": "modp2048",
                                               "lifetime": 28800}
    assert {v.name: v.pre_shared_key for v in ws.list("vpn")} == {"plain": None, "wo": None}  # reads: no secret
    vpns = ws.stored("vpn")
    assert vpns["plain"].pre_shared_key == PSK and vpns["wo"].pre_shared_key == WO_1
    assert vpns["plain"].peer_id == f"peer-{state['l2vpc_vpc.a']['id']}"
    assert vpns["plain"].vpn_host in ("edge1", "edge2")
    for key in (PSK, WO_1):
        assert files_holding(ws.root, key) == []  # sealed in the engine's state and host reports
    ws.assert_plan_empty()

    # In place: remote_cidrs and ike of one; a new write-only key (version bump) for the other.
    ike = 'ike = { encryption = "aes128gcm16", lifetime = 3600 }'
    ws.write(config(remote='["192.168.10.0/24", "192.168.11.0/24"]', ike=ike, wo=WO_2, version=2))
    updated = ws.apply()  # prints the plan and its warnings first
    assert "# l2vpc_vpn.plain will be updated in-place" in updated.out
    assert "# l2vpc_vpn.wo will be updated in-place" in updated.out
    assert "~ pre_shared_key_wo_version = 1 -> 2" in updated.out
    assert "Resources: 0 added, 2 changed, 0 destroyed." in updated.out
    assert "Warning: The VPN re-keys" in updated.out + updated.err
    assert_keys_hidden(updated)
    vpns = {v.name: v for v in ws.list("vpn")}
    assert vpns["plain"].remote_cidrs == ("192.168.10.0/24", "192.168.11.0/24")
    assert (vpns["plain"].ike.encryption, vpns["plain"].ike.lifetime, vpns["plain"].ike.integrity) == ("aes128gcm16", 3600, "sha256")
    assert ws.stored("vpn")["wo"].pre_shared_key == WO_2
    assert WO_2 not in ws.state_text() and ws.resources()["l2vpc_vpn.wo"]["pre_shared_key_wo_version"] == 2
    # (No plan here: the next apply's exact counts would show any leftover change.)

    # Replaced: vpc_id.
    ws.write(config(plain_vpc="l2vpc_vpc.b.id", remote='["192.168.10.0/24", "192.168.11.0/24"]', ike=ike,
                    wo=WO_2, version=2))
    replaced = ws.apply()
    assert "# l2vpc_vpn.plain must be replaced" in replaced.out
    assert "Resources: 1 added, 0 changed, 1 destroyed." in replaced.out
    assert_keys_hidden(replaced)
    assert {v.name: v for v in ws.list("vpn")}["plain"].local_cidrs == ("10.21.0.0/24",)
    ws.assert_plan_empty()

    # Import. The key is deliberately not read back, so the only diffs allowed are the key's.
    with ws.engine() as engine:
        vpc_b = engine.vpc_by_name("vpn-b")
        assert vpc_b is not None
        one = engine.create("vpn", {"name": "one", "vpc_id": vpc_b.id, "peer_address": "198.51.100.1",
                                    "pre_shared_key": PSK, "remote_cidrs": ["172.16.1.0/24"]})
        two = engine.create("vpn", {"name": "two", "vpc_id": vpc_b.id, "peer_address": "198.51.100.2",
                                    "pre_shared_key": WO_1, "remote_cidrs": ["172.16.2.0/24"]})
    base = config(plain_vpc="l2vpc_vpc.b.id", remote='["192.168.10.0/24", "192.168.11.0/24"]', ike=ike,
                  wo=WO_2, version=2) + f"""
resource "l2vpc_vpn" "one" {{
  name           = "one"
  vpc_id         = l2vpc_vpc.b.id
  peer_address   = "198.51.100.1"
  pre_shared_key = "{PSK}"
  remote_cidrs   = ["172.16.1.0/24"]
}}
"""
    ws.write(base)
    assert_keys_hidden(ws.ok("import", "-input=false", "l2vpc_vpn.one", one.id))
    ws.write(base + f"""
import {{
  to = l2vpc_vpn.two
  id = "{two.id}"
}}

resource "l2vpc_vpn" "two" {{
  name                      = "two"
  vpc_id                    = l2vpc_vpc.b.id
  peer_address              = "198.51.100.2"
  pre_shared_key_wo         = "{WO_1}"
  pre_shared_key_wo_version = 1
  remote_cidrs              = ["172.16.2.0/24"]
}}
""")
    planned = ws.plan()
    assert_keys_hidden(planned)
    assert "Plan: 1 to import, 0 to add" in planned.out
    assert changed_attributes(planned) <= {"pre_shared_key", "pre_shared_key_wo_version"}, planned.out
    imported = ws.apply()
    assert_keys_hidden(imported)
    assert WO_1 not in ws.state_text()
    ws.assert_plan_empty()
    assert {n: v.pre_shared_key for n, v in ws.stored("vpn").items()} == {"plain": PSK, "wo": WO_2, "one": PSK,
                                                                          "two": WO_1}

    ws.ok("destroy", "-input=false", "-auto-approve")
    assert ws.list("vpn") == [] and ws.list("vpc") == []
