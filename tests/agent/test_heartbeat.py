"""Agents registering and heartbeating (l2vpc/agent/heartbeat.py).

The controller here is a small scripted Controller service (real gRPC over TLS) that records
what agents send and answers as told (forget a host, refuse a token, go away): the behaviour
under test is the agent's. tests/controller/test_agents_*.py run agents against the real
controller on PostgreSQL.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

import l2vpc
from l2vpc._proto import controller_pb2 as cpb
from l2vpc._proto import controller_pb2_grpc as cpb_grpc
from l2vpc.agent.daemon import Agent
from l2vpc.agent.drivers.memory import MemoryDriver
from l2vpc.agent.heartbeat import (
    ControllerLink,
    ControllerSettings,
    HeartbeatError,
    HeartbeatScheduler,
    TokenSource,
)
from l2vpc.hostconfig import config_digest
from l2vpc.pki import CertificateAuthority
from l2vpc.testing.slow_proxy import SlowProxy

from .daemon_helpers import sample

INTERVAL = 0.3


@dataclass
class Call:
    at: float
    method: str
    host: str
    token: str
    request: cpb.RegisterRequest | cpb.HeartbeatRequest


@dataclass
class ScriptedController(cpb_grpc.ControllerServicer):
    tokens: dict[str, str]  # host -> the token it must present
    interval: float = INTERVAL
    known: set[str] = field(default_factory=set)
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _token(self, context: grpc.ServicerContext) -> str:
        for k, v in context.invocation_metadata():
            if k == "authorization":
                return str(v).removeprefix("Bearer ")
        return ""

    def Register(self, request: cpb.RegisterRequest, context: grpc.ServicerContext) -> cpb.RegisterReply:
        doc = json.loads(request.host_json)
        token = self._token(context)
        if self.tokens.get(doc["name"]) != token:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown token")
        with self.lock:
            self.calls.append(Call(time.monotonic(), "register", doc["name"], token, request))
            self.known.add(doc["name"])
        return cpb.RegisterReply(heartbeat_interval_seconds=self.interval)

    def Heartbeat(self, request: cpb.HeartbeatRequest, context: grpc.ServicerContext) -> cpb.HeartbeatReply:
        token = self._token(context)
        if self.tokens.get(request.host) != token:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown token")
        with self.lock:
            if request.host not in self.known:
                context.abort(grpc.StatusCode.NOT_FOUND, f"host {request.host} is not registered")
            self.calls.append(Call(time.monotonic(), "heartbeat", request.host, token, request))
        return cpb.HeartbeatReply(heartbeat_interval_seconds=self.interval)

    def of(self, method: str, host: str | None = None) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.method == method and (host is None or c.host == host)]


class ControllerServer:
    def __init__(self, ca: CertificateAuthority, service: ScriptedController, port: int = 0) -> None:
        files = ca.files("controller") if ca.files("controller").cert.exists() else ca.issue_server("controller")
        _, cert, key = files.read()
        self.service = service
        self.server = grpc.server(ThreadPoolExecutor(max_workers=8))
        cpb_grpc.add_ControllerServicer_to_server(service, self.server)
        self.port = self.server.add_secure_port(f"127.0.0.1:{port}", grpc.ssl_server_credentials([(key, cert)]))
        assert self.port
        self.server.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop(0).wait()


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path / "pki")


def token_file(path: Path, lines: dict[str, str]) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.writelines(f"{h} {t}\n" if h else f"{t}\n" for h, t in lines.items())
    return path


def make_agent(tmp_path: Path, name: str, underlay: str = "10.0.0.1") -> Agent:
    return Agent(MemoryDriver(name, underlay), tmp_path / "agents" / name, driver_name="memory")


def doc(name: str, underlay: str = "10.0.0.1") -> dict[str, str]:
    return {"name": name, "region": "r1", "role": "compute", "underlay_ip": underlay, "agent_address": "unix:/x.sock"}


def wait_for(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


@pytest.fixture
def controller(ca: CertificateAuthority) -> Iterator[ControllerServer]:
    server = ControllerServer(ca, ScriptedController({"h1": "tok-h1-secret"}))
    try:
        yield server
    finally:
        server.stop()


def test_registers_then_heartbeats_with_generations_and_digest(
        tmp_path: Path, ca: CertificateAuthority, controller: ControllerServer) -> None:
    agent = make_agent(tmp_path, "h1")
    tokens = TokenSource.from_file(token_file(tmp_path / "token", {"": "tok-h1-secret"}))
    settings = ControllerSettings((controller.address,), ca.ca_path)
    try:
        with HeartbeatScheduler(settings, [ControllerLink(agent, doc("h1"), tokens)]) as beats:
            assert wait_for(lambda: len(controller.service.of("heartbeat")) >= 2)
            (reg,) = controller.service.of("register")
            assert isinstance(reg.request, cpb.RegisterRequest)
            assert json.loads(reg.request.host_json) == doc("h1")
            first = controller.service.of("heartbeat")[0].request
            assert isinstance(first, cpb.HeartbeatRequest)
            assert (first.accepted_generation, first.converged_generation) == (0, 0)
            assert first.actual_digest == config_digest(agent.driver.facts())

            assert agent.push(sample(7)).status == "converged"
            seen = len(controller.service.of("heartbeat"))
            assert wait_for(lambda: len(controller.service.of("heartbeat")) >= seen + 2)
            last = controller.service.of("heartbeat")[-1].request
            assert isinstance(last, cpb.HeartbeatRequest)
            assert (last.host, last.accepted_generation, last.converged_generation, last.converging) == ("h1", 7, 7, False)
            assert last.actual_digest == config_digest(agent.driver.facts()) != first.actual_digest
            # One heartbeat per interval: the controller's, not a default and not a burst.
            times = [c.at for c in controller.service.of("heartbeat")]
            gaps = sorted(b - a for a, b in itertools.pairwise(times))
            assert INTERVAL * 0.7 < gaps[len(gaps) // 2] < INTERVAL * 1.5, gaps
            assert beats.stats().registered == 1 and beats.stats().failing == 0
    finally:
        agent.close()


def test_digest_follows_what_the_host_runs(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, "h1")
    driver = agent.driver
    assert isinstance(driver, MemoryDriver)
    try:
        empty = agent.actual_digest()
        assert empty == config_digest(driver.facts())
        agent.push(sample(1))
        converged = agent.actual_digest(max_age=60)  # the converge's own facts: no read needed
        assert converged == config_digest(driver.facts()) != empty
        driver._ports.pop("att-1")  # drift: a port deleted behind the agent's back
        assert agent.actual_digest(max_age=60) == converged  # cached while young
        drifted = agent.actual_digest(max_age=0)
        assert drifted == config_digest(driver.facts()) not in (converged, empty)
        # Observations count: a session going down is a change the controller must re-read.
        agent.push(sample(2))
        before = agent.actual_digest()
        agent.push(sample(2))  # same config again: same digest
        assert agent.actual_digest() == before
        # While a converge runs, the digest is answered at once from the last read.
        agent._converge_lock.acquire()
        try:
            started = time.monotonic()
            assert agent.actual_digest(max_age=0) == before
            assert time.monotonic() - started < 0.5
        finally:
            agent._converge_lock.release()
    finally:
        agent.close()


def test_a_nudge_sends_the_heartbeat_now_with_a_fresh_digest(tmp_path: Path, ca: CertificateAuthority) -> None:
    """What the host runs changed (agent/session_watch.py: a BGP session came up): the controller
    hears of it at once, not at the next interval (60 s here) nor from a digest cached for
    digest_max_age (600 s here)."""
    server = ControllerServer(ca, ScriptedController({"h1": "tok-h1-secret"}, interval=60))
    agent = make_agent(tmp_path, "h1")
    driver = agent.driver
    assert isinstance(driver, MemoryDriver)
    tokens = TokenSource.from_file(token_file(tmp_path / "token", {"": "tok-h1-secret"}))
    settings = ControllerSettings((server.address,), ca.ca_path)
    beats_of = lambda: [c.request for c in server.service.of("heartbeat")]  # noqa: E731
    try:
        agent.push(sample(1))
        before = agent.actual_digest()
        with HeartbeatScheduler(settings, [ControllerLink(agent, doc("h1"), tokens, digest_max_age=600)]) as beats:
            assert wait_for(lambda: beats.stats().registered == 1)
            beats.nudge("h1")
            assert wait_for(lambda: len(beats_of()) >= 1, timeout=5)
            driver._ports.pop("att-1")  # what the host runs changes
            after = config_digest(driver.facts())
            beats.nudge("h1")
            assert wait_for(lambda: any(b.actual_digest == after for b in beats_of()), timeout=5), beats_of()
            assert after != before
            beats.nudge("nobody")  # not a host of this scheduler: nothing happens
    finally:
        agent.close()
        server.stop()


def test_registers_again_when_the_controller_forgets_the_host(
        tmp_path: Path, ca: CertificateAuthority, controller: ControllerServer) -> None:
    agent = make_agent(tmp_path, "h1")
    tokens = TokenSource({"h1": "tok-h1-secret"})
    try:
        with HeartbeatScheduler(ControllerSettings((controller.address,), ca.ca_path),
                                [ControllerLink(agent, doc("h1"), tokens)]) as beats:
            assert wait_for(lambda: len(controller.service.of("heartbeat")) >= 1)
            with controller.service.lock:
                controller.service.known.clear()  # e.g. a controller on a fresh database
            assert wait_for(lambda: len(controller.service.of("register")) == 2)
            n = len(controller.service.of("heartbeat"))
            assert wait_for(lambda: len(controller.service.of("heartbeat")) > n)
            assert beats.stats().registrations == 2
    finally:
        agent.close()


def test_survives_a_controller_restart(tmp_path: Path, ca: CertificateAuthority) -> None:
    agent = make_agent(tmp_path, "h1")
    service = ScriptedController({"h1": "tok-h1-secret"})
    first = ControllerServer(ca, service)
    port = first.port
    tokens = TokenSource({"h1": "tok-h1-secret"})
    try:
        with HeartbeatScheduler(ControllerSettings((first.address,), ca.ca_path),
                                [ControllerLink(agent, doc("h1"), tokens)]) as beats:
            assert wait_for(lambda: len(service.of("heartbeat")) >= 1)
            first.stop()
            assert wait_for(lambda: beats.stats().failing == 1, timeout=5)
            assert "heartbeat: UNAVAILABLE" in beats.stats().problems or \
                "heartbeat: DEADLINE_EXCEEDED" in beats.stats().problems
            # The same controller back on the same port, having kept its state (its database).
            second = ControllerServer(ca, service, port=port)
            try:
                n = len(service.of("heartbeat"))
                assert wait_for(lambda: len(service.of("heartbeat")) > n, timeout=10)
                assert wait_for(lambda: beats.stats().failing == 0)
                assert len(service.of("register")) == 1  # it knew the host: no new registration
            finally:
                second.stop()
    finally:
        agent.close()


def test_a_controller_slow_to_answer_the_handshake_is_waited_for(
        tmp_path: Path, ca: CertificateAuthority, controller: ControllerServer) -> None:
    """A busy controller answers the TLS handshake late: the agent's connection waits for it
    (gRPC once gave it 200 ms, taken from a reconnect option, and tried again and again)."""
    agent = make_agent(tmp_path, "h1")
    try:
        with SlowProxy(controller.address, delay=0.6) as proxy, HeartbeatScheduler(
                ControllerSettings((proxy.address,), ca.ca_path),
                [ControllerLink(agent, doc("h1"), TokenSource({"": "tok-h1-secret"}))]):
            assert wait_for(lambda: len(controller.service.of("heartbeat")) >= 1, timeout=10)
            assert proxy.connections == 1
    finally:
        agent.close()


def test_a_second_controller_takes_the_heartbeats(tmp_path: Path, ca: CertificateAuthority) -> None:
    agent = make_agent(tmp_path, "h1")
    one = ControllerServer(ca, ScriptedController({"h1": "tok-h1-secret"}))
    two = ControllerServer(ca, ScriptedController({"h1": "tok-h1-secret"}))
    try:
        settings = ControllerSettings((one.address, two.address), ca.ca_path)
        with HeartbeatScheduler(settings, [ControllerLink(agent, doc("h1"), TokenSource({"": "tok-h1-secret"}))]):
            assert wait_for(lambda: len(one.service.of("heartbeat")) >= 1)
            one.stop()
            # Two shares nothing with one here: it says NOT_FOUND, the agent registers there.
            assert wait_for(lambda: len(two.service.of("heartbeat")) >= 1, timeout=10)
            assert len(two.service.of("register")) == 1
    finally:
        one.stop()
        two.stop()
        agent.close()


def test_heartbeats_of_many_hosts_are_spread_over_the_interval(tmp_path: Path, ca: CertificateAuthority) -> None:
    n, interval = 40, 0.7
    names = [f"h{i}" for i in range(n)]
    service = ScriptedController({name: f"tok-{name}" for name in names}, interval=interval)
    server = ControllerServer(ca, service)
    agents = [make_agent(tmp_path, name, f"10.0.1.{i + 1}") for i, name in enumerate(names)]
    tokens = TokenSource({name: f"tok-{name}" for name in names})
    links = [ControllerLink(a, doc(a.host, a.driver.underlay_ip), tokens) for a in agents]
    try:
        with HeartbeatScheduler(ControllerSettings((server.address,), ca.ca_path), links,
                                per_host_logs=False) as beats:
            assert beats.wait(lambda s: s.registered == n, timeout=10)
            registered_at = max(c.at for c in service.of("register"))

            def beats_by_host() -> dict[str, list[float]]:
                return {name: [c.at for c in service.of("heartbeat", name)] for name in names}

            # Every host once per interval: its first four beats span three intervals (a beat
            # held up by a busy machine is late on its own; the next keeps the phase).
            assert wait_for(lambda: all(len(t) >= 4 for t in beats_by_host().values()), timeout=20)
            spans = {h: (t[3] - t[0]) / interval for h, t in beats_by_host().items()}
            assert all(2.5 <= span <= 4.5 for span in spans.values()), spans
            firsts = sorted(t[0] - registered_at for t in beats_by_host().values())
            # The hosts' first heartbeats spread over the interval, not in one burst.
            assert firsts[-1] - firsts[0] > 0.6 * interval, firsts
            per_tenth = [sum(1 for f in firsts if k * 0.1 <= f % interval < (k + 1) * 0.1) for k in range(10)]
            assert max(per_tenth) <= n // 3, per_tenth
    finally:
        server.stop()
        for a in agents:
            a.close()


def test_a_refused_token_is_retried_from_the_file_and_never_logged(
        tmp_path: Path, ca: CertificateAuthority, controller: ControllerServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="l2vpc")
    agent = make_agent(tmp_path, "h1")
    path = token_file(tmp_path / "token", {"": "tok-wrong-secret"})
    tokens = TokenSource.from_file(path)
    try:
        with HeartbeatScheduler(ControllerSettings((controller.address,), ca.ca_path),
                                [ControllerLink(agent, doc("h1"), tokens)]) as beats:
            assert beats.wait(lambda s: "register: UNAUTHENTICATED" in s.problems, timeout=5)
            time.sleep(0.01)  # a different mtime for the new file
            token_file(path, {"": "tok-h1-secret"})  # the operator puts the right token in place
            assert beats.wait(lambda s: s.registered == 1, timeout=20)
            assert wait_for(lambda: len(controller.service.of("heartbeat")) >= 1)
    finally:
        agent.close()
    text = caplog.text
    assert "UNAUTHENTICATED" in text and "registered" in text
    assert "tok-wrong-secret" not in text and "tok-h1-secret" not in text


def test_token_files(tmp_path: Path) -> None:
    path = token_file(tmp_path / "tokens", {"h1": "t1", "h2": "t2"})
    tokens = TokenSource.from_file(path)
    assert (tokens.get("h1"), tokens.get("h2"), tokens.get("h3")) == ("t1", "t2", None)
    with pytest.raises(HeartbeatError, match="has no token for h3"):
        tokens.require(["h1", "h3"])
    os.chmod(path, 0o644)
    with pytest.raises(HeartbeatError, match=r"readable by others \(mode 0644\)"):
        TokenSource.from_file(path)
    bad = token_file(tmp_path / "bad", {"h1": "t1 extra"})
    with pytest.raises(HeartbeatError, match="line 1: expected TOKEN or HOST TOKEN"):
        TokenSource.from_file(bad)
    with pytest.raises(HeartbeatError, match="No such file"):
        TokenSource.from_file(tmp_path / "missing")
    with pytest.raises(HeartbeatError, match="is not HOST:PORT"):
        ControllerSettings(("controller",), tmp_path / "ca.pem")


def _agent_cli(*args: str, env: dict[str, str] | None = None) -> list[str]:
    return [sys.executable, "-m", "l2vpc.agent", *args]


def test_agent_run_flags(tmp_path: Path, ca: CertificateAuthority, controller: ControllerServer) -> None:
    """`l2vpc agent run --controller ...` registers its host; bad flag sets are refused."""
    server_tls = ca.issue_server("h1")
    env = {**os.environ, "PYTHONPATH": str(Path(l2vpc.__file__).resolve().parent.parent)}
    env.pop("L2VPC_AGENT_TOKEN", None)
    base = ["run", "--host", "h1", "--underlay-ip", "10.0.0.1", "--state-dir", str(tmp_path / "state"),
            "--driver", "memory", "--ca", str(server_tls.ca), "--cert", str(server_tls.cert), "--key",
            str(server_tls.key), "--listen", f"unix:{tmp_path / 'h1.sock'}"]
    for extra, message in (
        (["--token-file", "x"], "--token-file: only with --controller"),
        (["--controller", controller.address], "--controller-ca: required"),
        (["--controller", controller.address, "--controller-ca", str(ca.ca_path), "--region", "r1"],
         "--token-file: required"),
        (["--controller", controller.address, "--controller-ca", str(ca.ca_path),
          "--token-file", str(token_file(tmp_path / "tok", {"": "tok-h1-secret"}))], "--region: required"),
    ):
        out = subprocess.run(_agent_cli(*base, *extra), capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 1 and message in out.stderr, (extra, out.stderr)
    argv = _agent_cli(*base, "--listen", "127.0.0.1:0", "--controller", controller.address, "--controller-ca",
                      str(ca.ca_path), "--token-file", str(tmp_path / "tok"), "--region", "r1",
                      "--agent-address", "192.0.2.1:7600")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert wait_for(lambda: len(controller.service.of("heartbeat")) >= 1, timeout=30), \
            proc.stderr.read() if proc.poll() is not None and proc.stderr else "no heartbeat"
        (reg,) = controller.service.of("register")
        assert isinstance(reg.request, cpb.RegisterRequest)
        assert json.loads(reg.request.host_json) == {"name": "h1", "region": "r1", "role": "compute",
                                                     "underlay_ip": "10.0.0.1", "agent_address": "192.0.2.1:7600"}
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
        assert proc.stderr is not None
        log = proc.stderr.read()
    assert "registered with the controller" in log and "tok-h1-secret" not in log


def test_a_push_hashes_nothing_until_the_digest_is_asked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A push from the engine needs no digest: it is computed at the first ask, once, from the
    converge's facts (also while the next converge holds the driver)."""
    import l2vpc.agent.core as core

    calls: list[int] = []

    def counted(cfg: Any) -> str:
        calls.append(1)
        return config_digest(cfg)

    monkeypatch.setattr(core, "config_digest", counted)
    agent = make_agent(tmp_path, "h1")
    try:
        agent.push(sample(1))
        agent.push(sample(2))
        assert calls == []
        agent._converge_lock.acquire()  # a converge runs: the digest comes from the last one's facts
        try:
            assert agent.actual_digest(max_age=0) == config_digest(agent.driver.facts())
        finally:
            agent._converge_lock.release()
        assert agent.actual_digest(max_age=60) == config_digest(agent.driver.facts())
        assert len(calls) == 1
    finally:
        agent.close()
