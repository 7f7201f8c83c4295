"""`l2vpc lab up|down|status|exec|check`: simulated hosts with real agents, for demos and tests.

    l2vpc lab up --hosts 3 [--regions us-east,eu-west] [--edges 1]   # + one local controller (SQLite)
    l2vpc tf -C DIR apply                  # the provider finds that controller (control-plane.json)
    l2vpc lab exec web1 -- ping -c 1 10.20.0.12
    l2vpc lab check                        # exits 1 on any reachability or isolation failure
    l2vpc lab down

With a customer site for direct connects and VPNs (root):

    l2vpc lab up --hosts 2 --edges 1 --premises [--premises-psk KEY]
    terraform apply                        # an l2vpc_direct_connect at the edge's location
    l2vpc lab premises sync                # the premises router takes the customer peering address
    l2vpc lab exec premises-host -- ping 10.20.0.11
    l2vpc lab exec premises-l2 -- busybox udhcpc -i eth0     # behind a layer2 direct connect
    l2vpc lab premises vlan 100            # premises-l2 tags its frames (layer2 with vlan = 100)

Without a controller (the embedded engine drives the agents when it applies; nothing repairs
in between):

    l2vpc lab up --hosts 3 --embedded
    l2vpc apply -f topology.yaml          # or Terraform on the same state

With several controllers the lab runs (they converge it; the agents register with them):

    l2vpc lab up --hosts 3 --controllers 2 [--postgres [URL]]   # SQLite, or PostgreSQL the lab owns / at URL
    eval "$(l2vpc lab env)"                                      # L2VPC_ENDPOINT, _CA_FILE, _TOKEN
    l2vpc show; l2vpc lab check; l2vpc lab status                # ask the controllers

With a controller the lab does not run (`lab up` fails when the agents cannot reach it):

    l2vpc lab hosts --hosts 3 > lab-hosts.json       # the operator enrolls the lab's hosts, and gets tokens
    l2vpc controller host enroll --hosts lab-hosts.json --token-output tokens --ttl 7d
    l2vpc lab up --hosts 3 --pki CONTROLLER_PKI_DIR --controller 10.200.255.254:7700 \\
        --controller-ca CONTROLLER_PKI_DIR/ca.pem --controller-tokens tokens   # lines: HOST TOKEN
    # as root the controller must listen on 10.200.255.254 in the lab's underlay switch namespace
    # (`nsenter --net=/run/netns/<switch> l2vpc controller run ...`; `lab status --json` names it)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

from l2vpc.agent.credentials import HeartbeatError, TokenSource
from l2vpc.agent.drivers.linux.vlantag import VlanTagError
from l2vpc.cli import CliError
from l2vpc.lab import processes
from l2vpc.lab.agents import LabController
from l2vpc.lab.controller_lab import LAB_POSTGRES, TENANT, ControllerPlan
from l2vpc.lab.controllers import ControllerStartError
from l2vpc.lab.lab import DEFAULT_BANDWIDTH_SCALE, Lab, LabError
from l2vpc.lab.netns import LabNetError
from l2vpc.lab.premises import DEFAULT_ASN, DEFAULT_LAN, DEFAULT_PEERING, PremisesConfig
from l2vpc.lab.state import LabState, LabStateError
from l2vpc.lab.topology import DEFAULT_LOCATION, DEFAULT_REGION, LabTopology, TopologyError
from l2vpc.pki import PkiError

_ERRORS = (LabError, LabNetError, LabStateError, TopologyError, PkiError, ControllerStartError)
MEMORY_NOTICE = ("notice: not running as root, so the lab uses the memory driver: agents, TLS, gRPC and "
                 "registration are real, the dataplane is simulated (no namespaces, no traffic; `lab exec` is "
                 "unavailable and `lab check` only compares what agents report)")


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lab", help="simulated hosts (network namespaces) running real agents")
    lab = p.add_subparsers(dest="lab_command", metavar="ACTION", required=True)

    up = lab.add_parser("up", help="create hosts, start their agents and register them with the engine")
    _topology_args(up)
    up.add_argument("--driver", choices=("auto", "linux", "memory"), default="auto",
                    help="auto: linux as root, else memory")
    up.add_argument("--premises", action="store_true",
                    help="add a customer site (premises-router, premises-host, premises-l2) on the edges' "
                         "cross-connects and the lab internet (linux driver)")
    up.add_argument("--premises-lan", default=DEFAULT_LAN, help=f"the premises LAN (default {DEFAULT_LAN})")
    up.add_argument("--premises-asn", type=int, default=DEFAULT_ASN,
                    help=f"the premises router's BGP AS number (default {DEFAULT_ASN})")
    up.add_argument("--premises-psk", default=None,
                    help="start the premises VPN gateway (203.0.113.10) with this pre-shared key (default: no VPN "
                         "gateway)")
    up.add_argument("--premises-md5", default=None, help="BGP MD5 password of the premises router (default none)")
    up.add_argument("--premises-peering", default=DEFAULT_PEERING,
                    help=f"the premises router's address on edge1's cross-connect from the start (default "
                         f"{DEFAULT_PEERING}; a direct connect with bgp.peering_cidr 169.254.10.0/30 uses it; "
                         "'none': only `lab premises sync` sets one)")
    up.add_argument("--bandwidth-scale", type=float, default=DEFAULT_BANDWIDTH_SCALE,
                    help="agents shape direct connects at bandwidth_mbps times this (default "
                         f"{DEFAULT_BANDWIDTH_SCALE}: 1000 Mbps is 100 Mbit/s, measurable with iperf3)")
    up.add_argument("--controllers", type=int, default=None, metavar="N",
                    help="run N controllers for the lab (default 1, on SQLite: they converge it and repair it "
                         "without an apply; the agents register with them); reachable from this machine, tokens "
                         "written below the lab dir, found by Terraform and `l2vpc` through a record beside the state")
    up.add_argument("--postgres", nargs="?", const=LAB_POSTGRES, default=None, metavar="URL",
                    help="with --controllers: their store is PostgreSQL, a cluster the lab creates and removes, or "
                         "the server at URL (default: SQLite in the lab dir)")
    up.add_argument("--embedded", action="store_true",
                    help="run no controller: the embedded engine (`l2vpc apply -f`, or Terraform on the state) "
                         "drives the agents when it applies, and nothing repairs the lab in between")
    up.add_argument("--controller", action="append", default=None, metavar="HOST:PORT",
                    help="agents register with this controller, which the lab does not run (repeat, or a comma "
                         "list, for several); the lab registers nothing itself")
    up.add_argument("--controller-ca", default=None, help="with --controller: CA certificate of its TLS")
    up.add_argument("--controller-name", default=None, help="with --controller: the name in its certificate")
    up.add_argument("--controller-tokens", default=None,
                    help="with --controller: file (mode 0600) of HOST TOKEN lines, an agent token per host "
                         "(`l2vpc controller host enroll --hosts FILE --token-output TOKENS` writes one)")
    up.add_argument("--pki", default=None,
                    help="CA directory to issue the agents' certificates from (with --controller: the "
                         "controller's, so agents accept it; default: pki/ beside the state)")
    _state_arg(up)
    up.set_defaults(func=_up)

    env = lab.add_parser("env", help="print the shell exports that point Terraform and `l2vpc` at the lab's "
                                     "controllers: eval \"$(l2vpc lab env)\"")
    _state_arg(env)
    env.set_defaults(func=_env)

    hosts = lab.add_parser("hosts", help="print the host documents `lab up` with the same options makes (JSON), "
                           "for `l2vpc controller host enroll --hosts` before `lab up --controller`")
    _topology_args(hosts)
    hosts.set_defaults(func=_hosts)

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

    prem = lab.add_parser("premises", help="the customer site: peering addresses, VLAN tag, BGP password")
    prem_sub = prem.add_subparsers(dest="premises_command", metavar="ACTION", required=True)
    sync = prem_sub.add_parser("sync", help="give the premises router the customer address of every layer3 "
                                            "direct connect the edges run")
    _state_arg(sync)
    sync.set_defaults(func=_premises_sync)
    vlan = prem_sub.add_parser("vlan", help="tag premises-l2's frames: VID (2..4093) or 'none'")
    vlan.add_argument("vid")
    _state_arg(vlan)
    vlan.set_defaults(func=_premises_vlan)
    md5 = prem_sub.add_parser("md5", help="set the premises router's BGP password (read from stdin; empty: none)")
    _state_arg(md5)
    md5.set_defaults(func=_premises_md5)

    from l2vpc.lab import pod_cli, vm_cli

    pod_cli.add_commands(lab, _state_arg, _lab)
    vm_cli.add_commands(lab, _state_arg, _lab)

    check = lab.add_parser("check", help="ping within every VPC, verify isolation between VPCs; exit 1 on failure")
    check.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for replies and DHCP leases")
    _state_arg(check)
    check.set_defaults(func=_check)


def _topology_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hosts", type=int, default=3, help="compute hosts host1..hostN (default 3)")
    p.add_argument("--regions", default=DEFAULT_REGION, help=f"comma-separated, round-robin (default {DEFAULT_REGION})")
    p.add_argument("--edges", type=int, default=0, help="edge hosts edge1..edgeM (default 0)")
    p.add_argument("--locations", default=DEFAULT_LOCATION,
                   help=f"on-ramp locations of the edges, round-robin (default {DEFAULT_LOCATION})")


def _topology(args: argparse.Namespace) -> LabTopology:
    return LabTopology.build(args.hosts, _split(args.regions), args.edges, _split(args.locations))


def _hosts(args: argparse.Namespace) -> int:
    try:
        topo = _topology(args)
    except TopologyError as e:
        raise CliError(str(e)) from None
    print(json.dumps(topo.host_documents(), indent=2))
    return 0


def _state_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state", default=None,
                   help="the state file (default: $L2VPC_STATE_PATH, else state.db in $L2VPC_HOME: /var/lib/l2vpc as root, ~/.local/state/l2vpc otherwise)")


def _lab(args: argparse.Namespace) -> Lab:
    from l2vpc.embedded import default_state_path

    pki = getattr(args, "pki", None)
    try:
        return Lab(args.state or default_state_path(), pki_dir=Path(pki) if pki else None)
    except _ERRORS as e:
        raise CliError(str(e)) from None


def _say(msg: str) -> None:
    print(msg, file=sys.stderr)


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _up(args: argparse.Namespace) -> int:
    lab = _lab(args)
    try:
        topo = _topology(args)
        if args.driver == "memory" or (args.driver == "auto" and os.geteuid() != 0):
            _say(MEMORY_NOTICE)
        if not args.premises and (args.premises_lan != DEFAULT_LAN or args.premises_asn != DEFAULT_ASN
                                  or args.premises_md5 is not None):
            raise CliError("--premises-lan, --premises-asn and --premises-md5 need --premises")
        peering = None if args.premises_peering == "none" else args.premises_peering
        site = PremisesConfig(args.premises_lan, args.premises_asn, args.premises_md5, peering) if args.premises else None
        plan = _controller_plan(args)
        st = lab.up(topo, args.driver, progress=_say, premises=site, premises_psk=args.premises_psk,
                    bandwidth_scale=args.bandwidth_scale, controller=_controller(args), controllers=plan)
    except _ERRORS as e:
        raise CliError(str(e)) from None
    # With its own controllers the lab's state is theirs (in the lab dir), not the state file.
    where = f"state {st.state_path}" if not st.controllers else (
        f"{len(st.controllers)} controller{'s' if len(st.controllers) > 1 else ''} at {', '.join(st.endpoints)}")
    print(f"lab {st.id} up: {len(st.hosts)} hosts ({st.driver} driver), {where}")
    for h in st.hosts:
        where = f", netns {h.netns}" if h.netns else ""
        public = f", public {h.public_cidr}" if h.public_cidr else ""
        print(f"  {h.name}: {h.role} in {h.region}, underlay {h.underlay_ip}{where}{public}, agent pid {h.pid}")
    if st.premises is not None:
        print(f"  premises: AS {st.premises['asn']}, LAN {st.premises['lan']}; `l2vpc lab exec premises-router|"
              "premises-host|premises-l2 -- CMD`; after applying a direct connect: `l2vpc lab premises sync`")
    for line in next_steps(st, explicit_state=args.state is not None):
        print(line)
    return 0


def _controller_plan(args: argparse.Namespace) -> ControllerPlan | None:
    """The lab's own controllers: one on SQLite unless told otherwise; None for --embedded or a
    controller the lab does not run (--controller)."""
    if args.embedded:
        given = [f for f, v in (("--controllers", args.controllers), ("--postgres", args.postgres),
                                ("--controller", args.controller)) if v is not None]
        if given:
            raise CliError(f"--embedded runs no controller; {given[0]} asks for one: give one of the two")
        return None
    if args.controller is not None:
        if args.controllers is not None or args.postgres is not None:
            raise CliError(f"{'--controllers' if args.controllers is not None else '--postgres'}: the lab's own "
                           "controllers; --controller names one it does not run: give one of the two")
        return None
    return ControllerPlan(1 if args.controllers is None else args.controllers, args.postgres)


def exports(st: LabState) -> list[str]:
    """Shell lines pointing API clients at the lab's controllers (the token read from its file,
    never printed)."""
    return [f"export L2VPC_ENDPOINT={shlex.quote(','.join(st.endpoints))}",
            f"export L2VPC_CA_FILE={shlex.quote(str(st.controller_ca))}",
            f"export L2VPC_TOKEN=\"$(cat {shlex.quote(str(st.tenant_token_file))})\""]


def _env(args: argparse.Namespace) -> int:
    st = _lab(args).require()
    if not st.controllers:
        raise CliError("this lab runs no controllers (`l2vpc lab up --controllers 2`): Terraform and `l2vpc` use "
                       "its state without any setting")
    for line in exports(st):
        print(line)
    return 0


def next_steps(st: LabState, explicit_state: bool) -> list[str]:
    """What to run next, for the way this lab runs (the hint names only what applies)."""
    if st.controllers:
        lines = [f"  controller {c['id']}: {c['endpoint']}" for c in st.controllers]
        lines += [f"  tokens: admin {st.admin_token_file}, tenant {st.tenant_token_file} (tenant {TENANT})"]
        if explicit_state:  # the record is beside that state, where nothing looks by default
            return [*lines, f"next: `eval \"$(l2vpc lab env --state {st.state_path})\"` (sets L2VPC_ENDPOINT, "
                            "L2VPC_CA_FILE, L2VPC_TOKEN), then Terraform (`l2vpc tf -C DIR apply`); "
                            f"`l2vpc lab check --state {st.state_path}` asks the controllers"]
        return [*lines, "next: Terraform (`l2vpc tf -C DIR apply`, from any directory), `l2vpc show`, "
                        "`l2vpc lab check` and `l2vpc lab status` find the controllers by themselves; for another "
                        "environment (a `terraform` of your own elsewhere): `eval \"$(l2vpc lab env)\"`"]
    if st.controller:
        return [f"next: Terraform with L2VPC_ENDPOINT={st.endpoints[0] if st.endpoints else st.controller} and a "
                "tenant token of that controller (L2VPC_TOKEN); then `l2vpc lab check`"]
    state = f" --state {st.state_path}" if explicit_state else ""
    tf = f"Terraform with L2VPC_STATE_PATH={st.state_path}" if explicit_state else "Terraform (`l2vpc tf -C DIR apply`)"
    return [f"next: `l2vpc apply -f FILE{state}`, or {tf}; then `l2vpc lab check{state}`"]


def _controller(args: argparse.Namespace) -> LabController | None:
    extra = [f for f in ("controller_ca", "controller_name", "controller_tokens") if getattr(args, f)]
    if not args.controller:
        if extra:
            raise CliError(f"--{extra[0].replace('_', '-')}: only with --controller")
        return None
    if not args.controller_ca or not args.controller_tokens:
        raise CliError("--controller needs --controller-ca and --controller-tokens")
    addresses = [a.strip() for given in args.controller for a in given.split(",") if a.strip()]
    if len(set(addresses)) != len(addresses):
        raise CliError(f"--controller: {', '.join(sorted({a for a in addresses if addresses.count(a) > 1}))} "
                       "given twice")
    try:
        tokens = TokenSource.from_file(Path(args.controller_tokens))
    except HeartbeatError as e:
        raise CliError(str(e)) from None
    return LabController(",".join(addresses), Path(args.controller_ca),
                         {h: t for h, t in tokens.by_host().items() if h}, args.controller_name)


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
            "lab": {"id": st.id, "driver": st.driver, "state": st.state_path, "dir": st.dir,
                    "controller": st.controller, "switch_netns": st.switch, "endpoints": st.endpoints,
                    "controller_ca": st.controller_ca, "admin_token_file": st.admin_token_file,
                    "tenant_token_file": st.tenant_token_file,
                    "controllers": [{k: c[k] for k in ("id", "endpoint", "pid")} for c in st.controllers]},
            "hosts": [asdict(h) for h in hosts],
            "workloads": [{"workload": a.workload, "interface": a.interface_name, "host": a.host,
                           "vpc": vpc_names.get(a.vpc_id, a.vpc_id), "ip_mode": a.ip_mode,
                           "ip_address": a.ip_address, "realized": a.id in reported} for a in attachments],
        }, indent=2, sort_keys=True))
        return 0
    where = f"controllers {', '.join(st.endpoints)}" if st.controllers else (
        f"controller {st.controller}" if st.controller else f"state {st.state_path}")
    print(f"lab {st.id}: {st.driver} driver, {where}")
    for c in st.controllers:
        running = processes.alive(c["pid"], c["ready_file"])
        print(f"  controller {c['id']}: {c['endpoint']}, {'pid ' + str(c['pid']) if running else 'not running'}")
    print(f"{'HOST':<8} {'ROLE':<8} {'REGION':<12} {'UNDERLAY':<15} {'AGENT':<28} PORTS")
    for h in hosts:
        if h.error:
            agent = f"down ({h.error[:40]})" if not h.running else f"error: {h.error[:30]}"
        else:
            assert h.health is not None
            state = "ok" if h.health["ok"] else ("pending" if not h.health["accepted_generation"] else "FAILED")
            agent = f"pid {h.pid} gen {h.health['accepted_generation']} {state}"
        print(f"{h.name:<8} {h.role:<8} {h.region:<12} {h.underlay_ip:<15} {agent:<28} {len(h.ports)}")
    items = [(h.name, i) for h in hosts for i in h.items]
    if items:
        print(f"\n{'ID':<24} {'HOST':<8} {'KIND':<22} {'STATE':<12} DETAIL")
        for host, i in items:
            detail = i["detail"] or (f"learned {', '.join(i['learned'])}" if i["learned"] else "")
            print(f"{i['id']:<24} {host:<8} {i['kind']:<22} {i['state']:<12} {detail}")
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


def _premises_sync(args: argparse.Namespace) -> int:
    try:
        lines = _lab(args).sync_premises()
    except _ERRORS as e:
        raise CliError(str(e)) from None
    for line in lines:
        print(line)
    return 0


def _premises_vlan(args: argparse.Namespace) -> int:
    vid: int | None = None
    if args.vid != "none":
        try:
            vid = int(args.vid)
        except ValueError:
            raise CliError(f"vlan: {args.vid!r} must be a VLAN id (2..4093) or 'none'") from None
    try:
        _lab(args).premises_vlan(vid)
    except (*_ERRORS, VlanTagError) as e:
        raise CliError(str(e)) from None
    print(f"premises-l2 frames {'untagged' if vid is None else f'tagged with VLAN {vid}'}")
    return 0


def _premises_md5(args: argparse.Namespace) -> int:
    key = sys.stdin.readline().strip() or None  # not an argument: it would show in `ps`
    try:
        _lab(args).premises_md5(key)
    except _ERRORS as e:
        raise CliError(str(e)) from None
    print("premises router BGP password " + ("set" if key else "removed"))
    return 0
