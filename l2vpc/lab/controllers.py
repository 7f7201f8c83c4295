"""Controller processes (`l2vpc controller run`) the lab starts, recorded like its agents.

    rec = ControllerRecord.new("c1", listen="0.0.0.0:7700", run_dir=..., netns=switch_ns)
    start(rec, env)                 # env carries L2VPC_STORE and L2VPC_SECRET_KEY, never argv
    wait_ready(rec, timeout=30)     # the ready file names the address it got; or ControllerStartError
    stop(rec) / kill(rec)           # SIGTERM (steps down at once) / SIGKILL (a crash)

A record is plain data (lab.json keeps it as a dict): what was started, where it listens, where
this machine reaches it (`endpoint`), its pidfile and log. A pid is signalled only while its
command line still names the record's ready file (unique per lab and controller), so a recycled
pid is never hit. Nothing here knows about namespaces beyond entering one (`nsenter`), so a
local controller beside the embedded engine can be started the same way.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import l2vpc
from l2vpc.lab import netns, processes

READY_TIMEOUT = 30.0


class ControllerStartError(Exception):
    """A controller exited or did not get ready; the message carries its log's last lines."""


@dataclass
class ControllerRecord:
    id: str
    listen: str  # --listen, inside its namespace
    ready_file: str  # also the marker in its command line
    pidfile: str
    log: str
    netns: str | None = None  # the namespace it runs in (None: this one)
    endpoint: str = ""  # where this machine's root namespace reaches it (known once ready)
    pid: int | None = None
    argv: list[str] | None = None

    @classmethod
    def new(cls, controller_id: str, listen: str, run_dir: Path, log_dir: Path,
            netns: str | None = None) -> ControllerRecord:
        return cls(id=controller_id, listen=listen, ready_file=str(run_dir / f"{controller_id}.ready"),
                   pidfile=str(run_dir / f"{controller_id}.pid"), log=str(log_dir / f"{controller_id}.log"),
                   netns=netns)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def running(self) -> bool:
        return processes.alive(self.pid, self.ready_file)


def command(rec: ControllerRecord, pki_dir: Path, extra: tuple[str, ...] = ()) -> list[str]:
    """Its command line: the store and the sealing key come from the environment (a URL may
    carry a password, which `ps` would show to everyone)."""
    argv = [sys.executable, "-c", "import sys; from l2vpc.cli import main; sys.exit(main())",
            "controller", "run", "--listen", rec.listen, "--pki", str(pki_dir), "--id", rec.id,
            "--ready-file", rec.ready_file, *extra]
    if rec.netns is None:
        return argv
    return ["nsenter", f"--net={netns.path(rec.netns)}", "--", *argv]


def environment(store: str, secret_key: str | None) -> dict[str, str]:
    # The controllers import this very l2vpc, installed or not.
    here = str(Path(l2vpc.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p),
           "L2VPC_STORE": store}
    for key in ("L2VPC_TOKEN", "L2VPC_ENDPOINT", "L2VPC_AGENT_TOKEN"):
        env.pop(key, None)
    if secret_key:
        env["L2VPC_SECRET_KEY"] = secret_key
    return env


def start(rec: ControllerRecord, argv: list[str], env: dict[str, str]) -> None:
    Path(rec.ready_file).unlink(missing_ok=True)
    rec.argv = argv
    rec.pid = processes.start(argv, Path(rec.pidfile), Path(rec.log), env=env)


def wait_ready(rec: ControllerRecord, timeout: float = READY_TIMEOUT) -> str:
    """Wait until it serves; returns the address it listens on (from its ready file)."""
    deadline = time.monotonic() + timeout
    ready = Path(rec.ready_file)
    while True:
        try:
            address = ready.read_text().strip()
            if address:
                return address
        except FileNotFoundError:
            pass
        if not rec.running():
            raise ControllerStartError(f"controller {rec.id} exited: {processes.log_tail(Path(rec.log))}")
        if time.monotonic() > deadline:
            raise ControllerStartError(f"controller {rec.id} did not get ready within {timeout:.0f}s: "
                                       f"{processes.log_tail(Path(rec.log))}")
        time.sleep(0.05)


def stop(rec: ControllerRecord) -> bool:
    """SIGTERM (it steps down at once), SIGKILL if it hangs. True if it was running."""
    return processes.stop(rec.pid, rec.ready_file, timeout=15.0)


def kill(rec: ControllerRecord) -> bool:
    """SIGKILL: a crash (its lease lapses; another controller takes over)."""
    return processes.kill(rec.pid, rec.ready_file)
