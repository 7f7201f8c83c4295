"""`l2vpc graph`: the topology as DOT and SVG, coloured by status, narrowed to a VPC, no secrets."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from l2vpc.agent.local import LocalAgentPool
from l2vpc.cli import main as cli
from l2vpc.engine.api import Engine
from l2vpc.engine.store import open_store
from l2vpc.graph import GREEN, ORANGE, RED, Snapshot, to_dot

SNAP = Snapshot(
    hosts=[{"name": "h1", "role": "compute", "region": "r1", "status": "up"},
           {"name": "e1", "role": "edge", "region": "r1", "location": "nyc1", "status": "up"}],
    vpcs=[{"id": "vpc-a", "name": "apps", "cidr": "10.0.0.0/24", "vni": 4096, "mtu": 9000, "dhcp_host": "h1"},
          {"id": "vpc-b", "name": "db", "cidr": "10.1.0.0/24", "vni": 4097, "mtu": 1500, "dhcp_host": None}],
    attachments=[
        {"id": "att-1", "vpc_id": "vpc-a", "workload": "web", "host": "h1", "interface_name": "net1",
         "ip_mode": "static", "ip_address": "10.0.0.5/24", "status": "active"},
        {"id": "att-2", "vpc_id": "vpc-b", "workload": "default-cache", "workload_kind": "pod", "host": "h1",
         "interface_name": "net1", "ip_mode": "dhcp", "status": "pending"}],
    direct_connects=[{"id": "dx-1", "name": "onprem", "vpc_id": "vpc-a", "mode": "layer3", "location": "nyc1",
                      "bandwidth_mbps": 1000, "bgp": {"customer_asn": 65010}, "gateway_ip": "10.0.0.1",
                      "edge_host": "e1", "status": "down"}],
    vpns=[],
)


def test_dot_names_everything_and_colours_it_by_status() -> None:
    dot = to_dot(SNAP)
    for text in ("web", "default-cache", "apps", "10.0.0.0/24", "onprem", "AS 65010", "net1", "10.0.0.5/24",
                 "cluster_h1", "cluster_e1", "dhcp"):
        assert text in dot, text
    edge = next(line for line in dot.splitlines() if '"w:web" -> "vpc:vpc-a"' in line)
    assert GREEN in edge
    assert ORANGE in next(line for line in dot.splitlines() if '"w:default-cache" ->' in line)
    assert RED in next(line for line in dot.splitlines() if line.strip().startswith('"dx:dx-1" ['))
    assert 'shape=component' in dot and 'shape=box3d' in dot  # a Pod and a virtual server look apart


def test_narrowing_to_one_vpc() -> None:
    narrow = to_dot(SNAP.only_vpc("db"))
    assert "default-cache" in narrow and "apps" not in narrow and "onprem" not in narrow
    assert "cluster_e1" not in narrow
    with pytest.raises(ValueError, match=r"no VPC named 'nope'.*apps, db"):
        SNAP.only_vpc("nope")


def test_labels_with_quotes_stay_quoted() -> None:
    snap = Snapshot(vpcs=[{"id": "vpc-q", "name": 'a"b\\c', "mtu": 1500}])
    assert 'label="a\\"b\\\\c\\n' in to_dot(snap)


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz (./dev installs it)")
def test_the_command_draws_the_state_as_svg_without_secrets(tmp_path: Path, capsys: Any) -> None:
    state = tmp_path / "state.db"
    store = open_store(str(state))
    try:
        engine = Engine(store, LocalAgentPool())
        engine.register_host({"name": "h1", "region": "r1", "underlay_ip": "10.9.0.1"})
        engine.register_host({"name": "e1", "region": "r1", "underlay_ip": "10.9.0.9", "role": "edge",
                              "location": "nyc1", "public_cidr": "203.0.113.32/28"})
        vpc = engine.create("vpc", {"name": "apps", "region": "r1", "cidr": "10.0.0.0/24"})
        engine.create("attachment", {"vpc_id": vpc.id, "workload": "web", "host": "h1"})
        engine.create("vpn", {"name": "branch", "vpc_id": vpc.id, "peer_address": "198.51.100.7",
                              "remote_cidrs": ["192.168.0.0/24"], "pre_shared_key": "s3cret.key.1"})
        engine.converge()
    finally:
        store.close()
    assert cli(["graph", "--state", str(state)]) == 0
    svg = capsys.readouterr().out
    assert svg.startswith("<?xml") and "<svg" in svg
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    assert {"apps", "web", "branch"} <= set(texts)
    assert "s3cret" not in svg
    assert cli(["graph", "--state", str(state), "--vpc", "apps", "--format", "dot", "-o", str(tmp_path / "g.dot")]) == 0
    assert "web" in (tmp_path / "g.dot").read_text()
    assert cli(["graph", "--state", str(state), "--vpc", "nope"]) == 1
