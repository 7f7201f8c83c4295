"""A small rtnetlink client: the few messages the driver needs, encoded with struct, batched.

Why not pyroute2's IPRoute on this path (measured with pyroute2 0.9.7 on the target machines):
decoding one RTM_NEWLINK takes ~0.7 ms (a 300-link dump ~200 ms), encoding one request
~0.27 ms, and `IPRoute(netns=...)` forks a helper per socket (~15 ms). The agent's budgets
(100 segments + 200 ports from empty in 2 s, a no-op reconcile in 50 ms) leave no room for
that. Here a request is a few struct.pack calls, dumps parse only the attributes the facts
need, and `batch` sends hundreds of requests in one datagram and collects their acks.

Errors surface at one seam: `NetlinkError(errno, message)` carrying the kernel's extended ack
text when there is one.
"""

from __future__ import annotations

import errno as errno_mod
import ipaddress
import os
import socket
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30

F_REQUEST, F_MULTI, F_ACK = 0x1, 0x2, 0x4
F_DUMP = 0x300
F_REPLACE, F_EXCL, F_CREATE, F_APPEND = 0x100, 0x200, 0x400, 0x800
F_ACK_TLVS = 0x200  # in an NLMSG_ERROR: extended ack attributes follow
NLMSGERR_ATTR_MSG = 1

SOL_NETLINK = 270
NETLINK_EXT_ACK = 11
NETLINK_CAP_ACK = 10

IFF_UP = 0x1
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER = 1, 3, 4, 5, 10
IFLA_LINKINFO, IFLA_IFALIAS, IFLA_EXT_MASK, IFLA_NET_NS_FD, IFLA_GROUP = 18, 20, 29, 28, 27
IFLA_LINK_NETNSID, IFLA_AF_SPEC, IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE = 37, 26, 8, 1
# Dumps skip the per-link statistics: most of each message, and the facts never need them.
RTEXT_FILTER_SKIP_STATS = 1 << 3
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_VXLAN_ID, IFLA_VXLAN_LOCAL, IFLA_VXLAN_LEARNING, IFLA_VXLAN_PORT = 1, 4, 7, 15
VETH_INFO_PEER = 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE = 1, 4, 5, 15
RT_TABLE_MAIN = 254
RTN_UNICAST = 1
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
NDA_DST, NDA_LLADDR = 1, 2
NUD_PERMANENT = 0x80
NTF_SELF = 0x2
AF_BRIDGE = 7

_HDR = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")
_IFADDR = struct.Struct("=BBBBi")
_RTMSG = struct.Struct("=BBBBBBBBI")
_NDMSG = struct.Struct("=BxxxiHBB")
_ATTR = struct.Struct("=HH")
_ERR = struct.Struct("=i")
_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")


class NetlinkError(OSError):
    """The kernel refused a request. `errno` is the error number, `args[1]` a readable reason."""

    def __init__(self, code: int, message: str = "") -> None:
        text = os.strerror(code) + (f" ({message})" if message else "")
        super().__init__(code, text)


def _align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return _ATTR.pack(length, kind) + payload + b"\0" * (_align(length) - length)


def attr_u32(kind: int, value: int) -> bytes:
    return attr(kind, _U32.pack(value))


