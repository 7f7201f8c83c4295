"""Allocations inside a store transaction: VNIs, MACs, interface names, addresses, peering nets.

Every allocated value is a row in a store pool with a unique (pool, value) key, so concurrent
writers can never hand out the same value. VNIs and generated MACs come from durable counters
and are never reused while in use; a freed VNI is not handed out again until the counter wraps,
so stale forwarding entries on a slow host cannot leak traffic into a new VPC.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Container, Iterable

from l2vpc.engine.addresses import usable
from l2vpc.engine.errors import ConflictError, ValidationError
from l2vpc.engine.model import VPC, Host
from l2vpc.engine.store.base import Transaction
from l2vpc.hostconfig import INTERFACE_NAMES, MAX_VNI

VNI_BASE = 4096  # leave the low VNIs to operators
# Locally administered unicast prefix for generated MACs: 02:4c:32 ("L2").
MAC_PREFIX = (0x02, 0x4C, 0x32)
_MAC_PREFIX_TEXT = ":".join(f"{b:02x}" for b in MAC_PREFIX)
PEERING_SPACE = ipaddress.IPv4Network("169.254.0.0/16")


def pool_vni() -> str:
    return "vni"


def pool_mac(vpc_id: str) -> str:
    return f"mac:{vpc_id}"


def pool_ip(vpc_id: str) -> str:
    return f"ip:{vpc_id}"


def pool_ifname(workload: str) -> str:
    return f"ifname:{workload}"


def pool_on_host(host: str) -> str:
    """Index of the attachments placed on a host (placement reads its size: the host's load)."""
    return f"on-host:{host}"


def pool_members(vpc_id: str) -> str:
    """Index of a VPC's attachments (value = owner = attachment id)."""
    return f"member:{vpc_id}"


def pool_refs(vpc_id: str) -> str:
    """Index of direct connects and VPNs using a VPC."""
    return f"ref:{vpc_id}"


def allocate_vni(tx: Transaction, owner: str) -> int:
    span = MAX_VNI - VNI_BASE + 1
    for _ in range(1000):
        vni = VNI_BASE + (tx.next_sequence("vni") - 1) % span
        try:
            tx.reserve(pool_vni(), str(vni), owner)
            return vni
        except ConflictError:
            continue
    raise ConflictError("no free VNI found after 1000 attempts; the VNI space is exhausted")


def counter_mac(n: int) -> str:
    """The MAC address the global counter's value `n` stands for."""
    n %= 1 << 24
    return f"{_MAC_PREFIX_TEXT}:{n >> 16:02x}:{(n >> 8) & 0xFF:02x}:{n & 0xFF:02x}"


# A VPC's MACs and addresses are looked up one value at a time (Transaction.holder), never read
# as a whole pool: a create into a VPC of 5,000 attachments read 5,000 rows per pool.
def allocate_mac(tx: Transaction, vpc_id: str, owner: str) -> str:
    # The counter is global, so a clash is only with a MAC a user chose: skip those.
    pool = pool_mac(vpc_id)
    for _ in range(1000):
        mac = counter_mac(tx.next_sequence("mac"))
        if tx.holder(pool, mac) is None:
            tx.claim(pool, mac, owner)  # just seen free, under the write lock
            return mac
    raise ConflictError("no free MAC address found after 1000 attempts")


def reserve_mac(tx: Transaction, vpc_id: str, mac: str, owner: str, field: str = "mac_address") -> None:
    holder = tx.holder(pool_mac(vpc_id), mac)
    if holder is not None and holder != owner:
        raise ValidationError(f"{mac} is already used by {holder} in this VPC", path=field)
    tx.reserve(pool_mac(vpc_id), mac, owner)


def reserve_ip(tx: Transaction, vpc_id: str, ip: str, owner: str, field: str = "ip_address") -> None:
    holder = tx.holder(pool_ip(vpc_id), ip)
    if holder is not None and holder != owner:
        raise ValidationError(f"{ip} is already used by {holder} in this VPC", path=field)
    tx.reserve(pool_ip(vpc_id), ip, owner)


def allocate_interface_name(tx: Transaction, workload: str, owner: str) -> str:
    used = tx.allocations(pool_ifname(workload))
    for name, holder in used.items():
        if holder == owner:
            return name
    for name in INTERFACE_NAMES:
        if name not in used:
            tx.claim(pool_ifname(workload), name, owner)  # just seen free, under the write lock
            return name
    raise ValidationError(
        f"workload {workload!r} already attaches {len(INTERFACE_NAMES)} VPCs; "
        f"at most {len(INTERFACE_NAMES)} are allowed",
        path="workload",
    )


class AddressSet(Container[str]):
    """Addresses and inclusive ranges of addresses, tested without listing every address of a
    range (a DHCP range in a /8 holds 16 million)."""

    def __init__(self, addresses: Iterable[str | None] = (), ranges: Iterable[tuple[str, str]] = ()) -> None:
        self.addresses = {a for a in addresses if a}
        self.ranges = [(int(ipaddress.IPv4Address(lo)), int(ipaddress.IPv4Address(hi))) for lo, hi in ranges]

    def __contains__(self, address: object) -> bool:
        if address in self.addresses:
            return True
        if not self.ranges or not isinstance(address, str):
            return False
        n = int(ipaddress.IPv4Address(address))
        return any(lo <= n <= hi for lo, hi in self.ranges)


def vpc_reserved(vpc: VPC) -> AddressSet:
    """Addresses of a VPC that gateways never get by default: the DHCP server's, the DHCP
    gateway and the whole DHCP range."""
    if vpc.dhcp is None:
        return AddressSet()
    return AddressSet((vpc.dhcp_server_ip, vpc.dhcp.gateway), [(vpc.dhcp.range_start, vpc.dhcp.range_end)])


def allocate_address(tx: Transaction, vpc_id: str, cidr: str, owner: str, avoid: Container[str]) -> str:
    """A free usable address of `cidr`, from the top down (the bottom is for workloads).

    Ranges in `avoid` (an AddressSet) are stepped over whole, so the walk takes one step per
    taken address or range, never one per address of a range (a DHCP range can fill a /8)."""
    used = tx.allocations(pool_ip(vpc_id))
    net = ipaddress.IPv4Network(cidr)
    ranges = sorted(avoid.ranges, reverse=True) if isinstance(avoid, AddressSet) else []
    bottom = int(net.network_address)
    n = int(net.broadcast_address) - 1
    while n > bottom:
        below = next(((lo, hi) for lo, hi in ranges if lo <= n <= hi), None)
        if below is not None:
            n = below[0] - 1
            continue
        s = str(ipaddress.IPv4Address(n))
        if s not in used and s not in avoid:
            tx.reserve(pool_ip(vpc_id), s, owner)
            return s
        n -= 1
    raise ValidationError(f"no free address left in {cidr}", path="gateway_ip")


def public_space(host: str) -> str:
    """The address space (a `pool_ip` key) of an edge host's public addresses."""
    return f"public:{host}"


def allocate_public_ip(tx: Transaction, edge: Host, owner: str, keep: str | None = None) -> str:
    """A free address of an edge host's public block (never its gateway), for a VPN it runs.
    `keep`: the address the VPN has now, kept while it is still one of the block's and free (an
    update must not move it: Terraform recorded it)."""
    assert edge.public_cidr  # edges for VPNs are picked with public=True
    avoid = {edge.public_gateway} if edge.public_gateway else set()
    space = public_space(edge.name)
    if keep is not None and keep not in avoid and usable(edge.public_cidr, keep):
        holder = tx.allocations(pool_ip(space)).get(keep)
        if holder in (None, owner):
            tx.reserve(pool_ip(space), keep, owner)
            return keep
    return allocate_address(tx, space, edge.public_cidr, owner, avoid)


def allocate_peering(tx: Transaction, owner: str, prefixlen: int = 31) -> str:
    used = tx.allocations("peering")
    for net in PEERING_SPACE.subnets(new_prefix=30):
        if str(net) not in used:
            tx.reserve("peering", str(net), owner)
            if prefixlen == 31:
                return str(next(net.subnets(new_prefix=31)))
            return str(net)
    raise ConflictError("no free peering subnet left in 169.254.0.0/16")


def release_all(tx: Transaction, owner: str) -> None:
    tx.release_owner(owner)
