"""`l2vpc_attachment` under the real Terraform: lifecycle, replacement, import, the 10-VPC limit."""

from __future__ import annotations

import pytest

from .conftest import Workspace

pytestmark = pytest.mark.terraform

NETWORKS = """
resource "l2vpc_vpc" "a" {
  name   = "net-a"
  region = "us-east"
  mtu    = 9000
  cidr   = "10.1.0.0/24"
  dhcp   = { range_start = "10.1.0.100", range_end = "10.1.0.200" }
}

resource "l2vpc_vpc" "b" {
  name   = "net-b"
  region = "us-east"
  cidr   = "10.2.0.0/24"
}
"""

ATTACHMENTS = """
resource "l2vpc_attachment" "static" {
  vpc_id     = %(static_vpc)s
  workload   = "vm1"
  ip_mode    = "static"
  ip_address = "%(static_ip)s"
}

resource "l2vpc_attachment" "dhcp" {
  vpc_id        = l2vpc_vpc.a.id
  workload      = "%(dhcp_workload)s"
  workload_kind = "pod"
  ip_mode       = "dhcp"
  ip_address    = "10.1.0.20/24"
}

resource "l2vpc_attachment" "mac" {
  vpc_id      = l2vpc_vpc.b.id
  workload    = "vm2"
  mac_address = "%(mac)s"
}
"""


def config(static_vpc: str = "l2vpc_vpc.a.id", static_ip: str = "10.1.0.5/24", dhcp_workload: str = "pod1",
           mac: str = "02:AA:00:00:00:01") -> str:
    return NETWORKS + ATTACHMENTS % {"static_vpc": static_vpc, "static_ip": static_ip,
                                     "dhcp_workload": dhcp_workload, "mac": mac}


def ports(ws: Workspace) -> dict[str, dict[str, object]]:
    """Attachment id → the port its host reports running."""
    with ws.engine() as engine, engine.store.transaction() as tx:
        reports = tx.host_reports()
    return {p["id"]: {**p, "host": h} for h, r in reports.items() for p in r.config.get("ports", ())}