def attr_str(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def attr_nested(kind: int, *parts: bytes) -> bytes:
    return attr(kind | 0x8000, b"".join(parts))


def _mac(value: str) -> bytes:
    return bytes.fromhex(value.replace(":", ""))


def _ip(value: str) -> bytes:
    return ipaddress.IPv4Address(value).packed


# -- requests: each returns (type, flags, body) for Rtnl.batch/call ------------------------

Request = tuple[int, int, bytes]


def new_bridge(name: str, mtu: int, group: int = 0) -> Request:
    """A bridge, down. Host-side devices are created down and brought up by a `set_link` with
    `no_ipv6=True` in the same batch, so they never get an IPv6 link-local address: the host
    must have no presence on a customer's segment. (IFLA_IFALIAS, too, is ignored on creation.)"""
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    body += attr_str(IFLA_IFNAME, name) + attr_u32(IFLA_MTU, mtu) + attr_u32(IFLA_GROUP, group)
    body += attr_nested(IFLA_LINKINFO, attr_str(IFLA_INFO_KIND, "bridge"))
    return RTM_NEWLINK, F_CREATE | F_EXCL, body


def new_vxlan(name: str, vni: int, local: str, port: int, mtu: int, master: int, group: int = 0) -> Request:
    data = (
        attr_u32(IFLA_VXLAN_ID, vni)
        + attr(IFLA_VXLAN_LOCAL, _ip(local))
        + attr(IFLA_VXLAN_PORT, struct.pack("!H", port))
        + attr(IFLA_VXLAN_LEARNING, b"\0")
    )
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    body += attr_str(IFLA_IFNAME, name) + attr_u32(IFLA_MTU, mtu) + attr_u32(IFLA_MASTER, master)
    body += attr_u32(IFLA_GROUP, group)
    body += attr_nested(IFLA_LINKINFO, attr_str(IFLA_INFO_KIND, "vxlan"), attr_nested(IFLA_INFO_DATA, data))
    return RTM_NEWLINK, F_CREATE | F_EXCL, body


def new_veth(
    name: str, mtu: int, master: int, peer_name: str, peer_mac: str, peer_ns_fd: int, group: int = 0
) -> Request:
    """A veth on `master` (down, see new_bridge); the peer is born in namespace `peer_ns_fd`
    and brought up from inside it (the kernel ignores IFF_UP in the peer's header).
    """
    peer = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    peer += attr_str(IFLA_IFNAME, peer_name) + attr_u32(IFLA_MTU, mtu)
    peer += attr(IFLA_ADDRESS, _mac(peer_mac)) + attr_u32(IFLA_NET_NS_FD, peer_ns_fd)
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    body += attr_str(IFLA_IFNAME, name) + attr_u32(IFLA_MTU, mtu) + attr_u32(IFLA_MASTER, master)
    body += attr_u32(IFLA_GROUP, group)
    body += attr_nested(
        IFLA_LINKINFO,
        attr_str(IFLA_INFO_KIND, "veth"),
        attr_nested(IFLA_INFO_DATA, attr(VETH_INFO_PEER, peer)),
    )
    return RTM_NEWLINK, F_CREATE | F_EXCL, body


def set_link(
    index: int = 0,
    *,
    name: str | None = None,
    up: bool | None = None,
    mtu: int | None = None,
    master: int | None = None,
    alias: str | None = None,
    group: int | None = None,
    no_ipv6: bool = False,
) -> Request:
    flags = IFF_UP if up else 0
    change = IFF_UP if up is not None else 0
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, index, flags, change)
    if name is not None:  # with index 0 the kernel finds the device by name
        body += attr_str(IFLA_IFNAME, name)
    if mtu is not None:
        body += attr_u32(IFLA_MTU, mtu)
    if master is not None:
        body += attr_u32(IFLA_MASTER, master)
    if alias is not None:
        body += attr_str(IFLA_IFALIAS, alias)
    if group is not None:
        body += attr_u32(IFLA_GROUP, group)
    if no_ipv6:  # IPv6 address generation off: no link-local address, so no IPv6 traffic
        mode = attr(IFLA_INET6_ADDR_GEN_MODE, bytes([IN6_ADDR_GEN_MODE_NONE]))
        body += attr_nested(IFLA_AF_SPEC, attr_nested(socket.AF_INET6, mode))
    return RTM_NEWLINK, 0, body


def del_group(group: int) -> Request:
    """Delete every device of a group in one request. The kernel unregisters them as one
    batch: measured here, 50 bridges in 0.9 s against 1.85 s one request each."""
    return RTM_DELLINK, 0, _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr_u32(IFLA_GROUP, group)


def del_link(index: int = 0, name: str | None = None) -> Request:
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0)
    return RTM_DELLINK, 0, body + (attr_str(IFLA_IFNAME, name) if name is not None else b"")


def new_addr(index: int, address: str, prefixlen: int) -> Request:
    body = _IFADDR.pack(socket.AF_INET, prefixlen, 0, RT_SCOPE_UNIVERSE, index)
    body += attr(IFA_LOCAL, _ip(address)) + attr(IFA_ADDRESS, _ip(address))
    return RTM_NEWADDR, F_CREATE | F_REPLACE, body


