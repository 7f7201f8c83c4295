"""Site-to-site IKEv2 VPN gateways: one network namespace and one strongSwan charon per VPN.

What one VPN gateway is on an edge host (`short` = the last 12 characters of the VPN id):

- namespace `<prefix>l2v-<short>`, IPv6 off, ip_forward on, holding
  - `vpc0`: veth peer of host device `l2v<short>` on the VPC bridge; holds `gateway_ip`, the
    next hop of workloads towards `remote_cidrs`;
  - `ext0`: a macvlan (bridge mode) on the host's outside device; holds `outside_ip`, default
    route via `outside_gateway`. A macvlan leaves the outside device as it is (its own address
    keeps working, nothing is enslaved) and disappears with the namespace;
  - `ipsec0`: charon's TUN device. The kernel here has no ESP, so the `kernel-libipsec` plugin
    does ESP in userspace, always encapsulated in UDP 4500; charon routes the remote networks
    into it from table 220;
  - `unreachable` routes for `remote_cidrs` in the main table: while no tunnel (or no charon)
    routes them, traffic for the premises is dropped instead of leaking in clear to the
    outside default route.
- `charon-systemd` inside the namespace with its own STRONGSWAN_CONF (no /etc file is read or
  written), configured over its vici socket: IKEv2, PSK, `start_action = trap|start`,
  `close_action = restart`, `dpd_action = restart`, `keyingtries = 0`, so the tunnel comes up
  by itself and comes back after the peer restarts. IKEv2 has no DPD timeout of its own (a dead
  peer is one that stops answering retransmits), so the retransmit schedule is derived from
  `dpd_timeout`: the last retransmit gives up `dpd_timeout` seconds after the first try.

Files (state dir 0700, every file 0600): `<state>/gw/<short>/` holds `gateway.json` (the
VpnGateway it runs, with its PSK, so `running()` can report it after an agent restart),
`strongswan.conf`, `charon.log`, `charon.pid` and `vici.sock` (under /run/l2vpc-vici/<hash>/
when the state dir is too deep for a unix socket path). The PSK reaches charon only
over vici (`load-shared`, from memory); it is never in strongswan.conf, the log (level 1 never
prints keys) or any other file. `<state>/netns/` records the namespaces this manager created.

`observe()` reads the IKE and CHILD SAs over vici and, for the reason of a failure, charon's log
since the last (re)configuration: authentication failures, proposals or traffic selectors
refused, a peer that does not answer.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import ipaddress
import json
import os
import re
import shutil
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import vici

from l2vpc.agent.drivers.base import DataplaneError
from l2vpc.agent.drivers.linux import netns, procs, rtnl
from l2vpc.agent.drivers.linux.names import OWN_GROUP, RTPROT_L2VPC
from l2vpc.agent.drivers.linux.namespaces import Namespaces
from l2vpc.hostconfig import DEVICE_PREFIX, HostConfig, Observation, VpnGateway
from l2vpc.hostconfig.diff import vpn_path

CHARON = "/usr/sbin/charon-systemd"
PLUGIN_DIR = Path("/usr/lib/ipsec/plugins")
# kernel-libipsec must come before kernel-netlink: the first plugin offering an IPsec backend
# wins, and kernel-netlink's (kernel ESP, absent here) fails every SA with EPROTONOSUPPORT.
# openssl and gcm (libstrongswan-standard-plugins) bring AES-GCM, ECP and Curve25519.
PLUGINS = ("random", "nonce", "openssl", "gcm", "aes", "sha1", "sha2", "hmac", "gmp", "kdf", "curve25519",
           "pem", "pkcs1", "pubkey", "x509", "socket-default", "kernel-libipsec", "kernel-netlink", "vici")
VPC_IFNAME = "vpc0"
OUTSIDE_IFNAME = "ext0"
HOST_DEVICE_RE = re.compile(rf"^{DEVICE_PREFIX}v[A-Za-z0-9_-]+$")
UNIX_PATH_MAX = 107
RUNTIME_DIR = Path("/run/l2vpc-vici")
LOG_MAX = 4 << 20  # charon.log is cut back to its last LOG_KEEP bytes beyond this
LOG_KEEP = 64 << 10
RETRANSMIT_TRIES, RETRANSMIT_BASE = 5, 1.8
# IKE and CHILD SA states that carry traffic (a rekeying SA still does).
_IKE_UP = {"ESTABLISHED", "REKEYING", "REKEYED"}
_CHILD_UP = {"INSTALLED", "REKEYING", "REKEYED", "UPDATING"}


def short_id(vpn_id: str) -> str:
    return vpn_id[-12:]


def host_device_name(vpn_id: str) -> str:
    """The VPN's veth on the VPC bridge, in the host namespace (`l2v` + 12 = IFNAMSIZ - 1)."""
    return f"{DEVICE_PREFIX}v{short_id(vpn_id)}"


