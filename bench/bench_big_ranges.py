"""A VPN's gateway in a VPC whose DHCP range fills a /8 (issue 15, item 8): time and memory.

The gateway allocator steps over address ranges whole; listing the range's 16 million
addresses took 34 s and 2.4 GB. Prints, on a SQLite store:
- the time and peak Python memory of one VPN create in a 10.0.0.0/8 whose DHCP range leaves
  only addresses below it (the walk crosses the whole range), median of --rounds;
- the same create in a /24 (baseline) and the ratio: the /8 must cost about what the /24 does.

    .venv/bin/python bench/bench_big_ranges.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

from l2vpc.engine.api import Engine
from l2vpc.engine.store import open_store

HOSTS = [
    {"name": "edge1", "region": "us-east", "role": "edge", "location": "nyc1", "underlay_ip": "10.200.0.9",
     "public_cidr": "203.0.0.0/16"},
    {"name": "c1", "region": "us-east", "underlay_ip": "10.200.0.1"},
]


def one_create(engine: Engine, vpc_id: str, name: str) -> tuple[float, int]:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        engine.create("vpn", {"name": name, "vpc_id": vpc_id, "peer_address": "198.51.100.1",
                              "pre_shared_key": "abcdefgh", "remote_cidrs": ["192.168.0.0/24"]})
        return time.perf_counter() - started, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ranges-") as d:
        store = open_store(str(Path(d) / "state.db"))
        try:
            engine = Engine(store)
            for h in HOSTS:
                engine.register_host(h)
            big = engine.create("vpc", {"name": "big", "region": "us-east", "cidr": "10.0.0.0/8",
                                        "dhcp": {"range_start": "10.0.0.100", "range_end": "10.255.255.254",
                                                 "server_ip": "10.0.0.2"}})
            small = engine.create("vpc", {"name": "small", "region": "us-east", "cidr": "10.9.0.0/24",
                                          "dhcp": {"range_start": "10.9.0.100", "range_end": "10.9.0.254",
                                                   "server_ip": "10.9.0.2"}})
            big_runs = [one_create(engine, big.id, f"b{i}") for i in range(args.rounds)]
            small_runs = [one_create(engine, small.id, f"s{i}") for i in range(args.rounds)]
        finally:
            store.close()
    big_ms = statistics.median(t for t, _ in big_runs) * 1e3
    small_ms = statistics.median(t for t, _ in small_runs) * 1e3
    print(f"VPN create, DHCP range filling 10.0.0.0/8: {big_ms:.2f} ms median, "
          f"peak {max(m for _, m in big_runs) / 1e6:.2f} MB")
    print(f"VPN create, /24 (baseline): {small_ms:.2f} ms median, peak {max(m for _, m in small_runs) / 1e6:.2f} MB")
    print(f"ratio /8 to /24: {big_ms / small_ms:.2f}x")


if __name__ == "__main__":
    main()