def test_attachment_create_update_replace_import_destroy(workspace: Workspace) -> None:
    ws = workspace
    ws.write(config())
    created = ws.apply()
    assert "Resources: 5 added, 0 changed, 0 destroyed." in created.out
    atts = {a.id: a for a in ws.list("attachment")}
    state = ws.resources()
    static, dhcp, mac = (state[f"l2vpc_attachment.{n}"] for n in ("static", "dhcp", "mac"))
    assert static["interface_name"] == mac["interface_name"] == "net1"
    assert static["host"] in ("host1", "host2") and static["mtu"] == 9000 and mac["mtu"] == 1500
    assert mac["mac_address"] == "02:AA:00:00:00:01"  # the user's spelling is kept
    assert atts[mac["id"]].mac_address == "02:aa:00:00:00:01"
    # A Pod's attachment waits for its Pod (a CNI ADD on its host): placed and reported by the
    # host, nothing realised yet, so pending (tests/pods covers the ADD that makes it active).
    assert dhcp["workload_kind"] == "pod" and dhcp["status"] == "pending"
    running = ports(ws)
    assert set(running) == set(atts) and running[dhcp["id"]]["sandbox"] == ""
    assert running[static["id"]]["ip_address"] == "10.1.0.5/24" and running[static["id"]]["mtu"] == 9000
    ws.assert_plan_empty()

    # In place: the static address.
    ws.write(config(static_ip="10.1.0.6/24"))
    updated = ws.apply()
    assert "# l2vpc_attachment.static will be updated in-place" in updated.out
    assert "Resources: 0 added, 1 changed, 0 destroyed." in updated.out
    assert ports(ws)[static["id"]]["ip_address"] == "10.1.0.6/24"
    assert ws.resources()["l2vpc_attachment.static"]["interface_name"] == static["interface_name"]

    # Replaced: vpc_id, workload, mac_address (one each).
    ws.write(config(static_vpc="l2vpc_vpc.b.id", static_ip="10.2.0.6/24", dhcp_workload="pod2", mac="02:aa:00:00:00:02"))
    replaced = ws.apply()
    for name in ("static", "dhcp", "mac"):
        assert f"# l2vpc_attachment.{name} must be replaced" in replaced.out
    assert "# forces replacement" in replaced.out
    assert "Resources: 3 added, 0 changed, 3 destroyed." in replaced.out
    after = ws.list("attachment")
    assert len(after) == 3 and not {a.id for a in after} & set(atts)
    assert sorted(a.workload for a in after) == ["pod2", "vm1", "vm2"]
    assert set(ports(ws)) == {a.id for a in after}
    # (No plan here: the import apply below must change nothing else.)

    # Import: by command and by block, then nothing to change.
    with ws.engine() as engine:
        vpc_a = engine.vpc_by_name("net-a")
        assert vpc_a is not None
        one = engine.create("attachment", {"vpc_id": vpc_a.id, "workload": "vm9", "ip_mode": "static",
                                           "ip_address": "10.1.0.9/24"})
        two = engine.create("attachment", {"vpc_id": vpc_a.id, "workload": "pod9", "workload_kind": "pod",
                                           "mac_address": "02:bb:00:00:00:09"})
        engine.converge()
    base = config(static_vpc="l2vpc_vpc.b.id", static_ip="10.2.0.6/24", dhcp_workload="pod2", mac="02:aa:00:00:00:02")
    base += """
resource "l2vpc_attachment" "one" {
  vpc_id     = l2vpc_vpc.a.id
  workload   = "vm9"
  ip_mode    = "static"
  ip_address = "10.1.0.9/24"
}
"""
    ws.write(base)
    ws.ok("import", "-input=false", "l2vpc_attachment.one", one.id)
    ws.write(base + f"""
import {{
  to = l2vpc_attachment.two
  id = "{two.id}"
}}

resource "l2vpc_attachment" "two" {{
  vpc_id        = l2vpc_vpc.a.id
  workload      = "pod9"
  workload_kind = "pod"
  mac_address   = "02:bb:00:00:00:09"
}}
""")
    imported = ws.apply()
    assert "Plan: 1 to import, 0 to add, 0 to change, 0 to destroy." in imported.out
    assert ws.resources()["l2vpc_attachment.two"]["interface_name"] == "net1"
    ws.assert_plan_empty()

    ws.ok("destroy", "-input=false", "-auto-approve")
    assert ws.list("attachment") == [] and ws.list("vpc") == []
    assert ports(ws) == {}


ELEVEN = """
resource "l2vpc_vpc" "v" {
  count  = 11
  name   = "v${count.index}"
  region = "us-east"
  cidr   = "10.${count.index}.0.0/24"
}

resource "l2vpc_attachment" "nic" {
  count      = %d
  vpc_id     = l2vpc_vpc.v[count.index].id
  workload   = "big"
  ip_mode    = "static"
  ip_address = "10.${count.index}.0.5/24"
}
"""


def test_the_eleventh_attachment_of_a_workload_fails_and_changes_nothing(workspace: Workspace) -> None:
    ws = workspace
    ws.write(ELEVEN % 10)
    ws.apply()
    names = sorted(a.interface_name for a in ws.list("attachment"))
    assert names == sorted(f"net{i}" for i in range(1, 11))

    ws.write(ELEVEN % 11)
    failed = ws.fails("apply", "-input=false", "-auto-approve")
    assert "workload 'big' would attach 11 VPCs; at most 10 are allowed" in failed.text, str(failed)
    assert "l2vpc_attachment.nic[10]" in failed.text
    atts = ws.list("attachment")
    assert len(atts) == 10 and {a.workload for a in atts} == {"big"}
    assert len(ws.resources()) == 21  # the 11th never reached the state
