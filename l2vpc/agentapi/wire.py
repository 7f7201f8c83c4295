"""The agent API's wire format: HostConfig and converge results ↔ l2vpc.agent.v1 protobuf.

Shared by the agent daemon and the engine's gRPC client, so both sides agree on one mapping.
Optional strings travel as "" (proto3 scalars have no null); an empty `ip_address` or
`gateway` reads back as None, as `HostConfig.from_dict` does for missing values. An edge
router's `vlan` travels as 0 when unset.

Secrets (SECRET_FIELDS) go on the wire only when asked for: the engine builds its pushes with
`push_request(cfg)` (or `config_to_pb(cfg, secrets=True)`); everything else, in particular every
reply of an agent, carries them blank.
"""

from __future__ import annotations

from collections.abc import Iterable

from l2vpc._proto import agent_pb2 as pb
from l2vpc.hostconfig import (
    BgpPeer,
    DhcpServer,
    EdgeRouter,
    HostConfig,
    Observation,
    Port,
    Reservation,
    Route,
    Segment,
    VpnGateway,
)
from l2vpc.hostconfig.diff import Action
from l2vpc.hostconfig.failures import Failure

API_VERSION = "v1.2"


def _routes_to_pb(routes: Iterable[Route]) -> list[pb.Route]:
    return [pb.Route(prefix=r.prefix, via=r.via) for r in routes]


def _routes_from_pb(routes: Iterable[pb.Route]) -> tuple[Route, ...]:
    return tuple(Route(r.prefix, r.via) for r in routes)


def push_request(cfg: HostConfig) -> pb.PushRequest:
    """The engine's push: the one message that carries secrets."""
    return pb.PushRequest(config=config_to_pb(cfg, secrets=True))


def _secret(value: str | None, secrets: bool) -> str:
    return (value or "") if secrets else ""


def _edge_to_pb(e: EdgeRouter, secrets: bool) -> pb.EdgeRouter:
    msg = pb.EdgeRouter(
        id=e.id, vni=e.vni, mode=e.mode, handoff=e.handoff, bandwidth_mbps=e.bandwidth_mbps, mtu=e.mtu,
        vlan=e.vlan or 0, gateway_ip=e.gateway_ip or "", circuit_key=_secret(e.circuit_key, secrets),
        secret_digest=e.secret_digest,
    )
    if e.bgp is not None:
        msg.bgp.CopyFrom(pb.BgpPeer(
            local_asn=e.bgp.local_asn, peer_asn=e.bgp.peer_asn, local_ip=e.bgp.local_ip, peer_ip=e.bgp.peer_ip,
            advertised=list(e.bgp.advertised), md5_key=_secret(e.bgp.md5_key, secrets),
        ))
    return msg


def _edge_from_pb(m: pb.EdgeRouter) -> EdgeRouter:
    bgp = None
    if m.HasField("bgp"):
        bgp = BgpPeer(local_asn=m.bgp.local_asn, peer_asn=m.bgp.peer_asn, local_ip=m.bgp.local_ip,
                      peer_ip=m.bgp.peer_ip, advertised=tuple(m.bgp.advertised), md5_key=m.bgp.md5_key or None)
    return EdgeRouter(
        id=m.id, vni=m.vni, mode=m.mode, handoff=m.handoff, bandwidth_mbps=m.bandwidth_mbps, mtu=m.mtu or 1500,
        vlan=m.vlan or None, gateway_ip=m.gateway_ip or None, bgp=bgp, circuit_key=m.circuit_key or None,
        secret_digest=m.secret_digest,
    )


def _vpn_to_pb(v: VpnGateway, secrets: bool) -> pb.VpnGateway:
    return pb.VpnGateway(
        id=v.id, vni=v.vni, gateway_ip=v.gateway_ip, outside_ip=v.outside_ip, outside=v.outside,
        peer_address=v.peer_address, local_cidrs=list(v.local_cidrs), remote_cidrs=list(v.remote_cidrs),
        ike_proposal=v.ike_proposal, esp_proposal=v.esp_proposal, ike_lifetime=v.ike_lifetime,
        esp_lifetime=v.esp_lifetime, dpd_interval=v.dpd_interval, dpd_timeout=v.dpd_timeout, mtu=v.mtu,
        peer_id=v.peer_id or "", outside_gateway=v.outside_gateway or "", psk=_secret(v.psk, secrets),
        secret_digest=v.secret_digest,
    )


