"""dnsmasq as one VPC's DHCP server: config rendering, start, reload, stop, and what runs.

Each server has a directory in the driver's state dir holding its config, reservations
(`hosts`, re-read on SIGHUP, so reservation changes never restart the server), leases, pid,
log, and `server.json`, the DhcpServer it runs (what facts report). DNS is off (`port=0`):
the server only hands out addresses and options.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import shutil
import signal
import subprocess
from pathlib import Path

from l2vpc.agent.drivers.linux import procs
from l2vpc.hostconfig import DhcpServer, HostConfig
from l2vpc.hostconfig.names import DHCP_SERVER_IFNAME


def render_conf(d: DhcpServer, state: Path) -> str:
    net = ipaddress.IPv4Interface(d.server_ip).network
    lines = [
        "# written by the l2vpc agent; rewritten on every change",
        "keep-in-foreground",
        # The state dir is private to root (0700, possibly below other 0700 dirs), and dnsmasq
        # re-reads `hosts` from it on SIGHUP; it runs alone in its own network namespace.
        "user=root",
        "port=0",
        "no-resolv",
        "no-hosts",
        "bind-interfaces",
        f"interface={DHCP_SERVER_IFNAME}",
        "dhcp-authoritative",
        # Without no-ping dnsmasq probes each new address for ~3 s before offering it.
        "no-ping",
        f"dhcp-range={d.range_start},{d.range_end},{net.netmask},{d.lease_time}",
        f"dhcp-hostsfile={state / 'hosts'}",
        f"dhcp-leasefile={state / 'leases'}",
        f"pid-file={state / 'dnsmasq.pid'}",
        "log-facility=-",  # stderr, which procs.start sends to the log file
        "log-dhcp",
    ]
    # An empty option stops dnsmasq from offering itself as router / DNS server.
    lines.append(f"dhcp-option=option:router,{d.gateway}" if d.gateway else "dhcp-option=3")
    lines.append("dhcp-option=option:dns-server," + ",".join(d.dns_servers) if d.dns_servers else "dhcp-option=6")
    lines.append(f"dhcp-option=option:mtu,{d.mtu}")
    if d.routes:
        # RFC 3442: a client that gets option 121 ignores option 3, so the default route
        # goes into the classless list too.
        pairs = [f"{r.prefix},{r.via}" for r in d.routes]
        if d.gateway:
            pairs.append(f"0.0.0.0/0,{d.gateway}")
        lines.append("dhcp-option=option:classless-static-route," + ",".join(pairs))
    return "\n".join(lines) + "\n"


def render_hosts(d: DhcpServer) -> str:
    return "".join(f"{r.mac},{r.ip}\n" for r in d.reservations)


def conf_path(state: Path) -> Path:
    return state / "dnsmasq.conf"


def _marker(state: Path) -> str:
    return str(conf_path(state))


def start(d: DhcpServer, state: Path, netns_path: str) -> None:
    state.mkdir(parents=True, exist_ok=True)
    (state / "hosts").write_text(render_hosts(d))
    conf_path(state).write_text(render_conf(d, state))
    (state / "leases").touch()
    procs.start(
        netns_path,
        ["dnsmasq", f"--conf-file={conf_path(state)}"],
        state / "pid",
        state / "log",
    )
    _write_json(state, d)


def reload(d: DhcpServer, state: Path) -> bool:
    """New reservations without a restart; False if the server is not running."""
    tmp = state / "hosts.tmp"
    tmp.write_text(render_hosts(d))
    tmp.replace(state / "hosts")
    if not procs.signal_if_ours(procs.read_pid(state / "pid"), _marker(state), signal.SIGHUP):
        return False
    _write_json(state, d)
    return True


def leases(state: Path) -> dict[str, str]:
    """MAC -> leased address, from dnsmasq's lease file (expiry MAC address name client-id)."""
    found: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in (state / "leases").read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3:
                found[fields[1].lower()] = fields[2]
    return found


def release(state: Path, netns_path: str, ifname: str, macs: set[str]) -> None:
    """Release the leases of `macs`: dhcp_release (dnsmasq-utils) sends the server the
    DHCPRELEASE the client never sent, from inside the server's namespace."""
    for mac, ip in sorted(leases(state).items()):
        if mac in macs:
            run = subprocess.run([procs.NSENTER, f"--net={netns_path}", "--", "dhcp_release", ifname, ip, mac],
                                 capture_output=True, text=True, timeout=10)
            if run.returncode != 0:
                raise OSError(f"dhcp_release {ip} {mac}: {(run.stderr or run.stdout).strip() or run.returncode}")


def record(state: Path, d: DhcpServer) -> None:
    """Remember what the running server serves (its facts) after an update in place."""
    _write_json(state, d)


def stop(state: Path) -> None:
    procs.stop(state / "pid", _marker(state))


def remove(state: Path) -> None:
    stop(state)
    shutil.rmtree(state, ignore_errors=True)


def running(state: Path) -> DhcpServer | None:
    """The server this directory runs, if its dnsmasq is alive."""
    if not procs.alive(procs.read_pid(state / "pid"), _marker(state)):
        return None
    try:
        data = json.loads((state / "server.json").read_text())
        cfg = HostConfig.from_dict({"host": "", "underlay_ip": "", "dhcp_servers": [data]})
    except (OSError, ValueError):
        return None
    return cfg.dhcp_servers[0]


def log_tail(state: Path, lines: int = 5) -> str:
    with contextlib.suppress(OSError):
        return " | ".join((state / "log").read_text(errors="replace").strip().splitlines()[-lines:])
    return ""


def _write_json(state: Path, d: DhcpServer) -> None:
    tmp = state / "server.json.tmp"
    data = HostConfig(host="", underlay_ip="", dhcp_servers=(d,)).to_dict()["dhcp_servers"][0]
    tmp.write_text(json.dumps(data, sort_keys=True))
    tmp.replace(state / "server.json")
