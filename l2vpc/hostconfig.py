"""The declarative configuration of one host: what the engine pushes and what an agent reports.

This module is the contract between the engine (which computes a HostConfig per host) and the
agents (which converge a host to it and report the HostConfig they actually run). It imports
nothing from the engine or the agent so both can depend on it.

Values are frozen, slotted dataclasses: the planner builds and compares tens of thousands of them
per plan, and pydantic's per-object cost is too high there. Input from outside (an agent's gRPC
request, a JSON file) goes through `HostConfig.from_dict` and then `validate_host_config`, which
returns the reasons a config is unacceptable instead of raising on the first one.

Device names are derived here, not chosen by agents, so that the engine, agents and tests agree
on them and an agent can recognise the devices it owns by prefix (`l2`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

# Secrets (a VPN's psk, a BGP md5_key, a Megaport circuit_key) travel engine → agent only. They
# never take part in comparisons (compare=False); instead each item carries `secret_digest`, a
# keyed digest the engine computes, so a changed secret still changes the item. Reports and
# anything stored by the engine go through `to_dict()`, which blanks them; agents persist their
# desired config with `to_dict(secrets=True)` in a 0600 file because they must re-apply it.
SECRET_FIELDS = ("psk", "md5_key", "circuit_key")

# Everything an agent creates on a host starts with this prefix; anything else is foreign.
DEVICE_PREFIX = "l2"
MIN_MTU = 576
MAX_MTU = 9000
MAX_INTERFACES_PER_WORKLOAD = 10
INTERFACE_NAMES = tuple(f"net{i}" for i in range(1, MAX_INTERFACES_PER_WORKLOAD + 1))
MAX_VNI = 16_777_215
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_WORKLOAD_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def bridge_name(vni: int) -> str:
    return f"{DEVICE_PREFIX}b{vni}"


def vxlan_name(vni: int) -> str:
    return f"{DEVICE_PREFIX}x{vni}"


def port_device_name(port_id: str) -> str:
    """Host side of an attachment's veth: prefix + a short stable id, within IFNAMSIZ (15)."""
    return f"{DEVICE_PREFIX}p{port_id[-10:]}"


def workload_netns(workload: str) -> str:
    return f"{DEVICE_PREFIX}w-{workload}"


@dataclass(frozen=True, slots=True)
class Segment:
    """One VPC's layer-2 segment on this host: a VXLAN device plus a bridge."""

    vni: int
    vpc_id: str
    mtu: int
    # Underlay addresses of the other hosts carrying this VNI (head-end replication), sorted.
    remotes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Route:
    prefix: str  # CIDR
    via: str  # next-hop IPv4


@dataclass(frozen=True, slots=True)
class Port:
    """One attachment: a veth from the segment's bridge into a workload's namespace."""

    id: str  # attachment id
    vni: int
    workload: str
    interface_name: str  # net1..net10
    mac: str
    mtu: int
    workload_kind: str = "virtual_server"  # virtual_server | pod
    ip_mode: str = "none"  # none | static | dhcp
    ip_address: str | None = None  # CIDR form, static only (dhcp reservations live on the server)
    routes: tuple[Route, ...] = ()
    # Bumped by the engine when the workload must restart its interface (scope change); a change
    # of epoch means "recreate this port", even if nothing else differs.
    restart_epoch: int = 0


@dataclass(frozen=True, slots=True)
class Reservation:
    mac: str
    ip: str  # plain address, no prefix


@dataclass(frozen=True, slots=True)
class DhcpServer:
    """A DHCP server for one VPC, placed on this host and attached to the segment's bridge."""

    vni: int
    server_ip: str  # CIDR form: address/prefixlen of the VPC cidr
    range_start: str
    range_end: str
    lease_time: int = 3600
    gateway: str | None = None
    dns_servers: tuple[str, ...] = ()
    reservations: tuple[Reservation, ...] = ()
    # Classless static routes (option 121) handed to clients, e.g. towards a direct connect.
    routes: tuple[Route, ...] = ()


