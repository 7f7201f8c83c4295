"""Overlay throughput: iperf3 TCP between workloads on two hosts over VXLAN, MTU 9000 vs 1500,
against a plain veth pair; offloads off (and on). Needs root (network namespaces), iperf3, ethtool.

    sudo .venv/bin/python bench/bench_overlay_iperf.py [--seconds 5] [--omit 1] [--repeats 1]
                                                       [--offloads both|off|on]

Builds, under a unique name prefix: an underlay namespace with a bridge (MTU 9100) and two host
namespaces on it; the real Linux driver converges both hosts with two VPCs (VNI 100 at MTU 9000,
VNI 200 at MTU 1500), one static port per host in each (workloads j1/j2 and s1/s2). The baseline
is two fresh namespaces joined by two plain veth pairs (MTU 9000 and 1500). For each case an
iperf3 server runs in the receiving namespace and the client in the sending one (`ip netns exec`);
the figure is the receiver's bits_per_second from `-J`, median over the repeats. "Offloads off"
turns off tso, gso, gro and tx/rx checksumming on every device along the paths: workload
interfaces, host-side port veths, bridges, VXLAN devices and the underlay veths and bridge.

Every overlay run also checks the sender's underlay byte counter grew by at least what iperf3
moved, so the figure is known to be VXLAN traffic. Everything created (namespaces, the driver's
state, iperf3 processes) is removed at the end, also on failure or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from l2vpc.agent.drivers.linux import LinuxDriver
from l2vpc.agent.drivers.linux import netns as nsmod
from l2vpc.hostconfig import (
    HostConfig,
    Port,
    Segment,
    bridge_name,
    port_device_name,
    validate_host_config,
    vxlan_name,
)
from l2vpc.hostconfig.names import workload_netns_name

UNDERLAY_MTU = 9100
IPERF_PORT = 5201
# ethtool -K short names and the `ethtool -k` lines that show them.
OFFLOADS = {
    "tso": "tcp-segmentation-offload",
    "gso": "generic-segmentation-offload",
    "gro": "generic-receive-offload",
    "tx": "tx-checksumming",
    "rx": "rx-checksumming",
}


def sh(*args: str, timeout: float = 15) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=timeout).stdout


@dataclass(frozen=True)
class Case:
    """One measured path: iperf3 server in `server_ns` at `server_ip`, client in `client_ns`."""

    label: str
    client_ns: str
    server_ns: str
    server_ip: str
    mtu: int
    # Namespace and device whose tx byte counter must carry the traffic (overlay: the underlay).
    counter: tuple[str, str] | None = None


@dataclass(frozen=True)
class Run:
    bps: float
    retransmits: int
    cpu_client: float
    cpu_server: float


@dataclass
class Bench:
    prefix: str
    state: Path
    namespaces: list[str] = field(default_factory=list)
    drivers: list[LinuxDriver] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    # (namespace, device) of every device on a measured path, for the offload switch.
    devices: list[tuple[str, str]] = field(default_factory=list)

    def netns(self, name: str) -> str:
        ns = self.prefix + name
        if not nsmod.create(ns):
            raise RuntimeError(f"namespace {ns} already exists")
        self.namespaces.append(ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        return ns

    def cleanup(self) -> list[str]:
        problems: list[str] = []
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)
            if p.poll() is None:
                problems.append(f"iperf3 pid {p.pid} did not exit")
        for d in self.drivers:
            try:
                d.teardown()
            except Exception as e:  # keep cleaning; report at the end
                problems.append(f"driver {d.host} teardown: {e}")
            finally:
                d.close()
        # Workload namespaces are the driver's (teardown drops them); this also catches any
        # left by a driver that failed half-way, since all carry our prefix.
        for ns in [*self.namespaces, *(n for n in nsmod.list_names() if n.startswith(self.prefix))]:
            try:
                nsmod.remove(ns)
            except OSError as e:
                problems.append(str(e))
        shutil.rmtree(self.state, ignore_errors=True)
        left = [n for n in nsmod.list_names() if n.startswith(self.prefix)]
        if left:
            problems.append(f"namespaces left behind: {left}")
        return problems


def build_overlay(b: Bench) -> list[Case]:
    underlay = b.netns("u")
    sh("ip", "-n", underlay, "link", "add", "br0", "mtu", str(UNDERLAY_MTU), "type", "bridge")
    sh("ip", "-n", underlay, "link", "set", "br0", "up")
    b.devices.append((underlay, "br0"))
    hosts: list[tuple[str, str]] = []
    for i in (1, 2):
        ns, ip = b.netns(f"h{i}"), f"10.99.0.{i}"
        sh("ip", "-n", underlay, "link", "add", f"u{i}", "mtu", str(UNDERLAY_MTU), "type", "veth",
           "peer", "name", "u0", "netns", ns, "mtu", str(UNDERLAY_MTU))
        sh("ip", "-n", underlay, "link", "set", f"u{i}", "master", "br0", "up")
        sh("ip", "-n", ns, "link", "set", "u0", "up")
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "u0")
        b.devices += [(underlay, f"u{i}"), (ns, "u0")]
        hosts.append((ns, ip))

    vpcs = [(100, 9000, "j", "10.10.0"), (200, 1500, "s", "10.20.0")]
    workload_ns: dict[str, str] = {}
    for i, (ns, ip) in enumerate(hosts):
        other = hosts[1 - i][1]
        segments = tuple(Segment(vni, f"vpc-{vni}", mtu, (other,)) for vni, mtu, _, _ in vpcs)
        ports = tuple(
            Port(id=f"p{tag}{i + 1}", vni=vni, workload=f"{tag}{i + 1}", interface_name="net1",
                 mac=f"02:00:00:00:{vni // 100:02x}:{i + 1:02x}", mtu=mtu, ip_mode="static",
                 ip_address=f"{net}.{i + 1}/24")
            for vni, mtu, tag, net in vpcs
        )
        cfg = HostConfig(f"h{i + 1}", ip, 1, segments, ports)
        errors = validate_host_config(cfg)
        if errors:
            raise RuntimeError(f"bad host config: {errors}")
        driver = LinuxDriver(cfg.host, ip, netns=ns, prefix=f"{ns}-", state_dir=b.state / cfg.host)
        b.drivers.append(driver)
        result = driver.converge(cfg)
        if not result.ok or not result.actual.same_dataplane(cfg):
            raise RuntimeError(f"converge {cfg.host} failed: {result.failures}")
        for vni, _, _, _ in vpcs:
            b.devices += [(ns, bridge_name(vni)), (ns, vxlan_name(vni))]
        for p in ports:
            wns = workload_netns_name(f"{ns}-", p.workload)
            workload_ns[p.workload] = wns
            b.devices += [(ns, port_device_name(p.id)), (wns, p.interface_name)]

    client_counter = (hosts[0][0], "u0")
    out = []
    for _, mtu, tag, net in vpcs:
        client, server = workload_ns[f"{tag}1"], workload_ns[f"{tag}2"]
        # Largest unfragmented frame first: proves the path carries the MTU we claim to measure.
        sh("ip", "netns", "exec", client, "ping", "-c", "1", "-W", "3", "-M", "do", "-s", str(mtu - 28), f"{net}.2")
        out.append(Case(f"overlay {mtu}", client, server, f"{net}.2", mtu, client_counter))
    return out


def build_veth(b: Bench) -> list[Case]:
    left, right = b.netns("v1"), b.netns("v2")
    out = []
    for mtu, dev, net in ((9000, "vj", "10.30.0"), (1500, "vs", "10.31.0")):
        sh("ip", "-n", left, "link", "add", dev, "mtu", str(mtu), "type", "veth",
           "peer", "name", dev, "netns", right, "mtu", str(mtu))
        for n, ns in ((1, left), (2, right)):
            sh("ip", "-n", ns, "addr", "add", f"{net}.{n}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            b.devices.append((ns, dev))
        sh("ip", "netns", "exec", left, "ping", "-c", "1", "-W", "3", "-M", "do", "-s", str(mtu - 28), f"{net}.2")
        out.append(Case(f"veth {mtu}", left, right, f"{net}.2", mtu))
    return out


def offloads_off(devices: list[tuple[str, str]], prefix: str) -> list[str]:
    """Turn the offloads off everywhere; returns `ns/dev: feature` for those still on (fixed)."""
    still_on = []
    for ns, dev in devices:
        args = [x for k in OFFLOADS for x in (k, "off")]
        # ethtool exits non-zero when a feature is fixed; what counts is the state afterwards.
        subprocess.run(["ip", "netns", "exec", ns, "ethtool", "-K", dev, *args],
                       capture_output=True, text=True, timeout=15)
        shown = sh("ip", "netns", "exec", ns, "ethtool", "-k", dev)
        for line in shown.splitlines():
            name, _, value = line.partition(":")
            if name in OFFLOADS.values() and value.split()[:1] == ["on"]:
                still_on.append(f"{ns.removeprefix(prefix)}/{dev}: {name}")
    return still_on


def tx_bytes(ns: str, dev: str) -> int:
    data = json.loads(sh("ip", "-n", ns, "-s", "-j", "link", "show", dev))
    return int(data[0]["stats64"]["tx"]["bytes"])


def listening(ns: str, port: int) -> bool:
    out = subprocess.run(["ip", "netns", "exec", ns, "ss", "-Hltn", f"sport = :{port}"],
                         capture_output=True, text=True, timeout=5).stdout
    return bool(out.strip())


def iperf(b: Bench, path: Case, seconds: int, omit: int) -> Run:
    server = subprocess.Popen(
        ["ip", "netns", "exec", path.server_ns, "iperf3", "-s", "-1", "-B", path.server_ip, "-p", str(IPERF_PORT)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    b.procs.append(server)
    deadline = time.monotonic() + 5
    while not listening(path.server_ns, IPERF_PORT):
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{path.label}: iperf3 server did not start (exit {server.poll()})")
        time.sleep(0.02)
    before = tx_bytes(*path.counter) if path.counter else 0
    proc = subprocess.run(
        ["ip", "netns", "exec", path.client_ns, "iperf3", "-c", path.server_ip, "-p", str(IPERF_PORT),
         "-t", str(seconds), "-O", str(omit), "-J"],
        capture_output=True, text=True, timeout=seconds + omit + 30,
    )
    try:
        report: dict[str, Any] = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"{path.label}: iperf3 client gave no JSON: {proc.stderr.strip()}") from None
    if "error" in report or proc.returncode != 0:
        raise RuntimeError(f"{path.label}: iperf3: {report.get('error', proc.stderr.strip())}")
    server.wait(timeout=10)
    end = report["end"]
    if path.counter:
        # What the server received must have crossed the underlay (sent bytes may still sit in
        # the socket buffer when the client exits).
        moved = int(end["sum_received"]["bytes"])
        grew = tx_bytes(*path.counter) - before
        if grew < moved:
            raise RuntimeError(f"{path.label}: underlay sent {grew} bytes, server received {moved}: not over the overlay?")
    return Run(
        bps=float(end["sum_received"]["bits_per_second"]),
        retransmits=int(end["sum_sent"].get("retransmits", 0)),
        cpu_client=float(end["cpu_utilization_percent"]["host_total"]),
        cpu_server=float(end["cpu_utilization_percent"]["remote_total"]),
    )


def measure(b: Bench, paths: list[Case], repeats: int, seconds: int, omit: int) -> dict[str, list[Run]]:
    runs: dict[str, list[Run]] = {p.label: [] for p in paths}
    # Interleaved, so drift on a shared machine spreads over all cases alike.
    for _ in range(repeats):
        for p in paths:
            runs[p.label].append(iperf(b, p, seconds, omit))
    return runs


def gbit(runs: list[Run]) -> float:
    return statistics.median(r.bps for r in runs) / 1e9


def report(title: str, runs: dict[str, list[Run]]) -> None:
    print(f"\n{title}")
    for label, rs in runs.items():
        spread = f"min {min(r.bps for r in rs) / 1e9:.2f}, max {max(r.bps for r in rs) / 1e9:.2f}; " if len(rs) > 1 else ""
        print(f"  {label:<14} {gbit(rs):7.2f} Gbit/s  ({spread}retransmits "
              f"{statistics.median(r.retransmits for r in rs):.0f}, cpu client "
              f"{statistics.median(r.cpu_client for r in rs):.0f}% server {statistics.median(r.cpu_server for r in rs):.0f}%)")
    g = {label: gbit(rs) for label, rs in runs.items()}
    for num, den in (("overlay 9000", "overlay 1500"), ("overlay 1500", "veth 1500"), ("overlay 9000", "veth 9000")):
        print(f"  {num} / {den:<13} {g[num] / g[den]:6.2f}")


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally that cleans up


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seconds", type=int, default=5, help="iperf3 -t per run")
    ap.add_argument("--omit", type=int, default=1, help="iperf3 -O: seconds of slow start left out")
    ap.add_argument("--repeats", type=int, default=1, help="runs per case; the median is reported")
    ap.add_argument("--offloads", choices=("both", "off", "on"), default="both")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    missing = [t for t in ("iperf3", "ethtool", "ss") if shutil.which(t) is None]
    if missing:
        print(f"missing tools: {', '.join(missing)} (apt-get install iperf3 ethtool iproute2)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)

    b = Bench(f"l2i{secrets.token_hex(3)}-", Path(tempfile.mkdtemp(prefix="l2vpc-iperf-")))
    try:
        t = time.monotonic()
        paths = build_overlay(b) + build_veth(b)
        print(f"built: underlay + 2 hosts (2 VPCs, 4 ports) via LinuxDriver, 2 veth pairs in "
              f"{time.monotonic() - t:.1f} s; {os.cpu_count()} CPUs, kernel {os.uname().release}")
        print(f"iperf3 TCP, 1 stream, {args.seconds} s per run after {args.omit} s omitted, "
              f"median of {args.repeats}; receiver Gbit/s")
        if args.offloads in ("both", "on"):
            report("offloads on (defaults)", measure(b, paths, args.repeats, args.seconds, args.omit))
        if args.offloads in ("both", "off"):
            fixed = offloads_off(b.devices, b.prefix)
            print(f"\noffloads off on {len(b.devices)} devices (tso gso gro tx rx)"
                  + (f"; still on (fixed): {', '.join(fixed)}" if fixed else ""))
            report("offloads off", measure(b, paths, args.repeats, args.seconds, args.omit))
        return 0
    finally:
        problems = b.cleanup()
        for p in problems:
            print(f"CLEANUP: {p}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
