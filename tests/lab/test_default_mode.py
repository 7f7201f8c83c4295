"""The default mode as a user meets it (issue 14): `l2vpc lab up` runs one local controller on
SQLite, and Terraform (`l2vpc tf`), `l2vpc show`, `lab check` and `lab status` find it from any
directory with nothing in the environment pointing anywhere (only this test's own home).

Root: hosts are namespaces, the controller runs in the lab's switch namespace and is reached
through the management link; the quickstart example is applied from a copy in another
directory, the plan after it is empty, and `lab down` leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "terraform" / "quickstart"

pytestmark = [pytest.mark.root, pytest.mark.terraform,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")]


def l2vpc(env: dict[str, str], cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    # As the `l2vpc` script runs it (`python -m l2vpc.cli` would make a second CliError class).
    return subprocess.run([sys.executable, "-c", "import sys; from l2vpc.cli import main; sys.exit(main())", *argv],
                          env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_lab_up_then_terraform_from_anywhere_with_no_settings(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("L2VPC_") and k != "TF_CLI_CONFIG_FILE"}
    env.update(L2VPC_HOME=str(home), TF_IN_AUTOMATION="1", XDG_CACHE_HOME=str(tmp_path / "cache"))
    work = tmp_path / "configs" / "quickstart"
    shutil.copytree(QUICKSTART, work, ignore=shutil.ignore_patterns(".terraform*", "terraform.tfstate*"))
    elsewhere = tmp_path / "somewhere"
    elsewhere.mkdir()

    up = l2vpc(env, tmp_path, "lab", "up", "--hosts", "3")
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        assert "1 controller up (SQLite store)" in up.stderr
        record = home / "control-plane.json"
        assert f"local control plane recorded in {record}" in up.stderr
        hint = next(line for line in up.stdout.splitlines() if line.startswith("next:"))
        assert "find the controllers by themselves" in hint and "state.db" not in hint

        applied = l2vpc(env, elsewhere, "tf", "-C", str(work), "apply", "-input=false", "-auto-approve", "-no-color")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        planned = l2vpc(env, elsewhere, "tf", "-C", str(work), "plan", "-input=false", "-detailed-exitcode",
                        "-no-color")
        assert planned.returncode == 0, planned.stdout + planned.stderr  # empty: nothing drifted or missing

        # The state file of the embedded engine was not used: the controller holds everything.
        assert not (home / "state.db").exists()
        shown = l2vpc(env, elsewhere, "show")
        assert shown.returncode == 0 and "the lab's controllers" in shown.stderr, shown.stderr
        assert len([line for line in shown.stdout.splitlines() if line.startswith("attachment ")]) == 4
        checked = l2vpc(env, elsewhere, "lab", "check")
        assert checked.returncode == 0 and "6/6 pairs answer ping" in checked.stdout, checked.stdout + checked.stderr
        graph = l2vpc(env, elsewhere, "graph", "--format", "dot")
        assert graph.returncode == 0 and "web1" in graph.stdout, graph.stderr
        status = l2vpc(env, elsewhere, "lab", "status")
        assert status.returncode == 0 and "controller c1:" in status.stdout, status.stdout + status.stderr
        controller = l2vpc(env, elsewhere, "controller", "status", "--json")
        assert controller.returncode == 0, controller.stdout + controller.stderr
        assert sorted(h["name"] for h in json.loads(controller.stdout)["hosts"]) == ["host1", "host2", "host3"]
        refused = l2vpc(env, elsewhere, "apply", "-f", str(ROOT / "examples" / "topology" / "two-vpcs.yaml"))
        assert refused.returncode == 1 and "l2vpc lab up --embedded" in refused.stderr, refused.stderr

        destroyed = l2vpc(env, elsewhere, "tf", "-C", str(work), "destroy", "-input=false", "-auto-approve",
                          "-no-color")
        assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr
    finally:
        down = l2vpc(env, elsewhere, "lab", "down")
    assert down.returncode == 0, down.stderr
    assert not (home / "control-plane.json").exists() and not (home / "lab").exists()
    spaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    lab_id = next(line.split()[1] for line in up.stdout.splitlines() if line.startswith("lab "))
    assert f"l2lab{lab_id}" not in spaces
