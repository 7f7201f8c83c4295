"""The lab with the memory driver (no root): real agent processes, TLS, registration, apply, down."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from l2vpc.engine.api import Engine
from l2vpc.engine.store import open_store
from l2vpc.lab.lab import Lab, LabError
from l2vpc.lab.state import LabState
from l2vpc.lab.topology import LabTopology, TopologyError
from l2vpc.testing.lab import leftovers, run, status_json, topology_file

DOC = {
    "vpcs": [{"name": "apps", "region": "us-east", "cidr": "10.20.0.0/24"}],
    "attachments": [
        {"vpc": "apps", "workload": "web1", "host": "host1", "ip_mode": "static", "ip_address": "10.20.0.11/24"},
        {"vpc": "apps", "workload": "web2", "host": "host2", "ip_mode": "static", "ip_address": "10.20.0.12/24"},
    ],
}


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[Lab, str]]:
    state = str(tmp_path / ".l2vpc" / "state.db")
    lab = Lab(state)
    try:
        yield lab, state
    finally:
        st = lab.load()
        lab.down()
        if st is not None:
            assert not leftovers(st, tmp_path)


def test_topology_value() -> None:
    topo = LabTopology.build(hosts=3, regions=["us-east", "eu-west"], edges=2, locations=["nyc1"])
    assert [(h.name, h.region, h.role, h.underlay_ip, h.location) for h in topo.hosts] == [
        ("host1", "us-east", "compute", "10.200.0.1", None),
        ("host2", "eu-west", "compute", "10.200.0.2", None),
        ("host3", "us-east", "compute", "10.200.0.3", None),
        ("edge1", "us-east", "edge", "10.200.1.1", "nyc1"),
        ("edge2", "eu-west", "edge", "10.200.1.2", "nyc1"),
    ]
    with pytest.raises(TopologyError, match=r"--hosts: 0 is outside 1\.\.250"):
        LabTopology.build(hosts=0)
    with pytest.raises(TopologyError, match="--regions: 'US' must be"):
        LabTopology.build(regions=["US"])


def test_memory_lab_up_apply_check_down(lab: tuple[Lab, str], tmp_path: Path, capsys: Any) -> None:
    the_lab, state = lab
    assert run("lab", "up", "--embedded", "--hosts", "2", "--edges", "1", "--driver", "memory", "--state", state) == 0
    err = capsys.readouterr().err
    st = the_lab.load()
    assert st is not None and st.driver == "memory" and [h.name for h in st.hosts] == ["host1", "host2", "edge1"]

    # Registered through the engine, with the agents' addresses; TLS keys private.
    store = open_store(state)
    try:
        hosts = {h.name: h for h in Engine(store).hosts()}
    finally:
        store.close()
    assert hosts["edge1"].role == "edge" and hosts["edge1"].location == "nyc1"
    assert hosts["host1"].agent_address == st.hosts[0].address
    pki = Path(state).parent / "pki"
    for key in ("ca.key", "engine.key", "host1.key"):
        assert (pki / key).stat().st_mode & 0o077 == 0
    assert "registered host1, host2, edge1" in err

    # A second lab on the same state is refused; nothing is changed.
    with pytest.raises(LabError, match="already up"):
        the_lab.up(LabTopology.build(hosts=1), "memory")

    topo = topology_file(tmp_path / "topo.yaml", st, DOC)
    assert run("apply", "-f", str(topo), "--state", state, "--agents", "grpc") == 0
    status = status_json(capsys, state)
    assert {(w["workload"], w["host"], w["realized"]) for w in status["workloads"]} == {
        ("web1", "host1", True), ("web2", "host2", True)}
    assert {h["name"]: len(h["ports"]) for h in status["hosts"]} == {"host1": 1, "host2": 1, "edge1": 0}

    assert run("lab", "check", "--state", state) == 0
    assert "check passed: 2 attachments" in capsys.readouterr().out

    with pytest.raises(LabError, match="memory driver: workloads have no namespaces"):
        the_lab.exec_argv("web1", ["true"])

    # An agent that died is a failed check, named.
    host2 = st.hosts[1]
    assert host2.pid is not None
    os.kill(host2.pid, 9)
    assert run("lab", "check", "--state", state) == 1
    assert "FAIL web2.net1: agent of host2: unavailable" in capsys.readouterr().out

    assert run("lab", "down", "--state", state) == 0
    err = capsys.readouterr().err
    assert "host1 stays registered: it still carries attachments" in err
    assert "unregistered 1 of 3 hosts" in err  # edge1 had nothing on it
    assert the_lab.load() is None
    assert not (Path(state).parent / "lab").exists()
    assert not pki.exists()  # the lab created the CA: all of it goes
    assert not leftovers(st, tmp_path)
    store = open_store(state)
    try:
        assert [h.name for h in Engine(store).hosts()] == ["host1", "host2"]
        with store.transaction() as tx:
            assert tx.host_reports() == {}  # nothing runs there any more
    finally:
        store.close()

    # A new lab under the same state runs what the state holds for its hosts straight away.
    assert run("lab", "up", "--embedded", "--hosts", "2", "--driver", "memory", "--state", state) == 0
    assert "converging what the state already holds" in capsys.readouterr().err
    assert run("lab", "check", "--state", state) == 0


def test_failed_up_removes_only_what_it_created(lab: tuple[Lab, str], tmp_path: Path) -> None:
    the_lab, state = lab
    pki = Path(state).parent / "pki"
    pki.mkdir(parents=True)
    foreign = pki / "host2.pem"
    foreign.write_text("not ours")
    with pytest.raises(LabError, match=r"host2\.pem already exists"):
        the_lab.up(LabTopology.build(hosts=2), "memory")
    assert foreign.read_text() == "not ours"
    assert sorted(p.name for p in pki.iterdir()) == ["host2.pem"]
    assert the_lab.load() is None


def test_up_failing_half_way_removes_what_it_started(lab: tuple[Lab, str], tmp_path: Path) -> None:
    the_lab, state = lab
    os.makedirs(state)  # the state "file" is a directory: registration fails after the agents started
    started: list[str] = []
    with pytest.raises(Exception, match=r"state|database|directory"):
        the_lab.up(LabTopology.build(hosts=2), "memory", progress=started.append)
    assert "2 agents up (memory driver)" in " ".join(started)
    assert the_lab.load() is None
    assert sorted(p.name for p in Path(state).parent.iterdir()) == ["state.db"]
    fake = LabState(id="x", driver="memory", state_path=state, dir=str(tmp_path), prefix="l2labx-")
    assert not leftovers(fake, tmp_path)


def test_lab_commands_without_a_lab_say_so(tmp_path: Path, capsys: Any) -> None:
    state = str(tmp_path / "state.db")
    assert run("lab", "status", "--state", state) == 1
    assert "no lab is up for state" in capsys.readouterr().err
    assert run("lab", "down", "--state", state) == 0
    assert run("lab", "up", "--hosts", "300", "--state", state) == 1
    assert capsys.readouterr().err.strip().endswith("error: --hosts: 300 is outside 1..250")
    assert not os.path.exists(state) and LabState.load(tmp_path / "lab") is None
