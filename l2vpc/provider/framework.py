"""The provider framework: what resource modules subclass, and the generic logic behind them.

Resource code sees plain Python values (dict, list, str, int, float, bool, None and
`Unknown`), never protobuf or msgpack; see `codec` for the mapping. Problems are reported
through the `Diagnostics` passed in (or by raising `DiagnosticError`); exceptions the provider
recognises (`Provider.error_diagnostics`) become user errors, any other exception becomes an
error that asks the user to report a bug.

A resource
----------

    class Thing(Resource):
        type_name = "l2vpc_thing"                    # must start with the provider's name + "_"
        schema = Schema(description=..., attributes={...})     # see schema.py
        config_validators = (exactly_one_of("a", "b"),)        # optional, see validators.py

        def validate(self, config, diags): ...       # extra checks; values may be Unknown
        def modify_plan(self, plan, diags): ...      # see ResourcePlan; optional
        def create(self, plan, diags) -> dict | None: ...
        def read(self, state, diags) -> dict | None: ...       # None: it is gone
        def update(self, prior, plan, diags) -> dict | None: ...
        def delete(self, state, diags) -> None: ...
        def import_state(self, import_id, diags) -> dict | None: ...  # default {"id": import_id}
        def upgrade_state(self, version, state, diags) -> dict | None: ...  # old schema versions

`create` and `update` get the planned values with write-only attributes filled in from the
configuration, and return the new state: attributes left out keep their planned value, every
value left unknown in the plan must be set. Write-only values are dropped before state is
stored. Returning None (with an error) from `create` means nothing was created; from `update`
or `delete` it keeps the prior state. `read` returns the object as it is now (drift shows in
the next plan; attributes left out keep their current values) or None when it no longer
exists. `import_state` returns enough for `read` to find the object. Methods run
concurrently on one instance (Terraform plans and applies resources in parallel): keep them
thread-safe. `self.provider` is the configured Provider;
long operations should give up when `self.provider.stopping` is set (Terraform was
interrupted).

What the framework does for every resource, so a second plan after apply is empty:
- ValidateResourceConfig: attribute validators (known, non-null values), config validators,
  `validate`; write-only attributes need a Terraform that supports them.
- PlanResourceChange: defaults for attributes left out; write-only attributes planned null;
  computed attributes the configuration leaves out become unknown on create and when anything
  else changes (unless `use_state_for_unknown`); attribute plan modifiers; `modify_plan`;
  replace paths sorted and de-duplicated; when nothing changed the prior state is returned
  byte for byte.
- ApplyResourceChange, ReadResource, ImportResourceState, UpgradeResourceState,
  ReadDataSource: as described above.

A data source
-------------

    class Hosts(DataSource):
        type_name = "l2vpc_hosts"
        schema = Schema(attributes={"region": string(optional=True), "hosts": list_nested(..., computed=True)})
        def read(self, config, diags) -> dict | None: ...   # attributes left out keep config values

A provider
----------

    class L2vpc(Provider):
        type_name = "l2vpc"
        version = "0.1.0"
        schema = Schema(attributes={"endpoint": string(optional=True), ...})
        def configure(self, config, diags): self.client = ...
        def error_diagnostics(self, exc): ...         # map your own exception types
        def close(self): ...                          # process is about to exit

    provider = L2vpc()
    provider.add_resource(Thing())
    provider.add_data_source(Hosts())
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

from l2vpc.provider.codec import (
    ListType,
    MapType,
    ObjectType,
    SetType,
    TupleType,
    Unknown,
    from_json_value,
    get_path,
    values_equal,
)
from l2vpc.provider.diagnostics import DiagnosticError, Diagnostics, Key, Path
from l2vpc.provider.modifiers import AttributePlan
from l2vpc.provider.schema import Attribute, Nesting, Schema, SchemaError
from l2vpc.provider.validators import ConfigValidator

log = logging.getLogger("l2vpc.provider")

Value = dict[str, Any]


# --------------------------------------------------------------------------------------------
# What resource code subclasses


class Provider:
    """The provider: its own configuration block plus the registry of resources and data sources."""

    type_name: ClassVar[str] = ""
    version: ClassVar[str] = "0.0.0"
    schema: ClassVar[Schema] = Schema(attributes={})
    config_validators: ClassVar[Sequence[ConfigValidator]] = ()

    def __init__(self) -> None:
        if not self.type_name:
            raise SchemaError(f"{type(self).__name__} needs a type_name")
        self.resources: dict[str, Resource] = {}
        self.data_sources: dict[str, DataSource] = {}
        self.stop_event = threading.Event()
        self.terraform_version = ""

    def add_resource(self, resource: Resource) -> None:
        self._check_name(resource.type_name, self.resources)
        resource.provider = self
        self.resources[resource.type_name] = resource

    def add_data_source(self, data_source: DataSource) -> None:
        self._check_name(data_source.type_name, self.data_sources)
        data_source.provider = self
        self.data_sources[data_source.type_name] = data_source

    def _check_name(self, name: str, registry: Mapping[str, object]) -> None:
        if not name.startswith(f"{self.type_name}_"):
            raise SchemaError(f"type name {name!r} must start with {self.type_name + '_'!r}")
        if name in registry:
            raise SchemaError(f"{name!r} is registered twice")

    @property
    def stopping(self) -> bool:
        """Terraform asked us to stop (the user interrupted it): finish up quickly."""
        return self.stop_event.is_set()

    def validate_config(self, config: Value, diags: Diagnostics) -> None:
        """Extra checks of the provider block (values may be Unknown)."""

    def configure(self, config: Value, diags: Diagnostics) -> None:
        """Called once per process before any resource operation; values may be Unknown."""

    def error_diagnostics(self, exc: Exception) -> Diagnostics | None:
        """Turn an exception resource code let escape into diagnostics; None: it is a bug."""
        return None

    def close(self) -> None:
        """Release resources; the process exits right after."""


class Resource:
    type_name: ClassVar[str]
    schema: ClassVar[Schema]
    config_validators: ClassVar[Sequence[ConfigValidator]] = ()
    provider: Provider

    def validate(self, config: Value, diags: Diagnostics) -> None:
        """Extra configuration checks; values may be Unknown. Runs at validate and plan time."""

    def modify_plan(self, plan: ResourcePlan, diags: Diagnostics) -> None:
        """Adjust the plan (values computed from others, replacements, warnings)."""

    def create(self, plan: Value, diags: Diagnostics) -> Value | None:
        raise NotImplementedError(f"{self.type_name} cannot be created")

    def read(self, state: Value, diags: Diagnostics) -> Value | None:
        return state

    def update(self, prior: Value, plan: Value, diags: Diagnostics) -> Value | None:
        raise NotImplementedError(f"{self.type_name} cannot be updated in place")

    def delete(self, state: Value, diags: Diagnostics) -> None:
        raise NotImplementedError(f"{self.type_name} cannot be deleted")

    def import_state(self, import_id: str, diags: Diagnostics) -> Value | None:
        if "id" not in self.schema.attributes:
            diags.error("Import not supported", f"{self.type_name} cannot be imported.")
            return None
        return {"id": import_id}

    def upgrade_state(self, version: int, state: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        """Convert state (parsed JSON) written with schema `version` to the current schema."""
        diags.error(
            "Cannot upgrade state",
            f"{self.type_name} state was written with schema version {version}; this provider only "
            f"reads version {self.schema.version}.",
        )
        return None


class DataSource:
    type_name: ClassVar[str]
    schema: ClassVar[Schema]
    config_validators: ClassVar[Sequence[ConfigValidator]] = ()
    provider: Provider

    def validate(self, config: Value, diags: Diagnostics) -> None:
        """Extra configuration checks; values may be Unknown."""

    def read(self, config: Value, diags: Diagnostics) -> Value | None:
        raise NotImplementedError(f"{self.type_name} cannot be read")


@dataclass
class ResourcePlan:
    """What `Resource.modify_plan` sees and may change.

    `planned` is None when the resource is being destroyed (Terraform plans destruction too,
    so a resource can warn about it). Edit `planned` in place; only computed attributes may
    differ from the configuration.
    """

    prior: Value | None
    config: Value | None
    planned: Value | None
    requires_replace: set[Path] = field(default_factory=set)
    schema: Schema | None = None

    @property
    def creating(self) -> bool:
        return self.prior is None

    @property
    def destroying(self) -> bool:
        return self.planned is None

    def replace(self, path: Path | str) -> None:
        """Changing this attribute needs a new object."""
        self.requires_replace.add(Path.parse(path) if isinstance(path, str) else path)

    def changed(self, path: Path | str) -> bool:
        """The attribute's planned value differs from the prior one (false when creating/destroying)."""
        if self.prior is None or self.planned is None:
            return False
        p = Path.parse(path) if isinstance(path, str) else path
        steps = _plain_steps(p)
        t = _type_at(self.schema, p) if self.schema else None
        a, b = get_path(self.planned, steps), get_path(self.prior, steps)
        return not values_equal(t, a, b) if t is not None else a != b