@dataclass(frozen=True, slots=True)
class BgpPeer:
    """The BGP session of a layer-3 direct connect, from our (the provider's) side."""

    local_asn: int
    peer_asn: int
    local_ip: str  # CIDR form on the hand-off, e.g. 169.254.0.0/31
    peer_ip: str  # plain address of the customer router
    advertised: tuple[str, ...] = ()  # prefixes we announce (the VPC cidr by default)
    md5_key: str | None = field(default=None, repr=False, compare=False)  # secret: see SECRETS


@dataclass(frozen=True, slots=True)
class EdgeRouter:
    """A direct connect realized on an edge host.

    layer3: a router namespace attached to the VPC segment at `gateway_ip` and to the hand-off
    (the cross-connect device of this edge host) with the peering address, running BGP.
    layer2: the hand-off bridged into the VPC segment, tagged with `vlan` when set (frames with
    other tags dropped). In both modes `bandwidth_mbps` is enforced on the hand-off, both ways.
    """

    id: str  # direct connect id
    vni: int
    mode: str  # layer3 | layer2
    handoff: str  # device on the edge host facing the premises
    bandwidth_mbps: int
    mtu: int = 1500
    vlan: int | None = None
    gateway_ip: str | None = None  # layer3: CIDR form, inside the VPC cidr
    bgp: BgpPeer | None = None
    # Megaport service key: the circuit's identity; secret (see SECRETS).
    circuit_key: str | None = field(default=None, repr=False, compare=False)
    secret_digest: str = ""  # changes when md5_key or circuit_key change


@dataclass(frozen=True, slots=True)
class VpnGateway:
    """A site-to-site IKEv2 VPN instance on an edge host (strongSwan in its own namespace)."""

    id: str  # vpn id
    vni: int
    gateway_ip: str  # CIDR form, inside the VPC cidr: next hop of workloads to remote_cidrs
    outside_ip: str  # CIDR form, on the edge host's outside network (our public address)
    outside: str  # device on the edge host facing the outside network
    peer_address: str
    local_cidrs: tuple[str, ...]
    remote_cidrs: tuple[str, ...]
    ike_proposal: str  # strongSwan syntax, e.g. aes256-sha256-modp2048
    esp_proposal: str
    ike_lifetime: int = 28800
    esp_lifetime: int = 3600
    dpd_interval: int = 30
    dpd_timeout: int = 120
    mtu: int = 1500
    peer_id: str | None = None
    outside_gateway: str | None = None  # next hop on the outside network (default route)
    psk: str = field(default="", repr=False, compare=False)  # secret (see SECRETS)
    secret_digest: str = ""  # changes when psk changes


