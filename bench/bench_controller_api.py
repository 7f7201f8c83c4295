"""Controller API throughput: attachment creates/s through gRPC, two controllers on one
PostgreSQL and 16 clients (target >= 2,000/s, issue 19), against two baselines in the same run.

Starts a throwaway PostgreSQL (durable: fsync on, unless --no-fsync), then for each mode:
- setup, directly through an Engine: H hosts (no agents: creates do not touch hosts) and, per
  tenant, VPCs with room for 10 attachments each (an attachment create reads its VPC's
  members, so VPC size matters; 10 is the scale bench's figure);
- API (once per count in --controllers, e.g. 1,2,3): that many `l2vpc controller run`
  processes; P client processes with T threads each (default 4 x 4 = 16 clients), client
  process i talking to controller i % N with the token of tenant i % TENANTS; every thread
  creates attachments one Create call at a time. Creates/s = all creates / (last end - first
  start); latency percentiles per call;
- baseline: the same number of creates by P processes through Engine objects on the store
  (what the API adds: gRPC, TLS, tokens, JSON, the controller's threads);
- gRPC floor: the same clients against a server whose Create parses the document and answers
  at once (no engine, no database): what gRPC, TLS and JSON alone cost in Python.

Per mode it prints the CPU each process used per create (the steadier figure on a shared
machine), the CPU other processes of the machine used meanwhile, and the ceiling that CPU
cost allows on idle cores (cores x 1000 ms / CPU ms per create).

    .venv/bin/python bench/bench_controller_api.py [--creates 4000] [--procs 4] [--threads 4]
        [--controllers 2 | 1,2,3] [--tenants 4] [--no-fsync]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _controller_bench as cb  # bench/ is on sys.path: these run as scripts
from cryptography.fernet import Fernet

from l2vpc.agent.local import LocalAgentPool
from l2vpc.controller.auth import create_token
from l2vpc.engine.api import Engine
from l2vpc.engine.secrets import SecretBox
from l2vpc.engine.store import open_store

PER_VPC = 10
TARGET = 2000  # creates/s with two controllers and 16 clients (issue 19)
HOSTS = 16
WARMUP = 10  # creates per thread before the clock starts: connections, caches


def say(msg: str) -> None:
    print(msg, flush=True)


def hosts() -> list[dict[str, str]]:
    return [{"name": f"c{i:02d}", "region": "us-east", "underlay_ip": f"10.200.0.{i + 1}"} for i in range(HOSTS)]


def plan(procs: int, threads: int, per_thread: int) -> list[list[tuple[str, str, str]]]:
    """Per worker (process, thread): its (vpc name, workload, host) creates, warm-up first."""
    out = []
    for w in range(procs * threads):
        todo = []
        for j in range(per_thread + WARMUP):
            todo.append((f"w{w}v{j // PER_VPC}", f"vm-{w}-{j}", hosts()[(w + j) % HOSTS]["name"]))
        out.append(todo)
    return out


def tenant_of(worker: int, threads: int, tenants: list[str]) -> str:
    """Every thread of a client process acts for the process's tenant."""
    return tenants[(worker // threads) % len(tenants)]


def setup(url: str, key: bytes, tenants: list[str], work: list[list[tuple[str, str, str]]], threads: int) -> None:
    store = open_store(url)
    try:
        for tenant in tenants:
            engine = Engine(store, LocalAgentPool(), tenant=tenant, secrets=SecretBox(key))
            names = sorted({v for w, todo in enumerate(work) if tenant_of(w, threads, tenants) == tenant
                            for v, _, _ in todo})
            for n in names:
                engine.create("vpc", {"name": n, "region": "us-east"})
        engine = Engine(store, LocalAgentPool(), secrets=SecretBox(key))
        for h in hosts():
            engine.register_host(h)
    finally:
        store.close()


# --- worker processes ------------------------------------------------------------------------


def _api_worker(address: str, ca: str, token: str, todos: list[list[tuple[str, str, str]]], barrier: Any,
                out: Any) -> None:
    import threading

    api = cb.Api(address, Path(ca), token)
    vpcs = {o["name"]: o["id"] for o in _list_vpcs(api)}
    spans: list[tuple[float, float]] = []
    latencies: list[float] = []
    lock = threading.Lock()

    def run(todo: list[tuple[str, str, str]], ready: threading.Barrier) -> None:
        for vpc, workload, host in todo[:WARMUP]:
            api.create("attachment", {"vpc_id": vpcs[vpc], "workload": workload, "host": host})
        ready.wait()
        lat = []
        t0 = time.time()
        for vpc, workload, host in todo[WARMUP:]:
            s = time.perf_counter()
            api.create("attachment", {"vpc_id": vpcs[vpc], "workload": workload, "host": host})
            lat.append(time.perf_counter() - s)
        with lock:
            spans.append((t0, time.time()))
            latencies.extend(lat)

    cpu: list[float] = []

    def all_warm() -> None:  # the last thread to warm up waits for the other processes
        barrier.wait(120)
        cpu.append(time.process_time())

    local = threading.Barrier(len(todos), action=all_warm)
    threads = [threading.Thread(target=run, args=(todo, local)) for todo in todos]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    api.close()
    out.put((spans, latencies, time.process_time() - cpu[0]))


def _list_vpcs(api: cb.Api) -> list[dict[str, Any]]:
    import json

    from l2vpc._proto import controller_pb2 as cpb

    reply = api.stub.List(cpb.ListRequest(kind="vpc"), metadata=api.metadata, timeout=30)
    return [json.loads(o.data_json) for o in reply.objects]


def _engine_worker(url: str, key: bytes, tenant: str, todos: list[list[tuple[str, str, str]]], barrier: Any,
                   out: Any) -> None:
    store = open_store(url)
    engine = Engine(store, LocalAgentPool(), tenant=tenant, secrets=SecretBox(key))
    vpcs = {v.name: v.id for v in engine.list("vpc")}
    warm = [c for t in todos for c in t[:WARMUP]]
    for vpc, workload, host in warm:
        engine.create("attachment", {"vpc_id": vpcs[vpc], "workload": workload, "host": host})
    barrier.wait(120)
    cpu = time.process_time()
    lat = []
    t0 = time.time()
    for vpc, workload, host in (c for t in todos for c in t[WARMUP:]):
        s = time.perf_counter()
        engine.create("attachment", {"vpc_id": vpcs[vpc], "workload": workload, "host": host})
        lat.append(time.perf_counter() - s)
    out.put(([(t0, time.time())], lat, time.process_time() - cpu))
    store.close()


def _collect(procs: list[multiprocessing.process.BaseProcess], out: Any) -> tuple[float, list[float], int, float]:
    results = [out.get(timeout=1800) for _ in procs]
    for p in procs:
        p.join(60)
        if p.exitcode != 0:
            raise SystemExit(f"a worker failed (exit code {p.exitcode})")
    spans = [s for r in results for s in r[0]]
    latencies = sorted(x for r in results for x in r[1])
    start, end = min(s for s, _ in spans), max(e for _, e in spans)
    return len(latencies) / (end - start), latencies, len(latencies), sum(r[2] for r in results)


def _pct(latencies: list[float], q: float) -> float:
    return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000


# --- the gRPC floor: the same calls to a server that does nothing --------------------------------


def _floor_server(pki: str, ready: Any, stop: Any) -> None:
    """A Controller server over the same TLS whose Create parses the document and answers at
    once: what gRPC, TLS and JSON cost a create in Python, without the engine or the database."""
    import json
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    from l2vpc._proto import controller_pb2 as cpb
    from l2vpc._proto import controller_pb2_grpc as cpb_grpc

    class Floor(cpb_grpc.ControllerServicer):
        def Create(self, request: Any, context: Any) -> Any:
            context.invocation_metadata()
            data = json.loads(request.data_json)
            return cpb.ObjectReply(kind=request.kind, id="att-0", data_json=json.dumps(data))

        def List(self, request: Any, context: Any) -> Any:
            return cpb.ListReply(objects=[cpb.ObjectReply(kind="vpc", id=v, data_json=json.dumps(
                {"name": v, "id": v})) for v in ready[1]])

    server = grpc.server(ThreadPoolExecutor(max_workers=32))
    cpb_grpc.add_ControllerServicer_to_server(Floor(), server)
    d = Path(pki)
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(
        [((d / "controller.key").read_bytes(), (d / "controller.pem").read_bytes())]))
    server.start()
    ready[0].put(f"127.0.0.1:{port}")
    stop.wait()
    server.stop(0)


def _machine_busy() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--creates", type=int, default=4000, help="measured creates in total (default 4000)")
    p.add_argument("--procs", type=int, default=4, help="client processes (default 4)")
    p.add_argument("--threads", type=int, default=4, help="threads per client process (default 4)")
    p.add_argument("--controllers", default="2",
                   help="controllers sharing the database, or a list to compare: 1,2,3 (default 2)")
    p.add_argument("--tenants", type=int, default=4)
    p.add_argument("--no-fsync", action="store_true")
    args = p.parse_args()
    try:
        counts = [int(c) for c in args.controllers.split(",")]
    except ValueError:
        counts = []
    if not counts or any(not 1 <= c <= 3 for c in counts):
        p.error(f"--controllers: one or more of 1, 2, 3 separated by commas, got {args.controllers!r}")
    per_thread = -(-args.creates // (args.procs * args.threads))
    tenants = [f"tenant{i}" for i in range(args.tenants)]
    key = Fernet.generate_key()
    ctx = multiprocessing.get_context("spawn")
    cores = os.cpu_count() or 1

    with cb.postgres(durable=not args.no_fsync) as pg, tempfile.TemporaryDirectory(prefix="l2vpc-api-") as tmp:
        d = Path(tmp)
        cb.make_pki(d / "pki")
        say(f"PostgreSQL {'without fsync' if args.no_fsync else 'durable (fsync on)'}; {args.procs} client processes "
            f"x {args.threads} threads, {args.tenants} tenants, {PER_VPC} attachments per VPC, {HOSTS} hosts; "
            f"{cores} cores, load average {os.getloadavg()[0]:.1f} at the start")
        results: dict[str, float] = {}
        per_create: dict[str, float] = {}
        modes = [f"api{c}" for c in counts] + ["engine", "floor"]
        for mode in modes:
            db = f"{mode}_bench"
            url = pg.create_database(db)
            work = plan(args.procs, args.threads, per_thread)
            setup(url, key, tenants, work, args.threads)
            barrier, out = ctx.Barrier(args.procs + 1), ctx.Queue()
            cluster = cb.Cluster(d / mode, cb.env(key.decode()), d / "pki")
            cluster.directory.mkdir()
            floor: multiprocessing.process.BaseProcess | None = None
            stop_floor = ctx.Event()
            try:
                procs: list[multiprocessing.process.BaseProcess] = []
                pids: dict[str, int] = {}
                if mode.startswith("api"):
                    store = open_store(url)
                    try:
                        tokens = [create_token(store, "tenant", tenant=t)[1] for t in tenants]
                    finally:
                        store.close()
                    addresses = [cb.start_controller(cluster, url, f"c{i + 1}", heartbeat_interval=2, down_after=10,
                                                     resync_interval=3600)[1] for i in range(int(mode[3:]))]
                    for i in range(args.procs):
                        todos = work[i * args.threads:(i + 1) * args.threads]
                        token = tokens[tenants.index(tenant_of(i * args.threads, args.threads, tenants))]
                        procs.append(ctx.Process(target=_api_worker, args=(
                            addresses[i % len(addresses)], str(d / "pki" / "ca.pem"), token, todos, barrier, out)))
                    pids = {f"controller {c.name}": c.pid for c in cluster.procs}
                elif mode == "floor":
                    names = sorted({v for todo in work for v, _, _ in todo})
                    ready = (ctx.Queue(), names)
                    floor = ctx.Process(target=_floor_server, args=(str(d / "pki"), ready, stop_floor))
                    floor.start()
                    address = ready[0].get(timeout=60)
                    procs = [ctx.Process(target=_api_worker, args=(
                        address, str(d / "pki" / "ca.pem"), "floor", work[i * args.threads:(i + 1) * args.threads],
                        barrier, out)) for i in range(args.procs)]
                    assert floor.pid is not None
                    pids = {"gRPC server": floor.pid}
                else:
                    for i in range(args.procs):
                        todos = work[i * args.threads:(i + 1) * args.threads]
                        tenant = tenant_of(i * args.threads, args.threads, tenants)
                        procs.append(ctx.Process(target=_engine_worker, args=(url, key, tenant, todos, barrier, out)))
                for proc in procs:
                    proc.start()
                barrier.wait(300)
                if mode != "floor":
                    pids["postgres"] = cb.postmaster_pid(pg)
                before = {n: cb.tree_ticks(pid) for n, pid in pids.items()}
                busy0 = _machine_busy()
                t0 = time.monotonic()
                rate, latencies, n, client_cpu = _collect(procs, out)
                elapsed = time.monotonic() - t0
                busy1 = _machine_busy()
                seconds = {name: (cb.tree_ticks(pid) - before[name]) / cb.CLK_TCK for name, pid in pids.items()}
                seconds["clients"] = client_cpu
                ours = sum(seconds.values())
                machine = (busy1[0] - busy0[0]) / cb.CLK_TCK
                others = max(0.0, machine - ours)
                results[mode] = rate
                per_create[mode] = ours / n * 1000
                what = {"engine": "baseline: Engine on the store", "floor": "gRPC floor (server answers at once)"}.get(
                    mode, f"API, {mode[3:]} controller(s)")
                say(f"{what}: {n} creates at {rate:.0f}/s; latency p50 {_pct(latencies, 0.5):.1f} ms, "
                    f"p99 {_pct(latencies, 0.99):.1f} ms; CPU " + ", ".join(
                        f"{k} {100 * v / elapsed:.0f}%" for k, v in seconds.items()))
                say(f"  CPU per create [{mode}]: {per_create[mode]:.2f} ms (" + ", ".join(
                    f"{k} {v / n * 1000:.2f}" for k, v in seconds.items()) + f"); other processes on the machine "
                    f"used {100 * others / elapsed:.0f}% of one core meanwhile")
            finally:
                stop_floor.set()
                if floor is not None:
                    floor.join(30)
                cluster.stop()
                pg.drop_database(db)
        main_mode = f"api{counts[-1] if 2 not in counts else 2}"
        verdict = "OK" if results[main_mode] >= TARGET else "UNDER TARGET"
        say(f"API CREATES: {results[main_mode]:.0f}/s with {main_mode[3:]} controller(s) (target >= {TARGET}/s: "
            f"{verdict}); baseline (Engine directly, {args.procs} processes): {results['engine']:.0f}/s")
        for mode in modes:
            say(f"  ceiling on {cores} idle cores [{mode}]: {cores * 1000 / per_create[mode]:.0f}/s "
                f"= {cores} x 1000 ms / {per_create[mode]:.2f} ms of CPU per create")
    return 0


if __name__ == "__main__":
    sys.exit(main())