def vpn_netns_name(prefix: str, vpn_id: str) -> str:
    return f"{prefix}{DEVICE_PREFIX}v-{short_id(vpn_id)}"


def _mac(vpn_id: str, role: str) -> str:
    """A stable locally administered MAC: a re-created gateway keeps it, so neither workloads
    nor the outside router need to re-learn it."""
    digest = hashlib.sha256(f"{role}\0{vpn_id}".encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in digest[:5])


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


def write_private(path: Path, data: str | bytes) -> None:
    """Write a file 0600 from the start (never briefly world-readable), atomically."""
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    tmp.replace(path)


def retransmit_schedule(dpd_timeout: float) -> tuple[float, int, float]:
    """(timeout, tries, base) so that the first try plus all retransmits span `dpd_timeout`."""
    span = sum(RETRANSMIT_BASE**n for n in range(RETRANSMIT_TRIES + 1))
    return max(0.05, round(dpd_timeout / span, 3)), RETRANSMIT_TRIES, RETRANSMIT_BASE


class Charon:
    """One charon-systemd in a namespace, its files in `state` (created 0700).

    The daemon is started as `charon-systemd --l2vpc-state=<state>`: charon-systemd ignores its
    arguments, and the marker lets `procs` tell our daemon from a recycled pid.
    """

    def __init__(self, state: Path, netns_path: str | None) -> None:
        self.state = state
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
        if retransmit is not None:
            timeout, tries, base = retransmit
            lines += [f"  retransmit_timeout = {timeout}", f"  retransmit_tries = {tries}",
                      f"  retransmit_base = {base}"]
        lines += [
            "  plugins {",
            f"    vici {{ socket = unix://{self.socket} }}",
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
        write_private(self.conf, text)
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


# -- failure reasons from charon's log -----------------------------------------------------------

_RESET = re.compile(r"\[IKE\] (IKE_SA \S+\[\d+\] established|CHILD_SA \S+\{\d+\} established)")
# charon's log line → (reason code of hostconfig.OBSERVATION_REASONS, the words for people)
_FAILURES: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(r"received AUTHENTICATION_FAILED notify"), "auth_failed",
     "authentication failed: the peer rejected our pre-shared key or identity (AUTHENTICATION_FAILED)"),
    (re.compile(r"tried \d+ shared keys? for '([^']*)' - '([^']*)', but MAC mismatched"), "auth_failed",
     "authentication failed: the peer's pre-shared key does not match ours"),
    (re.compile(r"no shared key found for '([^']*)' - '([^']*)'"), "auth_failed",
     "authentication failed: no pre-shared key for {0} - {1}"),
    (re.compile(r"constraint check failed: identity '([^']*)' required"), "auth_failed",
     "authentication failed: the peer did not identify as {0} (peer_id)"),
    (re.compile(r"received NO_PROPOSAL_CHOSEN notify, no CHILD_SA built"), "proposal_rejected",
     "the peer accepts none of our ESP proposal ({esp})"),
    (re.compile(r"received NO_PROPOSAL_CHOSEN notify"), "proposal_rejected",
     "the peer accepts none of our IKE proposal ({ike})"),
    (re.compile(r"received proposals? .* inacceptable|no acceptable proposal found"), "proposal_rejected",
     "no proposal in common with the peer (ours: IKE {ike}, ESP {esp})"),
    (re.compile(r"received TS_UNACCEPTABLE notify"), "selectors_rejected",
     "the peer refused the traffic selectors (local {local} remote {remote})"),
    (re.compile(r"received INVALID_KE_PAYLOAD notify|received (\w+) notify error"), "negotiation_refused",
     "the peer refused the negotiation ({0})"),
    (re.compile(r"giving up after (\d+) retransmits"), "peer_not_responding",
     "the peer {peer} does not answer (no reply after {0} retransmits)"),
    (re.compile(r"establishing IKE_SA failed, peer not responding"), "peer_not_responding",
     "the peer {peer} does not answer"),
    (re.compile(r"unable to install (.*)"), "install_failed", "could not install {0}"),
]


