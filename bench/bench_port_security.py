"""Port security's cost: iperf3 TCP between workloads on two hosts across the VXLAN with it off
and on (same run, interleaved), and an agent's no-op reconcile with 200 secured ports.

Targets: throughput on >= 90 % of off; no-op reconcile with 200 secured ports <= 50 ms.
Needs root (network namespaces), iperf3, nftables.

    sudo .venv/bin/python bench/bench_port_security.py [--seconds 5] [--omit 1] [--repeats 3]
                                                       [--vpcs 100] [--ports 200] [--noop-runs 10]

Throughput: bench_overlay_iperf's layout (an underlay bridge, two host namespaces each converged by
the Linux driver), one VPC at MTU 1500 with a static port per host; the client's port and the
server's are secured, then not, by converges that update them in place, alternating per repeat so
drift on a shared machine falls on both alike. The figure is the receiver's Gbit/s, median.
Reconcile: bench_agent_converge's host (100 VPCs, 200 static ports) converged unsecured, its
no-op timed, then every port secured (200 in-place updates, timed), its no-op timed again.
Everything created is removed at the end, also on failure or SIGTERM.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_agent_converge import UNDERLAY_IP, build_config
from bench_overlay_iperf import UNDERLAY_MTU, Bench, Case, gbit, iperf, sh

from l2vpc.agent.drivers.linux import LinuxDriver
from l2vpc.agent.drivers.linux import netns as nsmod
from l2vpc.hostconfig import HostConfig, Port, Segment
from l2vpc.hostconfig.names import workload_netns_name

VNI, MTU, NET = 100, 1500, "10.40.0"


def secured(cfg: HostConfig, on: bool, generation: int) -> HostConfig:
    """`cfg` with every static port secured to its own address (on) or not."""
    def one(p: Port) -> Port:
        sources = (f"{p.ip_address.split('/')[0]}/32",) if on and p.ip_address else ()
        return dataclasses.replace(p, port_security=on, allowed_addresses=sources)
    return dataclasses.replace(cfg, generation=generation, ports=tuple(one(p) for p in cfg.ports))


def converge(driver: LinuxDriver, cfg: HostConfig) -> float:
    t = time.perf_counter()
    r = driver.converge(cfg)
    took = time.perf_counter() - t
    if not r.ok or not r.actual.same_dataplane(cfg):
        raise RuntimeError(f"converge {cfg.host} failed: {r.failures[:3]}")
    return took


# -- throughput ------------------------------------------------------------------------------

def build_pair(b: Bench) -> tuple[Case, list[tuple[LinuxDriver, HostConfig]]]:
    underlay = b.netns("u")
    sh("ip", "-n", underlay, "link", "add", "br0", "mtu", str(UNDERLAY_MTU), "type", "bridge")
    sh("ip", "-n", underlay, "link", "set", "br0", "up")
    hosts = []
    for i in (1, 2):
        ns, ip = b.netns(f"h{i}"), f"10.99.0.{i}"
        sh("ip", "-n", underlay, "link", "add", f"u{i}", "mtu", str(UNDERLAY_MTU), "type", "veth",
           "peer", "name", "u0", "netns", ns, "mtu", str(UNDERLAY_MTU))
        sh("ip", "-n", underlay, "link", "set", f"u{i}", "master", "br0", "up")
        sh("ip", "-n", ns, "link", "set", "u0", "up")
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "u0")
        hosts.append((ns, ip))
    out = []
    for i, (ns, ip) in enumerate(hosts):
        port = Port(id=f"pw{i + 1}", vni=VNI, workload=f"w{i + 1}", interface_name="net1",
                    mac=f"02:00:00:00:01:{i + 1:02x}", mtu=MTU, ip_mode="static", ip_address=f"{NET}.{i + 1}/24")
        cfg = HostConfig(f"h{i + 1}", ip, 1, (Segment(VNI, "vpc-1", MTU, (hosts[1 - i][1],)),), (port,))
        driver = LinuxDriver(cfg.host, ip, netns=ns, prefix=f"{ns}-", state_dir=b.state / cfg.host)
        b.drivers.append(driver)
        converge(driver, cfg)
        out.append((driver, cfg))
    client, server = (workload_netns_name(f"{ns}-", f"w{i + 1}") for i, (ns, _) in enumerate(hosts))
    sh("ip", "netns", "exec", client, "ping", "-c", "1", "-W", "3", f"{NET}.2")
    return Case(f"overlay {MTU}", client, server, f"{NET}.2", MTU, (hosts[0][0], "u0")), out


def throughput(b: Bench, args: argparse.Namespace) -> tuple[float, float]:
    path, hosts = build_pair(b)
    runs: dict[bool, list] = {False: [], True: []}
    generation = 1
    for _ in range(args.repeats):
        for on in (False, True):
            generation += 1
            for driver, cfg in hosts:
                converge(driver, secured(cfg, on, generation))
            runs[on].append(iperf(b, path, args.seconds, args.omit))
    off, on = gbit(runs[False]), gbit(runs[True])
    print(f"iperf3 TCP across the VXLAN, MTU {MTU}, 1 stream, {args.seconds} s per run after {args.omit} s "
          f"omitted, median of {args.repeats} (alternating); receiver Gbit/s")
    print(f"  port security off   {off:7.2f} Gbit/s")
    print(f"  port security on    {on:7.2f} Gbit/s")
    cost = (1 - on / off) * 100
    print(f"throughput cost: {cost:.1f} %   target <= 10 %")
    return off, on


# -- reconcile -------------------------------------------------------------------------------

def reconcile(args: argparse.Namespace, prefix: str, state: Path) -> None:
    host_ns = f"{prefix}host"
    plain = build_config(args.vpcs, args.ports)
    nsmod.create(host_ns)
    driver: LinuxDriver | None = None
    try:
        for cmd in (
            ["link", "add", "u0", "mtu", "9100", "type", "veth", "peer", "name", "u1", "mtu", "9100"],
            ["link", "set", "u0", "up"], ["link", "set", "u1", "up"], ["link", "set", "lo", "up"],
            ["addr", "add", f"{UNDERLAY_IP}/24", "dev", "u0"],
        ):
            subprocess.run(["ip", "-n", host_ns, *cmd], check=True)
        driver = LinuxDriver("bench", UNDERLAY_IP, netns=host_ns, prefix=f"{prefix}h-", state_dir=state / "host")
        converge(driver, plain)

        def noop(cfg: HostConfig) -> tuple[float, float]:
            walls, cpus = [], []
            for _ in range(args.noop_runs):
                t, c = time.perf_counter(), time.process_time()
                r = driver.converge(cfg)
                walls.append(time.perf_counter() - t)
                cpus.append(time.process_time() - c)
                assert r.ok and not r.actions, r.actions
            return statistics.median(walls) * 1000, statistics.median(cpus) * 1000

        base, base_cpu = noop(plain)
        on = secured(plain, True, 2)
        toggle = converge(driver, on)
        sec, sec_cpu = noop(on)
        t = time.perf_counter()
        restarted = LinuxDriver("bench", UNDERLAY_IP, netns=host_ns, prefix=f"{prefix}h-", state_dir=state / "host")
        r = restarted.converge(on)
        cold = time.perf_counter() - t
        restarted.close()
        assert r.ok and not r.actions, r.actions
        print(f"host: {args.vpcs} VPCs, {args.ports} static ports")
        print(f"no-op reconcile, unsecured (median):   {base:7.1f} ms  (cpu {base_cpu:.1f})")
        print(f"securing every port: {toggle * 1000:.1f} ms ({args.ports} in-place updates)")
        print(f"no-op reconcile, {args.ports} secured (median): {sec:7.1f} ms  (cpu {sec_cpu:.1f})   target <= 50 ms")
        print(f"no-op after restart, secured (cold): {cold * 1000:.1f} ms")
        print(f"secured / unsecured no-op: {sec / base:.2f}")
    finally:
        if driver is not None:
            driver.teardown()
            driver.close()
        nsmod.remove(host_ns)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally that cleans up


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seconds", type=int, default=5, help="iperf3 -t per run")
    ap.add_argument("--omit", type=int, default=1, help="iperf3 -O: seconds of slow start left out")
    ap.add_argument("--repeats", type=int, default=3, help="runs per setting; the median is reported")
    ap.add_argument("--vpcs", type=int, default=100)
    ap.add_argument("--ports", type=int, default=200)
    ap.add_argument("--noop-runs", type=int, default=10)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    missing = [t for t in ("iperf3", "ss", "nft") if shutil.which(t) is None]
    if missing:
        print(f"missing tools: {', '.join(missing)} (apt-get install iperf3 iproute2 nftables)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    prefix = f"l2s{secrets.token_hex(3)}-"
    b = Bench(prefix, Path(tempfile.mkdtemp(prefix="l2vpc-portsec-")))
    try:
        reconcile(args, prefix, b.state)
        print()
        throughput(b, args)
        return 0
    finally:
        for p in b.cleanup():
            print(f"CLEANUP: {p}", file=sys.stderr)
        left = [n for n in nsmod.list_names() if n.startswith(prefix)]
        if left:
            print(f"CLEANUP: namespaces left behind: {left}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
