"""In-process agents: the real Agent on the memory driver, for hosts that run no agent process.

    pool = LocalAgentPool(seed=engine.actual_configs())   # what each host last reported
    engine = Engine(store, pool)
    engine.converge()                                    # every host converges in memory

The embedded engine simulates hosts without an agent address with it (the memory lab, `l2vpc
apply --agents memory`), and tests use it as the agents. It is the same `Agent` and the same
converge template as a real host's, so a simulated host plans, rejects, refuses stale generations
and reports exactly like a real one. Clients follow the engine's agent-client contract (push,
report) without importing the engine: failures are the shared `HostFailed`.

`seed` restores each host's memory driver from a report (a CLI run carries on where the last
one left). To simulate a host's troubles: `faults` queues failures for its next pushes,
`set_actual` changes what it runs behind the agent's back (drift), `restart` gives it a fresh
agent and an empty dataplane (a host that rebooted).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Protocol

from l2vpc.agent.core import Agent
from l2vpc.agent.drivers.memory import MemoryDriver
from l2vpc.hostconfig import HostConfig
from l2vpc.hostconfig.failures import HostFailed, HostFailure, push_failure


class HostLike(Protocol):
    """What a pool needs of a host record (the engine's Host has it)."""

    @property
    def name(self) -> str: ...

    @property
    def underlay_ip(self) -> str: ...


class LocalAgentClient:
    """One in-process host. Thread-safe (the Agent serialises converges)."""

    def __init__(self, agent: Agent, driver: MemoryDriver) -> None:
        self.agent = agent
        self.driver = driver
        self.faults: list[HostFailure] = []
        self._lock = threading.Lock()

    @property
    def host(self) -> str:
        return self.agent.host

    def push(self, config: HostConfig, timeout: float) -> HostConfig:
        with self._lock:
            if self.faults:
                raise HostFailed(self.faults.pop(0))
        outcome = self.agent.push(config)
        failure = push_failure(self.host, outcome.status, ((f.path, f.reason) for f in outcome.failures))
        if failure is not None:
            raise HostFailed(failure)
        assert outcome.actual is not None
        return outcome.actual

    def report(self, timeout: float) -> HostConfig:
        _desired, actual = self.agent.state()
        return actual

    def set_actual(self, config: HostConfig) -> None:
        with self.agent.exclusive():
            self.driver.restore(config)

    def restart(self) -> None:
        self.driver = MemoryDriver(self.driver.host, self.driver.underlay_ip)
        self.agent = Agent(self.driver, None, "memory", virtual_servers="netns")


class LocalAgentPool:
    def __init__(self, seed: Mapping[str, HostConfig] | None = None) -> None:
        self._seed = dict(seed or {})
        self._clients: dict[str, LocalAgentClient] = {}
        self._lock = threading.Lock()

    def client(self, host: HostLike) -> LocalAgentClient:
        with self._lock:
            client = self._clients.get(host.name)
            if client is None or client.driver.underlay_ip != host.underlay_ip:
                driver = MemoryDriver(host.name, host.underlay_ip)
                seed = self._seed.get(host.name)
                if seed is not None and seed.underlay_ip == host.underlay_ip:
                    driver.restore(seed)
                client = self._clients[host.name] = LocalAgentClient(
                    Agent(driver, None, "memory", virtual_servers="netns"), driver)
            return client

    def clients(self) -> dict[str, LocalAgentClient]:
        with self._lock:
            return dict(self._clients)

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.agent.close()
            self._clients.clear()
