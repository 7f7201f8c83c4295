"""ApplyResourceChange, ReadResource, ImportResourceState, UpgradeResourceState, ReadDataSource.

Resource code returns plain values; what it leaves out is filled from the plan (or the prior
state, or the configuration), write-only values never reach the state, and unknown values left
in a state are a provider bug ("please report") rather than something Terraform rejects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from l2vpc.provider.codec import from_json_value
from l2vpc.provider.cty import Unknown, copy_value, is_wholly_known, values_equal
from l2vpc.provider.diagnostics import Diagnostics, Path
from l2vpc.provider.framework import DataSource, Resource, StateResult, Value, guard
from l2vpc.provider.schema import Attribute, Nesting, Schema
from l2vpc.provider.walk import null_write_only, with_write_only


def apply_resource_change(
    resource: Resource, prior: Value | None, planned: Value | None, config: Value | None
) -> StateResult:
    diags = Diagnostics()
    schema = resource.schema
    name = resource.type_name
    if planned is None:
        if prior is None:
            return StateResult(None, diags)
        with guard(resource.provider, diags, f"{name} delete"):
            resource.delete(copy_value(prior), diags)
        # A failed delete leaves the object in state.
        return StateResult(prior if diags.has_errors else None, diags)

    full_plan = with_write_only(schema.attributes, copy_value(planned), config)
    result: Value | None = None
    if prior is None:
        with guard(resource.provider, diags, f"{name} create"):
            result = resource.create(full_plan, diags)
        if result is None:
            if not diags.has_errors:
                diags.bug(f"{name} create", "create returned no state and no error.")
            return StateResult(None, diags)
    else:
        with guard(resource.provider, diags, f"{name} update"):
            result = resource.update(copy_value(prior), full_plan, diags)
        if result is None:
            if not diags.has_errors:
                diags.bug(f"{name} update", "update returned no state and no error.")
            return StateResult(prior, diags)

    state = _complete(schema, result, planned, diags, f"{name} apply")
    return StateResult(state, diags)


def read_resource(resource: Resource, state: Value) -> StateResult:
    diags = Diagnostics()
    result: Value | None = None
    with guard(resource.provider, diags, f"{resource.type_name} read"):
        result = resource.read(copy_value(state), diags)
    if result is None:
        # Gone unless reading failed: then keep what we had.
        return StateResult(state if diags.has_errors else None, diags)
    new_state = _complete(resource.schema, result, state, diags, f"{resource.type_name} read")
    unchanged = new_state is not None and values_equal(resource.schema.type, new_state, state)
    return StateResult(new_state, diags, unchanged=unchanged)


def import_resource_state(resource: Resource, import_id: str) -> StateResult:
    diags = Diagnostics()
    result: Value | None = None
    with guard(resource.provider, diags, f"{resource.type_name} import"):
        result = resource.import_state(import_id, diags)
    if result is None:
        if not diags.has_errors:
            diags.error("Cannot import", f"No {resource.type_name} with id {import_id!r} exists.")
        return StateResult(None, diags)
    return StateResult(_complete(resource.schema, result, None, diags, f"{resource.type_name} import"), diags)


def upgrade_resource_state(resource: Resource, version: int, raw: dict[str, Any]) -> StateResult:
    diags = Diagnostics()
    schema = resource.schema
    if version > schema.version:
        diags.error(
            "State from a newer provider",
            f"{resource.type_name} state has schema version {version}, newer than this provider's "
            f"{schema.version}. Use the provider version that wrote it.",
        )
        return StateResult(None, diags)
    if version < schema.version:
        upgraded: dict[str, Any] | None = None
        with guard(resource.provider, diags, f"{resource.type_name} state upgrade"):
            upgraded = resource.upgrade_state(version, raw, diags)
        if upgraded is None:
            return StateResult(None, diags)
        raw = upgraded
    try:
        state = from_json_value(raw, schema.type)
    except ValueError as e:
        diags.bug(f"{resource.type_name} state upgrade", f"The stored state does not match the schema: {e}")
        return StateResult(None, diags)
    null_write_only(schema.attributes, state)
    return StateResult(state, diags)


def read_data_source(data_source: DataSource, config: Value) -> StateResult:
    diags = Diagnostics()
    result: Value | None = None
    with guard(data_source.provider, diags, f"{data_source.type_name} read"):
        result = data_source.read(copy_value(config), diags)
    if result is None:
        if not diags.has_errors:
            diags.bug(f"{data_source.type_name} read", "read returned no state and no error.")
        return StateResult(None, diags)
    return StateResult(
        _complete(data_source.schema, result, config, diags, f"{data_source.type_name} read"), diags
    )


def _complete(
    schema: Schema, result: Value, fallback: Value | None, diags: Diagnostics, what: str
) -> Value | None:
    """Fill attributes resource code left out, drop write-only values, reject unknowns."""
    if not isinstance(result, dict):
        diags.bug(what, f"expected a dict of attributes, got {type(result).__name__}.")
        return None
    extra = set(result) - set(schema.attributes)
    if extra:
        diags.bug(what, f"returned attributes the schema does not have: {', '.join(sorted(extra))}.")
        return None
    state = copy_value(result)
    _fill(schema.attributes, state, fallback)
    null_write_only(schema.attributes, state)
    unknown = _unknown_paths(schema.attributes, state, Path())
    if unknown:
        diags.bug(what, "left unknown values in the state: " + ", ".join(str(p) for p in unknown) + ".")
        _replace_unknown(state)
    return state


def _fill(attributes: Mapping[str, Attribute], value: Value, fallback: Any) -> None:
    fb = fallback if isinstance(fallback, dict) else {}
    for name, a in attributes.items():
        if name not in value:
            value[name] = copy_value(fb.get(name))
        elif a.nested is not None and a.nested.nesting is Nesting.SINGLE and isinstance(value[name], dict):
            _fill(a.nested.attributes, value[name], fb.get(name))
        elif a.nested is not None and isinstance(value[name], list):
            for i, element in enumerate(value[name]):
                if isinstance(element, dict):
                    other = fb.get(name)
                    match = (
                        other[i]
                        if isinstance(other, list) and i < len(other) and a.nested.nesting is Nesting.LIST
                        else None
                    )
                    _fill(a.nested.attributes, element, match)
        elif a.nested is not None and a.nested.nesting is Nesting.MAP and isinstance(value[name], dict):
            others = fb.get(name)
            for k, element in value[name].items():
                if isinstance(element, dict):
                    _fill(a.nested.attributes, element, others.get(k) if isinstance(others, dict) else None)


def _unknown_paths(attributes: Mapping[str, Attribute], value: Any, base: Path) -> list[Path]:
    out: list[Path] = []
    if is_wholly_known(value):  # the usual case: no paths to build
        return out

    def walk(v: Any, path: Path) -> None:
        if isinstance(v, Unknown):
            out.append(path)
        elif isinstance(v, dict):
            for k, x in v.items():
                walk(x, path.child(k))
        elif isinstance(v, list):
            for i, x in enumerate(v):
                walk(x, path.child(i))

    walk(value, base)
    return out


def _replace_unknown(value: Any) -> Any:
    if isinstance(value, dict):
        for k, v in value.items():
            value[k] = None if isinstance(v, Unknown) else _replace_unknown(v)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            value[i] = None if isinstance(v, Unknown) else _replace_unknown(v)
    return value
