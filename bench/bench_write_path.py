"""The write path at fleet scale (issue 19): topology files and the engine's batch writes.

1. topology file: a generated JSON file of H hosts, V VPCs (half of them with a DHCP block)
   and A static attachments (workloads with two NICs each, on two VPCs of their region), run
   as the commands are (`l2vpc plan -f` from an empty SQLite state, `l2vpc apply -f --agents
   memory`, the no-op `l2vpc plan -f` after it, then once more without the record of the
   no-op the apply left), each a process of its own. Targets: plan <= 2 s, apply <= 4 s,
   re-plan <= 1 s. Baseline: a bulk insert of the file's documents
   (one row each, JSON text) into SQLite in one transaction.
2. engine: the same attachments written through the Engine in one transaction
   (`Engine.create_many`), on SQLite and on a throwaway PostgreSQL, hosts and VPCs written
   before the clock starts. Target: <= 2 s on each. Baseline: a plain multi-row INSERT of the
   same documents into a table of the same database; the ratio target is <= 3x.
3. big VPC: attachments created into a VPC that holds --vpc-size (5,000) already, against the same
   creates into an empty VPC (the baseline), one transaction each and in batches of 4, on SQLite
   and PostgreSQL: a create must cost the same whatever the size of its VPC (Pods joining a big
   VPC; the ratio should stay near 1x).

    .venv/bin/python bench/bench_write_path.py [--hosts 1000] [--vpcs 1000] [--attachments 10000]
        [--vpc-size 5000] [--no-postgres] [--no-fsync] [--only file|engine|big-vpc]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from l2vpc.agent.local import LocalAgentPool
from l2vpc.engine.api import Engine
from l2vpc.engine.secrets import SecretBox
from l2vpc.engine.store import open_store
from l2vpc.testing import postgres as pg_server

ROOT = Path(__file__).resolve().parents[1]
REGIONS = 4
KEY = Fernet.generate_key()
CLI = [sys.executable, "-c", "import sys; from l2vpc.cli import main; sys.exit(main())"]


def topology(hosts: int, vpcs: int, attachments: int) -> dict[str, list[dict[str, Any]]]:
    """The file: VPC k is in region k % REGIONS with cidr 10.<k>/24; attachments come in
    pairs, one workload on two VPCs of the same region, on one host of that region."""
    host_docs = [{"name": f"h{i:04d}", "region": f"r{i % REGIONS}", "role": "compute",
                  "underlay_ip": f"10.255.{i // 250}.{i % 250 + 1}"} for i in range(hosts)]
    vpc_docs: list[dict[str, Any]] = []
    for k in range(vpcs):
        prefix = f"10.{k // 256}.{k % 256}"
        doc: dict[str, Any] = {"name": f"v{k:05d}", "region": f"r{k % REGIONS}", "cidr": f"{prefix}.0/24"}
        if k % 2:
            doc["dhcp"] = {"range_start": f"{prefix}.100", "range_end": f"{prefix}.200", "gateway": f"{prefix}.1"}
        vpc_docs.append(doc)
    by_region = [[h["name"] for h in host_docs if h["region"] == f"r{r}"] for r in range(REGIONS)]
    per_vpc = -(-attachments // vpcs)
    groups: list[list[int]] = []  # VPCs of one region, two by two: their workloads attach both
    for r in range(REGIONS):
        mine = list(range(r, vpcs, REGIONS))
        groups += [mine[i:i + 2] for i in range(0, len(mine), 2)]
    att_docs: list[dict[str, Any]] = []
    w = 0
    for group in groups:
        region = group[0] % REGIONS
        for n in range(per_vpc):
            host = by_region[region][w % len(by_region[region])]
            for v in group:
                if len(att_docs) < attachments:
                    att_docs.append({"vpc": f"v{v:05d}", "workload": f"w{w:05d}", "host": host, "ip_mode": "static",
                                     "ip_address": f"10.{v // 256}.{v % 256}.{10 + n}/24"})
            w += 1
    return {"hosts": host_docs, "vpcs": vpc_docs, "attachments": att_docs}


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def cli(*args: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    run = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"l2vpc {' '.join(args)} failed ({run.returncode}):\n{run.stderr[-3000:]}")


def sqlite_bulk_insert(path: Path, docs: list[dict[str, Any]]) -> float:
    """The baseline: every document as one JSON row, one transaction, one executemany."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE docs (id TEXT PRIMARY KEY, data TEXT NOT NULL)")
        t = time.perf_counter()
        with conn:
            conn.executemany("INSERT INTO docs VALUES (?, ?)", ((str(i), json.dumps(d)) for i, d in enumerate(docs)))
        return time.perf_counter() - t
    finally:
        conn.close()


