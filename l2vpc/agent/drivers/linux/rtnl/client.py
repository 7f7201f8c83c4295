"""The rtnetlink socket: batched requests with their acks, dumps, and a change watcher.

Errors surface at one seam: `NetlinkError(errno, message)` carrying the kernel's extended ack
text when there is one.
"""

from __future__ import annotations

import errno as errno_mod
import os
import socket
from collections.abc import Iterable, Iterator

from l2vpc.agent.drivers.linux.rtnl.messages import (
    AF_BRIDGE,
    ERR,
    F_ACK,
    F_ACK_TLVS,
    F_DUMP,
    F_REQUEST,
    HDR,
    IFADDR,
    IFINFO,
    IFLA_EXT_MASK,
    IFLA_IFNAME,
    NDMSG,
    NETLINK_CAP_ACK,
    NETLINK_EXT_ACK,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSGERR_ATTR_MSG,
    RTEXT_FILTER_SKIP_STATS,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETNEIGH,
    RTM_GETROUTE,
    RTMSG,
    SOL_NETLINK,
    Request,
    align,
    attr_str,
    attr_u32,
)
from l2vpc.agent.drivers.linux.rtnl.records import (
    Addr,
    FdbEntry,
    Link,
    Route,
    attrs,
    cstr,
    parse_addr,
    parse_fdb,
    parse_link,
    parse_route,
)

# Bound once: on an imported NAME, `NAME.method(...)` compiles to an attribute load that builds
# a bound method per call (see records.py); these run once per message of every dump and ack.
_pack_hdr = HDR.pack
_unpack_hdr = HDR.unpack_from


class NetlinkError(OSError):
    """The kernel refused a request. `errno` is the error number, `args[1]` a readable reason."""

    def __init__(self, code: int, message: str = "") -> None:
        text = os.strerror(code) + (f" ({message})" if message else "")
        super().__init__(code, text)


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
            msg = _pack_hdr(HDR.size + len(body), mtype, flags | F_REQUEST | F_ACK, self._seq, 0) + body
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
            while off + HDR.size <= len(data):
                length, mtype, flags, seq, _ = _unpack_hdr(data, off)
                if mtype == NLMSG_ERROR and first <= seq < first + len(seqs):
                    code = -ERR.unpack_from(data, off + HDR.size)[0]
                    if code:
                        results[seq - first] = NetlinkError(code, _ext_ack(data, off, length, flags))
                    pending -= 1
                off += align(length) if length else len(data)
        return results

    # -- dumps -----------------------------------------------------------------------------

    def _dump(self, mtype: int, body: bytes) -> Iterator[tuple[bytes, int, int]]:
        self._seq += 1
        seq = self._seq
        self.sock.send(_pack_hdr(HDR.size + len(body), mtype, F_REQUEST | F_DUMP, seq, 0) + body)
        while True:
            data = self.sock.recv(1 << 20)
            off = 0
            while off + HDR.size <= len(data):
                length, rtype, flags, rseq, _ = _unpack_hdr(data, off)
                if rseq == seq:
                    if rtype == NLMSG_DONE:
                        return
                    if rtype == NLMSG_ERROR:
                        code = -ERR.unpack_from(data, off + HDR.size)[0]
                        if code:
                            raise NetlinkError(code, _ext_ack(data, off, length, flags))
                        return
                    yield data, off + HDR.size, off + length
                off += align(length) if length else len(data)

    def links(self) -> list[Link]:
        body = IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)
        return [parse_link(d, a, b) for d, a, b in self._dump(RTM_GETLINK, body)]

    def link(self, name: str) -> Link | None:
        """One link by name (RTM_GETLINK without a dump); None when there is none."""
        self._seq += 1
        body = IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr_str(IFLA_IFNAME, name)
        body += attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)
        self.sock.send(_pack_hdr(HDR.size + len(body), RTM_GETLINK, F_REQUEST, self._seq, 0) + body)
        while True:
            data = self.sock.recv(1 << 16)
            length, rtype, flags, rseq, _ = _unpack_hdr(data, 0)
            if rseq != self._seq:
                continue
            if rtype == NLMSG_ERROR:
                code = -ERR.unpack_from(data, HDR.size)[0]
                if code in (errno_mod.ENODEV, 0):
                    return None
                raise NetlinkError(code, _ext_ack(data, 0, length, flags))
            return parse_link(data, HDR.size, length)

    def addrs(self) -> list[Addr]:
        body = IFADDR.pack(socket.AF_INET, 0, 0, 0, 0)
        out = (parse_addr(d, a, b) for d, a, b in self._dump(RTM_GETADDR, body))
        return [x for x in out if x is not None]

    def routes(self) -> list[Route]:
        body = RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
        out = (parse_route(d, a, b) for d, a, b in self._dump(RTM_GETROUTE, body))
        return [x for x in out if x is not None]

    def fdb(self, only: Iterable[int] | None = None) -> list[FdbEntry]:
        """Bridge fdb entries; `only` keeps those of these device indexes (skipped unparsed)."""
        keep = frozenset(only) if only is not None else None
        body = NDMSG.pack(AF_BRIDGE, 0, 0, 0, 0)
        out = (parse_fdb(d, a, b, keep) for d, a, b in self._dump(RTM_GETNEIGH, body))
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
    start = off + HDR.size + 4 + HDR.size
    for kind, a, b in attrs(data, start, off + length):
        if kind == NLMSGERR_ATTR_MSG:
            return cstr(data, a, b)
    return ""
