"""Plans in Terraform's apply walk: a create is checked once, by the create itself.

The real provider served in-process (no gRPC), its embedded engine on a SQLite file: what a
plan walk refuses, an apply walk's plan lets through to the create, which refuses it the same
way (the attribute named, nothing written); updates are still checked at plan.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from l2vpc._proto import tfplugin6_pb2 as pb
from l2vpc.embedded import open_engine
from l2vpc.provider.codec import decode_msgpack, encode_msgpack
from l2vpc.provider.l2vpc_provider import build_provider
from l2vpc.provider.rpc import ProviderServicer

NULL = pb.DynamicValue(msgpack=b"\xc0")


class Served:
    """One provider process, as Terraform starts one per walk."""

    def __init__(self, state: Path) -> None:
        self.provider = build_provider()
        self.servicer = ProviderServicer(self.provider)
        self.t = self.provider.resources["l2vpc_vpc"].schema.type
        response = self.servicer.ConfigureProvider(pb.ConfigureProvider.Request(
            config=pb.DynamicValue(msgpack=encode_msgpack({"state_path": str(state), "region": "r1"},
                                                          self.provider.schema.type)),
            terraform_version="1.15.5"), None)
        assert not response.diagnostics

    def value(self, **values: Any) -> pb.DynamicValue:
        whole = {name: None for name, _ in self.t.attributes} | values
        return pb.DynamicValue(msgpack=encode_msgpack(whole, self.t))

    def plan(self, config: pb.DynamicValue, prior: pb.DynamicValue = NULL) -> Any:
        return self.servicer.PlanResourceChange(pb.PlanResourceChange.Request(
            type_name="l2vpc_vpc", prior_state=prior, proposed_new_state=config, config=config), None)

    def apply(self, config: pb.DynamicValue, planned: pb.DynamicValue, prior: pb.DynamicValue = NULL) -> Any:
        return self.servicer.ApplyResourceChange(pb.ApplyResourceChange.Request(
            type_name="l2vpc_vpc", prior_state=prior, planned_state=planned, config=config), None)

    def close(self) -> None:
        self.provider.close()


def errors(response: Any) -> list[tuple[str, str]]:
    return [(d.detail, ".".join(s.attribute_name for s in d.attribute.steps)) for d in response.diagnostics]


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # the creator key comes from the working directory
    path = tmp_path / "state.db"
    engine = open_engine(str(path))
    engine.register_host({"name": "host1", "region": "r1", "underlay_ip": "10.200.0.1"})
    engine.store.close()
    return path


def names(state: Path) -> list[str]:
    engine = open_engine(str(state))
    try:
        return sorted(v.name for v in engine.list("vpc"))
    finally:
        engine.store.close()


def test_a_create_planned_in_the_apply_walk_is_checked_by_the_create(state: Path) -> None:
    first = Served(state)
    a = first.value(name="a", description="one")
    applied = first.apply(a, first.plan(a).planned_state)
    assert not applied.diagnostics
    taken = first.value(name="a", description="two")  # not identical: no adoption, a name clash
    # This process has changed something: it serves an apply walk, whose plan of a create is
    # followed by the create at once. The create refuses the name, nothing is written.
    planned = first.plan(taken)
    assert not planned.diagnostics
    refused = first.apply(taken, planned.planned_state)
    [(detail, where)] = errors(refused)
    assert "a" in detail and where == "name"
    assert decode_msgpack(refused.new_state.msgpack, first.t) is None
    first.close()
    assert names(state) == ["a"]

    # A plan walk (a process that has changed nothing) refuses it at plan, as before.
    plan_walk = Served(state)
    assert errors(plan_walk.plan(taken)) == [(detail, where)]
    plan_walk.close()


def test_updates_in_the_apply_walk_are_still_checked(state: Path) -> None:
    walk = Served(state)
    for name in ("a", "b"):
        config = walk.value(name=name)
        assert not walk.apply(config, walk.plan(config).planned_state).diagnostics
    walk.close()
    engine = open_engine(str(state))
    b = next(v for v in engine.list("vpc") if v.name == "b")
    engine.store.close()
    walk = Served(state)
    prior = walk.value(id=b.id, name="b", description="", scope="single_region", region="r1", mtu=1500,
                       vni=b.vni, status=b.status)
    config = walk.value(name="x")
    assert not walk.apply(config, walk.plan(config).planned_state).diagnostics  # now an apply walk
    renamed = walk.value(name="a")
    [(_, where)] = errors(walk.plan(renamed, prior))
    assert where == "name"
    walk.close()
    assert names(state) == ["a", "b", "x"]
