#!/usr/bin/env python3
"""Run the benches in two checkouts, alternately, and compare their figures.

    .venv/bin/python bench/compare.py BASE_DIR [--only NAME ...] [--runs N] [--new DIR] [--quick]
        [--logs DIR] [--threshold 0.10]

For each bench of bench/_catalogue.py, N rounds; a round runs the script once in BASE_DIR and
once in the new checkout (default: the one holding this file), who goes first alternating per
round, each with its own `.venv/bin/python`, working directory, provider runtime directory and
(for `l2vpc tf`) Terraform cache. Sizes are the scripts' defaults, or the catalogue's `args`;
`--quick` uses the test suite's small sizes, to try the runner, not to judge code.

Figures are read from each run's output with the catalogue's per-bench patterns; the table
shows per figure the median of each side, new/base and a flag: `WORSE` when the new median is
worse by more than the threshold (10 %) in the direction that matters and by more than the
figure's noise, `better` when better by as much. Figures without a direction (baselines that
are not our code, e.g. the Go null provider) are shown, never flagged. A bench that needs root
or PostgreSQL where there is none is listed as skipped; one missing in BASE_DIR runs on the new
side only. Every run's output is kept (--logs; default a temporary directory, printed).

Exit status: 1 when a run failed (its log is named), else 0: flags are for a person to judge,
with the load average printed beside them (the machine is shared).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import _catalogue as cat  # bench/ is on sys.path: this runs as a script

HERE = Path(__file__).resolve().parent.parent
SIDES = ("base", "new")


@dataclass
class Run:
    side: str
    round: int
    rc: int
    seconds: float
    load: tuple[float, float]  # 1-minute load average before and after
    log: Path
    figures: list[cat.Measured]


@dataclass
class Side:
    name: str
    root: Path
    runtime: Path  # provider zygotes of this side only (short: sockets live there)
    cache: Path  # XDG_CACHE_HOME for benches whose Terraform mirror must not be shared

    @property
    def python(self) -> Path:
        return self.root / ".venv" / "bin" / "python"

    def script(self, bench: cat.Bench) -> Path:
        return self.root / "bench" / f"{bench.name}.py"


@dataclass
class Row:
    """One figure of one bench: the values of every round, per side."""

    name: str
    figure: cat.Figure
    base: list[float] = field(default_factory=list)
    new: list[float] = field(default_factory=list)

    def median(self, side: str) -> float | None:
        values = self.base if side == "base" else self.new
        return statistics.median(values) if values else None

    def flag(self, threshold: float) -> str:
        base, new = self.median("base"), self.median("new")
        if base is None or new is None:
            return "(new only)" if base is None else "(base only)"
        return verdict(self.figure.direction, base, new, threshold, self.figure.noise)


def verdict(direction: str | None, base: float, new: float, threshold: float, noise: float) -> str:
    """`WORSE`, `better` or "" for a new median against a base median."""
    if direction is None or abs(new - base) <= noise:
        return ""
    if base == 0:
        worse = new > 0 if direction == "lower" else new < 0
        return "WORSE" if worse else "better"
    ratio = new / base
    if direction == "lower":
        return "WORSE" if ratio > 1 + threshold else "better" if ratio < 1 - threshold else ""
    return "WORSE" if ratio < 1 - threshold else "better" if ratio > 1 + threshold else ""


def run_once(bench: cat.Bench, side: Side, args: Sequence[str], rnd: int, logs: Path) -> Run:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(PYTHONUNBUFFERED="1", L2VPC_PROVIDER_RUNTIME_DIR=str(side.runtime),
               L2VPC_PROVIDER_ZYGOTE_IDLE="60")
    if bench.private_cache:
        env["XDG_CACHE_HOME"] = str(side.cache)
    log = logs / f"{bench.name}.{side.name}.{rnd}.log"
    argv = [str(side.python), str(side.script(bench)), *args]
    load0 = os.getloadavg()[0]
    started = time.monotonic()
    with log.open("w") as out:
        out.write(f"$ {' '.join(argv)}  (in {side.root})\n")
        out.flush()
        proc = subprocess.Popen(argv, cwd=side.root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            rc = proc.wait(timeout=bench.timeout)
        except subprocess.TimeoutExpired:
            rc = stop(proc)
            out.write(f"\n[compare] timed out after {bench.timeout:.0f} s\n")
    seconds = time.monotonic() - started
    return Run(side.name, rnd, rc, seconds, (load0, os.getloadavg()[0]), log, cat.parse(bench, log.read_text()))


def stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGINT to the bench's process group first: its `finally` blocks clean namespaces up."""
    import signal

    for sig, wait in ((signal.SIGINT, 60), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            return proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    return proc.wait()


def compare_bench(bench: cat.Bench, sides: dict[str, Side], runs: int, quick: bool, logs: Path,
                  threshold: float) -> tuple[list[Run], list[Row]]:
    present = [s for s in SIDES if sides[s].script(bench).exists()]
    args = bench.smoke if quick else bench.args
    done: list[Run] = []
    for rnd in range(1, runs + 1):
        order = present if rnd % 2 else list(reversed(present))  # alternate who goes first
        for name in order:
            run = run_once(bench, sides[name], args, rnd, logs)
            done.append(run)
            status = "ok" if run.rc == 0 else f"EXIT {run.rc}"
            print(f"  round {rnd} {name:<4}: {run.seconds:6.1f} s, {len(run.figures)} figures, {status}, "
                  f"load {run.load[0]:.1f} -> {run.load[1]:.1f}", flush=True)
    rows: dict[str, Row] = {}
    for run in done:
        for m in run.figures:
            row = rows.setdefault(m.name, Row(m.name, m.figure))
            (row.base if run.side == "base" else row.new).append(m.value)
    table = list(rows.values())
    print_table(table, threshold)
    return done, table


def fmt(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def print_table(rows: list[Row], threshold: float) -> None:
    width = max([len(r.name) for r in rows] + [10])
    print(f"  {'figure':<{width}} {'unit':>6} {'base':>9} {'new':>9} {'new/base':>8}  {'better':<6} flag")
    for r in rows:
        base, new = r.median("base"), r.median("new")
        ratio = f"{new / base:.2f}" if base and new is not None else "-"
        print(f"  {r.name:<{width}} {r.figure.unit:>6} {fmt(base) if base is not None else '-':>9} "
              f"{fmt(new) if new is not None else '-':>9} {ratio:>8}  {r.figure.direction or 'info':<6} "
              f"{r.flag(threshold)}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base", type=Path, help="the other checkout (with its own .venv: ./dev install there)")
    ap.add_argument("--new", type=Path, default=HERE, help=f"the checkout under test (default {HERE})")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="these benches (e.g. bench_plan), in this order")
    ap.add_argument("--runs", type=int, default=3, help="rounds per bench and side (default 3)")
    ap.add_argument("--quick", action="store_true", help="the test suite's small sizes (try the runner)")
    ap.add_argument("--threshold", type=float, default=0.10, help="relative change flagged (default 0.10)")
    ap.add_argument("--logs", type=Path, help="keep every run's output here (default: a temporary directory)")
    args = ap.parse_args(argv)

    unknown = [n for n in args.only or () if n.removesuffix(".py") not in cat.BY_NAME]
    if unknown:
        ap.error(f"unknown bench(es) {', '.join(unknown)}; known: {', '.join(cat.BY_NAME)}")
    benches = [cat.BY_NAME[n.removesuffix(".py")] for n in args.only] if args.only else list(cat.BENCHES)
    roots = {"base": args.base.resolve(), "new": args.new.resolve()}
    for name, root in roots.items():
        if not (root / ".venv" / "bin" / "python").exists():
            ap.error(f"{name} checkout {root} has no .venv/bin/python: run ./dev install there")
    logs = args.logs or Path(tempfile.mkdtemp(prefix="l2vpc-compare-"))
    logs.mkdir(parents=True, exist_ok=True)
    sides = {}
    for name, root in roots.items():
        runtime = Path(tempfile.mkdtemp(prefix=f"l2cmp{name[0]}-", dir="/tmp"))
        sides[name] = Side(name, root, runtime, logs / f"{name}-cache")

    print(f"base {roots['base']} ({_describe(roots['base'])})\nnew  {roots['new']} ({_describe(roots['new'])})")
    print(f"{args.runs} round(s) per bench, {'quick sizes' if args.quick else 'real sizes'}; "
          f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}; logs in {logs}")
    failed: list[Run] = []
    skipped: list[str] = []
    flagged: list[str] = []
    loads: list[float] = []
    try:
        for bench in benches:
            reason = cat.unmet(bench)
            if reason:
                skipped.append(f"{bench.name}: {reason}")
                print(f"\n{bench.name}: skipped: {reason}")
                continue
            args_text = " ".join(bench.smoke if args.quick else bench.args) or "(defaults)"
            note = "" if sides["base"].script(bench).exists() else "  [not in base: new side only]"
            print(f"\n{bench.name} {args_text}{note}", flush=True)
            done, rows = compare_bench(bench, sides, args.runs, args.quick, logs, args.threshold)
            failed += [r for r in done if r.rc != 0]
            loads += [x for r in done for x in r.load]
            flagged += [f"{bench.name}: {r.name}" for r in rows if r.flag(args.threshold) == "WORSE"]
    finally:
        for side in sides.values():
            _stop_zygotes(side.runtime)
            shutil.rmtree(side.runtime, ignore_errors=True)

    print("\n== summary")
    if loads:
        print(f"load average (1 min) at run starts and ends: {min(loads):.1f} .. {max(loads):.1f} "
              f"on {os.cpu_count()} CPUs")
    print("worse by more than {:.0f} %: {}".format(args.threshold * 100, "; ".join(flagged) or "none"))
    for s in skipped:
        print(f"skipped {s}")
    for r in failed:
        print(f"FAILED {r.log.name} (exit {r.rc}): {r.log}")
    print(f"logs: {logs}")
    return 1 if failed else 0


def _describe(root: Path) -> str:
    out = subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%h %s"], capture_output=True, text=True)
    return out.stdout.strip()[:70] or "not a git checkout"


def _stop_zygotes(directory: Path) -> None:
    """Warm-start zygotes the benches left in this side's runtime directory (they also exit
    after L2VPC_PROVIDER_ZYGOTE_IDLE seconds on their own)."""
    try:
        from l2vpc.provider.warm.control import stop_zygotes
    except ImportError:
        return
    stop_zygotes(str(directory))


if __name__ == "__main__":
    sys.exit(main())
