"""The embedded control plane: the engine in-process on a state file, wired to its agents.

What the CLI (`l2vpc plan|apply|show`, cli.py), the provider and the lab open. Hosts registered
with an agent address are driven over gRPC (mutual TLS, certificates from the PKI beside the
state file, as the lab writes it); hosts without one are simulated in-process by the real agent
on the memory driver (l2vpc.agent.local), which records what it runs in the store's host reports.
This module sits above the engine and the agent: the engine imports neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from l2vpc.engine.api import Engine
from l2vpc.engine.executor import AgentClient
from l2vpc.engine.model import Host
from l2vpc.engine.store import open_store
from l2vpc.paths import STATE_PATH_ENV, default_state_path

if TYPE_CHECKING:  # imported when an engine is opened: `l2vpc plan` needs neither (gRPC, agents)
    from l2vpc.agent.local import LocalAgentPool
    from l2vpc.engine.agent_client import GrpcAgentPool

__all__ = ["STATE_PATH_ENV", "MixedAgentPool", "default_state_path", "open_engine"]


class MixedAgentPool:
    """gRPC for hosts with an agent address, in-process agents for the rest."""

    def __init__(self, grpc_pool: GrpcAgentPool | None, memory: LocalAgentPool) -> None:
        self.grpc_pool = grpc_pool
        self.memory = memory

    def client(self, host: Host) -> AgentClient:
        if host.agent_address and self.grpc_pool is not None:
            return self.grpc_pool.client(host)
        return self.memory.client(host)

    def close(self) -> None:
        if self.grpc_pool is not None:
            self.grpc_pool.close()
        self.memory.close()


def open_engine(state_path: str | None = None, *, agents: str = "auto", default_region: str | None = None) -> Engine:
    """An Engine on the state file. agents: auto (gRPC where hosts have agents), memory, grpc."""
    from l2vpc.agent.local import LocalAgentPool
    from l2vpc.engine.agent_client import GrpcAgentPool

    path = state_path or default_state_path()
    store = open_store(path)
    engine = Engine(store, default_region=default_region)
    grpc_pool: GrpcAgentPool | None = None
    if agents == "grpc" or (agents == "auto" and any(h.agent_address for h in engine.hosts())):
        grpc_pool = GrpcAgentPool.from_state(path)
    engine.agents = MixedAgentPool(grpc_pool, LocalAgentPool(engine.actual_configs()))
    return engine
