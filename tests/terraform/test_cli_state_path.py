"""`l2vpc tf` with the real provider, and where the embedded engine keeps its state by default:
the one state every command uses ($L2VPC_HOME), whatever the configuration's directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from l2vpc.embedded import open_engine

pytestmark = pytest.mark.terraform

CONFIG = """
terraform {
  required_providers {
    l2vpc = { source = "l2vpc/l2vpc" }
  }
}

provider "l2vpc" {
  region = "us-east"
}

resource "l2vpc_vpc" "a" {
  name = "cli-vpc"
}
"""


def l2vpc_tf(work: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "l2vpc.cli", "tf", "-C", str(work), *args, "-no-color"],
                          env=env, capture_output=True, text=True, timeout=180)


def test_l2vpc_tf_applies_with_the_default_state_or_from_the_env(tmp_path: Path) -> None:
    work = tmp_path / "some" / "where"
    work.mkdir(parents=True)
    (work / "main.tf").write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if k not in ("L2VPC_STATE_PATH", "TF_CLI_CONFIG_FILE")}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), TMPDIR=str(tmp_path), TF_IN_AUTOMATION="1",
               L2VPC_HOME=str(tmp_path / "home"))

    applied = l2vpc_tf(work, env, "apply", "-input=false", "-auto-approve")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert not (work / ".l2vpc").exists()  # not beside the configuration: where every command looks
    default_state = tmp_path / "home" / "state.db"
    shown = subprocess.run([sys.executable, "-m", "l2vpc.cli", "show", "--json"], env=env, cwd="/",
                           capture_output=True, text=True, timeout=60)
    assert [v["name"] for v in json.loads(shown.stdout)["vpc"]] == ["cli-vpc"]  # from another directory
    engine = open_engine(str(default_state), agents="memory")
    try:
        (vpc,) = engine.list("vpc")
        assert (vpc.name, vpc.region) == ("cli-vpc", "us-east")  # region from the provider block
    finally:
        engine.store.close()

    # L2VPC_STATE_PATH points the provider elsewhere: that state has no such VPC yet.
    other = tmp_path / "other.db"
    planned = l2vpc_tf(work, {**env, "L2VPC_STATE_PATH": str(other)}, "plan", "-input=false", "-detailed-exitcode")
    assert planned.returncode == 2, planned.stdout + planned.stderr
    assert "# l2vpc_vpc.a will be created" in planned.stdout
    assert other.exists()
    assert list(tmp_path.glob("l2vpc-provider-*")) == []
