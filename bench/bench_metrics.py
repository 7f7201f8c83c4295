"""Metrics cost: a scrape of a controller serving 1,000 hosts (target <= 100 ms and < 1 MB), and
the API create rate with metrics on vs off in the same run (target: metrics cost <= 5 %).

Starts a throwaway PostgreSQL (l2vpc/testing/postgres.py), then:
1. scrape: hosts and one attachment per host written through an Engine on the store (as
   bench_controller_scale.py), one controller process with `--metrics-address`, F fleet
   processes (`l2vpc agent fleet`, memory driver) carrying the hosts, which register and
   heartbeat; one Converge, so every host has its converge histogram; then S scrapes of
   /metrics: median and worst time, size; and the status page (/status) for information;
2. API creates: per round, two fresh databases set up alike and two controllers, one with
   metrics and one without; P client processes x T threads create attachments through each
   (bench_controller_api.py's workers), the order of the two alternating between rounds.
   Cost = 1 - (creates/s with metrics) / (creates/s without), over all rounds; and, steadier on
   a shared machine, the controller's CPU per create with metrics vs without.

    .venv/bin/python bench/bench_metrics.py [--hosts 1000] [--fleets 4] [--scrapes 20]
        [--creates 1000] [--rounds 4] [--procs 2] [--threads 4] [--no-fsync]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import _controller_bench as cb  # bench/ is on sys.path: these run as scripts
import bench_controller_api as api_bench
import bench_controller_scale as scale
from cryptography.fernet import Fernet

from l2vpc.controller.auth import create_token
from l2vpc.engine.store import open_store

TENANT = scale.TENANT


def say(msg: str) -> None:
    print(msg, flush=True)


def fetch(url: str) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as r:
        body = r.read()
    return time.perf_counter() - t0, body


def scrape_bench(args: argparse.Namespace, pg: object, d: Path, key: bytes) -> None:
    url = pg.create_database("metrics_scrape")  # type: ignore[attr-defined]
    fleet_addresses = [f"127.0.0.1:{cb.free_port()}" for _ in range(args.fleets)]
    fleets = scale.host_docs(args.hosts, args.fleets, fleet_addresses)
    store = open_store(url)
    try:
        tokens = {h["name"]: create_token(store, "agent", host=h["name"])[1] for f in fleets for h in f}
        admin = create_token(store, "admin")[1]
        tenant = create_token(store, "tenant", tenant=TENANT)[1]
    finally:
        store.close()
    vpc_ids = scale.prepare(url, key, fleets, args.hosts, 10)
    ca = cb.make_pki(d / "pki")
    cluster = cb.Cluster(d, cb.env(key.decode()), d / "pki")
    metrics_address = f"127.0.0.1:{cb.free_port()}"
    try:
        listen = f"127.0.0.1:{cb.free_port()}"
        cb.start_controller(cluster, url, "c1", heartbeat_interval=2, down_after=30, resync_interval=3600,
                            listen=listen, extra=("--metrics-address", metrics_address))
        for j, docs in enumerate(fleets):
            cb.start_fleet(cluster, f"fleet{j + 1}", docs, tokens, [listen], ca, fleet_addresses[j])
        admin_api = cb.Api(listen, d / "pki" / "ca.pem", admin)
        t0 = time.monotonic()
        started_unix = time.time()
        while True:
            for proc in cluster.procs:
                proc.check()
            seen = sum(1 for h in admin_api.status().hosts if h.last_seen_unix >= started_unix and h.status == "up")
            if seen == args.hosts:
                break
            if time.monotonic() - t0 > 300:
                raise SystemExit(f"only {seen} of {args.hosts} hosts registered after 300s")
            time.sleep(0.5)
        _, used = scale.add_attachments(url, key, fleets, args.hosts, 10, vpc_ids)
        done = cb.Api(listen, d / "pki" / "ca.pem", tenant).converge(timeout=600)
        if done.failures:
            raise SystemExit(f"converge: {len(done.failures)} hosts failed")
        say(f"{args.hosts} hosts registered and heartbeating; {len(used)} hosts converged one attachment each")
        base = f"http://{metrics_address}"
        times, sizes = [], []
        for i in range(args.scrapes + 1):
            seconds, body = fetch(f"{base}/metrics")
            if i:  # the first one warms up (imports, the first store read)
                times.append(seconds)
                sizes.append(len(body))
            time.sleep(0.05)
        text = body.decode()
        series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
        hist = sum(1 for line in text.splitlines() if line.startswith("l2vpc_host_converge_duration_seconds_count"))
        if hist < len(used):
            raise SystemExit(f"only {hist} hosts have a converge histogram, expected {len(used)}")
        median, worst = statistics.median(times) * 1000, max(times) * 1000
        ok = median <= 100 and max(sizes) < 1_000_000
        say(f"SCRAPE: {args.hosts} hosts, {series} series: median {median:.1f} ms, worst {worst:.1f} ms, "
            f"{max(sizes) / 1e6:.3f} MB (target <= 100 ms and < 1 MB: {'OK' if ok else 'OVER TARGET'})")
        seconds, page = fetch(f"{base}/status")
        say(f"status page: {seconds * 1000:.0f} ms, {len(page) / 1e6:.3f} MB for {args.hosts} hosts")
        admin_api.close()
    finally:
        cluster.stop()


def create_rate(args: argparse.Namespace, pg: object, d: Path, key: bytes, metrics: bool, round_: int,
                ctx: multiprocessing.context.BaseContext) -> tuple[float, float]:
    """(seconds the creates took, controller CPU seconds meanwhile)."""
    db = f"api_{'on' if metrics else 'off'}_{round_}"
    url = pg.create_database(db)  # type: ignore[attr-defined]
    tenants = [TENANT]
    per_thread = -(-args.creates // (args.procs * args.threads))
    work = api_bench.plan(args.procs, args.threads, per_thread)
    api_bench.setup(url, key, tenants, work, args.threads)
    store = open_store(url)
    try:
        token = create_token(store, "tenant", tenant=TENANT)[1]
    finally:
        store.close()
    cluster = cb.Cluster(d / db, cb.env(key.decode()), d / "pki")
    cluster.directory.mkdir()
    try:
        extra = ("--metrics-address", f"127.0.0.1:{cb.free_port()}") if metrics else ()
        controller, address = cb.start_controller(cluster, url, "c1", heartbeat_interval=2, down_after=10,
                                            resync_interval=3600, extra=extra)
        barrier, out = ctx.Barrier(args.procs + 1), ctx.Queue()  # type: ignore[attr-defined]
        procs = [ctx.Process(target=api_bench._api_worker, args=(  # type: ignore[attr-defined]
            address, str(d / "pki" / "ca.pem"), token, work[i * args.threads:(i + 1) * args.threads], barrier, out))
            for i in range(args.procs)]
        for worker in procs:
            worker.start()
        barrier.wait(300)
        ticks = cb.tree_ticks(controller.pid)
        rate, latencies, n, _ = api_bench._collect(procs, out)
        cpu = (cb.tree_ticks(controller.pid) - ticks) / cb.CLK_TCK
        say(f"  round {round_ + 1}, metrics {'on ' if metrics else 'off'}: {n} creates at {rate:.0f}/s, "
            f"p50 {api_bench._pct(latencies, 0.5):.1f} ms, controller CPU {cpu / n * 1000:.2f} ms per create")
        return n / rate, cpu
    finally:
        cluster.stop()
        pg.drop_database(db)  # type: ignore[attr-defined]


def bookkeeping(d: Path, calls: int = 20_000) -> float:
    """Microseconds the API's metrics add to one call (what `observe` does per call), measured
    in this process: steadier than the rates above on a busy machine."""
    from l2vpc.controller.metrics import ControllerMetrics

    store = open_store(str(d / "bookkeeping.db"))
    try:
        metrics = ControllerMetrics(store, "bench")
        methods = ("Create", "Get", "Heartbeat", "Update")
        t0 = time.perf_counter()
        for i in range(calls):
            metrics.api_call(methods[i % 4], "OK", 0.002)
        return (time.perf_counter() - t0) / calls * 1e6
    finally:
        store.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hosts", type=int, default=1000)
    p.add_argument("--fleets", type=int, default=4)
    p.add_argument("--scrapes", type=int, default=20)
    p.add_argument("--creates", type=int, default=1000, help="measured creates per round and mode (default 1000)")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--procs", type=int, default=2, help="client processes (default 2)")
    p.add_argument("--threads", type=int, default=4, help="threads per client process (default 4)")
    p.add_argument("--no-fsync", action="store_true")
    args = p.parse_args()
    key = Fernet.generate_key()
    ctx = multiprocessing.get_context("spawn")
    with cb.postgres(durable=not args.no_fsync) as pg, tempfile.TemporaryDirectory(prefix="l2vpc-metrics-") as tmp:
        d = Path(tmp)
        say(f"PostgreSQL {'without fsync' if args.no_fsync else 'durable (fsync on)'}")
        scrape_bench(args, pg, d, key)
        seconds = {False: 0.0, True: 0.0}
        cpu = {False: 0.0, True: 0.0}
        counts = 0
        for r in range(args.rounds):
            for metrics in ((False, True) if r % 2 == 0 else (True, False)):
                took, used = create_rate(args, pg, d, key, metrics, r, ctx)
                seconds[metrics] += took
                cpu[metrics] += used
            counts += -(-args.creates // (args.procs * args.threads)) * args.procs * args.threads
        off, on = counts / seconds[False], counts / seconds[True]
        cost = 100.0 * (1 - on / off)
        cpu_cost = 100.0 * (cpu[True] / cpu[False] - 1) if cpu[False] else 0.0
        say(f"API creates: metrics off {off:.0f}/s, metrics on {on:.0f}/s over {args.rounds} rounds")
        say(f"controller CPU per create: metrics off {cpu[False] / counts * 1000:.2f} ms, on "
            f"{cpu[True] / counts * 1000:.2f} ms ({cpu_cost:+.1f}%)")
        per_call = bookkeeping(d)
        say(f"metrics bookkeeping: {per_call:.1f} us per API call ({100 * per_call / 1000 / (cpu[False] / counts * 1000):.2f}% "
            "of the controller's CPU per create without metrics)")
        say(f"METRICS COST: {cost:.1f}% of the create rate (target <= 5%: {'OK' if cost <= 5 else 'OVER TARGET'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
