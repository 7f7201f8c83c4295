"""Daemons the agent stops must not stay behind as zombies.

Seen on the lab: after `terraform destroy` of a VPN, edge1's agent kept a `[charon-systemd]
<defunct>` child for good. `procs.stop` waits while `alive()` says so, and `alive()` is False as
soon as /proc/<pid>/stat shows `Z`; but a multi-threaded daemon's leader shows `Z` while its
other threads are still exiting, and waitpid() cannot reap it until they are gone. Nothing
waits for that pid again. Reproduced here with a daemon whose threads outlive its leader by
half a second.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import pytest

from l2vpc.agent.drivers.linux import procs

SYS_EXIT = {"x86_64": 60, "aarch64": 93}  # exit(2): the calling thread only

LINGERING = """
import ctypes, signal, sys, threading, time
libc = ctypes.CDLL(None)
stop = threading.Event()
def worker():
    stop.wait()
    time.sleep(0.5)  # shutting down, as charon's worker threads do
threading.Thread(target=worker).start()
def on_term(*_):
    stop.set()
    libc.syscall(int(sys.argv[1]), 0)
signal.signal(signal.SIGTERM, on_term)
while True:
    time.sleep(1)
"""


def state_of(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[-1].split()[0].decode()
    except OSError:
        return None


@pytest.mark.skipif(platform.machine() not in SYS_EXIT, reason="needs the exit(2) syscall number")
def test_stop_reaps_a_daemon_whose_threads_outlive_its_leader(tmp_path: Path) -> None:
    script = tmp_path / "lingering.py"
    script.write_text(LINGERING)
    pidfile, marker = tmp_path / "daemon.pid", str(script)
    pid = procs.start(None, [sys.executable, marker, str(SYS_EXIT[platform.machine()])], pidfile,
                      tmp_path / "daemon.log")
    try:
        time.sleep(0.2)  # its SIGTERM handler is installed
        procs.stop(pidfile, marker)
        time.sleep(1.0)  # the worker thread is long gone
        assert state_of(pid) is None, f"pid {pid} is left in state {state_of(pid)}"
    finally:
        if state_of(pid) not in (None, "Z"):
            os.kill(pid, 9)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