def _plain_steps(path: Path) -> list[str | int]:
    return [s.key if isinstance(s, Key) else s for s in path]


def _type_at(schema: Schema | None, path: Path) -> Any:
    t: Any = schema.type if schema else None
    for step in path:
        if isinstance(t, ObjectType) and isinstance(step, str):
            t = t.attribute_types.get(step)
        elif isinstance(t, ListType | SetType | MapType):
            t = t.element
        elif isinstance(t, TupleType) and isinstance(step, int):
            t = t.elements[step]
        else:
            return None
    return t


# --------------------------------------------------------------------------------------------
# Results the RPC layer encodes


@dataclass
class PlanResult:
    planned: Value | None
    requires_replace: list[Path]
    diags: Diagnostics
    unchanged: bool  # planned == prior: send the prior bytes back untouched


@dataclass
class StateResult:
    state: Value | None
    diags: Diagnostics
    unchanged: bool = False


# --------------------------------------------------------------------------------------------
# Guarding calls into resource code


@contextmanager
def _guard(provider: Provider, diags: Diagnostics, what: str) -> Iterator[None]:
    try:
        yield
    except DiagnosticError as e:
        diags.extend(e.diagnostics)
    except Exception as e:
        mapped = provider.error_diagnostics(e)
        if mapped is not None:
            diags.extend(mapped)
            return
        log.exception("unexpected error in %s", what)
        diags.bug(f"Unexpected error in {what}", f"{type(e).__name__}: {e}")


