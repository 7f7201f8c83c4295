"""Store speed on PostgreSQL: attachment writes/s in one and in two processes.

Prints, for 1 and 2 writer processes (each its own PostgresStore, as two controllers would be):
- store writes/s: one transaction per write, the create of a ~400-byte attachment document plus
  three reserve() calls (the documents and pools of bench/bench_store.py);
- engine creates/s: `Engine.create("attachment", ...)` per write (validation, allocation of
  interface name and MAC from counters, membership), the figure issue 6 targets (>= 500/s with
  two controllers);
- the floor: empty transactions/s (BEGIN + the write lock + COMMIT).

Transactions are serial across processes (see l2vpc/engine/store/postgres.py), so a second
process adds little: it overlaps only its client-side work with the other's transaction.

By default a throwaway server is started (l2vpc/testing/postgres.py) with fsync on, so every
commit waits for its WAL flush as in production; `--url` uses an existing database instead
(a fresh schema per run is created in it and dropped afterwards).

    .venv/bin/python bench/bench_store_postgres.py [--writes 2000] [--url postgresql://...] [--no-fsync]
"""

from __future__ import annotations

import argparse
import multiprocessing
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_store import attachment, reserves  # the same documents as the SQLite bench

from l2vpc.engine.api import Engine
from l2vpc.engine.store.postgres import PostgresStore
from l2vpc.testing import postgres as pg_server

HOSTS = [{"name": f"c{i}", "region": "us-east", "underlay_ip": f"10.200.0.{i + 1}"} for i in range(4)]
PER_VPC = 10  # attachments per VPC: the engine reads a VPC's members on every create
WARMUP = 20
ID_SPAN = 1_000_000  # object numbers of one worker process: [w * ID_SPAN, (w + 1) * ID_SPAN)


@contextmanager
def schema(base_url: str) -> Iterator[str]:
    """A fresh schema in the database; yields a URL whose search_path starts with it."""
    name = f"bench_{secrets.token_hex(4)}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    sep = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{sep}options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


# --- workers (run in their own processes) ---------------------------------------------------


def empty_tx(url: str, start: int, n: int) -> None:
    with PostgresStore(url) as store:
        for _ in range(n):
            with store.transaction():
                pass


def store_writes(url: str, start: int, n: int) -> None:
    with PostgresStore(url) as store:
        for i in range(start, start + n):
            doc = attachment(i)
            with store.transaction() as tx:
                tx.create("attachment", doc["id"], doc, tenant="t1")
                for pool, value in reserves(i, doc):
                    tx.reserve(pool, value, doc["id"])


def engine_creates(url: str, start: int, n: int) -> None:
    worker, offset = divmod(start, ID_SPAN)
    prefix = f"w{worker}warm" if offset else f"w{worker}v"  # VPCs of this worker (see prepare)
    with PostgresStore(url) as store:
        engine = Engine(store)
        vpcs = {v.name: v.id for v in engine.list("vpc") if v.name.startswith(prefix)}
        for j, i in enumerate(range(start, start + n)):
            engine.create("attachment", {"vpc_id": vpcs[f"{prefix}{j // PER_VPC}"], "workload": f"vm-{i:07d}",
                                         "host": HOSTS[i % len(HOSTS)]["name"]})


WORKERS: dict[str, Callable[[str, int, int], None]] = {
    "empty transactions": empty_tx,
    "store writes": store_writes,
    "engine creates": engine_creates,
}


def _child(name: str, url: str, worker: int, n: int, barrier: Any, out: Any) -> None:
    fn = WORKERS[name]
    fn(url, worker * ID_SPAN + ID_SPAN - 100, WARMUP)  # imports, connections, prepared statements
    barrier.wait(60)
    t0 = time.time()
    fn(url, worker * ID_SPAN, n)
    out.put((t0, time.time()))


def prepare(name: str, url: str, procs: int, n: int) -> None:
    """For engine creates: hosts, and per worker w the VPCs w<w>v<k> (PER_VPC attachments each)
    and w<w>warm<k> for its warm-up."""
    if name != "engine creates":
        return
    with PostgresStore(url) as store:
        engine = Engine(store)
        for h in HOSTS:
            engine.register_host(h)
        for w in range(procs):
            for prefix, count in ((f"w{w}v", n), (f"w{w}warm", WARMUP)):
                for k in range(-(-count // PER_VPC)):
                    engine.create("vpc", {"name": f"{prefix}{k}", "region": "us-east", "cidr": "10.0.0.0/16"})


def run(name: str, base_url: str, procs: int, n: int) -> float:
    """Total writes/s of `procs` processes doing `n` writes each, started together."""
    ctx = multiprocessing.get_context("spawn")
    with schema(base_url) as url:
        prepare(name, url, procs, n)
        barrier, out = ctx.Barrier(procs), ctx.Queue()
        ps = [ctx.Process(target=_child, args=(name, url, w, n, barrier, out)) for w in range(procs)]
        for p in ps:
            p.start()
        spans = [out.get(timeout=600) for _ in ps]
        for p in ps:
            p.join(60)
            if p.exitcode != 0:
                raise SystemExit(f"{name}: a worker failed (exit code {p.exitcode})")
    start, end = min(s for s, _ in spans), max(e for _, e in spans)
    return procs * n / (end - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--writes", type=int, default=2000, help="writes per process and run")
    ap.add_argument("--url", help="an existing database (default: start a throwaway server)")
    ap.add_argument("--no-fsync", action="store_true", help="throwaway server without fsync (as in tests)")
    args = ap.parse_args()
    if not 0 < args.writes < ID_SPAN - 100:
        raise SystemExit(f"--writes must be between 1 and {ID_SPAN - 101}")

    def report(base_url: str, where: str) -> None:
        print(f"PostgreSQL store, {where}; {args.writes} writes per process, one transaction each; "
              f"engine: {PER_VPC} attachments per VPC")
        print(f"{'':22} {'1 process':>12} {'2 processes':>12}")
        for name in WORKERS:
            one = run(name, base_url, 1, args.writes)
            two = run(name, base_url, 2, args.writes)
            print(f"{name + '/s':22} {one:12,.0f} {two:12,.0f}", flush=True)

    if args.url:
        report(args.url, "given database")
        return
    reason = pg_server.missing_reason()
    if reason:
        raise SystemExit(reason)
    with pg_server.running_server(durable=not args.no_fsync) as pg:
        url = pg.create_database("bench")
        report(url, f"throwaway server on 127.0.0.1, fsync {'off' if args.no_fsync else 'on'}")


if __name__ == "__main__":
    main()
