"""Terraform apply → direct connect `active` (BGP Established) and → VPN `up`, end to end.

Issue 5 targets: apply to BGP Established ≤ 5 s; apply to VPN up ≤ 3 s. Each round brings up
a lab with a premises site (root: real FRR and strongSwan), runs `l2vpc tf apply` on
examples/terraform/direct-connect and site-to-site-vpn (each creates its VPC, a workload and
the service; the provider returns once the session or tunnel is up), checks the status in the
state, and destroys. Baseline in the same run: `terraform apply` of the same VPC and workload
alone, so the ratio shows what the edge service adds.

    sudo .venv/bin/python bench/bench_edge_apply.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from l2vpc.cli import main as cli
from l2vpc.lab.lab import Lab
from l2vpc.lab.premises import PremisesConfig
from l2vpc.lab.topology import LabTopology

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "terraform"
PSK = "demo.psk.2024"


def tf(directory: Path, *args: str) -> float:
    started = time.perf_counter()
    rc = cli(["tf", "-C", str(directory), *args, "-no-color"])
    if rc != 0:
        raise SystemExit(f"terraform {' '.join(args)} failed in {directory}")
    return time.perf_counter() - started


def status(directory: Path, output: str) -> str:
    state = json.loads((directory / "terraform.tfstate").read_text())
    return str(state["outputs"][output]["value"]["status"])


def baseline_config(example: Path, target: Path) -> None:
    """The example without its edge service: the same VPC and workload only."""
    shutil.copytree(example, target)
    text = (target / "main.tf").read_text()
    cut = min(i for i in (text.find('module "nyc1"'), text.find('resource "l2vpc_vpn"')) if i >= 0)
    (target / "main.tf").write_text(text[:cut])
    shutil.rmtree(target / "modules", ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root: real FRR and strongSwan in namespaces", file=sys.stderr)
        return 2
    times: dict[str, list[float]] = {"dx": [], "vpn": [], "base": []}
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="l2vpc-bench-edge-") as tmp:
            base = Path(tmp)
            state = base / "state" / "state.db"
            os.environ["L2VPC_STATE_PATH"] = str(state)
            lab = Lab(str(state))
            lab.up(LabTopology.build(2, ["us-east"], 1, ["nyc1"]), driver="linux",
                   premises=PremisesConfig(), premises_psk=PSK)
            try:
                for key, example, output in (("dx", "direct-connect", "direct_connect"),
                                             ("vpn", "site-to-site-vpn", "vpn")):
                    bdir = base / f"{example}-baseline"
                    baseline_config(EXAMPLES / example, bdir)
                    tf(bdir, "init", "-input=false")
                    times["base"].append(tf(bdir, "apply", "-auto-approve", "-input=false"))
                    tf(bdir, "destroy", "-auto-approve", "-input=false")
                    wdir = base / example
                    shutil.copytree(EXAMPLES / example, wdir)
                    tf(wdir, "init", "-input=false")
                    seconds = tf(wdir, "apply", "-auto-approve", "-input=false")
                    got = status(wdir, output)
                    want = "active" if key == "dx" else "up"
                    if got != want:
                        raise SystemExit(f"round {r + 1}: {example} status {got!r}, expected {want!r}")
                    times[key].append(seconds)
                    tf(wdir, "destroy", "-auto-approve", "-input=false")
                    print(f"round {r + 1}: apply {example} -> {want} in {seconds:.2f}s", flush=True)
            finally:
                lab.down()
    base_median = statistics.median(times["base"])
    for key, label, target in (("dx", "direct connect active (BGP Established)", 5.0),
                               ("vpn", "VPN up", 3.0)):
        med = statistics.median(times[key])
        verdict = "ok" if med <= target else "MISSED"
        print(f"apply -> {label}: median {med:.2f}s, max {max(times[key]):.2f}s over {len(times[key])} rounds "
              f"(target <= {target:.0f}s): {verdict}; same VPC and workload without it: {base_median:.2f}s "
              f"(ratio {med / base_median:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