def _vpn_from_pb(m: pb.VpnGateway) -> VpnGateway:
    return VpnGateway(
        id=m.id, vni=m.vni, gateway_ip=m.gateway_ip, outside_ip=m.outside_ip, outside=m.outside,
        peer_address=m.peer_address, local_cidrs=tuple(m.local_cidrs), remote_cidrs=tuple(m.remote_cidrs),
        ike_proposal=m.ike_proposal, esp_proposal=m.esp_proposal, ike_lifetime=m.ike_lifetime,
        esp_lifetime=m.esp_lifetime, dpd_interval=m.dpd_interval, dpd_timeout=m.dpd_timeout, mtu=m.mtu or 1500,
        peer_id=m.peer_id or None, outside_gateway=m.outside_gateway or None, psk=m.psk,
        secret_digest=m.secret_digest,
    )


def config_to_pb(cfg: HostConfig, *, secrets: bool = False) -> pb.HostConfig:
    """The config as protobuf; secrets blank unless `secrets` (only the engine's push sets it)."""
    return pb.HostConfig(
        host=cfg.host,
        underlay_ip=cfg.underlay_ip,
        generation=cfg.generation,
        segments=[pb.Segment(vni=s.vni, vpc_id=s.vpc_id, mtu=s.mtu, remotes=list(s.remotes), vpc_name=s.vpc_name)
                  for s in cfg.segments],
        ports=[
            pb.Port(
                id=p.id, vni=p.vni, workload=p.workload, interface_name=p.interface_name, mac=p.mac,
                mtu=p.mtu, workload_kind=p.workload_kind, ip_mode=p.ip_mode, ip_address=p.ip_address or "",
                routes=_routes_to_pb(p.routes), restart_epoch=p.restart_epoch, sandbox=p.sandbox, tap=p.tap,
                dhcp_options=p.dhcp_options, port_security=p.port_security,
                allowed_addresses=list(p.allowed_addresses),
            )
            for p in cfg.ports
        ],
        dhcp_servers=[
            pb.DhcpServer(
                vni=d.vni, server_ip=d.server_ip, range_start=d.range_start, range_end=d.range_end,
                lease_time=d.lease_time, gateway=d.gateway or "", dns_servers=list(d.dns_servers),
                reservations=[pb.Reservation(mac=r.mac, ip=r.ip) for r in d.reservations],
                routes=_routes_to_pb(d.routes), mtu=d.mtu, clients=list(d.clients),
            )
            for d in cfg.dhcp_servers
        ],
        edge_routers=[_edge_to_pb(e, secrets) for e in cfg.edge_routers],
        vpn_gateways=[_vpn_to_pb(v, secrets) for v in cfg.vpn_gateways],
        observations=[
            pb.Observation(id=o.id, state=o.state, detail=o.detail, learned=list(o.learned), reason=o.reason,
                           path_mtu=o.path_mtu)
            for o in cfg.observations
        ],
        labels=dict(cfg.labels),
    )


def config_from_pb(msg: pb.HostConfig) -> HostConfig:
    return HostConfig(
        host=msg.host,
        underlay_ip=msg.underlay_ip,
        generation=msg.generation,
        segments=tuple(Segment(s.vni, s.vpc_id, s.mtu, tuple(s.remotes), s.vpc_name) for s in msg.segments),
        ports=tuple(
            Port(
                id=p.id, vni=p.vni, workload=p.workload, interface_name=p.interface_name, mac=p.mac.lower(),
                mtu=p.mtu, workload_kind=p.workload_kind or "virtual_server", ip_mode=p.ip_mode or "none",
                ip_address=p.ip_address or None, routes=_routes_from_pb(p.routes), restart_epoch=p.restart_epoch,
                sandbox=p.sandbox, tap=p.tap, dhcp_options=p.dhcp_options, port_security=p.port_security,
                allowed_addresses=tuple(p.allowed_addresses),
            )
            for p in msg.ports
        ),
        dhcp_servers=tuple(
            DhcpServer(
                vni=d.vni, server_ip=d.server_ip, range_start=d.range_start, range_end=d.range_end,
                lease_time=d.lease_time, gateway=d.gateway or None, dns_servers=tuple(d.dns_servers),
                reservations=tuple(Reservation(r.mac.lower(), r.ip) for r in d.reservations),
                routes=_routes_from_pb(d.routes), mtu=d.mtu or 1500,
                clients=tuple(m.lower() for m in d.clients),
            )
            for d in msg.dhcp_servers
        ),
        edge_routers=tuple(_edge_from_pb(e) for e in msg.edge_routers),
        vpn_gateways=tuple(_vpn_from_pb(v) for v in msg.vpn_gateways),
        observations=tuple(Observation(o.id, o.state, o.detail, tuple(o.learned), o.reason, o.path_mtu)
                           for o in msg.observations),
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
