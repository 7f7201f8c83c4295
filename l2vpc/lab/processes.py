"""The lab's agent processes: started in the foreground of their own session, tracked by pidfile.

A pid is only ever signalled if its command line still contains the marker it was started
with (the agent's state dir, unique per lab and host), so a recycled pid is never hit: the
driver's daemon helpers (linux/procs.py) decide that, for the lab too.
Output goes to a log file in the lab dir.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from l2vpc.agent.drivers.linux import procs
from l2vpc.agent.drivers.linux.procs import alive, exited

__all__ = ["alive", "exited", "kill", "log_tail", "start", "stop"]


def start(argv: list[str], pidfile: Path, log: Path, env: dict[str, str] | None = None) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True, env=env)
    proc.returncode = 0  # reaped by pid in alive()/stop(); keep Popen.__del__ quiet
    tmp = pidfile.with_name(pidfile.name + ".tmp")
    tmp.write_text(f"{proc.pid}\n")
    tmp.replace(pidfile)
    procs.wait_exec(proc.pid, final_argv(argv), timeout=10.0)
    return proc.pid


def final_argv(argv: list[str]) -> list[str]:
    """What the process runs once started: `ip netns exec NS program...` and `nsenter ... --
    program...` exec the program (waiting for their own command line would wait out the timeout:
    10 s for every agent and controller of a controller lab)."""
    if argv[:3] == ["ip", "netns", "exec"]:
        return argv[4:]
    if argv[:1] == ["nsenter"] and "--" in argv:
        return argv[argv.index("--") + 1:]
    return argv


def stop(pid: int | None, marker: str, timeout: float = 5.0) -> bool:
    """SIGTERM, then SIGKILL after `timeout`. True if it was running. Gone already is fine."""
    if not procs.signal_if_ours(pid, marker, signal.SIGTERM):
        return False
    assert pid is not None
    deadline = time.monotonic() + timeout
    while alive(pid, marker):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
        time.sleep(0.01)
    return True


def kill(pid: int | None, marker: str) -> bool:
    """SIGKILL (a crash: nothing of the process's own cleanup runs) and wait until it is gone."""
    if not procs.signal_if_ours(pid, marker, signal.SIGKILL):
        return False
    assert pid is not None
    while alive(pid, marker):
        time.sleep(0.01)
    return True


def log_tail(log: Path, lines: int = 5) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""
