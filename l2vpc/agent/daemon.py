"""The host agent's gRPC face (l2vpc.agent.v1, mutual TLS) in front of an Agent (core.py).

    agent = Agent(driver, state_dir, driver_name="linux")
    server, address = serve(agent, "unix:/run/l2vpc/host1.sock", tls)
    agent.start()
    ...
    server.stop(grace=2); agent.close()  # the dataplane keeps running

A call naming a host in its `l2vpc-host` metadata (the engine's client always does) is refused
with NOT_FOUND unless it names this agent's host: one address may serve many simulated hosts
(fleet.py), and a real agent must not take a config meant for another host. With a controller,
`run` also registers the host and heartbeats (heartbeat.py).

Nothing the agent sends back carries secrets: `desired` and `actual` in replies go through
`wire.config_to_pb`, which blanks them.
"""

from __future__ import annotations

import logging
import stat
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from l2vpc._proto import agent_pb2 as pb
from l2vpc._proto import agent_pb2_grpc as pb_grpc
from l2vpc.agent.core import Agent, AgentError
from l2vpc.agentapi import wire
from l2vpc.agentapi.channel import HOST_METADATA, MAX_MESSAGE_BYTES
from l2vpc.observability.logs import from_metadata, request_scope
from l2vpc.pki import TlsFiles
from l2vpc.stop_signals import StopSignals

if TYPE_CHECKING:
    from l2vpc.agent.heartbeat import HeartbeatScheduler
    from l2vpc.agent.pod_control import PodControl

log = logging.getLogger("l2vpc.agent")




