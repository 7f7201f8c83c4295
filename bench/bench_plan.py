"""Planner benchmark: full plan of 1,000 hosts / 5,000 VPCs / 50,000 attachments, and an
incremental re-plan after one attachment changes.

Targets (issue 2): full plan ≤ 2 s and ≤ 500 MB RSS; incremental ≤ 20 ms.
Baseline in the same run: the time to merely copy every host config once (dataclasses.replace),
so the ratio shows the planner's cost relative to touching the data at all on this machine.

    python bench/bench_plan.py [--hosts 1000 --vpcs 5000 --attachments 50000]
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import statistics
import time
from dataclasses import replace

from l2vpc.engine.incremental import IncrementalPlanner
from l2vpc.engine.model import VPC, Attachment, Host
from l2vpc.engine.planner import plan
from l2vpc.engine.topology import Topology, host_configs


def build(hosts: int, vpcs: int, attachments: int, seed: int = 1) -> Topology:
    rnd = random.Random(seed)
    topo = Topology()
    for i in range(hosts):
        h = Host(name=f"host{i + 1}", region=f"r{i % 4}", underlay_ip=f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}")
        topo.hosts[h.name] = h
    host_list = list(topo.hosts.values())
    by_region: dict[str, list[Host]] = {}
    for h in host_list:
        by_region.setdefault(h.region, []).append(h)
    vpc_list = []
    for i in range(vpcs):
        v = VPC(id=f"vpc-{i:08x}", name=f"vpc{i}", region=f"r{i % 4}", mtu=rnd.choice((1500, 9000)),
                cidr=f"10.{(i >> 8) & 255}.{i & 255}.0/24", vni=4096 + i)
        topo.vpcs[v.id] = v
        vpc_list.append(v)
    # Each workload attaches up to 10 VPCs of its region and lives on one host.
    n = 0
    w = 0
    while n < attachments:
        region = f"r{w % 4}"
        host = rnd.choice(by_region[region])
        region_vpcs = [v for v in vpc_list[w % 4 :: 4]][:1250]
        for v in rnd.sample(region_vpcs, k=min(rnd.randint(1, 10), attachments - n)):
            a = Attachment(id=f"att-{n:08x}", vpc_id=v.id, workload=f"w{w}", host=host.name,
                           ip_mode="static", ip_address=f"{v.cidr.rsplit('.', 1)[0]}.{(n % 250) + 2}/24",
                           mac_address=f"02:4c:32:{(n >> 16) & 255:02x}:{(n >> 8) & 255:02x}:{n & 255:02x}",
                           interface_name="net1")
            topo.attachments[a.id] = a
            n += 1
        w += 1
    return topo


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, repeat: int = 3):  # type: ignore[no-untyped-def]
    times = []
    out = None
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--vpcs", type=int, default=5000)
    ap.add_argument("--attachments", type=int, default=50000)
    args = ap.parse_args()
    t = time.perf_counter()
    topo = build(args.hosts, args.vpcs, args.attachments)
    print(f"topology built: {len(topo.hosts)} hosts, {len(topo.vpcs)} VPCs, {len(topo.attachments)} attachments "
          f"in {time.perf_counter() - t:.2f}s")

    desired = host_configs(topo)
    baseline, _ = timed(lambda: {h: replace(c, generation=1) for h, c in desired.items()})

    t_full_empty, p = timed(lambda: plan(host_configs(topo), {}))
    print(f"full plan from empty hosts: {t_full_empty * 1000:.0f} ms, {len(p.changes())} changes")
    actual = {h: replace(c, generation=1) for h, c in desired.items()}
    t_full_steady, p2 = timed(lambda: plan(host_configs(topo), actual))
    assert p2.is_empty
    print(f"full plan, hosts converged (no-op):  {t_full_steady * 1000:.0f} ms")
    print(f"baseline (copy every host config once): {baseline * 1000:.1f} ms; "
          f"ratio full/baseline: {t_full_empty / baseline:.0f}x")
    print(f"peak RSS: {rss_mb():.0f} MB (target <= 500)")

    inc = IncrementalPlanner(topo, actual)
    samples = []
    rnd = random.Random(7)
    keys = list(topo.attachments)
    for i in range(50):
        a = topo.attachments[rnd.choice(keys)]
        changed = a.model_copy(update={"ip_address": None, "ip_mode": "none"} if i % 2 else {"mac_address": f"02:aa:00:00:{i // 256:02x}:{i % 256:02x}"})
        t = time.perf_counter()
        hp = inc.update_attachment(changed)
        samples.append(time.perf_counter() - t)
        assert any(h.changes for h in hp.values())
    print(f"incremental plan after one attachment change: median {statistics.median(samples) * 1000:.2f} ms, "
          f"max {max(samples) * 1000:.2f} ms over {len(samples)} changes (target <= 20 ms)")
    ok = t_full_empty <= 2 and rss_mb() <= 500 and statistics.median(samples) <= 0.020
    print("TARGETS MET" if ok else "TARGETS MISSED")


if __name__ == "__main__":
    main()