@dataclass(frozen=True, slots=True)
class Observation:
    """What an agent sees of a stateful item (a BGP session, a tunnel); reported, never pushed.

    state: edge routers `established` | `down` (layer2: `up` | `down`); VPNs `up` | `connecting`
    | `down`. `learned` lists prefixes learned from the peer (BGP).
    """

    id: str
    state: str
    detail: str = ""
    learned: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HostConfig:
    host: str
    underlay_ip: str
    generation: int = 0
    segments: tuple[Segment, ...] = ()
    ports: tuple[Port, ...] = ()
    dhcp_servers: tuple[DhcpServer, ...] = ()
    edge_routers: tuple[EdgeRouter, ...] = ()
    vpn_gateways: tuple[VpnGateway, ...] = ()
    # Reported by agents only (not part of the desired dataplane): sessions and tunnels.
    observations: tuple[Observation, ...] = field(default=(), compare=False, hash=False)
    # Free-form annotations that do not affect the dataplane (e.g. the engine's plan id).
    labels: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def normalized(self) -> HostConfig:
        """The same config with every collection in canonical order, so equality means 'same'."""
        return HostConfig(
            host=self.host,
            underlay_ip=self.underlay_ip,
            generation=self.generation,
            segments=tuple(
                sorted((_norm_segment(s) for s in self.segments), key=lambda s: s.vni)
            ),
            ports=tuple(sorted((_norm_port(p) for p in self.ports), key=lambda p: p.id)),
            dhcp_servers=tuple(
                sorted((_norm_dhcp(d) for d in self.dhcp_servers), key=lambda d: d.vni)
            ),
            edge_routers=tuple(sorted(self.edge_routers, key=lambda e: e.id)),
            vpn_gateways=tuple(sorted(self.vpn_gateways, key=lambda v: v.id)),
            observations=tuple(sorted(self.observations, key=lambda o: o.id)),
            labels=dict(self.labels),
        )

    def same_dataplane(self, other: HostConfig) -> bool:
        """True when both configs describe the same dataplane (generation and labels ignored)."""
        a, b = self.normalized(), other.normalized()
        return a.dataplane() == b.dataplane()

    def dataplane(self) -> tuple[Any, ...]:
        return (self.underlay_ip, self.segments, self.ports, self.dhcp_servers, self.edge_routers, self.vpn_gateways)

    def observation(self, ident: str) -> Observation | None:
        return next((o for o in self.observations if o.id == ident), None)

    def to_dict(self, *, secrets: bool = False) -> dict[str, Any]:
        """Plain data; secrets blanked unless asked for (see SECRET_FIELDS)."""
        data = asdict(self)
        if not secrets:
            _blank_secrets(data)
        return data

    @staticmethod
    def from_dict(data: dict[str, Any]) -> HostConfig:
        """Build from plain data (JSON, msgpack); raises ValueError naming the bad field."""
        if not isinstance(data, dict):
            raise ValueError("host config: expected an object")
        try:
            return HostConfig(
                host=str(data["host"]),
                underlay_ip=str(data["underlay_ip"]),
                generation=int(data.get("generation", 0)),
                segments=tuple(
                    Segment(
                        vni=int(s["vni"]),
                        vpc_id=str(s["vpc_id"]),
                        mtu=int(s["mtu"]),
                        remotes=tuple(str(r) for r in s.get("remotes", ())),
                    )
                    for s in data.get("segments", ())
                ),
                ports=tuple(
                    Port(
                        id=str(p["id"]),
                        vni=int(p["vni"]),
                        workload=str(p["workload"]),
                        interface_name=str(p["interface_name"]),
                        mac=str(p["mac"]).lower(),
                        mtu=int(p["mtu"]),
                        workload_kind=str(p.get("workload_kind", "virtual_server")),
                        ip_mode=str(p.get("ip_mode", "none")),
                        ip_address=(str(p["ip_address"]) if p.get("ip_address") else None),
                        routes=tuple(Route(str(r["prefix"]), str(r["via"])) for r in p.get("routes", ())),
                        restart_epoch=int(p.get("restart_epoch", 0)),
                    )
                    for p in data.get("ports", ())
                ),
                dhcp_servers=tuple(
                    DhcpServer(
                        vni=int(d["vni"]),
                        server_ip=str(d["server_ip"]),
                        range_start=str(d["range_start"]),
                        range_end=str(d["range_end"]),
                        lease_time=int(d.get("lease_time", 3600)),
                        gateway=(str(d["gateway"]) if d.get("gateway") else None),
                        dns_servers=tuple(str(x) for x in d.get("dns_servers", ())),
                        reservations=tuple(
                            Reservation(str(r["mac"]).lower(), str(r["ip"]))
                            for r in d.get("reservations", ())
                        ),
                        routes=tuple(Route(str(r["prefix"]), str(r["via"])) for r in d.get("routes", ())),
                    )
                    for d in data.get("dhcp_servers", ())
                ),
                edge_routers=tuple(_edge_router(e) for e in data.get("edge_routers", ())),
                vpn_gateways=tuple(_vpn_gateway(v) for v in data.get("vpn_gateways", ())),
                observations=tuple(
                    Observation(str(o["id"]), str(o["state"]), str(o.get("detail", "")),
                                tuple(str(x) for x in o.get("learned", ())))
                    for o in data.get("observations", ())
                ),
                labels={str(k): str(v) for k, v in dict(data.get("labels", {})).items()},
            )
        except KeyError as e:
            raise ValueError(f"host config: missing field {e.args[0]!r}") from None
        except (TypeError, ValueError) as e:
            raise ValueError(f"host config: {e}") from None


