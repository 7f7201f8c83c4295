"""The desired topology and its projection onto hosts: Topology → {host: HostConfig}.

Pure functions. The projection needs placements already decided (attachment.host,
vpc.dhcp_host) and allocations already made (vni, mac_address, interface_name); objects still
missing them are skipped, since they cannot be realized yet.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from l2vpc.engine.gcpause import paused_gc
from l2vpc.engine.model import VPC, VPN, Attachment, DirectConnect, Host
from l2vpc.hostconfig import (
    BgpPeer,
    DhcpServer,
    EdgeRouter,
    HostConfig,
    Port,
    Reservation,
    Route,
    Segment,
    VpnGateway,
    pinned_sources,
)

Digest = Callable[[str], str]


def plain_digest(text: str) -> str:
    """Default digest of secrets (tests); the engine passes a keyed one (SecretBox.digest)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Topology:
    hosts: dict[str, Host] = field(default_factory=dict)  # by name
    vpcs: dict[str, VPC] = field(default_factory=dict)  # by id
    attachments: dict[str, Attachment] = field(default_factory=dict)  # by id
    direct_connects: dict[str, DirectConnect] = field(default_factory=dict)
    vpns: dict[str, VPN] = field(default_factory=dict)

    @property
    def regions(self) -> set[str]:
        return {h.region for h in self.hosts.values()}

    def vpc_by_name(self, name: str) -> VPC | None:
        return next((v for v in self.vpcs.values() if v.name == name), None)


def realizable(a: Attachment, vpc: VPC | None) -> bool:
    return bool(vpc and vpc.vni and a.host and a.mac_address and a.interface_name)


def dhcp_options(vpc: VPC, routes: tuple[Route, ...]) -> str:
    """A digest of what the VPC's DHCP server offers ('' without DHCP): see Port.dhcp_options."""
    if vpc.dhcp is None:
        return ""
    offer = (vpc.dhcp.gateway, tuple(vpc.dhcp.dns_servers), vpc.dhcp.lease_time, vpc.mtu, routes)
    return hashlib.sha256(repr(offer).encode()).hexdigest()[:16]


def make_port(a: Attachment, vpc: VPC, routes: tuple[Route, ...] = (), offer: str = "") -> Port:
    """`offer`: dhcp_options(vpc, routes), computed once per VPC by the caller."""
    assert vpc.vni and a.mac_address and a.interface_name
    return Port(
        id=a.id,
        vni=vpc.vni,
        workload=a.workload,
        interface_name=a.interface_name,
        mac=a.mac_address,
        mtu=vpc.mtu,
        workload_kind=a.workload_kind,
        ip_mode=a.ip_mode,
        ip_address=a.ip_address if a.ip_mode == "static" else None,
        # Static workloads get the routes pushed; DHCP clients get them as option 121.
        routes=routes if a.ip_mode == "static" else (),
        restart_epoch=vpc.scope_epoch,
        dhcp_options=offer if a.ip_mode == "dhcp" else "",
        port_security=a.port_security,
        # What the host pins it to: its own address (static, or its DHCP reservation) and the
        # allowed ones, as the canonical networks the agent reads back.
        allowed_addresses=pinned_sources((*([a.ip_address.split("/")[0]] if a.ip_address else []), *a.allowed_addresses))
        if a.port_security else (),
    )


def make_segment(vpc: VPC, own_ip: str, carrier_ips: tuple[str, ...]) -> Segment:
    """`carrier_ips`: sorted underlay addresses of every host carrying the VPC."""
    assert vpc.vni
    if carrier_ips.count(own_ip) == 1:  # the usual case: this host carries it (a slice, not a pass)
        at = carrier_ips.index(own_ip)
        remotes = carrier_ips[:at] + carrier_ips[at + 1:]
    else:
        remotes = tuple(ip for ip in carrier_ips if ip != own_ip)
    return Segment(vni=vpc.vni, vpc_id=vpc.id, mtu=vpc.mtu, remotes=remotes, vpc_name=vpc.name)


