"""A fleet: many simulated hosts (memory driver) behind one gRPC server, for scale tests.

    hosts = load_hosts(Path("hosts.json"))        # [{"name": "h0001", "region": ..., "underlay_ip": ...}, ...]
    fleet = Fleet.open(hosts, Path("/var/tmp/fleet1"))   # one Agent per host, state dir per host
    server, addresses = serve_fleet(fleet, ["0.0.0.0:7600"], tls)
    fleet.start()

Each host is a full `daemon.Agent` (validation, generations, persisted config, health) over a
`MemoryDriver`, with its state dir `<parent>/<host>`; only the server is shared. Every call
names its host in the `l2vpc-host` metadata (the engine's client always sends it) and goes to
that host's agent; a call naming no host, or one this fleet does not run, is refused. The
server's certificate carries every host's name (`issue_fleet_certificate`), so a client that
checks the host name it dials still can (see channel.certificate_names).

Simulated hosts persist their configs without fsync (`durable=False`): a fleet is a load
generator, and a thousand fsyncs per converge would measure the disk, not the controller.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc

from l2vpc._proto import agent_pb2 as pb
from l2vpc._proto import agent_pb2_grpc as pb_grpc
from l2vpc.agent.daemon import Agent, AgentError, AgentService, start_server
from l2vpc.agent.drivers.memory import MemoryDriver
from l2vpc.agentapi.channel import HOST_METADATA
from l2vpc.pki import CertificateAuthority, TlsFiles

MAX_FLEET_HOSTS = 2000
# Fields of an engine Host document a hosts file may set (agent_address is the fleet's).
HOST_FIELDS = ("name", "region", "role", "underlay_ip", "location", "handoff", "outside", "public_cidr",
               "public_gateway")


class FleetError(Exception):
    """The hosts file or the fleet's directory is unusable; the message names what and where."""


def check_hosts(hosts: Sequence[Mapping[str, Any]], where: str = "hosts") -> list[dict[str, Any]]:
    """Host documents, checked as far as a fleet needs: unique names and underlay addresses."""
    if not hosts:
        raise FleetError(f"{where}: no hosts")
    if len(hosts) > MAX_FLEET_HOSTS:
        raise FleetError(f"{where}: {len(hosts)} hosts; a fleet runs at most {MAX_FLEET_HOSTS}")
    out: list[dict[str, Any]] = []
    names: set[str] = set()
    ips: set[str] = set()
    for i, h in enumerate(hosts):
        if not isinstance(h, Mapping):
            raise FleetError(f"{where}[{i}]: expected an object with name, region, underlay_ip")
        unknown = sorted(set(h) - set(HOST_FIELDS))
        if unknown:
            raise FleetError(f"{where}[{i}].{unknown[0]}: unknown field (allowed: {', '.join(HOST_FIELDS)})")
        for key in ("name", "region", "underlay_ip"):
            if not isinstance(h.get(key), str) or not h[key]:
                raise FleetError(f"{where}[{i}].{key}: required (a string)")
        try:
            ipaddress.IPv4Address(h["underlay_ip"])
        except ValueError:
            raise FleetError(f"{where}[{i}].underlay_ip: {h['underlay_ip']!r} is not an IPv4 address") from None
        if h["name"] in names:
            raise FleetError(f"{where}[{i}].name: {h['name']!r} appears twice")
        if h["underlay_ip"] in ips:
            raise FleetError(f"{where}[{i}].underlay_ip: {h['underlay_ip']} appears twice")
        names.add(h["name"])
        ips.add(h["underlay_ip"])
        out.append(dict(h))
    return out


def load_hosts(path: Path) -> list[dict[str, Any]]:
    """A hosts file: a JSON list of host documents."""
    try:
        doc = json.loads(path.read_text())
    except OSError as e:
        raise FleetError(f"hosts file {path}: {e.strerror}") from None
    except ValueError as e:
        raise FleetError(f"hosts file {path}: not JSON ({e})") from None
    if not isinstance(doc, list):
        raise FleetError(f"hosts file {path}: expected a JSON list of host documents")
    return check_hosts(doc, str(path))


def issue_fleet_certificate(ca: CertificateAuthority, name: str, hosts: Iterable[str],
                            ips: Iterable[str] = ()) -> TlsFiles:
    """A server certificate `name` that also names every host of the fleet."""
    return ca.issue_server(name, dns_names=list(hosts), ips=ips)


class Fleet:
    """The agents of a fleet, by host name."""

    def __init__(self, agents: Mapping[str, Agent]) -> None:
        self.agents = dict(agents)

    @classmethod
    def open(cls, hosts: Sequence[Mapping[str, Any]], parent: Path) -> Fleet:
        hosts = check_hosts(hosts)
        agents: dict[str, Agent] = {}
        try:
            for h in hosts:
                driver = MemoryDriver(h["name"], h["underlay_ip"])
                agents[h["name"]] = Agent(driver, parent / h["name"], driver_name="memory", durable=False)
        except AgentError:
            for a in agents.values():
                a.close()
            raise
        return cls(agents)

    def start(self) -> None:
        """Re-converge what each host persisted (a restarted fleet), in the background."""
        for a in self.agents.values():
            a.start()

    def close(self) -> None:
        for a in self.agents.values():
            a.close()


class FleetService(pb_grpc.AgentServicer):
    """Routes each call to the agent its `l2vpc-host` metadata names."""

    def __init__(self, agents: Mapping[str, Agent]) -> None:
        self._services = {name: AgentService(a) for name, a in agents.items()}

    def _route(self, context: grpc.ServicerContext) -> AgentService:
        name = next((v for k, v in context.invocation_metadata() if k == HOST_METADATA), None)
        if not name:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"this address serves {len(self._services)} hosts: name one in the "
                          f"{HOST_METADATA} metadata")
        service = self._services.get(str(name))
        if service is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"host {name!r} is not served at this address "
                                                     f"(a fleet of {len(self._services)} other hosts)")
        assert service is not None
        return service

    def Push(self, request: pb.PushRequest, context: grpc.ServicerContext) -> pb.PushResponse:
        return self._route(context).Push(request, context)

    def GetState(self, request: pb.GetStateRequest, context: grpc.ServicerContext) -> pb.GetStateResponse:
        return self._route(context).GetState(request, context)

    def Health(self, request: pb.HealthRequest, context: grpc.ServicerContext) -> pb.HealthResponse:
        return self._route(context).Health(request, context)


def serve_fleet(fleet: Fleet, listens: Sequence[str], tls: TlsFiles, workers: int = 16
                ) -> tuple[grpc.Server, list[str]]:
    """Serve every host of `fleet` on `listens`; returns the server and its addresses."""
    service = FleetService(fleet.agents)
    return start_server(lambda s: pb_grpc.add_AgentServicer_to_server(service, s), listens, tls, workers)
