"""The premises end of a site-to-site VPN: the customer's IKEv2 gateway, as a responder.

    premises_vpn.setup(netns, outside_ip="203.0.113.10/24", lan_cidr="192.168.50.0/24",
                       psk="...", state_dir=lab_dir / "premises-vpn")
    premises_vpn.status(state_dir)                 # [("ESTABLISHED", ["INSTALLED"]), ...]
    premises_vpn.restart(state_dir)                # as `systemctl restart strongswan`
    premises_vpn.restart(state_dir, crash=True)    # killed: no DELETE reaches the cloud side
    premises_vpn.teardown(state_dir)               # charon stopped, state dir removed

The namespace is the lab's (the premises router): it must already hold `outside_ip` and an
address inside `lan_cidr` (charon routes the cloud's networks into its TUN device from there).
setup turns ip_forward on there and runs charon-systemd with kernel-libipsec, as the cloud
side does (`l2vpc.agent.drivers.linux.charon.Charon`), accepting:

- any peer that authenticates with the PSK (remote id %any), one IKE_SA per peer id;
- every proposal the engine can produce (AES-CBC/GCM, SHA-2, MODP/ECP/Curve25519), unless
  the caller narrows them (a test of a proposal mismatch);
- any traffic selector the initiator proposes for its side (remote_ts 0.0.0.0/0, narrowed to
  what it asks for) against `lan_cidr` on ours.

The PSK is kept for `restart` in a 0600 file of the state dir (0700) and reaches charon over
vici only.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from l2vpc.agent.drivers.linux import netns, procs, rtnl
from l2vpc.agent.drivers.linux.charon import Charon, supported_subset
from l2vpc.pki import write_private

CONN = "premises"
_ENC = ["aes128", "aes256"]
_AEAD = ["aes128gcm16", "aes256gcm16"]
_INTEG = ["sha256", "sha384", "sha512"]
_DH = ["modp2048", "modp3072", "modp4096", "ecp256", "ecp384", "curve25519"]


@dataclass(frozen=True, slots=True)
class PremisesVpn:
    netns: str
    outside_ip: str  # CIDR form
    lan_cidr: str
    psk: str
    ike_proposals: tuple[str, ...] = ()  # () = everything the engine can produce
    esp_proposals: tuple[str, ...] = ()


def setup(
    netns: str,  # shadows the module inside this function only, which does not need it
    outside_ip: str = "203.0.113.10/24",
    lan_cidr: str = "192.168.50.0/24",
    *,
    psk: str,
    state_dir: str | os.PathLike[str],
    ike_proposals: tuple[str, ...] = (),
    esp_proposals: tuple[str, ...] = (),
) -> PremisesVpn:
    """Start the premises gateway in namespace `netns`; raises ValueError naming a bad argument.

    On any failure nothing is left running and the state dir is removed.
    """
    cfg = PremisesVpn(netns, outside_ip, lan_cidr, psk, tuple(ike_proposals), tuple(esp_proposals))
    _check(cfg)
    state = Path(state_dir)
    try:
        state.mkdir(parents=True, exist_ok=True)
        state.chmod(0o700)
        write_private(state / "premises.json", json.dumps(asdict(cfg), sort_keys=True).encode(), durable=False)
        _start(cfg, state)
    except BaseException:
        teardown(state)
        raise
    return cfg


def _check(cfg: PremisesVpn) -> None:
    if not netns.exists(cfg.netns):
        raise ValueError(f"netns: namespace {cfg.netns!r} does not exist")
    try:
        outside = ipaddress.IPv4Interface(cfg.outside_ip)
    except ValueError:
        raise ValueError(f"outside_ip: {cfg.outside_ip!r} is not an address in CIDR form") from None
    try:
        lan = ipaddress.IPv4Network(cfg.lan_cidr)
    except ValueError:
        raise ValueError(f"lan_cidr: {cfg.lan_cidr!r} is not an IPv4 network") from None
    if not cfg.psk:
        raise ValueError("psk: a pre-shared key is required")
    nl = rtnl.Rtnl(netns.netlink_socket(cfg.netns))
    try:
        have = [ipaddress.IPv4Interface(f"{a.address}/{a.prefixlen}") for a in nl.addrs()]
    finally:
        nl.close()
    if outside not in have:
        raise ValueError(f"outside_ip: {cfg.outside_ip} is not configured in namespace {cfg.netns}")
    if not any(a.ip in lan for a in have):
        raise ValueError(f"lan_cidr: namespace {cfg.netns} has no address inside {cfg.lan_cidr}")


def _charon(cfg: PremisesVpn, state: Path) -> Charon:
    # A gateway re-created (or failed over) several times within a half-open SA's 30 s leaves
    # as many IKE_SA_INITs unanswered; from the sixth on, charon's default drops the gateway's
    # tries silently until they expire. A lab premises sees that far more often than a real one.
    return Charon(state / "charon", netns.path(cfg.netns), half_open_per_peer=100)


def _start(cfg: PremisesVpn, state: Path) -> None:
    netns.sysctl(cfg.netns, {"net/ipv4/ip_forward": "1"})
    charon = _charon(cfg, state)
    charon.stop()  # a gateway left by an earlier setup on this state dir: one charon only
    charon.configure()
    charon.start()
    local = str(ipaddress.IPv4Interface(cfg.outside_ip).ip)
    with charon.session() as s:
        algorithms = charon.algorithms(s)
        ike = list(cfg.ike_proposals) or supported_subset(
            ["-".join([*_ENC, *_INTEG, *_DH]), "-".join([*_AEAD, *("prf" + i for i in _INTEG), *_DH])], algorithms)
        esp = list(cfg.esp_proposals) or supported_subset(
            ["-".join([*_ENC, *_INTEG, *_DH]), "-".join([*_AEAD, *_DH]), "-".join([*_ENC, *_INTEG]),
             "-".join(_AEAD)], algorithms)
        s.load_shared({"id": CONN, "type": "IKE", "data": cfg.psk, "owners": []})
        s.load_conn({CONN: {
            "version": "2",
            "local_addrs": [local],
            "remote_addrs": ["%any"],
            "encap": "yes",
            "mobike": "no",
            "unique": "replace",
            "proposals": ike,
            "local": {"auth": "psk", "id": local},
            "remote": {"auth": "psk", "id": "%any"},
            "children": {"lan": {
                "mode": "tunnel",
                "local_ts": [cfg.lan_cidr],
                "remote_ts": ["0.0.0.0/0"],
                "esp_proposals": esp,
                "dpd_action": "clear",
            }},
        }})


def _load(state: Path) -> PremisesVpn:
    d = json.loads((state / "premises.json").read_text())
    return PremisesVpn(str(d["netns"]), str(d["outside_ip"]), str(d["lan_cidr"]), str(d["psk"]),
                       tuple(d.get("ike_proposals", ())), tuple(d.get("esp_proposals", ())))


def restart(state_dir: str | os.PathLike[str], crash: bool = False) -> None:
    """Restart the gateway: SIGTERM (charon says goodbye to its peers with DELETE) or, with
    `crash`, SIGKILL (peers find out by dead peer detection). SAs are lost either way."""
    state = Path(state_dir)
    cfg = _load(state)
    charon = _charon(cfg, state)
    if crash:
        pid = procs.read_pid(charon.pidfile)
        if procs.signal_if_ours(pid, charon.marker, signal.SIGKILL):
            assert pid is not None
            deadline = time.monotonic() + 5
            while not procs.exited(pid) and time.monotonic() < deadline:
                time.sleep(0.005)
    charon.stop()
    _start(cfg, state)


def status(state_dir: str | os.PathLike[str]) -> list[tuple[str, list[str]]]:
    """(IKE SA state, [CHILD SA states]) of every SA the gateway holds."""
    state = Path(state_dir)
    charon = _charon(_load(state), state)
    out = []
    with charon.session() as s:
        for entry in s.list_sas({"ike": CONN}):
            for ike in entry.values():
                children = [bytes(c["state"]).decode() for c in (ike.get("child-sas") or {}).values()]
                out.append((bytes(ike["state"]).decode(), children))
    return out


def teardown(state_dir: str | os.PathLike[str]) -> None:
    """Stop the gateway and remove its state dir; gone already is fine. The namespace is the
    lab's and stays."""
    state = Path(state_dir)
    with contextlib.suppress(FileNotFoundError, ValueError):
        Charon(state / "charon", None).stop()
    shutil.rmtree(state, ignore_errors=True)
