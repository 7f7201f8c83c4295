"""Traffic checks between workload interfaces, from inside their namespaces, in one process.

Reachability: ICMP echo from every addressed interface to every other addressed interface of
the same VPC, each sent through the source's own interface (SO_BINDTODEVICE), retried until
answered or the deadline passes.

Isolation: every interface broadcasts ARP requests for the addresses of other VPCs' interfaces,
while a packet socket on every interface records the frames arriving there. A frame whose
source MAC belongs to an interface of another VPC is a leak, whether it is the broadcast itself
(layer 2 crossed), or a reply to it (layer 3 answered across VPCs). This catches what a ping
would miss: a target that does not answer because of rp_filter, or has no address at all.

Sockets are opened inside the namespaces (setns on this thread, then back), so a full check
of hundreds of pairs costs milliseconds of CPU instead of a process per ping.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from l2vpc.agent.drivers.linux.netns import socket_in

SIOCGIFADDR = 0x8915
SIOCGIFHWADDR = 0x8927
SO_BINDTODEVICE = 25
ETH_P_ALL = 0x0003
ETH_P_ARP = 0x0806
PACKET_OUTGOING = 4
ICMP_ECHO, ICMP_ECHO_REPLY = 8, 0
_PAYLOAD = b"l2vpc-lab-check"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One workload interface: where it lives and which VPC it belongs to."""

    label: str  # workload.ifname
    vpc: str
    netns: str
    ifname: str
    ip: str | None = None  # plain address; None: none configured (yet)
    mac: str = ""


@dataclass
class Report:
    reachable: list[tuple[Endpoint, Endpoint]] = field(default_factory=list)
    unreachable: list[tuple[Endpoint, Endpoint]] = field(default_factory=list)
    leaks: list[tuple[Endpoint, Endpoint, str]] = field(default_factory=list)  # (from, seen at, what)
    isolation_probes: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.unreachable and not self.leaks


def _ifreq(sock: socket.socket, request: int, ifname: str) -> bytes:
    return fcntl.ioctl(sock.fileno(), request, struct.pack("256s", ifname.encode()[:15]))


def interface(netns: str, ifname: str) -> tuple[str, str | None] | None:
    """(MAC, IPv4 address or None) of an interface; None if it does not exist."""
    try:
        sock = socket_in(netns, socket.AF_INET, socket.SOCK_DGRAM)
    except FileNotFoundError:
        return None
    with sock:
        try:
            hw = _ifreq(sock, SIOCGIFHWADDR, ifname)[18:24]
        except OSError:
            return None
        try:
            addr: str | None = socket.inet_ntoa(_ifreq(sock, SIOCGIFADDR, ifname)[20:24])
        except OSError:
            addr = None
    return ":".join(f"{b:02x}" for b in hw), addr


def resolve(endpoints: Iterable[Endpoint], deadline: float, want_ip: set[str]) -> list[Endpoint]:
    """Fill in MAC and address from the interfaces, waiting until `deadline` for those in
    `want_ip` (labels of DHCP interfaces whose lease may still be on its way)."""
    pending = list(endpoints)
    done: dict[str, Endpoint] = {}
    while True:
        still = []
        for e in pending:
            info = interface(e.netns, e.ifname)
            if info is not None and (info[1] or e.label not in want_ip):
                done[e.label] = Endpoint(e.label, e.vpc, e.netns, e.ifname, info[1] or e.ip, info[0])
            else:
                still.append(e)
        pending = still
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    for e in pending:  # report them as they are: without an address they cannot be pinged
        info = interface(e.netns, e.ifname)
        done[e.label] = Endpoint(e.label, e.vpc, e.netns, e.ifname, info[1] if info else None,
                                 info[0] if info else "")
    return sorted(done.values(), key=lambda e: e.label)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _echo(ident: int, seq: int) -> bytes:
    header = struct.pack("!BBHHH", ICMP_ECHO, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ICMP_ECHO, 0, _checksum(header + _PAYLOAD), ident, seq) + _PAYLOAD


