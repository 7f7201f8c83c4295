"""Leadership between controllers in separate processes on one real PostgreSQL: exactly one
leads, a follower's Converge is done by the leader in another process, and when the leader is
SIGKILLed another process takes over within 10 s."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from l2vpc.agent.local import LocalAgentPool
from l2vpc.controller.plane import ClusterPlane, read_status
from l2vpc.engine.secrets import SecretBox
from l2vpc.engine.store.postgres import PostgresStore

from ._plane_helpers import wait_for

CHILD = str(Path(__file__).with_name("_plane_child.py"))


class Child:
    def __init__(self, url: str, name: str) -> None:
        self.name = name
        self.proc = subprocess.Popen([sys.executable, CHILD, url, name], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=os.environ.copy())
        self.lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.role = ""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def poll(self) -> str:
        while not self.lines.empty():
            self.role = self.lines.get_nowait()
        return self.role

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def children(db: Any, secret_key: str) -> Iterator[list[Child]]:
    kids = [Child(db.url, "proc-a"), Child(db.url, "proc-b")]
    try:
        yield kids
    finally:
        for k in kids:
            k.stop()


def lock_holders(db: Any) -> int:
    return int(db.raw("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                      "WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = 'l2vpc leader reconciler'")
               [0][0])


def test_exactly_one_process_leads_and_another_takes_over_when_it_is_killed(children: list[Child], db: Any,
                                                                             secret_key: str) -> None:
    wait_for(lambda: all(k.poll() for k in children), 20, "both controllers to start")
    leader = wait_for(lambda: next((k for k in children if k.poll().startswith("leading")), None), 5, "a leader")
    other = next(k for k in children if k is not leader)
    time.sleep(1.0)  # several ticks: the follower keeps trying and keeps failing
    assert other.poll() == "following" and leader.poll().startswith("leading")
    assert lock_holders(db) == 1
    term = int(leader.poll().split()[1])

    # A Converge asked of a controller in this process is done by the leader in its own.
    with PostgresStore(db.url) as store:
        plane = ClusterPlane(store, LocalAgentPool(), SecretBox(secret_key.encode()), controller_id="proc-c",
                             heartbeat_interval=0.2, tick=0.2)
        plane.start()
        try:
            plane.register({"name": "h1", "region": "r1", "underlay_ip": "10.0.0.1"})
            took = []
            for _ in range(3):
                started = time.monotonic()
                rev = plane.request_converge()
                out = plane.wait_converged(rev, 10, None, lambda: False)
                took.append(time.monotonic() - started)
                assert out.revision >= rev and out.failures == () and not plane.leading
            print("Converge through a follower, leader in another process: "
                  + ", ".join(f"{t * 1000:.0f} ms" for t in took))
            status = plane.status()
            assert (status.leader, status.term) == (leader.name, term)
        finally:
            plane.stop()

        leader.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: other.poll().startswith("leading"), 10, f"{other.name} to take over")
        takeover = time.monotonic() - killed
        print(f"takeover after SIGKILL of the leader: {takeover:.2f} s")
        assert takeover < 10
        assert int(other.poll().split()[1]) > term
        status = read_status(store)
        wait_for(lambda: read_status(store).leader == other.name, 2, "the record to name the new leader")
        assert any(e.what.startswith(f"leader changed: {other.name} leads") for e in read_status(store).recent)
        assert status.converged_revision >= rev
    assert lock_holders(db) == 1
