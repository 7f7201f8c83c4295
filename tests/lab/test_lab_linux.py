"""End to end as root: lab up, `l2vpc apply` drives the real agents, lab check, lab down."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from l2vpc.lab.lab import Lab
from l2vpc.lab.netns import ip
from l2vpc.testing.lab import leftovers, run, topology_file

pytestmark = pytest.mark.root

DOC = {
    "vpcs": [
        {"name": "storage", "region": "us-east", "mtu": 9000, "cidr": "10.10.0.0/24"},
        {"name": "apps", "region": "us-east", "cidr": "10.20.0.0/24",
         "dhcp": {"range_start": "10.20.0.100", "range_end": "10.20.0.200", "gateway": "10.20.0.1"}},
    ],
    "attachments": [
        {"vpc": "storage", "workload": "db1", "host": "host1", "ip_mode": "static", "ip_address": "10.10.0.11/24"},
        {"vpc": "storage", "workload": "db2", "host": "host2", "ip_mode": "static", "ip_address": "10.10.0.12/24"},
        {"vpc": "apps", "workload": "db1", "ip_mode": "dhcp"},
        {"vpc": "apps", "workload": "web1", "host": "host3", "ip_mode": "dhcp", "ip_address": "10.20.0.50/24"},
        {"vpc": "apps", "workload": "web2", "host": "host2", "ip_mode": "dhcp"},
    ],
}


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[Lab, str]]:
    state = str(tmp_path / ".l2vpc" / "state.db")
    the_lab = Lab(state)
    try:
        yield the_lab, state
    finally:
        st = the_lab.load()
        the_lab.down()
        if st is not None:
            assert not leftovers(st, tmp_path)


def test_lab_apply_check_exec_down(lab: tuple[Lab, str], tmp_path: Path, capsys: Any) -> None:
    the_lab, state = lab
    assert run("lab", "up", "--embedded", "--hosts", "3", "--state", state) == 0
    st = the_lab.load()
    assert st is not None and st.driver == "linux"
    assert ip("-o", "link", "show", "br0", netns=st.switch).count("mtu 9100") == 1

    topo = topology_file(tmp_path / "topo.yaml", st, DOC)
    capsys.readouterr()
    assert run("apply", "-f", str(topo), "--state", state, "--agents", "grpc") == 0
    out = capsys.readouterr().out
    assert re.search(r"host host1: \d+ changes, ok", out) and "Apply complete." in out

    assert run("lab", "check", "--state", state) == 0
    out = capsys.readouterr().out
    assert "vpc apps: 3 interfaces (3 addressed), 6/6 pairs answer ping" in out
    assert "vpc storage: 2 interfaces (2 addressed), 2/2 pairs answer ping" in out
    assert re.search(r"isolation: \d+ probes between 2 VPCs, 0 crossed", out)

    assert run("lab", "status", "--state", state) == 0
    out = capsys.readouterr().out
    assert re.search(r"web1\s+net1\s+host3\s+apps\s+10\.20\.0\.50/24\s+active", out)

    # exec runs inside the workload; a 9000-byte VPC carries 8972-byte pings unfragmented.
    argv = the_lab.exec_argv("db1", ["ping", "-c", "1", "-W", "2", "-M", "do", "-s", "8972", "10.10.0.12"])
    assert subprocess.run(argv, capture_output=True, timeout=10).returncode == 0
    cmd = [sys.executable, "-m", "l2vpc.cli", "lab", "exec", "web1", "--state", state, "--",
           "ip", "-4", "-o", "addr", "show", "net1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "10.20.0.50/24" in out.stdout, out  # its DHCP reservation
    cmd[-6:] = ["sh", "-c", "exit 7"]
    assert subprocess.run(cmd, capture_output=True, timeout=30).returncode == 7  # the command's status

    # The check can fail: a cable between the two VPCs' bridges on host1 is a leak.
    host1 = st.hosts[0].netns
    assert host1 is not None
    bridges = re.findall(r"^\d+: (l2b\d+):", ip("-o", "link", "show", "type", "bridge", netns=host1), re.M)
    assert len(bridges) == 2
    ip("link", "add", "tleak0", "type", "veth", "peer", "name", "tleak1", netns=host1)
    try:
        ip("link", "set", "tleak0", "master", bridges[0], "up", netns=host1)
        ip("link", "set", "tleak1", "master", bridges[1], "up", netns=host1)
        assert run("lab", "check", "--state", state, "--timeout", "2") == 1
        out = capsys.readouterr().out
        assert re.search(r"FAIL isolation: broadcast from db2\.net1 \(vpc storage\) reached web\d\.net1 \(vpc apps\)", out)
        assert "check FAILED" in out
    finally:
        ip("link", "del", "tleak0", netns=host1)

    assert run("lab", "down", "--state", state) == 0
    assert the_lab.load() is None
    assert not leftovers(st, tmp_path)
    assert not (Path(state).parent / "lab").exists()