def failure_reason(lines: list[str], fields: dict[str, str]) -> tuple[str, str]:
    """(code, words) of the last failure in these log lines that no later established SA
    cleared; ("", "") if none."""
    reason = ("", "")
    for line in lines:
        if _RESET.search(line):
            reason = ("", "")
            continue
        for pattern, code, text in _FAILURES:
            m = pattern.search(line)
            if m:
                groups = [g or "" for g in m.groups()] or [""]
                reason = (code, text.format(*groups, **fields))
                break
    return reason


# -- the manager ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Record:
    """What gateway.json holds: the gateway as configured, where it sits, and from which byte
    of charon.log on failures count (older ones belong to an earlier configuration)."""

    gw: VpnGateway
    bridge: str
    since: int = 0


def _gw_to_dict(gw: VpnGateway) -> dict[str, Any]:
    return HostConfig(host="", underlay_ip="", vpn_gateways=(gw,)).to_dict(secrets=True)["vpn_gateways"][0]


def _gw_from_dict(data: dict[str, Any]) -> VpnGateway:
    return HostConfig.from_dict({"host": "", "underlay_ip": "", "vpn_gateways": [data]}).vpn_gateways[0]


def _placement(gw: VpnGateway, bridge: str) -> tuple[Any, ...]:
    """What the namespace and its devices are built from; a change rebuilds them."""
    return (gw.vni, bridge, gw.gateway_ip, gw.outside_ip, gw.outside, gw.outside_gateway, gw.mtu)


