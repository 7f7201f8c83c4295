"""The lab's edges and premises site as root: cross-connect, internet, customer router, cleanup."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from l2vpc._proto import agent_pb2 as pb
from l2vpc.agent.drivers.linux import frr
from l2vpc.agentapi import wire
from l2vpc.agentapi.channel import open_channel, stub
from l2vpc.engine.agent_client import engine_tls
from l2vpc.engine.api import Engine
from l2vpc.engine.store import open_store
from l2vpc.hostconfig import BgpPeer, EdgeRouter, HostConfig, Port, Route, Segment
from l2vpc.hostconfig.names import edge_tag, handoff_veth
from l2vpc.lab import premises_vpn
from l2vpc.lab.lab import Lab, LabError
from l2vpc.lab.netns import ip
from l2vpc.lab.state import LabState
from l2vpc.lab.topology import LabTopology
from l2vpc.testing.lab import leftovers, run, status_json

pytestmark = pytest.mark.root

DX = EdgeRouter("dx-lab", 500, "layer3", "xc0", 1000, gateway_ip="10.50.0.1/24",
                bgp=BgpPeer(64512, 65010, "169.254.20.0/31", "169.254.20.1", ("10.50.0.0/24",)))


def everything_left(st: LabState, root: Path) -> list[str]:
    out = leftovers(st, root)
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if st.prefix.encode() in cmd:
                text = cmd.replace(b"\0", b" ").decode(errors="replace")
                out.append(f"process {pid} {text}")
    out += [f"FRR run dir {p}" for p in frr.RUN_BASE.glob(f"{st.prefix}*")]
    return out


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
            assert not everything_left(st, tmp_path)


def test_premises_site_direct_connect_and_down(lab: tuple[Lab, str], tmp_path: Path, capsys: Any) -> None:
    the_lab, state = lab
    assert run("lab", "up", "--embedded", "--hosts", "1", "--edges", "1", "--premises", "--premises-psk", "lab.psk.1234",
               "--state", state) == 0
    err = capsys.readouterr().err
    assert "premises: " in err and "VPN gateway 203.0.113.10" in err
    st = the_lab.load()
    assert st is not None and st.premises is not None and st.bandwidth_scale == 0.1

    store = open_store(state)
    try:
        edge1 = {h.name: h for h in Engine(store).hosts()}["edge1"]
    finally:
        store.close()
    assert (edge1.handoff, edge1.outside, edge1.public_cidr, edge1.public_gateway) == (
        "xc0", "out0", "203.0.113.32/28", "203.0.113.33")

    def sh(name: str, *cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(the_lab.exec_argv(name, list(cmd)), capture_output=True, text=True, timeout=20)

    assert sh("premises-host", "ping", "-c", "1", "-W", "2", "192.168.50.1").returncode == 0
    assert sh("premises-router", "ping", "-c", "1", "-W", "2", "203.0.113.1").returncode == 0  # the internet
    assert premises_vpn.status(Path(st.dir) / "premises-vpn") == []  # the responder runs, no SA yet
    edge_ns = st.host("edge1").netns  # type: ignore[union-attr]
    assert edge_ns is not None and "xc0" in ip("-o", "link", "show", netns=edge_ns)

    # Drive edge1's agent directly (as the engine will): a direct connect and a workload.
    rec = st.host("edge1")
    assert rec is not None
    port = Port("p-lab", 500, "w1", "net1", "02:00:00:00:50:01", 1500, ip_mode="static",
                ip_address="10.50.0.11/24", routes=(Route("192.168.50.0/24", "10.50.0.1"),))
    cfg = HostConfig("edge1", rec.underlay_ip, 1, (Segment(500, "vpc-lab", 1500, ()),), (port,), edge_routers=(DX,))
    with open_channel(rec.address, "edge1", engine_tls(the_lab.pki_dir)) as channel:
        reply = stub(channel).Push(wire.push_request(cfg), timeout=30)
    assert reply.status == pb.PushResponse.CONVERGED, reply.failures

    assert run("lab", "premises", "sync", "--state", state) == 0
    # The router starts with the default customer peering address; sync swaps in this one's.
    assert "edge1: xc1 peering 169.254.20.1/31 (-169.254.10.2/30 +169.254.20.1/31)" in capsys.readouterr().out
    deadline = time.monotonic() + 10
    while True:
        items = {i["id"]: i for h in status_json(capsys, state)["hosts"] for i in h["items"]}
        dx = items.get("dx-lab", {})
        if (dx.get("state") == "established" and dx.get("learned")) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert items["dx-lab"]["state"] == "established", items
    assert items["dx-lab"]["learned"] == ["192.168.50.0/24"] and items["dx-lab"]["kind"] == "direct connect (layer3)"
    assert any(sh("w1", "ping", "-c", "1", "-W", "1", "192.168.50.10").returncode == 0 for _ in range(10))
    # The lab's agents shape at a tenth: 1000 Mbps is 100 Mbit/s.
    shaper = json.loads(subprocess.run(["tc", "-n", edge_ns, "-j", "qdisc", "show", "dev", handoff_veth(edge_tag(DX.id))],
                                       capture_output=True, text=True, check=True).stdout)
    assert [q["options"]["rate"] for q in shaper if q["kind"] == "tbf"] == [12_500_000]
    assert sync_is_idempotent(the_lab)

    assert run("lab", "down", "--state", state) == 0
    assert the_lab.load() is None
    assert not everything_left(st, tmp_path)


def sync_is_idempotent(the_lab: Lab) -> bool:
    return the_lab.sync_premises() == ["edge1: xc1 peering 169.254.20.1/31"]


def test_premises_needs_the_linux_driver_and_valid_flags(lab: tuple[Lab, str]) -> None:
    the_lab, state = lab
    from l2vpc.lab.premises import PremisesConfig

    with pytest.raises(LabError, match="--premises needs the linux driver"):
        the_lab.up(LabTopology.build(hosts=1, edges=1), "memory", premises=PremisesConfig())
    with pytest.raises(LabError, match=r"--premises-lan: '10\.0\.0\.0/33' is not an IPv4 network"):
        the_lab.up(LabTopology.build(hosts=1, edges=1), "linux", premises=PremisesConfig(lan="10.0.0.0/33"))
    with pytest.raises(LabError, match="--premises-asn: 23456"):
        the_lab.up(LabTopology.build(hosts=1, edges=1), "linux", premises=PremisesConfig(asn=23456))
    assert the_lab.load() is None
    assert run("lab", "up", "--hosts", "1", "--premises-asn", "65001", "--state", state) == 1