class AgentService(pb_grpc.AgentServicer):
    """The gRPC face of an Agent: protobuf in, protobuf out, nothing else."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def _check_host(self, context: grpc.ServicerContext) -> None:
        for key, value in context.invocation_metadata():
            if key == HOST_METADATA and value != self.agent.host:
                context.abort(grpc.StatusCode.NOT_FOUND,
                              f"this agent runs host {self.agent.host!r}, not {value!r} (is {value}'s "
                              "agent_address right?)")

    def Push(self, request: pb.PushRequest, context: grpc.ServicerContext) -> pb.PushResponse:
        self._check_host(context)
        if not request.HasField("config"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "config: required")
        # The converge logs under the request id(s) of the change it applies (from the engine).
        with request_scope(from_metadata(context.invocation_metadata()) or None):
            try:
                outcome = self.agent.push(wire.config_from_pb(request.config))
            except AgentError as e:
                log.error("%s", e)
                context.abort(grpc.StatusCode.INTERNAL, str(e))
        status = {
            "converged": pb.PushResponse.CONVERGED,
            "failed": pb.PushResponse.FAILED,
            "rejected": pb.PushResponse.REJECTED,
            "stale": pb.PushResponse.STALE,
        }[outcome.status]
        response = pb.PushResponse(
            status=status,
            actions=wire.actions_to_pb(outcome.actions),
            failures=wire.failures_to_pb(outcome.failures),
            accepted_generation=outcome.accepted_generation,
            seconds=outcome.seconds,
        )
        if outcome.actual is not None:
            response.actual.CopyFrom(wire.config_to_pb(outcome.actual))
        return response

    def Realize(self, request: pb.RealizeRequest, context: grpc.ServicerContext) -> pb.RealizeResponse:
        self._check_host(context)
        try:
            outcome = self.agent.realize(request.workload, request.mode)
        except ValueError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"mode: {e}")
        if outcome is None:
            _desired, actual = self.agent.state()
            return pb.RealizeResponse(changed=False, actual=wire.config_to_pb(actual))
        response = pb.RealizeResponse(changed=True, failures=wire.failures_to_pb(outcome.failures))
        if outcome.actual is not None:
            response.actual.CopyFrom(wire.config_to_pb(outcome.actual))
        return response

    def GetState(self, request: pb.GetStateRequest, context: grpc.ServicerContext) -> pb.GetStateResponse:
        self._check_host(context)
        desired, actual = self.agent.state()
        response = pb.GetStateResponse(actual=wire.config_to_pb(actual),
                                       accepted_generation=desired.generation if desired else 0)
        if desired is not None:
            response.desired.CopyFrom(wire.config_to_pb(desired))
        return response

    def Health(self, request: pb.HealthRequest, context: grpc.ServicerContext) -> pb.HealthResponse:
        self._check_host(context)
        h = self.agent.health()
        return pb.HealthResponse(
            host=h.host, api_version=wire.API_VERSION, driver=h.driver,
            accepted_generation=h.accepted_generation, converged_generation=h.converged_generation,
            converging=h.converging, last_converge_ok=h.last_ok,
            last_failures=wire.failures_to_pb(h.last_failures), last_converge_unix=h.last_unix,
            last_converge_seconds=h.last_seconds, uptime_seconds=h.uptime, pid=h.pid,
        )


def server_credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    """TLS that requires a client certificate signed by our CA (anything else fails the handshake)."""
    ca, cert, key = tls.read()
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)


def _prepare_unix_socket(address: str) -> None:
    path = Path(address[len("unix:"):])
    if not path.is_absolute():
        raise AgentError(f"listen address {address!r}: a unix socket path must be absolute")
    if len(str(path).encode()) > 107:
        raise AgentError(f"listen address {address!r}: socket paths are limited to 107 bytes")
    try:
        st = path.lstat()
    except FileNotFoundError:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise AgentError(f"listen address {address!r}: {path} exists and is not a socket")
    path.unlink()  # left behind by a previous run of this agent (it would block the bind)


def start_server(add: Callable[[grpc.Server], None], listens: Sequence[str], tls: TlsFiles,
                 workers: int = 8) -> tuple[grpc.Server, list[str]]:
    """A started mutual-TLS server with the servicers `add` puts on it, on every address of
    `listens` (`host:port` or `unix:/abs/path`). Returns it and the addresses it listens on
    (port 0 resolved to the port it got)."""
    if not listens:
        raise AgentError("no listen address given")
    for listen in listens:
        if listen.startswith("unix:"):
            _prepare_unix_socket(listen)
    server = grpc.server(
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),  # a second agent on the same port must fail, not share it
        ],
    )
    add(server)
    credentials = server_credentials(tls)
    addresses = []
    for listen in listens:
        try:
            port = server.add_secure_port(listen, credentials)
        except RuntimeError as e:
            raise AgentError(f"cannot listen on {listen}: {e}") from None
        if port == 0:
            raise AgentError(f"cannot listen on {listen} (address in use or not available)")
        addresses.append(listen if listen.startswith("unix:") else f"{listen.rsplit(':', 1)[0]}:{port}")
    server.start()
    return server, addresses


def serve(agent: Agent, listen: str | Sequence[str], tls: TlsFiles, workers: int = 8) -> tuple[grpc.Server, str]:
    """Start serving `agent` on `listen` (one address or several: `host:port` or `unix:/abs/path`).

    Returns the server and the (first) address it listens on (port 0 resolved to the port it got).
    """
    listens = [listen] if isinstance(listen, str) else list(listen)
    server, addresses = start_server(lambda s: pb_grpc.add_AgentServicer_to_server(AgentService(agent), s),
                                     listens, tls, workers)
    return server, addresses[0]


def run(agent: Agent, listen: str | Sequence[str], tls: TlsFiles, ready: Callable[[grpc.Server], Any] | None = None,
        heartbeats: HeartbeatScheduler | None = None, cni_socket: str | None = None,
        pod_control: PodControl | None = None) -> int:
    """Serve until SIGTERM/SIGINT; the dataplane is left running (a restart must not disturb it).

    With `heartbeats`, the host registers with its controller once the agent serves, and
    heartbeats until the agent stops. With `cni_socket`, the CNI plugin's requests are answered
    there (cni.py), and with `pod_control` (the controller link) Pods get VPCs on demand."""
    from l2vpc.agent.cni import CniServer, CniService

    stop = StopSignals(log)  # before serving: a stop request is never lost
    server, _ = serve(agent, listen, tls)
    cni = CniServer(CniService(agent, agent.host, pod_control), cni_socket) if cni_socket else None
    log.info("agent for %s (%s driver) listening on %s", agent.host, agent.driver_name,
             listen if isinstance(listen, str) else ", ".join(listen))
    agent.start()
    if cni is not None:
        cni.start()
        log.info("CNI requests on %s", cni_socket)
    if heartbeats is not None:
        heartbeats.start()
    if ready is not None:
        ready(server)
    try:
        stop.wait()
    finally:
        if heartbeats is not None:
            heartbeats.stop()
        if cni is not None:
            cni.stop()
        if pod_control is not None:
            pod_control.close()
        server.stop(grace=2).wait()
        agent.close()
    log.info("stopped")
    return 0