class VpnManager:
    """The VPN gateways of one host (namespace `host_netns`, None: the current one).

        vpns = VpnManager(host_netns, prefix, state_dir)
        changes = vpns.ensure(gw, bridge_name(gw.vni))  # idempotent; [] when nothing changed
        vpns.observe(gw.id)                             # Observation: up | connecting | down
        vpns.running()                                  # the VpnGateways that run (with PSKs)
        vpns.remove(gw.id); vpns.teardown_all(); vpns.close()

    `ensure` raises DataplaneError (path `vpn_gateways[id=...]`, with the field where one is to
    blame) when the host cannot run the gateway; a failed first build leaves nothing behind.
    Changes of proposals, lifetimes, DPD, peer, traffic selectors or PSK re-key in place (vici
    unload + load, tens of ms); placement changes (VNI/bridge, addresses, outside device,
    outside gateway, MTU) rebuild the namespace. Methods are serialised by a lock.
    """

    def __init__(self, host_netns: str | None, prefix: str, state_dir: str | os.PathLike[str]) -> None:
        if host_netns is not None and not netns.exists(host_netns):
            raise ValueError(f"host_netns: namespace {host_netns!r} does not exist")
        self.host_netns = host_netns
        self.prefix = prefix
        self.state = Path(state_dir)
        self._lock = threading.RLock()
        self._nl: rtnl.Rtnl | None = None
        self._spaces: Namespaces | None = None

    # -- names and plumbing ----------------------------------------------------------------

    def netns_name(self, vpn_id: str) -> str:
        return vpn_netns_name(self.prefix, vpn_id)

    def _dir(self, vpn_id: str) -> Path:
        return self.state / "gw" / short_id(vpn_id)

    def _charon(self, vpn_id: str) -> Charon:
        return Charon(self._dir(vpn_id), netns.path(self.netns_name(vpn_id)))

    def _host(self) -> rtnl.Rtnl:
        if self._nl is None:
            self._nl = rtnl.Rtnl(netns.netlink_socket(self.host_netns))
        return self._nl

    def _ns(self) -> Namespaces:
        if self._spaces is None:
            for d in (self.state, self.state / "gw", self.state / "netns"):
                d.mkdir(mode=0o700, parents=True, exist_ok=True)
                d.chmod(0o700)
            self._spaces = Namespaces(self.state / "netns")
        return self._spaces

    def close(self) -> None:
        """Release sockets; the gateways keep running."""
        with self._lock:
            if self._spaces is not None:
                self._spaces.close()
                self._spaces = None
            if self._nl is not None:
                self._nl.close()
                self._nl = None

    def _record(self, vpn_id: str) -> _Record | None:
        return self._record_at(self._dir(vpn_id))

    def _save(self, rec: _Record) -> None:
        data = {"gateway": _gw_to_dict(rec.gw), "bridge": rec.bridge, "since": rec.since}
        write_private(self._dir(rec.gw.id) / "gateway.json", json.dumps(data, sort_keys=True))

    def configured(self) -> list[str]:
        """Ids of every gateway this manager holds state for, running or not (for garbage
        collection: a broken gateway is not in running() but still has to be removed)."""
        out = []
        with contextlib.suppress(FileNotFoundError):
            for d in sorted((self.state / "gw").iterdir()):
                rec = self._record_at(d)
                if rec is not None:
                    out.append(rec.gw.id)
        return out

    def _record_at(self, d: Path) -> _Record | None:
        try:
            data = json.loads((d / "gateway.json").read_text())
            return _Record(_gw_from_dict(data["gateway"]), str(data["bridge"]), int(data.get("since", 0)))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    # -- ensure ----------------------------------------------------------------------------

    def ensure(self, gw: VpnGateway, bridge: str) -> list[str]:
        """Make the gateway run as `gw` on VPC bridge `bridge`; returns what was changed."""
        with self._lock:
            path = vpn_path(gw.id)
            self._ns()  # the state dirs, 0700
            rec = self._record(gw.id)
            if rec is not None and rec.gw.id != gw.id:
                raise DataplaneError(f"{path}.id", f"{gw.id!r} and {rec.gw.id!r} share their last 12 characters "
                                                   "(the name of their namespace and host device)")
            changes: list[str] = []
            built = False
            try:
                if rec is None or _placement(rec.gw, rec.bridge) != _placement(gw, bridge) \
                        or not self._dataplane_ok(gw, bridge):
                    if rec is not None or netns.exists(self.netns_name(gw.id)):
                        self._remove(gw.id)
                        changes.append(f"remove {self.netns_name(gw.id)} (rebuild)")
                        rec = None
                    built = True
                    self._build(gw, bridge)
                    changes.append(f"create {self.netns_name(gw.id)} ({VPC_IFNAME} {gw.gateway_ip} on {bridge}, "
                                   f"{OUTSIDE_IFNAME} {gw.outside_ip} on {gw.outside})")
                elif rec.gw.remote_cidrs != gw.remote_cidrs:
                    self._set_unreachable(gw, old=rec.gw.remote_cidrs)
                charon = self._charon(gw.id)
                conf_changed = charon.configure(retransmit_schedule(gw.dpd_timeout))
                loaded = rec is not None
                if not charon.alive():
                    charon.start()
                    changes.append("start charon")
                    loaded = False
                elif conf_changed:
                    with charon.session() as s:
                        s.reload_settings()
                    changes.append("reload charon settings (retransmit schedule)")
                loaded = loaded and self._loaded(charon, gw.id)
                if not loaded or rec is None or rec.gw != gw or rec.gw.psk != gw.psk:
                    since = charon.log_size()
                    self._load(charon, gw)
                    changes.append("re-key (IKE config changed)" if loaded else "load IKE config")
                    self._save(_Record(gw, bridge, since))
            except BaseException as e:
                if built:  # a half-built gateway would only confuse the next run
                    with contextlib.suppress(Exception):
                        self._remove(gw.id)
                if isinstance(e, OSError | vici.exception.SessionException):
                    raise DataplaneError(path, f"{e.strerror or e}" if isinstance(e, OSError) else str(e)) from e
                raise
            return changes

    def _dataplane_ok(self, gw: VpnGateway, bridge: str) -> bool:
        ns = self.netns_name(gw.id)
        if not netns.exists(ns):
            return False
        nl = self._host()
        hl, br, out = nl.link(host_device_name(gw.id)), nl.link(bridge), nl.link(gw.outside)
        if hl is None or br is None or out is None or hl.master != br.index or not hl.up:
            return False
        view = self._ns().read(ns, addrs=True, routes=True)
        if view is None:
            return False
        by_name = {lk.name: lk for lk in view.links.values()}
        vpc, ext = by_name.get(VPC_IFNAME), by_name.get(OUTSIDE_IFNAME)
        if vpc is None or ext is None or not (vpc.up and ext.up) or ext.kind != "macvlan" or ext.link != out.index:
            return False
        if vpc.link != hl.index or vpc.mtu != gw.mtu:
            return False

        def has(link: rtnl.Link, cidr: str) -> bool:
            return cidr in {f"{a.address}/{a.prefixlen}" for a in view.addrs.get(link.index, [])}

        if not (has(vpc, gw.gateway_ip) and has(ext, gw.outside_ip)):
            return False
        if gw.outside_gateway:
            routes = view.routes.get(ext.index, [])
            if not any(r.prefix == "0.0.0.0/0" and r.via == gw.outside_gateway for r in routes):
                return False
        return True

    def _build(self, gw: VpnGateway, bridge: str) -> None:
        path = vpn_path(gw.id)
        nl = self._host()
        br = nl.link(bridge)
        if br is None or br.kind != "bridge":
            raise DataplaneError(f"{path}.vni", f"no bridge {bridge} for VNI {gw.vni} on this host")
        out = nl.link(gw.outside)
        if out is None:
            raise DataplaneError(f"{path}.outside", f"outside device {gw.outside!r} not found on this host")
        ns = self.netns_name(gw.id)
        spaces = self._ns()
        nsl = spaces.socket(ns, create=True)
        assert nsl is not None
        # Before any device exists, so none of them ever gets an IPv6 address on the VPC or
        # the outside network.
        sysctl(ns, {"net/ipv6/conf/all/disable_ipv6": "1", "net/ipv6/conf/default/disable_ipv6": "1",
                     "net/ipv4/ip_forward": "1"})
        hname = host_device_name(gw.id)
        _batch(nl, path, [rtnl.del_link(name=hname)], ignore=(errno.ENODEV,))
        fd = os.open(netns.path(ns), os.O_RDONLY)
        try:
            _batch(nl, path, [
                rtnl.new_veth(hname, gw.mtu, br.index, VPC_IFNAME, _mac(gw.id, "vpc"), fd, OWN_GROUP),
                # IPv6 off before up: the host itself has no presence on the VPC.
                rtnl.set_link(name=hname, no_ipv6=True),
                rtnl.set_link(name=hname, up=True),
                _new_macvlan(OUTSIDE_IFNAME, out.index, _mac(gw.id, "outside"), fd),
            ])
        finally:
            os.close(fd)
        vpc, ext = nsl.link(VPC_IFNAME), nsl.link(OUTSIDE_IFNAME)
        if vpc is None or ext is None:
            raise DataplaneError(path, f"{VPC_IFNAME}/{OUTSIDE_IFNAME} did not appear in namespace {ns}")
        gip, gplen = gw.gateway_ip.split("/")
        oip, oplen = gw.outside_ip.split("/")
        reqs = [rtnl.set_link(vpc.index, up=True), rtnl.new_addr(vpc.index, gip, int(gplen)),
                rtnl.set_link(ext.index, up=True), rtnl.new_addr(ext.index, oip, int(oplen))]
        if gw.outside_gateway:
            reqs.append(rtnl.new_route("0.0.0.0/0", gw.outside_gateway, ext.index, RTPROT_L2VPC))
        _batch(nsl, path, reqs)
        self._set_unreachable(gw, old=())

    def _set_unreachable(self, gw: VpnGateway, old: tuple[str, ...]) -> None:
        nsl = self._ns().socket(self.netns_name(gw.id), create=False)
        if nsl is None:
            return
        gone = [c for c in old if c not in gw.remote_cidrs]
        reqs = [_unreachable(c, delete=True) for c in gone] + [_unreachable(c) for c in gw.remote_cidrs]
        _batch(nsl, f"{vpn_path(gw.id)}.remote_cidrs", reqs, ignore=(errno.ESRCH, errno.ENOENT))

    def _loaded(self, charon: Charon, name: str) -> bool:
        with charon.session() as s:
            return any(name in entry for entry in s.list_conns({"ike": name}))

    def _load(self, charon: Charon, gw: VpnGateway) -> None:
        path = vpn_path(gw.id)
        with charon.session() as s:
            algorithms = charon.algorithms(s)
            for field in ("ike_proposal", "esp_proposal"):
                missing = unsupported(getattr(gw, field), algorithms)
                if missing:
                    raise DataplaneError(f"{path}.{field}", f"{', '.join(missing)} not available in this strongSwan "
                                         "(needs the openssl and gcm plugins: libstrongswan-standard-plugins)")
            try:
                # unload terminates the SAs of the old config; load starts the new one at once
                # (start_action start), so a change re-keys within one round trip.
                with contextlib.suppress(vici.exception.CommandException):
                    s.unload_conn({"name": gw.id})
                s.load_shared({"id": gw.id, "type": "IKE", "data": gw.psk,
                               "owners": [gw.peer_id or gw.peer_address]})
                s.load_conn({gw.id: _conn(gw)})
            except vici.exception.CommandException as e:
                # charon's message names the offending setting, never the key.
                raise DataplaneError(path, f"strongSwan refused the configuration: {e}") from None

    # -- remove ----------------------------------------------------------------------------

    def remove(self, vpn_id: str) -> None:
        """Stop the gateway and delete its namespace, host device and files; gone is fine."""
        with self._lock:
            self._remove(vpn_id)

    def _remove(self, vpn_id: str) -> None:
        self._charon(vpn_id).stop()
        self._ns().drop(self.netns_name(vpn_id))
        if self._host().link(host_device_name(vpn_id)) is not None:
            _batch(self._host(), vpn_path(vpn_id), [rtnl.del_link(name=host_device_name(vpn_id))],
                   ignore=(errno.ENODEV,))
        shutil.rmtree(self._dir(vpn_id), ignore_errors=True)

    def teardown_all(self) -> None:
        """Remove every gateway, namespace and file this manager (or an earlier one on the same
        state dir) created, the state dir included."""
        with self._lock:
            with contextlib.suppress(FileNotFoundError):
                for d in sorted((self.state / "gw").iterdir()):
                    Charon(d, None).stop()
                    rec = self._record_at(d)
                    if rec is not None:
                        self._remove(rec.gw.id)
                    shutil.rmtree(d, ignore_errors=True)
            if self.state.exists():
                for name in self._ns().created():
                    self._ns().drop(name)
            self.close()
            shutil.rmtree(self.state, ignore_errors=True)

    # -- facts -----------------------------------------------------------------------------

    def running(self) -> list[VpnGateway]:
        """Gateways whose charon runs on an intact namespace, as configured (PSK included)."""
        with self._lock:
            out = []
            for vpn_id in self.configured():
                rec = self._record(vpn_id)
                if rec is not None and self._charon(vpn_id).alive() and self._dataplane_ok(rec.gw, rec.bridge):
                    out.append(rec.gw)
            return out

    def observations(self) -> list[Observation]:
        with self._lock:
            return [self.observe(vpn_id) for vpn_id in self.configured()]

    def observe(self, vpn_id: str) -> Observation:
        """`up` (IKE and CHILD SA established), `connecting`, or `down` with the reason."""
        with self._lock:
            rec = self._record(vpn_id)
            if rec is None:
                return Observation(vpn_id, "down", "not configured on this host", reason="not_configured")
            charon = self._charon(vpn_id)
            if not charon.alive():
                return Observation(vpn_id, "down", f"IKE daemon not running ({charon.log_tail(1) or 'no log'})",
                                   reason="daemon_down")
            if charon.trim_log():
                rec = replace(rec, since=0)
                self._save(rec)
            try:
                with charon.session() as s:
                    state, detail = sa_summary(s, vpn_id)
            except (OSError, vici.exception.SessionException) as e:
                return Observation(vpn_id, "down", f"IKE daemon not answering: {e}", reason="daemon_down")
            if state == "up":
                return Observation(vpn_id, "up", detail)
            gw = rec.gw
            fields = {"ike": gw.ike_proposal, "esp": gw.esp_proposal, "peer": gw.peer_address,
                      "local": ",".join(gw.local_cidrs), "remote": ",".join(gw.remote_cidrs)}
            code, words = failure_reason(charon.read_log(rec.since), fields)
            if code:
                # A negotiating IKE_SA after a failure is charon trying again (keyingtries 0).
                return Observation(vpn_id, "down", words + ("; retrying" if state == "connecting" else ""),
                                   reason=code)
            if state in ("connecting", "ike"):
                return Observation(vpn_id, "connecting", detail)
            return Observation(vpn_id, "down", "no IKE_SA; traffic to the remote networks starts one", reason="no_sa")