def del_addr(index: int, address: str, prefixlen: int) -> Request:
    body = _IFADDR.pack(socket.AF_INET, prefixlen, 0, 0, index) + attr(IFA_LOCAL, _ip(address))
    return RTM_DELADDR, 0, body


def new_route(prefix: str, via: str, oif: int, protocol: int) -> Request:
    net = ipaddress.IPv4Network(prefix)
    body = _RTMSG.pack(
        socket.AF_INET, net.prefixlen, 0, 0, RT_TABLE_MAIN, protocol, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0
    )
    if net.prefixlen:
        body += attr(RTA_DST, net.network_address.packed)
    body += attr(RTA_GATEWAY, _ip(via)) + attr_u32(RTA_OIF, oif)
    return RTM_NEWROUTE, F_CREATE | F_REPLACE, body


def del_route(prefix: str, via: str, oif: int, protocol: int) -> Request:
    net = ipaddress.IPv4Network(prefix)
    body = _RTMSG.pack(socket.AF_INET, net.prefixlen, 0, 0, RT_TABLE_MAIN, protocol, 0, RTN_UNICAST, 0)
    if net.prefixlen:
        body += attr(RTA_DST, net.network_address.packed)
    body += attr(RTA_GATEWAY, _ip(via)) + attr_u32(RTA_OIF, oif)
    return RTM_DELROUTE, 0, body


def _fdb(ifindex: int, dst: str) -> bytes:
    body = _NDMSG.pack(AF_BRIDGE, ifindex, NUD_PERMANENT, NTF_SELF, 0)
    return body + attr(NDA_LLADDR, b"\0" * 6) + attr(NDA_DST, _ip(dst))


def new_flood_entry(vxlan_index: int, remote: str) -> Request:
    """`bridge fdb append 00:00:00:00:00:00 dev <vxlan> dst <remote>`: head-end replication."""
    return RTM_NEWNEIGH, F_CREATE | F_APPEND, _fdb(vxlan_index, remote)


def del_flood_entry(vxlan_index: int, remote: str) -> Request:
    return RTM_DELNEIGH, 0, _fdb(vxlan_index, remote)


# -- parsed dump records -------------------------------------------------------------------


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


