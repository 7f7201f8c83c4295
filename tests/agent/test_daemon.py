"""The agent daemon over real gRPC with mutual TLS, memory driver (no root needed)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from l2vpc._proto import agent_pb2 as pb
from l2vpc._proto import agent_pb2_grpc as pb_grpc
from l2vpc.agent.daemon import Agent, AgentError
from l2vpc.agent.drivers.memory import MemoryDriver
from l2vpc.agentapi import wire
from l2vpc.hostconfig import HostConfig
from l2vpc.pki import CertificateAuthority
from l2vpc.testing.daemons import signal_a_thread

from .daemon_helpers import Pki, Running, client, make_pki, push, sample, start_agent


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def running(tmp_path: Path, pki: Pki) -> Iterator[Running]:
    r = start_agent(tmp_path / "state", pki.server("h1"))
    try:
        yield r
    finally:
        r.stop()


def state_of(s: pb_grpc.AgentStub) -> pb.GetStateResponse:
    return s.GetState(pb.GetStateRequest(), timeout=5)


def test_push_state_and_health(running: Running, pki: Pki) -> None:
    channel, s = client(running.address, pki.engine)
    with channel:
        cfg = sample(1)
        reply = push(s, cfg)
        assert reply.status == pb.PushResponse.CONVERGED, reply
        assert reply.accepted_generation == 1
        verbs = sorted((a.verb, a.path) for a in reply.actions)
        assert ("create", "segments[vni=100]") in verbs and ("create", "ports[id=att-2]") in verbs
        assert not reply.failures
        actual = wire.config_from_pb(reply.actual)
        assert actual.same_dataplane(cfg) and actual.generation == 1

        st = state_of(s)
        assert wire.config_from_pb(st.desired) == cfg
        assert wire.config_from_pb(st.actual).same_dataplane(cfg)
        assert st.accepted_generation == 1

        h = s.Health(pb.HealthRequest(), timeout=5)
        assert (h.host, h.driver, h.api_version) == ("h1", "memory", "v1.2")
        assert (h.accepted_generation, h.converged_generation, h.last_converge_ok) == (1, 1, True)
        assert h.pid == os.getpid() and not h.converging

        # The same config again is a retry: accepted, nothing to do.
        again = push(s, cfg)
        assert again.status == pb.PushResponse.CONVERGED and len(again.actions) == 0

        # A newer generation that changes one thing changes only that.
        newer = replace(cfg, generation=2, segments=(replace(cfg.segments[0], remotes=("10.0.0.2",)), cfg.segments[1]))
        reply = push(s, newer)
        assert reply.status == pb.PushResponse.CONVERGED
        assert [(a.verb, a.path) for a in reply.actions] == [("update", "segments[vni=100]")]


def test_failures_are_reported_with_paths(running: Running, pki: Pki) -> None:
    running.driver.fail("segments[vni=200]", "bridge refused")
    channel, s = client(running.address, pki.engine)
    with channel:
        reply = push(s, sample(1))
        assert reply.status == pb.PushResponse.FAILED
        failures = {(f.path, f.reason) for f in reply.failures}
        assert ("segments[vni=200]", "bridge refused") in failures
        # What depends on the failed segment is not attempted, and says why.
        assert ("ports[id=att-2]", "not attempted: segments[vni=200] failed") in failures
        # The rest of the config is in place.
        actual = wire.config_from_pb(reply.actual)
        assert [seg.vni for seg in actual.segments] == [100]
        h = s.Health(pb.HealthRequest(), timeout=5)
        assert not h.last_converge_ok and h.accepted_generation == 1 and h.converged_generation == 0
        assert {f.path for f in h.last_failures} == {p for p, _ in failures}

        running.driver.heal("segments[vni=200]")
        reply = push(s, sample(2))
        assert reply.status == pb.PushResponse.CONVERGED
        assert wire.config_from_pb(reply.actual).same_dataplane(sample(2))


def test_stale_generation_is_refused(running: Running, pki: Pki) -> None:
    channel, s = client(running.address, pki.engine)
    with channel:
        assert push(s, sample(5)).status == pb.PushResponse.CONVERGED
        before = state_of(s)
        older = push(s, replace(sample(3, mtu=1400)))
        assert older.status == pb.PushResponse.STALE
        assert older.accepted_generation == 5
        assert [f.path for f in older.failures] == ["generation"]
        assert "older than the last accepted generation 5" in older.failures[0].reason
        # Same generation, different content: also refused.
        clash = push(s, sample(5, mtu=1400))
        assert clash.status == pb.PushResponse.STALE
        assert "already accepted with a different config" in clash.failures[0].reason
        assert state_of(s) == before


def test_invalid_config_is_rejected_and_changes_nothing(running: Running, pki: Pki, tmp_path: Path) -> None:
    channel, s = client(running.address, pki.engine)
    with channel:
        assert push(s, sample(1)).status == pb.PushResponse.CONVERGED
        persisted = (tmp_path / "state" / "desired.json").read_bytes()
        before = state_of(s)
        applied = len(running.driver.applied)

        bad = sample(2, mtu=20000)
        bad = replace(bad, host="h9", ports=(replace(bad.ports[0], mac="01:00:00:00:00:01"), bad.ports[1]))
        reply = push(s, bad)
        assert reply.status == pb.PushResponse.REJECTED
        paths = {f.path for f in reply.failures}
        assert {"segments[0].mtu", "ports[0].mtu", "ports[0].mac", "host"} <= paths
        assert any("20000 is outside 576..9000" in f.reason for f in reply.failures)
        assert reply.accepted_generation == 1

        assert state_of(s) == before
        assert len(running.driver.applied) == applied
        assert (tmp_path / "state" / "desired.json").read_bytes() == persisted

        with pytest.raises(grpc.RpcError) as err:
            s.Push(pb.PushRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_client_without_certificate_is_rejected(running: Running, pki: Pki) -> None:
    creds = grpc.ssl_channel_credentials(root_certificates=pki.ca.ca_path.read_bytes())
    with grpc.secure_channel(running.address, creds, options=[("grpc.ssl_target_name_override", "h1")]) as ch:
        with pytest.raises(grpc.RpcError) as err:
            pb_grpc.AgentStub(ch).Health(pb.HealthRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    with grpc.insecure_channel(running.address) as ch:
        with pytest.raises(grpc.RpcError):
            pb_grpc.AgentStub(ch).Health(pb.HealthRequest(), timeout=5)
    assert running.agent.health().last_unix == 0  # nothing got through


def test_client_with_certificate_of_another_ca_is_rejected(running: Running, pki: Pki, tmp_path: Path) -> None:
    other = CertificateAuthority.create(tmp_path / "other")
    foreign = other.issue_client("engine")
    # Trusting our CA (so the server side verifies) but presenting a foreign client cert.
    forged = replace(foreign, ca=pki.ca.ca_path)
    channel, s = client(running.address, forged)
    with channel, pytest.raises(grpc.RpcError) as err:
        push(s, sample(1))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert running.agent.accepted_generation == 0


def test_agent_certificate_cannot_drive_agents(running: Running, pki: Pki) -> None:
    """A server certificate (another agent's) lacks the clientAuth usage: refused."""
    channel, s = client(running.address, pki.server("h2"))
    with channel, pytest.raises(grpc.RpcError) as err:
        push(s, sample(1))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert running.agent.accepted_generation == 0


def test_engine_refuses_an_agent_of_another_host(running: Running, pki: Pki) -> None:
    """The agent's certificate names h1; a client that meant h2 does not talk to it."""
    channel, s = client(running.address, pki.engine, host="h2")
    with channel, pytest.raises(grpc.RpcError) as err:
        push(s, sample(1, host="h2"))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_restart_reapplies_the_persisted_config(tmp_path: Path, pki: Pki) -> None:
    state = tmp_path / "state"
    first = start_agent(state, pki.server("h1"))
    try:
        channel, s = client(first.address, pki.engine)
        with channel:
            assert push(s, sample(4)).status == pb.PushResponse.CONVERGED
    finally:
        first.stop()
    f = state / "desired.json"
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert json.loads(f.read_text())["config"]["generation"] == 4

    second = start_agent(state, pki.server("h1"))  # a fresh, empty memory dataplane
    try:
        channel, s = client(second.address, pki.engine)
        with channel:
            st = state_of(s)
            assert st.accepted_generation == 4
            actual = wire.config_from_pb(st.actual)
            assert actual.same_dataplane(sample(4)) and actual.generation == 4
            h = s.Health(pb.HealthRequest(), timeout=5)
            assert (h.converging, h.converged_generation, h.last_converge_ok) == (False, 4, True)
            # An older push after the restart is still stale: the generation survived too.
            assert push(s, sample(3)).status == pb.PushResponse.STALE
    finally:
        second.stop()


def test_persisted_config_for_another_host_is_not_applied(tmp_path: Path, pki: Pki) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "desired.json").write_text(json.dumps({"format": 1, "config": sample(3, host="h9").to_dict()}))
    r = start_agent(state, pki.server("h1"))
    try:
        assert r.agent.accepted_generation == 0
        assert r.driver.applied == []
    finally:
        r.stop()


