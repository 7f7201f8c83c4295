"""Real agent processes for tests: `python -m l2vpc.agent run --driver memory` (no root needed).

One host's agent on a unix socket with TLS from a test CA, restartable on the same state
directory; tests kill, pause (SIGSTOP: a hung host) and restart them. With `extra` arguments
(`--controller ...`) an agent registers with a controller and heartbeats.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from l2vpc.pki import CertificateAuthority, TlsFiles


class AgentProcess:
    """One host's agent on a unix socket; its log is `<state_dir>/../<name>.log`."""

    def __init__(self, name: str, underlay_ip: str, ca: CertificateAuthority, state_dir: Path, sock: Path,
                 extra: tuple[str, ...] = ()) -> None:
        files = ca.files(name)
        tls = files if files.cert.exists() else ca.issue_server(name)
        self.name = name
        self.address = f"unix:{sock}"
        self.sock = sock
        self.ca = ca
        self.argv = [sys.executable, "-m", "l2vpc.agent", "run", "--host", name, "--underlay-ip", underlay_ip,
                     "--listen", self.address, "--state-dir", str(state_dir), "--driver", "memory",
                     "--ca", str(tls.ca), "--cert", str(tls.cert), "--key", str(tls.key), *extra]
        self.log = state_dir.parent / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str] | None = None) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                         env={**os.environ, **(env or {})})

    def wait_ready(self, engine_tls: TlsFiles, timeout: float = 20, idle: bool = True) -> None:
        """Until the agent answers Health (`idle`: and is not converging)."""
        import grpc

        from l2vpc._proto import agent_pb2 as pb
        from l2vpc.agentapi.channel import open_channel, stub

        deadline = time.monotonic() + timeout
        with open_channel(self.address, self.name, engine_tls) as channel:
            while True:
                try:
                    health = stub(channel).Health(pb.HealthRequest(), timeout=1)
                    if not (idle and health.converging):
                        return
                except grpc.RpcError:
                    pass
                assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
                assert time.monotonic() < deadline, f"agent {self.name} not ready: {self.log.read_text()}"
                time.sleep(0.05)

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.sock.unlink(missing_ok=True)


def signal_a_thread(pid: int, signum: int) -> int:
    """Send `signum` to one of `pid`'s threads other than its main one (tgkill), as the kernel may
    choose to for a signal sent to the process; returns that thread's id."""
    import ctypes

    others = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid)
    if not others:
        raise AssertionError(f"process {pid} has no thread besides its main one")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.tgkill(pid, others[-1], signum) != 0:
        raise OSError(ctypes.get_errno(), f"tgkill({pid}, {others[-1]}, {signum})")
    return others[-1]
