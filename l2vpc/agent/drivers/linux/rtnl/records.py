"""rtnetlink dump records: links, IPv4 addresses and routes, bridge fdb entries, parsed lean.

Dumps parse only the attributes the facts need (a link message has ~35; the hot loop dismisses
the rest with one set lookup).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from l2vpc.agent.drivers.linux.rtnl.messages import (
    AF_BRIDGE,
    ATTR,
    I32,
    IFA_ADDRESS,
    IFA_LOCAL,
    IFADDR,
    IFF_UP,
    IFINFO,
    IFLA_ADDRESS,
    IFLA_GROUP,
    IFLA_IFALIAS,
    IFLA_IFNAME,
    IFLA_INFO_DATA,
    IFLA_INFO_KIND,
    IFLA_LINK,
    IFLA_LINK_NETNSID,
    IFLA_LINKINFO,
    IFLA_MASTER,
    IFLA_MTU,
    IFLA_VXLAN_ID,
    IFLA_VXLAN_LEARNING,
    IFLA_VXLAN_LOCAL,
    IFLA_VXLAN_PORT,
    NDA_DST,
    NDA_LLADDR,
    NDMSG,
    RTA_DST,
    RTA_GATEWAY,
    RTA_OIF,
    RTA_TABLE,
    RTMSG,
    RTN_UNICAST,
    U32,
    align,
)

# The struct methods of the parse loops, bound once. CPython compiles `NAME.method(...)` on an
# imported NAME as a plain attribute load (it takes NAME for a module), which builds a bound
# method on every call: ~10,000 per cold no-op converge of bench_agent_converge, ~3 % of its
# instructions (callgrind) once these structs moved to messages.py.
_unpack_attr = ATTR.unpack_from
_unpack_u32 = U32.unpack_from
_unpack_i32 = I32.unpack_from
_unpack_ifinfo = IFINFO.unpack_from
_unpack_ifaddr = IFADDR.unpack_from
_unpack_rtmsg = RTMSG.unpack_from
_unpack_ndmsg = NDMSG.unpack_from


@dataclass(slots=True)
class Link:
    index: int
    name: str
    flags: int
    mtu: int
    master: int
    link: int  # IFLA_LINK: a veth's peer index (in the peer's namespace)
    netnsid: int  # IFLA_LINK_NETNSID, -1 when the peer is in the same namespace
    mac: str
    alias: str
    kind: str
    group: int = 0
    vni: int = 0
    local: str = ""
    port: int = 0
    learning: int = -1

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)


@dataclass(frozen=True, slots=True)
class Addr:
    index: int
    address: str
    prefixlen: int


@dataclass(frozen=True, slots=True)
class Route:
    prefix: str
    via: str
    oif: int
    protocol: int
    table: int


@dataclass(frozen=True, slots=True)
class FdbEntry:
    ifindex: int
    mac: str
    dst: str


def attrs(data: bytes, offset: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(type, start, stop) of each attribute in data[offset:end]."""
    while offset + 4 <= end:
        length, kind = _unpack_attr(data, offset)
        if length < 4:
            return
        yield kind & 0x3FFF, offset + 4, offset + length
        offset += align(length)


def cstr(data: bytes, start: int, stop: int) -> str:
    return data[start:stop].split(b"\0", 1)[0].decode(errors="replace")


_LINK_WANTED = frozenset(
    (IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_LINK, IFLA_LINK_NETNSID, IFLA_ADDRESS, IFLA_IFALIAS, IFLA_GROUP,
     IFLA_LINKINFO)
)


