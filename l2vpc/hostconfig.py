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

import ipaddress
import re
from dataclasses import asdict, dataclass, field
from typing import Any

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
class HostConfig:
    host: str
    underlay_ip: str
    generation: int = 0
    segments: tuple[Segment, ...] = ()
    ports: tuple[Port, ...] = ()
    dhcp_servers: tuple[DhcpServer, ...] = ()
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
            labels=dict(self.labels),
        )

    def same_dataplane(self, other: HostConfig) -> bool:
        """True when both configs describe the same dataplane (generation and labels ignored)."""
        a, b = self.normalized(), other.normalized()
        return (a.segments, a.ports, a.dhcp_servers, a.underlay_ip) == (
            b.segments,
            b.ports,
            b.dhcp_servers,
            b.underlay_ip,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

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
                labels={str(k): str(v) for k, v in dict(data.get("labels", {})).items()},
            )
        except KeyError as e:
            raise ValueError(f"host config: missing field {e.args[0]!r}") from None
        except (TypeError, ValueError) as e:
            raise ValueError(f"host config: {e}") from None


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
    return errors


def _route_errors(where: str, r: Route) -> list[str]:
    out = []
    try:
        ipaddress.IPv4Network(r.prefix)
    except ValueError:
        out.append(f"{where}.prefix: {r.prefix!r} is not an IPv4 network")
    if not _is_ipv4(r.via):
        out.append(f"{where}.via: {r.via!r} is not an IPv4 address")
    return out
