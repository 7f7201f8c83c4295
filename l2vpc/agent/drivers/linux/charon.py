"""strongSwan's charon as one VPN gateway's IKE daemon: its config, process, vici session,
log, and what this build of it can negotiate.

One `charon-systemd` per gateway namespace, with its own STRONGSWAN_CONF (no /etc file is read
or written) and vici socket; the premises end of the lab runs the same class as a responder.
Level-1 logging never prints keys; the PSK only ever reaches charon over vici, from memory.
IKEv2 has no DPD timeout of its own (a dead peer is one that stops answering retransmits), so
the retransmit schedule is derived from the gateway's `dpd_timeout` (retransmit_schedule).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import vici

from l2vpc.agent.drivers.linux import procs
from l2vpc.pki import write_private

CHARON = "/usr/sbin/charon-systemd"
PLUGIN_DIR = Path("/usr/lib/ipsec/plugins")
# kernel-libipsec must come before kernel-netlink: the first plugin offering an IPsec backend
# wins, and kernel-netlink's (kernel ESP, absent here) fails every SA with EPROTONOSUPPORT.
# openssl and gcm (libstrongswan-standard-plugins) bring AES-GCM, ECP and Curve25519.
PLUGINS = ("random", "nonce", "openssl", "gcm", "aes", "sha1", "sha2", "hmac", "gmp", "kdf", "curve25519",
           "pem", "pkcs1", "pubkey", "x509", "socket-default", "kernel-libipsec", "kernel-netlink", "vici")
UNIX_PATH_MAX = 107
RUNTIME_DIR = Path("/run/l2vpc-vici")
LOG_MAX = 4 << 20  # charon.log is cut back to its last LOG_KEEP bytes beyond this
LOG_KEEP = 64 << 10
RETRANSMIT_TRIES, RETRANSMIT_BASE = 5, 1.8
# IKE and CHILD SA states that carry traffic (a rekeying SA still does).
_IKE_UP = {"ESTABLISHED", "REKEYING", "REKEYED"}
_CHILD_UP = {"INSTALLED", "REKEYING", "REKEYED", "UPDATING"}


# -- proposals ---------------------------------------------------------------------------------

_DH = {"modp2048": "MODP_2048", "modp3072": "MODP_3072", "modp4096": "MODP_4096", "ecp256": "ECP_256",
       "ecp384": "ECP_384", "ecp521": "ECP_521", "curve25519": "CURVE_25519", "curve448": "CURVE_448"}
_TOKENS: dict[str, tuple[str, str]] = {
    "aes128": ("encryption", "AES_CBC"), "aes192": ("encryption", "AES_CBC"), "aes256": ("encryption", "AES_CBC"),
    "aes128gcm16": ("aead", "AES_GCM_16"), "aes256gcm16": ("aead", "AES_GCM_16"),
    "sha1": ("integrity", "HMAC_SHA1_96"), "sha256": ("integrity", "HMAC_SHA2_256_128"),
    "sha384": ("integrity", "HMAC_SHA2_384_192"), "sha512": ("integrity", "HMAC_SHA2_512_256"),
    "prfsha1": ("prf", "PRF_HMAC_SHA1"), "prfsha256": ("prf", "PRF_HMAC_SHA2_256"),
    "prfsha384": ("prf", "PRF_HMAC_SHA2_384"), "prfsha512": ("prf", "PRF_HMAC_SHA2_512"),
    **{k: ("dh", v) for k, v in _DH.items()},
}


def unsupported(proposal: str, algorithms: dict[str, set[str]]) -> list[str]:
    """Tokens of a strongSwan proposal that this charon has no implementation for.

    Unknown tokens are left to charon, whose load-conn error names them.
    """
    out = []
    for token in proposal.split("-"):
        kind_alg = _TOKENS.get(token)
        if kind_alg is not None and kind_alg[1] not in algorithms.get(kind_alg[0], set()):
            out.append(token)
    return out


def supported_subset(tokens: list[str], algorithms: dict[str, set[str]]) -> list[str]:
    return [t for t in tokens if not unsupported(t, algorithms)]


# -- one charon ----------------------------------------------------------------------------------


def retransmit_schedule(dpd_timeout: float) -> tuple[float, int, float]:
    """(timeout, tries, base) so that the first try plus all retransmits span `dpd_timeout`."""
    span = sum(RETRANSMIT_BASE**n for n in range(RETRANSMIT_TRIES + 1))
    return max(0.05, round(dpd_timeout / span, 3)), RETRANSMIT_TRIES, RETRANSMIT_BASE


class Charon:
    """One charon-systemd in a namespace, its files in `state` (created 0700).

    The daemon is started as `charon-systemd --l2vpc-state=<state>`: charon-systemd ignores its
    arguments, and the marker lets `procs` tell our daemon from a recycled pid.
    """

    def __init__(self, state: Path, netns_path: str | None, *, half_open_per_peer: int | None = None) -> None:
        """`half_open_per_peer`: IKE_SA_INITs from one address left unanswered beyond this many
        are dropped without a word (charon's block_threshold, 5 by default)."""
        self.state = state
        self.half_open_per_peer = half_open_per_peer
        self.netns_path = netns_path
        self.conf = state / "strongswan.conf"
        self.log = state / "charon.log"
        self.pidfile = state / "charon.pid"
        self.socket = state / "vici.sock"
        if len(str(self.socket)) > UNIX_PATH_MAX:
            # A deep state dir cannot hold a unix socket: use a private one keyed by the state dir.
            key = hashlib.sha256(str(state).encode()).hexdigest()[:24]
            self.socket = RUNTIME_DIR / key / "vici.sock"
        self.marker = f"--l2vpc-state={state}"

    def render_conf(self, retransmit: tuple[float, int, float] | None = None, threads: int = 16) -> str:
        plugins = " ".join(p for p in PLUGINS if (PLUGIN_DIR / f"libstrongswan-{p}.so").exists())
        lines = [
            "# written by l2vpc; no secrets here (the PSK is loaded over vici)",
            "charon-systemd {",
            "  load_modular = no",
            f"  load = {plugins}",
            # Receiver, sender, TUN reader, netlink and vici listeners each hold a worker for
            # good; with 8 threads none was left to answer vici.
            f"  threads = {threads}",
            "  install_virtual_ip = no",
        ]
        if self.half_open_per_peer is not None:
            lines.append(f"  block_threshold = {self.half_open_per_peer}")
        if retransmit is not None:
            timeout, tries, base = retransmit
            lines += [f"  retransmit_timeout = {timeout}", f"  retransmit_tries = {tries}",
                      f"  retransmit_base = {base}"]
        lines += [
            "  plugins {",
            f"    vici {{ socket = unix://{self.socket} }}",
            # socket-default binds 500 and 4500 to the wildcard address, with no option for one
            # address: the gateway's filter keeps them closed but on the outside. IPv6 is off
            # in the namespace, so no IPv6 sockets either.
            "    socket-default { use_ipv6 = no }",
            "  }",
            # Level 1 at most: higher levels may print key material. No packet-level noise.
            "  filelog {",
            "    l2vpc {",
            f"      path = {self.log}",
            "      time_format = %Y-%m-%dT%H:%M:%S",
            "      append = yes",
            "      flush_line = yes",
            "      default = 1",
            "      enc = 0",
            "      net = 0",
            "      asn = 0",
            "      job = 0",
            "    }",
            "  }",
            "  journal { default = -1 }",
            "  syslog { daemon { default = -1 } auth { default = -1 } }",
            "}",
        ]
        return "\n".join(lines) + "\n"

    def configure(self, retransmit: tuple[float, int, float] | None = None) -> bool:
        """Write strongswan.conf; True if it changed (a running charon then needs `reload`)."""
        self.state.mkdir(parents=True, exist_ok=True)
        self.state.chmod(0o700)
        text = self.render_conf(retransmit)
        with contextlib.suppress(FileNotFoundError):
            if self.conf.read_text() == text:
                return False
        write_private(self.conf, text.encode(), durable=False)
        return True

    def alive(self) -> bool:
        return procs.alive(procs.read_pid(self.pidfile), self.marker)

    def start(self, timeout: float = 3.0) -> None:
        if not self.log.exists():
            os.close(os.open(self.log, os.O_WRONLY | os.O_CREAT, 0o600))
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        if self.socket.parent != self.state:
            RUNTIME_DIR.mkdir(mode=0o700, exist_ok=True)
            self.socket.parent.mkdir(mode=0o700, exist_ok=True)
        env = {"STRONGSWAN_CONF": str(self.conf), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        pid = procs.start(self.netns_path, [CHARON, self.marker], self.pidfile, self.log, env=env)
        self.pidfile.chmod(0o600)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if procs.exited(pid):
                raise OSError(errno.ESRCH, f"charon exited at start: {self.log_tail() or 'no output'}")
            if self.socket.exists():
                try:
                    with self.session():
                        return
                except OSError:
                    pass
            time.sleep(0.005)
        raise OSError(errno.ETIMEDOUT, f"charon did not open {self.socket} within {timeout} s")

    def stop(self) -> None:
        """SIGTERM: charon sends DELETE for its SAs, so the peer learns at once."""
        procs.stop(self.pidfile, self.marker)
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        if self.socket.parent != self.state:
            with contextlib.suppress(OSError):
                self.socket.parent.rmdir()
                RUNTIME_DIR.rmdir()  # only once empty: other charons may still use it

    @contextlib.contextmanager
    def session(self, timeout: float = 5.0) -> Iterator[Any]:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(str(self.socket))
            yield vici.Session(sock)
        finally:
            sock.close()

    def algorithms(self, session: Any) -> dict[str, set[str]]:
        return {_s(k): {_s(a) for a in v} for k, v in session.get_algorithms().items()}

    def log_size(self) -> int:
        try:
            return self.log.stat().st_size
        except FileNotFoundError:
            return 0

    def read_log(self, since: int, limit: int = 256 << 10) -> list[str]:
        """Lines written at or after byte `since` (at most the last `limit` bytes of them)."""
        try:
            with open(self.log, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                start = since if since <= size else 0  # cut back since: read it all
                start = max(start, size - limit)
                f.seek(start)
                data = f.read()
        except FileNotFoundError:
            return []
        lines = data.decode(errors="replace").splitlines()
        return lines[1:] if start > since and lines else lines  # first line may be partial

    def trim_log(self) -> bool:
        """Cut the log back to its tail once it is big. charon appends (O_APPEND), so its next
        line lands after what we keep. True if it was cut."""
        if self.log_size() <= LOG_MAX:
            return False
        with open(self.log, "r+b") as f:
            f.seek(-LOG_KEEP, os.SEEK_END)
            tail = f.read()
            f.seek(0)
            f.truncate()
            f.write(tail)
        return True

    def log_tail(self, lines: int = 3) -> str:
        return " | ".join(self.read_log(max(0, self.log_size() - 4096))[-lines:])


def sa_summary(session: Any, name: str) -> tuple[str, str]:
    """(state, detail) of the SAs of connection `name`; state is `up` (IKE and CHILD SA),
    `ike` (IKE SA only), `connecting` (IKE SA negotiating) or `none`."""
    best, detail = "none", ""
    for entry in session.list_sas({"ike": name}):
        for ike in entry.values():
            state = _s(ike.get("state"))
            children = [c for c in (ike.get("child-sas") or {}).values() if _s(c.get("state")) in _CHILD_UP]
            if state in _IKE_UP and children:
                c = children[0]
                cipher = "_".join(x for x in (_s(c.get("encr-alg")), _s(c.get("encr-keysize"))) if x)
                algs = "/".join(x for x in (cipher, _s(c.get("integ-alg"))) if x)
                ts = f"{','.join(_s(t) for t in c.get('local-ts', []))} === " \
                     f"{','.join(_s(t) for t in c.get('remote-ts', []))}"
                return "up", f"IKE_SA established with {_s(ike.get('remote-host'))}, CHILD_SA {ts} ({algs})"
            if state in _IKE_UP:
                best, detail = "ike", "IKE_SA established, CHILD_SA not (yet) installed"
            elif best == "none":
                best, detail = "connecting", f"IKE_SA {state.lower()}"
    return best, detail


def _s(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return "" if value is None else str(value)
