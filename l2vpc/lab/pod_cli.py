"""`l2vpc lab pod ...`: real Pods on the lab's hosts (containerd + runc, networks by l2vpc-cni)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from l2vpc.cli import CliError
from l2vpc.engine.errors import L2vpcError
from l2vpc.lab import lab_pods, pods
from l2vpc.lab.images import ImageError
from l2vpc.lab.lab import Lab
from l2vpc.lab.pods import PodError

_ERRORS = (PodError, ImageError, L2vpcError, OSError)


def add_commands(lab: argparse._SubParsersAction, state_arg: Callable[[argparse.ArgumentParser], None],
                 open_lab: Callable[[argparse.Namespace], Lab]) -> None:
    pod = lab.add_parser("pod", help="real Pods (containerd + runc) on the lab's hosts, on VPCs through l2vpc-cni")
    sub = pod.add_subparsers(dest="pod_command", metavar="ACTION", required=True)

    run = sub.add_parser("run", help="start Pod NAME (workload default-NAME) on the VPCs of --vpc (with a "
                         "controller: attachments created on demand by the CNI ADDs, deleted by rm)")
    run.add_argument("name", help="the Pod's name (Kubernetes namespace 'default')")
    run.add_argument("--vpc", required=True, help="VPC names, comma-separated, in interface order (net1, ...)")
    run.add_argument("--host", default=None, help="lab host for a Pod with no declared attachment yet (with a "
                     "controller: the Pod's host, default the first compute host)")
    run.add_argument("--ip-mode", default=None, choices=("none", "dhcp"),
                     help="for attachments the lab declares (default: dhcp when the VPC has DHCP; not with a "
                          "controller)")
    sub_rm = sub.add_parser("rm", help="stop Pod NAME: its container, then CNI DEL of each network")
    sub_rm.add_argument("name")
    ex = sub.add_parser("exec", help="run a command in Pod NAME's container: exec NAME -- CMD...")
    ex.add_argument("name")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    chk = sub.add_parser("check", help="CNI CHECK of each of Pod NAME's networks; exit 1 on drift")
    chk.add_argument("name")
    ls = sub.add_parser("list", help="the lab's Pods")
    ls.add_argument("--json", action="store_true")
    for p, fn in ((run, _run), (sub_rm, _rm), (ex, _exec), (chk, _check), (ls, _list)):
        state_arg(p)
        p.set_defaults(func=fn, open_lab=open_lab)


def _state(args: argparse.Namespace) -> tuple[Lab, Any]:
    lab: Lab = args.open_lab(args)
    return lab, lab.require()


def _run(args: argparse.Namespace) -> int:
    lab, st = _state(args)
    vpcs = [v.strip() for v in args.vpc.split(",") if v.strip()]
    if not vpcs:
        raise CliError("--vpc: name at least one VPC")
    try:
        lab_pods.run(st, lab.dir, args.name, vpcs, args.host, args.ip_mode,
                     progress=lambda m: print(m, file=sys.stderr))
    except _ERRORS as e:
        raise CliError(str(e)) from None
    return 0


def _rm(args: argparse.Namespace) -> int:
    _lab, st = _state(args)
    try:
        for w in lab_pods.remove(st, args.name):
            print(f"warning: {w}", file=sys.stderr)
    except _ERRORS as e:
        raise CliError(str(e)) from None
    return 0


def _exec(args: argparse.Namespace) -> int:
    lab, st = _state(args)
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise CliError("exec: give the command after --")
    try:
        pod = lab_pods.find(st, args.name)
        rt = lab_pods.runtime(st, lab.dir)
    except _ERRORS as e:
        raise CliError(str(e)) from None
    argv = ["ctr", "--address", rt.record.socket, "tasks", "exec", "--exec-id", f"x{os.getpid()}",
            pod.container_id, *command]
    sys.stdout.flush()
    os.execvp(argv[0], argv)  # the command's exit status is the user's


def _check(args: argparse.Namespace) -> int:
    _lab, st = _state(args)
    try:
        pod = lab_pods.find(st, args.name)
        rec = st.host(pod.host)
        problems = pods.check_pod(pod, rec.netns if rec else None)
    except _ERRORS as e:
        raise CliError(str(e)) from None
    for p in problems:
        print(p)
    if not problems:
        print(f"pod {pod.name}: " + ", ".join(f"{n['ifname']} on {n['vpc']}" for n in pod.networks) + ": as set up")
    return 1 if problems else 0


def _list(args: argparse.Namespace) -> int:
    _lab, st = _state(args)
    records = lab_pods.records(st)
    if args.json:
        print(json.dumps([{"name": p.name, "host": p.host, "workload": p.workload, "netns": p.netns,
                           "container_id": p.container_id,
                           "networks": [{"vpc": n["vpc"], "ifname": n["ifname"], "result": n["result"]}
                                        for n in p.networks]} for p in records], indent=2, sort_keys=True))
        return 0
    for p in records:
        nets = ", ".join(f"{n['ifname']}={n['vpc']}" for n in p.networks)
        print(f"{p.name:<16} {p.host:<8} {p.workload:<24} {nets}")
    return 0