def _conn(gw: VpnGateway) -> dict[str, Any]:
    """The vici connection of a gateway (the initiator)."""
    local = gw.outside_ip.split("/")[0]
    ike_rekey = gw.ike_lifetime * 9 // 10
    esp_rekey = gw.esp_lifetime * 9 // 10
    return {
        "version": "2",
        "local_addrs": [local],
        "remote_addrs": [gw.peer_address],
        # kernel-libipsec can only do ESP in UDP; forcing it also gets through NATs.
        "encap": "yes",
        "mobike": "no",
        "proposals": [gw.ike_proposal],
        "rekey_time": f"{ike_rekey}s",
        "over_time": f"{gw.ike_lifetime - ike_rekey}s",
        "dpd_delay": f"{gw.dpd_interval}s",
        "dpd_timeout": f"{gw.dpd_timeout}s",  # IKEv1 only; IKEv2 uses the retransmit schedule
        "keyingtries": "0",
        "unique": "replace",
        "local": {"auth": "psk", "id": local},
        "remote": {"auth": "psk", "id": gw.peer_id or gw.peer_address},
        "children": {
            gw.id: {
                "mode": "tunnel",
                "local_ts": list(gw.local_cidrs),
                "remote_ts": list(gw.remote_cidrs),
                "esp_proposals": [gw.esp_proposal],
                "rekey_time": f"{esp_rekey}s",
                "life_time": f"{gw.esp_lifetime}s",
                "start_action": "trap|start",
                "dpd_action": "restart",
                "close_action": "restart",
            }
        },
    }


