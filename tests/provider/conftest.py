"""A Terraform workspace wired to the fixture provider (l2vpc.testing.l2test_provider) through
dev_overrides."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from l2vpc.provider import launcher
from l2vpc.testing import l2test_provider
from l2vpc.testing.terraform import TerraformDir, dev_override, socket_dirs

SOURCE = "registry.terraform.io/l2test/l2test"
HEADER = """
terraform {
  required_providers {
    l2test = { source = "l2test/l2test" }
  }
}
"""


class Workspace(TerraformDir):
    """One Terraform working directory plus the fixture provider's store ("the real world")."""

    def __init__(self, root: Path) -> None:
        super().__init__(root / "work")
        self.dir.mkdir()
        self.store = root / "store.json"
        self.observed = root / "observed.jsonl"

    def header(self) -> str:
        return HEADER

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
    script = launcher.launcher_script(
        args=["--provider", l2test_provider.FACTORY],
        env={l2test_provider.STORE_ENV: str(ws.store), l2test_provider.OBSERVE_ENV: str(ws.observed)},
    )
    for key, value in dev_override(tmp_path, script, "terraform-provider-l2test", SOURCE).items():
        monkeypatch.setenv(key, value)
    # Provider sockets land here (a short path: sockets have a length limit), checked below.
    sockets = Path(tempfile.mkdtemp(prefix="l2t-"))
    monkeypatch.setenv("TMPDIR", str(sockets))
    try:
        yield ws
        leftovers = socket_dirs(sockets)
        assert leftovers == [], f"provider socket directories left behind: {leftovers}"
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
