"""`l2vpc plan|apply|show`: the engine driven from a topology file (embedded SQLite state).

`plan` never writes the state: it syncs the file into a scratch copy of the state and plans there
(a plan that finds nothing to do keeps a fingerprint of what it read beside the state, so that the
next one with the same file and state answers at once: plan_record.py).
`apply` syncs the real state in one transaction (a file that fails half-way changes nothing)
and converges the hosts. Both refuse while a lab runs a controller for the state (its record,
l2vpc.paths.local_control_plane): the controller owns the hosts then, and a topology file's
all-or-nothing sync has no counterpart in its API; Terraform goes through it. `show` (and
`l2vpc graph`) ask that controller, as an admin, when there is one.
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
from pathlib import Path
from typing import Any

from l2vpc import paths
from l2vpc.cli import CliError
from l2vpc.embedded import default_state_path, open_engine, plan_record
from l2vpc.engine.api import Engine
from l2vpc.engine.executor import ExecutionResult
from l2vpc.engine.model import Host
from l2vpc.engine.planner import Plan
from l2vpc.engine.secrets import SecretBox
from l2vpc.engine.store import open_store
from l2vpc.engine.store.documents import dumps, loads
from l2vpc.engine.topology_file import load, plan_sync, read_bytes, sync_snapshot
from l2vpc.hostconfig import HostConfig
from l2vpc.hostconfig.diff import diff

ENDPOINT_ENV, TOKEN_ENV, CA_FILE_ENV = "L2VPC_ENDPOINT", "L2VPC_TOKEN", "L2VPC_CA_FILE"
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
    p = sub.add_parser("show", help="list what the state holds, or what a controller holds")
    p.add_argument("--state", default=None, help="the state file (default: the lab's controllers if a lab runs "
                   "some, else $L2VPC_STATE_PATH, else state.db in $L2VPC_HOME)")
    p.add_argument("--endpoint", default=os.environ.get(ENDPOINT_ENV),
                   help=f"ask the controller(s) at HOST:PORT[,HOST:PORT] (default: ${ENDPOINT_ENV})")
    p.add_argument("--token-file", default=None,
                   help=f"with --endpoint: file holding the token (default: ${TOKEN_ENV}); an admin token lists every "
                        "tenant's objects")
    p.add_argument("--ca", default=os.environ.get(CA_FILE_ENV),
                   help=f"with --endpoint: CA certificate of the controllers' TLS (default: ${CA_FILE_ENV})")
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
                # A throwaway copy: no journal and no fsync (a plan of a 20 MB state: ~20 ms).
                dst.execute("PRAGMA journal_mode = OFF")
                dst.execute("PRAGMA synchronous = OFF")
                src.backup(dst)
            finally:
                src.close()
                dst.close()
        yield target


NO_CHANGES = {"created": 0, "updated": 0, "deleted": 0}


def _run_plan(file: str, state: str, raw: bytes, secrets: SecretBox | None) -> tuple[Plan, dict[str, int], dict[str, str]]:
    """`secrets`: the state's (the copy's secrets are sealed with its key: a key of the copy's own
    could not open them, every secret would look changed, or unreadable); None without a state.
    A plan that finds nothing to do is recorded (plan_record.py) for the snapshot it read."""
    with scratch_copy(state) as scratch:
        store = open_store(scratch)
        try:
            engine = Engine(store, secrets=secrets)
            tf = load(file, engine.hosts(), raw)
            p, counts, names = plan_sync(engine, tf)
            if secrets is not None and p.is_empty and counts == NO_CHANGES:
                plan_record.record(state, plan_record.fingerprint(
                    raw, secrets.digest(plan_record.KEY_PURPOSE), *plan_record.read_rows(scratch)))
            return p, counts, names
        finally:
            store.close()


def _recorded_no_op(state: str, raw: bytes, secrets: SecretBox) -> bool:
    """Whether a plan or apply recorded a no-op for exactly this file and state (plan_record.py)."""
    want = plan_record.recorded(state)
    if want is None:
        return False
    try:
        rows = plan_record.read_rows(state)
    except sqlite3.Error:
        return False  # the full plan reads it and says what is wrong
    return want == plan_record.fingerprint(raw, secrets.digest(plan_record.KEY_PURPOSE), *rows)


def _print_plan(p: Plan, counts: dict[str, int], as_json: bool, names: dict[str, str]) -> None:
    if as_json:
        print(json.dumps({"objects": counts, **p.to_dict()}, indent=2, sort_keys=True))
    else:
        print(f"Objects: {counts['created']} to create, {counts['updated']} to update, {counts['deleted']} to delete.")
        print(p.render(names))


def local_controllers(state: str) -> Any:
    """The controllers a lab runs for `state` as an admin's RemoteEngine (every tenant), or None
    when no lab runs any; CliError naming the record when it is stale."""
    try:
        plane = paths.local_control_plane(state)
        if plane is None:
            return None
        token = plane.token(admin=True)
    except paths.ControlPlaneError as e:
        raise CliError(str(e)) from None
    from l2vpc.controller.client import RemoteEngine

    return RemoteEngine(plane.endpoint, token, ca_file=plane.ca_file, retry_seconds=5.0)


def _embedded_only(command: str, state: str) -> None:
    """`plan|apply -f` drive the embedded engine: not beside a controller that owns the hosts."""
    try:
        plane = paths.local_control_plane(state)
    except paths.ControlPlaneError as e:
        raise CliError(str(e)) from None
    if plane is not None:
        raise CliError(f"{command} -f drives the embedded engine, but a lab runs a controller for {state} (record "
                       f"{plane.record}, controllers {plane.endpoint}) that owns its hosts: declare the topology "
                       "with Terraform (`l2vpc tf -C DIR apply`), or run the lab without a controller "
                       "(`l2vpc lab down`, then `l2vpc lab up --embedded`)")


def _plan(args: argparse.Namespace) -> int:
    state = args.state or default_state_path()
    _embedded_only("plan", state)
    raw = read_bytes(args.file)
    secrets = SecretBox.for_state(state) if os.path.exists(state) else None
    if secrets is not None and _recorded_no_op(state, raw, secrets):
        _print_plan(Plan(), dict(NO_CHANGES), args.json, {})
        return 0
    p, counts, names = _run_plan(args.file, state, raw, secrets)
    _print_plan(p, counts, args.json, names)
    return 0


def _apply(args: argparse.Namespace) -> int:
    state = args.state or default_state_path()
    _embedded_only("apply", state)
    raw = read_bytes(args.file)
    tf = load(args.file, _registered(state), raw)  # a bad file fails here, before the state is opened
    engine = open_engine(state, agents=args.agents)
    store = engine.store
    try:
        # The reports converge plans from, as stored: the no-op record (plan_record.py) names them.
        _, reports = plan_record.read_rows(state)
        actual = {h: HostConfig.from_dict(loads(text)) for h, _, text in reports}
        # One transaction: a file that fails half-way changes nothing.
        counts, topo, rows = sync_snapshot(engine, tf)
        names = {v.id: v.name for v in topo.vpcs.values()}

        def show_plan(p: Plan) -> None:
            if not args.json:
                _print_plan(p, counts, False, names)

        def progress(host: str, msg: str) -> None:
            if not args.json:
                print(f"  {host}: {msg}", file=sys.stderr)

        plan, result = engine.converge(progress=progress, on_plan=show_plan, topology=topo, actual=actual)
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
        if result.ok:
            _record_applied(state, raw, engine, rows, reports, actual, plan, result)
        return 0 if result.ok else 1
    finally:
        store.close()


def _record_applied(state: str, raw: bytes, engine: Engine, rows: list[plan_record.ObjectRow],
                    reports: list[plan_record.ReportRow], actual: dict[str, HostConfig], plan: Plan,
                    result: ExecutionResult) -> None:
    """Record that planning this file again finds nothing to do, when the apply shows it: every
    host it pushed runs the desired config of its plan (no second round changed it) and no
    learned route changed (the other hosts' desired configs stay as planned). The state named:
    the objects as its sync committed them, the reports it planned from and those it wrote."""
    stored = {h: (h, g, text) for h, g, text in reports}
    now = dict(actual)
    for host, r in result.results.items():
        hp = plan.hosts.get(host)
        if not r.ok or r.actual is None or r.report is None or hp is None or hp.desired is None:
            return
        if diff(r.actual, hp.desired):
            return
        now[host] = r.actual
        stored[host] = (host, r.actual.generation, dumps(r.report))
    if Engine.learned_prefixes(now) != Engine.learned_prefixes(actual):
        return
    key_id = engine.secrets.digest(plan_record.KEY_PURPOSE)
    plan_record.record(state, plan_record.fingerprint(raw, key_id, rows, stored.values()))


def _registered(state: str) -> list[Host]:
    """The hosts the state knows (none when there is no state yet: nothing is created here)."""
    if not os.path.exists(state):
        return []
    store = open_store(state)
    try:
        return Engine(store).hosts()
    finally:
        store.close()


def _refresh(state: str) -> None:
    """Ask the state's hosts what they run now and record it (what `show --refresh` shows)."""
    engine = open_engine(state)
    try:
        engine.refresh(timeout=REFRESH_TIMEOUT)
    finally:
        close = getattr(engine.agents, "close", None)
        if close is not None:
            close()
        engine.store.close()


def _show_source(args: argparse.Namespace) -> tuple[Any, str]:
    """(an engine, or the controllers as a RemoteEngine; where it is) for `show`."""
    token = os.environ.get(TOKEN_ENV)
    if args.token_file:
        from l2vpc.controller.cli import read_token_file

        token = read_token_file(Path(args.token_file))
    if args.endpoint:
        if args.state:
            raise CliError(f"--state and --endpoint (or ${ENDPOINT_ENV}): give one; a controller keeps its own state")
        if not token:
            raise CliError(f"--endpoint {args.endpoint}: give a token with --token-file or ${TOKEN_ENV}")
        from l2vpc.controller.client import RemoteEngine

        return RemoteEngine(args.endpoint, token, ca_file=args.ca), f"controller {args.endpoint}"
    if args.token_file or token:
        raise CliError(f"{'--token-file' if args.token_file else '$' + TOKEN_ENV} is set but no endpoint "
                       f"(--endpoint or ${ENDPOINT_ENV}): the token is for a controller; set the endpoint, or unset "
                       "the token to show the local state")
    path = args.state or default_state_path()
    remote = local_controllers(path)  # a lab that runs its own controllers for this state
    if remote is not None:
        return remote, f"the lab's controllers {', '.join(remote.endpoints)} (admin: every tenant)"
    return Engine(open_store(path)), f"state {path}"


def _show(args: argparse.Namespace) -> int:
    engine, where = _show_source(args)
    if args.refresh and isinstance(engine, Engine):
        _refresh(args.state or default_state_path())
    try:
        data: dict[str, Any] = {k: [o.model_dump(mode="json") for o in engine.list(k)]
                                for k in ("vpc", "attachment", "direct_connect", "vpn")}
        # A controller says degraded in the VPC's status; the pairs are in `controller status`.
        degraded = getattr(engine, "overlay_degraded", None)
        data["overlay"] = [p.to_dict() for p in degraded()] if degraded is not None else []
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
            for d in data["direct_connect"]:
                bgp = d.get("bgp") or {}
                peering = (f", BGP AS {bgp.get('customer_asn')} at {bgp.get('customer_ip')} "
                           f"(provider AS {bgp.get('provider_asn')} at {bgp.get('provider_ip')})" if bgp else "")
                vlan = f" vlan {d['vlan']}" if d.get("vlan") else ""
                print(f"direct_connect {d['name']} ({d['id']}) at {d['location']} on {d.get('edge_host') or '-'}: "
                      f"vpc {d['vpc_id']}, {d['mode']}{vlan}, {d['bandwidth_mbps']} Mbps{peering}, {d['status']}")
            for v in data["vpn"]:
                print(f"vpn {v['name']} ({v['id']}) on {v.get('edge_host') or '-'}: vpc {v['vpc_id']}, public "
                      f"{v.get('public_ip') or '-'} -> peer {v['peer_address']}, remote "
                      f"{', '.join(v.get('remote_cidrs') or ())}, {v['status']}")
            print(f"({where})", file=sys.stderr)
        return 0
    finally:
        close = getattr(engine, "close", None)
        if close is not None:
            close()
        else:
            engine.store.close()


__all__ = ["add_commands", "default_state_path"]
