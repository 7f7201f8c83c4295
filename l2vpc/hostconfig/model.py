"""The declarative configuration of one host: what the engine pushes and what an agent reports.

Values are frozen, slotted dataclasses: the planner builds and compares tens of thousands of them
per plan, and pydantic's per-object cost is too high there. Input from outside (an agent's gRPC
request, a JSON file) goes through `HostConfig.from_dict` and then `validate_host_config`
(validate.py), which returns the reasons a config is unacceptable instead of raising on the first.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, is_dataclass
from itertools import pairwise
from typing import Any

# never take part in comparisons (compare=False); instead each item carries `secret_digest`, a
# keyed digest the engine computes, so a changed secret still changes the item. Reports and
# anything stored by the engine go through `to_dict()`, which blanks them; agents persist their
# desired config with `to_dict(secrets=True)` in a 0600 file because they must re-apply it.
SECRET_FIELDS = ("psk", "md5_key", "circuit_key")

MIN_MTU = 576
MAX_MTU = 9000
MAX_INTERFACES_PER_WORKLOAD = 10
INTERFACE_NAMES = tuple(f"net{i}" for i in range(1, MAX_INTERFACES_PER_WORKLOAD + 1))
MAX_VNI = 16_777_215
# A secured port's sources: its own address and at most 10 allowed addresses (as Neutron's
# default max_allowed_address_pair); the agent names the port's nftables chain after them.
MAX_ALLOWED_ADDRESSES = 10
MAX_PINNED_SOURCES = MAX_ALLOWED_ADDRESSES + 1


@dataclass(frozen=True, slots=True)
class Segment:
    """One VPC's layer-2 segment on this host: a VXLAN device plus a bridge."""

    vni: int
    vpc_id: str
    mtu: int
    # Underlay addresses of the other hosts carrying this VNI (head-end replication), sorted.
    remotes: tuple[str, ...] = ()
    vpc_name: str = ""  # what Pods name the VPC by (CNI network configs say `vpc = "<name>"`)


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
    # A DHCP port: a digest of what the VPC's DHCP server offers (router, DNS, routes, MTU,
    # lease time). When it changes, the agent has the clients it runs renew their lease now
    # (routes a direct connect learns reach them at once, not at the next renewal).
    dhcp_options: str = ""
    # Where a runtime-owned workload's interface lives: the network namespace a CNI ADD named
    # (pods). Set by the agent only, never pushed: a pod port without one waits for its pod.
    sandbox: str = field(default="", compare=False)
    # A virtual server's port realised as a tap device a hypervisor opens (the host's choice,
    # made by its agent; never pushed). False: a veth into a namespace (the lab's workloads).
    tap: bool = field(default=False, compare=False)
    # Port security (opt-in; off: flat L2). On, the host side passes only frames from `mac`,
    # ARP and IPv4 only from the sources in `allowed_addresses` (the port's own address, static
    # or its DHCP reservation, and the attachment's allowed addresses: networks in canonical
    # form, see pinned_sources), DHCP client traffic, and no DHCP server replies. Changing
    # either is a live update of the host side's filter, never a new port.
    port_security: bool = False
    allowed_addresses: tuple[str, ...] = ()


def pinned_sources(addresses: Iterable[str]) -> tuple[str, ...]:
    """Addresses and networks (10.0.0.5, 10.0.0.5/24, 10.1.0.0/16) as the sources a secured
    port may use: networks (host bits dropped), merged, sorted, in CIDR form. Raises ValueError."""
    return _pinned(tuple(addresses))


