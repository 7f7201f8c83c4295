"""The engine's side of the agent API: `GrpcAgentPool`, an AgentPool that drives real agents.

    pool = GrpcAgentPool.from_state(".l2vpc/state.db")   # TLS material from .l2vpc/pki/
    engine = Engine(open_store(...), pool)
    engine.converge()

Each host's agent is reached at `Host.agent_address` over mutual TLS: we present the engine's
client certificate and accept only an agent whose certificate, signed by the same CA, names the
host we meant. Errors are sorted by what the executor should do next: unreachable, timed out or
busy → a HostError with a retryable code (unreachable, timeout, busy: retried); rejected,
stale, failed to converge → a HostError that is not retryable (the host's report is re-read).
Codes are those of the shared l2vpc.hostconfig.failures.

Several hosts may share an address (a fleet of simulated hosts behind one server, see
l2vpc/agent/fleet.py): the pool keeps one channel per address (a thousand hosts on four
addresses are four channels), every call names its host in the `l2vpc-host` metadata (the
server refuses a host it does not run), and since a channel's handshake checks one name only,
the names of the other hosts sharing it are checked against the server certificate's list
(read once per address) before their first call.
"""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Callable
from pathlib import Path

import grpc

from l2vpc._proto import agent_pb2 as pb
from l2vpc.agentapi import wire
from l2vpc.agentapi.channel import certificate_names, host_metadata, open_channel, stub
from l2vpc.engine.errors import HostError
from l2vpc.engine.model import Host
from l2vpc.hostconfig import HostConfig
from l2vpc.hostconfig.failures import Code, push_failure
from l2vpc.observability.logs import outgoing_metadata
from l2vpc.pki import PkiError, TlsFiles

PKI_DIR = "pki"
CLIENT_NAME = "engine"
# gRPC status of a failed call → the failure's code (anything else: the agent refused the call).
_CODES: dict[grpc.StatusCode, Code] = {
    grpc.StatusCode.UNAVAILABLE: "unreachable",
    grpc.StatusCode.DEADLINE_EXCEEDED: "timeout",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "busy",
    grpc.StatusCode.ABORTED: "busy",
    grpc.StatusCode.CANCELLED: "unreachable",
    grpc.StatusCode.NOT_FOUND: "not_registered",
    grpc.StatusCode.UNAUTHENTICATED: "tls",
    grpc.StatusCode.PERMISSION_DENIED: "tls",
}


def engine_tls(pki_dir: Path) -> TlsFiles:
    """Where the engine's client certificate lives in a CA directory (the lab writes it there)."""
    return TlsFiles(pki_dir / "ca.pem", pki_dir / f"{CLIENT_NAME}.pem", pki_dir / f"{CLIENT_NAME}.key")


_STATUS = {pb.PushResponse.CONVERGED: "converged", pb.PushResponse.REJECTED: "rejected",
           pb.PushResponse.STALE: "stale", pb.PushResponse.FAILED: "failed"}