def config_digest(cfg: HostConfig) -> str:
    """What a host runs, as a short hash both sides compute alike: the agent sends it with
    every heartbeat and the controller compares it with the last report it recorded, so any
    change (drift, a session that came up, newly learned routes) makes the controller re-read
    the host. Generation and labels are left out; secrets are blank in reports anyway."""
    n = cfg.normalized()
    data = n.to_dict()
    data.pop("generation", None)
    data.pop("labels", None)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _blank_secrets(value: Any) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if k in SECRET_FIELDS and v:
                value[k] = ""
            else:
                _blank_secrets(v)
    elif isinstance(value, list | tuple):
        for v in value:
            _blank_secrets(v)


def _opt_str(d: dict[str, Any], key: str) -> str | None:
    v = d.get(key)
    return str(v) if v not in (None, "") else None


def _opt_int(d: dict[str, Any], key: str) -> int | None:
    v = d.get(key)
    return int(v) if v not in (None, "") else None


def _edge_router(e: dict[str, Any]) -> EdgeRouter:
    bgp = e.get("bgp")
    return EdgeRouter(
        id=str(e["id"]), vni=int(e["vni"]), mode=str(e["mode"]), handoff=str(e["handoff"]),
        bandwidth_mbps=int(e["bandwidth_mbps"]), mtu=int(e.get("mtu", 1500)), vlan=_opt_int(e, "vlan"),
        gateway_ip=_opt_str(e, "gateway_ip"),
        bgp=None if not bgp else BgpPeer(
            local_asn=int(bgp["local_asn"]), peer_asn=int(bgp["peer_asn"]), local_ip=str(bgp["local_ip"]),
            peer_ip=str(bgp["peer_ip"]), advertised=tuple(str(x) for x in bgp.get("advertised", ())),
            md5_key=_opt_str(bgp, "md5_key"),
        ),
        circuit_key=_opt_str(e, "circuit_key"), secret_digest=str(e.get("secret_digest", "")),
    )


def _vpn_gateway(v: dict[str, Any]) -> VpnGateway:
    return VpnGateway(
        id=str(v["id"]), vni=int(v["vni"]), gateway_ip=str(v["gateway_ip"]), outside_ip=str(v["outside_ip"]),
        outside=str(v["outside"]), peer_address=str(v["peer_address"]),
        local_cidrs=tuple(str(x) for x in v.get("local_cidrs", ())),
        remote_cidrs=tuple(str(x) for x in v.get("remote_cidrs", ())),
        ike_proposal=str(v["ike_proposal"]), esp_proposal=str(v["esp_proposal"]),
        ike_lifetime=int(v.get("ike_lifetime", 28800)), esp_lifetime=int(v.get("esp_lifetime", 3600)),
        dpd_interval=int(v.get("dpd_interval", 30)), dpd_timeout=int(v.get("dpd_timeout", 120)),
        mtu=int(v.get("mtu", 1500)), peer_id=_opt_str(v, "peer_id"), outside_gateway=_opt_str(v, "outside_gateway"),
        psk=str(v.get("psk", "")), secret_digest=str(v.get("secret_digest", "")),
    )


def _norm_segment(s: Segment) -> Segment:
    return Segment(s.vni, s.vpc_id, s.mtu, tuple(sorted(set(s.remotes))))


def _norm_port(p: Port) -> Port:
    return Port(
        p.id, p.vni, p.workload, p.interface_name, p.mac.lower(), p.mtu, p.workload_kind,
        p.ip_mode, p.ip_address, tuple(sorted(p.routes, key=lambda r: (r.prefix, r.via))), p.restart_epoch,
    )


def _norm_dhcp(d: DhcpServer) -> DhcpServer:
    return DhcpServer(
        d.vni, d.server_ip, d.range_start, d.range_end, d.lease_time, d.gateway, tuple(d.dns_servers),
        tuple(sorted(d.reservations, key=lambda r: (r.mac, r.ip))),
        tuple(sorted(d.routes, key=lambda r: (r.prefix, r.via))),
    )


