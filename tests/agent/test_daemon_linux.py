"""Agent processes with the Linux driver on namespaced hosts: SIGKILL and restart lose nothing."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from l2vpc._proto import agent_pb2 as pb
from l2vpc.agentapi import wire
from l2vpc.hostconfig import DhcpServer, HostConfig, Port, Reservation, Segment

from .conftest import Host, Lab, sh
from .daemon_helpers import Pki, client, make_pki, push

pytestmark = pytest.mark.root


class AgentProcess:
    """`python -m l2vpc.agent run` for one lab host, restartable with the same arguments."""

    def __init__(self, host: Host, state_dir: Path, sock: Path, pki: Pki) -> None:
        tls = pki.server(host.name)
        self.host = host
        self.address = f"unix:{sock}"
        self.argv = [
            sys.executable, "-m", "l2vpc.agent", "run", "--host", host.name, "--underlay-ip", host.underlay_ip,
            "--listen", self.address, "--state-dir", str(state_dir), "--driver", "linux",
            "--netns", host.netns, "--prefix", host.prefix, "--virtual-servers", "netns",
            "--ca", str(tls.ca), "--cert", str(tls.cert), "--key", str(tls.key),
        ]
        self.log = state_dir.parent / f"{host.name}.log"
        self.pki = pki
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT)

    def health(self, timeout: float = 15) -> pb.HealthResponse:
        """Wait until the agent answers and has no converge pending."""
        channel, s = client(self.address, self.pki.engine, host=self.host.name)
        deadline = time.monotonic() + timeout
        with channel:
            while True:
                try:
                    h = s.Health(pb.HealthRequest(), timeout=1)
                    if not h.converging:
                        return h
                except grpc.RpcError:
                    pass
                assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
                assert time.monotonic() < deadline, f"agent {self.host.name} not ready: {self.log.read_text()}"
                time.sleep(0.02)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)


@pytest.fixture
def agents(lab: Lab, tmp_path: Path) -> Iterator[list[AgentProcess]]:
    pki = make_pki(tmp_path / "pki")
    sockdir = Path(tempfile.mkdtemp(prefix="l2a", dir="/tmp"))  # unix socket paths must stay short
    procs: list[AgentProcess] = []
    try:
        for _ in range(2):
            host = lab.add_host()
            state = tmp_path / f"agent-{host.name}"
            # The lab fixture tears down through a driver on host.state_dir: point it at the agent's.
            host.state_dir = state / "driver"
            procs.append(AgentProcess(host, state, sockdir / f"{host.name}.sock", pki))
        for a in procs:
            a.start()
        yield procs
    finally:
        for a in procs:
            a.kill()
            a.host.driver()  # the lab fixture removes what this driver's state says was created
        for f in sockdir.iterdir():
            f.unlink()
        sockdir.rmdir()


def configs(hosts: list[Host], generation: int) -> list[HostConfig]:
    (h1, h2) = hosts
    server = DhcpServer(200, "10.20.0.254/24", "10.20.0.100", "10.20.0.150",
                        reservations=(Reservation("02:00:00:00:02:02", "10.20.0.22"),))
    out = []
    for me, other in ((h1, h2), (h2, h1)):
        n = 1 if me is h1 else 2
        out.append(HostConfig(
            me.name, me.underlay_ip, generation,
            segments=(Segment(100, "vpc-a", 9000, (other.underlay_ip,)),
                      Segment(200, "vpc-b", 1500, (other.underlay_ip,))),
            ports=(Port(f"pa{n}", 100, f"w{n}", "net1", f"02:00:00:00:01:0{n}", 9000, ip_mode="static",
                        ip_address=f"10.10.0.{n}/24"),
                   Port(f"pb{n}", 200, f"w{n}", "net2", f"02:00:00:00:02:0{n}", 1500, ip_mode="dhcp")),
            dhcp_servers=(server,) if me is h1 else (),
        ))
    return out


def snapshot(host: Host) -> list[str]:
    """Every device of the host and of its workloads with ifindex and MTU (a recreation changes them)."""
    out = [f"{host.netns} {line.split('@')[0]}" for line in
           re.findall(r"^(\d+: \S+)", sh("ip", "-n", host.netns, "-o", "link").stdout, re.M)]
    for w in ("w1", "w2"):
        ns = host.workload(w)
        if Path(f"/run/netns/{ns}").exists():
            out += [f"{ns} {line.split('@')[0]}" for line in
                    re.findall(r"^(\d+: \S+)", sh("ip", "-n", ns, "-o", "link").stdout, re.M)]
    return sorted(out)


def workload_addr(host: Host, workload: str, ifname: str) -> str | None:
    out = host.run(workload, "ip", "-4", "-o", "addr", "show", "dev", ifname).stdout
    m = re.search(r"inet (\S+)", out)
    return m.group(1) if m else None


def daemons(tmp: Path) -> list[str]:
    """pids and command lines of dnsmasq/udhcpc started for our state dirs."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes()
        except OSError:
            continue
        if str(tmp).encode() in cmd and (b"dnsmasq" in cmd or b"udhcpc" in cmd):
            program = cmd.split(b"\0")[0].decode()
            out.append(f"{p.name} {program}")
    return sorted(out)


