"""Plan modifiers: small named rules that adjust one attribute's planned value.

They run during PlanResourceChange, after defaults are filled in and after computed attributes
the configuration leaves out have been marked unknown because something changed. In list
order, per attribute:

    string(computed=True, plan_modifiers=[use_state_for_unknown()])   # id: stable once known
    string(required=True, plan_modifiers=[requires_replace()])        # changing it replaces
    string(optional=True, plan_modifiers=[requires_replace_if(
        lambda p: p.prior is not None, "changing it replaces the VPC once it was set")])

A modifier gets an `AttributePlan` and may change `planned`, set `requires_replace` or add
diagnostics. The replace rules only react to values the user writes: an optional+computed
attribute left out of the configuration that turned "(known after apply)" does not replace.
Whole-resource logic (cross-attribute warnings, values computed from other attributes) belongs
in `Resource.modify_plan` instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from l2vpc.provider.cty import CtyType, Unknown, values_equal
from l2vpc.provider.diagnostics import Diagnostics, Path


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


@dataclass(frozen=True)
class use_state_for_unknown:
    """Keep the prior value instead of "(known after apply)" for values that never change."""

    description: str = ""

    def modify(self, plan: AttributePlan) -> None:
        # Only our own "(known after apply)": an unknown written in the configuration must stay.
        if (
            not plan.creating
            and plan.config is None
            and isinstance(plan.planned, Unknown)
            and plan.prior is not None
        ):
            plan.planned = plan.prior
