"""Issue 18, case 6, through Terraform on a lab of real namespaces (root): a VPC with MTU 9000 and
DHCP used to leave the DHCP host's bridge at 1500 (the DHCP server's veth joined it at 1500), so
`l2vpc plan` showed `~ segment (changed: mtu)` after every apply.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from l2vpc.embedded import open_engine
from l2vpc.lab.lab import Lab
from l2vpc.lab.topology import LabTopology
from l2vpc.testing.terraform import TerraformDir

pytestmark = [pytest.mark.terraform, pytest.mark.root]

CONFIG = """
resource "l2vpc_vpc" "jumbo" {
  name   = "jumbo"
  region = "us-east"
  mtu    = 9000
  cidr   = "10.90.0.0/24"
  dhcp   = { range_start = "10.90.0.100", range_end = "10.90.0.150" }
}

resource "l2vpc_attachment" "w" {
  for_each = { w1 = "host1", w2 = "host2" }
  vpc_id   = l2vpc_vpc.jumbo.id
  workload = each.key
  host     = each.value
  ip_mode  = "dhcp"
}
"""


class LabDir(TerraformDir):
    def __init__(self, directory: Path, state: Path) -> None:
        super().__init__(directory)
        self.state = state

    def header(self) -> str:
        return (
            'terraform {\n  required_providers {\n    l2vpc = { source = "l2vpc/l2vpc" }\n  }\n}\n\n'
            f'provider "l2vpc" {{\n  state_path = "{self.state}"\n}}\n'
        )


def test_a_jumbo_vpc_with_dhcp_is_converged_after_apply(tmp_path: Path, launcher_dir: Path) -> None:
    state = tmp_path / "lab" / "state.db"
    lab = Lab(str(state))
    lab.up(LabTopology.build(2, ["us-east"]), driver="linux")
    ws = LabDir(tmp_path / "work", state)
    ws.dir.mkdir()
    try:
        ws.write(CONFIG)
        ws.apply()
        engine = open_engine(str(state))
        try:
            engine.refresh()  # what the hosts run now, as `l2vpc plan` compares
            plan = engine.plan()
            assert plan.is_empty, plan.changes()
            [vpc] = engine.list("vpc")
            segments = {s.vni: s.mtu for s in engine.actual_configs()[vpc.dhcp_host].segments}
            assert segments == {vpc.vni: 9000}, segments
        finally:
            engine.agents.close()
            engine.store.close()
        # Every device on the VPC's bridge, on every host, the DHCP server's veth too, has its MTU.
        for host in lab.require().hosts:
            assert host.netns is not None
            out = subprocess.run(["ip", "-n", host.netns, "-o", "link", "show", "master", f"l2b{vpc.vni}"],
                                 capture_output=True, text=True, check=True).stdout
            mtus = {m.group(1): int(m.group(2)) for m in re.finditer(r"^\d+: ([^:@]+)\S*: .* mtu (\d+) ", out, re.M)}
            assert len(mtus) >= 2 and set(mtus.values()) == {9000}, (host.name, mtus)
        engine = open_engine(str(state))
        try:
            engine.refresh()
            assert engine.plan().is_empty
        finally:
            engine.agents.close()
            engine.store.close()
        ws.assert_plan_empty()
        ws.ok("destroy", "-input=false", "-auto-approve")
    finally:
        lab.down()