def test_sigkill_and_restart_reconverges_without_disruption(agents: list[AgentProcess], tmp_path: Path) -> None:
    hosts = [a.host for a in agents]
    for a, cfg in zip(agents, configs(hosts, 1), strict=True):
        a.health()
        channel, s = client(a.address, a.pki.engine, host=a.host.name)
        with channel:
            reply = push(s, cfg)
        assert reply.status == pb.PushResponse.CONVERGED, reply.failures
    h1, h2 = hosts
    deadline = time.monotonic() + 5
    while not (workload_addr(h2, "w2", "net2") == "10.20.0.22/24" and workload_addr(h1, "w1", "net2")):
        assert time.monotonic() < deadline, "no DHCP leases"
        time.sleep(0.05)
    assert h1.run("w1", "ping", "-c", "1", "-W", "2", "10.10.0.2").returncode == 0
    assert h1.run("w1", "ping", "-c", "1", "-W", "2", "-M", "do", "-s", "8972", "10.10.0.2").returncode == 0
    before = [snapshot(h) for h in hosts]
    helpers = daemons(tmp_path)
    assert len(helpers) == 3, helpers  # one dnsmasq, two udhcpc

    pinger = subprocess.Popen(
        ["ip", "netns", "exec", h1.workload("w1"), "ping", "-i", "0.01", "-c", "300", "-W", "1", "10.20.0.22"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        time.sleep(0.3)
        for a in agents:
            a.kill(signal.SIGKILL)  # no chance to clean up anything
        for a in agents:
            a.start()
        for a in agents:
            h = a.health()
            assert (h.accepted_generation, h.converged_generation, h.last_converge_ok) == (1, 1, True)
        out, _ = pinger.communicate(timeout=30)
    finally:
        if pinger.poll() is None:
            pinger.kill()
            pinger.wait()
    assert re.search(r"300 packets transmitted, 300 received", out), out

    # Same devices with the same ifindexes (nothing recreated, nothing doubled), same helpers.
    assert [snapshot(h) for h in hosts] == before
    assert daemons(tmp_path) == helpers
    for a, cfg in zip(agents, configs(hosts, 1), strict=True):
        channel, s = client(a.address, a.pki.engine, host=a.host.name)
        with channel:
            st = s.GetState(pb.GetStateRequest(), timeout=5)
        assert wire.config_from_pb(st.actual).same_dataplane(cfg)
        log = a.log.read_text()
        assert "re-converging persisted generation 1" in log
        assert "generation 1 converged: 0 actions, 0 failures" in log  # the restart changed nothing
