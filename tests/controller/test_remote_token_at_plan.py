"""The provider checks its controller token when Terraform configures it (issue 15, item 6):
a plan that only creates objects fails at plan with the controller's reason (revoked, invalid,
wrong role), not at apply. Real Terraform, a real controller process on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from l2vpc.controller import auth
from l2vpc.engine.store import open_store

from ._remote_helpers import (
    ControllerProcess,
    RemoteWorkspace,
    make_pki,
    tenant_objects,
    tokens,
    use_terraform_env,
)

pytestmark = pytest.mark.terraform

# Creates only, with a value known after apply: the plan asks the controller nothing about the
# VPC (its rules are checked when the value is known), so only the configure step can tell.
CREATES_ONLY = """
resource "terraform_data" "note" {
  input = "made by terraform"
}

resource "l2vpc_vpc" "apps" {
  name        = "apps"
  cidr        = "10.42.0.0/24"
  description = terraform_data.note.output
}
"""


@pytest.fixture
def controller(db: Any, secret_key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ControllerProcess]:
    use_terraform_env(tmp_path, monkeypatch)
    make_pki(tmp_path / "pki")
    proc = ControllerProcess(db.url, tmp_path / "pki", tmp_path)
    try:
        proc.start()
        yield proc
    finally:
        proc.stop()


def test_a_bad_token_fails_the_plan(controller: ControllerProcess, db: Any, tmp_path: Path) -> None:
    revoked = tokens(db.url, "tenant", tenant="acme")
    store = open_store(db.url)
    try:
        auth.revoke_token(store, auth.parse_token(revoked)[0])  # type: ignore[index]
    finally:
        store.close()
    good = tokens(db.url, "tenant", tenant="acme")
    cases = {
        "revoked": (revoked, "was revoked at"),
        "garbage": ("l2vpc_tok-000000000000_" + "A" * 43, "invalid token"),
        "agent": (tokens(db.url, "agent", host="h1"), "object calls need a tenant token"),
    }
    ca = tmp_path / "pki" / "ca.pem"
    for name, (token, words) in cases.items():
        ws = RemoteWorkspace(tmp_path / name, controller.endpoint, token, ca)
        ws.write(CREATES_ONLY)
        ws.ok("init", "-input=false")
        planned = ws.tf("plan", "-input=false")
        assert planned.rc == 1, (name, planned)
        assert "Authentication failed" in planned.text and words in planned.text, (name, planned)
        assert token.split("_", 2)[-1] not in planned.text  # the secret never shows
    ws = RemoteWorkspace(tmp_path / "good", controller.endpoint, good, ca)
    ws.write(CREATES_ONLY)
    ws.ok("init", "-input=false")
    planned = ws.tf("plan", "-input=false")
    assert planned.rc == 0 and "2 to add" in planned.text, planned
    assert tenant_objects(db) == []
