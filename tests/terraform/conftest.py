"""A Terraform workspace wired to the real l2vpc provider through dev_overrides.

The provider runs its embedded engine on a SQLite state file in the test's tmp_path, with
hosts registered beforehand and no agent address, so memory agents stand in for the hosts (the
state's host reports record what each host would run). The test reads the same state file
through `open_engine` to see what Terraform really created.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from l2vpc.embedded import open_engine
from l2vpc.engine.api import Engine
from l2vpc.provider import launcher
from l2vpc.testing.terraform import Result, TerraformDir, dev_override, socket_dirs

HOSTS: list[dict[str, str]] = [
    {"name": "host1", "region": "us-east", "underlay_ip": "10.200.0.1"},
    {"name": "host2", "region": "us-east", "underlay_ip": "10.200.0.2"},
    {"name": "host3", "region": "eu-west", "underlay_ip": "10.200.0.3"},
    {"name": "edge1", "region": "us-east", "role": "edge", "location": "nyc1", "underlay_ip": "10.200.0.9",
     "public_cidr": "203.0.113.32/28"},
    {"name": "edge2", "region": "eu-west", "role": "edge", "location": "ams1", "underlay_ip": "10.200.0.10",
     "public_cidr": "203.0.113.48/28"},
]


class Workspace(TerraformDir):
    """One Terraform working directory plus the engine state file the provider writes."""

    def __init__(self, root: Path) -> None:
        super().__init__(root / "work")
        self.root = root
        self.dir.mkdir()
        self.state_path = root / "state.db"
        engine = open_engine(str(self.state_path), agents="memory")
        try:
            for host in HOSTS:
                engine.register_host(host)
        finally:
            engine.store.close()

    def header(self) -> str:
        return (
            'terraform {\n  required_providers {\n    l2vpc = { source = "l2vpc/l2vpc" }\n  }\n}\n\n'
            f'provider "l2vpc" {{\n  state_path = "{self.state_path}"\n}}\n'
        )

    @contextmanager
    def engine(self) -> Iterator[Engine]:
        engine = open_engine(str(self.state_path), agents="memory")
        try:
            yield engine
        finally:
            engine.store.close()

    def list(self, kind: str) -> list[Any]:
        with self.engine() as engine:
            return engine.list(kind)

    def stored(self, kind: str) -> dict[str, Any]:
        """Objects by name with their secrets opened: what the engine pushes to hosts (reads
        return no secret)."""
        with self.engine() as engine:
            topo = engine.topology()
        objects = {"vpc": topo.vpcs, "attachment": topo.attachments, "direct_connect": topo.direct_connects,
                   "vpn": topo.vpns}[kind]
        return {o.name: o for o in objects.values()}

    def counts(self) -> dict[str, int]:
        with self.engine() as engine:
            return {kind: len(engine.list(kind)) for kind in ("vpc", "attachment", "direct_connect", "vpn")}

    def assert_nothing_created(self) -> None:
        assert self.counts() == {"vpc": 0, "attachment": 0, "direct_connect": 0, "vpn": 0}


@pytest.fixture(scope="session")
def compiled() -> None:
    launcher.precompile()


@pytest.fixture
def launcher_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compiled: None) -> Path:
    for key, value in dev_override(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("L2VPC_STATE_PATH", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # provider sockets land here, checked below
    return tmp_path / "bin"


@pytest.fixture
def workspace(tmp_path: Path, launcher_dir: Path) -> Iterator[Workspace]:
    ws = Workspace(tmp_path)
    yield ws
    leftovers = socket_dirs(tmp_path)
    # A provider killed with SIGKILL cannot remove its socket directory; tests that kill one
    # remove what it left and set this marker.
    if not (tmp_path / ".killed").exists():
        assert leftovers == [], f"provider socket directories left behind: {leftovers}"
    for d in leftovers:
        shutil.rmtree(d, ignore_errors=True)
    assert not os.path.exists(ws.dir / ".l2vpc"), "the provider ignored state_path"


def diagnostics(result: Result) -> list[str]:
    """Terraform's diagnostic blocks ("Error: …" / "Warning: …" up to the next one), as printed."""
    blocks: list[list[str]] = []
    for line in (result.out + "\n" + result.err).splitlines():
        if line.startswith(("Error: ", "Warning: ")):
            blocks.append([line])
        elif blocks:
            blocks[-1].append(line)
    return ["\n".join(b).strip() for b in blocks if "Provider development overrides" not in b[0]]


def diagnostic_for(result: Result, address: str, attribute_line: str) -> str:
    """The one error diagnostic of `address` whose quoted source line starts with `attribute_line`
    (Terraform prints `with ADDRESS,` then the configuration line the attribute path points at)."""
    found = []
    for block in diagnostics(result):
        if not block.startswith("Error: ") or f"with {address}," not in block:
            continue
        source = [line.split(":", 1)[1].strip() for line in block.splitlines() if line.strip()[:1].isdigit() and ":" in line]
        if any(s.startswith(attribute_line) for s in source):
            found.append(block)
    assert found, f"no error for {address} pointing at `{attribute_line}`; diagnostics:\n" + "\n\n".join(diagnostics(result))
    return " ".join(found[0].split())


def files_holding(root: Path, secret: str) -> list[str]:
    """Files under `root` that contain `secret` in clear, except the configuration and Terraform's
    own state files (Terraform keeps sensitive, not write-only, values there by design)."""
    out = []
    for path in root.rglob("*"):
        if path.suffix == ".tf" or path.name.startswith("terraform.tfstate") or not path.is_file():
            continue
        if secret.encode() in path.read_bytes():
            out.append(str(path.relative_to(root)))
    return out
