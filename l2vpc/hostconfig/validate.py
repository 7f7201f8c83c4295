"""Every reason a HostConfig cannot be applied, each starting with the path of its field.

Agents must reject a config with any reason and leave the host untouched; the engine checks its
own output with the same function in tests.
"""

from __future__ import annotations

import functools
import ipaddress
import re

from l2vpc.hostconfig.model import (
    INTERFACE_NAMES,
    MAX_MTU,
    MAX_PINNED_SOURCES,
    MAX_VNI,
    MIN_MTU,
    EdgeRouter,
    HostConfig,
    Port,
    Route,
    VpnGateway,
    pinned_sources,
)
from l2vpc.hostconfig.names import port_device_name

_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_WORKLOAD_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


# The canonical dotted form (no leading zeros, ASCII digits) that every address the engine
# sends takes: valid without a parse. ipaddress parses in Python (~10-20 us a value) and a
# 1,000-host apply validates ~20,000 distinct addresses, each push twice.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}", re.ASCII)
_CANONICAL_INTERFACE = re.compile(rf"({_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET})/(?:3[0-2]|[12]?[0-9])", re.ASCII)


# Other forms memoized: every host's config names the same underlay addresses (its VPCs' other
# hosts).
def _is_ipv4(value: str) -> bool:
    if isinstance(value, str):
        return _CANONICAL.fullmatch(value) is not None or _ipv4_ok(value)
    return _ipv4_ok.__wrapped__(value)


def _address_int(value: str) -> int:
    """A valid IPv4 address (see _is_ipv4) as an integer."""
    if _CANONICAL.fullmatch(value):
        a, b, c, d = value.split(".")
        return (int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d)
    return int(ipaddress.IPv4Address(value))


@functools.lru_cache(maxsize=65_536)
def _ipv4_ok(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


def _is_ipv4_interface(value: str) -> bool:
    if isinstance(value, str):
        return _CANONICAL_INTERFACE.fullmatch(value) is not None or _interface_ok(value)
    return _interface_ok.__wrapped__(value)


@functools.lru_cache(maxsize=65_536)
def _interface_ok(value: str) -> bool:
    if "/" not in value:
        return False
    try:
        ipaddress.IPv4Interface(value)
    except ValueError:
        return False
    return True


def workload_name_problem(name: str) -> str:
    """Why `name` is not a workload name ('' when it is one)."""
    if _WORKLOAD_RE.fullmatch(name):
        return ""
    return f"{name[:80]!r} must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit"


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
        errors.extend(_security_errors(where, p))
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
        lo, hi = int(net.network_address), int(net.broadcast_address)  # `in net`, by integers
        for name in ("range_start", "range_end"):
            value = getattr(d, name)
            if not _is_ipv4(value) or not lo <= _address_int(value) <= hi:
                errors.append(f"{where}.{name}: {value!r} must be an address inside {net}")
        if d.gateway is not None and not _is_ipv4(d.gateway):
            errors.append(f"{where}.gateway: {d.gateway!r} is not an IPv4 address")
        if not 120 <= d.lease_time <= 604800:
            errors.append(f"{where}.lease_time: {d.lease_time} is outside 120..604800")
        if not MIN_MTU <= d.mtu <= MAX_MTU:
            errors.append(f"{where}.mtu: {d.mtu} is outside {MIN_MTU}..{MAX_MTU}")
        for j, dns in enumerate(d.dns_servers):
            if not _is_ipv4(dns):
                errors.append(f"{where}.dns_servers[{j}]: {dns!r} is not an IPv4 address")
        for j, res in enumerate(d.reservations):
            if not _MAC_RE.fullmatch(res.mac):
                errors.append(f"{where}.reservations[{j}].mac: {res.mac!r} is not a MAC address")
            if not _is_ipv4(res.ip) or not lo <= _address_int(res.ip) <= hi:
                errors.append(f"{where}.reservations[{j}].ip: {res.ip!r} must be an address inside {net}")
        for j, rt in enumerate(d.routes):
            errors.extend(_route_errors(f"{where}.routes[{j}]", rt))
        errors.extend(f"{where}.clients[{j}]: {mac!r} is not a MAC address"
                      for j, mac in enumerate(d.clients) if not _MAC_RE.fullmatch(mac))
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


def _security_errors(where: str, p: Port) -> list[str]:
    """A secured port's sources must be canonical (what the agent reads back from its filter is
    compared with them as they are); an unsecured port has none."""
    if not p.port_security:
        return [f"{where}.allowed_addresses: only a port with port_security has them"] if p.allowed_addresses else []
    if len(p.allowed_addresses) > MAX_PINNED_SOURCES:
        return [f"{where}.allowed_addresses: {len(p.allowed_addresses)} networks, at most {MAX_PINNED_SOURCES}"]
    try:
        canonical = pinned_sources(p.allowed_addresses)
    except ValueError as e:
        return [f"{where}.allowed_addresses: {e}"]
    if canonical != tuple(p.allowed_addresses):
        return [f"{where}.allowed_addresses: must be merged, sorted IPv4 networks in CIDR form: "
                f"{', '.join(canonical) or '(none)'}"]
    return []


def _route_errors(where: str, r: Route) -> list[str]:
    out = []
    try:
        ipaddress.IPv4Network(r.prefix)
    except ValueError:
        out.append(f"{where}.prefix: {r.prefix!r} is not an IPv4 network")
    if not _is_ipv4(r.via):
        out.append(f"{where}.via: {r.via!r} is not an IPv4 address")
    return out
