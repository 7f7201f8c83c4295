"""Adoption as Terraform sees it: a created object stays the creator's to take back until
Terraform shows it to us again (provider/resources/recorded.py), and never ends up managed by two
resources."""

from __future__ import annotations

import pytest

from .conftest import Workspace, diagnostics

pytestmark = pytest.mark.terraform

VPC = """
resource "l2vpc_vpc" "%(name)s" {
  name   = "twin"
  region = "us-east"
  cidr   = "10.7.0.0/24"
}
"""


def twins(*names: str) -> str:
    return "".join(VPC % {"name": n} for n in names)


def test_an_answer_terraform_never_recorded_is_taken_back_by_the_next_apply(workspace: Workspace) -> None:
    """The provider answered the create but Terraform lost the answer (killed before it wrote its
    state; here: `state rm` right after the apply): the next apply gets the same object back."""
    ws = workspace
    ws.write(twins("a"))
    ws.apply()
    (vpc,) = ws.list("vpc")
    ws.ok("state", "rm", "l2vpc_vpc.a")
    again = ws.apply()
    assert "1 added" in again.out
    assert [v.id for v in ws.list("vpc")] == [vpc.id]
    assert ws.resources()["l2vpc_vpc.a"]["id"] == vpc.id
    ws.assert_plan_empty()
    # Shown back by that plan's refresh: recorded, no longer anyone's to take.
    ws.ok("state", "rm", "l2vpc_vpc.a")
    lost = ws.fails("apply", "-input=false", "-auto-approve")
    assert any("twin" in d and "already" in d for d in diagnostics(lost)), lost
    assert [v.id for v in ws.list("vpc")] == [vpc.id]


def test_two_resources_of_one_configuration_never_share_an_object(workspace: Workspace) -> None:
    ws = workspace
    ws.write(twins("a", "b"))
    result = ws.fails("apply", "-input=false", "-auto-approve")
    assert any("Duplicate object" in d for d in diagnostics(result)), result
    ids = [r["id"] for r in ws.resources().values()]
    assert len(ids) == 1 and [v.id for v in ws.list("vpc")] == ids


def test_a_recorded_object_is_not_taken_by_a_new_resource_without_a_refresh(workspace: Workspace) -> None:
    """`-refresh=false` skips the Reads that confirm objects: the plan confirms what it has in
    state, so a new resource with the same values fails instead of adopting a recorded object."""
    ws = workspace
    ws.write(twins("a"))
    ws.apply()
    ws.write(twins("a", "b"))
    result = ws.fails("apply", "-input=false", "-auto-approve", "-refresh=false")
    assert any("twin" in d and "already" in d for d in diagnostics(result)), result
    assert list(ws.resources()) == ["l2vpc_vpc.a"]
    assert len(ws.list("vpc")) == 1
