"""The lab's process starts: a started program is known by its command line at once."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from l2vpc.lab import processes

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a network namespace")


def test_a_program_started_in_a_namespace_is_alive_by_its_marker_the_moment_start_returns(tmp_path: Path) -> None:
    # `ip netns exec` execs the program after setting up the namespace; mid-exec the process
    # shows an empty command line for a moment, and a check right after the start took a
    # booting VM for one that had exited (the demo in CI).
    netns = f"l2t-proc-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    pids = []
    try:
        for i in range(60):
            marker = str(tmp_path / f"marker-{i}")
            pid = processes.start(["ip", "netns", "exec", netns, "sh", "-c", "sleep 30; :", marker],
                                  tmp_path / f"{i}.pid", tmp_path / f"{i}.log")
            pids.append((pid, marker))
            assert processes.alive(pid, marker), f"start {i} returned before its program ran"
    finally:
        for pid, marker in pids:
            processes.kill(pid, marker)
        subprocess.run(["ip", "netns", "del", netns], check=False)
    assert not any(processes.alive(pid, marker) for pid, marker in pids)


def test_a_start_through_nsenter_returns_once_the_program_runs(tmp_path: Path) -> None:
    # The lab's controllers and, with a controller, its agents start as `nsenter --net=NS --
    # program...`; the start waited for nsenter's own command line, which never comes back after
    # its exec, and so took its whole 10 s wait per process (30 s for `lab up --hosts 3`).
    assert processes.final_argv(["nsenter", "--net=/run/netns/x", "--", "prog", "a"]) == ["prog", "a"]
    assert processes.final_argv(["ip", "netns", "exec", "x", "prog"]) == ["prog"]
    assert processes.final_argv(["prog", "--", "a"]) == ["prog", "--", "a"]
    netns = f"l2t-nse-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    marker = str(tmp_path / "marker")
    pid = None
    try:
        started = time.monotonic()
        pid = processes.start(["nsenter", f"--net=/run/netns/{netns}", "--", "sh", "-c", "sleep 30; :", marker],
                              tmp_path / "p.pid", tmp_path / "p.log")
        waited = time.monotonic() - started
        assert processes.alive(pid, marker), (tmp_path / "p.log").read_text()
        assert waited < 5.0, f"start waited {waited:.1f}s: for nsenter's command line, until its timeout (10 s)"
    finally:
        processes.kill(pid, marker)
        subprocess.run(["ip", "netns", "del", netns], check=False)