def test_unreadable_persisted_config_touches_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "desired.json").write_text("{not json")
    driver = MemoryDriver("h1", "10.0.0.1")
    agent = Agent(driver, state)
    try:
        assert agent.start() is None
        assert agent.accepted_generation == 0 and driver.applied == []
    finally:
        agent.close()


def test_state_dir_is_exclusive(tmp_path: Path) -> None:
    first = Agent(MemoryDriver("h1", "10.0.0.1"), tmp_path / "state")
    try:
        with pytest.raises(AgentError, match=r"in use by another agent \(pid \d+\)"):
            Agent(MemoryDriver("h1", "10.0.0.1"), tmp_path / "state")
    finally:
        first.close()


def test_converges_are_serialised(running: Running, pki: Pki) -> None:
    """Concurrent pushes never interleave inside the driver; the newest generation wins."""
    import threading

    inside = 0
    peak = 0
    original = running.driver._apply
    guard = threading.Lock()

    def slow_apply(op: object) -> None:
        nonlocal inside, peak
        with guard:
            inside += 1
            peak = max(peak, inside)
        time.sleep(0.001)
        try:
            original(op)  # type: ignore[arg-type]
        finally:
            with guard:
                inside -= 1

    running.driver._apply = slow_apply  # type: ignore[method-assign]
    channel, s = client(running.address, pki.engine)
    with channel:
        configs = [sample(g, mtu=1400 + g) for g in range(1, 9)]
        replies: list[pb.PushResponse] = []
        threads = [threading.Thread(target=lambda c=c: replies.append(push(s, c))) for c in configs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert peak == 1
        assert {r.status for r in replies} <= {pb.PushResponse.CONVERGED, pb.PushResponse.STALE}
        assert wire.config_from_pb(state_of(s).desired).generation == 8 or any(
            r.status == pb.PushResponse.CONVERGED and r.accepted_generation == 8 for r in replies)
        final = state_of(s)
        assert wire.config_from_pb(final.actual).same_dataplane(wire.config_from_pb(final.desired))


@pytest.mark.parametrize("to", ["process", "a worker thread"])
def test_agent_process_serves_and_stops_on_sigterm(tmp_path: Path, pki: Pki, to: str) -> None:
    """Also when the kernel hands the signal to one of gRPC's threads: the main thread must still
    wake to act on it (an untimed wait there slept through it, and the agent never stopped)."""
    tls = pki.server("h1")
    sock = Path(f"/tmp/l2a-{os.getpid()}-{time.monotonic_ns()}.sock")
    proc = subprocess.Popen(
        [sys.executable, "-m", "l2vpc.agent", "run", "--host", "h1", "--underlay-ip", "10.0.0.1",
         "--listen", f"unix:{sock}", "--state-dir", str(tmp_path / "state"), "--driver", "memory",
         "--ca", str(tls.ca), "--cert", str(tls.cert), "--key", str(tls.key)],
        stderr=subprocess.PIPE, text=True,
    )
    try:
        channel, s = client(f"unix:{sock}", pki.engine)
        with channel:
            deadline = time.monotonic() + 15
            while True:
                try:
                    h = s.Health(pb.HealthRequest(), timeout=1)
                    break
                except grpc.RpcError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise
                    time.sleep(0.05)
            assert h.pid == proc.pid and h.driver == "memory"
            assert push(s, sample(1)).status == pb.PushResponse.CONVERGED
        if to == "process":
            proc.terminate()
        else:
            signal_a_thread(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert "generation 1 converged" in err
        assert "10.1.0.5" not in err and "02:00:00:00:00:01" not in err  # no config contents in logs
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.unlink(missing_ok=True)


def test_agent_cli_reports_bad_input_in_one_line(tmp_path: Path, pki: Pki) -> None:
    tls = pki.server("h1")
    base = [sys.executable, "-m", "l2vpc.agent", "run", "--host", "h1", "--state-dir", str(tmp_path / "s"),
            "--driver", "memory", "--listen", "127.0.0.1:0"]
    out = subprocess.run([*base, "--underlay-ip", "10.0.0.300", "--ca", str(tls.ca), "--cert", str(tls.cert),
                          "--key", str(tls.key)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and out.stderr.strip() == "error: --underlay-ip: '10.0.0.300' is not an IPv4 address"
    out = subprocess.run([*base, "--underlay-ip", "10.0.0.1", "--ca", str(tls.ca), "--cert", str(tmp_path / "nope.pem"),
                          "--key", str(tls.key)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and out.stderr.strip() == f"error: TLS file missing: {tmp_path / 'nope.pem'}"


def test_wire_round_trip() -> None:
    cfg = replace(sample(7), labels={"plan": "p-1"})
    assert wire.config_from_pb(wire.config_to_pb(cfg)) == cfg
    assert wire.config_from_pb(wire.config_to_pb(cfg)).labels == {"plan": "p-1"}
    empty = HostConfig("h1", "10.0.0.1")
    assert wire.config_from_pb(wire.config_to_pb(empty)) == empty


def test_ca_and_health_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from l2vpc.agent.cli import main

    pki = tmp_path / "pki"
    assert main(["ca", str(pki), "--server", "h1", "--ip", "10.0.0.1", "--client", "engine"]) == 0
    assert sorted(p.name for p in pki.iterdir()) == ["ca.key", "ca.pem", "engine.key", "engine.pem", "h1.key", "h1.pem"]
    assert all(stat.S_IMODE((pki / k).stat().st_mode) == 0o600 for k in ("ca.key", "engine.key", "h1.key"))
    assert main(["ca", str(pki), "--server", "Bad_Name"]) == 1
    assert "certificate name 'Bad_Name' must be" in capsys.readouterr().err

    ca = CertificateAuthority.load(pki)
    r = start_agent(tmp_path / "state", ca.files("h1"))
    try:
        tls = ["--ca", str(pki / "ca.pem"), "--cert", str(pki / "engine.pem"), "--key", str(pki / "engine.key")]
        assert main(["health", "--address", r.address, "--host", "h1", *tls]) == 0
        out = json.loads(capsys.readouterr().out)
        assert (out["host"], out["driver"], out["apiVersion"]) == ("h1", "memory", "v1.2")
        assert main(["health", "--address", r.address, "--host", "h2", "--timeout", "2", *tls]) == 1
        assert "agent h2 at 127.0.0.1:" in capsys.readouterr().err
    finally:
        r.stop()
