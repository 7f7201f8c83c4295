"""The engine in-process on a state file: what the CLI, the provider and the lab open.

Hosts registered with an agent address are driven over gRPC (mutual TLS, certificates from the
PKI beside the state file, as the lab writes it); hosts without one are simulated by memory
agents that record what they would run in the store's host reports.
"""

from __future__ import annotations

import os

from l2vpc.engine.api import Engine
from l2vpc.engine.executor import AgentClient, AgentPool, MemoryAgentPool
from l2vpc.engine.model import Host
from l2vpc.engine.store import open_store

STATE_PATH_ENV = "L2VPC_STATE_PATH"
DEFAULT_STATE_PATH = os.path.join(".l2vpc", "state.db")


def default_state_path() -> str:
    return os.environ.get(STATE_PATH_ENV) or DEFAULT_STATE_PATH


class MixedAgentPool:
    """gRPC for hosts with an agent address, memory agents for the rest."""

    def __init__(self, grpc_pool: AgentPool | None, memory: MemoryAgentPool) -> None:
        self.grpc_pool = grpc_pool
        self.memory = memory

    def client(self, host: Host) -> AgentClient:
        if host.agent_address and self.grpc_pool is not None:
            return self.grpc_pool.client(host)
        return self.memory.client(host)

    def close(self) -> None:
        close = getattr(self.grpc_pool, "close", None)
        if close is not None:
            close()


def open_engine(state_path: str | None = None, *, agents: str = "auto", default_region: str | None = None) -> Engine:
    """An Engine on the state file. agents: auto (gRPC where hosts have agents), memory, grpc."""
    path = state_path or default_state_path()
    store = open_store(path)
    engine = Engine(store, MemoryAgentPool(), default_region=default_region)
    memory = MemoryAgentPool(engine.actual_configs())
    grpc_pool: AgentPool | None = None
    if agents != "memory":
        try:
            from l2vpc.engine.agent_client import GrpcAgentPool
        except ImportError:
            if agents == "grpc":
                raise
        else:
            pool = GrpcAgentPool.from_state(path)
            if agents == "grpc" or any(h.agent_address for h in engine.hosts()):
                grpc_pool = pool
    engine.agents = MixedAgentPool(grpc_pool, memory)
    return engine
