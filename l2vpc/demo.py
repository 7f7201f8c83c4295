"""`l2vpc demo`: the main job a newcomer runs first.

Brings up a lab in the default mode (3 compute hosts and an edge, as network namespaces with
real agents, the memory driver without root; a local controller on SQLite that converges them
and repairs them between applies), runs the embedded Terraform on examples/terraform/quickstart,
shows the plan, applies it, starts the quickstart's Pod (containerd + runc, its network added by
the l2vpc-cni plugin) and turns the workload web1 into a real VM (QEMU on taps, its lease from
the VPC's DHCP server) (both as root), and prints a connectivity report: which workloads reach
which, and that the VPC's MTU passes unfragmented between the VM and the Pod. The lab stays up to explore; `l2vpc demo down` (or
`--down`) removes everything.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from l2vpc.engine.model import Attachment
    from l2vpc.lab.lab import Lab

DEMO_SUBDIR = "demo"  # below paths.home(): the demo's copy of the example and its Terraform state
EXAMPLE = "quickstart"
DEMO_PSK = "demo.psk.2024"  # the premises VPN gateway's key, as in examples/terraform/site-to-site-vpn


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the demo: a lab, Terraform on the quickstart example, a connectivity report")
    p.add_argument("action", nargs="?", choices=("up", "down"), default="up",
                   help="up (default): run the demo and leave the lab running; down: remove it")
    p.add_argument("--dir", default=None,
                   help="keep the demo's lab and state in this directory instead of the default state (every "
                        "other command then needs L2VPC_STATE_PATH=DIR/state/state.db)")
    p.add_argument("--down", action="store_true", help="remove the lab again at the end")
    p.set_defaults(func=run)


def _example_dir() -> Path:
    here = Path(__file__).resolve().parent.parent / "examples" / "terraform" / EXAMPLE
    if not here.exists():
        raise FileNotFoundError(f"example {here} is missing; run the demo from a checkout of the project")
    return here


def _say(text: str) -> None:
    print(text, flush=True)


def _tf(workdir: Path, *args: str) -> int:
    from l2vpc.cli import main as cli

    return cli(["tf", "-C", str(workdir), *args])


def _tf_output(workdir: Path, name: str) -> str:
    """Output `name` after a refresh: what Terraform reads of the objects now (quietly)."""
    from l2vpc.provider.cli import prepare_terraform_env

    env = {**os.environ, **prepare_terraform_env()}
    tf = [sys.executable, "-m", "l2vpc.provider.tfrun", f"-chdir={workdir}"]
    refresh = subprocess.run([*tf, "apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color"],
                             env=env, capture_output=True, text=True, check=False)
    if refresh.returncode != 0:
        return f"(refresh failed: {(refresh.stderr or refresh.stdout).strip()[-300:]})"
    out = subprocess.run([*tf, "output", "-raw", name], env=env, capture_output=True, text=True, check=False)
    return out.stdout.strip() if out.returncode == 0 else f"(no output {name}: {out.stderr.strip()[-200:]})"


def run(args: argparse.Namespace) -> int:
    from l2vpc import paths
    from l2vpc.lab.controller_lab import ControllerPlan
    from l2vpc.lab.lab import Lab
    from l2vpc.lab.premises import PremisesConfig
    from l2vpc.lab.topology import LabTopology

    if args.dir:
        base = Path(args.dir).resolve()
        state = base / "state" / "state.db"
        os.environ["L2VPC_STATE_PATH"] = str(state)
    else:  # the default state, which every other command uses too: the hints below just work
        base = Path(paths.home()) / DEMO_SUBDIR
        state = Path(paths.default_state_path())
    workdir = base / EXAMPLE
    lab = Lab(str(state))
    if args.action == "down":
        return _down(lab, workdir, base)

    started = time.monotonic()
    root = os.geteuid() == 0
    _say("== l2vpc demo")
    if not root:
        _say("   not root: hosts run the memory driver (agents record what they would program; no packets flow).\n"
             "   Run as root for real namespaces, VXLAN, bridges and DHCP.")
    if lab.load() is not None:
        _say("   a previous demo lab is up: removing it first")
        _down(lab, workdir, base, quiet=True)
    base.mkdir(parents=True, exist_ok=True)
    if workdir.exists():
        shutil.rmtree(workdir)
    shutil.copytree(_example_dir(), workdir, ignore=shutil.ignore_patterns(".terraform*", "terraform.tfstate*"))

    _say("\n== 1. lab: 3 compute hosts and 1 edge host, each a namespace with its own agent, and a premises site")
    # The default mode: a local controller on SQLite converges the lab and repairs it between
    # applies; Terraform and every `l2vpc` command find it through its record.
    lab.up(LabTopology.build(3, ["us-east"], 1, ["nyc1"]), driver="auto", progress=lambda m: _say(f"   {m}"),
           premises=PremisesConfig() if root else None, premises_psk=DEMO_PSK if root else None,
           controllers=ControllerPlan(1))

    _say(f"\n== 2. terraform plan ({workdir})")
    if _tf(workdir, "plan", "-input=false", "-out=demo.tfplan"):
        return 1
    _say("\n== 3. terraform apply")
    if _tf(workdir, "apply", "-input=false", "demo.tfplan"):
        return 1

    _say("\n== 4. a real Pod: default/cache on containerd, its VPC interface added by l2vpc-cni")
    pod_ok = _pod(lab)
    if pod_ok and lab.require().driver == "linux" and shutil.which("containerd"):
        # Declared for the Pod, the attachment was pending at apply; its ADD made it active.
        status = _tf_output(workdir, "pod")
        _say(f"   terraform output pod, after a refresh: {status}")
        if not status.endswith(" active"):
            _say("   FAILED: the Pod's attachment is not active")
            pod_ok = False
    _say("\n== 5. a real VM: web1 on QEMU, its NIC a tap on the VPC, its address from the VPC's DHCP server")
    vm_ok = _vm(lab, pod_ok)

    _say("\n== 6. connectivity report")
    rc = _report(lab) or (0 if pod_ok and vm_ok else 1)

    _say(f"\n== demo finished in {time.monotonic() - started:.0f}s")
    if args.down:
        _down(lab, workdir, base)
    else:
        _say("The lab is still up. Try:\n"
             "   .venv/bin/l2vpc lab status\n"
             "   .venv/bin/l2vpc lab exec web2 -- ip addr show net1\n"
             "   .venv/bin/l2vpc lab pod exec cache -- ip -4 addr show net1\n"
             "   .venv/bin/l2vpc lab vm exec web1 -- ip -4 addr show net1\n"
             f"   .venv/bin/l2vpc tf -C {workdir} plan      # empty: everything converged\n"
             "   .venv/bin/l2vpc tf -C examples/terraform/direct-connect apply\n"
             "Remove it with: .venv/bin/l2vpc demo down")
    return rc


def _pod(lab: Lab) -> bool:
    """Start the Pod the quickstart declares, when this machine can (root, containerd)."""
    from l2vpc.lab import lab_pods
    from l2vpc.lab.images import ImageError
    from l2vpc.lab.pods import PodError

    st = lab.require()
    if st.driver != "linux" or shutil.which("containerd") is None:
        _say("   skipped: Pods need root and containerd + runc (./dev installs them); the attachment stays pending")
        return True
    try:
        lab_pods.run(st, lab.dir, "cache", [EXAMPLE], progress=lambda m: _say(f"   {m}"))
    except (PodError, ImageError, OSError) as e:
        _say(f"   FAILED: {e}")
        return False
    return True


def _vm(lab: Lab, with_pod: bool) -> bool:
    """Boot web1 as a VM when this machine can (root, QEMU); a jumbo ping between it and the Pod."""
    from l2vpc.lab import lab_pods, lab_vms, pods, vm
    from l2vpc.lab.vm_image import VmImageError

    st = lab.require()
    if st.driver != "linux" or shutil.which("qemu-system-x86_64") is None:
        _say("   skipped: VMs need root and qemu-system-x86 (./dev installs it)")
        return True
    try:
        rec = lab_vms.up(st, lab.dir, lab.pki_dir, "web1")
        _say(f"   vm web1 up on {rec.host}: NIC {rec.nics[0]['tap']} ({rec.nics[0]['mac']}, mtu {rec.nics[0]['mtu']})")
        lease = ""
        deadline = time.monotonic() + 30
        while "inet " not in lease and time.monotonic() < deadline:
            lease, _ = vm.command(rec, "ip -4 -o addr show dev net1")
            time.sleep(0.3)
        _say(f"   lease from the VPC's DHCP server: {lease.split('inet ')[1].split()[0] if 'inet ' in lease else 'NONE'}")
        if not with_pod or not st.pods:
            return "inet " in lease
        pod = lab_pods.find(st, "cache")
        out = pods.exec_pod(lab_pods.runtime(st, lab.dir), pod, ["ip", "-4", "-o", "addr", "show", "dev", "net1"]).stdout
        pod_ip = out.split("inet ")[1].split("/")[0] if "inet " in out else ""
        vm_ip = lease.split("inet ")[1].split("/")[0]
        argv = lab.exec_argv(pod.workload, ["ping", "-c", "1", "-W", "2", "-M", "do", "-s", "8972", vm_ip])
        passed = bool(pod_ip) and subprocess.run(argv, capture_output=True).returncode == 0
        _say(f"   8972-byte ping with don't-fragment from the Pod ({pod_ip}) to the VM ({vm_ip}): "
             f"{'passes' if passed else 'FAILS'}")
        return passed
    except (vm.VmError, VmImageError, OSError) as e:
        _say(f"   FAILED: {e}")
        return False


def _report(lab: Lab) -> int:
    result = lab.check(timeout=10.0)
    for line in result.lines:
        _say(f"   {line}")
    st = lab.require()
    if st.driver != "linux":
        return 0 if result.ok else 1
    # MTU: a full-size frame with "don't fragment" crosses the overlay between two hosts.
    attachments, vpc_names = lab._attachments(st)
    from l2vpc.lab import lab_vms

    mtus = {a.vpc_id: mtu for workload in {a.workload for a in attachments}
            for a, mtu in lab_vms.attachments(st, workload)}
    ok = result.ok
    by_vpc: dict[str, list[Attachment]] = {}
    running_pods = {p["workload"] for p in st.pods}
    vms = {v["workload"] for v in st.vms}
    for a in attachments:
        if (a.workload_kind == "pod" and a.workload not in running_pods) or a.workload in vms:
            continue  # a Pod that did not start, a VM (checked above): no namespace to ping from
        by_vpc.setdefault(a.vpc_id, []).append(a)
    for vpc_id, members in sorted(by_vpc.items()):
        pair = _cross_host_pair(members)
        if pair is None:
            continue
        src, dst = pair
        target = _address(lab, dst)
        if target is None:
            continue
        size = mtus.get(vpc_id, 1500) - 28
        argv = lab.exec_argv(src.workload, ["ping", "-c", "1", "-W", "2", "-M", "do", "-s", str(size), target])
        passed = subprocess.run(argv, capture_output=True).returncode == 0
        ok &= passed
        _say(f"   mtu {mtus.get(vpc_id)}: {size}-byte ping with don't-fragment from {src.workload} ({src.host}) to "
             f"{dst.workload} ({dst.host}) {'passes' if passed else 'FAILS'} in vpc {vpc_names.get(vpc_id, vpc_id)}")
    return 0 if ok else 1


def _cross_host_pair(members: list[Attachment]) -> tuple[Attachment, Attachment] | None:
    for a in members:
        for b in members:
            if a.host != b.host:
                return a, b
    return None


def _address(lab: Lab, att: Attachment) -> str | None:
    argv = lab.exec_argv(att.workload, ["ip", "-4", "-o", "addr", "show", "dev", str(att.interface_name)])
    out = subprocess.run(argv, capture_output=True, text=True).stdout.split()
    return out[out.index("inet") + 1].split("/")[0] if "inet" in out else None


def _down(lab: Lab, workdir: Path, base: Path, quiet: bool = False) -> int:
    if workdir.exists() and (workdir / "terraform.tfstate").exists():
        if not quiet:
            _say("== terraform destroy")
        _tf(workdir, "destroy", "-auto-approve", "-input=false")
    if lab.load() is not None:
        for line in lab.down(progress=(lambda m: None) if quiet else (lambda m: _say(f"   {m}"))):
            if not quiet:
                _say(f"   {line}")
    if not quiet:
        _say("demo removed")
    return 0