def _attrs(data: bytes, offset: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(type, start, stop) of each attribute in data[offset:end]."""
    while offset + 4 <= end:
        length, kind = _ATTR.unpack_from(data, offset)
        if length < 4:
            return
        yield kind & 0x3FFF, offset + 4, offset + length
        offset += _align(length)


def _cstr(data: bytes, start: int, stop: int) -> str:
    return data[start:stop].split(b"\0", 1)[0].decode(errors="replace")


_LINK_WANTED = frozenset(
    (IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_LINK, IFLA_LINK_NETNSID, IFLA_ADDRESS, IFLA_IFALIAS, IFLA_GROUP,
     IFLA_LINKINFO)
)


def _parse_link(data: bytes, off: int, end: int) -> Link:
    # The hot loop of facts (hundreds of links per read, ~35 attributes each): a flat loop
    # that dismisses unwanted attributes with one set lookup, descending only into LINKINFO.
    _, _, index, flags, _ = _IFINFO.unpack_from(data, off)
    link = Link(index, "", flags, 0, 0, 0, -1, "", "", "")
    unpack_attr, unpack_u32, wanted = _ATTR.unpack_from, _U32.unpack_from, _LINK_WANTED
    off += _IFINFO.size
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
            link.netnsid = _I32.unpack_from(data, a)[0]
        elif kind == IFLA_ADDRESS:
            link.mac = data[a:b].hex(":")
        elif kind == IFLA_IFALIAS:
            link.alias = _cstr(data, a, b)
        elif kind == IFLA_GROUP:
            link.group = unpack_u32(data, a)[0]
        else:
            _parse_linkinfo(link, data, a, b)
    return link


def _parse_linkinfo(link: Link, data: bytes, a: int, b: int) -> None:
    for k2, a2, b2 in _attrs(data, a, b):
        if k2 == IFLA_INFO_KIND:
            link.kind = _cstr(data, a2, b2)
        elif k2 == IFLA_INFO_DATA and link.kind == "vxlan":
            for k3, a3, b3 in _attrs(data, a2, b2):
                if k3 == IFLA_VXLAN_ID:
                    link.vni = _U32.unpack_from(data, a3)[0]
                elif k3 == IFLA_VXLAN_LOCAL and b3 - a3 == 4:
                    link.local = socket.inet_ntoa(data[a3:b3])
                elif k3 == IFLA_VXLAN_PORT:
                    link.port = struct.unpack_from("!H", data, a3)[0]
                elif k3 == IFLA_VXLAN_LEARNING:
                    link.learning = data[a3]


def _parse_addr(data: bytes, off: int, end: int) -> Addr | None:
    family, prefixlen, _, _, index = _IFADDR.unpack_from(data, off)
    if family != socket.AF_INET:
        return None
    address = ""
    for kind, a, b in _attrs(data, off + _IFADDR.size, end):
        if kind == IFA_LOCAL or (kind == IFA_ADDRESS and not address):
            address = socket.inet_ntoa(data[a:b])
    return Addr(index, address, prefixlen)


def _parse_route(data: bytes, off: int, end: int) -> Route | None:
    family, dst_len, _, _, table, protocol, _, rtype, _ = _RTMSG.unpack_from(data, off)
    if family != socket.AF_INET or rtype != RTN_UNICAST:
        return None
    dst, via, oif = "0.0.0.0", "", 0
    for kind, a, b in _attrs(data, off + _RTMSG.size, end):
        if kind == RTA_DST:
            dst = socket.inet_ntoa(data[a:b])
        elif kind == RTA_GATEWAY:
            via = socket.inet_ntoa(data[a:b])
        elif kind == RTA_OIF:
            oif = _U32.unpack_from(data, a)[0]
        elif kind == RTA_TABLE:
            table = _U32.unpack_from(data, a)[0]
    return Route(f"{dst}/{dst_len}", via, oif, protocol, table)


def _parse_fdb(data: bytes, off: int, end: int, only: frozenset[int] | None) -> FdbEntry | None:
    family, ifindex, _, _, _ = _NDMSG.unpack_from(data, off)
    if family != AF_BRIDGE or (only is not None and ifindex not in only):
        return None
    mac, dst = "", ""
    for kind, a, b in _attrs(data, off + _NDMSG.size, end):
        if kind == NDA_LLADDR:
            mac = data[a:b].hex(":")
        elif kind == NDA_DST and b - a == 4:
            dst = socket.inet_ntoa(data[a:b])
    return FdbEntry(ifindex, mac, dst)


class Rtnl:
    """One NETLINK_ROUTE socket (in whatever namespace it was created in). Not thread-safe."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self.sock.close()

    # -- requests --------------------------------------------------------------------------

    def call(self, request: Request) -> None:
        err = self.batch([request])[0]
        if err is not None:
            raise err

    def batch(self, requests: Iterable[Request]) -> list[NetlinkError | None]:
        """Send all requests (acked), then collect the acks; the kernel handles them in order.

        Returns one entry per request: None on success, else the NetlinkError.
        """
        seqs: list[int] = []
        chunk: list[bytes] = []
        size = 0
        for mtype, flags, body in requests:
            self._seq += 1
            seqs.append(self._seq)
            msg = _HDR.pack(_HDR.size + len(body), mtype, flags | F_REQUEST | F_ACK, self._seq, 0) + body
            chunk.append(msg)
            size += len(msg)
            if size > 200_000:
                self.sock.send(b"".join(chunk))
                chunk, size = [], 0
        if chunk:
            self.sock.send(b"".join(chunk))
        if not seqs:
            return []
        first = seqs[0]
        results: list[NetlinkError | None] = [None] * len(seqs)
        pending = len(seqs)
        while pending:
            data = self.sock.recv(1 << 20)
            off = 0
            while off + _HDR.size <= len(data):
                length, mtype, flags, seq, _ = _HDR.unpack_from(data, off)
                if mtype == NLMSG_ERROR and first <= seq < first + len(seqs):
                    code = -_ERR.unpack_from(data, off + _HDR.size)[0]
                    if code:
                        results[seq - first] = NetlinkError(code, _ext_ack(data, off, length, flags))
                    pending -= 1
                off += _align(length) if length else len(data)
        return results

    # -- dumps -----------------------------------------------------------------------------

    def _dump(self, mtype: int, body: bytes) -> Iterator[tuple[bytes, int, int]]:
        self._seq += 1
        seq = self._seq
        self.sock.send(_HDR.pack(_HDR.size + len(body), mtype, F_REQUEST | F_DUMP, seq, 0) + body)
        while True:
            data = self.sock.recv(1 << 20)
            off = 0
            while off + _HDR.size <= len(data):
                length, rtype, flags, rseq, _ = _HDR.unpack_from(data, off)
                if rseq == seq:
                    if rtype == NLMSG_DONE:
                        return
                    if rtype == NLMSG_ERROR:
                        code = -_ERR.unpack_from(data, off + _HDR.size)[0]
                        if code:
                            raise NetlinkError(code, _ext_ack(data, off, length, flags))
                        return
                    yield data, off + _HDR.size, off + length
                off += _align(length) if length else len(data)

    def links(self) -> list[Link]:
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)
        return [_parse_link(d, a, b) for d, a, b in self._dump(RTM_GETLINK, body)]

    def link(self, name: str) -> Link | None:
        """One link by name (RTM_GETLINK without a dump); None when there is none."""
        self._seq += 1
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr_str(IFLA_IFNAME, name)
        body += attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)
        self.sock.send(_HDR.pack(_HDR.size + len(body), RTM_GETLINK, F_REQUEST, self._seq, 0) + body)
        while True:
            data = self.sock.recv(1 << 16)
            length, rtype, flags, rseq, _ = _HDR.unpack_from(data, 0)
            if rseq != self._seq:
                continue
            if rtype == NLMSG_ERROR:
                code = -_ERR.unpack_from(data, _HDR.size)[0]
                if code in (errno_mod.ENODEV, 0):
                    return None
                raise NetlinkError(code, _ext_ack(data, 0, length, flags))
            return _parse_link(data, _HDR.size, length)

    def addrs(self) -> list[Addr]:
        body = _IFADDR.pack(socket.AF_INET, 0, 0, 0, 0)
        out = (_parse_addr(d, a, b) for d, a, b in self._dump(RTM_GETADDR, body))
        return [x for x in out if x is not None]

    def routes(self) -> list[Route]:
        body = _RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
        out = (_parse_route(d, a, b) for d, a, b in self._dump(RTM_GETROUTE, body))
        return [x for x in out if x is not None]

    def fdb(self, only: Iterable[int] | None = None) -> list[FdbEntry]:
        """Bridge fdb entries; `only` keeps those of these device indexes (skipped unparsed)."""
        keep = frozenset(only) if only is not None else None
        body = _NDMSG.pack(AF_BRIDGE, 0, 0, 0, 0)
        out = (_parse_fdb(d, a, b, keep) for d, a, b in self._dump(RTM_GETNEIGH, body))
        return [x for x in out if x is not None]


