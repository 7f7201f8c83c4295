"""`l2vpc provider install|dev-override` and `l2vpc tf`, run in-process like a user would."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from l2vpc.cli import main
from l2vpc.provider import launcher


def test_install_writes_an_executable_launcher_into_the_mirror(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["provider", "install", "--plugins-dir", str(tmp_path)]) == 0
    (path,) = tmp_path.rglob("terraform-provider-l2vpc_v*")
    assert path.relative_to(tmp_path).parts[:4] == (
        "registry.terraform.io",
        "l2vpc",
        "l2vpc",
        launcher.__version__,
    )
    assert path.parent.name == launcher.target_platform() and os.access(path, os.X_OK)
    assert "installed terraform-provider-l2vpc" in capsys.readouterr().out
    # The launcher works from anywhere: run by hand, it reaches our server, which explains itself.
    result = subprocess.run(
        [str(path)], cwd="/", capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"}
    )
    assert result.returncode == 1 and "not run by hand" in result.stderr
    before = path.read_bytes()
    assert main(["provider", "install", "--plugins-dir", str(tmp_path)]) == 0
    assert path.read_bytes() == before  # same bytes: lock-file hashes stay valid


def test_dev_override_prints_or_writes_a_cli_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["provider", "dev-override"]) == 0
    printed = capsys.readouterr().out
    (installation,) = (tmp_path / "cache" / "l2vpc" / "terraform").iterdir()  # this checkout's own
    directory = installation / "dev-override"
    assert f'"registry.terraform.io/l2vpc/l2vpc" = "{directory}"' in printed and "direct {}" in printed
    assert os.access(directory / "terraform-provider-l2vpc", os.X_OK)
    target = tmp_path / "tf.rc"
    assert main(["provider", "dev-override", "--write", str(target)]) == 0
    assert target.read_text() == printed


def test_tf_needs_a_command_and_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tf"]) == 1
    assert "give a Terraform command" in capsys.readouterr().err
    assert main(["tf", "-C", str(tmp_path / "nope"), "plan"]) == 1
    assert "not a directory" in capsys.readouterr().err


@pytest.mark.terraform
def test_tf_initialises_and_plans_with_the_provider_wired_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", str(tmp_path / "ignored.rc"))  # replaced by ours
    work = tmp_path / "work"
    work.mkdir()
    (work / "main.tf").write_text(
        'terraform {\n  required_providers {\n    l2vpc = { source = "l2vpc/l2vpc" }\n  }\n}\n'
        'provider "l2vpc" {\n  region = "r1"\n}\n'
    )
    assert main(["tf", "-C", str(work), "plan", "-no-color"]) == 0
    out, err = capfd.readouterr()
    assert "running `terraform init` first" in err
    assert "Installed l2vpc/l2vpc v" in out and "No changes." in out
    assert 'provider "registry.terraform.io/l2vpc/l2vpc"' in (work / ".terraform.lock.hcl").read_text()


def test_each_installation_keeps_its_own_terraform_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two checkouts on one machine: each `l2vpc tf` must run its own provider, even while the
    # other one is mid-run (a shared mirror let one checkout's tests destroy with the other's).
    from l2vpc.provider import cli

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    env = cli.prepare_terraform_env()
    mine = Path(env["TF_CLI_CONFIG_FILE"]).parent
    (launcher_path,) = (mine / "mirror").rglob("terraform-provider-l2vpc_v*")
    assert launcher.python_path()[0] in launcher_path.read_text()
    monkeypatch.setattr("sys.prefix", str(tmp_path / "other-venv"))
    other = Path(cli.prepare_terraform_env()["TF_CLI_CONFIG_FILE"]).parent
    assert other != mine and other.parent == mine.parent
    assert launcher_path.exists() and str(mine / "mirror") in (mine / "terraformrc").read_text()
