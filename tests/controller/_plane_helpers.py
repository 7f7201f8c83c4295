"""Helpers of the control-plane tests: agents that heartbeat, a small topology, waiting."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from l2vpc.agent.local import LocalAgentPool
from l2vpc.controller.plane import ClusterPlane
from l2vpc.engine.api import Engine

HOSTS: list[dict[str, Any]] = [
    {"name": "c1", "region": "r1", "underlay_ip": "10.0.0.1"},
    {"name": "c2", "region": "r1", "underlay_ip": "10.0.0.2"},
    {"name": "e1", "region": "r1", "role": "edge", "location": "nyc1", "underlay_ip": "10.0.0.11",
     "public_cidr": "203.0.113.32/28", "public_gateway": "203.0.113.33"},
    {"name": "e2", "region": "r1", "role": "edge", "location": "nyc1", "underlay_ip": "10.0.0.12",
     "public_cidr": "203.0.113.48/28", "public_gateway": "203.0.113.49"},
]


def wait_for(cond: Callable[[], Any], timeout: float, what: str, step: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


class Heartbeater:
    """What agents do: heartbeat every `interval` with what they run (memory agents), to
    `plane`. `pause(host)` stops one host's heartbeats (a dead or partitioned agent)."""

    def __init__(self, plane: ClusterPlane, pool: LocalAgentPool, hosts: list[str], interval: float) -> None:
        self.plane, self.pool, self.hosts, self.interval = plane, pool, hosts, interval
        self.paused: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            clients = self.pool.clients()
            for name in self.hosts:
                if name in self.paused:
                    continue
                client = clients.get(name)
                if client is None:  # never pushed to yet
                    self.plane.heartbeat(name, 0, 0, False, "")
                    continue
                health = client.agent.health()
                self.plane.heartbeat(name, health.accepted_generation, health.converged_generation, health.converging,
                                     client.agent.actual_digest())

    def __enter__(self) -> Heartbeater:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def build(engine: Engine) -> dict[str, str]:
    """A VPC with DHCP carried by c1 and c2, a direct connect and a VPN on the edges; ids."""
    vpc = engine.create("vpc", {"name": "v", "region": "r1", "cidr": "10.1.0.0/24",
                                "dhcp": {"range_start": "10.1.0.100", "range_end": "10.1.0.150"}})
    atts = [engine.create("attachment", {"vpc_id": vpc.id, "workload": f"w{n}", "host": f"c{n}", "ip_mode": "dhcp"})
            for n in (1, 2)]
    dx = engine.create("direct_connect", {"name": "dx", "vpc_id": vpc.id, "location": "nyc1",
                                          "bandwidth_mbps": 1000, "mode": "layer2"})
    vpn = engine.create("vpn", {"name": "vp", "vpc_id": vpc.id, "peer_address": "198.51.100.7",
                                "pre_shared_key": "secretkey123", "remote_cidrs": ["192.168.50.0/24"]})
    return {"vpc": vpc.id, "att1": atts[0].id, "att2": atts[1].id, "dx": dx.id, "vpn": vpn.id}
