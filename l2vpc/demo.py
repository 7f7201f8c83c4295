"""`l2vpc demo`: the main job a newcomer runs first.

Plans and applies the example topology with the engine into a fresh state file, shows what
each host would run, then changes one VPC's scope to show a disruptive plan, and applies it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from importlib import resources
from pathlib import Path

EXAMPLE = "two-vpcs.yaml"


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the demo: plan and apply an example topology")
    p.add_argument("--state", default=None, help="state file (default: a fresh temporary one)")
    p.add_argument("-f", "--file", default=None, help=f"topology file (default: examples/topology/{EXAMPLE})")
    p.set_defaults(func=run)


def _example_path() -> str:
    here = Path(__file__).resolve().parent.parent / "examples" / "topology" / EXAMPLE
    if here.exists():
        return str(here)
    return str(resources.files("l2vpc").joinpath(EXAMPLE))


def run(args: argparse.Namespace) -> int:
    from l2vpc.cli import main as cli

    topology = args.file or _example_path()
    with tempfile.TemporaryDirectory(prefix="l2vpc-demo-") as tmp:
        state = args.state or os.path.join(tmp, "state.db")
        print(f"== l2vpc demo: topology {topology}, state {state}")
        print("   (hosts are memory agents here: the engine records what each host would run)\n")
        print("== 1. plan (writes nothing)")
        rc = cli(["plan", "-f", topology, "--state", state])
        if rc:
            return rc
        print("\n== 2. apply")
        rc = cli(["apply", "-f", topology, "--state", state, "--agents", "memory"])
        if rc:
            return rc
        print("\n== 3. apply again: nothing to do")
        rc = cli(["apply", "-f", topology, "--state", state, "--agents", "memory"])
        if rc:
            return rc
        print("\n== 4. what the state holds")
        rc = cli(["show", "--state", state])
        if rc:
            return rc
        print("\n== 5. convert VPC 'apps' to multi_region: every workload on it restarts its interface")
        text = Path(topology).read_text()
        changed = text.replace("  - name: apps\n    region: us-east\n", "  - name: apps\n    scope: multi_region\n")
        if changed == text:
            print("   (topology has no VPC 'apps' in region us-east; skipping)")
            return 0
        alt = os.path.join(tmp, "multi-region.yaml")
        Path(alt).write_text(changed)
        rc = cli(["plan", "-f", alt, "--state", state])
        if rc:
            return rc
        return cli(["apply", "-f", alt, "--state", state, "--agents", "memory"])