# -- netlink and sysctl bits the shared helpers lack -----------------------------------------------

IFLA_MACVLAN_MODE, MACVLAN_MODE_BRIDGE = 1, 4
RTN_UNREACHABLE = 7
RTA_PRIORITY = 6
UNREACHABLE_METRIC = 4242  # only matters against other main-table routes for the same prefix
_RTMSG = struct.Struct("=BBBBBBBBI")


def _new_macvlan(name: str, parent: int, mac: str, ns_fd: int) -> rtnl.Request:
    """A bridge-mode macvlan on `parent`, born in namespace `ns_fd` (created down)."""
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, 0, 0, 0)
    body += rtnl.attr_str(rtnl.IFLA_IFNAME, name) + rtnl.attr_u32(rtnl.IFLA_LINK, parent)
    body += rtnl.attr(rtnl.IFLA_ADDRESS, bytes.fromhex(mac.replace(":", "")))
    body += rtnl.attr_u32(rtnl.IFLA_NET_NS_FD, ns_fd)
    body += rtnl.attr_nested(
        rtnl.IFLA_LINKINFO,
        rtnl.attr_str(rtnl.IFLA_INFO_KIND, "macvlan"),
        rtnl.attr_nested(rtnl.IFLA_INFO_DATA, rtnl.attr_u32(IFLA_MACVLAN_MODE, MACVLAN_MODE_BRIDGE)),
    )
    return rtnl.RTM_NEWLINK, rtnl.F_CREATE | rtnl.F_EXCL, body


