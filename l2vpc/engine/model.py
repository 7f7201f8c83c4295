"""The engine's objects: hosts, VPCs, attachments, direct connects and VPNs (pydantic v2).

Each model checks the rules that concern only itself (ranges, formats, containment inside its
own CIDR). Rules that need other objects (unique IPs in a VPC, 10 VPCs per workload, host
regions, names) live in `validation.py`. `parse()` turns pydantic's errors into our
ValidationError with dotted field paths and the allowed values, one problem per entry.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError

from l2vpc.engine.addresses import (
    _ipv4,
    _ipv4_interface,
    _ipv4_network,
    _ipv4_source,
    ip_address,
    ip_network,
    last_usable,
)
from l2vpc.engine.errors import ValidationError
from l2vpc.hostconfig import MAX_ALLOWED_ADDRESSES

MAX_VPCS_PER_WORKLOAD = 10
# Bounds of inputs, so that no single request costs unbounded work (docs: resources' schemas).
MIN_CIDR_PREFIX = 8  # a VPC cidr holds at most a /8: 16,777,216 addresses
MAX_DNS_SERVERS = 8
MAX_TRAFFIC_SELECTORS = 32  # a VPN's local_cidrs and remote_cidrs, each
MAX_ADVERTISED_PREFIXES = 64
NAME_PATTERN = r"^[a-z0-9-]{1,63}$"
_NAME_RE = re.compile(NAME_PATTERN)
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_PSK_RE = re.compile(r"^[A-Za-z0-9_.]{8,64}$")
SEALED_INPUT_PREFIX = "sealed:"


def _name(value: str) -> str:
    if not _NAME_RE.fullmatch(value):
        raise ValueError(f"{value!r} must be 1-63 characters of lowercase letters, digits and '-'")
    return value


def _mac(value: str) -> str:
    v = value.lower()
    if not _MAC_RE.fullmatch(v):
        raise ValueError(f"{value!r} is not a MAC address like 02:00:00:00:00:01")
    if int(v[:2], 16) & 1:
        raise ValueError(f"{value!r} is a multicast MAC address; use a unicast one")
    if v == "00:00:00:00:00:00":
        raise ValueError("00:00:00:00:00:00 is not a usable MAC address")
    return v


# Validation context of an object as reads return it: its secrets left out (engine/secrets.py),
# so the rules that require one (a VPN's key, a Megaport service key) do not apply.
REDACTED: dict[str, bool] = {"redacted": True}


def is_redacted(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("redacted"))


def _not_sealed(value: str) -> str:
    # The engine once marked sealed secrets with this prefix; a key that starts with it is refused
    # so that no stored value can pass for a sealed one (see engine/secrets.py).
    if value.startswith(SEALED_INPUT_PREFIX):
        raise ValueError(f"must not start with {SEALED_INPUT_PREFIX!r} (reserved for keys the engine sealed)")
    return value


def _md5_key(value: str) -> str:
    if not re.fullmatch(r"[!-~]{1,80}", value):
        # Never echo the key.
        raise ValueError("must be 1-80 printable characters without spaces")
    return _not_sealed(value)


Name = Annotated[str, AfterValidator(_name)]
IPv4 = Annotated[str, AfterValidator(_ipv4)]
IPv4Net = Annotated[str, AfterValidator(_ipv4_network)]
IPv4Iface = Annotated[str, AfterValidator(_ipv4_interface)]
IPv4Source = Annotated[str, AfterValidator(_ipv4_source)]  # an address, or a network in CIDR form
Mac = Annotated[str, AfterValidator(_mac)]
Text = Annotated[str, StringConstraints(max_length=1024)]
Device = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,15}$")]
# Whole numbers only: booleans and numeric strings are type errors, not 1/0 or a parsed value.
Int = Annotated[int, Strict()]
Ident = Annotated[str, StringConstraints(pattern=r"^[a-z]+-[0-9a-f]{4,32}$")]


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, validate_default=False)


class Host(_Base):
    name: Name
    region: Name
    role: Literal["compute", "edge"] = "compute"
    underlay_ip: IPv4
    agent_address: Annotated[str, StringConstraints(max_length=255)] | None = None
    location: Name | None = None
    status: Literal["up", "down"] = "up"
    # Edge hosts: the device facing the premises (cross-connect hand-off), the device on the
    # outside network, the block of public addresses VPN instances get, and its next hop.
    handoff: Device = "xc0"
    outside: Device = "out0"
    public_cidr: IPv4Net | None = None
    public_gateway: IPv4 | None = None

    @model_validator(mode="after")
    def _edge_location(self) -> Host:
        if self.role == "edge" and not self.location:
            raise ValueError("location: an edge host needs the on-ramp location it serves, e.g. nyc1")
        if self.role == "compute" and self.location:
            raise ValueError("location: only edge hosts have a location")
        if self.role == "compute" and self.public_cidr:
            raise ValueError("public_cidr: only edge hosts give out public addresses")
        return self


class Dhcp(_Base):
    range_start: IPv4
    range_end: IPv4
    gateway: IPv4 | None = None
    dns_servers: tuple[IPv4, ...] = Field(default=(), max_length=MAX_DNS_SERVERS)
    lease_time: Int = Field(default=3600, ge=120, le=604800)
    server_ip: IPv4 | None = None

    @model_validator(mode="after")
    def _range_order(self) -> Dhcp:
        if ip_address(self.range_start) > ip_address(self.range_end):
            raise ValueError(f"range_end: {self.range_end} is before range_start {self.range_start}")
        return self


class VPC(_Base):
    id: Ident = ""
    name: Name
    description: Text = ""
    scope: Literal["single_region", "multi_region"] = "single_region"
    region: Name | None = None
    mtu: Int = Field(default=1500, ge=576, le=9000)
    cidr: IPv4Net | None = None
    dhcp: Dhcp | None = None
    # Computed by the engine.
    vni: Int | None = Field(default=None, ge=1, le=16_777_215)
    status: str = "available"
    # Bumped on every scope conversion: every attached workload restarts its interface.
    scope_epoch: Int = Field(default=0, ge=0)
    dhcp_host: str | None = None  # where the DHCP server runs (placement)

    @model_validator(mode="after")
    def _rules(self) -> VPC:
        if self.cidr is not None and ip_network(self.cidr).prefixlen < MIN_CIDR_PREFIX:
            raise ValueError(f"cidr: {self.cidr} is larger than a VPC may be; use a /{MIN_CIDR_PREFIX} "
                             "(16,777,216 addresses) or smaller")
        if self.scope == "single_region" and not self.region:
            raise ValueError("region: required for a single_region VPC")
        if self.scope == "multi_region" and self.region:
            raise ValueError("region: must be unset for a multi_region VPC")
        if self.dhcp is not None:
            if self.cidr is None:
                raise ValueError("dhcp: needs the VPC cidr to be set")
            net = ip_network(self.cidr)
            if net.prefixlen > 29:
                raise ValueError(f"cidr: {self.cidr} is too small for DHCP; use a /29 or larger")
            hosts_lo, hosts_hi = net.network_address + 1, net.broadcast_address - 1
            for field in ("range_start", "range_end", "gateway", "server_ip"):
                value = getattr(self.dhcp, field)
                if value is not None and not hosts_lo <= ip_address(value) <= hosts_hi:
                    raise ValueError(f"dhcp.{field}: {value} is not a usable address of cidr {self.cidr}")
            server = ip_address(self.dhcp_server_ip or "0.0.0.0")
            lo, hi = ip_address(self.dhcp.range_start), ip_address(self.dhcp.range_end)
            if lo <= server <= hi:
                raise ValueError(
                    f"dhcp.server_ip: {server} lies inside the range {lo}-{hi}; "
                    "move the range or set server_ip outside it"
                )
            if self.dhcp.gateway and lo <= ip_address(self.dhcp.gateway) <= hi:
                raise ValueError(f"dhcp.gateway: {self.dhcp.gateway} lies inside the range {lo}-{hi}")
        return self

    @property
    def dhcp_server_ip(self) -> str | None:
        """The DHCP server address: set explicitly, else the last usable address of cidr."""
        if self.dhcp is None or self.cidr is None:
            return None
        if self.dhcp.server_ip:
            return self.dhcp.server_ip
        return last_usable(self.cidr)

    @property
    def network(self) -> ipaddress.IPv4Network | None:
        return ip_network(self.cidr) if self.cidr else None


class Attachment(_Base):
    id: Ident = ""
    vpc_id: str = Field(min_length=1, max_length=64)
    workload: Name
    workload_kind: Literal["virtual_server", "pod"] = "virtual_server"
    host: Name | None = None
    ip_mode: Literal["none", "static", "dhcp"] = "none"
    ip_address: IPv4Iface | None = None
    mac_address: Mac | None = None
    # Computed by the engine.
    interface_name: Literal["net1", "net2", "net3", "net4", "net5", "net6", "net7", "net8", "net9", "net10"] | None = None
    status: str = "pending"
    # Who created it when not its declarer: "pod:<host>/<container id>" for a Pod's on-demand
    # attachment (the host's agent created it at CNI ADD and deletes it at DEL). Set only by
    # Engine.attach_pod; Terraform and topology files neither set it nor touch owned attachments.
    owner: Annotated[str, StringConstraints(min_length=1, max_length=320)] | None = None
    # Port security (opt-in, as Neutron's): the host pins the port to its MAC and its address;
    # allowed_addresses are further sources it may use (a virtual router, a firewall, a VIP).
    port_security: bool = False
    allowed_addresses: tuple[IPv4Source, ...] = Field(default=(), max_length=MAX_ALLOWED_ADDRESSES)

    @model_validator(mode="after")
    def _ip_rules(self) -> Attachment:
        if self.ip_mode == "static" and not self.ip_address:
            raise ValueError("ip_address: required when ip_mode is static")
        if self.ip_mode == "none" and self.ip_address:
            raise ValueError("ip_address: must be unset when ip_mode is none (set ip_mode static or dhcp)")
        if self.allowed_addresses and not self.port_security:
            raise ValueError("allowed_addresses: only meaningful with port_security = true (without it the port "
                             "may use any address)")
        if self.port_security and not self.ip_address and not self.allowed_addresses:
            raise ValueError("port_security: needs an address to pin the port to: ip_address (ip_mode static, or a "
                             "dhcp reservation) or allowed_addresses")
        return self


class Bgp(_Base):
    customer_asn: Int = Field(ge=1, le=4294967294)
    provider_asn: Int | None = Field(default=None, ge=1, le=4294967294)
    peering_cidr: IPv4Net | None = None
    customer_ip: IPv4 | None = None
    provider_ip: IPv4 | None = None
    # Printable, no whitespace: FRR takes it on one configuration line.
    md5_key: Annotated[str, AfterValidator(_md5_key)] | None = Field(default=None, repr=False)
    advertised_prefixes: tuple[IPv4Net, ...] | None = Field(default=None, max_length=MAX_ADVERTISED_PREFIXES)

    @field_validator("customer_asn", "provider_asn")
    @classmethod
    def _not_as_trans(cls, v: int | None) -> int | None:
        if v == 23456:
            raise ValueError("23456 is AS_TRANS (reserved); use a real ASN")
        return v

    @model_validator(mode="after")
    def _peering(self) -> Bgp:
        if self.peering_cidr is None:
            if self.customer_ip or self.provider_ip:
                raise ValueError("peering_cidr: set it when customer_ip or provider_ip is given")
            return self
        net = ipaddress.IPv4Network(self.peering_cidr)
        if net.prefixlen not in (30, 31):
            raise ValueError(f"peering_cidr: {self.peering_cidr} must be a /30 or /31")
        usable = list(net) if net.prefixlen == 31 else list(net.hosts())
        for field in ("customer_ip", "provider_ip"):
            value = getattr(self, field)
            if value is not None and ipaddress.IPv4Address(value) not in usable:
                raise ValueError(f"{field}: {value} is not a usable address of peering_cidr {self.peering_cidr}")
        if self.customer_ip and self.customer_ip == self.provider_ip:
            raise ValueError("provider_ip: must differ from customer_ip")
        return self


class DirectConnect(_Base):
    id: Ident = ""
    name: Name
    vpc_id: str = Field(min_length=1, max_length=64)
    location: Name
    bandwidth_mbps: Int = Field(ge=1000, le=100000)
    partner: Literal["cross_connect", "megaport"] = "cross_connect"
    service_key: Annotated[str, StringConstraints(min_length=1, max_length=128), AfterValidator(_not_sealed)] | None = (
        Field(default=None, repr=False))
    gateway_ip: IPv4 | None = None
    mode: Literal["layer3", "layer2"] = "layer3"
    vlan: Int | None = Field(default=None, ge=2, le=4093)
    bgp: Bgp | None = None
    status: str = "provisioning"
    edge_host: str | None = None

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> DirectConnect:
        if self.bandwidth_mbps % 1000:
            raise ValueError(f"bandwidth_mbps: {self.bandwidth_mbps} must be a multiple of 1000")
        if self.partner == "megaport" and not self.service_key and not is_redacted(info):
            raise ValueError("service_key: required when partner is megaport")
        if self.partner != "megaport" and self.service_key:
            raise ValueError("service_key: only used with partner megaport")
        if self.mode == "layer3":
            if self.bgp is None:
                raise ValueError("bgp: required for a layer3 direct connect")
            if self.vlan is not None:
                raise ValueError("vlan: only for layer2 direct connects")
        else:
            if self.bgp is not None:
                raise ValueError("bgp: only for layer3 direct connects")
            if self.gateway_ip is not None:
                raise ValueError("gateway_ip: only for layer3 direct connects")
        return self


_IKE_ENC = ("aes128", "aes256", "aes128gcm16", "aes256gcm16")
_IKE_INTEG = ("sha256", "sha384", "sha512")
_DH = ("modp2048", "modp3072", "modp4096", "ecp256", "ecp384", "curve25519")


class IkeProposal(_Base):
    encryption: Literal["aes128", "aes256", "aes128gcm16", "aes256gcm16"] = "aes256"
    integrity: Literal["sha256", "sha384", "sha512"] = "sha256"
    dh_group: Literal["modp2048", "modp3072", "modp4096", "ecp256", "ecp384", "curve25519"] = "modp2048"
    lifetime: Int = Field(default=28800, ge=900, le=28800)


class EspProposal(_Base):
    encryption: Literal["aes128", "aes256", "aes128gcm16", "aes256gcm16"] = "aes256"
    integrity: Literal["sha256", "sha384", "sha512"] = "sha256"
    dh_group: Literal["modp2048", "modp3072", "modp4096", "ecp256", "ecp384", "curve25519"] = "modp2048"
    lifetime: Int = Field(default=3600, ge=900, le=3600)


class Dpd(_Base):
    interval: Int = Field(default=30, ge=10, le=3600)
    timeout: Int = Field(default=120, ge=11, le=86400)

    @model_validator(mode="after")
    def _order(self) -> Dpd:
        if self.timeout <= self.interval:
            raise ValueError(f"timeout: {self.timeout} must be longer than interval {self.interval}")
        return self


class VPN(_Base):
    id: Ident = ""
    name: Name
    vpc_id: str = Field(min_length=1, max_length=64)
    gateway_ip: IPv4 | None = None
    peer_address: IPv4
    peer_id: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None
    # Never kept in clear by the engine's store: see engine/secrets handling in api.py.
    pre_shared_key: str | None = Field(default=None, repr=False)
    local_cidrs: tuple[IPv4Net, ...] | None = Field(default=None, max_length=MAX_TRAFFIC_SELECTORS)
    remote_cidrs: tuple[IPv4Net, ...] = Field(max_length=MAX_TRAFFIC_SELECTORS)
    ike: IkeProposal = IkeProposal()
    esp: EspProposal = EspProposal()
    dpd: Dpd = Dpd()
    status: str = "connecting"
    public_ip: str | None = None
    vpn_host: str | None = None

    @field_validator("pre_shared_key")
    @classmethod
    def _psk(cls, v: str | None) -> str | None:
        if v is not None and not _PSK_RE.fullmatch(v):
            # Never echo the key itself.
            raise ValueError("must be 8-64 characters of letters, digits, '_' and '.'")
        return v

    @model_validator(mode="after")
    def _cidrs(self, info: ValidationInfo) -> VPN:
        if not self.pre_shared_key and not is_redacted(info):
            raise ValueError("pre_shared_key: required (set pre_shared_key or pre_shared_key_wo)")
        if not self.remote_cidrs:
            raise ValueError("remote_cidrs: at least 1 remote network is required")
        remote = [ipaddress.IPv4Network(c) for c in self.remote_cidrs]
        for i, a in enumerate(remote):
            for b in remote[i + 1 :]:
                if a.overlaps(b):
                    raise ValueError(f"remote_cidrs: {a} overlaps {b}")
        for c in self.local_cidrs or ():
            for r in remote:
                if ipaddress.IPv4Network(c).overlaps(r):
                    raise ValueError(f"remote_cidrs: {r} overlaps local_cidrs entry {c}")
        return self


M = TypeVar("M", bound=BaseModel)


def format_errors(err: PydanticValidationError, prefix: str = "") -> list[tuple[str, str]]:
    """pydantic errors → (dotted path, message) pairs, messages naming what is allowed."""
    out: list[tuple[str, str]] = []
    for e in err.errors(include_url=False):
        loc = [str(p) for p in e["loc"]]
        path_parts: list[str] = []
        for p in loc:
            if p.isdigit() and path_parts:
                path_parts[-1] += f"[{p}]"
            elif _is_pydantic_tag(p):
                continue
            else:
                path_parts.append(p)
        msg = str(e["msg"]).replace("Input should be", "must be")
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
            # Model-level validators put the field first ("field: message").
            head, sep, rest = msg.partition(": ")
            if sep and re.fullmatch(r"[a-z_][a-z_.\[\]0-9]*", head):
                path_parts.append(head)
                msg = rest
        elif e["type"] == "extra_forbidden":
            msg = "unknown field"
        elif e["type"] == "missing":
            msg = "required field is missing"
        elif e["type"] == "literal_error":
            msg = f"{e.get('input')!r} is not allowed; {msg[0].lower()}{msg[1:]}"
        elif "input" in e and e["type"] not in ("model_type", "dict_type"):
            shown = e.get("input")
            if isinstance(shown, str) and len(shown) > 60:
                shown = shown[:60] + "..."
            msg = f"{msg} (got {shown!r})" if not _is_secret_path(path_parts) else msg
        path = ".".join(path_parts)
        out.append((f"{prefix}{path}" if prefix and path else prefix.rstrip(".") or path, msg))
    return out


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "none", "list", "tuple", "dict", "json-or-python"})


def _is_pydantic_tag(part: str) -> bool:
    """Union members and validator wrappers pydantic puts in error locations (not field names)."""
    return part in _TYPE_TAGS or "[" in part or "(" in part


def _is_secret_path(parts: list[str]) -> bool:
    return any(p in ("pre_shared_key", "md5_key", "service_key", "token") for p in parts)


_STORED_TUPLES: dict[type[BaseModel], tuple[str, ...]] = {Attachment: ("allowed_addresses",)}
_STORED_FIELDS = {m: tuple(m.model_fields) for m in _STORED_TUPLES}
_STORED_KEYS = {m: frozenset(m.model_fields) for m in _STORED_TUPLES}
# Values a flat document's fields may hold once its lists are tuples (JSON gives no tuple: a
# list left in another field, a dict or a float sends the document to validation).
_FLAT_VALUES = frozenset({str, int, bool, type(None), tuple})
_STR = frozenset({str})
assert not any(m.__pydantic_post_init__ for m in _STORED_TUPLES)


def from_store(model: type[M], data: dict[str, Any]) -> M:
    """The object a document of our own store holds. Every document was validated when written
    (it is the dump of a model), so the flat models (each field a plain value or a tuple of them:
    attachments, 10,000 in a large state) are built without validating again, as pydantic's
    model_construct does but ~4x faster; a document of another shape (written by an older
    version, fields added since) and every other model are validated as input is."""
    tuples = _STORED_TUPLES.get(model)
    if tuples is None or data.keys() != _STORED_KEYS[model]:
        return model.model_validate(data)
    values = {f: data[f] for f in _STORED_FIELDS[model]}  # in field order, as validation makes them
    for f in tuples:
        v = values[f]
        if type(v) is not list or not _STR.issuperset(map(type, v)):
            return model.model_validate(data)
        values[f] = tuple(v)
    if not _FLAT_VALUES.issuperset(map(type, values.values())):
        return model.model_validate(data)
    obj = object.__new__(model)
    object.__setattr__(obj, "__dict__", values)
    object.__setattr__(obj, "__pydantic_fields_set__", set(values))
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


def copy_with(obj: M, update: dict[str, Any]) -> M:
    """obj.model_copy(update=update) (shallow, `update` not validated, as model_copy), ~3x
    faster for our models (extra fields forbidden, no private attributes): a large file or
    batch copies each of its 10,000 attachments a few times."""
    if obj.__pydantic_extra__ is not None or obj.__pydantic_private__ is not None:
        return obj.model_copy(update=update)
    new = object.__new__(type(obj))
    object.__setattr__(new, "__dict__", {**obj.__dict__, **update})
    object.__setattr__(new, "__pydantic_fields_set__", obj.__pydantic_fields_set__ | update.keys())
    object.__setattr__(new, "__pydantic_extra__", None)
    object.__setattr__(new, "__pydantic_private__", None)
    return new


def parse(model: type[M], data: Any, prefix: str = "") -> M:
    """Validate plain data into `model`, raising our ValidationError with field paths."""
    try:
        return model.model_validate(data)
    except PydanticValidationError as e:
        raise ValidationError(format_errors(e, prefix)) from None
