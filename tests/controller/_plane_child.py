"""A controller's control loop in a process of its own, for test_plane_processes.py.

    python _plane_child.py <database url> <controller id>

Runs a ClusterPlane (memory agents, fast ticks) and prints one line per change of role:
`ready`, then `leading <term>` / `following`. Exits when stdin closes (or when killed).
"""

from __future__ import annotations

import sys
import threading

from l2vpc.agent.local import LocalAgentPool
from l2vpc.controller.plane import ClusterPlane
from l2vpc.engine.secrets import SecretBox
from l2vpc.engine.store.postgres import PostgresStore


def main() -> None:
    url, name = sys.argv[1], sys.argv[2]
    store = PostgresStore(url)
    plane = ClusterPlane(store, LocalAgentPool(), SecretBox.for_state(None), controller_id=name,
                         heartbeat_interval=0.2, tick=0.2)
    plane.start()
    done = threading.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()
        done.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    print("ready", flush=True)
    role = ""
    while not done.wait(0.01):
        now = f"leading {plane.elector.term}" if plane.leading else "following"
        if now != role:
            role = now
            print(role, flush=True)
    plane.stop()
    store.close()


if __name__ == "__main__":
    main()