def _unreachable(cidr: str, delete: bool = False) -> rtnl.Request:
    net = ipaddress.IPv4Network(cidr)
    body = _RTMSG.pack(socket.AF_INET, net.prefixlen, 0, 0, rtnl.RT_TABLE_MAIN, RTPROT_L2VPC,
                       rtnl.RT_SCOPE_UNIVERSE, RTN_UNREACHABLE, 0)
    if net.prefixlen:
        body += rtnl.attr(rtnl.RTA_DST, net.network_address.packed)
    body += rtnl.attr_u32(RTA_PRIORITY, UNREACHABLE_METRIC)
    if delete:
        return rtnl.RTM_DELROUTE, 0, body
    return rtnl.RTM_NEWROUTE, rtnl.F_CREATE | rtnl.F_REPLACE, body


def _batch(nl: rtnl.Rtnl, path: str, requests: list[rtnl.Request], ignore: tuple[int, ...] = ()) -> None:
    for err in nl.batch(requests):
        if err is not None and err.errno not in ignore:
            raise DataplaneError(path, f"netlink: {err.strerror}")


def sysctl(ns: str, values: dict[str, str]) -> None:
    """Write /proc/sys/<key> inside namespace `ns`: /proc/sys/net follows the calling thread's
    network namespace, so a setns of this thread is enough (no nsenter + sysctl fork)."""
    fd = os.open(netns.path(ns), os.O_RDONLY)
    try:
        with netns._entered(fd):
            for key, value in values.items():
                with open(f"/proc/sys/{key}", "w") as f:
                    f.write(value)
    finally:
        os.close(fd)
