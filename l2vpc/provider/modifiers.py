"""Plan modifiers: small named rules that adjust one attribute's planned value.

They run during PlanResourceChange, after defaults are filled in and after computed attributes
the configuration leaves out have been marked unknown because something changed. In list
order, per attribute:

    string(computed=True, plan_modifiers=[use_state_for_unknown()])   # id: stable once known
    string(required=True, plan_modifiers=[requires_replace()])        # changing it replaces
    string(optional=True, plan_modifiers=[requires_replace_if(
        lambda p: p.prior is not None, "changing it replaces the VPC once it was set")])

A modifier gets an `AttributePlan` and may change `planned`, set `requires_replace` or add
diagnostics; `plan.resource` is the whole resource's plan (config, prior, planned so far), as the
framework's requests carry Config, State and Plan. The replace rules only react to values the
user writes: an optional+computed attribute left out of the configuration that turned "(known
after apply)" does not replace.
Whole-resource logic (cross-attribute warnings, values computed from other attributes) belongs
in `Resource.modify_plan` instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from l2vpc.provider.cty import CtyType, Unknown, get_path, values_equal
from l2vpc.provider.diagnostics import Diagnostics, Key, Path

if TYPE_CHECKING:
    from l2vpc.provider.framework import ResourcePlan


@dataclass(slots=True)
class AttributePlan:
    path: Path
    type: CtyType
    config: Any  # as written (None when left out; may be Unknown)
    prior: Any  # in the prior state; None when the resource is being created
    planned: Any  # what we will plan; modifiers may replace it
    creating: bool
    diags: Diagnostics
    requires_replace: bool = False
    resource: ResourcePlan | None = None  # the whole resource's plan

    def input_changed(self, path: str) -> bool:
        """Whether the attribute at `path` (from the resource's root) changes in this plan. A
        value the configuration leaves to the provider counts as unchanged: its own modifiers
        keep or recompute it."""
        whole = self.resource
        if whole is None or whole.prior is None or whole.planned is None:
            return False
        steps = [s.key if isinstance(s, Key) else s for s in Path.parse(path)]
        if get_path(whole.config, steps) is None and isinstance(get_path(whole.planned, steps), Unknown):
            return False
        return whole.changed(path)

    @property
    def changed(self) -> bool:
        """The planned value differs from the prior one (an unknown always counts as a change)."""
        return not self.creating and not values_equal(self.type, self.planned, self.prior)


class PlanModifier(Protocol):
    @property
    def description(self) -> str: ...

    def modify(self, plan: AttributePlan) -> None: ...


def _decided_by_provider(plan: AttributePlan) -> bool:
    # Left out of the configuration and "(known after apply)": our own placeholder, not a change
    # the user asked for (use_state_for_unknown, listed first, would have kept the old value).
    return plan.config is None and isinstance(plan.planned, Unknown)


@dataclass(frozen=True)
class requires_replace:
    """Replace the resource when the configured value changes (an unknown new value counts)."""

    description: str = "changing it replaces the resource"

    def modify(self, plan: AttributePlan) -> None:
        if plan.changed and not _decided_by_provider(plan):
            plan.requires_replace = True


@dataclass(frozen=True)
class requires_replace_if:
    """Replace when the value changes and `condition(plan)` holds."""

    condition: Callable[[AttributePlan], bool] = field(compare=False)
    description: str = "changing it may replace the resource"

    def modify(self, plan: AttributePlan) -> None:
        if plan.changed and not _decided_by_provider(plan) and self.condition(plan):
            plan.requires_replace = True


def _ours_unknown(plan: AttributePlan) -> bool:
    # Only our own "(known after apply)": an unknown written in the configuration must stay.
    return not plan.creating and plan.config is None and isinstance(plan.planned, Unknown) and plan.prior is not None


@dataclass(frozen=True)
class use_state_for_unknown:
    """Keep the prior value instead of "(known after apply)" for values that never change."""

    description: str = ""

    def modify(self, plan: AttributePlan) -> None:
        if _ours_unknown(plan):
            plan.planned = plan.prior


@dataclass(frozen=True)
class use_state_while_unchanged:
    """Keep the prior value of a value computed from other attributes only while those are
    unchanged; when one of them changes it is "(known after apply)" and computed again (a
    customer_ip assigned inside the old peering_cidr means nothing in a new one).

        string(optional=True, computed=True,
               plan_modifiers=[use_state_while_unchanged("bgp.peering_cidr", "bgp.provider_ip")])

    `inputs` are paths from the resource's root."""

    inputs: tuple[str, ...]
    description: str = ""

    def __init__(self, *inputs: str, description: str = "") -> None:
        object.__setattr__(self, "inputs", inputs)
        names = " or ".join(f"`{i}`" for i in inputs)
        object.__setattr__(self, "description", description or f"if left out, computed again when {names} changes")

    def modify(self, plan: AttributePlan) -> None:
        if _ours_unknown(plan) and not any(plan.input_changed(p) for p in self.inputs):
            plan.planned = plan.prior
