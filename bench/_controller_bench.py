"""Pieces the controller benches share: a throwaway PostgreSQL, a CA, controller and fleet
processes, an API client with a token, and CPU accounting from /proc.

Processes run the same code the commands do (`l2vpc controller run`, `l2vpc agent fleet`);
each logs to a file in the bench's temporary directory, shown when it fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from l2vpc._proto import controller_pb2 as cpb
from l2vpc._proto import controller_pb2_grpc as cpb_grpc
from l2vpc.agent.fleet import issue_fleet_certificate
from l2vpc.pki import CertificateAuthority, write_private
from l2vpc.testing import postgres as pg_server

ROOT = Path(__file__).resolve().parents[1]

CLK_TCK = os.sysconf("SC_CLK_TCK")
PY = [sys.executable, "-c", "import sys; from l2vpc.cli import main; sys.exit(main())"]
AGENT = [sys.executable, "-m", "l2vpc.agent"]


def env(secret_key: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
            "L2VPC_SECRET_KEY": secret_key}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------ processes


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def check(self) -> None:
        if self.popen.poll() is not None:
            raise SystemExit(f"{self.name} exited ({self.popen.returncode}): {tail(self.log)}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start(name: str, argv: Sequence[str], directory: Path, environ: dict[str, str]) -> Proc:
    log = directory / f"{name}.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 env=environ, start_new_session=True)
    return Proc(name, popen, log)


@dataclass
class Cluster:
    """Everything a bench started; stopped in reverse order."""

    directory: Path
    environ: dict[str, str]
    pki: Path
    procs: list[Proc] = field(default_factory=list)

    def add(self, proc: Proc) -> Proc:
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.stop()


def make_pki(directory: Path) -> CertificateAuthority:
    ca = CertificateAuthority.create(directory)
    ca.issue_server("controller")
    ca.issue_client("engine")
    return ca


def start_controller(cluster: Cluster, store_url: str, name: str, *, heartbeat_interval: float,
                     down_after: float, resync_interval: float, workers: int = 32,
                     listen: str = "127.0.0.1:0", extra: Sequence[str] = ()) -> tuple[Proc, str]:
    ready = cluster.directory / f"{name}.ready"
    ready.unlink(missing_ok=True)
    argv = [*PY, "controller", "run", "--store", store_url, "--listen", listen, "--pki", str(cluster.pki),
            "--id", name, "--heartbeat-interval", str(heartbeat_interval), "--down-after", str(down_after),
            "--resync-interval", str(resync_interval), "--workers", str(workers), "--ready-file", str(ready),
            "--log-level", "warning", *extra]
    proc = cluster.add(start(name, argv, cluster.directory, cluster.environ))
    deadline = time.monotonic() + 60
    while not ready.exists():
        proc.check()
        if time.monotonic() > deadline:
            raise SystemExit(f"{name} did not get ready: {tail(proc.log)}")
        time.sleep(0.05)
    return proc, ready.read_text().strip()


def start_fleet(cluster: Cluster, name: str, hosts: list[dict[str, str]], tokens: dict[str, str],
                controllers: Sequence[str], ca: CertificateAuthority, address: str) -> Proc:
    d = cluster.directory / name
    d.mkdir()
    hosts_file = d / "hosts.json"
    hosts_file.write_text(json.dumps([{k: v for k, v in h.items() if k != "agent_address"} for h in hosts]))
    token_file = d / "tokens"
    write_private(token_file, "".join(f"{h['name']} {tokens[h['name']]}\n" for h in hosts).encode())
    tls = issue_fleet_certificate(ca, name, [h["name"] for h in hosts])
    argv = [*AGENT, "fleet", "--hosts", str(hosts_file), "--state-dir", str(d / "state"), "--listen", address,
            "--ca", str(tls.ca), "--cert", str(tls.cert), "--key", str(tls.key), "--controller-ca",
            str(cluster.pki / "ca.pem"), "--token-file", str(token_file), "--log-level", "warning"]
    for c in controllers:
        argv += ["--controller", c]
    return cluster.add(start(name, argv, cluster.directory, cluster.environ))


# ------------------------------------------------------------------------------ API


class Api:
    """One controller's API with one token."""

    def __init__(self, address: str, ca: Path, token: str) -> None:
        creds = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
        self.channel = grpc.secure_channel(address, creds)
        self.stub = cpb_grpc.ControllerStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),)

    def status(self) -> cpb.StatusReply:
        reply: cpb.StatusReply = self.stub.Status(cpb.StatusRequest(), metadata=self.metadata, timeout=30)
        return reply

    def converge(self, timeout: float) -> cpb.ConvergeEvent:
        last = None
        for event in self.stub.Converge(cpb.ConvergeRequest(timeout_seconds=timeout), metadata=self.metadata,
                                        timeout=timeout + 10):
            last = event
        assert last is not None and last.done
        return last

    def create(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        reply = self.stub.Create(cpb.CreateRequest(kind=kind, data_json=json.dumps(data)), metadata=self.metadata,
                                 timeout=30)
        return dict(json.loads(reply.data_json))

    def close(self) -> None:
        self.channel.close()


# ------------------------------------------------------------------------------ CPU


def _times(pid: int) -> tuple[int, int]:
    """(own utime+stime, reaped children's cutime+cstime) in clock ticks; (0, 0) if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0, 0
    # fields[0] is state (field 3); utime, stime, cutime, cstime are fields 14..17.
    return int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(entry))
    return out


def tree_ticks(pid: int) -> int:
    """CPU ticks of a process and of its children, live and reaped (PostgreSQL's backends)."""
    own, reaped = _times(pid)
    return own + reaped + sum(_times(c)[0] for c in _children(pid))


def postmaster_pid(pg: pg_server.PgServer) -> int:
    pidfile = pg.root / "data" / "postmaster.pid"
    return int(pidfile.read_text().split()[0])


def cpu_percent(pids: dict[str, int], seconds: float, tree: Sequence[str] = ()) -> dict[str, float]:
    """% of one core each process (and, for names in `tree`, its children) used over `seconds`."""
    def sample() -> dict[str, int]:
        return {n: tree_ticks(p) if n in tree else _times(p)[0] for n, p in pids.items()}

    before, t0 = sample(), time.monotonic()
    time.sleep(seconds)
    after, t1 = sample(), time.monotonic()
    return {n: 100.0 * (after[n] - before[n]) / CLK_TCK / (t1 - t0) for n in pids}


@contextmanager
def postgres(durable: bool) -> Iterator[pg_server.PgServer]:
    reason = pg_server.missing_reason()
    if reason:
        raise SystemExit(f"cannot run: {reason}")
    with pg_server.running_server(durable=durable, max_connections=200) as pg:
        yield pg
