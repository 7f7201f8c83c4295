"""Probes of a gateway from its neighbours' namespaces: does anything answer on a port, does a
forged packet get through. Sockets are opened inside the namespaces (netns.socket_in).

    answers([Probe(ns, "tcp", "10.0.0.1", 179), Probe(ns, "ike", "10.0.0.1", 4500)])
                                         # {probe: what came back} for those answered
    with UdpCatcher(ns, 40001) as catch:  # a UDP port listening in `ns`
        send_forged_udp(src_ns, "eth0", dst_mac, "192.168.50.10", "10.0.0.10", 40001)
    catch.received()                       # payloads that arrived

A "no answer" is silence: a TCP reset or an ICMP error is an answer too (it tells the sender
something is there). charon answers an IKE_SA_INIT for which it has no configuration with
NO_PROPOSAL_CHOSEN, so an "ike" probe tells whether charon's socket can be reached at all.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import time
from dataclasses import dataclass
from types import TracebackType

from l2vpc.agent.drivers.linux.netns import socket_in
from l2vpc.lab.probe import _checksum as checksum
from l2vpc.lab.probe import interface

ETH_P_IP = 0x0800
NON_ESP_MARKER = b"\0\0\0\0"  # IKE on port 4500 (RFC 3948)


def mac_of(ns: str, ifname: str) -> str:
    info = interface(ns, ifname)
    assert info is not None, f"no {ifname} in {ns}"
    return info[0]


def ike_sa_init() -> bytes:
    """A well-formed IKEv2 IKE_SA_INIT request (AES-CBC-256, SHA-256, MODP-2048; random KE and nonce)."""
    transforms = [
        (1, 12, struct.pack("!HH", 0x800E, 256)),  # ENCR AES_CBC, key length 256
        (2, 5, b""),  # PRF HMAC_SHA2_256
        (3, 12, b""),  # INTEG HMAC_SHA2_256_128
        (4, 14, b""),  # DH MODP_2048
    ]
    body = b"".join(struct.pack("!BBHBBH", 0 if i == len(transforms) - 1 else 3, 0, 8 + len(attrs), kind, 0, ident)
                    + attrs for i, (kind, ident, attrs) in enumerate(transforms))
    proposal = struct.pack("!BBHBBBB", 0, 0, 8 + len(body), 1, 1, 0, len(transforms)) + body
    sa = struct.pack("!BBH", 34, 0, 4 + len(proposal)) + proposal  # next: KE
    ke_data = os.urandom(256)
    ke = struct.pack("!BBHHH", 40, 0, 8 + len(ke_data), 14, 0) + ke_data  # next: Nonce
    nonce_data = os.urandom(32)
    nonce = struct.pack("!BBH", 0, 0, 4 + len(nonce_data)) + nonce_data
    payloads = sa + ke + nonce
    header = os.urandom(8) + bytes(8) + struct.pack("!BBBBII", 33, 0x20, 34, 0x08, 0, 28 + len(payloads))
    return header + payloads


@dataclass(frozen=True, slots=True)
class Probe:
    """A TCP connect, or an IKE_SA_INIT over UDP, from namespace `ns` (from address `source`)."""

    ns: str
    proto: str  # tcp | ike
    address: str
    port: int
    source: str | None = None

    def __str__(self) -> str:
        return f"{self.source or self.ns} -> {self.address}:{self.port}/{'udp' if self.proto == 'ike' else 'tcp'}"


def answers(probes: list[Probe], wait: float = 1.0) -> dict[Probe, str]:
    """Send every probe at once; the ones that got an answer within `wait` seconds, with what
    came back: "accepted" (SYN-ACK), "reply" (an IKE message), or the error that a TCP reset
    or an ICMP error produced. A probe not in the result got nothing back."""
    got: dict[Probe, str] = {}
    pending: dict[socket.socket, Probe] = {}
    try:
        for p in probes:
            kind = socket.SOCK_STREAM if p.proto == "tcp" else socket.SOCK_DGRAM
            s = socket_in(p.ns, socket.AF_INET, kind)
            pending[s] = p
            s.setblocking(False)
            if p.source is not None:
                s.bind((p.source, 0))
            if p.proto == "tcp":
                code = s.connect_ex((p.address, p.port))
                if code not in (0, errno.EINPROGRESS):  # no route here: not silence either
                    got[p] = f"{errno.errorcode.get(code, code)} locally"
                    del pending[s]
                    s.close()
            else:
                s.connect((p.address, p.port))
                s.send((NON_ESP_MARKER if p.port == 4500 else b"") + ike_sa_init())
        deadline = time.monotonic() + wait
        while pending and (left := deadline - time.monotonic()) > 0:
            readable, writable, _ = select.select([s for s, p in pending.items() if p.proto == "ike"],
                                                  [s for s, p in pending.items() if p.proto == "tcp"], [], left)
            for s in readable + writable:
                p = pending.pop(s)
                code = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    got[p] = f"{errno.errorcode.get(code, code)} ({os.strerror(code)})"
                elif p.proto == "tcp":
                    got[p] = "accepted"
                else:
                    got[p] = f"reply ({len(s.recv(65536))} bytes)"
                s.close()
    finally:
        for s in pending:
            s.close()
    return got


def forged_udp(src_mac: str, dst_mac: str, src_ip: str, dst_ip: str, dport: int, payload: bytes) -> bytes:
    """An Ethernet frame carrying UDP from src_ip (any address: forged) to dst_ip:dport."""
    udp = struct.pack("!HHHH", 40000, dport, 8 + len(payload), 0) + payload  # checksum 0: none
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, socket.IPPROTO_UDP, 0,
                         socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    eth = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", "")) + struct.pack("!H", ETH_P_IP)
    return eth + header + udp


def send_forged_udp(ns: str, ifname: str, dst_mac: str, src_ip: str, dst_ip: str, dport: int,
                    payload: bytes = b"l2vpc-forged", count: int = 3) -> None:
    """Put a forged UDP packet on the wire of `ifname` in namespace `ns`, addressed to the
    device with MAC `dst_mac` (a gateway), `count` times."""
    frame = forged_udp(mac_of(ns, ifname), dst_mac, src_ip, dst_ip, dport, payload)
    with socket_in(ns, socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((ifname, 0))
        for _ in range(count):
            s.send(frame)
            time.sleep(0.02)


class UdpCatcher:
    """A UDP socket bound to `port` in namespace `ns` while the block runs."""

    def __init__(self, ns: str, port: int) -> None:
        self.ns, self.port = ns, port
        self._sock: socket.socket | None = None

    def __enter__(self) -> UdpCatcher:
        self._sock = socket_in(self.ns, socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("0.0.0.0", self.port))
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if self._sock is not None:
            self._sock.close()

    def received(self, wait: float = 0.5) -> list[tuple[bytes, str]]:
        """(payload, source address) of what arrived, waiting up to `wait` s for the first."""
        assert self._sock is not None
        out: list[tuple[bytes, str]] = []
        self._sock.settimeout(wait)
        while True:
            try:
                data, (source, _) = self._sock.recvfrom(65536)
            except TimeoutError:
                return out
            out.append((data, source))
            self._sock.settimeout(0.05)