def make_dhcp(vpc: VPC, reservations: Iterable[Reservation], routes: tuple[Route, ...] = (),
              clients: Iterable[str] = ()) -> DhcpServer:
    assert vpc.dhcp and vpc.cidr and vpc.vni
    net = ipaddress.IPv4Network(vpc.cidr)
    return DhcpServer(
        vni=vpc.vni,
        server_ip=f"{vpc.dhcp_server_ip}/{net.prefixlen}",
        range_start=vpc.dhcp.range_start,
        range_end=vpc.dhcp.range_end,
        lease_time=vpc.dhcp.lease_time,
        gateway=vpc.dhcp.gateway,
        dns_servers=tuple(vpc.dhcp.dns_servers),
        reservations=tuple(sorted(reservations, key=lambda r: (r.mac, r.ip))),
        routes=routes,
        mtu=vpc.mtu,
        clients=tuple(sorted(set(clients))),
    )


def ike_proposal(encryption: str, integrity: str, dh_group: str) -> str:
    """strongSwan syntax; AEAD ciphers (GCM) take a PRF instead of an integrity algorithm."""
    if "gcm" in encryption:
        return f"{encryption}-prf{integrity}-{dh_group}"
    return f"{encryption}-{integrity}-{dh_group}"


def esp_proposal(encryption: str, integrity: str, dh_group: str) -> str:
    if "gcm" in encryption:
        return f"{encryption}-{dh_group}"
    return f"{encryption}-{integrity}-{dh_group}"


def make_edge_router(dx: DirectConnect, vpc: VPC, host: Host, digest: Digest) -> EdgeRouter | None:
    if not vpc.vni:
        return None
    gateway = bgp = None
    if dx.mode == "layer3":
        if not (dx.gateway_ip and vpc.cidr and dx.bgp and dx.bgp.peering_cidr and dx.bgp.provider_ip
                and dx.bgp.customer_ip and dx.bgp.provider_asn):
            return None  # not allocated yet
        gateway = f"{dx.gateway_ip}/{ipaddress.IPv4Network(vpc.cidr).prefixlen}"
        bgp = BgpPeer(
            local_asn=dx.bgp.provider_asn,
            peer_asn=dx.bgp.customer_asn,
            local_ip=f"{dx.bgp.provider_ip}/{ipaddress.IPv4Network(dx.bgp.peering_cidr).prefixlen}",
            peer_ip=dx.bgp.customer_ip,
            advertised=tuple(dx.bgp.advertised_prefixes or (vpc.cidr,)),
            md5_key=dx.bgp.md5_key,
        )
    secrets = "\0".join(x or "" for x in (dx.bgp.md5_key if dx.bgp else None, dx.service_key))
    return EdgeRouter(
        id=dx.id, vni=vpc.vni, mode=dx.mode, handoff=host.handoff, bandwidth_mbps=dx.bandwidth_mbps,
        mtu=vpc.mtu, vlan=dx.vlan, gateway_ip=gateway, bgp=bgp, circuit_key=dx.service_key,
        secret_digest=digest(secrets) if secrets.strip("\0") else "",
    )


def make_vpn_gateway(vpn: VPN, vpc: VPC, host: Host, digest: Digest) -> VpnGateway | None:
    if not (vpc.vni and vpc.cidr and vpn.gateway_ip and vpn.public_ip and host.public_cidr and vpn.pre_shared_key):
        return None
    return VpnGateway(
        id=vpn.id, vni=vpc.vni,
        gateway_ip=f"{vpn.gateway_ip}/{ipaddress.IPv4Network(vpc.cidr).prefixlen}",
        outside_ip=f"{vpn.public_ip}/{ipaddress.IPv4Network(host.public_cidr).prefixlen}",
        outside=host.outside, peer_address=vpn.peer_address,
        local_cidrs=tuple(vpn.local_cidrs or (vpc.cidr,)), remote_cidrs=tuple(vpn.remote_cidrs),
        ike_proposal=ike_proposal(vpn.ike.encryption, vpn.ike.integrity, vpn.ike.dh_group),
        esp_proposal=esp_proposal(vpn.esp.encryption, vpn.esp.integrity, vpn.esp.dh_group),
        ike_lifetime=vpn.ike.lifetime, esp_lifetime=vpn.esp.lifetime,
        dpd_interval=vpn.dpd.interval, dpd_timeout=vpn.dpd.timeout, mtu=vpc.mtu,
        peer_id=vpn.peer_id, outside_gateway=host.public_gateway,
        psk=vpn.pre_shared_key, secret_digest=digest(vpn.pre_shared_key),
    )


