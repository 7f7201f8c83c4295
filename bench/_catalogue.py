"""Every bench script, what it needs, how to run it small, and how to read its figures.

One table serves two readers: tests/test_benches.py runs each script with `smoke` arguments
and checks every figure below is printed; bench/compare.py runs them at real size in two
checkouts and compares the figures. The scripts print for people, so each figure is a regex
over one line of that output (group `v` is the number; other named groups and the current
section fill the name). A regex that stops matching fails the test, not the comparison.

Which way is better follows the unit (`/s`, `Gbit/s`: higher; times, MB, %: lower) unless a
figure says otherwise; `better=None` marks a baseline that is not our code (shown, never
flagged). `noise` is an absolute difference below which a change is never flagged (a 2 ms
timer against 3 ms is not a 50 % regression).
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
NUMBER = r"(?P<v>-?\d[\d,]*(?:\.\d+)?)"
HIGHER_UNITS = {"/s", "Gbit/s", "Mbit/s"}


@dataclass(frozen=True)
class Figure:
    name: str  # may name groups of the pattern and {section}
    pattern: str  # "{v}" stands for the number
    unit: str
    better: str | None = "unit"  # "lower" | "higher" | None (information) | "unit": from the unit
    noise: float = 0.0
    optional: bool = False  # printed only with some options (the test does not require it)

    @property
    def regex(self) -> re.Pattern[str]:
        return re.compile(self.pattern.replace("{v}", NUMBER))

    @property
    def direction(self) -> str | None:
        if self.better != "unit":
            return self.better
        return "higher" if self.unit in HIGHER_UNITS else "lower"


@dataclass(frozen=True)
class Bench:
    name: str
    figures: tuple[Figure, ...]
    smoke: tuple[str, ...]  # smallest arguments that still run every part (the test's)
    args: tuple[str, ...] = ()  # what compare.py runs: the defaults unless said here
    needs: frozenset[str] = frozenset()  # "root", "postgres", "terraform"
    section: str | None = None  # a line matching it (group `section`) names the figures after it
    smoke_only: tuple[str, ...] = ()  # test-only flags older checkouts may lack
    private_cache: bool = False  # own XDG_CACHE_HOME: `l2vpc tf` shares its mirror across checkouts
    timeout: float = 1800.0
    smoke_timeout: float = 180.0

    @property
    def script(self) -> Path:
        return BENCH_DIR / f"{self.name}.py"


@dataclass(frozen=True)
class Measured:
    figure: Figure
    name: str
    value: float


def parse(bench: Bench, output: str) -> list[Measured]:
    """The figures of one run, in output order; a name seen twice gets ` #2`, ` #3`..."""
    out: list[Measured] = []
    seen: dict[str, int] = {}
    section = ""
    section_re = re.compile(bench.section) if bench.section else None
    compiled = [(f, f.regex) for f in bench.figures]
    for line in output.splitlines():
        if section_re and (m := section_re.search(line)):
            section = m.group("section")
            continue
        for figure, regex in compiled:
            m = regex.search(line)
            if m is None:
                continue
            groups = {k: v for k, v in m.groupdict().items() if k != "v"}
            name = figure.name.format(section=section, **groups)
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:
                name = f"{name} #{seen[name]}"
            out.append(Measured(figure, name, float(m.group("v").replace(",", ""))))
    return out


def missing_figures(bench: Bench, output: str) -> list[str]:
    """Patterns of required figures that no line of `output` matches."""
    found = {id(m.figure) for m in parse(bench, output)}
    return [f.pattern for f in bench.figures if not f.optional and id(f) not in found]


def postgres_missing() -> str | None:
    """Why no throwaway PostgreSQL can run here (None: it can), from the project's helper."""
    try:
        from l2vpc.testing import postgres as pg_server
    except ImportError:  # until the helper moves into l2vpc.testing it lives beside the store tests
        sys.path.insert(0, str(BENCH_DIR.parent / "tests" / "engine"))
        import pg_server
    reason = pg_server.missing_reason()
    return str(reason) if reason else None


def unmet(bench: Bench) -> str | None:
    """Why this bench cannot run on this machine, or None."""
    if "root" in bench.needs and os.geteuid() != 0:
        return "needs root (network namespaces, daemons)"
    if "postgres" in bench.needs:
        return postgres_missing()
    return None


