"""FRR (zebra + bgpd) as the BGP speaker of one router namespace: config, start, stop, status.

Each router gets its own pair of daemons, started in the router's namespace (nsenter) in the
foreground, with every path of their own:

    <run>/zebra.conf bgpd.conf      configs (0600; bgpd.conf holds the MD5 password)
    <run>/zserv.api                 zebra <-> bgpd
    <run>/zebra.vty bgpd.vty        vty sockets (we query bgpd through its socket)
    <run>/zebra.frrpid bgpd.frrpid  FRR's own pid files
    <state>/zebra.pid bgpd.pid      ours (procs.py), <state>/zebra.log bgpd.log (0600)

FRR drops its privileges to the `frr` user right after start (and refuses to run as root:
root is not in its vty group), so `<run>` belongs to `frr` and sits where `frr` can reach it:
below /run, not in the agent's state dir, whose parents are usually private to root. It is
derived from the router's name, so removal needs no memory. The TCP vty ports are off (`-P 0`):
the router namespace has an address inside a customer's VPC. For the same reason bgpd listens
on the peering address only (`-l <address>`, given to `start`), not on 0.0.0.0:179; in FRR 8.4
`-l` no longer implies `-n` (its help text still says so): learned routes still reach the kernel.

FRR also makes a scratch directory /var/tmp/frr/<daemon>.<pid> per process, removed when the
daemon exits cleanly; `stop` removes the one of the pid it stopped if a kill left it behind,
and /var/tmp/frr itself once it is empty.

Timers are short so a session comes up in about a second (bgpd's idle hold before the first
connect is a fixed 1 s): connect retry 1 s, keepalive 3 s, hold 9 s, updates coalesced for
100 ms instead of 1 s. Status comes from `show bgp summary json` and the routes received from the peer,
read over bgpd's vty socket (FRR's vtysh protocol: command + NUL; reply text, then three NULs
and a status byte), which costs well under a millisecond instead of a vtysh process.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from l2vpc.agent.drivers.linux import procs

FRR_LIBEXEC = Path("/usr/lib/frr")
FRR_USER = "frr"
FRR_TMP = Path("/var/tmp/frr")
RUN_BASE = Path("/run/l2vpc-frr")
DAEMONS = ("zebra", "bgpd")
CONNECT_RETRY = 1
KEEPALIVE, HOLD = 3, 9
COALESCE_MS = 100


class FrrError(Exception):
    """FRR cannot be set up or did not start; the message says why (never a secret)."""


@dataclass(frozen=True, slots=True)
class BgpSpec:
    """What bgpd.conf says: one eBGP neighbour, the prefixes we announce, an optional password."""

    hostname: str
    local_asn: int
    peer_asn: int
    router_id: str
    peer_ip: str
    advertised: tuple[str, ...]
    md5_key: str | None = None


@dataclass(frozen=True, slots=True)
class Session:
    state: str  # FRR's words: Idle, Connect, Active, OpenSent, OpenConfirm, Established
    learned: tuple[str, ...] = ()
    # Why the last session ended, as FRR tells it ('' when none did): e.g. "BGP Notification
    # received" with "OPEN Message Error/Bad Peer AS".
    last_reset: str = ""
    last_notification: str = ""

    @property
    def established(self) -> bool:
        return self.state == "Established"

    def seen(self) -> str:
        """What we saw of the peer, in words an operator acts on (not FRR's state names)."""
        if self.last_notification:
            return f"the peer closed the session: {self.last_notification}"
        if self.state in ("OpenSent", "OpenConfirm"):
            return "the peer accepted the TCP connection but the BGP OPEN exchange did not complete"
        if self.state.startswith("unknown"):
            return f"its state could not be read ({self.state})"
        if self.last_reset and self.last_reset not in ("Waiting for NHT", "Unknown"):
            return f"no answer from the peer (the last session ended: {self.last_reset})"
        return "no answer from the peer: no TCP connection to its BGP port"


def check_password(key: str) -> str:
    """'' if `key` can be an FRR neighbour password, else why not (the key itself never shown)."""
    if not 1 <= len(key) <= 80:
        return "must be 1-80 characters"
    if any(c.isspace() or not c.isprintable() for c in key):
        return "must be printable characters without spaces"
    return ""


def render_bgpd(spec: BgpSpec) -> str:
    peer = spec.peer_ip
    lines = [
        "! written by the l2vpc agent; rewritten on every change",
        "frr defaults datacenter",
        f"hostname {spec.hostname}",
        "log stdout informational",
        "!",
        f"router bgp {spec.local_asn}",
        f" bgp router-id {spec.router_id}",
        # Without a policy FRR (RFC 8212) neither accepts nor announces eBGP routes.
        " no bgp ebgp-requires-policy",
        # Announce the VPC prefixes whether or not the kernel has a route for them.
        " no bgp network import-check",
        f" timers bgp {KEEPALIVE} {HOLD}",
        # Updates go out after a 1 s coalescing pause by default: a tenth is plenty here.
        f" coalesce-time {COALESCE_MS}",
        f" neighbor {peer} remote-as {spec.peer_asn}",
        f" neighbor {peer} timers connect {CONNECT_RETRY}",
    ]
    if spec.md5_key:
        lines.append(f" neighbor {peer} password {spec.md5_key}")
    lines += [" address-family ipv4 unicast"]
    lines += [f"  network {p}" for p in spec.advertised]
    lines += [f"  neighbor {peer} activate", " exit-address-family", "!"]
    return "\n".join(lines) + "\n"


def render_zebra(hostname: str) -> str:
    return f"! written by the l2vpc agent\nhostname {hostname}\nlog stdout informational\n!\n"


class Router:
    """The FRR daemons of one router namespace. `name` (the namespace's name) keys the run dir."""

    def __init__(self, name: str, state: Path, netns_path: str, run_base: Path = RUN_BASE) -> None:
        self.name = name
        self.state = state
        self.netns_path = netns_path
        self.run = run_base / name
        self.listen: str | None = None  # bgpd's listening address (None: all of them)

    def _conf(self, daemon: str) -> Path:
        return self.run / f"{daemon}.conf"

    def _argv(self, daemon: str) -> list[str]:
        listen = ["-l", self.listen] if daemon == "bgpd" and self.listen else []
        return [
            str(FRR_LIBEXEC / daemon), "-f", str(self._conf(daemon)), "-i", str(self.run / f"{daemon}.frrpid"),
            "--vty_socket", str(self.run), "-z", str(self.run / "zserv.api"), "-P", "0",
            "-u", FRR_USER, "-g", FRR_USER, *listen,
        ]

    def _marker(self, daemon: str) -> str:
        return str(self._conf(daemon))

    def _pidfile(self, daemon: str) -> Path:
        return self.state / f"{daemon}.pid"

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, bgpd_conf: str, hostname: str, timeout: float = 5.0, listen: str | None = None) -> None:
        """Write the configs and start zebra, then bgpd (which needs zebra's socket), listening
        on address `listen` only (an address the namespace holds; None: on every address)."""
        self.listen = listen
        try:
            user = pwd.getpwnam(FRR_USER)
        except KeyError:
            raise FrrError(f"FRR is not installed (no user {FRR_USER!r})") from None
        for daemon in DAEMONS:
            if not os.access(FRR_LIBEXEC / daemon, os.X_OK):
                raise FrrError(f"FRR is not installed ({FRR_LIBEXEC / daemon} is missing)")
        self.stop()
        self.run.parent.mkdir(mode=0o711, parents=True, exist_ok=True)
        shutil.rmtree(self.run, ignore_errors=True)
        self.run.mkdir(mode=0o700)
        os.chown(self.run, user.pw_uid, user.pw_gid)
        self._write(self._conf("zebra"), render_zebra(hostname), user)
        self._write(self._conf("bgpd"), bgpd_conf, user)
        self.state.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._start("zebra")
        self._wait_for(self.run / "zserv.api", "zebra", timeout)
        self._start("bgpd")
        self._wait_for(self.run / "bgpd.vty", "bgpd", timeout)

    def reconfigure(self, bgpd_conf: str, timeout: float = 5.0, listen: str | None = None) -> None:
        """A new BGP configuration: bgpd restarts (the session with it), zebra keeps running."""
        self.listen = listen
        user = pwd.getpwnam(FRR_USER)
        self._stop("bgpd")
        self._write(self._conf("bgpd"), bgpd_conf, user)
        self._start("bgpd")
        self._wait_for(self.run / "bgpd.vty", "bgpd", timeout)

    def stop(self) -> None:
        """Stop bgpd, then zebra, and remove the run dir; already stopped is fine."""
        for daemon in reversed(DAEMONS):
            self._stop(daemon)
        shutil.rmtree(self.run, ignore_errors=True)
        for base in (self.run.parent, FRR_TMP):  # only when empty: no other FRR uses them
            with contextlib.suppress(OSError):
                base.rmdir()

    def running(self) -> bool:
        return all(procs.alive(procs.read_pid(self._pidfile(d)), self._marker(d)) for d in DAEMONS)

    def _write(self, path: Path, text: str, user: pwd.struct_passwd) -> None:
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, text.encode())
            os.fchown(fd, user.pw_uid, user.pw_gid)
        finally:
            os.close(fd)
        tmp.replace(path)

    def _start(self, daemon: str) -> None:
        log = self.state / f"{daemon}.log"
        os.close(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        procs.start(self.netns_path, self._argv(daemon), self._pidfile(daemon), log)

    def _stop(self, daemon: str) -> None:
        pid = procs.read_pid(self._pidfile(daemon))
        procs.stop(self._pidfile(daemon), self._marker(daemon))
        if pid:
            # A clean exit removes FRR's scratch dir; a SIGKILL leaves it.
            shutil.rmtree(FRR_TMP / f"{daemon}.{pid}", ignore_errors=True)

    def _wait_for(self, path: Path, daemon: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pid = procs.read_pid(self._pidfile(daemon))
        while not path.exists():
            if pid is None or procs.exited(pid):
                raise FrrError(f"{daemon} exited at start: {self.log_tail(daemon) or 'no output'}")
            if time.monotonic() > deadline:
                raise FrrError(f"{daemon} did not come up within {timeout:.0f}s: {self.log_tail(daemon)}")
            time.sleep(0.005)

    def log_tail(self, daemon: str, lines: int = 3) -> str:
        with contextlib.suppress(OSError):
            text = (self.state / f"{daemon}.log").read_text(errors="replace")
            return " | ".join(text.strip().splitlines()[-lines:])
        return ""

    # -- status ----------------------------------------------------------------------------

    def command(self, daemon: str, command: str, timeout: float = 2.0) -> str:
        """Run one vty command in `daemon` and return its output."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(self.run / f"{daemon}.vty"))
            s.sendall(command.encode() + b"\0")
            buf = bytearray()
            while not (len(buf) >= 4 and buf[-4:-1] == b"\0\0\0"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        return bytes(buf[:-4]).decode(errors="replace")

    def _down_session(self, peer_ip: str, state: str) -> Session:
        try:
            doc = json.loads(self.command("bgpd", f"show bgp neighbors {peer_ip} json") or "{}").get(peer_ip, {})
        except (OSError, ValueError, AttributeError):
            return Session(state)
        notification = str(doc.get("lastNotificationReason") or doc.get("lastErrorCodeSubcode") or "")
        return Session(state, last_reset=str(doc.get("lastResetDueTo") or ""), last_notification=notification)

    def session(self, peer_ip: str) -> Session:
        """The BGP session with `peer_ip` and, once established, the prefixes it sent us."""
        try:
            summary = json.loads(self.command("bgpd", "show bgp ipv4 unicast summary json") or "{}")
            peer = summary.get("peers", {}).get(peer_ip)
            if peer is None:
                return Session("Idle")
            state = str(peer.get("state", "Idle"))
            if state != "Established":
                return self._down_session(peer_ip, state)
            routes = json.loads(self.command("bgpd", f"show bgp ipv4 unicast neighbors {peer_ip} routes json")
                                or "{}")
            return Session(state, tuple(sorted(routes.get("routes", {}))))
        except (OSError, ValueError, AttributeError) as e:
            return Session(f"unknown ({e.__class__.__name__})")
