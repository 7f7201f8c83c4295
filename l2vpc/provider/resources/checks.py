"""Plan-time checks: the engine's own rules on a planned create or update (one source of rules).

A plan runs what its apply will run: `Engine.check` parses the object, checks the rules against
the objects it touches, places and allocates in a transaction that is rolled back. So a change
that plans fine applies, and a bad one fails at plan with the attribute path, before anything
else of the apply is created. What cannot be decided yet is decided by the plan Terraform makes
during apply (every value known, before the object is touched):

- a value written as unknown in the configuration (other than `vpc_id`): the engine would see it
  unset and put a default in its place, so no rule can be trusted: nothing is checked;
- `vpc_id` unknown (the VPC is created or replaced in the same apply), or a VPC that this plan
  changes in place (Terraform plans a VPC before what refers to it): the object's own rules
  only (the model), with a stand-in id.

Replacements: Terraform plans one as an update that requires replacement, then plans the create
again without a prior state. The first records the old object's id under the configuration; the
second finds it there and is checked as if the old object were gone (its name and addresses
free), as it will be: a replacement that cannot be created fails at plan, before the old object
is destroyed. Failing at plan rather than creating the new object before destroying the old one,
because that is what a user of a production provider expects from `terraform plan` (refuse what
apply cannot do, before anything is touched), and because the other way is not ours to take:
create-before-destroy is the configuration's `lifecycle` choice, not the provider's, and a
replacement created first would clash with the old object on its unique name and addresses.

An update that would move an allocated value (a VPN's public address when its edge host
changes) plans it as "(known after apply)", so Terraform's plan says what changes.

In Terraform's apply walk (a provider process that has made a change already) a create's
plan is not checked again: Terraform plans each object right before creating it, and the
create runs the same rules in its own transaction, failing the same way with nothing written.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from l2vpc.provider.cty import Unknown, copy_value, values_equal
from l2vpc.provider.diagnostics import Diagnostics
from l2vpc.provider.framework import ResourcePlan
from l2vpc.provider.schema import Attribute
from l2vpc.provider.walk import with_write_only

if TYPE_CHECKING:
    from l2vpc.provider.resources.common import EngineResource

# Stands in for the id of a VPC that does not exist yet, for the rules of the object alone.
STAND_IN_VPC_ID = "vpc-000000000000"


@dataclass
class PlanMemory:
    """What one provider process learns while Terraform plans (plans run concurrently)."""

    replaced: dict[str, str] = field(default_factory=dict)  # configuration digest -> id replaced
    changing: set[str] = field(default_factory=set)  # ids planned to change in place
    lock: threading.Lock = field(default_factory=threading.Lock)

    def replacing(self, config: Mapping[str, Any], ident: str) -> None:
        with self.lock:
            self.replaced[_digest(config)] = ident

    def replaced_by(self, config: Mapping[str, Any]) -> str | None:
        with self.lock:
            return self.replaced.get(_digest(config))

    def change(self, ident: str) -> None:
        with self.lock:
            self.changing.add(ident)

    def changes(self, ident: str) -> bool:
        with self.lock:
            return ident in self.changing


def _digest(config: Mapping[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, default=lambda _: "(unknown)")


def unknown_fields(data: Any, prefix: str = "") -> set[str]:
    """Dotted paths of every unknown value inside `data`."""
    if isinstance(data, Unknown):
        return {prefix}
    out: set[str] = set()
    if isinstance(data, dict):
        for k, v in data.items():
            out |= unknown_fields(v, f"{prefix}.{k}" if prefix else k)
    elif isinstance(data, list | tuple):
        for i, v in enumerate(data):
            out |= unknown_fields(v, f"{prefix}[{i}]")
    return out


def check_plan(resource: EngineResource, plan: ResourcePlan, diags: Diagnostics) -> None:
    """Check the planned object with the engine's rules (see the module docstring)."""
    from l2vpc.provider.resources.common import client_of, creator_key, report_engine_error

    planned, prior, config = plan.planned, plan.prior, plan.config or {}
    assert planned is not None
    if prior is not None and values_equal(resource.schema.type, planned, prior):
        return  # nothing changes: nothing to check
    memory = resource.memory
    ident: str | None = None
    replacing: list[str] = []
    if prior is None:
        old = memory.replaced_by(config)
        replacing = [old] if old else []
    elif plan.requires_replace:
        memory.replacing(config, prior["id"])
        replacing = [prior["id"]]
    else:
        ident = prior["id"]
        memory.change(prior["id"])
    unknown = unknown_fields(config)
    if unknown - {"vpc_id"}:
        return
    values = planned
    if resource.schema.has_write_only():  # the engine checks the key the create will send
        values = with_write_only(resource.schema.attributes, copy_value(planned), config)
    data = resource.engine_data(values)
    vpc_id = data.get("vpc_id")
    if "vpc_id" in unknown or (isinstance(vpc_id, str) and resource.vpc_changes(vpc_id)):
        check_alone(resource.model_name, {**data, "vpc_id": vpc_id or STAND_IN_VPC_ID}, diags)
        return
    client = client_of(resource)
    if ident is None and not replacing and client.applying:
        # Terraform's apply walk: this plan comes right before the create it plans, and the
        # create runs every rule the check would, in its own transaction (a failure writes
        # nothing and names the attribute, as here). Checking twice only doubled the engine's
        # work per created object. Updates are still checked: their plan needs the values the
        # update would move (unknown_where_moved).
        return
    try:
        # adopt: as the create will (an object an interrupted apply created passes).
        would = client.engine.check(resource.kind, data, ident, replacing=replacing,
                                                 adopt=creator_key() if ident is None else False)
    except Exception as e:
        if report_engine_error(e, diags):
            return
        raise
    if ident is not None:
        unknown_where_moved(resource.schema.attributes, planned, config, resource.to_state(would, planned))


def check_alone(model_name: str, data: dict[str, Any], diags: Diagnostics) -> None:
    """The rules of the object alone (the engine's model)."""
    from l2vpc.engine import model
    from l2vpc.engine.errors import ValidationError
    from l2vpc.provider.resources.common import report_engine_error

    try:
        model.parse(getattr(model, model_name), data)
    except ValidationError as e:
        report_engine_error(e, diags)


def unknown_where_moved(attributes: Mapping[str, Attribute], planned: dict[str, Any], config: Mapping[str, Any],
                        would: Mapping[str, Any]) -> None:
    """Computed values the configuration leaves to us that the update would change: unknown."""
    for name, a in attributes.items():
        p, c, w = planned.get(name), config.get(name), would.get(name)
        if a.write_only or isinstance(p, Unknown) or name not in would:
            continue
        if a.computed and c is None:
            if not values_equal(a.value_type, p, w):
                planned[name] = Unknown()
        elif a.nested is not None and isinstance(p, dict) and isinstance(c, dict) and isinstance(w, dict):
            unknown_where_moved(a.nested.attributes, p, c, w)