class TopologyIndex:
    """Who carries what, kept up to date as attachments change, to build one host's config fast.

    `host_configs` uses it for the full projection; the incremental planner keeps one alive and
    asks it which hosts a change touches.
    """

    def __init__(self, topo: Topology, learned: Mapping[str, tuple[str, ...]] | None = None,
                 digest: Digest = plain_digest) -> None:
        """`learned`: prefixes each layer-3 direct connect learned over BGP (from edge reports)."""
        self.topo = topo
        self.learned = dict(learned or {})
        self.digest = digest
        self.underlay = {h.name: h.underlay_ip for h in topo.hosts.values()}
        self.vpc_hosts: dict[str, Counter[str]] = defaultdict(Counter)  # vpc → host → ports
        self.host_ports: dict[str, set[str]] = defaultdict(set)  # host → attachment ids
        self.dhcp_hosts: dict[str, set[str]] = defaultdict(set)  # host → vpc ids served
        self.reservations: dict[str, dict[str, Reservation]] = defaultdict(dict)  # vpc → att → r
        self.dhcp_clients: dict[str, dict[str, str]] = defaultdict(dict)  # vpc → att → MAC
        self._carrier_ips: dict[str, tuple[str, ...]] = {}  # cache: vpc → sorted underlay IPs
        for a in topo.attachments.values():
            self._add(a)
        for v in topo.vpcs.values():
            if v.dhcp is not None and v.dhcp_host and v.vni:
                self.dhcp_hosts[v.dhcp_host].add(v.id)
        # Edge services: host → ids, and vpc → edge hosts carrying its segment for them.
        self.edge_services: dict[str, list[DirectConnect | VPN]] = defaultdict(list)
        self.vpc_edges: dict[str, set[str]] = defaultdict(set)
        self.vpc_routes: dict[str, list[Route]] = defaultdict(list)
        for dx in topo.direct_connects.values():
            if dx.edge_host and dx.vpc_id in topo.vpcs:
                self.edge_services[dx.edge_host].append(dx)
                self.vpc_edges[dx.vpc_id].add(dx.edge_host)
                if dx.mode == "layer3" and dx.gateway_ip:
                    for prefix in self.learned.get(dx.id, ()):
                        self.vpc_routes[dx.vpc_id].append(Route(prefix, dx.gateway_ip))
        for vpn in topo.vpns.values():
            if vpn.vpn_host and vpn.vpc_id in topo.vpcs:
                self.edge_services[vpn.vpn_host].append(vpn)
                self.vpc_edges[vpn.vpc_id].add(vpn.vpn_host)
                if vpn.gateway_ip:
                    for prefix in vpn.remote_cidrs:
                        self.vpc_routes[vpn.vpc_id].append(Route(prefix, vpn.gateway_ip))

    def _add(self, a: Attachment) -> None:
        vpc = self.topo.vpcs.get(a.vpc_id)
        if vpc is not None and realizable(a, vpc):
            assert a.host
            self.vpc_hosts[a.vpc_id][a.host] += 1
            self.host_ports[a.host].add(a.id)
        # A reservation: a DHCP workload's fixed address, and a static virtual server's (a VM's
        # own DHCP client is the only way its address reaches inside the guest).
        if a.ip_address and a.mac_address and (
                a.ip_mode == "dhcp" or (a.ip_mode == "static" and a.workload_kind == "virtual_server")):
            self.reservations[a.vpc_id][a.id] = Reservation(a.mac_address, a.ip_address.split("/")[0])
        if a.ip_mode == "dhcp" and a.mac_address:
            self.dhcp_clients[a.vpc_id][a.id] = a.mac_address

    def _remove(self, a: Attachment) -> None:
        if a.host and a.id in self.host_ports.get(a.host, ()):
            self.host_ports[a.host].discard(a.id)
            c = self.vpc_hosts[a.vpc_id]
            c[a.host] -= 1
            if c[a.host] <= 0:
                del c[a.host]
        self.reservations.get(a.vpc_id, {}).pop(a.id, None)
        self.dhcp_clients.get(a.vpc_id, {}).pop(a.id, None)

    def routes(self, vpc_id: str) -> tuple[Route, ...]:
        return tuple(sorted(set(self.vpc_routes.get(vpc_id, ())), key=lambda r: (r.prefix, r.via)))

    def carriers(self, vpc: VPC) -> set[str]:
        hosts = set(self.vpc_hosts.get(vpc.id, ())) | self.vpc_edges.get(vpc.id, set())
        if vpc.dhcp is not None and vpc.dhcp_host and vpc.vni:
            hosts.add(vpc.dhcp_host)
        return hosts

    def carrier_ips(self, vpc_id: str) -> tuple[str, ...]:
        ips = self._carrier_ips.get(vpc_id)
        if ips is None:
            hosts = self.carriers(self.topo.vpcs[vpc_id])
            ips = self._carrier_ips[vpc_id] = tuple(sorted(self.underlay[h] for h in hosts if h in self.underlay))
        return ips

    def replace_attachment(self, old: Attachment | None, new: Attachment | None) -> set[str]:
        """Swap one attachment; returns the hosts whose desired config may have changed."""
        affected: set[str] = set()
        for a in (old, new):
            if a is not None and a.host:
                affected.add(a.host)
        for a in (old, new):
            if a is not None:
                self._carrier_ips.pop(a.vpc_id, None)
        before = {v: self.carriers(self.topo.vpcs[v]) for v in {a.vpc_id for a in (old, new) if a} if v in self.topo.vpcs}
        if old is not None:
            self._remove(old)
            self.topo.attachments.pop(old.id, None)
        if new is not None:
            self.topo.attachments[new.id] = new
            self._add(new)
        for vpc_id, hosts in before.items():
            vpc = self.topo.vpcs[vpc_id]
            after = self.carriers(vpc)
            if after != hosts:  # membership changed: every carrier's remotes change
                affected |= hosts | after
            if vpc.dhcp_host and ((old and old.ip_mode == "dhcp") or (new and new.ip_mode == "dhcp")):
                affected.add(vpc.dhcp_host)
        return affected

    def host_config(self, host: str) -> HostConfig:
        topo = self.topo
        ports = []
        vpcs: set[str] = set(self.dhcp_hosts.get(host, ()))
        offers: dict[str, str] = {}
        vpc_routes: dict[str, tuple[Route, ...]] = {}  # per VPC, not per port
        for aid in self.host_ports.get(host, ()):
            a = topo.attachments[aid]
            vpc = topo.vpcs[a.vpc_id]
            routes = vpc_routes.get(a.vpc_id)
            if routes is None:
                routes = vpc_routes[a.vpc_id] = self.routes(a.vpc_id)
            if a.ip_mode == "dhcp" and a.vpc_id not in offers:
                offers[a.vpc_id] = dhcp_options(vpc, routes)
            ports.append(make_port(a, vpc, routes, offers.get(a.vpc_id, "")))
            vpcs.add(a.vpc_id)
        dhcp = [make_dhcp(topo.vpcs[v], self.reservations.get(v, {}).values(), self.routes(v),
                          self.dhcp_clients.get(v, {}).values())
                for v in self.dhcp_hosts.get(host, ())]
        edges: list[EdgeRouter] = []
        vpns: list[VpnGateway] = []
        host_obj = topo.hosts.get(host)
        for svc in self.edge_services.get(host, ()):
            vpc = topo.vpcs[svc.vpc_id]
            if host_obj is None:
                continue
            if isinstance(svc, DirectConnect):
                item: EdgeRouter | VpnGateway | None = make_edge_router(svc, vpc, host_obj, self.digest)
            else:
                item = make_vpn_gateway(svc, vpc, host_obj, self.digest)
            if isinstance(item, EdgeRouter):
                edges.append(item)
            elif isinstance(item, VpnGateway):
                vpns.append(item)
            if item is not None:
                vpcs.add(vpc.id)
        own = self.underlay[host]
        segments = [make_segment(topo.vpcs[v], own, self.carrier_ips(v)) for v in vpcs]
        return HostConfig(
            host=host,
            underlay_ip=self.underlay[host],
            segments=tuple(sorted(segments, key=lambda s: s.vni)),
            ports=tuple(sorted(ports, key=lambda p: p.id)),
            dhcp_servers=tuple(sorted(dhcp, key=lambda d: d.vni)),
            edge_routers=tuple(sorted(edges, key=lambda e: e.id)),
            vpn_gateways=tuple(sorted(vpns, key=lambda v: v.id)),
        )


def host_configs(topo: Topology, learned: Mapping[str, tuple[str, ...]] | None = None,
                 digest: Digest = plain_digest) -> dict[str, HostConfig]:
    """Every known host's desired config (hosts with nothing on them get an empty config)."""
    with paused_gc():
        index = TopologyIndex(topo, learned, digest)
        return {name: index.host_config(name) for name in sorted(index.underlay)}
