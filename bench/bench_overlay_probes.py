"""Overlay probes (agent/overlay_probe.py): what they cost a host, and how fast they catch a
broken underlay. Needs root for the lab part (network namespaces); `--no-lab` skips it.

    sudo .venv/bin/python bench/bench_overlay_probes.py [--peers 100] [--seconds 10] [--fleet 1000]
                                                         [--fleet-peers 20] [--no-lab]

1. A host with --peers peers, for real: one prober (the host) on 127.0.0.1 and, in a child
   process, one prober per peer on 127.0.1.N, all probing each other over loopback UDP with
   jumbo-sized probes (9050 bytes). Over --seconds the host's datagrams and bytes per second
   (sent and received) and the CPU of its process (the prober thread is all it runs).
2. Cost at --fleet hosts: probes grow with a host's peers, not with VPCs nor with the fleet, so
   the figure is per host, for a host with --fleet-peers peers and for the worst case, a VPC
   spanning every host (fleet - 1 peers): datagrams/s and Mbit/s from the probe schedule, CPU
   from part 1's cost per datagram; plus the bookkeeping alone (PeerBook with a simulated path)
   for fleet - 1 peers, in CPU ms per second.
3. Detection on the lab: a jumbo VPC (MTU 9000) across two lab hosts (real agents, the Linux
   driver), the switch port towards host2 lowered to MTU 1500; the time until the engine,
   refreshing the hosts' reports every 0.2 s, shows the VPC degraded with the measured MTU
   (target <= 10 s), and the time until it is healthy again after the MTU is restored.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from l2vpc.agent.overlay_probe import INTERVAL, OverlayProber, PeerBook
from l2vpc.hostconfig import HostConfig, Segment

HOST = "127.0.0.1"
JUMBO = 9000
REPLY_BYTES = 20 + 28  # a reply's header + IP/UDP


def peer_ip(i: int) -> str:
    return f"127.0.1.{i}" if i < 255 else f"127.0.{1 + i // 254}.{1 + i % 254}"


def _peers_child(count: int, port: int, ready: Any, stop: Any) -> None:
    probers = []
    for i in range(1, count + 1):
        p = OverlayProber(peer_ip(i), port=port)
        p.configure(HostConfig(f"p{i}", peer_ip(i), segments=(Segment(100, "v", JUMBO, (HOST,)),)))
        p.start()
        probers.append(p)
    ready.set()
    stop.wait(600)
    for p in probers:
        p.close()


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def part_host(peers: int, seconds: float) -> float:
    """Returns the host's CPU seconds per datagram (sent or received)."""
    probe = OverlayProber(HOST, port=0)
    port = probe._sock.getsockname()[1]
    probe.port = port
    ctx = multiprocessing.get_context("fork")
    ready, stop = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_peers_child, args=(peers, port, ready, stop), daemon=True)
    child.start()
    try:
        if not ready.wait(60):
            raise SystemExit("the peers' process did not start")
        probe.configure(HostConfig("host", HOST, segments=(
            Segment(100, "v", JUMBO, tuple(peer_ip(i) for i in range(1, peers + 1))),)))
        probe.start()
        time.sleep(2 * INTERVAL)  # every peer's phase passed once
        before, cpu0, t0 = probe.stats(), cpu_seconds(), time.monotonic()
        time.sleep(seconds)
        after, cpu1, t1 = probe.stats(), cpu_seconds(), time.monotonic()
        degraded = len(probe.observations())
    finally:
        stop.set()
        child.join(30)
        if child.is_alive():
            child.kill()
        probe.close()
    span = t1 - t0
    d = {k: after[k] - before[k] for k in after}
    sent = d["probes_sent"] + d["requests_answered"]
    received = d["replies_received"] + d["requests_answered"]  # each answer answers a request received
    out_bytes = d["probe_bytes_sent"] + d["requests_answered"] * REPLY_BYTES
    cpu = cpu1 - cpu0
    print(f"host with {peers} peers, {span:.1f} s (jumbo probes, interval {INTERVAL:g} s):")
    print(f"  datagrams sent          {sent / span:8.0f} /s")
    print(f"  datagrams received      {received / span:8.0f} /s")
    print(f"  bytes sent              {out_bytes / span / 1e6:8.2f} MB/s")
    print(f"  probes answered         {100 * d['replies_received'] / max(1, d['probes_sent']):8.1f} %")
    print(f"  agent CPU               {100 * cpu / span:8.2f} %")
    print(f"  degraded pairs          {degraded:8d}")
    return cpu / max(1, sent + received)