# --------------------------------------------------------------------------------------------
# Walking values along a schema


def _elements(nesting: Nesting, value: Any, path: Path) -> Iterator[tuple[Path, Any, int | str]]:
    """(path, element, index or map key) for each element of a nested attribute's known value."""
    if nesting is Nesting.SINGLE:
        yield path, value, 0
    elif nesting is Nesting.MAP:
        for k, element in value.items():
            yield path.child(Key(k)), element, k
    else:
        for i, element in enumerate(value):
            # Sets have no stable index: paths stop at the set attribute.
            yield (path.child(i) if nesting is Nesting.LIST else path), element, i


def _counterpart(a: Attribute, nesting: Nesting, other: Any, index: int | str, element: Any) -> Any:
    """The element of `other` (config or prior value of the same attribute) matching `element`."""
    if isinstance(other, Unknown) or other is None:
        return None
    if nesting is Nesting.SINGLE:
        return other
    if nesting is Nesting.MAP:
        return other.get(index) if isinstance(other, dict) else None
    if not isinstance(other, list):
        return None
    if nesting is Nesting.LIST:
        return other[index] if isinstance(index, int) and index < len(other) else None
    # Sets: the element whose configurable attributes all match.
    assert a.nested is not None
    for candidate in other:
        if (
            isinstance(candidate, dict)
            and isinstance(element, dict)
            and _same_configured(a.nested.attributes, element, candidate)
        ):
            return candidate
    return None


def _same_configured(attributes: Mapping[str, Attribute], element: Value, candidate: Value) -> bool:
    for name, a in attributes.items():
        if a.computed and candidate.get(name) is None:
            continue
        if not values_equal(a.value_type, element.get(name), candidate.get(name)):
            return False
    return True