# Multicast groups (the legacy bitmask form accepted by bind).
RTMGRP_LINK, RTMGRP_NEIGH, RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE = 0x1, 0x4, 0x10, 0x40


class Watcher:
    """Says whether anything changed in a namespace since the last look.

    A socket subscribed to rtnetlink notifications, never read in blocking mode: `changed()`
    drains whatever arrived and reports whether anything did. Lost notifications (a full
    receive buffer, ENOBUFS) count as a change, so a cache guarded by a watcher is re-read
    whenever it might be stale. Call `changed()` before reading, so that a change racing the
    read shows up next time.
    """

    def __init__(self, sock: socket.socket, groups: int) -> None:
        self.sock = sock
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((0, groups))
        sock.setblocking(False)

    def changed(self) -> bool:
        seen = False
        while True:
            try:
                if self.sock.recv(1 << 16):
                    seen = True
            except BlockingIOError:
                return seen
            except OSError as e:
                if e.errno != errno_mod.ENOBUFS:
                    raise
                seen = True

    def close(self) -> None:
        self.sock.close()


def _ext_ack(data: bytes, off: int, length: int, flags: int) -> str:
    """The kernel's extended-ack message, if it sent one."""
    if not flags & F_ACK_TLVS:
        return ""
    # NLMSG_ERROR payload: error code + the original header (NETLINK_CAP_ACK: no body), then TLVs.
    start = off + _HDR.size + 4 + _HDR.size
    for kind, a, b in _attrs(data, start, off + length):
        if kind == NLMSGERR_ATTR_MSG:
            return _cstr(data, a, b)
    return ""
