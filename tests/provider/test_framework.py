"""The generic plan/apply/read/import logic, driven through the real protobuf RPC layer.

These run the fixture provider (l2vpc.testing.l2test_provider) in-process; test_terraform.py runs the
same provider under the real Terraform.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgpack
import pytest

from l2vpc._proto import tfplugin6_pb2 as pb
from l2vpc.provider.codec import decode_msgpack, encode_msgpack
from l2vpc.provider.cty import STRING, Unknown
from l2vpc.provider.diagnostics import DiagnosticError, Diagnostics, Key
from l2vpc.provider.diagnostics import Path as AttrPath
from l2vpc.provider.framework import Provider, Resource, ResourcePlan
from l2vpc.provider.modifiers import requires_replace
from l2vpc.provider.rpc import ProviderServicer
from l2vpc.provider.schema import (
    Schema,
    SchemaError,
    integer,
    list_nested,
    single_nested,
    string,
)
from l2vpc.testing import l2test_provider

THING = l2test_provider.Thing.schema.type


@pytest.fixture
def servicer(tmp_path: Path) -> ProviderServicer:
    provider = l2test_provider.build_provider()
    provider.store = l2test_provider.Store(str(tmp_path / "store.json"))
    return ProviderServicer(provider)


def dv(value: Any, t: Any = THING) -> Any:
    return pb.DynamicValue(msgpack=encode_msgpack(value, t))


def thing(**values: Any) -> dict[str, Any]:
    return {name: values.get(name) for name in l2test_provider.Thing.schema.attributes}


def diag_summary(response: Any) -> list[tuple[str, str, str]]:
    out = []
    for d in response.diagnostics:
        path = ".".join(s.attribute_name or str(s.element_key_int) for s in d.attribute.steps)
        out.append((pb.Diagnostic.Severity.Name(d.severity), d.summary, path))
    return out


def plan(
    servicer: ProviderServicer,
    prior: dict[str, Any] | None,
    config: dict[str, Any],
    proposed: dict[str, Any] | None = None,
) -> Any:
    return servicer.PlanResourceChange(
        pb.PlanResourceChange.Request(
            type_name="l2test_thing",
            prior_state=pb.DynamicValue(msgpack=b"\xc0") if prior is None else dv(prior),
            proposed_new_state=dv(proposed if proposed is not None else config),
            config=dv(config),
        ),
        None,
    )


def test_plan_create_fills_defaults_and_marks_computed_unknown(servicer: ProviderServicer) -> None:
    config = thing(
        name="alpha",
        password_wo="pw",
        password_wo_version=1,
        settings={"mode": None, "level": 2, "token": None},
        ports=[{"number": 80, "protocol": None}, {"number": 53, "protocol": "udp"}],
    )
    response = plan(servicer, None, config)
    assert list(response.diagnostics) == [] and list(response.requires_replace) == []
    planned = decode_msgpack(response.planned_state.msgpack, THING)
    assert planned["size"] == 1  # default
    assert planned["settings"] == {"mode": "fast", "level": 2, "token": Unknown()}
    assert planned["ports"] == [{"number": 80, "protocol": "tcp"}, {"number": 53, "protocol": "udp"}]
    for computed in ("id", "zone", "aliases", "revision"):
        assert planned[computed] == Unknown(), computed
    assert planned["password_wo"] is None  # write-only values are never planned
    assert planned["description"] is None  # optional, not computed: stays as configured


def test_unchanged_plan_returns_prior_bytes_verbatim(servicer: ProviderServicer) -> None:
    state = thing(
        id="thing-1",
        name="alpha",
        size=1.0,
        zone="zone-a",
        aliases=["a"],
        revision=1,
        tags=["y", "x"],
        labels={"b": "2", "a": "1"},
    )
    # Not how we would encode it (float size, reversed keys): only the bytes Terraform sent are safe.
    prior_bytes = msgpack.packb(dict(reversed(list(state.items()))))
    config = thing(name="alpha", tags=["x", "y"], labels={"a": "1", "b": "2"})
    proposed = dict(state, tags=["x", "y"])
    response = servicer.PlanResourceChange(
        pb.PlanResourceChange.Request(
            type_name="l2test_thing",
            prior_state=pb.DynamicValue(msgpack=prior_bytes),
            proposed_new_state=dv(proposed),
            config=dv(config),
            prior_private=b"opaque",
        ),
        None,
    )
    assert response.planned_state.msgpack == prior_bytes
    assert response.planned_private == b"opaque"
    assert list(response.requires_replace) == []


def test_update_keeps_stable_computed_values_and_unknowns_the_rest(servicer: ProviderServicer) -> None:
    prior = thing(
        id="thing-1",
        name="alpha",
        size=1,
        zone="zone-a",
        aliases=["a"],
        revision=3,
        settings={"mode": "fast", "level": 1, "token": "t"},
    )
    config = thing(name="alpha", description="new", settings={"mode": None, "level": 1, "token": None})
    proposed = dict(prior, description="new")
    planned = decode_msgpack(plan(servicer, prior, config, proposed).planned_state.msgpack, THING)
    assert planned["id"] == "thing-1" and planned["zone"] == "zone-a"  # use_state_for_unknown
    assert planned["revision"] == Unknown() and planned["aliases"] == Unknown()
    assert planned["settings"] == {"mode": "fast", "level": 1, "token": Unknown()}
    assert planned["description"] == "new"


def test_changing_a_replace_attribute_requires_replacement(servicer: ProviderServicer) -> None:
    prior = thing(id="thing-1", name="alpha", size=1, zone="zone-a", aliases=["a"], revision=1)
    config = thing(name="beta")
    response = plan(servicer, prior, config, dict(prior, name="beta"))
    assert [[s.attribute_name for s in p.steps] for p in response.requires_replace] == [["name"]]
    # An unknown new value may differ too: it also replaces.
    response = plan(servicer, prior, thing(name=Unknown()), dict(prior, name=Unknown()))
    assert len(response.requires_replace) == 1


class Multi(Resource):
    type_name = "l2test_multi"
    schema = Schema(
        attributes={
            "zeta": string(optional=True, plan_modifiers=[requires_replace()]),
            "alpha": string(optional=True, plan_modifiers=[requires_replace()]),
            "nets": list_nested(
                {"cidr": string(required=True, plan_modifiers=[requires_replace()])}, optional=True
            ),
            "tags": single_nested({"k": string(optional=True)}, optional=True),
        }
    )

    def modify_plan(self, plan: ResourcePlan, diags: Diagnostics) -> None:
        if plan.changed("tags.k"):
            plan.replace("alpha")  # already there: must not appear twice
            plan.replace(AttrPath("tags", "k"))


def test_replace_paths_are_sorted_and_deduplicated(servicer: ProviderServicer) -> None:
    provider = servicer.provider
    provider.add_resource(Multi())
    t = Multi.schema.type
    prior = {"zeta": "1", "alpha": "1", "nets": [{"cidr": "a"}, {"cidr": "b"}], "tags": {"k": "1"}}
    new = {"zeta": "2", "alpha": "2", "nets": [{"cidr": "a"}, {"cidr": "c"}], "tags": {"k": "2"}}
    response = servicer.PlanResourceChange(
        pb.PlanResourceChange.Request(
            type_name="l2test_multi",
            prior_state=dv(prior, t),
            proposed_new_state=dv(new, t),
            config=dv(new, t),
        ),
        None,
    )
    paths = [[s.attribute_name or s.element_key_int for s in p.steps] for p in response.requires_replace]
    assert paths == [["alpha"], ["nets", 1, "cidr"], ["tags", "k"], ["zeta"]]


def test_apply_create_passes_write_only_value_but_never_stores_it(
    servicer: ProviderServicer, tmp_path: Path
) -> None:
    config = thing(
        name="alpha",
        password_wo="hunter2",
        password_wo_version=1,
        settings={"mode": None, "level": None, "token": None},
    )
    planned_bytes = plan(servicer, None, config).planned_state.msgpack
    response = servicer.ApplyResourceChange(
        pb.ApplyResourceChange.Request(
            type_name="l2test_thing",
            prior_state=pb.DynamicValue(msgpack=b"\xc0"),
            planned_state=pb.DynamicValue(msgpack=planned_bytes),
            config=dv(config),
        ),
        None,
    )
    assert list(response.diagnostics) == []
    state = decode_msgpack(response.new_state.msgpack, THING)
    assert (
        state["id"] == "thing-1"
        and state["password_wo"] is None
        and state["settings"]["token"] == "tok-alpha"
    )
    assert b"hunter2" not in response.new_state.msgpack
    stored = json.loads((tmp_path / "store.json").read_text())["objects"]["thing-1"]
    assert stored["password_seen"] == "hunter2"


def test_validation_reports_every_problem_with_its_path(servicer: ProviderServicer) -> None:
    config = thing(
        name="Bad Name!",
        size=101,
        settings={"mode": "slow", "level": None, "token": None},
        ports=[{"number": 80, "protocol": "tcp"}, {"number": 70000, "protocol": "tcp"}],
        password_wo="x",
    )
    response = servicer.ValidateResourceConfig(
        pb.ValidateResourceConfig.Request(
            type_name="l2test_thing",
            config=dv(config),
            client_capabilities=pb.ClientCapabilities(write_only_attributes_allowed=True),
        ),
        None,
    )
    assert sorted(diag_summary(response)) == [
        ("ERROR", "Invalid attribute value", "name"),
        ("ERROR", "Invalid attribute value", "ports.1.number"),
        ("ERROR", "Invalid attribute value", "settings.mode"),
        ("ERROR", "Invalid attribute value", "size"),
        ("ERROR", "Missing attribute", "password_wo_version"),
    ]
    details = " ".join(d.detail for d in response.diagnostics)
    assert "ports[1].number must be between 1 and 65535, got 70000" in details
    assert 'settings.mode must be one of "fast", "safe"; got "slow"' in details


def test_unknown_values_are_not_validated_and_old_terraform_cannot_use_write_only(
    servicer: ProviderServicer,
) -> None:
    config = thing(name=Unknown(string_prefix="x-"), size=Unknown(), password_wo="x", password_wo_version=1)
    response = servicer.ValidateResourceConfig(
        pb.ValidateResourceConfig.Request(type_name="l2test_thing", config=dv(config)), None
    )
    assert diag_summary(response) == [("ERROR", "Write-only attribute not supported", "password_wo")]


class Exploding(Resource):
    type_name = "l2test_boom"
    schema = Schema(attributes={"id": string(computed=True), "mode": string(optional=True)})

    def create(self, plan: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        if plan["mode"] == "user":
            raise LookupError("no capacity in region r1")
        if plan["mode"] == "diag":
            raise DiagnosticError("Refused", "mode diag refuses", "mode")
        if plan["mode"] == "unknown":
            return plan  # leaves id unknown: our bug
        raise RuntimeError("kaboom")


class Mapping(l2test_provider.L2test):
    def error_diagnostics(self, exc: Exception) -> Diagnostics | None:
        if isinstance(exc, LookupError):
            diags = Diagnostics()
            diags.error("No capacity", str(exc))
            return diags
        return None


@pytest.mark.parametrize(
    ("mode", "summary", "detail_part"),
    [
        ("user", "No capacity", "no capacity in region r1"),
        ("diag", "Refused", "mode diag refuses"),
        ("crash", "Unexpected error in l2test_boom create", "please report"),
        ("unknown", "l2test_boom apply", "left unknown values in the state: id"),
    ],
)
def test_errors_in_resource_code_become_diagnostics(mode: str, summary: str, detail_part: str) -> None:
    provider = Mapping()
    provider.add_resource(Exploding())
    servicer = ProviderServicer(provider)
    t = Exploding.schema.type
    response = servicer.ApplyResourceChange(
        pb.ApplyResourceChange.Request(
            type_name="l2test_boom",
            prior_state=pb.DynamicValue(msgpack=b"\xc0"),
            planned_state=dv({"id": Unknown(), "mode": mode}, t),
            config=dv({"id": None, "mode": mode}, t),
        ),
        None,
    )
    assert [d.summary for d in response.diagnostics] == [summary]
    assert detail_part in response.diagnostics[0].detail


def test_read_reports_unchanged_gone_and_drift(servicer: ProviderServicer) -> None:
    created = servicer.ApplyResourceChange(
        pb.ApplyResourceChange.Request(
            type_name="l2test_thing",
            prior_state=pb.DynamicValue(msgpack=b"\xc0"),
            planned_state=plan(servicer, None, thing(name="alpha")).planned_state,
            config=dv(thing(name="alpha")),
        ),
        None,
    ).new_state

    def read(state: Any) -> Any:
        return servicer.ReadResource(
            pb.ReadResource.Request(type_name="l2test_thing", current_state=state, private=b"p"), None
        )

    unchanged = read(created)
    assert unchanged.new_state.msgpack == created.msgpack and unchanged.private == b"p"
    store = servicer.provider.store  # type: ignore[attr-defined]
    with store.open() as data:
        data["objects"]["thing-1"]["size"] = 7
    assert decode_msgpack(read(created).new_state.msgpack, THING)["size"] == 7
    with store.open() as data:
        data["objects"].clear()
    assert read(created).new_state.msgpack == b"\xc0"


def test_import_and_state_upgrade(servicer: ProviderServicer) -> None:
    imported = servicer.ImportResourceState(
        pb.ImportResourceState.Request(type_name="l2test_thing", id="thing-9"), None
    )
    (resource,) = imported.imported_resources
    assert resource.type_name == "l2test_thing"
    assert decode_msgpack(resource.state.msgpack, THING) == thing(id="thing-9")

    raw = json.dumps(
        {"id": "thing-1", "name": "a", "size": 2, "removed_attribute": 1, "password_wo": "leak"}
    ).encode()
    upgraded = servicer.UpgradeResourceState(
        pb.UpgradeResourceState.Request(type_name="l2test_thing", version=0, raw_state=pb.RawState(json=raw)),
        None,
    )
    assert decode_msgpack(upgraded.upgraded_state.msgpack, THING) == thing(id="thing-1", name="a", size=2)
    newer = servicer.UpgradeResourceState(
        pb.UpgradeResourceState.Request(type_name="l2test_thing", version=5, raw_state=pb.RawState(json=raw)),
        None,
    )
    assert [d.summary for d in newer.diagnostics] == ["State from a newer provider"]


def test_unsupported_rpcs_answer_with_a_diagnostic(servicer: ProviderServicer) -> None:
    move = servicer.MoveResourceState(pb.MoveResourceState.Request(source_type_name="x"), None)
    assert [d.summary for d in move.diagnostics] == ["Moving resources between types not supported"]
    (event,) = list(servicer.ListResource(pb.ListResource.Request(type_name="l2test_thing"), None))
    assert event.diagnostic[0].severity == pb.Diagnostic.ERROR
    assert servicer.CallFunction(pb.CallFunction.Request(name="f"), None).error.text
    assert (
        list(servicer.GetResourceIdentitySchemas(pb.GetResourceIdentitySchemas.Request(), None).diagnostics)
        == []
    )
    unknown_type = servicer.ReadResource(
        pb.ReadResource.Request(type_name="nope", current_state=dv("x", STRING)), None
    )
    assert "unknown resource type 'nope'" in unknown_type.diagnostics[0].detail
    assert "please report" in unknown_type.diagnostics[0].detail


def test_stop_provider_signals_resource_code(servicer: ProviderServicer) -> None:
    assert not servicer.provider.stopping
    servicer.StopProvider(pb.StopProvider.Request(), None)
    assert servicer.provider.stopping


def test_schema_in_protocol_form(servicer: ProviderServicer) -> None:
    response = servicer.GetProviderSchema(pb.GetProviderSchema.Request(), None)
    assert (
        response.server_capabilities.plan_destroy
        and response.server_capabilities.get_provider_schema_optional
    )
    attrs = {a.name: a for a in response.resource_schemas["l2test_thing"].block.attributes}
    assert (
        attrs["password_wo"].write_only
        and attrs["password_wo"].sensitive
        and not attrs["password_wo"].computed
    )
    assert attrs["size"].optional and attrs["size"].computed and "Default: `1`" in attrs["size"].description
    assert attrs["ports"].nested_type.nesting == pb.Schema.Object.LIST and not attrs["ports"].type
    assert json.loads(attrs["tags"].type) == ["set", "string"]
    assert "l2test_lookup" in response.data_source_schemas
    assert servicer.GetProviderSchema(pb.GetProviderSchema.Request(), None) is response  # built once
    metadata = servicer.GetMetadata(pb.GetMetadata.Request(), None)
    assert [r.type_name for r in metadata.resources] == ["l2test_thing"]


def test_schema_mistakes_are_caught_at_definition() -> None:
    with pytest.raises(SchemaError, match="required attribute cannot also be optional"):
        string(required=True, optional=True)
    with pytest.raises(SchemaError, match="must be required, optional or computed"):
        string()
    with pytest.raises(SchemaError, match="write-only attribute cannot be computed"):
        string(computed=True, write_only=True)
    with pytest.raises(SchemaError, match="default does not fit"):
        integer(default="ten")
    with pytest.raises(SchemaError, match="reserved by Terraform"):
        Schema(attributes={"count": integer(optional=True)})
    with pytest.raises(SchemaError, match="must start with 'l2test_'"):

        class Wrong(Resource):
            type_name = "other_thing"
            schema = Schema(attributes={})

        l2test_provider.build_provider().add_resource(Wrong())
    with pytest.raises(SchemaError, match="needs a type_name"):
        Provider()


def test_diagnostics_dedupe_and_paths() -> None:
    diags = Diagnostics()
    diags.error("Bad", "x", "ports[0].number")
    diags.error("Bad", "x", AttrPath("ports", 0, "number"))
    diags.warning("Careful", path='labels["env"]')
    assert len(diags) == 2 and diags.has_errors
    assert str(AttrPath.parse('a.b[3]["k"]')) == 'a.b[3]["k"]'
    assert AttrPath.parse('labels["env"]') == AttrPath("labels", Key("env"))
    with pytest.raises(ValueError, match="not an attribute path"):
        AttrPath.parse("a..b")


class Placed(Resource):
    type_name = "l2test_placed"
    schema = Schema(
        attributes={
            "name": string(required=True),
            "host": string(optional=True, computed=True, plan_modifiers=[requires_replace()]),
        }
    )


def test_replace_ignores_values_the_provider_decides(servicer: ProviderServicer) -> None:
    servicer.provider.add_resource(Placed())
    t = Placed.schema.type
    prior = {"name": "a", "host": "h1"}

    def replace_paths(config: dict[str, Any]) -> list[list[str]]:
        proposed = {"name": config["name"], "host": config["host"] or prior["host"]}
        response = servicer.PlanResourceChange(
            pb.PlanResourceChange.Request(
                type_name="l2test_placed",
                prior_state=dv(prior, t),
                proposed_new_state=dv(proposed, t),
                config=dv(config, t),
            ),
            None,
        )
        return [[s.attribute_name for s in p.steps] for p in response.requires_replace]

    # The name changes, so the provider-chosen host becomes unknown: that alone must not replace.
    assert replace_paths({"name": "b", "host": None}) == []
    assert replace_paths({"name": "a", "host": "h2"}) == [["host"]]