def _walk_nested(
    a: Attribute,
    path: Path,
    value: Any,
    others: Sequence[Any],
    visit: Callable[[Mapping[str, Attribute], Path, Value, list[Any]], None],
) -> None:
    """Call visit(attributes, path, element, [matching elements of others]) for each element."""
    if a.nested is None or value is None or isinstance(value, Unknown):
        return
    nesting = a.nested.nesting
    for element_path, element, key in _elements(nesting, value, path):
        if not isinstance(element, dict):
            continue
        matches = [_counterpart(a, nesting, o, key, element) for o in others]
        visit(a.nested.attributes, element_path, element, matches)


# --------------------------------------------------------------------------------------------
# Validation


def validate_config(
    schema: Schema,
    config: Value,
    diags: Diagnostics,
    *,
    write_only_allowed: bool = True,
) -> None:
    """Attribute validators and write-only support, recursively."""

    def visit(attributes: Mapping[str, Attribute], base: Path, value: Value, _: list[Any]) -> None:
        for name in sorted(attributes):
            a = attributes[name]
            v = value.get(name)
            path = base.child(name)
            if v is None or isinstance(v, Unknown):
                continue
            if a.write_only and not write_only_allowed:
                diags.error(
                    "Write-only attribute not supported",
                    f"{path} is write-only, which needs Terraform 1.11 or later.",
                    path,
                )
            for validator in a.validators:
                validator(v, path, diags)
            _walk_nested(a, path, v, [], visit)

    visit(schema.attributes, Path(), config, [])


def validate_resource_config(
    resource: Resource | DataSource, config: Value, *, write_only_allowed: bool = True
) -> Diagnostics:
    diags = Diagnostics()
    validate_config(resource.schema, config, diags, write_only_allowed=write_only_allowed)
    with _guard(resource.provider, diags, f"{resource.type_name} validation"):
        for validator in resource.config_validators:
            validator(config, diags)
        resource.validate(copy.deepcopy(config), diags)
    return diags


def validate_provider_config(provider: Provider, config: Value) -> Diagnostics:
    diags = Diagnostics()
    validate_config(provider.schema, config, diags)
    with _guard(provider, diags, "provider configuration"):
        for validator in provider.config_validators:
            validator(config, diags)
        provider.validate_config(copy.deepcopy(config), diags)
    return diags


def configure_provider(provider: Provider, config: Value, terraform_version: str) -> Diagnostics:
    diags = validate_provider_config(provider, config)
    if diags.has_errors:
        return diags
    provider.terraform_version = terraform_version
    config = _with_defaults(provider.schema.attributes, copy.deepcopy(config))
    with _guard(provider, diags, "provider configuration"):
        provider.configure(config, diags)
    return diags


def _with_defaults(attributes: Mapping[str, Attribute], value: Value) -> Value:
    for name, a in attributes.items():
        if value.get(name) is None and a.has_default:
            value[name] = copy.deepcopy(a.default)
    return value


# --------------------------------------------------------------------------------------------
# Planning


def plan_resource_change(
    resource: Resource, prior: Value | None, proposed: Value | None, config: Value | None
) -> PlanResult:
    diags = Diagnostics()
    schema = resource.schema
    if proposed is None:
        # Destruction; the resource may only add diagnostics.
        plan = ResourcePlan(prior=prior, config=None, planned=None, schema=schema)
        with _guard(resource.provider, diags, f"{resource.type_name} plan"):
            resource.modify_plan(plan, diags)
        return PlanResult(None, [], diags, unchanged=False)

    creating = prior is None
    planned = copy.deepcopy(proposed)
    cfg = config or {}
    _plan_defaults(schema.attributes, planned, cfg)
    if creating or not values_equal(schema.type, planned, prior):
        _mark_computed_unknown(schema.attributes, planned, cfg)

    replace: set[Path] = set()
    _run_modifiers(resource, schema.attributes, Path(), planned, cfg, prior, creating, replace, diags)

    plan = ResourcePlan(
        prior=copy.deepcopy(prior),
        config=copy.deepcopy(config),
        planned=planned,
        requires_replace=replace,
        schema=schema,
    )
    with _guard(resource.provider, diags, f"{resource.type_name} plan"):
        resource.modify_plan(plan, diags)
    if plan.planned is None:
        diags.bug(f"{resource.type_name} plan", "modify_plan removed the planned state.")
        return PlanResult(None, [], diags, unchanged=False)
    planned = plan.planned
    _null_write_only(schema.attributes, planned)

    if prior is not None and values_equal(schema.type, planned, prior):
        return PlanResult(prior, [], diags, unchanged=True)
    paths = sorted(plan.requires_replace, key=path_sort_key) if not creating else []
    return PlanResult(planned, paths, diags, unchanged=False)