@functools.lru_cache(maxsize=8192)  # every agent's validation asks again for every port
def _pinned(addresses: tuple[str, ...]) -> tuple[str, ...]:
    nets = (ipaddress.IPv4Interface(a).network for a in addresses)
    return tuple(str(n) for n in ipaddress.collapse_addresses(nets))


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
    # The interface MTU offered (option 26): the VPC's, so a guest started without an MTU of
    # its hypervisor's (QEMU host_mtu) still gets it.
    mtu: int = 1500
    # The MACs of the VPC's DHCP workloads: the lease of a MAC that leaves is released at once
    # (a Pod deleted and never heard of again would otherwise hold its address a lease time).
    clients: tuple[str, ...] = ()


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
    | `down`; overlay peers (id `overlay:<peer underlay address>`, see `overlay_observation_id`)
    `degraded`, reported only while the pair fails. `learned` lists prefixes learned from the
    peer (BGP). When it is not up, `reason` says why in a word code can act on
    (OBSERVATION_REASONS) and `detail` in words for people. `path_mtu`: an overlay peer's
    measured underlay path MTU (IP bytes; 0 = not measured, e.g. the peer does not answer).
    """

    id: str
    state: str
    detail: str = ""
    learned: tuple[str, ...] = ()
    reason: str = ""
    path_mtu: int = 0


# Why an edge router or VPN gateway is not up. The first four mean the peer answered and said
# no: waiting will not change it (a caller stops waiting and reports it).
OBSERVATION_REASONS = (
    "auth_failed",          # the peer rejected our key or identity, or we rejected its
    "proposal_rejected",    # no IKE or ESP proposal in common
    "selectors_rejected",   # the peer refused the traffic selectors
    "negotiation_refused",  # the peer refused the negotiation for another reason
    "peer_not_responding",  # no answer from the peer
    "session_down",         # BGP session not established (peer address, ASN or MD5 key?)
    "no_carrier",           # the hand-off link is down
    "not_in_place",         # a part of the item is missing on the host
    "daemon_down",          # the routing or IKE daemon is not running or not answering
    "install_failed",       # the kernel refused a route or policy
    "no_sa",                # no IKE_SA yet; traffic to the remote networks starts one
    "not_configured",       # the host does not run the item
    "path_mtu",             # overlay peer: the underlay path drops frames as big as the VPCs need
)
PEER_REFUSED = frozenset({"auth_failed", "proposal_rejected", "selectors_rejected", "negotiation_refused"})

# What VXLAN adds to a VPC's frames on the underlay (outer IPv4 20 + UDP 8 + VXLAN 8 + inner
# Ethernet 14): a VPC of MTU m needs an underlay path MTU of m + 50.
VXLAN_OVERHEAD = 50
OVERLAY_OBSERVATION_PREFIX = "overlay:"


def overlay_observation_id(peer_ip: str) -> str:
    """The id of the observation an agent reports while its overlay path to `peer_ip` fails."""
    return OVERLAY_OBSERVATION_PREFIX + peer_ip


def overlay_peer(observation_id: str) -> str | None:
    """The peer's underlay address of an overlay observation id; None for other observations."""
    if observation_id.startswith(OVERLAY_OBSERVATION_PREFIX):
        return observation_id[len(OVERLAY_OBSERVATION_PREFIX):]
    return None


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
        """The same config with every collection in canonical order, so equality means 'same'.
        A config in that order already is returned as it is (what drivers report, what the
        engine plans: a push compares several of them, ~40% of a memory host's converge)."""
        if type(self.segments) is type(self.ports) is type(self.dhcp_servers) is type(self.edge_routers) \
                is type(self.vpn_gateways) is type(self.observations) is tuple and self._is_normal():
            return self
        return self._normalized_copy()

    def _normalized_copy(self) -> HostConfig:
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

    def _is_normal(self) -> bool:
        """Whether normalized() would return an equal config: the checks of its sorts, in order."""
        return (_increasing(s.vni for s in self.segments)
                and all(_strictly_increasing(s.remotes) for s in self.segments)
                and _increasing(p.id for p in self.ports)
                and all(p.mac == p.mac.lower() and type(p.routes) is tuple
                        and _increasing((r.prefix, r.via) for r in p.routes) for p in self.ports)
                and _increasing(d.vni for d in self.dhcp_servers)
                and all(type(d.dns_servers) is tuple is type(d.reservations) is type(d.routes)
                        and _increasing((r.mac, r.ip) for r in d.reservations)
                        and _increasing((r.prefix, r.via) for r in d.routes)
                        and _strictly_increasing(d.clients) and all(m == m.lower() for m in d.clients)
                        for d in self.dhcp_servers)
                and _increasing(e.id for e in self.edge_routers)
                and _increasing(v.id for v in self.vpn_gateways)
                and _increasing(o.id for o in self.observations))

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
        return plain(self, blank=not secrets)

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
                        vpc_name=str(s.get("vpc_name", "")),
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
                        dhcp_options=str(p.get("dhcp_options", "")),
                        sandbox=str(p.get("sandbox", "")),
                        tap=bool(p.get("tap", False)),
                        port_security=bool(p.get("port_security", False)),
                        allowed_addresses=tuple(str(a) for a in p.get("allowed_addresses", ())),
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
                        mtu=int(d.get("mtu", 1500)),
                        clients=tuple(str(m).lower() for m in d.get("clients", ())),
                    )
                    for d in data.get("dhcp_servers", ())
                ),
                edge_routers=tuple(_edge_router(e) for e in data.get("edge_routers", ())),
                vpn_gateways=tuple(_vpn_gateway(v) for v in data.get("vpn_gateways", ())),
                observations=tuple(
                    Observation(str(o["id"]), str(o["state"]), str(o.get("detail", "")),
                                tuple(str(x) for x in o.get("learned", ())), str(o.get("reason", "")),
                                int(o.get("path_mtu", 0)))
                    for o in data.get("observations", ())
                ),
                labels={str(k): str(v) for k, v in dict(data.get("labels", {})).items()},
            )
        except KeyError as e:
            raise ValueError(f"host config: missing field {e.args[0]!r}") from None
        except (TypeError, ValueError) as e:
            raise ValueError(f"host config: {e}") from None


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_ATOMS = frozenset({str, int, float, bool, type(None)})