def parse_link(data: bytes, off: int, end: int) -> Link:
    # The hot loop of facts (hundreds of links per read, ~35 attributes each): a flat loop
    # that dismisses unwanted attributes with one set lookup, descending only into LINKINFO.
    _, _, index, flags, _ = _unpack_ifinfo(data, off)
    link = Link(index, "", flags, 0, 0, 0, -1, "", "", "")
    unpack_attr, unpack_u32, wanted = _unpack_attr, _unpack_u32, _LINK_WANTED
    off += IFINFO.size
    while off + 4 <= end:
        length, kind = unpack_attr(data, off)
        if length < 4:
            break
        a = off + 4
        off += (length + 3) & ~3
        kind &= 0x3FFF
        if kind not in wanted:
            continue
        b = a + length - 4
        if kind == IFLA_IFNAME:
            link.name = data[a : b - 1].decode(errors="replace")
        elif kind == IFLA_MTU:
            link.mtu = unpack_u32(data, a)[0]
        elif kind == IFLA_MASTER:
            link.master = unpack_u32(data, a)[0]
        elif kind == IFLA_LINK:
            link.link = unpack_u32(data, a)[0]
        elif kind == IFLA_LINK_NETNSID:
            link.netnsid = _unpack_i32(data, a)[0]
        elif kind == IFLA_ADDRESS:
            link.mac = data[a:b].hex(":")
        elif kind == IFLA_IFALIAS:
            link.alias = cstr(data, a, b)
        elif kind == IFLA_GROUP:
            link.group = unpack_u32(data, a)[0]
        else:
            _parse_linkinfo(link, data, a, b)
    return link


def _parse_linkinfo(link: Link, data: bytes, a: int, b: int) -> None:
    for k2, a2, b2 in attrs(data, a, b):
        if k2 == IFLA_INFO_KIND:
            link.kind = cstr(data, a2, b2)
        elif k2 == IFLA_INFO_DATA and link.kind == "vxlan":
            for k3, a3, b3 in attrs(data, a2, b2):
                if k3 == IFLA_VXLAN_ID:
                    link.vni = _unpack_u32(data, a3)[0]
                elif k3 == IFLA_VXLAN_LOCAL and b3 - a3 == 4:
                    link.local = socket.inet_ntoa(data[a3:b3])
                elif k3 == IFLA_VXLAN_PORT:
                    link.port = struct.unpack_from("!H", data, a3)[0]
                elif k3 == IFLA_VXLAN_LEARNING:
                    link.learning = data[a3]


def parse_addr(data: bytes, off: int, end: int) -> Addr | None:
    family, prefixlen, _, _, index = _unpack_ifaddr(data, off)
    if family != socket.AF_INET:
        return None
    address = ""
    for kind, a, b in attrs(data, off + IFADDR.size, end):
        if kind == IFA_LOCAL or (kind == IFA_ADDRESS and not address):
            address = socket.inet_ntoa(data[a:b])
    return Addr(index, address, prefixlen)


def parse_route(data: bytes, off: int, end: int) -> Route | None:
    family, dst_len, _, _, table, protocol, _, rtype, _ = _unpack_rtmsg(data, off)
    if family != socket.AF_INET or rtype != RTN_UNICAST:
        return None
    dst, via, oif = "0.0.0.0", "", 0
    for kind, a, b in attrs(data, off + RTMSG.size, end):
        if kind == RTA_DST:
            dst = socket.inet_ntoa(data[a:b])
        elif kind == RTA_GATEWAY:
            via = socket.inet_ntoa(data[a:b])
        elif kind == RTA_OIF:
            oif = _unpack_u32(data, a)[0]
        elif kind == RTA_TABLE:
            table = _unpack_u32(data, a)[0]
    return Route(f"{dst}/{dst_len}", via, oif, protocol, table)


def parse_fdb(data: bytes, off: int, end: int, only: frozenset[int] | None) -> FdbEntry | None:
    family, ifindex, _, _, _ = _unpack_ndmsg(data, off)
    if family != AF_BRIDGE or (only is not None and ifindex not in only):
        return None
    mac, dst = "", ""
    for kind, a, b in attrs(data, off + NDMSG.size, end):
        if kind == NDA_LLADDR:
            mac = data[a:b].hex(":")
        elif kind == NDA_DST and b - a == 4:
            dst = socket.inet_ntoa(data[a:b])
    return FdbEntry(ifindex, mac, dst)