def reachability(endpoints: list[Endpoint], deadline: float, report: Report, interval: float = 0.2) -> None:
    """Ping every ordered pair of addressed endpoints in the same VPC until answered or deadline."""
    by_vpc: dict[str, list[Endpoint]] = {}
    for e in endpoints:
        if e.ip:
            by_vpc.setdefault(e.vpc, []).append(e)
    pairs = [(a, b) for members in by_vpc.values() for a in members for b in members if a is not b]
    if not pairs:
        return
    sockets: dict[str, socket.socket] = {}
    idents: dict[int, str] = {}
    try:
        for n, e in enumerate(sorted({a.label: a for a, _ in pairs}.values(), key=lambda e: e.label)):
            s = socket_in(e.netns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            s.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, e.ifname.encode())
            s.setblocking(False)
            sockets[e.label] = s
            idents[(os.getpid() + n * 7919) & 0xFFFF] = e.label
        ident_of = {label: ident for ident, label in idents.items()}
        seq_of = {(a.label, b.label): i & 0xFFFF for i, (a, b) in enumerate(pairs)}
        pending = {(a.label, b.label): (a, b) for a, b in pairs}
        by_seq = {(ident_of[a], seq): (a, b) for (a, b), seq in seq_of.items()}
        while pending:
            for (al, _), (_, b) in list(pending.items()):
                with contextlib.suppress(OSError):  # no route / no neighbour yet: retried
                    sockets[al].sendto(_echo(ident_of[al], seq_of[(al, b.label)]), (b.ip, 0))
            round_end = min(time.monotonic() + interval, deadline)
            while pending and (left := round_end - time.monotonic()) > 0:
                ready, _, _ = select.select(list(sockets.values()), [], [], left)
                for s in ready:
                    with contextlib.suppress(BlockingIOError):
                        while True:
                            data = s.recv(2048)
                            ihl = (data[0] & 0x0F) * 4
                            if len(data) < ihl + 8 or data[ihl] != ICMP_ECHO_REPLY:
                                continue
                            ident, seq = struct.unpack("!HH", data[ihl + 4:ihl + 8])
                            key = by_seq.get((ident, seq))
                            if key is None or key not in pending:
                                continue
                            src = socket.inet_ntoa(data[12:16])
                            if src == pending[key][1].ip:
                                report.reachable.append(pending.pop(key))
            if time.monotonic() >= deadline:
                break
    finally:
        for s in sockets.values():
            s.close()
    report.unreachable.extend(pending.values())


def _arp_request(mac: str, ip: str | None, target: str) -> bytes:
    sha = bytes.fromhex(mac.replace(":", ""))
    spa = socket.inet_aton(ip) if ip else b"\0\0\0\0"
    frame = b"\xff" * 6 + sha + struct.pack("!H", ETH_P_ARP)
    frame += struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + sha + spa + b"\0" * 6 + socket.inet_aton(target)
    return frame.ljust(60, b"\0")


def isolation(endpoints: list[Endpoint], report: Report, window: float = 0.5, rounds: int = 2) -> None:
    """Broadcast from every interface towards other VPCs' addresses; any frame that arrives at an
    interface of another VPC than its sender's is a leak."""
    usable = [e for e in endpoints if e.mac]
    vpcs_of_mac: dict[str, set[str]] = {}
    for e in usable:
        vpcs_of_mac.setdefault(e.mac, set()).add(e.vpc)
    owner = {e.mac: e for e in usable if len(vpcs_of_mac[e.mac]) == 1}  # ambiguous MACs prove nothing
    if len({e.vpc for e in usable}) < 2:
        return
    sockets: dict[str, socket.socket] = {}
    try:
        for e in usable:
            s = socket_in(e.netns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            s.bind((e.ifname, ETH_P_ALL))
            s.setblocking(False)
            sockets[e.label] = s
        by_fd = {s.fileno(): label for label, s in sockets.items()}
        endpoint = {e.label: e for e in usable}
        seen: set[tuple[str, str]] = set()

        def drain(until: float) -> None:
            while (left := until - time.monotonic()) > 0:
                ready, _, _ = select.select(list(sockets.values()), [], [], left)
                for s in ready:
                    at = endpoint[by_fd[s.fileno()]]
                    with contextlib.suppress(BlockingIOError):
                        while True:
                            data, addr = s.recvfrom(2048)
                            if addr[2] == PACKET_OUTGOING or len(data) < 14:
                                continue
                            src = ":".join(f"{b:02x}" for b in data[6:12])
                            sender = owner.get(src)
                            if sender is None or sender.vpc == at.vpc or (sender.label, at.label) in seen:
                                continue
                            seen.add((sender.label, at.label))
                            kind = "ARP reply" if data[12:14] == b"\x08\x06" and data[20:22] == b"\0\x02" else (
                                "broadcast" if data[:6] == b"\xff" * 6 else "frame")
                            report.leaks.append((sender, at, kind))

        for _ in range(rounds):
            for e in usable:
                targets = sorted({t.ip for t in usable if t.vpc != e.vpc and t.ip and _not_in_vpc(t.ip, e.vpc, usable)})
                for target in targets or [e.ip or "169.254.0.1"]:
                    with contextlib.suppress(OSError):
                        sockets[e.label].send(_arp_request(e.mac, e.ip, target))
                    report.isolation_probes += 1
            drain(time.monotonic() + window / rounds)
    finally:
        for s in sockets.values():
            s.close()


def _not_in_vpc(ip: str, vpc: str, endpoints: list[Endpoint]) -> bool:
    """An address that some interface of `vpc` itself holds would be answered legitimately."""
    return not any(e.vpc == vpc and e.ip == ip for e in endpoints)


def check(endpoints: list[Endpoint], *, timeout: float = 10.0, dhcp: set[str] | None = None) -> tuple[list[Endpoint], Report]:
    """Resolve addresses, test reachability within VPCs and isolation between them."""
    started = time.monotonic()
    deadline = started + timeout
    resolved = resolve(endpoints, deadline, dhcp or set())
    report = Report()
    reachability(resolved, max(deadline, time.monotonic() + 1.0), report)
    isolation(resolved, report)
    report.seconds = time.monotonic() - started
    return resolved, report