class GrpcAgentClient:
    """One host's agent. Thread-safe (gRPC channels are).

    `verify`, when given, runs before each call until it has passed once: it raises the error
    that stops the call (the shared-channel name check of GrpcAgentPool)."""

    def __init__(self, host: Host, channel: grpc.Channel, verify: Callable[[], None] | None = None) -> None:
        self.host = host
        self.address = host.agent_address or ""
        self._stub = stub(channel)
        self._metadata = host_metadata(host.name)
        self._verify = verify

    def _check(self) -> None:
        if self._verify is not None:
            self._verify()
            self._verify = None

    def _rpc_error(self, e: grpc.RpcError, step: str) -> HostError:
        status = e.code() if isinstance(e, grpc.Call) else grpc.StatusCode.UNKNOWN
        details = (e.details() if isinstance(e, grpc.Call) else "") or status.name
        where = f"agent of {self.host.name} at {self.address}"
        return HostError(self.host.name, step, f"{where}: {status.name.lower()}: {details}",
                         _CODES.get(status, "internal"))

    def push(self, config: HostConfig, timeout: float) -> HostConfig:
        self._check()
        request = wire.push_request(config)
        try:
            reply: pb.PushResponse = self._stub.Push(request, timeout=timeout,
                                                     metadata=(*self._metadata, *outgoing_metadata()))
        except grpc.RpcError as e:
            raise self._rpc_error(e, "push") from None
        failure = push_failure(self.host.name, _STATUS.get(reply.status, str(reply.status)),
                               ((f.path, f.reason) for f in reply.failures))
        if failure is not None:
            raise HostError.of(failure)
        return wire.config_from_pb(reply.actual)

    def report(self, timeout: float) -> HostConfig:
        self._check()
        try:
            reply: pb.GetStateResponse = self._stub.GetState(pb.GetStateRequest(), timeout=timeout,
                                                              metadata=self._metadata)
        except grpc.RpcError as e:
            raise self._rpc_error(e, "report") from None
        return wire.config_from_pb(reply.actual)

    def health(self, timeout: float) -> pb.HealthResponse:
        self._check()
        try:
            reply: pb.HealthResponse = self._stub.Health(pb.HealthRequest(), timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise self._rpc_error(e, "health") from None
        return reply


class _Unreachable:
    """Stands in for a host we cannot even dial (no address, no TLS material): says why."""

    def __init__(self, host: str, step: str, reason: str, code: Code) -> None:
        self.error = HostError(host, step, reason, code)

    def push(self, config: HostConfig, timeout: float) -> HostConfig:
        raise self.error

    def report(self, timeout: float) -> HostConfig:
        raise self.error


class _Channel:
    """A channel to one address, opened for the first host dialled there (whose name its
    handshake checks), and the names in the server's certificate once read."""

    def __init__(self, channel: grpc.Channel, first_host: str) -> None:
        self.channel = channel
        self.first_host = first_host
        self.names: frozenset[str] | None = None
        self.lock = threading.Lock()


class GrpcAgentPool:
    """Clients for every registered host's agent, one cached channel per agent address."""

    def __init__(self, tls: TlsFiles, *, state_path: str | None = None) -> None:
        self.tls = tls
        self.state_path = state_path
        self._channels: dict[str, _Channel] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_state(cls, state_path: str) -> GrpcAgentPool:
        """The pool for a state file whose TLS material sits beside it in `pki/` (as the lab writes)."""
        path = state_path[len("sqlite://"):] if state_path.startswith("sqlite://") else state_path
        pki = Path(os.path.dirname(os.path.abspath(path))) / PKI_DIR
        return cls(engine_tls(pki), state_path=path)

    def has_agents(self) -> bool:
        """True when some registered host has an agent address (so hosts are real, not simulated)."""
        if not self.state_path or not os.path.exists(self.state_path):
            return False
        from l2vpc.engine.store import open_store

        store = open_store(self.state_path)
        try:
            with store.transaction() as tx:
                return any(o.data.get("agent_address") for o in tx.list("host"))
        finally:
            store.close()

    def client(self, host: Host) -> GrpcAgentClient | _Unreachable:
        if not host.agent_address:
            return _Unreachable(host.name, "connect", "no agent address is registered for this host", "unreachable")
        address = host.agent_address
        with self._lock:
            shared = self._channels.get(address)
            if shared is None:
                try:
                    channel = open_channel(address, host.name, self.tls)
                except PkiError as e:
                    return _Unreachable(
                        host.name, "tls",
                        f"{e}; create the engine's certificate with `l2vpc agent ca {self.tls.ca.parent} "
                        f"--client {CLIENT_NAME}`", "tls",
                    )
                shared = self._channels[address] = _Channel(channel, host.name)
        if shared.first_host == host.name:
            return GrpcAgentClient(host, shared.channel)
        return GrpcAgentClient(host, shared.channel, verify=lambda: self._verify_name(shared, host))

    def _verify_name(self, shared: _Channel, host: Host) -> None:
        """`host` shares a channel opened for another host: its name must be in the certificate
        (read again when it is not: the server may have restarted with more hosts)."""
        for fresh in (False, True):
            with shared.lock:
                if shared.names is None or fresh:
                    shared.names = self._read_names(host)
                if host.name in shared.names:
                    return
                names = sorted(shared.names)
        raise HostError(host.name, "tls", f"the agent certificate at {host.agent_address} does not name host "
                                          f"{host.name} (it names {', '.join(names[:5])}{', ...' if len(names) > 5 else ''})",
                        "tls")

    def _read_names(self, host: Host) -> frozenset[str]:
        address = host.agent_address or ""
        try:
            return certificate_names(address, self.tls)
        except ssl.SSLError as e:  # before OSError, of which it is one
            raise HostError(host.name, "tls", f"agent at {address}: TLS handshake failed: {e}", "tls") from None
        except (OSError, ValueError) as e:
            raise HostError(host.name, "connect", f"agent of {host.name} at {address}: cannot read its certificate: {e}",
                            "unreachable") from None
        except PkiError as e:
            raise HostError(host.name, "tls", str(e), "tls") from None

    def close(self) -> None:
        with self._lock:
            for shared in self._channels.values():
                shared.channel.close()
            self._channels.clear()

    def __enter__(self) -> GrpcAgentPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
