"""`l2vpc plan|apply|show`: the engine driven from a topology file (embedded SQLite state).

`plan` never writes: it syncs the file into a scratch copy of the state and plans there.
`apply` does the same scratch run first, so a file that fails half-way changes nothing, then
syncs the real state and converges the hosts.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from l2vpc.embedded import default_state_path, open_engine
from l2vpc.engine.api import Engine
from l2vpc.engine.planner import Plan
from l2vpc.engine.store import open_store
from l2vpc.engine.topology_file import load, sync

REFRESH_TIMEOUT = 3.0  # seconds per host for `show --refresh`


def add_commands(sub: argparse._SubParsersAction) -> None:
    for name, helptext in (("plan", "show what applying a topology file would change"),
                           ("apply", "make the state equal a topology file and converge the hosts")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("-f", "--file", required=True, help="topology file (YAML or JSON)")
        p.add_argument("--state", default=None, help="the state file (default: $L2VPC_STATE_PATH, else state.db in $L2VPC_HOME: /var/lib/l2vpc as root, ~/.local/state/l2vpc otherwise)")
        p.add_argument("--json", action="store_true", help="print the plan as JSON")
        p.add_argument("--agents", choices=("auto", "memory", "grpc"), default="auto",
                       help="how to reach hosts: memory (record only) or grpc (real agents); auto = grpc if "
                            "hosts have agent addresses")
        p.set_defaults(func=_plan if name == "plan" else _apply)
    p = sub.add_parser("show", help="list what the state holds")
    p.add_argument("--state", default=None)
    p.add_argument("--json", action="store_true")
    p.add_argument("--refresh", action="store_true",
                   help="ask the hosts' agents what they run first (sessions, tunnels, overlay health) and record "
                        "it; unreachable hosts keep their last report")
    p.set_defaults(func=_show)


@contextmanager
def scratch_copy(path: str) -> Iterator[str]:
    """A private copy of the state file (consistent, via SQLite's backup API) in a temp dir."""
    with tempfile.TemporaryDirectory(prefix="l2vpc-plan-") as d:
        target = os.path.join(d, "state.db")
        if os.path.exists(path):
            src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            dst = sqlite3.connect(target)
            try:
                src.backup(dst)
            finally:
                src.close()
                dst.close()
        yield target


def _run_plan(file: str, state: str) -> tuple[Plan, dict[str, int], dict[str, str]]:
    with scratch_copy(state) as scratch:
        store = open_store(scratch)
        try:
            engine = Engine(store)
            tf = load(file, engine.hosts())
            counts = sync(engine, tf)
            return engine.plan(), counts, {v.id: v.name for v in engine.list("vpc")}
        finally:
            store.close()


def _print_plan(p: Plan, counts: dict[str, int], as_json: bool, names: dict[str, str]) -> None:
    if as_json:
        print(json.dumps({"objects": counts, **p.to_dict()}, indent=2, sort_keys=True))
    else:
        print(f"Objects: {counts['created']} to create, {counts['updated']} to update, {counts['deleted']} to delete.")
        print(p.render(names))


def _plan(args: argparse.Namespace) -> int:
    state = args.state or default_state_path()
    p, counts, names = _run_plan(args.file, state)
    _print_plan(p, counts, args.json, names)
    return 0


def _apply(args: argparse.Namespace) -> int:
    state = args.state or default_state_path()
    p, counts, names = _run_plan(args.file, state)  # fails here, before any write, on a bad file
    if not args.json:
        _print_plan(p, counts, False, names)
    engine = open_engine(state, agents=args.agents)
    store = engine.store
    try:
        sync(engine, load(args.file, engine.hosts()))

        def progress(host: str, msg: str) -> None:
            if not args.json:
                print(f"  {host}: {msg}", file=sys.stderr)

        plan, result = engine.converge(progress=progress)
        if args.json:
            print(json.dumps({
                "objects": counts, **plan.to_dict(),
                "results": {h: r.to_dict() for h, r in sorted(result.results.items())},
            }, indent=2, sort_keys=True, default=str))
        else:
            for r in sorted(result.results.values(), key=lambda r: r.host):
                state_txt = "ok" if r.ok else f"FAILED at {r.step}: {r.error}"
                print(f"host {r.host}: {r.changes} changes, {state_txt} ({r.seconds:.2f}s, {r.attempts} attempts)")
            print("Apply complete." if result.ok else "Apply failed; run it again once the hosts are reachable.")
        return 0 if result.ok else 1
    finally:
        store.close()


def _show(args: argparse.Namespace) -> int:
    state = args.state or default_state_path()
    if args.refresh:
        engine = open_engine(state)
        try:
            engine.refresh(timeout=REFRESH_TIMEOUT)
        finally:
            close = getattr(engine.agents, "close", None)
            if close is not None:
                close()
            engine.store.close()
    store = open_store(state)
    try:
        engine = Engine(store)
        data: dict[str, Any] = {k: [o.model_dump(mode="json") for o in engine.list(k)]
                                for k in ("vpc", "attachment", "direct_connect", "vpn")}
        data["overlay"] = [p.to_dict() for p in engine.overlay_degraded()]
        data["hosts"] = [h.model_dump(mode="json") for h in engine.hosts()]
        for kind in ("direct_connect", "vpn"):
            for o in data[kind]:
                for secret in ("service_key", "pre_shared_key"):
                    if o.get(secret):
                        o[secret] = "(sensitive)"
                if o.get("bgp", {}) and o["bgp"].get("md5_key"):
                    o["bgp"]["md5_key"] = "(sensitive)"
        if args.json:
            print(json.dumps(data, indent=2, sort_keys=True))
        else:
            for h in data["hosts"]:
                print(f"host {h['name']}: {h['role']} in {h['region']}, underlay {h['underlay_ip']}, {h['status']}")
            for v in data["vpc"]:
                print(f"vpc {v['name']} ({v['id']}): vni {v['vni']}, {v['scope']} {v['region'] or ''}, mtu {v['mtu']}, "
                      f"cidr {v['cidr']}, {v['status']}")
                for pair in data["overlay"]:
                    if pair["vpc_id"] == v["id"]:
                        print(f"  degraded: {pair['detail']}")
            for a in data["attachment"]:
                print(f"attachment {a['workload']}.{a['interface_name']} ({a['id']}) on {a['host']}: vpc {a['vpc_id']}, "
                      f"mac {a['mac_address']}, {a['ip_mode']} {a['ip_address'] or ''}")
        return 0
    finally:
        store.close()


__all__ = ["add_commands", "default_state_path"]
