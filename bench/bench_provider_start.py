#!/usr/bin/env python3
"""How fast the provider starts, cold and warm, as Terraform sees it.

    python bench/bench_provider_start.py [--runs 30] [--mode both|cold|warm] [--no-tls] [--launcher PATH]

Starts the provider the way Terraform does (launcher script, magic cookie, a client
certificate in PLUGIN_CLIENT_CERT so the TLS path is measured) and times, from process start:
the handshake line on stdout; the first GetProviderSchema answer over TLS (trusting the printed
certificate), which includes loading the provider after the handshake; and then, from
GRPCController.Shutdown, how long until the process has exited (Terraform waits for that).

Two modes, each in its own private runtime directory (L2VPC_PROVIDER_RUNTIME_DIR):
- cold: L2VPC_PROVIDER_ZYGOTE=0, every start imports everything itself;
- warm: a zygote forks each provider (l2vpc/provider/warm/). The first start, which starts the zygote, and
  one more are not counted; a start that went cold anyway (someone edited the code, so the
  zygote's key changed) is reported. The zygote is stopped at the end.
Prints median and p90 in milliseconds. Target: handshake median <= 120 ms (what Terraform
gets once a zygote runs, i.e. from the second provider start of a session on).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from l2vpc.provider import launcher
from l2vpc.provider.server import MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE
from l2vpc.provider.warm.client import ENABLE_ENV
from l2vpc.provider.warm.control import running_zygotes, stop_zygotes
from l2vpc.provider.warm.runtime_dir import RUNTIME_DIR_ENV
from l2vpc.provider.warm.zygote import IDLE_ENV
from l2vpc.testing.provider_process import client_certificate_pem, timed_start


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def serving_children(zygotes: list[int]) -> int:
    """Live (not yet reaped or zombie) children of these zygotes: warm providers now running."""
    count = 0
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit():
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z" and int(fields[1]) in zygotes:
                count += 1
        except (OSError, IndexError, ValueError):
            continue
    return count


def warm_runs(path: Path, env: dict[str, str], runs: int) -> tuple[list[tuple[float, float, float]], int]:
    """Timed starts served by a zygote, and how many starts went cold instead (not counted:
    someone edited the code, so the key changed and a new zygote had to come up)."""
    directory = env[RUNTIME_DIR_ENV]
    timed_start(path, env)  # cold: starts the zygote
    deadline = time.monotonic() + 60
    while not running_zygotes(directory):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no zygote came up; see the log in {directory}")
        time.sleep(0.05)
    timed_start(path, env)  # warm-up, not counted
    results: list[tuple[float, float, float]] = []
    cold = 0
    while len(results) < runs and cold < runs:
        zygotes = list(running_zygotes(directory).values())
        served: list[bool] = []

        def check(served: list[bool] = served, zygotes: list[int] = zygotes) -> None:
            served.append(serving_children(zygotes) > 0)

        result = timed_start(path, env, check)
        if served == [True]:
            results.append(result)
        else:
            cold += 1
    return results, cold


def report(label: str, results: list[tuple[float, float, float]], tls: bool, note: str = "") -> None:
    print(f"{label}:{note}")
    for name, index in (("handshake", 0), ("first schema", 1), ("exit", 2)):
        ms = [r[index] * 1000 for r in results]
        print(
            f"  {name:>12}: median {statistics.median(ms):6.1f} ms   p90 {percentile(ms, 90):6.1f} ms   "
            f"min {min(ms):6.1f} ms   max {max(ms):6.1f} ms   ({len(ms)} runs, {'TLS' if tls else 'plain'})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--mode", choices=("both", "cold", "warm"), default="both")
    parser.add_argument("--no-tls", action="store_true", help="start without PLUGIN_CLIENT_CERT (plain gRPC)")
    parser.add_argument(
        "--launcher", type=Path, help="an existing launcher (default: a fresh one for this checkout)"
    )
    args = parser.parse_args()

    env = dict(os.environ, **{MAGIC_COOKIE_KEY: MAGIC_COOKIE_VALUE, "PLUGIN_PROTOCOL_VERSIONS": "5,6"})
    for key in (ENABLE_ENV, IDLE_ENV, RUNTIME_DIR_ENV):
        env.pop(key, None)
    if not args.no_tls:
        env["PLUGIN_CLIENT_CERT"] = client_certificate_pem()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        path = args.launcher or launcher.write_launcher(Path(tmp) / "terraform-provider-l2vpc")
        launcher.precompile()
        # Short paths: sockets live here; the zygote's must fit in 107 bytes.
        runtime = tempfile.mkdtemp(prefix="l2b-", dir="/tmp")
        try:
            env["TMPDIR"] = tmp
            if args.mode in ("both", "cold"):
                cold_env = dict(env, **{ENABLE_ENV: "0"})
                timed_start(path, cold_env)  # warm the page cache; not counted
                report(
                    "cold (L2VPC_PROVIDER_ZYGOTE=0)",
                    [timed_start(path, cold_env) for _ in range(args.runs)],
                    not args.no_tls,
                )
            if args.mode in ("both", "warm"):
                results, cold = warm_runs(path, dict(env, **{RUNTIME_DIR_ENV: runtime}), args.runs)
                note = (
                    f" ({cold} more starts went cold, not counted: the code changed meanwhile)"
                    if cold
                    else ""
                )
                report("warm (zygote)", results, not args.no_tls, note)
        finally:
            stop_zygotes(runtime)
            shutil.rmtree(runtime, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
