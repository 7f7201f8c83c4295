"""rtnetlink messages: the protocol's numbers, attribute encoding, and the requests we send.

A request is `(type, flags, body)`, a few struct.pack calls; `Rtnl.batch` sends many at once.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

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

HDR = struct.Struct("=IHHII")
IFINFO = struct.Struct("=BxHiII")
IFADDR = struct.Struct("=BBBBi")
RTMSG = struct.Struct("=BBBBBBBBI")
NDMSG = struct.Struct("=BxxxiHBB")
ATTR = struct.Struct("=HH")
ERR = struct.Struct("=i")
U32 = struct.Struct("=I")
I32 = struct.Struct("=i")
IFLA_MACVLAN_MODE, MACVLAN_MODE_BRIDGE = 1, 4
RTN_UNREACHABLE = 7
RTA_PRIORITY = 6


def align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return ATTR.pack(length, kind) + payload + b"\0" * (align(length) - length)


def attr_u32(kind: int, value: int) -> bytes:
    return attr(kind, U32.pack(value))


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
    body = IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
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
    body = IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
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
    peer = IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    peer += attr_str(IFLA_IFNAME, peer_name) + attr_u32(IFLA_MTU, mtu)
    peer += attr(IFLA_ADDRESS, _mac(peer_mac)) + attr_u32(IFLA_NET_NS_FD, peer_ns_fd)
    body = IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
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
    mac: str | None = None,
) -> Request:
    flags = IFF_UP if up else 0
    change = IFF_UP if up is not None else 0
    body = IFINFO.pack(socket.AF_UNSPEC, 0, index, flags, change)
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
    if mac is not None:
        body += attr(IFLA_ADDRESS, _mac(mac))
    if no_ipv6:  # IPv6 address generation off: no link-local address, so no IPv6 traffic
        mode = attr(IFLA_INET6_ADDR_GEN_MODE, bytes([IN6_ADDR_GEN_MODE_NONE]))
        body += attr_nested(IFLA_AF_SPEC, attr_nested(socket.AF_INET6, mode))
    return RTM_NEWLINK, 0, body


def del_group(group: int) -> Request:
    """Delete every device of a group in one request. The kernel unregisters them as one
    batch: measured here, 50 bridges in 0.9 s against 1.85 s one request each."""
    return RTM_DELLINK, 0, IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr_u32(IFLA_GROUP, group)


def del_link(index: int = 0, name: str | None = None) -> Request:
    body = IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0)
    return RTM_DELLINK, 0, body + (attr_str(IFLA_IFNAME, name) if name is not None else b"")


def new_addr(index: int, address: str, prefixlen: int) -> Request:
    body = IFADDR.pack(socket.AF_INET, prefixlen, 0, RT_SCOPE_UNIVERSE, index)
    body += attr(IFA_LOCAL, _ip(address)) + attr(IFA_ADDRESS, _ip(address))
    return RTM_NEWADDR, F_CREATE | F_REPLACE, body


def del_addr(index: int, address: str, prefixlen: int) -> Request:
    body = IFADDR.pack(socket.AF_INET, prefixlen, 0, 0, index) + attr(IFA_LOCAL, _ip(address))
    return RTM_DELADDR, 0, body


def new_route(prefix: str, via: str, oif: int, protocol: int) -> Request:
    net = ipaddress.IPv4Network(prefix)
    body = RTMSG.pack(
        socket.AF_INET, net.prefixlen, 0, 0, RT_TABLE_MAIN, protocol, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0
    )
    if net.prefixlen:
        body += attr(RTA_DST, net.network_address.packed)
    body += attr(RTA_GATEWAY, _ip(via)) + attr_u32(RTA_OIF, oif)
    return RTM_NEWROUTE, F_CREATE | F_REPLACE, body


def del_route(prefix: str, via: str, oif: int, protocol: int) -> Request:
    net = ipaddress.IPv4Network(prefix)
    body = RTMSG.pack(socket.AF_INET, net.prefixlen, 0, 0, RT_TABLE_MAIN, protocol, 0, RTN_UNICAST, 0)
    if net.prefixlen:
        body += attr(RTA_DST, net.network_address.packed)
    body += attr(RTA_GATEWAY, _ip(via)) + attr_u32(RTA_OIF, oif)
    return RTM_DELROUTE, 0, body


def _fdb(ifindex: int, dst: str) -> bytes:
    body = NDMSG.pack(AF_BRIDGE, ifindex, NUD_PERMANENT, NTF_SELF, 0)
    return body + attr(NDA_LLADDR, b"\0" * 6) + attr(NDA_DST, _ip(dst))


def new_flood_entry(vxlan_index: int, remote: str) -> Request:
    """`bridge fdb append 00:00:00:00:00:00 dev <vxlan> dst <remote>`: head-end replication."""
    return RTM_NEWNEIGH, F_CREATE | F_APPEND, _fdb(vxlan_index, remote)


def del_flood_entry(vxlan_index: int, remote: str) -> Request:
    return RTM_DELNEIGH, 0, _fdb(vxlan_index, remote)


def new_macvlan(name: str, parent: int, mac: str, ns_fd: int) -> Request:
    """A bridge-mode macvlan on `parent`, born in namespace `ns_fd` (created down)."""
    body = IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    body += attr_str(IFLA_IFNAME, name) + attr_u32(IFLA_LINK, parent)
    body += attr(IFLA_ADDRESS, _mac(mac)) + attr_u32(IFLA_NET_NS_FD, ns_fd)
    body += attr_nested(
        IFLA_LINKINFO,
        attr_str(IFLA_INFO_KIND, "macvlan"),
        attr_nested(IFLA_INFO_DATA, attr_u32(IFLA_MACVLAN_MODE, MACVLAN_MODE_BRIDGE)),
    )
    return RTM_NEWLINK, F_CREATE | F_EXCL, body


def unreachable_route(cidr: str, protocol: int, metric: int, delete: bool = False) -> Request:
    """An `unreachable` route for `cidr` in the main table (or its removal with `delete`)."""
    net = ipaddress.IPv4Network(cidr)
    body = RTMSG.pack(socket.AF_INET, net.prefixlen, 0, 0, RT_TABLE_MAIN, protocol, RT_SCOPE_UNIVERSE,
                      RTN_UNREACHABLE, 0)
    if net.prefixlen:
        body += attr(RTA_DST, net.network_address.packed)
    body += attr_u32(RTA_PRIORITY, metric)
    if delete:
        return RTM_DELROUTE, 0, body
    return RTM_NEWROUTE, F_CREATE | F_REPLACE, body
