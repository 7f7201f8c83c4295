"""The agent API's wire format: HostConfig and converge results ↔ l2vpc.agent.v1 protobuf.

Shared by the agent daemon and the engine's gRPC client, so both sides agree on one mapping.
Optional strings travel as "" (proto3 scalars have no null); an empty `ip_address` or
`gateway` reads back as None, as `HostConfig.from_dict` does for missing values.
"""

from __future__ import annotations

from collections.abc import Iterable

from l2vpc._proto import agent_pb2 as pb
from l2vpc.agent.drivers.base import Action, Failure
from l2vpc.hostconfig import DhcpServer, HostConfig, Port, Reservation, Route, Segment

API_VERSION = "v1.0"


def _routes_to_pb(routes: Iterable[Route]) -> list[pb.Route]:
    return [pb.Route(prefix=r.prefix, via=r.via) for r in routes]


def _routes_from_pb(routes: Iterable[pb.Route]) -> tuple[Route, ...]:
    return tuple(Route(r.prefix, r.via) for r in routes)


def config_to_pb(cfg: HostConfig) -> pb.HostConfig:
    return pb.HostConfig(
        host=cfg.host,
        underlay_ip=cfg.underlay_ip,
        generation=cfg.generation,
        segments=[pb.Segment(vni=s.vni, vpc_id=s.vpc_id, mtu=s.mtu, remotes=list(s.remotes)) for s in cfg.segments],
        ports=[
            pb.Port(
                id=p.id, vni=p.vni, workload=p.workload, interface_name=p.interface_name, mac=p.mac,
                mtu=p.mtu, workload_kind=p.workload_kind, ip_mode=p.ip_mode, ip_address=p.ip_address or "",
                routes=_routes_to_pb(p.routes), restart_epoch=p.restart_epoch,
            )
            for p in cfg.ports
        ],
        dhcp_servers=[
            pb.DhcpServer(
                vni=d.vni, server_ip=d.server_ip, range_start=d.range_start, range_end=d.range_end,
                lease_time=d.lease_time, gateway=d.gateway or "", dns_servers=list(d.dns_servers),
                reservations=[pb.Reservation(mac=r.mac, ip=r.ip) for r in d.reservations],
                routes=_routes_to_pb(d.routes),
            )
            for d in cfg.dhcp_servers
        ],
        labels=dict(cfg.labels),
    )


def config_from_pb(msg: pb.HostConfig) -> HostConfig:
    return HostConfig(
        host=msg.host,
        underlay_ip=msg.underlay_ip,
        generation=msg.generation,
        segments=tuple(Segment(s.vni, s.vpc_id, s.mtu, tuple(s.remotes)) for s in msg.segments),
        ports=tuple(
            Port(
                id=p.id, vni=p.vni, workload=p.workload, interface_name=p.interface_name, mac=p.mac.lower(),
                mtu=p.mtu, workload_kind=p.workload_kind or "virtual_server", ip_mode=p.ip_mode or "none",
                ip_address=p.ip_address or None, routes=_routes_from_pb(p.routes), restart_epoch=p.restart_epoch,
            )
            for p in msg.ports
        ),
        dhcp_servers=tuple(
            DhcpServer(
                vni=d.vni, server_ip=d.server_ip, range_start=d.range_start, range_end=d.range_end,
                lease_time=d.lease_time, gateway=d.gateway or None, dns_servers=tuple(d.dns_servers),
                reservations=tuple(Reservation(r.mac.lower(), r.ip) for r in d.reservations),
                routes=_routes_from_pb(d.routes),
            )
            for d in msg.dhcp_servers
        ),
        labels=dict(msg.labels),
    )


def actions_to_pb(actions: Iterable[Action]) -> list[pb.Action]:
    return [pb.Action(verb=a.verb, path=a.path, detail=a.detail) for a in actions]


def failures_to_pb(failures: Iterable[Failure]) -> list[pb.Failure]:
    return [pb.Failure(path=f.path, reason=f.reason) for f in failures]


def failures_from_pb(failures: Iterable[pb.Failure]) -> tuple[Failure, ...]:
    return tuple(Failure(f.path, f.reason) for f in failures)


def actions_from_pb(actions: Iterable[pb.Action]) -> tuple[Action, ...]:
    return tuple(Action(a.verb, a.path, a.detail) for a in actions)