def plain(value: Any, blank: bool = False) -> Any:
    """dataclasses.asdict's result (tuples stay tuples, lists lists), ~4x faster: field names
    kept per class and plain values passed through (without a call each: most fields are) instead
    of deep-copied. A push converts a host's config this way several times (report, digest,
    state file). `blank`: blank_secrets of the result, done as each secret field is converted
    rather than in a second walk over every value."""
    cls = type(value)
    names = _FIELD_NAMES.get(cls)
    if names is not None:
        return {n: "" if blank and v and n in SECRET_FIELDS else v if type(v) in _ATOMS else plain(v, blank)
                for n in names for v in [getattr(value, n)]}
    if cls in _ATOMS:
        return value
    if cls is tuple:
        return tuple([v if type(v) in _ATOMS else plain(v, blank) for v in value])
    if cls is list:
        return [v if type(v) in _ATOMS else plain(v, blank) for v in value]
    if cls is dict:
        return {k: "" if blank and v and k in SECRET_FIELDS else plain(v, blank)
                for k, v in ((plain(k), v) for k, v in value.items())}
    if is_dataclass(value) and not isinstance(value, type):
        _FIELD_NAMES[cls] = tuple(f.name for f in fields(value))
        return plain(value, blank)
    copied = copy.deepcopy(value)  # as asdict (namedtuples and other types: none in these configs)
    return blank_secrets(copied) if blank else copied


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


def blank_secrets(value: Any) -> Any:
    """`value` (plain data of config items) with every secret field emptied, in place."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k in SECRET_FIELDS and v:
                value[k] = ""
            else:
                blank_secrets(v)
    elif isinstance(value, list | tuple):
        for v in value:
            blank_secrets(v)
    return value


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


def _increasing(keys: Iterable[Any]) -> bool:
    """Sorted (ties allowed: sorted() keeps their order)."""
    return all(a <= b for a, b in pairwise(keys))


def _strictly_increasing(values: tuple[str, ...]) -> bool:
    """A tuple, sorted, without repeats (what tuple(sorted(set(...))) gives)."""
    return type(values) is tuple and all(a < b for a, b in pairwise(values))


def _norm_segment(s: Segment) -> Segment:
    return Segment(s.vni, s.vpc_id, s.mtu, tuple(sorted(set(s.remotes))), s.vpc_name)


def _norm_port(p: Port) -> Port:
    return Port(
        p.id, p.vni, p.workload, p.interface_name, p.mac.lower(), p.mtu, p.workload_kind,
        p.ip_mode, p.ip_address, tuple(sorted(p.routes, key=lambda r: (r.prefix, r.via))), p.restart_epoch,
        p.dhcp_options, p.sandbox, p.tap, p.port_security, p.allowed_addresses,
    )


def _norm_dhcp(d: DhcpServer) -> DhcpServer:
    return DhcpServer(
        d.vni, d.server_ip, d.range_start, d.range_end, d.lease_time, d.gateway, tuple(d.dns_servers),
        tuple(sorted(d.reservations, key=lambda r: (r.mac, r.ip))),
        tuple(sorted(d.routes, key=lambda r: (r.prefix, r.via))), d.mtu,
        tuple(sorted({m.lower() for m in d.clients})),
    )
