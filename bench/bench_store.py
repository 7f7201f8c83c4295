"""Store speed: attachment writes/s and list() of many objects on the SQLite store.

Prints, for one process:
- writes/s with one transaction per write (create of a ~400-byte attachment document plus
  three reserve() calls, as the engine does per attachment) and batched (500 per transaction);
- the same per-write loop on bare sqlite3 INSERTs with the same pragmas, and the ratio: what
  the store's checks, JSON handling and locking cost;
- list() time for 50,000 objects (documents are decoded on first access of `.data`; the time
  with every document decoded is printed too).

    .venv/bin/python bench/bench_store.py [--writes 3000] [--list 50000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from l2vpc.engine.store.sqlite import SqliteStore

BATCH = 500
ROUNDS = 3


def attachment(i: int) -> dict[str, Any]:
    """An attachment-sized document (~400 bytes of JSON)."""
    return {
        "id": f"att-{i:08d}",
        "vpc_id": f"vpc-{i % 97:08d}",
        "host": f"host-{i % 31:04d}",
        "workload": f"vm-{i:08d}",
        "interface": f"net{1 + i % 4}",
        "vlan": 100 + i % 3000,
        "mac": f"02:00:{(i >> 24) & 255:02x}:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}",
        "ipv4": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
        "device": f"l2p{i:08x}",
        "mtu": 1450,
        "dhcp": True,
        "security": {"spoof_check": True, "allowed_macs": []},
        "tags": {"team": "network", "env": "bench", "owner": "someone@example.com"},
        "status": "pending",
    }


def reserves(i: int, doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [("mac", doc["mac"]), ("device", doc["device"]), (f"ipv4:{doc['vpc_id']}", doc["ipv4"])]


def store_per_write(store: SqliteStore, start: int, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(start, start + n):
        doc = attachment(i)
        with store.transaction() as tx:
            tx.create("attachment", doc["id"], doc, tenant="t1")
            for pool, value in reserves(i, doc):
                tx.reserve(pool, value, doc["id"])
    return n / (time.perf_counter() - t0)


def store_batched(store: SqliteStore, start: int, n: int) -> float:
    t0 = time.perf_counter()
    for b in range(start, start + n, BATCH):
        with store.transaction() as tx:
            for i in range(b, min(b + BATCH, start + n)):
                doc = attachment(i)
                tx.create("attachment", doc["id"], doc, tenant="t1")
                for pool, value in reserves(i, doc):
                    tx.reserve(pool, value, doc["id"])
    return n / (time.perf_counter() - t0)


def bare_connection(path: Path) -> sqlite3.Connection:
    """The floor: the same tables through bare sqlite3, no checks, the same pragmas."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(
        "CREATE TABLE objects (kind TEXT NOT NULL, id TEXT NOT NULL, tenant TEXT NOT NULL, "
        "generation INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (kind, id))"
    )
    conn.execute("CREATE INDEX objects_by_tenant ON objects (kind, tenant, id)")
    conn.execute(
        "CREATE TABLE allocations (pool TEXT NOT NULL, value TEXT NOT NULL, owner TEXT NOT NULL, "
        "PRIMARY KEY (pool, value)) WITHOUT ROWID"
    )
    conn.execute("CREATE INDEX allocations_by_owner ON allocations (owner, pool)")
    return conn


def bare_per_write(conn: sqlite3.Connection, start: int, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(start, start + n):
        doc = attachment(i)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO objects VALUES ('attachment', ?, 't1', 1, ?)", (doc["id"], json.dumps(doc)))
        for pool, value in reserves(i, doc):
            conn.execute("INSERT INTO allocations VALUES (?, ?, ?)", (pool, value, doc["id"]))
        conn.execute("COMMIT")
    return n / (time.perf_counter() - t0)


def fill(store: SqliteStore, kind: str, n: int) -> None:
    for b in range(0, n, 5000):
        with store.transaction() as tx:
            for i in range(b, min(b + 5000, n)):
                doc = attachment(i)
                tx.create(kind, doc["id"], doc, tenant=f"t{i % 10}")


def time_list(
    store: SqliteStore, kind: str, tenant: str | None = None, rounds: int = 5, touch: bool = False
) -> list[float]:
    """Seconds per list(); with `touch`, reading every object's data is included."""
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        with store.transaction() as tx:
            objs = tx.list(kind, tenant)
        if touch:
            for obj in objs:
                obj.data  # noqa: B018 - decodes the document
        times.append(time.perf_counter() - t0)
    assert objs, "nothing listed"
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--writes", type=int, default=3000, help="writes per round")
    parser.add_argument("--list", type=int, default=50_000, dest="list_n")
    parser.add_argument("--dir", help="directory for the database files (default: a temporary one)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        base = Path(tmp)
        n = args.writes
        # Alternate store and bare rounds so a noisy neighbour hits both alike; report medians.
        per_write, bare, batched = [], [], []
        bare_conn = bare_connection(base / "bare.db")
        with SqliteStore(base / "store.db") as store:
            for r in range(ROUNDS):
                per_write.append(store_per_write(store, 2 * r * n, n))
                bare.append(bare_per_write(bare_conn, r * n, n))
                batched.append(store_batched(store, (2 * r + 1) * n, n))
        bare_conn.close()
        med = statistics.median
        print(
            f"attachment writes, 1 transaction each : {med(per_write):9,.0f} /s median of {ROUNDS} x {n} "
            f"(1 create + 3 reserve; min {min(per_write):,.0f})"
        )
        print(f"attachment writes, {BATCH} per transaction: {med(batched):9,.0f} /s median")
        print(
            f"bare sqlite3 INSERTs, 1 transaction each: {med(bare):9,.0f} /s median "
            f"(store/bare = {med(per_write) / med(bare):.2f})"
        )

        with SqliteStore(base / "list.db") as store:
            fill(store, "vpc", args.list_n)
            warm = time_list(store, "vpc")
            decoded = time_list(store, "vpc", rounds=3, touch=True)
            one_tenant = time_list(store, "vpc", tenant="t3")
        # A fresh store: SQLite's page cache empty (the OS cache is still warm).
        with SqliteStore(base / "list.db") as store:
            first = time_list(store, "vpc", rounds=1)[0]
        ms = med
        print(
            f"list() of {args.list_n:,} objects           : {ms(warm) * 1000:7.1f} ms median "
            f"(min {min(warm) * 1000:.1f}, first after open {first * 1000:.1f})"
        )
        print(f"list() + reading every .data          : {ms(decoded) * 1000:7.1f} ms median")
        print(
            f"list() of one tenant ({args.list_n // 10:,} of {args.list_n:,}): {ms(one_tenant) * 1000:7.1f} ms median"
        )


if __name__ == "__main__":
    main()