def path_sort_key(path: Path) -> tuple[tuple[int, str, int], ...]:
    return tuple(
        (0, s, 0) if isinstance(s, str) else (1, "", s) if isinstance(s, int) else (2, s.key, 0) for s in path
    )


def _plan_defaults(attributes: Mapping[str, Attribute], planned: Value, config: Value) -> None:
    """Fill defaults where the configuration is silent; write-only values are never planned."""

    def visit(attrs: Mapping[str, Attribute], base: Path, value: Value, matches: list[Any]) -> None:
        cfg = matches[0] if matches and isinstance(matches[0], dict) else {}
        for name, a in attrs.items():
            if a.write_only:
                value[name] = None
                continue
            if cfg.get(name) is None and a.has_default:
                value[name] = copy.deepcopy(a.default)
                continue
            _walk_nested(a, base.child(name), value.get(name), [cfg.get(name)], visit)

    visit(attributes, Path(), planned, [config])


def _mark_computed_unknown(attributes: Mapping[str, Attribute], planned: Value, config: Value) -> None:
    """Computed values the configuration leaves to us will be known after apply."""

    def visit(attrs: Mapping[str, Attribute], base: Path, value: Value, matches: list[Any]) -> None:
        cfg = matches[0] if matches and isinstance(matches[0], dict) else {}
        for name, a in attrs.items():
            if a.write_only:
                continue
            if a.computed and cfg.get(name) is None:
                if not a.has_default:
                    value[name] = Unknown()
                continue
            _walk_nested(a, base.child(name), value.get(name), [cfg.get(name)], visit)

    visit(attributes, Path(), planned, [config])


def _run_modifiers(
    resource: Resource,
    attributes: Mapping[str, Attribute],
    base: Path,
    planned: Value,
    config: Any,
    prior: Any,
    creating: bool,
    replace: set[Path],
    diags: Diagnostics,
) -> None:
    cfg = config if isinstance(config, dict) else {}
    old = prior if isinstance(prior, dict) else {}
    for name in sorted(attributes):
        a = attributes[name]
        path = base.child(name)
        if a.plan_modifiers:
            ap = AttributePlan(
                path=path,
                type=a.value_type,
                config=copy.deepcopy(cfg.get(name)),
                prior=copy.deepcopy(old.get(name)),
                planned=planned.get(name),
                creating=creating,
                diags=diags,
            )
            with _guard(resource.provider, diags, f"{resource.type_name} plan of {path}"):
                for modifier in a.plan_modifiers:
                    modifier.modify(ap)
            planned[name] = ap.planned
            if ap.requires_replace:
                replace.add(path)

        def visit(
            attrs: Mapping[str, Attribute], element_path: Path, element: Value, matches: list[Any]
        ) -> None:
            element_prior = matches[1]
            _run_modifiers(
                resource,
                attrs,
                element_path,
                element,
                matches[0],
                element_prior,
                creating or element_prior is None,
                replace,
                diags,
            )

        _walk_nested(a, path, planned.get(name), [cfg.get(name), old.get(name)], visit)


def _null_write_only(attributes: Mapping[str, Attribute], value: Value) -> None:
    def visit(attrs: Mapping[str, Attribute], base: Path, v: Value, _: list[Any]) -> None:
        for name, a in attrs.items():
            if a.write_only:
                v[name] = None
            else:
                _walk_nested(a, base.child(name), v.get(name), [], visit)

    visit(attributes, Path(), value, [])