def part_fleet(fleet: int, fleet_peers: int, cpu_per_datagram: float, sim_seconds: float) -> None:
    print(f"cost per host at {fleet} hosts (probes grow with a host's peers, not with VPCs):")
    for label, peers in ((f"{fleet_peers} peers", fleet_peers), (f"one VPC on every host, {fleet - 1} peers",
                                                                 fleet - 1)):
        datagrams = 4 * peers / INTERVAL  # probe out + its reply in, a peer's probe in + our reply out
        mbit = peers * (JUMBO + 50 + REPLY_BYTES) * 8 / INTERVAL / 1e6
        print(f"  {label}: {datagrams:8.0f} datagrams/s, {mbit:7.1f} Mbit/s each way, "
              f"CPU {100 * cpu_per_datagram * datagrams:5.1f} %")
    book = PeerBook()
    book.configure({peer_ip(i): JUMBO + 50 for i in range(1, fleet)}, 0.0)
    now, step, c0 = 0.0, 0.05, time.process_time()
    while now < sim_seconds:
        book.finish(now)
        for ip, sizes in book.due(now):
            for size in sizes:
                book.answered(ip, size)
        now += step
    cpu = time.process_time() - c0
    print(f"  bookkeeping for {fleet - 1} peers: {1000 * cpu / sim_seconds:6.2f} ms CPU per second")


def part_lab() -> None:
    from l2vpc.embedded import open_engine
    from l2vpc.lab.lab import Lab
    from l2vpc.lab.topology import LabTopology

    with tempfile.TemporaryDirectory(prefix="bench-overlay-") as d:
        state = str(Path(d) / "state.db")
        lab = Lab(state)
        try:
            lab.up(LabTopology.build(2, ["us-east"]), driver="linux")
            engine = open_engine(state)
            try:
                vpc = engine.create("vpc", {"name": "jumbo", "region": "us-east", "mtu": JUMBO})
                for i in (1, 2):
                    engine.create("attachment", {"vpc_id": vpc.id, "workload": f"w{i}", "host": f"host{i}"})
                _, result = engine.converge()
                if not result.ok:
                    raise SystemExit(f"converge failed: {result}")
                time.sleep(3.0)

                def degraded() -> list[int]:
                    engine.refresh(timeout=2.0)
                    return [p.path_mtu for p in engine.overlay_degraded(vpc.id)]

                if degraded():
                    raise SystemExit("degraded before the MTU was lowered")
                lab.set_uplink_mtu("host2", 1500)
                t0 = time.monotonic()
                while not (mtus := degraded()) and time.monotonic() - t0 < 60:
                    time.sleep(0.2)
                detect = time.monotonic() - t0
                lab.set_uplink_mtu("host2", None)
                t1 = time.monotonic()
                while degraded() and time.monotonic() - t1 < 60:
                    time.sleep(0.2)
                heal = time.monotonic() - t1
            finally:
                close = getattr(engine.agents, "close", None)
                if close is not None:
                    close()
                engine.store.close()
        finally:
            lab.down()
    print("lab: jumbo VPC on 2 hosts, switch port towards host2 at MTU 1500:")
    print(f"  degraded detected in    {detect:8.1f} s (target <= 10 s; measured path MTU {sorted(set(mtus))})")
    print(f"  healthy again in        {heal:8.1f} s after the MTU was restored")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peers", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--fleet", type=int, default=1000)
    ap.add_argument("--fleet-peers", type=int, default=20)
    ap.add_argument("--no-lab", action="store_true", help="skip the lab part (it needs root)")
    args = ap.parse_args()
    if not 1 <= args.peers <= 2000:
        raise SystemExit("--peers: 1..2000")
    per_datagram = part_host(args.peers, args.seconds)
    part_fleet(args.fleet, args.fleet_peers, per_datagram, sim_seconds=10.0)
    if not args.no_lab:
        if os.geteuid() != 0:
            raise SystemExit("the lab part needs root (or --no-lab)")
        part_lab()
    return 0


if __name__ == "__main__":
    sys.exit(main())
