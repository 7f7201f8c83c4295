"""ValidateResourceConfig, ConfigureProvider and PlanResourceChange for every resource.

- Validation: attribute validators (known, non-null values), config validators, `validate`;
  write-only attributes need a Terraform that supports them.
- Planning: defaults for attributes left out; write-only attributes planned null; computed
  attributes the configuration leaves out become unknown on create and when anything else
  changes (unless `use_state_for_unknown`); attribute plan modifiers; `modify_plan`; replace
  paths sorted and de-duplicated; when nothing changed the prior state is returned byte for
  byte, so a second plan after apply is empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from l2vpc.provider.cty import UNKNOWN, Unknown, copy_value, values_equal
from l2vpc.provider.diagnostics import Diagnostics, Path
from l2vpc.provider.framework import DataSource, PlanResult, Provider, Resource, ResourcePlan, Value, guard
from l2vpc.provider.modifiers import AttributePlan
from l2vpc.provider.schema import Attribute, Schema
from l2vpc.provider.walk import null_write_only, walk_nested, with_defaults


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
            v = value.get(name)
            if v is None or isinstance(v, Unknown):
                continue
            a = attributes[name]
            if not a.validators and a.nested is None and not a.write_only:
                continue  # nothing to check: no path to build either
            path = base.child(name)
            if a.write_only and not write_only_allowed:
                diags.error(
                    "Write-only attribute not supported",
                    f"{path} is write-only, which needs Terraform 1.11 or later.",
                    path,
                )
            for validator in a.validators:
                validator(v, path, diags)
            walk_nested(a, path, v, [], visit)

    visit(schema.attributes, Path(), config, [])


def validate_resource_config(
    resource: Resource | DataSource, config: Value, *, write_only_allowed: bool = True
) -> Diagnostics:
    diags = Diagnostics()
    validate_config(resource.schema, config, diags, write_only_allowed=write_only_allowed)
    with guard(resource.provider, diags, f"{resource.type_name} validation"):
        for validator in resource.config_validators:
            validator(config, diags)
        resource.validate(copy_value(config), diags)
    return diags


def validate_provider_config(provider: Provider, config: Value) -> Diagnostics:
    diags = Diagnostics()
    validate_config(provider.schema, config, diags)
    with guard(provider, diags, "provider configuration"):
        for validator in provider.config_validators:
            validator(config, diags)
        provider.validate_config(copy_value(config), diags)
    return diags


def configure_provider(provider: Provider, config: Value, terraform_version: str) -> Diagnostics:
    diags = validate_provider_config(provider, config)
    if diags.has_errors:
        return diags
    provider.terraform_version = terraform_version
    config = with_defaults(provider.schema.attributes, copy_value(config))
    with guard(provider, diags, "provider configuration"):
        provider.configure(config, diags)
    return diags




def plan_resource_change(
    resource: Resource, prior: Value | None, proposed: Value | None, config: Value | None
) -> PlanResult:
    diags = Diagnostics()
    schema = resource.schema
    if proposed is None:
        # Destruction; the resource may only add diagnostics.
        plan = ResourcePlan(prior=prior, config=None, planned=None, schema=schema)
        with guard(resource.provider, diags, f"{resource.type_name} plan"):
            resource.modify_plan(plan, diags)
        return PlanResult(None, [], diags, unchanged=False)

    creating = prior is None
    planned = copy_value(proposed)
    cfg = config or {}
    _plan_defaults(schema.attributes, planned, cfg)
    if creating or not values_equal(schema.type, planned, prior):
        mark_computed_unknown(schema.attributes, planned, cfg)

    replace: set[Path] = set()
    # Modifiers see the whole resource (as the framework's requests carry Plan, State, Config).
    plan = ResourcePlan(
        prior=copy_value(prior),
        config=copy_value(config),
        planned=planned,
        requires_replace=replace,
        schema=schema,
    )
    _run_modifiers(resource, plan, schema.attributes, Path(), planned, cfg, prior, creating, replace, diags)
    if replace and not creating:
        # A replacement is a new object: nothing computed for the old one carries over (as the
        # framework marks computed nulls unknown on replace); Terraform then plans the create.
        mark_computed_unknown(schema.attributes, planned, cfg)

    with guard(resource.provider, diags, f"{resource.type_name} plan"):
        resource.modify_plan(plan, diags)
    if plan.planned is None:
        diags.bug(f"{resource.type_name} plan", "modify_plan removed the planned state.")
        return PlanResult(None, [], diags, unchanged=False)
    planned = plan.planned
    null_write_only(schema.attributes, planned)

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
                value[name] = copy_value(a.default)
                continue
            if a.nested is not None:
                walk_nested(a, base.child(name), value.get(name), [cfg.get(name)], visit)

    visit(attributes, Path(), planned, [config])


def mark_computed_unknown(attributes: Mapping[str, Attribute], planned: Value, config: Value) -> None:
    """Computed values the configuration leaves to us will be known after apply."""

    def visit(attrs: Mapping[str, Attribute], base: Path, value: Value, matches: list[Any]) -> None:
        cfg = matches[0] if matches and isinstance(matches[0], dict) else {}
        for name, a in attrs.items():
            if a.write_only:
                continue
            if a.computed and cfg.get(name) is None:
                if not a.has_default:
                    value[name] = UNKNOWN  # frozen: one serves every value
                continue
            if a.nested is not None:
                walk_nested(a, base.child(name), value.get(name), [cfg.get(name)], visit)

    visit(attributes, Path(), planned, [config])


def _run_modifiers(
    resource: Resource,
    whole: ResourcePlan,
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
        if not a.plan_modifiers and a.nested is None:
            continue
        path = base.child(name)
        if a.plan_modifiers:
            ap = AttributePlan(
                path=path,
                type=a.value_type,
                config=copy_value(cfg.get(name)),
                prior=copy_value(old.get(name)),
                planned=planned.get(name),
                creating=creating,
                diags=diags,
                resource=whole,
            )
            with guard(resource.provider, diags, _PlanOf(resource.type_name, path)):
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
                whole,
                attrs,
                element_path,
                element,
                matches[0],
                element_prior,
                creating or element_prior is None,
                replace,
                diags,
            )

        walk_nested(a, path, planned.get(name), [cfg.get(name), old.get(name)], visit)


class _PlanOf:
    """"<type> plan of <path>", put into words only for an error message."""

    __slots__ = ("path", "type_name")

    def __init__(self, type_name: str, path: Path) -> None:
        self.type_name = type_name
        self.path = path

    def __str__(self) -> str:
        return f"{self.type_name} plan of {self.path}"
