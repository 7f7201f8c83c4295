"""Helper daemons (dnsmasq, udhcpc) run inside a namespace, tracked by pidfiles we write.

A process is ours only if its command line still contains the marker we started it with (a
path in our state dir), so a recycled pid is never signalled. Daemons stay in the foreground
(their output goes to a log file beside the pidfile) and run in their own session, so they
outlive an agent restart and a new driver object adopts them through the pidfile.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from l2vpc.paths import process_running

NSENTER = "nsenter"


def start(netns_path: str | None, argv: list[str], pidfile: Path, log: Path, env: dict[str, str] | None = None) -> int:
    """Start argv inside the namespace and record its pid; returns the pid.

    nsenter --net joins the namespace and execs the program, so the pid is the daemon's own.
    """
    cmd = ([NSENTER, f"--net={netns_path}", "--"] if netns_path else []) + argv
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=env,
        )
    # Popen keeps a handle to reap the child; dropping it is fine (stop() reaps by pid).
    proc.returncode = 0  # tell Popen.__del__ not to warn: we manage the pid ourselves
    tmp = pidfile.with_suffix(".tmp")
    tmp.write_text(f"{proc.pid}\n")
    tmp.replace(pidfile)
    wait_exec(proc.pid, argv)
    return proc.pid


def wait_exec(pid: int, argv: list[str], timeout: float = 2.0) -> None:
    """Wait until `pid` runs `argv`: mid-exec a process briefly shows an empty command line (the
    new memory is in place before its arguments are), so a check by command line right after a
    start could take a live daemon for a dead one."""
    want = b"\0".join(a.encode() for a in argv) + b"\0"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read() == want:
                    return
        except OSError:
            return
        if exited(pid):
            return
        time.sleep(0.001)


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def alive(pid: int | None, marker: str) -> bool:
    """True if pid runs (not a zombie) and its command line contains marker."""
    if not pid:
        return False
    _reap(pid)
    return process_running(pid, marker)


def exited(pid: int) -> bool:
    """True once pid is gone or a zombie. (Mid-exec a live process briefly shows an empty
    command line, so `alive` is not the opposite of this.)"""
    _reap(pid)
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] == b"Z"
    except OSError:
        return True


def signal_if_ours(pid: int | None, marker: str, sig: int) -> bool:
    if not alive(pid, marker):
        return False
    assert pid is not None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    return True


def stop(pidfile: Path, marker: str, timeout: float = 2.0) -> None:
    """SIGTERM, then SIGKILL after timeout; removes the pidfile. Gone already is fine."""
    pid = read_pid(pidfile)
    if signal_if_ours(pid, marker, signal.SIGTERM):
        assert pid is not None
        deadline = time.monotonic() + timeout
        while alive(pid, marker):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)
        _wait_reaped(pid, deadline + timeout)
    with contextlib.suppress(FileNotFoundError):
        pidfile.unlink()


def _wait_reaped(pid: int, deadline: float) -> None:
    """Collect our child's exit status. A multi-threaded daemon shows `Z` while its other
    threads still exit, and cannot be waited for until they have: keep trying until then."""
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return  # not our child (init reaps it) or already collected
        except OSError:
            return
        if done == pid:
            return
        time.sleep(0.005)


def _reap(pid: int) -> None:
    # Our own children turn into zombies until waited for; others raise ChildProcessError.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
