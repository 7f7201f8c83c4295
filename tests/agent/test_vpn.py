"""Site-to-site VPN gateways with real charon daemons, in namespaces this test names itself.

Topology (prefix `l2vt<pid><hex>-`, removed afterwards, also on failure):

    <p>w1    eth0 10.0.0.10/24, route 192.168.50.0/24 via 10.0.0.1 (the gateway_ip)
      |
    <p>edge  bridge l2b100 (the VPC)   out0 (the outside device) -----.
               \\__ VpnManager: <p>l2v-<id> with vpc0 10.0.0.1/24 and  |
                   ext0 203.0.113.33/24 (macvlan on out0)             |
    <p>prem  wan0 203.0.113.10/24 (+ .1, the outside gateway) --------'
             lan0 192.168.50.1/24 ----- <p>lan eth0 192.168.50.10/24
             premises_vpn: charon as responder
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from l2vpc.agent.drivers.base import DataplaneError
from l2vpc.agent.drivers.linux import netns as nsmod
from l2vpc.agent.drivers.linux import procs
from l2vpc.agent.drivers.linux.charon import Charon
from l2vpc.agent.drivers.linux.vpn import VpnManager
from l2vpc.hostconfig import VpnGateway, bridge_name
from l2vpc.hostconfig.names import vpn_device_name
from l2vpc.lab import premises_vpn
from l2vpc.testing.gateway_probes import Probe, UdpCatcher, answers, mac_of, send_forged_udp

pytestmark = pytest.mark.root

VNI = 100
PSK = "Premises.Key_" + secrets.token_hex(8)
LAN_HOST = "192.168.50.10"


def sh(*args: str, check: bool = True, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=timeout)


@dataclass
class Site:
    prefix: str
    tmp: Path
    edge: str
    work: str
    prem: str
    lan: str
    vpns: VpnManager
    prem_state: Path

    def gateway(self, **changes: object) -> VpnGateway:
        gw = VpnGateway(
            id="vpn-0123456789ab", vni=VNI, gateway_ip="10.0.0.1/24", outside_ip="203.0.113.33/24",
            outside="out0", peer_address="203.0.113.10", local_cidrs=("10.0.0.0/24",),
            remote_cidrs=("192.168.50.0/24",), ike_proposal="aes256-sha256-modp2048",
            esp_proposal="aes256-sha256-modp2048", dpd_interval=10, dpd_timeout=30,
            outside_gateway="203.0.113.1", psk=PSK, secret_digest="d1",
        )
        return dataclasses.replace(gw, **changes)  # type: ignore[arg-type]

    def ping(self, count: int = 2, target: str = LAN_HOST) -> bool:
        r = sh("ip", "netns", "exec", self.work, "ping", "-c", str(count), "-i", "0.2", "-W", "1", target,
               check=False)
        return r.returncode == 0

    def wait_state(self, vpn_id: str, want: str, timeout: float = 3.0) -> tuple[float, str]:
        t0 = time.monotonic()
        obs = self.vpns.observe(vpn_id)
        while obs.state != want and time.monotonic() - t0 < timeout:
            time.sleep(0.01)
            obs = self.vpns.observe(vpn_id)
        assert obs.state == want, f"{vpn_id} is {obs.state}, not {want}, after {timeout} s: {obs.detail}"
        return time.monotonic() - t0, obs.detail


def _ns(name: str) -> None:
    nsmod.create(name)
    sh("ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
       "net.ipv6.conf.default.disable_ipv6=1")
    sh("ip", "-n", name, "link", "set", "lo", "up")


def _veth(ns_a: str, a: str, ns_b: str, b: str) -> None:
    sh("ip", "-n", ns_a, "link", "add", a, "type", "veth", "peer", "name", b, "netns", ns_b)
    sh("ip", "-n", ns_a, "link", "set", a, "up")
    sh("ip", "-n", ns_b, "link", "set", b, "up")


@pytest.fixture
def site() -> Iterator[Site]:
    prefix = f"l2vt{os.getpid() % 10000}{secrets.token_hex(2)}-"
    # Short: the vici socket path must fit in 107 bytes.
    tmp = Path(tempfile.mkdtemp(prefix="l2vpn-", dir="/tmp"))
    names = [prefix + n for n in ("edge", "w1", "prem", "lan")]
    edge, work, prem, lan = names
    vpns: VpnManager | None = None
    try:
        for n in names:
            _ns(n)
        br = bridge_name(VNI)
        sh("ip", "-n", edge, "link", "add", br, "type", "bridge")
        sh("ip", "-n", edge, "link", "set", br, "up")
        _veth(edge, "w1p", work, "eth0")
        sh("ip", "-n", edge, "link", "set", "w1p", "master", br)
        sh("ip", "-n", work, "addr", "add", "10.0.0.10/24", "dev", "eth0")
        sh("ip", "-n", work, "route", "add", "192.168.50.0/24", "via", "10.0.0.1")
        _veth(edge, "out0", prem, "wan0")
        sh("ip", "-n", prem, "addr", "add", "203.0.113.10/24", "dev", "wan0")
        sh("ip", "-n", prem, "addr", "add", "203.0.113.1/24", "dev", "wan0")
        _veth(prem, "lan0", lan, "eth0")
        sh("ip", "-n", prem, "addr", "add", "192.168.50.1/24", "dev", "lan0")
        sh("ip", "-n", lan, "addr", "add", f"{LAN_HOST}/24", "dev", "eth0")
        sh("ip", "-n", lan, "route", "add", "default", "via", "192.168.50.1")
        prem_state = tmp / "prem"
        premises_vpn.setup(prem, psk=PSK, state_dir=prem_state)
        vpns = VpnManager(edge, prefix, tmp / "vpn")
        yield Site(prefix, tmp, edge, work, prem, lan, vpns, prem_state)
    finally:
        if vpns is not None:
            vpns.teardown_all()
        premises_vpn.teardown(tmp / "prem")
        for n in names:
            nsmod.remove(n)
        shutil.rmtree(tmp, ignore_errors=True)
        left = [n for n in nsmod.list_names() if n.startswith(prefix)]
        assert not left, f"namespaces left behind: {left}"
        assert not _charons(tmp), "charon processes left behind"


def _charons(tmp: Path) -> list[int]:
    """charon-systemd processes started with a state dir under tmp (our marker)."""
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            with contextlib.suppress(OSError):
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                if f"--l2vpc-state={tmp}".encode() in cmd:
                    out.append(int(pid))
    return out


def _capture(ns: str, dev: str, out: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(["ip", "netns", "exec", ns, "tcpdump", "-Z", "root", "--immediate-mode", "-i", dev, "-nn", "-U", "-w", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()  # "listening on ...": the capture is armed
    assert "listening" in line, line
    return proc


def test_tunnel_up_fast_ping_through_esp_only(site: Site) -> None:
    gw = site.gateway()
    t0 = time.monotonic()
    changes = site.vpns.ensure(gw, bridge_name(VNI))
    _, detail = site.wait_state(gw.id, "up")
    assert time.monotonic() - t0 < 3.0
    assert "10.0.0.0/24 === 192.168.50.0/24" in detail
    assert any(c.startswith("create ") for c in changes) and "load IKE config" in changes

    pcap = site.tmp / "out0.pcap"
    cap = _capture(site.edge, "out0", pcap)
    try:
        assert site.ping(3), "workload cannot reach the premises LAN through the tunnel"
    finally:
        cap.terminate()
        cap.wait(5)
    assert cap.stderr is not None
    err = cap.stderr.read()
    lines = sh("tcpdump", "-nn", "-r", str(pcap)).stdout.splitlines()
    assert lines, err
    ip_lines = [x for x in lines if " IP " in x]
    assert sum("UDP-encap" in x and "ESP" in x for x in ip_lines) >= 6, lines  # 3 requests, 3 replies
    assert not [x for x in lines if "ICMP" in x], "plain ICMP on the outside link"
    assert all(".4500 " in x or ".4500:" in x or ".500 " in x or ".500:" in x for x in ip_lines), ip_lines

    # Idempotent, and what runs is what was asked (secret included).
    assert site.vpns.ensure(gw, bridge_name(VNI)) == []
    assert site.vpns.running() == [gw]
    assert site.vpns.running()[0].psk == PSK
    # A new manager on the same state dir (agent restart) adopts the running gateway.
    again = VpnManager(site.edge, site.prefix, site.tmp / "vpn")
    try:
        assert again.running() == [gw] and again.observe(gw.id).state == "up"
        assert again.ensure(gw, bridge_name(VNI)) == []
    finally:
        again.close()


def _holes(site: Site, ns: str) -> list[str]:
    """Every way past the gateway `ns` other than the tunnel, and every answer it gives the VPC
    (issue 15): [] when there is none."""
    holes: set[str] = set()
    # Forged sources from the outside, the premises' above all, straight to a workload.
    with UdpCatcher(site.work, 40001) as catch:
        for source in (LAN_HOST, "203.0.113.77", "10.0.0.99"):
            send_forged_udp(site.prem, "wan0", mac_of(ns, "ext0"), source, "10.0.0.10", 40001)
        holes |= {f"outside -> workload in clear from forged {src}" for _, src in catch.received()}
    # A workload routed to the outside through the gateway: nothing may leave in clear.
    with UdpCatcher(site.prem, 40002) as catch, nsmod.socket_in(site.work, socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(3):
            s.sendto(b"cleartext", ("203.0.113.10", 40002))
        holes |= {f"workload -> outside in clear from {src}" for _, src in catch.received()}
    # charon's ports and TCP, on the VPC address and on the outside one, from the VPC; outside,
    # only the peer may talk to charon.
    probes = [Probe(site.work, proto, address, port) for address in ("10.0.0.1", "203.0.113.33")
              for proto, port in (("ike", 500), ("ike", 4500), ("tcp", 179))]
    probes.append(Probe(site.prem, "ike", "203.0.113.33", 500, source="203.0.113.1"))
    holes |= {f"{probe} answered: {answer}" for probe, answer in answers(probes).items()}
    return sorted(holes)


def test_gateway_forwards_only_through_the_tunnel_and_answers_only_the_peer(site: Site) -> None:
    gw = site.gateway()
    site.vpns.ensure(gw, bridge_name(VNI))
    site.wait_state(gw.id, "up")
    ns = site.vpns.netns_name(gw.id)
    sh("ip", "-n", site.work, "route", "add", "203.0.113.0/24", "via", "10.0.0.1")
    holes = _holes(site, ns)
    assert holes == [], "\n".join(holes)
    with nsmod.inside(ns), open("/proc/sys/net/ipv4/conf/all/rp_filter") as f:
        assert f.read().strip() == "1"  # strict reverse-path filtering
    sockets = sh("ip", "netns", "exec", ns, "ss", "-Hlun").stdout
    assert ":500 " in sockets and ":4500 " in sockets and "[::]" not in sockets, sockets
    # The tunnel carries traffic both ways with the filter in place.
    assert site.ping(2)
    assert sh("ip", "netns", "exec", site.lan, "ping", "-c1", "-W2", "10.0.0.10", check=False).returncode == 0

    # Rules lost or reverse-path filtering loosened: not running as asked; ensure() repairs it
    # in place (the tunnel stays up).
    sh("ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "l2vpc")
    assert site.vpns.running() == []
    assert site.vpns.ensure(gw, bridge_name(VNI)) == [f"filter {ns}"]
    nsmod.sysctl(ns, {"net/ipv4/conf/all/rp_filter": "0"})
    assert site.vpns.running() == []
    assert site.vpns.ensure(gw, bridge_name(VNI)) == [f"filter {ns}"]
    assert site.vpns.running() == [gw] and site.vpns.observe(gw.id).state == "up"
    assert _holes(site, ns) == []
    assert site.ping(2)

    # Another peer: the rules follow in place, and the old peer is a stranger now.
    moved = site.gateway(peer_address="203.0.113.1")
    assert site.vpns.ensure(moved, bridge_name(VNI)) == [f"filter {ns}", "re-key (IKE config changed)"]
    got = answers([Probe(site.prem, "ike", "203.0.113.33", 500, source=a) for a in ("203.0.113.10", "203.0.113.1")])
    assert [p.source for p in got] == ["203.0.113.1"], got
    assert site.vpns.running() == [moved]


def test_wrong_psk_is_down_with_reason_then_fixed_in_place(site: Site) -> None:
    gw = site.gateway(psk="not.the.right.key", secret_digest="d0")
    site.vpns.ensure(gw, bridge_name(VNI))
    _, detail = site.wait_state(gw.id, "down")
    t0 = time.monotonic()
    while "authentication failed" not in detail and time.monotonic() - t0 < 3:
        time.sleep(0.02)
        detail = site.vpns.observe(gw.id).detail
    assert "authentication failed" in detail and "AUTHENTICATION_FAILED" in detail, detail
    assert not site.ping(1)
    ino = os.stat(nsmod.path(site.vpns.netns_name(gw.id))).st_ino

    fixed = site.gateway()
    assert site.vpns.ensure(fixed, bridge_name(VNI)) == ["re-key (IKE config changed)"]
    site.wait_state(gw.id, "up")
    assert os.stat(nsmod.path(site.vpns.netns_name(gw.id))).st_ino == ino
    assert site.ping(2)


def test_premises_restart_and_crash_recover_by_themselves(site: Site) -> None:
    # DPD every 2 s, a peer that stops answering is dead 3 s later (the retransmit schedule).
    gw = site.gateway(dpd_interval=2, dpd_timeout=3)
    site.vpns.ensure(gw, bridge_name(VNI))
    site.wait_state(gw.id, "up")
    assert site.ping(1)

    premises_vpn.restart(site.prem_state)  # graceful: charon sends DELETE, we re-initiate
    site.wait_state(gw.id, "up", timeout=5)
    assert site.ping(2)
    assert premises_vpn.status(site.prem_state)[0][0] == "ESTABLISHED"

    premises_vpn.restart(site.prem_state, crash=True)  # no DELETE: only DPD can tell
    t0 = time.monotonic()
    while site.vpns.observe(gw.id).state == "up" and time.monotonic() - t0 < 8:
        if site.ping(1):  # traffic flows again: a new SA already replaced the dead one
            break
        time.sleep(0.1)
    site.wait_state(gw.id, "up", timeout=10)
    assert site.ping(2), "tunnel did not come back after the premises gateway crashed"


def test_changes_rekey_in_place(site: Site) -> None:
    gw = site.gateway()
    site.vpns.ensure(gw, bridge_name(VNI))
    site.wait_state(gw.id, "up")
    ns_ino = os.stat(nsmod.path(site.vpns.netns_name(gw.id))).st_ino
    charon = Charon(site.tmp / "vpn" / "gw" / gw.id[-12:], None)
    pid = procs.read_pid(charon.pidfile)

    narrower = dataclasses.replace(gw, remote_cidrs=("192.168.50.0/25", "192.168.60.0/24"),
                                   ike_proposal="aes128gcm16-prfsha384-ecp256", esp_proposal="aes128gcm16-ecp256")
    assert site.vpns.ensure(narrower, bridge_name(VNI)) == ["re-key (IKE config changed)"]
    _, detail = site.wait_state(gw.id, "up")
    assert "192.168.50.0/25" in detail and "AES_GCM_16" in detail, detail
    assert os.stat(nsmod.path(site.vpns.netns_name(gw.id))).st_ino == ns_ino
    assert procs.read_pid(charon.pidfile) == pid
    # The new CHILD_SA's userspace ESP may need a moment after "up" on a loaded machine.
    assert any(site.ping(2) for _ in range(4))
    # The dropped route is gone, the new ones are guarded: nothing for 192.168.60/24 leaks.
    routes = sh("ip", "-n", site.vpns.netns_name(gw.id), "route", "show").stdout
    assert "unreachable 192.168.50.0/25" in routes and "unreachable 192.168.60.0/24" in routes
    assert "192.168.50.0/24" not in routes
    r = sh("ip", "netns", "exec", site.work, "ping", "-c1", "-W1", "192.168.50.200", check=False)
    assert r.returncode != 0  # outside the narrowed selector: not routed anywhere

    slower = dataclasses.replace(narrower, dpd_timeout=60)
    assert site.vpns.ensure(slower, bridge_name(VNI)) == [
        "reload charon settings (retransmit schedule)", "re-key (IKE config changed)"]
    site.wait_state(gw.id, "up")


def test_psk_only_in_private_files_never_in_logs(site: Site) -> None:
    gw = site.gateway()
    site.vpns.ensure(gw, bridge_name(VNI))
    site.wait_state(gw.id, "up")
    site.vpns.ensure(site.gateway(psk="wrong.key.here", secret_digest="d2"), bridge_name(VNI))
    site.wait_state(gw.id, "down")
    holders = []
    for root in (site.tmp / "vpn", site.prem_state):
        assert stat.S_IMODE(root.stat().st_mode) == 0o700
        for p in root.rglob("*"):
            mode = stat.S_IMODE(p.stat().st_mode)
            if p.is_dir():
                assert mode == 0o700, p
            elif p.is_file():
                data = p.read_bytes()
                # Namespace markers (empty, named after the namespace) come from Namespaces.
                if p.parent.name != "netns" or data:
                    assert mode == 0o600, f"{p} is {oct(mode)}"
                if PSK.encode() in data or b"wrong.key.here" in data:
                    holders.append(p.name)
    assert sorted(holders) == ["gateway.json", "premises.json"]
    logs = list((site.tmp / "vpn").rglob("charon.log")) + list(site.prem_state.rglob("charon.log"))
    assert len(logs) == 2 and all(log.stat().st_size > 0 for log in logs)


def test_failures_leave_nothing_behind(site: Site) -> None:
    gw = site.gateway(outside="nosuchdev0")
    with pytest.raises(DataplaneError) as e:
        site.vpns.ensure(gw, bridge_name(VNI))
    assert e.value.path == f"vpn_gateways[id={gw.id}].outside" and "nosuchdev0" in e.value.reason
    bad = site.gateway(ike_proposal="aes256-sha256-nosuchgroup")  # charon itself refuses this
    with pytest.raises(DataplaneError) as e:
        site.vpns.ensure(bad, bridge_name(VNI))
    assert "strongSwan refused" in e.value.reason and "proposal" in e.value.reason
    with pytest.raises(DataplaneError) as e:
        site.vpns.ensure(site.gateway(), "l2b999")
    assert e.value.path.endswith(".vni") and "l2b999" in e.value.reason
    assert not [n for n in nsmod.list_names() if n.startswith(site.prefix + "l2v")]
    assert not _charons(site.tmp / "vpn")
    assert not list((site.tmp / "vpn").rglob("gateway.json"))
    assert vpn_device_name(gw.id) not in sh("ip", "-n", site.edge, "link").stdout


def test_repairs_and_teardown(site: Site) -> None:
    gw = site.gateway()
    site.vpns.ensure(gw, bridge_name(VNI))
    site.wait_state(gw.id, "up")
    charon = Charon(site.tmp / "vpn" / "gw" / gw.id[-12:], None)
    charon.stop()  # the daemon dies: reported, then restarted by the next ensure
    assert site.vpns.running() == []
    assert site.vpns.observe(gw.id).state == "down"
    assert site.vpns.ensure(gw, bridge_name(VNI)) == ["start charon", "load IKE config"]
    site.wait_state(gw.id, "up")
    sh("ip", "-n", site.vpns.netns_name(gw.id), "addr", "flush", "dev", "vpc0")  # drift: rebuilt
    assert site.vpns.running() == []
    assert site.vpns.ensure(gw, bridge_name(VNI))[0].startswith("remove ")
    site.wait_state(gw.id, "up")
    assert site.ping(1)

    site.vpns.teardown_all()
    assert not [n for n in nsmod.list_names() if n.startswith(site.prefix + "l2v")]
    assert not _charons(site.tmp / "vpn")
    assert not (site.tmp / "vpn").exists()
    assert vpn_device_name(gw.id) not in sh("ip", "-n", site.edge, "link").stdout


def test_recreated_at_once_after_removal(site: Site) -> None:
    # The kernel destroys a removed namespace's macvlan in the background; a gateway created
    # again at once must not fail on its outside MAC still being taken (EADDRINUSE).
    gw = site.gateway()
    for _ in range(5):
        site.vpns.ensure(gw, bridge_name(VNI))
        site.vpns.remove(gw.id)
    site.vpns.ensure(gw, bridge_name(VNI))
    site.wait_state(gw.id, "up")


def test_deep_state_dir_gets_a_short_socket(tmp_path: Path) -> None:
    ns = f"l2vt{os.getpid() % 10000}{secrets.token_hex(2)}-sock"
    charon = Charon(tmp_path / ("d" * 80), nsmod.path(ns))
    assert str(charon.socket).startswith("/run/l2vpc-vici/")
    nsmod.create(ns)
    try:
        charon.configure()
        charon.start()
        with charon.session() as s:
            assert s.version()["daemon"] == b"charon-systemd"
    finally:
        charon.stop()
        nsmod.remove(ns)
    assert not charon.socket.parent.exists() and not _charons(tmp_path)


@pytest.mark.parametrize(("case", "expect"), [
    ("ike", "accepts none of our IKE proposal (aes256-sha512-modp4096)"),
    ("esp", "accepts none of our ESP proposal (aes256-sha512-modp4096)"),
    ("ts", "refused the traffic selectors"),
    ("silent", "203.0.113.99 does not answer"),
])
def test_down_reasons(site: Site, case: str, expect: str) -> None:
    gw = site.gateway(dpd_timeout=2)
    if case in ("ike", "esp"):
        premises_vpn.teardown(site.prem_state)
        premises_vpn.setup(site.prem, psk=PSK, state_dir=site.prem_state,
                           ike_proposals=("aes128-sha256-modp2048",), esp_proposals=("aes128-sha256-modp2048",))
        if case == "ike":
            gw = dataclasses.replace(gw, ike_proposal="aes256-sha512-modp4096")
        else:
            gw = dataclasses.replace(gw, ike_proposal="aes128-sha256-modp2048",
                                     esp_proposal="aes256-sha512-modp4096")
    elif case == "ts":
        gw = dataclasses.replace(gw, remote_cidrs=("192.168.99.0/24",))
    else:
        gw = dataclasses.replace(gw, peer_address="203.0.113.99")
    site.vpns.ensure(gw, bridge_name(VNI))
    t0 = time.monotonic()
    obs = site.vpns.observe(gw.id)
    while expect not in obs.detail and time.monotonic() - t0 < 4:
        time.sleep(0.05)
        obs = site.vpns.observe(gw.id)
    assert obs.state == "down" and expect in obs.detail, obs


def test_premises_setup_rejects_bad_arguments(site: Site) -> None:
    state = site.tmp / "prem2"
    cases = [
        ({"netns": site.prefix + "nosuch"}, "netns"),
        ({"outside_ip": "203.0.113.11/24"}, "outside_ip: 203.0.113.11/24 is not configured"),
        ({"outside_ip": "203.0.113.10"}, None),  # /32 is not what the namespace holds either
        ({"lan_cidr": "10.9.0.0/24"}, "lan_cidr"),
        ({"psk": ""}, "psk"),
    ]
    for kwargs, match in cases:
        args = {"netns": site.prem, "outside_ip": "203.0.113.10/24", "lan_cidr": "192.168.50.0/24", "psk": PSK,
                **kwargs}
        with pytest.raises(ValueError, match=match or "outside_ip"):
            premises_vpn.setup(args["netns"], args["outside_ip"], args["lan_cidr"], psk=args["psk"], state_dir=state)
        assert not state.exists()
    assert premises_vpn.status(site.prem_state) == []  # the real one is untouched and idle
