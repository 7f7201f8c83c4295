"""Overlay health: every agent probes the underlay path to each VXLAN peer it shares a VPC with.

The classic silent failure: an underlay link with a smaller MTU drops every jumbo frame while
small pings still pass. Each agent therefore sends, once per `interval` and per peer (a remote
VTEP address of any of its segments, so the cost grows with peers, not with VPCs), one UDP probe
with DF set, as big as the largest VPC MTU it carries towards that peer + 50 bytes of VXLAN
encapsulation (hostconfig.VXLAN_OVERHEAD). The peer's agent answers.

Why UDP echo and not ICMP: a raw ICMP socket needs CAP_NET_RAW and sees every echo reply of the
host; a UDP socket bound to `<underlay address>:7650` (PROBE_PORT) is the agent's alone and its
replies carry our own token and sequence numbers. Answers are 20-byte headers: each direction
is measured by its own sender (an MTU problem towards B is reported by A, the other way by B),
a reply is never bigger than its request, and only a peer's own VXLAN peers get one, so the
responder reflects nothing to strangers.

DF: IP_MTU_DISCOVER = IP_PMTUDISC_DO. The kernel then never fragments; a datagram above the
MTU it knows for the route fails at once with EMSGSIZE (IP_MTU on a connected socket tells that
MTU), and one dropped on the way (a switch port with a smaller MTU drops silently, no ICMP) is
simply never answered.

Per peer (PeerBook, pure bookkeeping, driven by the caller's clock): a round is the probes sent
at once and `timeout` to answer them. A big probe unanswered starts sending a small one with it
(is the peer there at all?). `fail_after` consecutive failures make the pair degraded: the peer
does not respond (the small probe fails too), or the path MTU is too small, then measured by a
parallel search (`search_width` sizes per round between the largest size answered and the
smallest not, three rounds from 128 to 9050 bytes), at most once per `remeasure` seconds per
peer. `recover_after` consecutive answered big probes make it healthy again. Bad news thus
never flips on one lost datagram, and the report (Observation `overlay:<peer>`, only while
degraded) names the measured MTU.

Cost (bench/bench_overlay_probes.py): per peer and interval one probe of the VPC size each way
plus two 48-byte replies, i.e. 4 datagrams per peer per second at the default interval.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from l2vpc.hostconfig import VXLAN_OVERHEAD, HostConfig, Observation, overlay_observation_id

log = logging.getLogger("l2vpc.agent.overlay")

PROBE_PORT = 7650  # UDP, on the underlay address; `l2vpc agent run --probe-port` changes it
INTERVAL = 1.0
TIMEOUT = 0.5  # seconds a probe may take to be answered (underlay RTTs are well below 1 ms)
MEASURE_TIMEOUT = 0.5  # a late answer in a search would lower the measured MTU until the next one
FAIL_AFTER = 3
RECOVER_AFTER = 2
REMEASURE = 30.0
SEARCH_WIDTH = 24
SMALL = 128  # bytes of IP: the "is it there at all" probe and the floor of every search

IP_UDP_HEADERS = 28
_MAGIC = b"L2OP"
_REQUEST, _REPLY = 1, 2
_HEADER = struct.Struct("!4sBBHIQ")  # magic, version, kind, size, seq, token
_VERSION = 1
# Linux values; the socket module lacks some of them.
IP_MTU_DISCOVER = getattr(socket, "IP_MTU_DISCOVER", 10)
IP_PMTUDISC_DO = getattr(socket, "IP_PMTUDISC_DO", 2)
IP_MTU = getattr(socket, "IP_MTU", 14)

SocketFactory = Callable[[], socket.socket]


def needed_sizes(cfg: HostConfig) -> dict[str, int]:
    """Each VXLAN peer of `cfg` -> the IP size a probe to it must pass: the largest MTU of the
    VPCs carried towards it + VXLAN_OVERHEAD."""
    needed: dict[str, int] = {}
    for seg in cfg.segments:
        for remote in seg.remotes:
            if remote != cfg.underlay_ip:
                needed[remote] = max(needed.get(remote, 0), seg.mtu + VXLAN_OVERHEAD)
    return needed


@dataclass
class _Peer:
    needed: int
    next_due: float
    mode: str = "watch"  # watch: big probe | suspect: big + small | measure: the search
    sent: set[int] = field(default_factory=set)
    answered: set[int] = field(default_factory=set)
    round_end: float | None = None
    started: float = 0.0  # when the current round was sent
    failures: int = 0
    successes: int = 0
    degraded: bool = False
    reason: str = ""
    path_mtu: int = 0
    last_measured: float = float("-inf")
    kernel_mtu: int = 0  # the MTU the sending kernel reported with EMSGSIZE (0: none)
    lo: int = SMALL
    hi: int = 0


@dataclass(frozen=True, slots=True)
class PeerState:
    """One VXLAN peer as the prober judges it now (for metrics)."""

    peer: str  # underlay address
    state: str  # one of PEER_STATES
    needed: int  # IP bytes a probe to it must pass
    path_mtu: int  # measured (0: not measured: healthy, or no answer at all)


PEER_STATES = ("healthy", "degraded", "unreachable")  # degraded: path MTU too small


class PeerBook:
    """Which probes to send to which peer when, and what their answers mean (no I/O).

        book.configure({"10.0.0.2": 9050}, now)
        for peer, sizes in book.due(now): send them; book.answered(peer, size) per reply
        book.finish(now)          # rounds whose time is up are judged
        book.observations()       # the failing pairs
    """

    def __init__(self, *, interval: float = INTERVAL, timeout: float = TIMEOUT,
                 measure_timeout: float = MEASURE_TIMEOUT, fail_after: int = FAIL_AFTER,
                 recover_after: int = RECOVER_AFTER, remeasure: float = REMEASURE,
                 search_width: int = SEARCH_WIDTH) -> None:
        if timeout >= interval:
            raise ValueError(f"timeout: {timeout} must be shorter than interval ({interval})")
        self.interval, self.timeout, self.measure_timeout = interval, timeout, measure_timeout
        self.fail_after, self.recover_after = fail_after, recover_after
        self.remeasure, self.search_width = remeasure, search_width
        self.peers: dict[str, _Peer] = {}

    def configure(self, needed: Mapping[str, int], now: float) -> None:
        """Probe exactly these peers from now on; a peer whose needed size changed starts afresh."""
        for ip in set(self.peers) - set(needed):
            del self.peers[ip]
        for ip, size in needed.items():
            cur = self.peers.get(ip)
            if cur is None or cur.needed != size:
                # A fixed phase per peer spreads a host's probes evenly over the interval.
                phase = (zlib.crc32(ip.encode()) % 1000) / 1000 * self.interval
                self.peers[ip] = _Peer(needed=size, next_due=now + phase)

    def due(self, now: float) -> list[tuple[str, list[int]]]:
        """Peers whose next round starts now, with the sizes (IP bytes) to send; marks them sent."""
        out: list[tuple[str, list[int]]] = []
        for ip, p in self.peers.items():
            if p.round_end is not None or p.next_due > now:
                continue
            if p.mode == "measure":
                sizes = self._search_sizes(p)
                p.round_end = now + self.measure_timeout
            else:
                sizes = [p.needed, SMALL] if p.mode == "suspect" else [p.needed]
                p.round_end = now + self.timeout
            p.sent, p.answered, p.started = set(sizes), set(), now
            out.append((ip, sizes))
        return out

    def _search_sizes(self, p: _Peer) -> list[int]:
        hi = min(p.hi, p.kernel_mtu + 1) if p.kernel_mtu else p.hi
        step = (hi - p.lo) / (self.search_width + 1)
        sizes = {int(p.lo + step * i) for i in range(1, self.search_width + 1)} - {p.lo}
        return sorted({SMALL, *(s for s in sizes if p.lo < s < hi)})  # SMALL: is it still there?

    def answered(self, ip: str, size: int) -> None:
        p = self.peers.get(ip)
        if p is not None and p.round_end is not None and size in p.sent:
            p.answered.add(size)

    def send_failed(self, ip: str, size: int, kernel_mtu: int) -> None:
        """Sending `size` failed locally (EMSGSIZE): the kernel knows a path MTU of `kernel_mtu`."""
        p = self.peers.get(ip)
        if p is not None and kernel_mtu > 0:
            p.kernel_mtu = kernel_mtu

    def next_event(self) -> float:
        """When something is due next (a round ends or starts); inf without peers."""
        return min((p.round_end if p.round_end is not None else p.next_due for p in self.peers.values()),
                   default=float("inf"))

    def finish(self, now: float) -> list[str]:
        """Judge the rounds whose time is up; returns the peers whose verdict changed."""
        changed = []
        for ip, p in self.peers.items():
            if p.round_end is None or p.round_end > now:
                continue
            p.round_end = None
            before = (p.degraded, p.reason, p.path_mtu)
            if p.mode == "measure":
                self._judge_search(p, now)
            else:
                self._judge_round(p, now)
            if (p.degraded, p.reason, p.path_mtu) != before:
                changed.append(ip)
        return changed

    def _judge_round(self, p: _Peer, now: float) -> None:
        p.next_due = p.started + self.interval  # rounds start one interval apart
        if p.needed in p.answered:
            p.failures, p.successes, p.mode = 0, p.successes + 1, "watch"
            p.kernel_mtu = 0
            if p.degraded and p.successes >= self.recover_after:
                p.degraded, p.reason, p.path_mtu = False, "", 0
            elif p.degraded:
                p.mode = "suspect"  # keep checking both until it is healthy
            return
        p.failures, p.successes, p.mode = p.failures + 1, 0, "suspect"
        if p.failures < self.fail_after or SMALL not in p.sent:
            return
        if SMALL not in p.answered:
            p.degraded, p.reason, p.path_mtu = True, "peer_not_responding", 0
        elif not (p.degraded and p.reason == "path_mtu") or now - p.last_measured >= self.remeasure:
            p.mode, p.lo, p.hi, p.next_due = "measure", SMALL, p.needed, now
        # else: degraded by MTU and measured recently: keep the verdict (rate limit)

    def _judge_search(self, p: _Peer, now: float) -> None:
        if SMALL not in p.answered:  # gone meanwhile: a failure like any other
            p.mode, p.next_due, p.failures = "suspect", now, max(p.failures, self.fail_after)
            p.degraded, p.reason, p.path_mtu = True, "peer_not_responding", 0
            return
        ok = [s for s in p.answered if s > p.lo]
        p.lo = max([p.lo, *ok])
        lost = [s for s in p.sent if s > p.lo and s not in p.answered]
        cap = p.kernel_mtu + 1 if p.kernel_mtu else p.hi
        p.hi = min([p.hi, cap, *lost])
        if p.lo >= p.needed:  # it passes again: judged by the next ordinary rounds
            p.mode, p.next_due = "suspect", now
            return
        if p.hi - p.lo > 1 and len(self._search_sizes(p)) > 1:
            p.next_due = now
            return
        p.degraded, p.reason, p.path_mtu = True, "path_mtu", p.lo
        p.last_measured, p.mode, p.next_due = now, "suspect", now + self.interval

    def states(self) -> tuple[PeerState, ...]:
        """Every peer's verdict; a peer still being judged (a few lost probes) counts healthy
        until `fail_after` rounds say otherwise, as in `observations`."""
        return tuple(
            PeerState(ip, "healthy" if not p.degraded else "degraded" if p.reason == "path_mtu" else "unreachable",
                      p.needed, p.path_mtu if p.degraded and p.reason == "path_mtu" else 0)
            for ip, p in sorted(self.peers.items()))

    def observations(self) -> tuple[Observation, ...]:
        out = []
        for ip, p in sorted(self.peers.items()):
            if not p.degraded:
                continue
            if p.reason == "path_mtu":
                detail = (f"underlay path MTU to {ip} is {p.path_mtu} bytes; the VPCs carried need "
                          f"{p.needed} (MTU + {VXLAN_OVERHEAD} of VXLAN)")
            else:
                detail = f"no answer from {ip} to overlay probes (udp {PROBE_PORT})"
            out.append(Observation(overlay_observation_id(ip), "degraded", detail, (), p.reason, p.path_mtu))
        return tuple(out)


def _request(size: int, seq: int, token: int) -> bytes:
    head = _HEADER.pack(_MAGIC, _VERSION, _REQUEST, size, seq, token)
    return head + bytes(max(0, size - IP_UDP_HEADERS - len(head)))


class OverlayProber:
    """The agent's prober and responder: one UDP socket, one thread (see the module docstring).

        prober = OverlayProber("10.0.0.1", socket_factory)   # sockets made in the host's namespace
        prober.start(); prober.configure(host_config); prober.observations(); prober.close()
    """

    def __init__(self, underlay_ip: str, socket_factory: SocketFactory | None = None, *,
                 port: int = PROBE_PORT, book: PeerBook | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.underlay_ip = underlay_ip
        self.port = port
        self.book = book or PeerBook()
        self._factory = socket_factory or (lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        self._clock = clock
        self._lock = threading.Lock()  # guards the book and the counters
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None
        self._outstanding: dict[int, tuple[str, int]] = {}  # seq -> (peer, size)
        self._seq = 0
        self._token = int.from_bytes(os.urandom(8), "big")
        self._observations: tuple[Observation, ...] = ()
        self.counters = {"probes_sent": 0, "probe_bytes_sent": 0, "replies_received": 0,
                         "requests_answered": 0, "send_errors": 0}
        self._sock = self._open()

    def _open(self) -> socket.socket:
        sock = self._factory()
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind((self.underlay_ip, self.port))
        except OSError as e:
            sock.close()
            raise OSError(e.errno, f"overlay probes: cannot listen on udp {self.underlay_ip}:{self.port}: "
                                   f"{e.strerror}") from None
        return sock

    # -- what the agent calls -------------------------------------------------------------
    def configure(self, cfg: HostConfig) -> None:
        """Probe the VXLAN peers of `cfg` (and answer only them) from now on."""
        with self._lock:
            self.book.configure(needed_sizes(cfg), self._clock())
            self._observations = self.book.observations()
        os.write(self._wake_w, b"x")

    def observations(self) -> tuple[Observation, ...]:
        """The failing pairs now (Observation `overlay:<peer>`, state degraded)."""
        with self._lock:
            return self._observations

    def stats(self) -> dict[str, int]:
        """Counters for metrics (a Prometheus collector can export them as `_total` counters),
        plus `peers` and `degraded` gauges."""
        with self._lock:
            return {**self.counters, "peers": len(self.book.peers), "degraded": len(self._observations)}

    def peer_states(self) -> tuple[PeerState, ...]:
        """Each peer's verdict now (healthy | degraded | unreachable, measured path MTU)."""
        with self._lock:
            return self.book.states()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="overlay-probe", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._sock.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    # -- the loop -----------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # a bug here must not stop the agent; log and go on
                log.exception("overlay probe loop")
                time.sleep(1.0)

    def step(self) -> None:
        """Wait for a datagram or the next due event (at most one interval), then act."""
        with self._lock:
            wait = self.book.next_event() - self._clock()
        wait = min(max(wait, 0.0), self.book.interval)
        sock = self._sock.fileno()
        ready, _, _ = select.select([sock, self._wake_r], [], [], wait)
        if self._wake_r in ready:
            os.read(self._wake_r, 64)
        if sock in ready:
            self._receive()
        now = self._clock()
        with self._lock:
            changed = self.book.finish(now)
            due = self.book.due(now)
            if changed:
                self._observations = self.book.observations()
                for o in self._observations:
                    log.warning("overlay %s: %s", o.id, o.detail)
                healthy = set(changed) - {o.id.split(":", 1)[1] for o in self._observations}
                for ip in sorted(healthy):
                    log.info("overlay overlay:%s: healthy again", ip)
        for peer, sizes in due:
            for size in sizes:
                self._send(peer, size)
        if len(self._outstanding) > 100_000:  # answers that never came: forget the oldest
            for seq in sorted(self._outstanding)[:50_000]:
                del self._outstanding[seq]

    def _send(self, peer: str, size: int) -> None:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        data = _request(size, self._seq, self._token)
        try:
            self._sock.sendto(data, (peer, self.port))
        except OSError as e:
            with self._lock:
                self.counters["send_errors"] += 1
            if e.errno == errno.EMSGSIZE:
                mtu = self._kernel_mtu(peer)
                with self._lock:
                    self.book.send_failed(peer, size, mtu)
            return
        self._outstanding[self._seq] = (peer, size)
        with self._lock:
            self.counters["probes_sent"] += 1
            self.counters["probe_bytes_sent"] += size

    def _kernel_mtu(self, peer: str) -> int:
        """The path MTU the kernel knows towards `peer` (route, device or PMTU cache); 0 unknown."""
        try:
            with self._factory() as s:
                s.connect((peer, self.port))
                return int(s.getsockopt(socket.IPPROTO_IP, IP_MTU))
        except OSError:
            return 0

    def _receive(self) -> None:
        for _ in range(1024):  # bounded: the loop must get back to its timers
            try:
                data, (addr, port) = self._sock.recvfrom(65535, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if len(data) < _HEADER.size:
                continue
            magic, version, kind, size, seq, token = _HEADER.unpack_from(data)
            if magic != _MAGIC or version != _VERSION:
                continue
            if kind == _REQUEST:
                self._answer(addr, port, size, seq, token)
            elif kind == _REPLY and token == self._token:
                sent = self._outstanding.pop(seq, None)
                if sent is not None and sent[0] == addr and sent[1] == size:
                    with self._lock:
                        self.counters["replies_received"] += 1
                        self.book.answered(addr, size)

    def _answer(self, addr: str, port: int, size: int, seq: int, token: int) -> None:
        with self._lock:
            known = addr in self.book.peers
        if not known:  # only our own VXLAN peers: nobody can use us as a reflector
            return
        try:
            self._sock.sendto(_HEADER.pack(_MAGIC, _VERSION, _REPLY, size, seq, token), (addr, port))
        except OSError:
            return
        with self._lock:
            self.counters["requests_answered"] += 1