def F(name: str, pattern: str, unit: str, better: str | None = "unit", noise: float = 0.0,
      optional: bool = False) -> Figure:
    """A Figure, short enough for the table below."""
    return Figure(name, pattern, unit, better, noise, optional)


ROOT, POSTGRES, TERRAFORM = "root", "postgres", "terraform"

BENCHES: tuple[Bench, ...] = (
    Bench(
        "bench_plan",
        smoke=("--hosts", "20", "--vpcs", "50", "--attachments", "200"),
        figures=(
            F("full plan from empty hosts", r"^full plan from empty hosts: {v} ms", "ms", noise=20),
            F("full plan, hosts converged (no-op)", r"^full plan, hosts converged \(no-op\):\s+{v} ms", "ms",
              noise=20),
            F("baseline: copy every host config", r"^baseline \(copy every host config once\): {v} ms", "ms",
              None),
            F("full plan / baseline", r"ratio full/baseline: {v}x", "x", "lower"),
            F("peak RSS", r"^peak RSS: {v} MB", "MB", noise=5),
            F("incremental plan (median)", r"^incremental plan after one attachment change: median {v} ms",
              "ms", noise=0.2),
        ),
    ),
    Bench(
        "bench_big_ranges",
        smoke=("--rounds", "1"),
        figures=(
            F("VPN create in a /8 DHCP range", r"^VPN create, DHCP range filling 10\.0\.0\.0/8: {v} ms", "ms", noise=2),
            F("VPN create peak memory in a /8", r"filling 10\.0\.0\.0/8: .* peak {v} MB", "MB", noise=1),
            F("VPN create in a /24 (baseline)", r"^VPN create, /24 \(baseline\): {v} ms", "ms", None),
            F("/8 / /24", r"^ratio /8 to /24: {v}x", "x", "lower", noise=0.5),
        ),
    ),
    Bench(
        "bench_store",
        smoke=("--writes", "100", "--list", "1000"),
        figures=(
            F("writes, 1 per transaction", r"^attachment writes, 1 transaction each\s*:\s*{v} /s", "/s"),
            F("writes, batched", r"^attachment writes, \d+ per transaction:\s*{v} /s", "/s"),
            F("bare sqlite3 INSERTs (baseline)", r"^bare sqlite3 INSERTs, 1 transaction each:\s*{v} /s", "/s",
              None),
            F("store / bare sqlite3", r"\(store/bare = {v}\)", "x", "higher"),
            F("list() (median)", r"^list\(\) of [\d,]+ objects\s*:\s*{v} ms median", "ms", noise=2),
            F("list() first after open", r"first after open {v}\)", "ms", noise=2),
            F("list() + decode every .data", r"^list\(\) \+ reading every \.data\s*:\s*{v} ms", "ms", noise=2),
            F("list() of one tenant", r"^list\(\) of one tenant .*?:\s*{v} ms", "ms", noise=2),
        ),
    ),
    Bench(
        "bench_write_path",
        needs=frozenset({POSTGRES}),
        smoke=("--hosts", "8", "--vpcs", "8", "--attachments", "40", "--no-fsync"),
        smoke_only=("--vpc-size", "50"),
        figures=(
            F("bulk insert of the file's documents (baseline)", r"^baseline: bulk insert .*: {v} s", "s", None),
            F("l2vpc {what}", r"^l2vpc (?P<what>plan from empty|apply --agents memory|re-plan \(no-op\)"
              r"|re-plan \(no-op\) computed in full, no record): {v} s", "s", noise=0.2),
            F("l2vpc {what} / bulk insert", r"^l2vpc (?P<what>plan from empty|apply --agents memory|re-plan \(no-op\)"
              r"|re-plan \(no-op\) computed in full, no record): .*; {v}x the bulk insert", "x", "lower"),
            F("engine write, {store}", r"^engine, (?P<store>SQLite|PostgreSQL): [\d,]+ attachments .* written in {v} s",
              "s", noise=0.1),
            F("multi-row INSERT, {store} (baseline)",
              r"^engine, (?P<store>SQLite|PostgreSQL): baseline multi-row INSERT .* documents {v} s", "s", None),
            F("engine write / INSERT, {store}", r"^engine, (?P<store>SQLite|PostgreSQL): baseline .*; ratio {v}x",
              "x", "lower"),
            F("create into a big VPC, {store}, {mode}",
              r"^big VPC, (?P<store>SQLite|PostgreSQL), (?P<mode>one transaction each|in batches of 4): {v} ms CPU",
              "ms", noise=0.1),
            F("create into an empty VPC, {store}, {mode} (baseline)",
              r"^big VPC, (?P<store>SQLite|PostgreSQL), (?P<mode>one transaction each|in batches of 4): .*, {v} ms "
              r"into an empty one", "ms", None, noise=0.1),
            F("big / empty VPC, {store}, {mode}",
              r"^big VPC, (?P<store>SQLite|PostgreSQL), (?P<mode>one transaction each|in batches of 4): .*; ratio {v}x",
              "x", "lower", noise=0.3),
        ),
    ),
    Bench(
        "bench_store_postgres",
        needs=frozenset({POSTGRES}),
        smoke=("--writes", "5", "--no-fsync"),
        figures=(
            F("{what}, 1 process", r"^(?P<what>empty transactions|store writes|engine creates)/s\s+{v}\s", "/s"),
            F("{what}, 2 processes",
              r"^(?P<what>empty transactions|store writes|engine creates)/s\s+[\d,]+\s+{v}\s*$", "/s"),
        ),
    ),
    Bench(
        "bench_controller_api",
        needs=frozenset({POSTGRES}),
        smoke=("--creates", "8", "--procs", "1", "--threads", "1", "--controllers", "1", "--tenants", "1",
               "--no-fsync"),
        figures=(
            F("API creates", r"^API, \d controller\(s\): \d+ creates at {v}/s", "/s"),
            F("API create latency p50", r"^API, .*latency p50 {v} ms", "ms"),
            F("API create latency p99", r"^API, .*p99 {v} ms", "ms"),
            F("Engine creates (baseline, our code)", r"^baseline: Engine on the store: \d+ creates at {v}/s", "/s"),
            F("Engine create latency p50", r"^baseline: Engine .*latency p50 {v} ms", "ms"),
            F("Engine create latency p99", r"^baseline: Engine .*p99 {v} ms", "ms"),
            F("gRPC floor calls", r"^gRPC floor .*: \d+ creates at {v}/s", "/s"),
            F("CPU per create, {mode}", r"^\s+CPU per create \[(?P<mode>\w+)\]: {v} ms", "ms", noise=0.2),
            F("ceiling on idle cores, {mode}", r"^\s+ceiling on \d+ idle cores \[(?P<mode>\w+)\]: {v}/s", "/s"),
        ),
    ),
    Bench(
        "bench_controller_scale",
        needs=frozenset({POSTGRES}),
        smoke=("--hosts", "4", "--fleets", "1", "--attachments", "8", "--per-vpc", "2", "--heartbeat-interval",
               "1", "--cpu-window", "1", "--no-fsync"),
        figures=(
            F("agent tokens created", r"^tokens: \d+ agent tokens in {v}s", "s", noise=0.2),
            F("registration of every host", r"^registration: .* heartbeating {v}s after", "s", noise=0.5),
            F("attachments written (one transaction)", r"^\s+written in {v}s", "s", noise=0.2),
            F("converge", r"^CONVERGE: .* converged in {v}s", "s", noise=0.5),
            F("heartbeat load, busiest controller", r"^HEARTBEAT LOAD: {v}% of one core", "%", noise=2),
            F("heartbeat window CPU, {proc}",
              r"^\s+(?P<proc>(?:controller|fleet) \S+|postgres): {v}% of one core", "%", noise=2),
            F("heartbeat load with 60 s heartbeats", r"^BASELINE: {v}% of one core", "%", noise=2, optional=True),
        ),
    ),
    Bench(
        "bench_metrics",
        needs=frozenset({POSTGRES}),
        smoke=("--hosts", "4", "--fleets", "1", "--scrapes", "2", "--creates", "16", "--rounds", "1", "--procs", "1",
               "--threads", "2", "--no-fsync"),
        figures=(
            F("metrics scrape, 1,000 hosts (median)", r"^SCRAPE: .*: median {v} ms", "ms", noise=5),
            F("metrics scrape (worst)", r"^SCRAPE: .*, worst {v} ms", "ms", noise=10),
            F("metrics scrape size", r"^SCRAPE: .*ms, {v} MB", "MB", noise=0.02),
            F("status page", r"^status page: {v} ms", "ms", noise=20),
            F("API creates, metrics off", r"^API creates: metrics off {v}/s", "/s"),
            F("API creates, metrics on", r"^API creates: .*metrics on {v}/s", "/s"),
            F("controller CPU per create, metrics off", r"^controller CPU per create: metrics off {v} ms", "ms",
              noise=0.1),
            F("controller CPU per create, metrics on", r"^controller CPU per create: .*, on {v} ms", "ms", noise=0.1),
            F("metrics bookkeeping per API call", r"^metrics bookkeeping: {v} us", "us", noise=2),
            F("metrics cost of the create rate", r"^METRICS COST: {v}%", "%", noise=5),
        ),
    ),
    Bench(
        "bench_agent_converge",
        needs=frozenset({ROOT}),
        smoke=("--vpcs", "2", "--ports", "4", "--noop-runs", "2", "--cold-runs", "2"),
        figures=(
            F("full converge from empty", r"^full converge from empty:\s*{v} ms", "ms", noise=20),
            F("no-op reconcile (median)", r"^no-op reconcile \(median\):\s*{v} ms", "ms", noise=1),
            F("no-op reconcile CPU (median)", r"^no-op reconcile .*cpu median {v}\)", "ms", noise=1),
            F("facts only (median)", r"^facts only \(median\):\s*{v} ms", "ms", noise=1),
            F("no-op after restart (cold)", r"^no-op after restart \(cold\):\s*{v} ms", "ms", noise=2),
            F("no-op after restart CPU (median)", r"^no-op after restart .*cpu median {v}\)", "ms", noise=2),
            F("teardown", r"^teardown:\s*{v} ms", "ms", noise=20),
        ),
    ),
    Bench(
        "bench_overlay_iperf",
        needs=frozenset({ROOT}),
        smoke=("--seconds", "1", "--omit", "0"),
        section=r"^(?P<section>offloads on|offloads off)(?: \(defaults\))?$",
        figures=(
            F("setup: 2 hosts converged + veth pairs", r"^built: .* in {v} s", "s", noise=0.5),
            F("{section}: {path} {mtu}", r"^\s+(?P<path>overlay|veth) (?P<mtu>\d+)\s+{v} Gbit/s", "Gbit/s"),
        ),
    ),
    Bench(
        "bench_port_security",
        needs=frozenset({ROOT}),
        smoke=("--seconds", "1", "--omit", "0", "--repeats", "1", "--vpcs", "2", "--ports", "4", "--noop-runs", "2"),
        figures=(
            F("no-op reconcile, unsecured (median)", r"^no-op reconcile, unsecured \(median\):\s*{v} ms", "ms", noise=1),
            F("securing every port", r"^securing every port: {v} ms", "ms", noise=20),
            F("no-op reconcile, secured (median)", r"^no-op reconcile, \d+ secured \(median\):\s*{v} ms", "ms",
              noise=1),
            F("no-op after restart, secured (cold)", r"^no-op after restart, secured \(cold\): {v} ms", "ms", noise=2),
            F("overlay 1500, port security off", r"^\s+port security off\s+{v} Gbit/s", "Gbit/s"),
            F("overlay 1500, port security on", r"^\s+port security on\s+{v} Gbit/s", "Gbit/s"),
            F("throughput cost", r"^throughput cost: {v} %", "%", noise=5),
        ),
    ),
    Bench(
        "bench_overlay_probes",
        needs=frozenset({ROOT}),
        smoke=("--peers", "5", "--seconds", "1", "--fleet", "50", "--fleet-peers", "5"),
        figures=(
            F("host with N peers: datagrams sent", r"^\s+datagrams sent\s+{v} /s", "/s", None),
            F("host with N peers: datagrams received", r"^\s+datagrams received\s+{v} /s", "/s", None),
            F("host with N peers: agent CPU", r"^\s+agent CPU\s+{v} %", "%", noise=2),
            F("fleet, one VPC on every host: datagrams per host",
              r"^\s+one VPC on every host, \d+ peers:\s+{v} datagrams/s", "/s", None),
            F("fleet, bookkeeping for every peer", r"^\s+bookkeeping for \d+ peers:\s+{v} ms CPU", "ms", noise=2),
            F("lab: degraded detected", r"^\s+degraded detected in\s+{v} s", "s", noise=2),
            F("lab: healthy again", r"^\s+healthy again in\s+{v} s", "s", noise=2),
        ),
    ),
    Bench(
        "bench_vpn",
        needs=frozenset({ROOT}),
        smoke=("--runs", "1", "--many", "2"),
        figures=(
            F("ensure() -> up (median)", r"^ensure\(\) -> up .*: median {v} ms", "ms", noise=10),
            F("ensure() itself (median)", r"^\s+of which ensure\(\) itself: median {v} ms", "ms", noise=10),
            F("no-op ensure() (median)", r"^no-op ensure\(\): median {v} ms", "ms", noise=2),
            F("observe() + running() (median)", r"observe\(\) \+ running\(\): median {v} ms", "ms", noise=2),
            F("first ping through the tunnel", r"^first ping through the tunnel.*: median {v} ms", "ms", noise=5),
            F("re-key in place -> up (median)", r"^re-key in place.*: median {v} ms", "ms", noise=10),
            F("remove() (median)", r"^remove\(\): median {v} ms", "ms", noise=10),
            F("gateways on one edge: all created", r"gateways on one edge: all created in {v} ms", "ms", noise=20),
            F("gateways on one edge: all up", r"gateways on one edge: .*all up after {v} ms", "ms", noise=20),
            F("teardown_all()", r"^teardown_all\(\) of \d+ gateways: {v} ms", "ms", noise=20),
        ),
    ),
    Bench(
        "bench_vm",
        needs=frozenset({ROOT}),
        smoke=("--taps", "3", "--seconds", "1"),
        smoke_timeout=300.0,
        figures=(
            F("tap create -> usable (median)", r"^tap create -> usable: median {v} ms", "ms", noise=5),
            F("tap create -> usable (p95)", r"^tap create -> usable: .*p95 {v} ms", "ms", noise=10),
            F("vm boot (TCG) -> up", r"^vm boot \(TCG\) -> up: {v} s", "s", noise=2),
            F("vm boot -> first lease", r"^vm boot .*-> first lease: {v} s", "s", noise=2),
            F("vm boot -> first ping from another host", r"^vm boot .*-> first ping from another host: {v} s", "s",
              noise=2),
            F("throughput VM -> Pod, {mtu}", r"^throughput VM -> Pod, (?P<mtu>mtu \d+): {v} Mbit/s", "Mbit/s",
              noise=50),
            F("throughput ratio mtu 9000 / 1500", r"^throughput ratio mtu 9000 / mtu 1500: {v}", "x", "higher"),
        ),
    ),
    Bench(
        "bench_cni",
        needs=frozenset({ROOT, POSTGRES}),
        smoke=("--calls", "3", "--starts", "1", "--pods", "3"),
        smoke_timeout=300.0,
        section=r"^(?P<section>l2vpc-cni, regular install|l2vpc-cni, editable install|the agent's part|"
                r"reference bridge plugin|host1 filling up)",
        figures=(
            F("{section}: {what} (p50)", r"^   (?P<what>ADD on demand|DEL on demand|VERSION \(start-up only\)) +"
              r"p50\s+{v} ms", "ms", noise=5),
            F("{section}: {what} (p95)", r"^   (?P<what>ADD on demand|DEL on demand) +p50 .* p95\s+{v} ms", "ms",
              noise=10),
            F("{section}: {what} (p50)", r"^   (?P<what>ADD|DEL) +p50\s+{v} ms", "ms", None),
            F("{section}: {what} (p50)", r"^   (?P<what>ADD while filling|ADD, last 20|DEL while emptying) +"
              r"p50\s+{v} ms", "ms", noise=10),
            F("{section}: no-op reconcile (p95)", r"^   no-op reconcile .* p95\s+{v} ms", "ms", noise=5),
            F("pod start -> first ping (median)", r"^pod start -> first ping: median {v} s", "s", noise=0.1),
        ),
    ),
    Bench(
        "bench_edge",
        needs=frozenset({ROOT}),
        smoke=("--rounds", "1", "--caps", "1000", "--seconds", "1"),
        smoke_only=("--no-fail-on-target",),
        figures=(
            F("lab up (1 host, 1 edge, premises)", r"^lab up \(.*\): {v}s", "s", noise=0.5),
            F("BGP Established (median)", r"^establish: median {v}s", "s", noise=0.2),
            F("BGP Established (max)", r"^establish: .*max {v}s", "s", noise=0.2),
            F("shaping error at {mbps} Mbps", r"bandwidth_mbps (?P<mbps>\d+) -> .*off by at most {v} %", "%",
              noise=3),
            F("lab down", r"^lab down: {v}s", "s", noise=0.5),
        ),
    ),
    Bench(
        "bench_heal",
        needs=frozenset({ROOT, POSTGRES}),
        smoke=("--rounds", "1"),
        smoke_only=("--no-fail-on-target",),
        smoke_timeout=300.0,
        figures=(
            F("lab up ({mode})", r"^\[(?P<mode>\w+)\] .*: lab up {v}s", "s", noise=2),
            F("established -> every workload pings premises, {mode} (median)",
              r"^heal \[(?P<mode>\w+)\]: median {v}s", "s", noise=0.3),
            F("established -> every workload pings premises, {mode} (max)",
              r"^heal \[(?P<mode>\w+)\]: .*max {v}s", "s", noise=0.3),
        ),
    ),
    Bench(
        "bench_edge_apply",
        needs=frozenset({ROOT, TERRAFORM}),
        smoke=("--rounds", "1"),
        private_cache=True,
        smoke_timeout=300.0,
        figures=(
            F("apply -> direct connect active", r"^apply -> direct connect active.*: median {v}s", "s", noise=0.2),
            F("apply -> VPN up", r"^apply -> VPN up: median {v}s", "s", noise=0.2),
            F("apply of VPC + workload alone", r"^apply -> direct connect .*without it: {v}s", "s", noise=0.2),
        ),
    ),
    Bench(
        "bench_lab_apply",
        needs=frozenset({ROOT}),
        smoke=("--hosts", "2", "--vpcs", "2", "--per-vpc", "2"),
        smoke_only=("--no-fail-on-target",),
        figures=(
            F("lab up", r"^lab up \(\d+ hosts, agents ready\)\s+{v} s", "s", noise=0.5),
            F("l2vpc apply (CLI process)", r"^l2vpc apply \(.*\)\s+{v} s", "s", noise=0.2),
            F("DHCP leases in place", r"^DHCP leases \(.*\) in place after\s+{v} s", "s", noise=0.2),
            F("every pair answers ping", r"^every pair answers ping after\s+{v} s", "s", noise=0.2),
            F("second apply (no changes)", r"^second apply \(no changes\)\s+{v} s", "s", noise=0.2),
            F("lab down", r"^lab down\s+{v} s", "s", noise=0.5),
        ),
    ),
    Bench(
        "bench_provider_start",
        smoke=("--runs", "2"),
        section=r"^(?P<section>cold|warm) \(",
        figures=(
            F("{section}: {what} (median)", r"^\s+(?P<what>handshake|first schema|exit): median\s+{v} ms", "ms",
              noise=3),
            F("{section}: {what} (p90)", r"^\s+(?P<what>handshake|first schema): .*p90\s+{v} ms", "ms", noise=5),
        ),
    ),
    Bench(
        "bench_provider_tf",
        needs=frozenset({TERRAFORM}),
        smoke=("--counts", "2", "--steps", "plan,apply,replan,destroy", "--runs", "1", "--handshake-runs", "2"),
        figures=(
            F("{step} {n}: l2vpc", r"^(?P<step>plan|apply|re-plan|destroy) (?P<n>\d+): l2vpc {v} s", "s", noise=0.1),
            F("{step} {n}: null provider (baseline)",
              r"^(?P<step>plan|apply|re-plan|destroy) (?P<n>\d+): .*, null {v} s", "s", None),
            F("{step} {n}: l2vpc / null", r"^(?P<step>plan|apply|re-plan|destroy) (?P<n>\d+): .*ratio {v}", "x",
              "lower"),
            F("provider handshake (median)", r"^handshake: l2vpc median {v} ms", "ms", noise=3),
            F("provider cold handshake (median)", r"^handshake: .*cold median {v} ms", "ms", noise=3),
            F("provider first schema (median)", r"^handshake: .*first schema {v} ms", "ms", noise=3),
            F("null provider handshake (baseline)", r"^handshake: .*null median {v} ms", "ms", None),
        ),
    ),
)

BY_NAME = {b.name: b for b in BENCHES}


def bench_scripts() -> list[str]:
    """Names of the bench scripts in bench/ (helpers start with `_`; compare.py is the runner)."""
    return sorted(p.stem for p in BENCH_DIR.glob("bench_*.py"))


