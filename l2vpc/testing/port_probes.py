"""Forged frames from a workload's interface, and a packet socket that sees what arrives at
another: does port security drop what it should, and pass the rest.

    with Sniffer(observer_ns, "net1") as sniff:
        inject(ns, "net1", arp(mac, "10.0.0.3", target="10.0.0.9", marker=b"..."))
        inject(ns, "net1", udp(mac, BROADCAST_MAC, "10.0.0.2", BROADCAST, 67, 68, b"offer-1"))
    sniff.seen(b"offer-1")     # True if a frame carrying those bytes arrived

Each frame carries a marker of its own (UDP payload; for ARP, bytes in the frame's padding), so
one capture tells every probe apart. A tap's frames come from a file descriptor, not a socket:
`TapWriter` opens a tap as a hypervisor does and writes frames the guest would send.
"""

from __future__ import annotations

import fcntl
import os
import select
import socket
import struct
import time
from types import TracebackType

from l2vpc.agent.drivers.linux import netns
from l2vpc.agent.drivers.linux.netns import socket_in
from l2vpc.lab.probe import _checksum as checksum

ETH_P_ALL, ETH_P_IP, ETH_P_ARP = 0x0003, 0x0800, 0x0806
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
BROADCAST = "255.255.255.255"
TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000


def _mac(value: str) -> bytes:
    return bytes.fromhex(value.replace(":", ""))


def udp(src_mac: str, dst_mac: str, src_ip: str, dst_ip: str, sport: int, dport: int, payload: bytes) -> bytes:
    """An Ethernet frame carrying UDP (checksum 0: none) from src_ip:sport, forged or not."""
    body = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0, 0x4000, 64, socket.IPPROTO_UDP, 0,
                         socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return _mac(dst_mac) + _mac(src_mac) + struct.pack("!H", ETH_P_IP) + header + body


def arp(src_mac: str, sender_ip: str, target: str, marker: bytes, sender_mac: str | None = None,
        reply: bool = False) -> bytes:
    """A broadcast ARP request (or gratuitous reply) claiming `sender_ip` is at `sender_mac`
    (default: the frame's source MAC); `marker` rides in the padding."""
    sha = _mac(sender_mac or src_mac)
    op = 2 if reply else 1
    frame = _mac(BROADCAST_MAC) + _mac(src_mac) + struct.pack("!H", ETH_P_ARP)
    frame += struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + sha + socket.inet_aton(sender_ip) + b"\0" * 6
    frame += socket.inet_aton(target)
    return frame + marker


def inject(ns: str, ifname: str, *frames: bytes, count: int = 2) -> None:
    """Put `frames` on the wire of `ifname` in namespace `ns`, each `count` times."""
    with socket_in(ns, socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((ifname, 0))
        for _ in range(count):
            for f in frames:
                s.send(f)
            time.sleep(0.01)


class TapWriter:
    """A tap opened by name as a hypervisor opens it (in namespace `ns`): frames written are
    what its guest sends."""

    def __init__(self, ns: str, name: str) -> None:
        with netns.inside(ns):
            self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
        try:
            # The agent made the tap with a virtio-net header; opening it must ask for the same.
            fcntl.ioctl(self.fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI | 0x4000))
        except OSError:
            os.close(self.fd)
            raise

    def send(self, *frames: bytes, count: int = 2) -> None:
        for _ in range(count):
            for f in frames:
                os.write(self.fd, bytes(10) + f)  # an empty virtio-net header: no offloads
            time.sleep(0.01)

    def close(self) -> None:
        os.close(self.fd)


class Sniffer:
    """A packet socket on `ifname` in namespace `ns` while the block runs."""

    def __init__(self, ns: str, ifname: str) -> None:
        self.ns, self.ifname = ns, ifname
        self._sock: socket.socket | None = None
        self._frames: list[bytes] = []

    def __enter__(self) -> Sniffer:
        self._sock = socket_in(self.ns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self._sock.bind((self.ifname, 0))
        self._sock.setblocking(False)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if self._sock is not None:
            self._sock.close()

    def seen(self, marker: bytes, wait: float = 0.3) -> bool:
        """Whether a frame carrying `marker` arrived (waiting up to `wait` s for more)."""
        assert self._sock is not None
        deadline = time.monotonic() + wait
        while not any(marker in f for f in self._frames):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._sock], [], [], left)[0]:
                return False
            while True:
                try:
                    self._frames.append(self._sock.recv(65536))
                except BlockingIOError:
                    break
        return True
