"""`l2vpc lab vm ...`: a lab workload as a real VM (QEMU under TCG) on taps."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from l2vpc.cli import CliError
from l2vpc.engine.errors import L2vpcError
from l2vpc.lab import lab_vms, vm
from l2vpc.lab.lab import Lab
from l2vpc.lab.vm import VmError
from l2vpc.lab.vm_image import VmImageError

_ERRORS = (VmError, VmImageError, L2vpcError, OSError)


def add_commands(lab: argparse._SubParsersAction, state_arg: Callable[[argparse.ArgumentParser], None],
                 open_lab: Callable[[argparse.Namespace], Lab]) -> None:
    p = lab.add_parser("vm", help="run a workload as a real VM (QEMU) on taps of its VPCs")
    sub = p.add_subparsers(dest="vm_command", metavar="ACTION", required=True)
    up = sub.add_parser("up", help="switch WORKLOAD's ports to taps and boot a VM on them")
    up.add_argument("workload")
    down = sub.add_parser("down", help="stop WORKLOAD's VM; its ports become a namespace again")
    down.add_argument("workload")
    ex = sub.add_parser("exec", help="run a shell command in WORKLOAD's VM: exec WORKLOAD -- CMD...")
    ex.add_argument("workload")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    ls = sub.add_parser("list", help="the lab's VMs")
    ls.add_argument("--json", action="store_true")
    for parser, fn in ((up, _up), (down, _down), (ex, _exec), (ls, _list)):
        state_arg(parser)
        parser.set_defaults(func=fn, open_lab=open_lab)


def _up(args: argparse.Namespace) -> int:
    lab: Lab = args.open_lab(args)
    try:
        rec = lab_vms.up(lab.require(), lab.dir, lab.pki_dir, args.workload)
    except _ERRORS as e:
        raise CliError(str(e)) from None
    nics = ", ".join(f"net{i}={n['tap']}" for i, n in enumerate(rec.nics, start=1))
    print(f"vm {rec.workload} up on {rec.host}: {nics}; console {rec.console}", file=sys.stderr)
    return 0


def _down(args: argparse.Namespace) -> int:
    lab: Lab = args.open_lab(args)
    try:
        lab_vms.down(lab.require(), lab.pki_dir, args.workload)
    except _ERRORS as e:
        raise CliError(str(e)) from None
    return 0


def _exec(args: argparse.Namespace) -> int:
    lab: Lab = args.open_lab(args)
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise CliError("exec: give the command after --")
    try:
        out, rc = vm.command(lab_vms.find(lab.require(), args.workload), " ".join(command))
    except _ERRORS as e:
        raise CliError(str(e)) from None
    sys.stdout.write(out)
    return rc


def _list(args: argparse.Namespace) -> int:
    lab: Lab = args.open_lab(args)
    recs = lab_vms.records(lab.require())
    if args.json:
        print(json.dumps([{"workload": r.workload, "host": r.host, "nics": r.nics, "console": str(r.console)}
                          for r in recs], indent=2, sort_keys=True))
        return 0
    for r in recs:
        print(f"{r.workload:<16} {r.host:<8} " + ", ".join(f"{n['tap']} {n['mac']} mtu {n['mtu']}" for n in r.nics))
    return 0
