"""`l2vpc lab up|down|status|exec|check`: simulated hosts with real agents, for demos and tests.

    l2vpc lab up --hosts 3 [--regions us-east,eu-west] [--edges 1] [--state .l2vpc/state.db]
    l2vpc apply -f topology.yaml          # or terraform apply with the same state
    l2vpc lab exec web1 -- ping -c 1 10.20.0.12
    l2vpc lab check                        # exits 1 on any reachability or isolation failure
    l2vpc lab down
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict

from l2vpc.cli import CliError
from l2vpc.lab.lab import Lab, LabError
from l2vpc.lab.netns import LabNetError
from l2vpc.lab.state import LabStateError
from l2vpc.lab.topology import DEFAULT_LOCATION, DEFAULT_REGION, LabTopology, TopologyError
from l2vpc.pki import PkiError

_ERRORS = (LabError, LabNetError, LabStateError, TopologyError, PkiError)
MEMORY_NOTICE = ("notice: not running as root, so the lab uses the memory driver: agents, TLS, gRPC and "
                 "registration are real, the dataplane is simulated (no namespaces, no traffic; `lab exec` is "
                 "unavailable and `lab check` only compares what agents report)")


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lab", help="simulated hosts (network namespaces) running real agents")
    lab = p.add_subparsers(dest="lab_command", metavar="ACTION", required=True)

    up = lab.add_parser("up", help="create hosts, start their agents and register them with the engine")
    up.add_argument("--hosts", type=int, default=3, help="compute hosts host1..hostN (default 3)")
    up.add_argument("--regions", default=DEFAULT_REGION, help=f"comma-separated, round-robin (default {DEFAULT_REGION})")
    up.add_argument("--edges", type=int, default=0, help="edge hosts edge1..edgeM (default 0)")
    up.add_argument("--locations", default=DEFAULT_LOCATION,
                    help=f"on-ramp locations of the edges, round-robin (default {DEFAULT_LOCATION})")
    up.add_argument("--driver", choices=("auto", "linux", "memory"), default="auto",
                    help="auto: linux as root, else memory")
    _state_arg(up)
    up.set_defaults(func=_up)

    down = lab.add_parser("down", help="remove everything the lab created (and only that)")
    _state_arg(down)
    down.set_defaults(func=_down)

    status = lab.add_parser("status", help="list hosts, agents and workloads")
    _state_arg(status)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_status)

    ex = lab.add_parser("exec", help="run a command inside a workload's namespace: exec WORKLOAD -- CMD...")
    ex.add_argument("workload")
    ex.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    _state_arg(ex)
    ex.set_defaults(func=_exec)

    check = lab.add_parser("check", help="ping within every VPC, verify isolation between VPCs; exit 1 on failure")
    check.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for replies and DHCP leases")
    _state_arg(check)
    check.set_defaults(func=_check)


def _state_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state", default=None,
                   help="the engine's state file (default: $L2VPC_STATE_PATH or .l2vpc/state.db)")


def _lab(args: argparse.Namespace) -> Lab:
    from l2vpc.engine.embedded import default_state_path

    try:
        return Lab(args.state or default_state_path())
    except _ERRORS as e:
        raise CliError(str(e)) from None


def _say(msg: str) -> None:
    print(msg, file=sys.stderr)


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _up(args: argparse.Namespace) -> int:
    lab = _lab(args)
    try:
        topo = LabTopology.build(args.hosts, _split(args.regions), args.edges, _split(args.locations))
        if args.driver == "memory" or (args.driver == "auto" and os.geteuid() != 0):
            _say(MEMORY_NOTICE)
        st = lab.up(topo, args.driver, progress=_say)
    except _ERRORS as e:
        raise CliError(str(e)) from None
    print(f"lab {st.id} up: {len(st.hosts)} hosts ({st.driver} driver), state {st.state_path}")
    for h in st.hosts:
        where = f", netns {h.netns}" if h.netns else ""
        print(f"  {h.name}: {h.role} in {h.region}, underlay {h.underlay_ip}{where}, agent pid {h.pid}")
    print(f"next: `l2vpc apply -f FILE --state {st.state_path}`, or Terraform with "
          f"L2VPC_STATE_PATH={st.state_path}; then `l2vpc lab check`")
    return 0


def _down(args: argparse.Namespace) -> int:
    lab = _lab(args)
    try:
        warnings = lab.down(progress=_say)
    except _ERRORS as e:
        raise CliError(str(e)) from None
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


def _status(args: argparse.Namespace) -> int:
    lab = _lab(args)
    try:
        st, hosts, attachments, vpc_names = lab.status()
    except _ERRORS as e:
        raise CliError(str(e)) from None
    reported = {p: h.name for h in hosts for p in h.ports}
    if args.json:
        print(json.dumps({
            "lab": {"id": st.id, "driver": st.driver, "state": st.state_path, "dir": st.dir},
            "hosts": [asdict(h) for h in hosts],
            "workloads": [{"workload": a.workload, "interface": a.interface_name, "host": a.host,
                           "vpc": vpc_names.get(a.vpc_id, a.vpc_id), "ip_mode": a.ip_mode,
                           "ip_address": a.ip_address, "realized": a.id in reported} for a in attachments],
        }, indent=2, sort_keys=True))
        return 0
    print(f"lab {st.id}: {st.driver} driver, state {st.state_path}")
    print(f"{'HOST':<8} {'ROLE':<8} {'REGION':<12} {'UNDERLAY':<15} {'AGENT':<28} PORTS")
    for h in hosts:
        if h.error:
            agent = f"down ({h.error[:40]})" if not h.running else f"error: {h.error[:30]}"
        else:
            assert h.health is not None
            state = "ok" if h.health["ok"] else ("pending" if not h.health["accepted_generation"] else "FAILED")
            agent = f"pid {h.pid} gen {h.health['accepted_generation']} {state}"
        print(f"{h.name:<8} {h.role:<8} {h.region:<12} {h.underlay_ip:<15} {agent:<28} {len(h.ports)}")
    if attachments:
        print(f"\n{'WORKLOAD':<16} {'IF':<6} {'HOST':<8} {'VPC':<16} {'ADDRESS':<20} STATUS")
        for a in attachments:
            address = a.ip_address or ("dhcp" if a.ip_mode == "dhcp" else "-")
            print(f"{a.workload:<16} {a.interface_name or '-':<6} {a.host or '-':<8} "
                  f"{vpc_names.get(a.vpc_id, a.vpc_id):<16} {address:<20} "
                  f"{'active' if a.id in reported else 'pending'}")
    return 0


def _exec(args: argparse.Namespace) -> int:
    command = list(args.command)
    if "--" in command:  # options between WORKLOAD and -- (e.g. --state) are ours, the rest is the command
        cut = command.index("--")
        ours, command = command[:cut], command[cut + 1:]
        extra = argparse.ArgumentParser(prog="l2vpc lab exec", add_help=False)
        extra.add_argument("--state", default=args.state)
        try:
            args.state = extra.parse_args(ours).state
        except SystemExit:
            raise CliError(f"exec: unexpected {' '.join(ours)!r} before --; only --state may go there") from None
    try:
        argv = _lab(args).exec_argv(args.workload, command)
    except _ERRORS as e:
        raise CliError(str(e)) from None
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(argv[0], argv)  # the command's exit status and signals are the user's


def _check(args: argparse.Namespace) -> int:
    try:
        result = _lab(args).check(timeout=args.timeout)
    except _ERRORS as e:
        raise CliError(str(e)) from None
    for line in result.lines:
        print(line)
    return 0 if result.ok else 1
