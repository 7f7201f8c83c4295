"""Controller scale: 1,000 hosts registered over gRPC, one converge of 10,000 attachments, and
the heartbeat load.

Starts a throwaway PostgreSQL (l2vpc/testing/postgres.py), one controller process (`--controllers
2`: two on the same database; fleets spread over them), and F fleet processes (`l2vpc agent
fleet`) carrying the hosts between them (memory driver, full agents, one TLS server per
process). Each host has its own role-agent token and registers and heartbeats by itself.

1. objects: 10,000 attachments over 1,000 VPCs (10 per VPC, each on another host of the VPC's
   region; static addresses) are written DIRECTLY through an Engine on the store (tenant
   `bench`), with the hosts, BEFORE the controller and fleets start: this bench measures the
   converge; bench_controller_api.py measures creates through the API. Each host gets an empty
   report ("runs nothing", as `l2vpc lab up` records), so the controller has no drift to repair
   on its own and converges only when asked;
2. registration: controllers and fleets start; time until every host has registered and
   heartbeated (Status: last seen after the start);
3. converge: one Converge call (tenant token), from the request to every host converged (target
   <= 60 s), checked on a sample of hosts through their agents;
4. heartbeat load: with nothing else happening, CPU of the controller process(es) over a window
   (default 30 s) as % of one core (target < 25 %), from /proc/<pid>/stat utime+stime; also the
   fleets' and PostgreSQL's (postmaster and backends). The periodic resync of every host is set
   longer than the run, so the window holds heartbeats and the leader's ticks only;
5. with `--baseline`: controller c1 restarts (same port and database; agents reconnect) telling
   agents to heartbeat every 60 s, and the same window is measured again: the controller's cost
   with (almost) no heartbeats, to split per-heartbeat cost from the leader's fixed cost.

    .venv/bin/python bench/bench_controller_scale.py [--hosts 1000] [--fleets 4] [--attachments 10000]
        [--per-vpc 10] [--controllers 1|2|3] [--heartbeat-interval 2] [--cpu-window 30 (0: converge only)]
        [--baseline] [--no-fsync]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import _controller_bench as cb  # bench/ is on sys.path: these run as scripts
from cryptography.fernet import Fernet

from l2vpc.agent.local import LocalAgentPool
from l2vpc.controller.auth import create_token
from l2vpc.controller.plane import DEFAULT_MAX_HEARTBEAT_RATE
from l2vpc.engine import quotas
from l2vpc.engine.agent_client import GrpcAgentPool, engine_tls
from l2vpc.engine.api import Engine
from l2vpc.engine.model import Host
from l2vpc.engine.secrets import SecretBox
from l2vpc.engine.store import open_store
from l2vpc.hostconfig import HostConfig

TENANT = "bench"


def host_docs(n: int, fleets: int, addresses: list[str]) -> list[list[dict[str, str]]]:
    """Hosts h0001.. split over the fleets; fleet j's hosts are region r<j>, at its address."""
    per = -(-n // fleets)
    out: list[list[dict[str, str]]] = []
    for j in range(fleets):
        out.append([{"name": f"h{i:04d}", "region": f"r{j}", "role": "compute",
                     "underlay_ip": f"10.64.{i // 250}.{i % 250 + 1}", "agent_address": addresses[j]}
                    for i in range(j * per + 1, min((j + 1) * per, n) + 1)])
    return out


def say(msg: str) -> None:
    print(msg, flush=True)


def prepare(url: str, key: bytes, fleets: list[list[dict[str, str]]], attachments: int,
            per_vpc: int) -> list[str]:
    """VPCs and hosts (with an empty report each) through an Engine on the store; returns the
    VPC ids. VPCs carry nothing on hosts until attachments land, so the controller has nothing
    to converge until add_attachments()."""
    store = open_store(url)
    try:
        engine = Engine(store, LocalAgentPool(), tenant=TENANT, secrets=SecretBox(key))
        vpc_count = -(-attachments // per_vpc)
        if vpc_count > quotas.DEFAULT_QUOTAS["vpc"]:  # 50,000 attachments: 5,000 VPCs
            quotas.set_limits(store, TENANT, {"vpc": vpc_count})
        docs = [{"name": f"v{k:04d}", "region": fleets[k % len(fleets)][0]["region"],
                 "cidr": f"172.{16 + k // 256}.{k % 256}.0/24"} for k in range(vpc_count)]
        made = engine.create_many("vpc", docs)  # one transaction: 5,000 VPCs in seconds, not minutes
        refused = [r for r in made if isinstance(r, Exception)]
        if refused:
            raise SystemExit(f"VPC refused: {refused[0]}")
        vpcs = [v.id for v in made]
        for docs in fleets:
            for h in docs:
                engine.register_host(h)
                with store.transaction() as tx:
                    tx.put_host_report(h["name"], 0, HostConfig(h["name"], h["underlay_ip"]).to_dict())
        return vpcs
    finally:
        store.close()


def add_attachments(url: str, key: bytes, fleets: list[list[dict[str, str]]], attachments: int,
                    per_vpc: int, vpcs: list[str]) -> tuple[float, list[str]]:
    """All attachments in ONE transaction: the running controller sees none of them, then all,
    so the converge that follows is timed from a state where hosts run nothing of them.
    Returns the seconds the write took and the hosts carrying attachments."""
    from l2vpc.engine.store.postgres import PostgresStore

    # 50,000 creates keep the transaction busy in Python between statements for longer than
    # the store's idle-in-transaction limit on a loaded machine.
    store = PostgresStore(url, idle_timeout=900)
    try:
        engine = Engine(store, LocalAgentPool(), tenant=TENANT, secrets=SecretBox(key))
        started = time.monotonic()
        items: list[dict[str, str]] = []
        used = set()
        for k, vpc in enumerate(vpcs):
            members = fleets[k % len(fleets)]
            offset = (k // len(fleets)) * per_vpc  # the region's next VPC starts further on: all hosts get some
            for n in range(min(per_vpc, attachments - len(items))):
                host = members[(offset + n) % len(members)]["name"]
                used.add(host)
                items.append({"vpc_id": vpc, "workload": f"vm-{k:04d}-{n}", "host": host, "ip_mode": "static",
                              "ip_address": f"172.{16 + k // 256}.{k % 256}.{10 + n}/24"})
        refused = [r for r in engine.create_many("attachment", items) if isinstance(r, Exception)]
        if refused:
            raise SystemExit(f"attachment refused: {refused[0]}")
        return time.monotonic() - started, sorted(used)
    finally:
        store.close()


def measure(pids: dict[str, int], seconds: float, interval: float, hosts: int) -> float:
    say(f"heartbeat load: {hosts} hosts every {interval:g}s = {hosts / interval:.0f} Heartbeat RPCs/s; "
        f"measuring {seconds:g}s ...")
    load = cb.cpu_percent(pids, seconds, tree=["postgres"])
    for n, v in load.items():
        say(f"  {n}: {v:.1f}% of one core")
    return max(v for n, v in load.items() if n.startswith("controller"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hosts", type=int, default=1000)
    p.add_argument("--fleets", type=int, default=4)
    p.add_argument("--attachments", type=int, default=10_000)
    p.add_argument("--per-vpc", type=int, default=10)
    p.add_argument("--controllers", type=int, default=1, choices=(1, 2, 3))
    p.add_argument("--heartbeat-interval", type=float, default=2.0, help="what the controllers tell agents (default 2)")
    p.add_argument("--cpu-window", type=float, default=30.0, help="0: skip the heartbeat load (converge only)")
    p.add_argument("--baseline", action="store_true", help="also measure with heartbeats every 60 s")
    p.add_argument("--no-fsync", action="store_true", help="PostgreSQL without fsync (default: durable commits)")
    args = p.parse_args()

    key = Fernet.generate_key()
    fleet_addresses = [f"127.0.0.1:{cb.free_port()}" for _ in range(args.fleets)]
    fleets = host_docs(args.hosts, args.fleets, fleet_addresses)
    with cb.postgres(durable=not args.no_fsync) as pg, tempfile.TemporaryDirectory(prefix="l2vpc-scale-") as tmp:
        url = pg.create_database("scale")
        d = Path(tmp)
        ca = cb.make_pki(d / "pki")
        cluster = cb.Cluster(d, cb.env(key.decode()), d / "pki")
        try:
            say(f"PostgreSQL {'without fsync' if args.no_fsync else 'durable (fsync on)'}; {args.hosts} hosts in "
                f"{args.fleets} fleet processes; {args.controllers} controller(s); heartbeat every "
                f"{args.heartbeat_interval:g}s")
            store = open_store(url)
            t0 = time.monotonic()
            try:
                tokens = {h["name"]: create_token(store, "agent", host=h["name"])[1] for f in fleets for h in f}
                admin = create_token(store, "admin")[1]
                tenant = create_token(store, "tenant", tenant=TENANT)[1]
            finally:
                store.close()
            say(f"tokens: {len(tokens)} agent tokens in {time.monotonic() - t0:.1f}s")
            vpcs = -(-args.attachments // args.per_vpc)
            say(f"creating {args.hosts} hosts and {vpcs} VPCs (Engine on the store)")
            vpc_ids = prepare(url, key, fleets, args.attachments, args.per_vpc)

            down_after = max(10.0, 5 * args.heartbeat_interval)
            listens = [f"127.0.0.1:{cb.free_port()}" for _ in range(args.controllers)]
            controllers = []
            t0 = time.monotonic()
            started_unix = time.time()
            for i, listen in enumerate(listens):
                controllers.append(cb.start_controller(
                    cluster, url, f"c{i + 1}", heartbeat_interval=args.heartbeat_interval, down_after=down_after,
                    resync_interval=3600, listen=listen)[0])
            fleet_procs = []
            for j, docs in enumerate(fleets):
                order = listens[j % len(listens):] + listens[:j % len(listens)]  # spread over the controllers
                fleet_procs.append(cb.start_fleet(cluster, f"fleet{j + 1}", docs, tokens, order, ca, fleet_addresses[j]))
            admin_api = cb.Api(listens[0], d / "pki" / "ca.pem", admin)
            while True:
                for proc in cluster.procs:
                    proc.check()
                s = admin_api.status()
                seen = sum(1 for h in s.hosts if h.last_seen_unix >= started_unix and h.status == "up")
                if seen == args.hosts:
                    break
                if time.monotonic() - t0 > 300:
                    raise SystemExit(f"only {seen} of {args.hosts} hosts registered after 300s")
                time.sleep(0.5)
            say(f"registration: {args.hosts} hosts registered and heartbeating {time.monotonic() - t0:.1f}s after "
                f"the controllers started (leader {s.leader})")

            say(f"writing {args.attachments} attachments in one transaction (Engine on the store) ...")
            seconds, used = add_attachments(url, key, fleets, args.attachments, args.per_vpc, vpc_ids)
            say(f"  written in {seconds:.1f}s; {len(used)} hosts carry attachments")
            tenant_api = cb.Api(listens[0], d / "pki" / "ca.pem", tenant)
            pids = {f"controller {p.name}": p.pid for p in controllers}
            pids |= {f"fleet {p.name}": p.pid for p in fleet_procs}
            pids["postgres"] = cb.postmaster_pid(pg)
            before = {n: cb.tree_ticks(pid) for n, pid in pids.items()}
            t0 = time.monotonic()
            done = tenant_api.converge(timeout=600)
            converge_s = time.monotonic() - t0
            cpu = {n: 100.0 * (cb.tree_ticks(pid) - before[n]) / cb.CLK_TCK / converge_s for n, pid in pids.items()}
            if done.failures:
                for f in list(done.failures)[:10]:
                    say(f"  FAILED {f.host} at {f.step}: {f.error}")
                raise SystemExit(f"converge: {len(done.failures)} hosts failed")
            say(f"CONVERGE: {args.attachments} attachments on {len(used)} hosts converged in {converge_s:.1f}s "
                f"(target <= 60s: {'OK' if converge_s <= 60 else 'OVER TARGET'}); revision {done.revision}")
            say("  CPU during the converge (% of one core): " + ", ".join(f"{n} {v:.0f}%" for n, v in cpu.items()))
            for e in list(admin_api.status().recent)[-5:]:  # what the leader says it did meanwhile
                say(f"  event: {e.host or '-'}: {e.what[:160]}")

            # The agents run what the controller said: a sample, read through their own servers.
            sample = random.Random(1).sample(used, min(20, len(used)))
            by_name = {h["name"]: h for docs in fleets for h in docs}
            ports = {}
            with GrpcAgentPool(engine_tls(d / "pki")) as pool:
                for name in sample:
                    ports[name] = len(pool.client(Host.model_validate(by_name[name])).report(timeout=30).ports)
            if not all(ports.values()):
                raise SystemExit(f"hosts without ports after converging: {ports}")
            say(f"  checked {len(sample)} hosts through their agents: {min(ports.values())}..{max(ports.values())} "
                "ports each")

            if args.cpu_window <= 0:
                admin_api.close()
                tenant_api.close()
                return 0
            # Controllers pace agents to at most DEFAULT_MAX_HEARTBEAT_RATE heartbeats/s in all.
            interval = max(args.heartbeat_interval, args.hosts / DEFAULT_MAX_HEARTBEAT_RATE)
            time.sleep(max(3.0, 2 * interval))  # the converge's aftermath settles
            worst = measure(pids, args.cpu_window, interval, args.hosts)
            s = admin_api.status()
            up = sum(1 for h in s.hosts if h.status == "up")
            say(f"HEARTBEAT LOAD: {worst:.1f}% of one core for the busiest controller (target < 25%: "
                f"{'OK' if worst < 25 else 'OVER TARGET'}); {up}/{args.hosts} hosts up")

            if args.baseline:
                c1 = controllers[0]
                c1.stop()
                cluster.procs.remove(c1)
                new, _ = cb.start_controller(cluster, url, "c1", heartbeat_interval=60, down_after=300,
                                             resync_interval=3600, listen=listens[0])
                pids["controller c1"] = new.pid
                # Agents learn the new interval from their next answered heartbeat.
                time.sleep(2 * args.heartbeat_interval + 5)
                base = measure(pids, args.cpu_window, 60, args.hosts)
                say(f"BASELINE: {base:.1f}% of one core with heartbeats every 60s: heartbeats cost "
                    f"{worst - base:.1f} points at {args.hosts / interval:.0f}/s "
                    f"(~{(worst - base) * 10 / (args.hosts / interval - args.hosts / 60):.2f} ms of "
                    "CPU each)")
            for proc in cluster.procs:
                proc.check()
            admin_api.close()
            tenant_api.close()
        finally:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
