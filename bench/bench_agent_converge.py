"""Agent dataplane speed: one host from empty to 100 VPCs + 200 static attachments, then no-ops.

Targets: full converge <= 2 s, no-op reconcile <= 50 ms. Needs root (network namespaces).

    .venv/bin/python bench/bench_agent_converge.py [--vpcs 100] [--ports 200] [--noop-runs 10] [--cold-runs 5]

Layout: 100 workloads with two NICs each (VPC i and VPC i+1), every segment with two remote
hosts in its flood list. The host is a namespace with an underlay veth (MTU 9100); everything
is removed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from l2vpc.agent.drivers.linux import LinuxDriver
from l2vpc.agent.drivers.linux import netns as nsmod
from l2vpc.hostconfig import HostConfig, Port, Segment

UNDERLAY_IP = "10.99.0.1"


def build_config(vpcs: int, ports: int) -> HostConfig:
    segments = tuple(
        Segment(vni=1000 + i, vpc_id=f"vpc-{i}", mtu=9000 if i % 2 else 1500, remotes=("10.99.0.2", "10.99.0.3"))
        for i in range(vpcs)
    )
    workloads = max(1, ports // 2)
    port_list = []
    for n in range(ports):
        w, nic = n % workloads, n // workloads
        seg = segments[(w + nic) % vpcs]
        port_list.append(Port(
            id=f"att-{n:06d}", vni=seg.vni, workload=f"w{w}", interface_name=f"net{nic + 1}",
            mac=f"02:00:00:{n >> 16 & 0xff:02x}:{n >> 8 & 0xff:02x}:{n & 0xff:02x}", mtu=seg.mtu,
            ip_mode="static", ip_address=f"10.{nic}.{w // 250}.{w % 250 + 1}/16",
        ))
    return HostConfig("bench", UNDERLAY_IP, 1, segments, tuple(port_list))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vpcs", type=int, default=100)
    ap.add_argument("--ports", type=int, default=200)
    ap.add_argument("--noop-runs", type=int, default=10)
    ap.add_argument("--cold-runs", type=int, default=5,
                    help="agent restarts timed for the cold no-op (a new driver each; median printed)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2

    prefix = f"l2b{secrets.token_hex(3)}-"
    host_ns = f"{prefix}host"
    desired = build_config(args.vpcs, args.ports)
    state = Path(tempfile.mkdtemp(prefix="l2vpc-bench-"))
    nsmod.create(host_ns)
    driver: LinuxDriver | None = None
    try:
        for cmd in (
            ["link", "add", "u0", "mtu", "9100", "type", "veth", "peer", "name", "u1", "mtu", "9100"],
            ["link", "set", "u0", "up"], ["link", "set", "u1", "up"], ["link", "set", "lo", "up"],
            ["addr", "add", f"{UNDERLAY_IP}/24", "dev", "u0"],
        ):
            subprocess.run(["ip", "-n", host_ns, *cmd], check=True)
        driver = LinuxDriver("bench", UNDERLAY_IP, netns=host_ns, prefix=f"{prefix}h-", state_dir=state)

        t = time.perf_counter()
        result = driver.converge(desired)
        full = time.perf_counter() - t
        if not result.ok or not result.actual.same_dataplane(desired):
            print(f"FAILED: {result.failures[:5]}", file=sys.stderr)
            return 1

        # Wall and CPU (user+system) time: on a busy 2-core box the wall figures carry the
        # other processes' load, the CPU ones do not.
        noops, noops_cpu = [], []
        for _ in range(args.noop_runs):
            t, c = time.perf_counter(), time.process_time()
            r = driver.converge(desired)
            noops.append(time.perf_counter() - t)
            noops_cpu.append(time.process_time() - c)
            assert r.ok and not r.actions, r.actions
        facts, facts_cpu = [], []
        for _ in range(args.noop_runs):
            t, c = time.perf_counter(), time.process_time()
            driver.facts()
            facts.append(time.perf_counter() - t)
            facts_cpu.append(time.process_time() - c)

        # A restart is one sample of a ~50 ms figure; on a shared box one sample is mostly the
        # scheduler's, hence several restarts, their median and their CPU time.
        colds, colds_cpu = [], []
        for _ in range(args.cold_runs):
            restarted = LinuxDriver("bench", UNDERLAY_IP, netns=host_ns, prefix=f"{prefix}h-", state_dir=state)
            t, c = time.perf_counter(), time.process_time()
            r = restarted.converge(desired)
            colds.append(time.perf_counter() - t)
            colds_cpu.append(time.process_time() - c)
            assert r.ok and not r.actions, r.actions
            restarted.close()

        t = time.perf_counter()
        driver.teardown()
        down = time.perf_counter() - t

        n_ops = len(result.actions)
        print(f"host: {args.vpcs} VPCs, {args.ports} static attachments, {args.ports // 2} workload namespaces")
        print(f"full converge from empty:   {full * 1000:8.1f} ms  ({n_ops} actions)   target <= 2000 ms")
        print(f"no-op reconcile (median):   {statistics.median(noops) * 1000:8.1f} ms  "
              f"(min {min(noops) * 1000:.1f}, max {max(noops) * 1000:.1f}; "
              f"cpu median {statistics.median(noops_cpu) * 1000:.1f})   target <= 50 ms")
        print(f"facts only (median):        {statistics.median(facts) * 1000:8.1f} ms  "
              f"(cpu median {statistics.median(facts_cpu) * 1000:.1f})")
        print(f"no-op after restart (cold): {statistics.median(colds) * 1000:8.1f} ms  "
              f"(new driver: opens namespace sockets; median of {len(colds)}, min {min(colds) * 1000:.1f}, "
              f"max {max(colds) * 1000:.1f}; cpu median {statistics.median(colds_cpu) * 1000:.1f})")
        print(f"teardown:                   {down * 1000:8.1f} ms")
        return 0
    finally:
        if driver is not None:
            driver.teardown()
            driver.close()
        nsmod.remove(host_ns)
        subprocess.run(["rm", "-rf", str(state)], check=False)
        left = [n for n in nsmod.list_names() if n.startswith(prefix)]
        if left:
            print(f"WARNING: namespaces left behind: {left}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