def _with_write_only(attributes: Mapping[str, Attribute], planned: Value, config: Value | None) -> Value:
    """The planned values plus the write-only ones from the configuration (for create/update)."""

    def visit(attrs: Mapping[str, Attribute], base: Path, v: Value, matches: list[Any]) -> None:
        cfg = matches[0] if matches and isinstance(matches[0], dict) else {}
        for name, a in attrs.items():
            if a.write_only:
                v[name] = copy.deepcopy(cfg.get(name))
            else:
                _walk_nested(a, base.child(name), v.get(name), [cfg.get(name)], visit)

    visit(attributes, Path(), planned, [config or {}])
    return planned


# --------------------------------------------------------------------------------------------
# Apply, read, import, upgrade


def apply_resource_change(
    resource: Resource, prior: Value | None, planned: Value | None, config: Value | None
) -> StateResult:
    diags = Diagnostics()
    schema = resource.schema
    name = resource.type_name
    if planned is None:
        if prior is None:
            return StateResult(None, diags)
        with _guard(resource.provider, diags, f"{name} delete"):
            resource.delete(copy.deepcopy(prior), diags)
        # A failed delete leaves the object in state.
        return StateResult(prior if diags.has_errors else None, diags)

    full_plan = _with_write_only(schema.attributes, copy.deepcopy(planned), config)
    result: Value | None = None
    if prior is None:
        with _guard(resource.provider, diags, f"{name} create"):
            result = resource.create(full_plan, diags)
        if result is None:
            if not diags.has_errors:
                diags.bug(f"{name} create", "create returned no state and no error.")
            return StateResult(None, diags)
    else:
        with _guard(resource.provider, diags, f"{name} update"):
            result = resource.update(copy.deepcopy(prior), full_plan, diags)
        if result is None:
            if not diags.has_errors:
                diags.bug(f"{name} update", "update returned no state and no error.")
            return StateResult(prior, diags)

    state = _complete(schema, result, planned, diags, f"{name} apply")
    return StateResult(state, diags)


def read_resource(resource: Resource, state: Value) -> StateResult:
    diags = Diagnostics()
    result: Value | None = None
    with _guard(resource.provider, diags, f"{resource.type_name} read"):
        result = resource.read(copy.deepcopy(state), diags)
    if result is None:
        # Gone unless reading failed: then keep what we had.
        return StateResult(state if diags.has_errors else None, diags)
    new_state = _complete(resource.schema, result, state, diags, f"{resource.type_name} read")
    unchanged = new_state is not None and values_equal(resource.schema.type, new_state, state)
    return StateResult(new_state, diags, unchanged=unchanged)


def import_resource_state(resource: Resource, import_id: str) -> StateResult:
    diags = Diagnostics()
    result: Value | None = None
    with _guard(resource.provider, diags, f"{resource.type_name} import"):
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
        with _guard(resource.provider, diags, f"{resource.type_name} state upgrade"):
            upgraded = resource.upgrade_state(version, raw, diags)
        if upgraded is None:
            return StateResult(None, diags)
        raw = upgraded
    try:
        state = from_json_value(raw, schema.type)
    except ValueError as e:
        diags.bug(f"{resource.type_name} state upgrade", f"The stored state does not match the schema: {e}")
        return StateResult(None, diags)
    _null_write_only(schema.attributes, state)
    return StateResult(state, diags)


def read_data_source(data_source: DataSource, config: Value) -> StateResult:
    diags = Diagnostics()
    result: Value | None = None
    with _guard(data_source.provider, diags, f"{data_source.type_name} read"):
        result = data_source.read(copy.deepcopy(config), diags)
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
    state = copy.deepcopy(result)
    _fill(schema.attributes, state, fallback)
    _null_write_only(schema.attributes, state)
    unknown = _unknown_paths(schema.attributes, state, Path())
    if unknown:
        diags.bug(what, "left unknown values in the state: " + ", ".join(str(p) for p in unknown) + ".")
        _replace_unknown(state)
    return state


def _fill(attributes: Mapping[str, Attribute], value: Value, fallback: Any) -> None:
    fb = fallback if isinstance(fallback, dict) else {}
    for name, a in attributes.items():
        if name not in value:
            value[name] = copy.deepcopy(fb.get(name))
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
