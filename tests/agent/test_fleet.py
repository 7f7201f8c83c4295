"""A fleet of simulated hosts behind one TLS server, and the engine's client sharing channels.

Real gRPC over mutual TLS on loopback; agents are full daemon.Agent objects (memory driver).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

import l2vpc
from l2vpc._proto import agent_pb2 as pb
from l2vpc.agent.fleet import Fleet, FleetError, check_hosts, issue_fleet_certificate, serve_fleet
from l2vpc.agentapi import wire
from l2vpc.agentapi.channel import certificate_names, host_metadata, open_channel, stub
from l2vpc.engine.agent_client import GrpcAgentPool
from l2vpc.engine.errors import HostError
from l2vpc.engine.model import Host
from l2vpc.pki import TlsFiles

from .daemon_helpers import Pki, make_pki, sample, start_agent

N = 250  # what one fleet process of the scale bench carries


def hosts(n: int, first: int = 1, region: str = "r1") -> list[dict[str, str]]:
    return [{"name": f"f{i:04d}", "region": region, "underlay_ip": f"10.{100 + i // 65536}.{i // 256 % 256}.{i % 256}"}
            for i in range(first, first + n)]


class RunningFleet:
    def __init__(self, fleet: Fleet, server: grpc.Server, address: str) -> None:
        self.fleet, self.server, self.address = fleet, server, address

    def stop(self) -> None:
        self.server.stop(0).wait()
        self.fleet.close()


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


def start_fleet(pki: Pki, parent: Path, docs: list[dict[str, str]], name: str) -> RunningFleet:
    tls = issue_fleet_certificate(pki.ca, name, [h["name"] for h in docs])
    fleet = Fleet.open(docs, parent)
    server, addresses = serve_fleet(fleet, ["127.0.0.1:0"], tls)
    fleet.start()
    return RunningFleet(fleet, server, addresses[0])


@pytest.fixture
def big(tmp_path: Path, pki: Pki) -> Iterator[RunningFleet]:
    f = start_fleet(pki, tmp_path / "fleet-a", hosts(N), "fleet-a")
    try:
        yield f
    finally:
        f.stop()


def host_model(doc: dict[str, str], address: str) -> Host:
    return Host(name=doc["name"], region=doc["region"], underlay_ip=doc["underlay_ip"], agent_address=address)


def test_fleet_serves_each_host_through_the_engine_client(big: RunningFleet, pki: Pki) -> None:
    docs = hosts(N)
    picked = [docs[0], docs[1], docs[N // 2], docs[-1]]  # the last name is the 250th SAN entry
    with GrpcAgentPool(pki.engine) as pool:
        for i, doc in enumerate(picked, start=1):
            client = pool.client(host_model(doc, big.address))
            cfg = sample(i, host=doc["name"], underlay=doc["underlay_ip"])
            actual = client.push(cfg, timeout=10)
            assert actual.same_dataplane(cfg)
            assert client.report(timeout=10).same_dataplane(cfg)
            health = client.health(timeout=10)
            assert (health.host, health.accepted_generation, health.converged_generation) == (doc["name"], i, i)
        # Each push reached its own host's agent only, and was persisted in its own state dir.
        for i, doc in enumerate(picked, start=1):
            desired, _ = big.fleet.agents[doc["name"]].state()
            assert desired is not None and desired.generation == i
            assert (big.fleet.agents[doc["name"]].state_dir / "desired.json").exists()
        untouched = big.fleet.agents[docs[2]["name"]]
        assert untouched.state()[0] is None and untouched.health().accepted_generation == 0
        assert len(pool._channels) == 1  # four hosts, one address: one channel


def test_fleet_certificate_names_every_host(big: RunningFleet, pki: Pki) -> None:
    names = certificate_names(big.address, pki.engine)
    assert {h["name"] for h in hosts(N)} <= names
    assert "fleet-a" in names


def test_fleet_refuses_a_host_it_does_not_run(big: RunningFleet, pki: Pki) -> None:
    stranger = {"name": "f9999", "region": "r1", "underlay_ip": "10.9.9.9"}
    with GrpcAgentPool(pki.engine) as pool:
        pool.client(host_model(hosts(1)[0], big.address)).health(timeout=5)  # opens the shared channel
        with pytest.raises(HostError) as err:  # the engine's client stops before sending: not in the cert
            pool.client(host_model(stranger, big.address)).push(sample(1, "f9999", "10.9.9.9"), timeout=5)
        assert err.value.step == "tls" and "does not name host f9999" in err.value.reason
    # A client that skips that check is refused by the server: nothing for f9999 is applied.
    with open_channel(big.address, "f0001", pki.engine) as channel:
        s = stub(channel)
        with pytest.raises(grpc.RpcError) as rpc:
            s.Push(wire.push_request(sample(1, "f9999", "10.9.9.9")), timeout=5, metadata=host_metadata("f9999"))
        assert rpc.value.code() == grpc.StatusCode.NOT_FOUND
        assert "'f9999' is not served at this address" in (rpc.value.details() or "")
        with pytest.raises(grpc.RpcError) as rpc:
            s.Health(pb.HealthRequest(), timeout=5)  # no l2vpc-host at all
        assert rpc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "l2vpc-host" in (rpc.value.details() or "")
    assert all(a.health().accepted_generation == 0 for a in big.fleet.agents.values())


def test_fleet_requires_client_certificates(big: RunningFleet, pki: Pki, tmp_path: Path) -> None:
    creds = grpc.ssl_channel_credentials(root_certificates=pki.ca.ca_path.read_bytes())
    with grpc.secure_channel(big.address, creds, options=[("grpc.ssl_target_name_override", "f0001")]) as channel:
        with pytest.raises(grpc.RpcError) as rpc:
            stub(channel).Health(pb.HealthRequest(), timeout=5, metadata=host_metadata("f0001"))
    assert rpc.value.code() == grpc.StatusCode.UNAVAILABLE


def test_single_agent_refuses_calls_for_another_host(tmp_path: Path, pki: Pki) -> None:
    running = start_agent(tmp_path / "h1", pki.server("h1"), host="h1")
    try:
        with open_channel(running.address, "h1", pki.engine) as channel:
            s = stub(channel)
            with pytest.raises(grpc.RpcError) as rpc:
                s.Push(wire.push_request(sample(1)), timeout=5, metadata=host_metadata("h2"))
            assert rpc.value.code() == grpc.StatusCode.NOT_FOUND
            assert "runs host 'h1', not 'h2'" in (rpc.value.details() or "")
            with pytest.raises(grpc.RpcError):
                s.GetState(pb.GetStateRequest(), timeout=5, metadata=host_metadata("h2"))
            assert running.agent.health().accepted_generation == 0  # nothing was applied
            assert s.Health(pb.HealthRequest(), timeout=5, metadata=host_metadata("h1")).host == "h1"
            assert s.Health(pb.HealthRequest(), timeout=5).host == "h1"  # older clients send none
    finally:
        running.stop()


def test_pool_shares_one_channel_per_address(tmp_path: Path, pki: Pki) -> None:
    a = start_fleet(pki, tmp_path / "a", hosts(3, first=1), "fleet-a")
    b = start_fleet(pki, tmp_path / "b", hosts(3, first=11), "fleet-b")
    try:
        with GrpcAgentPool(pki.engine) as pool:
            for fleet, docs in ((a, hosts(3, first=1)), (b, hosts(3, first=11))):
                for i, doc in enumerate(docs, start=1):
                    cfg = sample(i, host=doc["name"], underlay=doc["underlay_ip"])
                    assert pool.client(host_model(doc, fleet.address)).push(cfg, timeout=10).same_dataplane(cfg)
            assert sorted(pool._channels) == sorted([a.address, b.address])
            # Host f0011 is fleet b's: through fleet a's address it is refused by name.
            with pytest.raises(HostError, match="does not name host f0011"):
                pool.client(host_model(hosts(1, first=11)[0], a.address)).report(timeout=5)
    finally:
        a.stop()
        b.stop()


def test_hosts_are_checked(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match=r"hosts\[1\].name: 'f0001' appears twice"):
        check_hosts([hosts(1)[0], {**hosts(1)[0], "underlay_ip": "10.1.1.1"}])
    with pytest.raises(FleetError, match=r"hosts\[0\].underlay_ip: 'x' is not an IPv4 address"):
        check_hosts([{"name": "a", "region": "r", "underlay_ip": "x"}])
    with pytest.raises(FleetError, match=r"hosts\[0\].colour: unknown field"):
        check_hosts([{"name": "a", "region": "r", "underlay_ip": "10.0.0.1", "colour": "red"}])
    with pytest.raises(FleetError, match=r"hosts\[0\].region: required"):
        check_hosts([{"name": "a", "underlay_ip": "10.0.0.1"}])


def _wait_for(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_fleet_command(tmp_path: Path) -> None:
    """`l2vpc agent ca --fleet` and `l2vpc agent fleet`, as a bench starts them."""
    hosts_file = tmp_path / "hosts.json"
    docs = hosts(5)
    hosts_file.write_text(json.dumps(docs))
    env = {**os.environ, "PYTHONPATH": str(Path(l2vpc.__file__).resolve().parent.parent)}
    cli = [sys.executable, "-m", "l2vpc.agent"]
    pki_dir = tmp_path / "pki"
    out = subprocess.run([*cli, "ca", str(pki_dir), "--fleet", "fleet1", "--hosts", str(hosts_file),
                          "--client", "engine"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "fleet fleet1 (5 hosts)" in out.stdout
    sock = f"unix:{tmp_path / 'fleet.sock'}"
    proc = subprocess.Popen([*cli, "fleet", "--hosts", str(hosts_file), "--state-dir", str(tmp_path / "state"),
                             "--listen", sock, "--ca", str(pki_dir / "ca.pem"), "--cert", str(pki_dir / "fleet1.pem"),
                             "--key", str(pki_dir / "fleet1.key")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        engine = TlsFiles(pki_dir / "ca.pem", pki_dir / "engine.pem", pki_dir / "engine.key")
        with GrpcAgentPool(engine) as pool:
            def up() -> bool:
                try:
                    pool.client(host_model(docs[0], sock)).health(timeout=1)
                    return True
                except Exception:
                    return False

            assert _wait_for(up, 30), proc.stderr.read() if proc.poll() is not None else "no answer"
            for i, doc in enumerate(docs, start=1):
                cfg = sample(i, host=doc["name"], underlay=doc["underlay_ip"])
                assert pool.client(host_model(doc, sock)).push(cfg, timeout=10).same_dataplane(cfg)
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == [d["name"] for d in docs]
