"""`Lab.up(..., controller=...)` with the memory driver: the lab's agents (real processes)
register with a real controller and heartbeat, the controller converges them; the lab itself
registers nothing. Also `l2vpc lab up --controller` flag checks."""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from l2vpc._proto import controller_pb2 as cpb
from l2vpc.controller.auth import create_token
from l2vpc.controller.enrollment import enroll_hosts
from l2vpc.engine.store import open_store
from l2vpc.lab import cli as lab_cli
from l2vpc.lab.lab import Lab, LabController, LabError
from l2vpc.lab.topology import LabTopology

from ._api_helpers import Client, make_pki, running_controller


def wait_for(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := pred()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.1)
    return value


def test_memory_lab_agents_register_with_a_controller(db: Any, secret_key: str, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    topo = LabTopology.build(hosts=2, edges=1)
    store = open_store(db.url)
    try:
        enroll_hosts(store, topo.host_documents())  # the operator says what each host is
        tokens = {h.name: create_token(store, "agent", host=h.name)[1] for h in topo.hosts}
        admin = create_token(store, "admin")[1]
        tenant = create_token(store, "tenant", tenant="acme")[1]
    finally:
        store.close()
    state = tmp_path / "state.db"
    lab = Lab(str(state), pki_dir=pki)
    with running_controller(db.url, pki, controller_id="c1", heartbeat_interval=0.5, down_after=5.0) as handle:
        with pytest.raises(LabError, match="controller tokens: none for edge1"):
            lab.up(topo, "memory", controller=LabController(handle.address, pki / "ca.pem",
                                                            {"host1": "x", "host2": "y"}))
        client = Client(handle.address, pki / "ca.pem")
        try:
            st = lab.up(topo, "memory", controller=LabController(handle.address, pki / "ca.pem", tokens))
            assert st.controller == handle.address and not st.registered
            assert not state.exists()  # nothing registered locally
            for rec in st.hosts:
                assert rec.token_file and os.stat(rec.token_file).st_mode & 0o077 == 0
                assert tokens[rec.name] not in Path(f"/proc/{rec.pid}/cmdline").read_text()
            # A later Lab object for the same state finds the CA it was brought up with.
            assert Lab(str(state)).pki_dir == pki.absolute()

            def hosts() -> dict[str, dict[str, Any]]:
                reply = client.call("ListHosts", cpb.ListHostsRequest(), tenant)
                return {h["name"]: h for h in (json.loads(x) for x in reply.hosts_json)}

            got = wait_for(lambda: len(hs := hosts()) == 3 and all(h["status"] == "up" for h in hs.values()) and hs,
                           30, "three hosts registered by their agents")
            assert got["edge1"]["role"] == "edge" and got["edge1"]["location"] == "nyc1"
            assert got["edge1"]["public_cidr"] == "203.0.113.32/28"
            assert got["host1"]["agent_address"] == st.host("host1").address  # type: ignore[union-attr]

            vpc = client.create(tenant, "vpc", {"name": "apps", "region": "us-east", "cidr": "10.9.0.0/24"})
            for i, h in enumerate(("host1", "host2"), start=1):
                client.create(tenant, "attachment", {"vpc_id": vpc["id"], "workload": f"w{i}", "host": h,
                                                     "ip_mode": "static", "ip_address": f"10.9.0.{10 + i}/24"})
            done = client.call("Converge", cpb.ConvergeRequest(timeout_seconds=30), tenant, timeout=40)[-1]
            assert done.done and not done.failures
            _, statuses, _, _ = lab.status()
            assert {h.name: len(h.ports) for h in statuses} == {"host1": 1, "host2": 1, "edge1": 0}
            status = client.call("Status", cpb.StatusRequest(), admin)
            assert {h.name: h.status for h in status.hosts} == {"host1": "up", "host2": "up", "edge1": "up"}
        finally:
            client.close()
            lab.down()
    assert not (tmp_path / "lab").exists()
    assert sorted(p.name for p in pki.iterdir()) == ["ca.key", "ca.pem", "controller.key", "controller.pem",
                                                     "engine.key", "engine.pem"]


def test_lab_up_controller_flags(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    lab_cli.add_commands(parser.add_subparsers())
    state = str(tmp_path / "state.db")
    for extra, message in (
        (["--controller-ca", "ca.pem"], "--controller-ca: only with --controller"),
        (["--controller", "127.0.0.1:1"], "--controller needs --controller-ca and --controller-tokens"),
    ):
        args = parser.parse_args(["lab", "up", "--driver", "memory", "--state", state, *extra])
        with pytest.raises(lab_cli.CliError, match=message):
            args.func(args)
    tokens = tmp_path / "tokens"
    tokens.write_text("host1 t1\n")
    os.chmod(tokens, 0o644)
    args = parser.parse_args(["lab", "up", "--driver", "memory", "--state", state, "--controller", "127.0.0.1:1",
                              "--controller-ca", "ca.pem", "--controller-tokens", str(tokens)])
    with pytest.raises(lab_cli.CliError, match="readable by others"):
        args.func(args)
    assert not (tmp_path / "lab").exists()