def topology_file_part(args: argparse.Namespace, tmp: Path) -> None:
    doc = topology(args.hosts, args.vpcs, args.attachments)
    file = tmp / "topology.json"
    file.write_text(json.dumps(doc))
    docs = [d for section in doc.values() for d in section]
    print(f"topology file: {len(doc['hosts'])} hosts, {len(doc['vpcs'])} VPCs, {len(doc['attachments'])} static "
          f"attachments ({file.stat().st_size // 1024} KiB JSON)", flush=True)
    baseline = sqlite_bulk_insert(tmp / "bulk.db", docs)
    print(f"baseline: bulk insert of the {len(docs):,} documents into SQLite: {baseline:.3f} s", flush=True)
    state = str(tmp / "state.db")
    figures = (("plan from empty", ("plan", "-f", str(file), "--state", state), 2.0),
               ("apply --agents memory", ("apply", "-f", str(file), "--state", state, "--agents", "memory"), 4.0),
               ("re-plan (no-op)", ("plan", "-f", str(file), "--state", state), 1.0),
               # The same without the no-op record the apply left (embedded/plan_record.py): what a
               # plan costs when it must compute (after any change), tracked beside the target.
               ("re-plan (no-op) computed in full, no record", ("plan", "-f", str(file), "--state", state), 1.0))
    for what, cmd, target in figures:
        if "no record" in what:
            Path(state + ".noop-plan").unlink(missing_ok=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        seconds = timed(partial(cli, *cmd))
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        # CPU beside wall time: the machine is shared, and a busy neighbour shows in the wall time only.
        print(f"l2vpc {what}: {seconds:.2f} s (target <= {target:g} s; {seconds / baseline:.0f}x the bulk insert; "
              f"cpu {cpu:.2f} s)", flush=True)


def engine_setup(url: str, args: argparse.Namespace) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Hosts and VPCs in the store; the attachments to write (vpc_id filled in)."""
    doc = topology(args.hosts, args.vpcs, args.attachments)
    with open_store(url) as store:
        engine = Engine(store, LocalAgentPool(), secrets=SecretBox(KEY))
        for h in doc["hosts"]:
            engine.register_host(h)
        ids = {v["name"]: engine.create("vpc", v).id for v in doc["vpcs"]}
    atts = [{**{k: v for k, v in a.items() if k != "vpc"}, "vpc_id": ids[a["vpc"]]} for a in doc["attachments"]]
    return ids, atts


def engine_write(url: str, atts: list[dict[str, Any]]) -> tuple[float, float]:
    """Seconds of wall time and of this process's CPU the write took."""
    with open_store(url) as store:
        engine = Engine(store, LocalAgentPool(), secrets=SecretBox(KEY))
        cpu = time.process_time()
        t = time.perf_counter()
        if hasattr(engine, "create_many"):
            results = engine.create_many("attachment", atts)
            bad = [r for r in results if isinstance(r, Exception)]
            if bad:
                raise SystemExit(f"engine write failed: {bad[0]}")
        else:
            with store.transaction() as tx:
                for a in atts:
                    engine.create_in(tx, "attachment", a)
        return time.perf_counter() - t, time.process_time() - cpu


def insert_baseline_sqlite(path: str, atts: list[dict[str, Any]]) -> float:
    conn = sqlite3.connect(path)
    try:
        conn.execute("CREATE TABLE bench_docs (id TEXT PRIMARY KEY, data TEXT NOT NULL)")
        rows = [(f"att-{i:08x}", json.dumps(a)) for i, a in enumerate(atts)]
        t = time.perf_counter()
        with conn:
            for i in range(0, len(rows), 500):  # SQLite's parameter limit: 500 rows of 2 per statement
                chunk = rows[i:i + 500]
                conn.execute("INSERT INTO bench_docs VALUES " + ", ".join(["(?, ?)"] * len(chunk)),
                             [x for r in chunk for x in r])
        return time.perf_counter() - t
    finally:
        conn.close()


def insert_baseline_postgres(url: str, atts: list[dict[str, Any]]) -> float:
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE bench_docs (id text PRIMARY KEY, data jsonb NOT NULL)")
        conn.commit()
        rows = [(f"att-{i:08x}", json.dumps(a)) for i, a in enumerate(atts)]
        t = time.perf_counter()
        with conn.transaction():
            for i in range(0, len(rows), 5000):
                chunk = rows[i:i + 5000]
                conn.execute("INSERT INTO bench_docs VALUES " + ", ".join(["(%s, %s::jsonb)"] * len(chunk)),
                             [x for r in chunk for x in r])
        return time.perf_counter() - t


def engine_part(store: str, url: str, args: argparse.Namespace, baseline: Callable[[list[dict[str, Any]]], float]) -> None:
    _, atts = engine_setup(url, args)
    base = baseline(atts)
    seconds, cpu = engine_write(url, atts)
    print(f"engine, {store}: {len(atts):,} attachments over {args.vpcs:,} VPCs / {args.hosts:,} hosts written in "
          f"{seconds:.2f} s (target <= 2 s; cpu {cpu:.2f} s)", flush=True)
    print(f"engine, {store}: baseline multi-row INSERT of the same documents {base:.3f} s; "
          f"ratio {seconds / base:.1f}x (target <= 3x)", flush=True)


def big_vpc_part(store: str, url: str, size: int) -> None:
    """Creates into a VPC already holding `size` attachments against creates into an empty one
    (same store, same hosts; both VPCs run DHCP, whose server placement looked at all members):
    CPU per create, one transaction each and in batches of 4 (the controller's group commit)."""
    with open_store(url) as st:
        engine = Engine(st, LocalAgentPool(), secrets=SecretBox(KEY))
        for i in range(20):
            engine.register_host({"name": f"b{i:02d}", "region": "big", "underlay_ip": f"10.254.0.{i + 1}"})

        def vpc(name: str, second: int) -> Any:
            return engine.create("vpc", {"name": name, "region": "big", "cidr": f"10.{second}.0.0/16",
                                         "dhcp": {"range_start": f"10.{second}.250.1", "range_end": f"10.{second}.250.250"}})

        def att(v: Any, second: int, n: int, tag: str) -> dict[str, Any]:
            return {"vpc_id": v.id, "workload": f"{tag}{n}", "host": f"b{n % 20:02d}", "ip_mode": "static",
                    "ip_address": f"10.{second}.{n // 250}.{n % 250 + 1}/16"}

        empty, big = vpc("empty-vpc", 250), vpc("big-vpc", 251)
        for start in range(0, size, 2000):
            engine.create_many("attachment", [att(big, 251, n, "p") for n in range(start, min(size, start + 2000))])
        figures: dict[tuple[str, str], float] = {}
        for name, v, second in (("empty", empty, 250), ("big", big, 251)):
            base = size + 1
            cpu = time.process_time()
            for n in range(base, base + 200):
                engine.create("attachment", att(v, second, n, "a"))
            figures[(name, "alone")] = (time.process_time() - cpu) / 200 * 1e3
            cpu = time.process_time()
            for n in range(base + 200, base + 400, 4):
                engine.create_many("attachment", [att(v, second, n + k, "b") for k in range(4)])
            figures[(name, "batch")] = (time.process_time() - cpu) / 200 * 1e3
    for mode, what in (("alone", "one transaction each"), ("batch", "in batches of 4")):
        e, b = figures[("empty", mode)], figures[("big", mode)]
        print(f"big VPC, {store}, {what}: {b:.2f} ms CPU per create into a VPC of {size:,} attachments, "
              f"{e:.2f} ms into an empty one (baseline); ratio {b / e:.2f}x", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--vpcs", type=int, default=1000)
    ap.add_argument("--attachments", type=int, default=10000)
    ap.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL part")
    ap.add_argument("--no-fsync", action="store_true", help="throwaway PostgreSQL without fsync (as in tests)")
    ap.add_argument("--only", choices=("file", "engine", "big-vpc"), help="run one part")
    ap.add_argument("--vpc-size", type=int, default=5000, help="attachments in the big VPC (part 3)")
    args = ap.parse_args()
    if args.vpcs < 1 or args.hosts < REGIONS or not 0 < args.attachments <= args.vpcs * 80:
        raise SystemExit(f"need --hosts >= {REGIONS}, --vpcs >= 1 and 0 < --attachments <= 80 per VPC")
    with tempfile.TemporaryDirectory(prefix="bench-write-") as d:
        tmp = Path(d)
        if args.only in (None, "file"):
            topology_file_part(args, tmp)
        engine, big = args.only in (None, "engine"), args.only in (None, "big-vpc")
        if engine or big:
            db = str(tmp / "engine.db")
            if engine:
                engine_part("SQLite", db, args, lambda atts: insert_baseline_sqlite(db, atts))
            if big:
                big_vpc_part("SQLite", str(tmp / "big.db"), args.vpc_size)
            if args.no_postgres:
                return 0
            reason = pg_server.missing_reason()
            if reason:
                print(f"engine, PostgreSQL: skipped ({reason})")
                return 0
            with pg_server.running_server(durable=not args.no_fsync) as pg:
                if engine:
                    url = pg.create_database("bench")
                    engine_part("PostgreSQL", url, args, lambda atts: insert_baseline_postgres(url, atts))
                if big:
                    big_vpc_part("PostgreSQL", pg.create_database("big"), args.vpc_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