def _is_ipv4(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


def _is_ipv4_interface(value: str) -> bool:
    if "/" not in value:
        return False
    try:
        ipaddress.IPv4Interface(value)
    except ValueError:
        return False
    return True


def validate_host_config(cfg: HostConfig) -> list[str]:
    """Every reason this config cannot be applied; empty when it is acceptable.

    Each reason starts with the path of the offending field, e.g. `ports[2].mtu: ...`.
    Agents must reject a config with any reason and leave the host untouched.
    """
    errors: list[str] = []
    if not _is_ipv4(cfg.underlay_ip):
        errors.append(f"underlay_ip: {cfg.underlay_ip!r} is not an IPv4 address")
    if cfg.generation < 0:
        errors.append("generation: must be >= 0")
    vnis: set[int] = set()
    for i, s in enumerate(cfg.segments):
        where = f"segments[{i}]"
        if not 1 <= s.vni <= MAX_VNI:
            errors.append(f"{where}.vni: {s.vni} is outside 1..{MAX_VNI}")
        if s.vni in vnis:
            errors.append(f"{where}.vni: duplicate VNI {s.vni}")
        vnis.add(s.vni)
        if not MIN_MTU <= s.mtu <= MAX_MTU:
            errors.append(f"{where}.mtu: {s.mtu} is outside {MIN_MTU}..{MAX_MTU}")
        for j, r in enumerate(s.remotes):
            if not _is_ipv4(r):
                errors.append(f"{where}.remotes[{j}]: {r!r} is not an IPv4 address")
            elif r == cfg.underlay_ip:
                errors.append(f"{where}.remotes[{j}]: {r} is this host's own underlay address")
    ids: set[str] = set()
    devices: dict[str, str] = {}
    ifnames: set[tuple[str, str]] = set()
    macs: set[str] = set()
    for i, p in enumerate(cfg.ports):
        where = f"ports[{i}]"
        if not p.id or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", p.id):
            errors.append(f"{where}.id: {p.id!r} must be 1-64 letters, digits, '-' or '_'")
        if p.id in ids:
            errors.append(f"{where}.id: duplicate port id {p.id!r}")
        elif devices.setdefault(port_device_name(p.id), p.id) != p.id:
            errors.append(
                f"{where}.id: {p.id!r} and {devices[port_device_name(p.id)]!r} map to the same host device "
                f"{port_device_name(p.id)}; ids must differ in their last 10 characters"
            )
        ids.add(p.id)
        if p.vni not in vnis:
            errors.append(f"{where}.vni: unknown VNI {p.vni} (no segment on this host carries it)")
        if not _WORKLOAD_RE.fullmatch(p.workload):
            errors.append(f"{where}.workload: {p.workload!r} must be 1-63 lowercase letters, digits or '-'")
        if p.interface_name not in INTERFACE_NAMES:
            errors.append(f"{where}.interface_name: {p.interface_name!r} must be one of net1..net10")
        key = (p.workload, p.interface_name)
        if key in ifnames:
            errors.append(
                f"{where}.interface_name: duplicate interface {p.interface_name} in workload {p.workload!r}"
            )
        ifnames.add(key)
        if not _MAC_RE.fullmatch(p.mac):
            errors.append(f"{where}.mac: {p.mac!r} is not a MAC address like 02:00:00:00:00:01")
        elif int(p.mac[:2], 16) & 1:
            errors.append(f"{where}.mac: {p.mac} is a multicast address")
        if p.mac in macs:
            errors.append(f"{where}.mac: duplicate MAC {p.mac}")
        macs.add(p.mac)
        if not MIN_MTU <= p.mtu <= MAX_MTU:
            errors.append(f"{where}.mtu: {p.mtu} is outside {MIN_MTU}..{MAX_MTU}")
        if p.workload_kind not in ("virtual_server", "pod"):
            errors.append(f"{where}.workload_kind: {p.workload_kind!r} must be virtual_server or pod")
        if p.ip_mode not in ("none", "static", "dhcp"):
            errors.append(f"{where}.ip_mode: {p.ip_mode!r} must be none, static or dhcp")
        if p.ip_mode == "static" and not (p.ip_address and _is_ipv4_interface(p.ip_address)):
            errors.append(f"{where}.ip_address: static mode needs an address in CIDR form, got {p.ip_address!r}")
        if p.ip_mode != "static" and p.ip_address:
            errors.append(f"{where}.ip_address: only static ports carry an address")
        for j, route in enumerate(p.routes):
            errors.extend(_route_errors(f"{where}.routes[{j}]", route))
    dhcp_vnis: set[int] = set()
    for i, d in enumerate(cfg.dhcp_servers):
        where = f"dhcp_servers[{i}]"
        if d.vni not in vnis:
            errors.append(f"{where}.vni: unknown VNI {d.vni} (no segment on this host carries it)")
        if d.vni in dhcp_vnis:
            errors.append(f"{where}.vni: two DHCP servers for VNI {d.vni}")
        dhcp_vnis.add(d.vni)
        if not _is_ipv4_interface(d.server_ip):
            errors.append(f"{where}.server_ip: {d.server_ip!r} must be an address in CIDR form")
            continue
        net = ipaddress.IPv4Interface(d.server_ip).network
        for name in ("range_start", "range_end"):
            value = getattr(d, name)
            if not _is_ipv4(value) or ipaddress.IPv4Address(value) not in net:
                errors.append(f"{where}.{name}: {value!r} must be an address inside {net}")
        if d.gateway is not None and not _is_ipv4(d.gateway):
            errors.append(f"{where}.gateway: {d.gateway!r} is not an IPv4 address")
        if not 120 <= d.lease_time <= 604800:
            errors.append(f"{where}.lease_time: {d.lease_time} is outside 120..604800")
        for j, dns in enumerate(d.dns_servers):
            if not _is_ipv4(dns):
                errors.append(f"{where}.dns_servers[{j}]: {dns!r} is not an IPv4 address")
        for j, res in enumerate(d.reservations):
            if not _MAC_RE.fullmatch(res.mac):
                errors.append(f"{where}.reservations[{j}].mac: {res.mac!r} is not a MAC address")
            if not _is_ipv4(res.ip) or ipaddress.IPv4Address(res.ip) not in net:
                errors.append(f"{where}.reservations[{j}].ip: {res.ip!r} must be an address inside {net}")
        for j, rt in enumerate(d.routes):
            errors.extend(_route_errors(f"{where}.routes[{j}]", rt))
    for i, e in enumerate(cfg.edge_routers):
        errors.extend(_edge_errors(f"edge_routers[{i}]", e, vnis))
    for i, v in enumerate(cfg.vpn_gateways):
        errors.extend(_vpn_errors(f"vpn_gateways[{i}]", v, vnis))
    item_ids = [x.id for x in cfg.edge_routers] + [x.id for x in cfg.vpn_gateways]
    for dup in sorted({x for x in item_ids if item_ids.count(x) > 1}):
        errors.append(f"edge_routers: duplicate id {dup!r}")
    return errors


_DEVICE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


def _edge_errors(where: str, e: EdgeRouter, vnis: set[int]) -> list[str]:
    out = []
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", e.id):
        out.append(f"{where}.id: {e.id!r} must be 1-64 letters, digits, '-' or '_'")
    if e.vni not in vnis:
        out.append(f"{where}.vni: unknown VNI {e.vni} (no segment on this host carries it)")
    if e.mode not in ("layer3", "layer2"):
        out.append(f"{where}.mode: {e.mode!r} must be layer3 or layer2")
    if not _DEVICE_RE.fullmatch(e.handoff):
        out.append(f"{where}.handoff: {e.handoff!r} is not a device name")
    if not 1 <= e.bandwidth_mbps <= 100_000:
        out.append(f"{where}.bandwidth_mbps: {e.bandwidth_mbps} is outside 1..100000")
    if not MIN_MTU <= e.mtu <= MAX_MTU:
        out.append(f"{where}.mtu: {e.mtu} is outside {MIN_MTU}..{MAX_MTU}")
    if e.vlan is not None and (e.mode != "layer2" or not 2 <= e.vlan <= 4093):
        out.append(f"{where}.vlan: {e.vlan} needs mode layer2 and a tag in 2..4093")
    if e.mode == "layer3":
        if not (e.gateway_ip and _is_ipv4_interface(e.gateway_ip)):
            out.append(f"{where}.gateway_ip: layer3 needs an address in CIDR form, got {e.gateway_ip!r}")
        if e.bgp is None:
            out.append(f"{where}.bgp: layer3 needs a BGP peer")
        else:
            if not _is_ipv4_interface(e.bgp.local_ip):
                out.append(f"{where}.bgp.local_ip: {e.bgp.local_ip!r} must be an address in CIDR form")
            elif not _is_ipv4(e.bgp.peer_ip) or ipaddress.IPv4Address(e.bgp.peer_ip) not in ipaddress.IPv4Interface(
                e.bgp.local_ip
            ).network:
                out.append(f"{where}.bgp.peer_ip: {e.bgp.peer_ip!r} must be inside {e.bgp.local_ip}")
            for n, asn in (("local_asn", e.bgp.local_asn), ("peer_asn", e.bgp.peer_asn)):
                if not 1 <= asn <= 4294967294:
                    out.append(f"{where}.bgp.{n}: {asn} is outside 1..4294967294")
            for j, pfx in enumerate(e.bgp.advertised):
                try:
                    ipaddress.IPv4Network(pfx)
                except ValueError:
                    out.append(f"{where}.bgp.advertised[{j}]: {pfx!r} is not an IPv4 network")
    return out


def _vpn_errors(where: str, v: VpnGateway, vnis: set[int]) -> list[str]:
    out = []
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", v.id):
        out.append(f"{where}.id: {v.id!r} must be 1-64 letters, digits, '-' or '_'")
    if v.vni not in vnis:
        out.append(f"{where}.vni: unknown VNI {v.vni} (no segment on this host carries it)")
    for name in ("gateway_ip", "outside_ip"):
        if not _is_ipv4_interface(getattr(v, name)):
            out.append(f"{where}.{name}: {getattr(v, name)!r} must be an address in CIDR form")
    if not _DEVICE_RE.fullmatch(v.outside):
        out.append(f"{where}.outside: {v.outside!r} is not a device name")
    if not _is_ipv4(v.peer_address):
        out.append(f"{where}.peer_address: {v.peer_address!r} is not an IPv4 address")
    if v.outside_gateway is not None and not _is_ipv4(v.outside_gateway):
        out.append(f"{where}.outside_gateway: {v.outside_gateway!r} is not an IPv4 address")
    for name in ("local_cidrs", "remote_cidrs"):
        values = getattr(v, name)
        if not values:
            out.append(f"{where}.{name}: at least one network is required")
        for j, c in enumerate(values):
            try:
                ipaddress.IPv4Network(c)
            except ValueError:
                out.append(f"{where}.{name}[{j}]: {c!r} is not an IPv4 network")
    if not v.psk:
        out.append(f"{where}.psk: a pre-shared key is required")
    if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", v.ike_proposal):
        out.append(f"{where}.ike_proposal: {v.ike_proposal!r} is not a proposal like aes256-sha256-modp2048")
    if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", v.esp_proposal):
        out.append(f"{where}.esp_proposal: {v.esp_proposal!r} is not a proposal like aes256-sha256-modp2048")
    if not 10 <= v.dpd_interval < v.dpd_timeout:
        out.append(f"{where}.dpd_timeout: needs dpd_interval >= 10 and dpd_timeout > dpd_interval")
    if not MIN_MTU <= v.mtu <= MAX_MTU:
        out.append(f"{where}.mtu: {v.mtu} is outside {MIN_MTU}..{MAX_MTU}")
    return out


def _route_errors(where: str, r: Route) -> list[str]:
    out = []
    try:
        ipaddress.IPv4Network(r.prefix)
    except ValueError:
        out.append(f"{where}.prefix: {r.prefix!r} is not an IPv4 network")
    if not _is_ipv4(r.via):
        out.append(f"{where}.via: {r.via!r} is not an IPv4 address")
    return out
