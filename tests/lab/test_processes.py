"""The lab's process starts: a started program is known by its command line at once."""

from __future__ import annotations

import os
import subprocess
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
