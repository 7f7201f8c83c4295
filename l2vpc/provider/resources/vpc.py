"""`l2vpc_vpc`: one Layer 2 VPC (a VXLAN segment realized on the hosts that carry it)."""

from __future__ import annotations

from typing import Any

from l2vpc.provider.cty import STRING
from l2vpc.provider.diagnostics import Diagnostics
from l2vpc.provider.framework import ResourcePlan
from l2vpc.provider.modifiers import (
    AttributePlan,
    requires_replace_if,
    use_state_for_unknown,
    use_state_while_unchanged,
)
from l2vpc.provider.resources.common import EngineResource, client_of, drop_unset, known, timeouts
from l2vpc.provider.schema import Schema, integer, list_of, single_nested, string
from l2vpc.provider.validators import (
    between,
    each,
    is_ipv4_address,
    is_ipv4_cidr,
    length_between,
    matches,
    one_of,
)

STABLE = [use_state_for_unknown()]
# The engine's rule (l2vpc.engine.model.NAME_PATTERN), repeated so that loading the schema does
# not import the engine; a test keeps the two equal.
NAME_PATTERN = r"^[a-z0-9-]{1,63}$"

DHCP = single_nested(
    {
        "range_start": string(required=True, validators=[is_ipv4_address()],
                              description="First address handed out dynamically (inside `cidr`)."),
        "range_end": string(required=True, validators=[is_ipv4_address()],
                            description="Last address handed out dynamically (inside `cidr`)."),
        "gateway": string(optional=True, validators=[is_ipv4_address()],
                          description="Default gateway handed to clients (e.g. a virtual router)."),
        "dns_servers": list_of(STRING, optional=True, validators=[each(is_ipv4_address()), length_between(0, 8)],
                               description="DNS servers handed to clients (at most 8)."),
        "lease_time": integer(default=3600, validators=[between(120, 604800)],
                              description="Lease time in seconds (120–604800)."),
        "server_ip": string(optional=True, computed=True, validators=[is_ipv4_address()],
                            plan_modifiers=[use_state_while_unchanged("cidr")],
                            description="Address of the DHCP server. Default: the last usable address of `cidr`."),
    },
    optional=True,
    description="A managed DHCP server for the VPC (like the dhcp-server app). Requires `cidr`.",
)


def _stays_single_region(plan: AttributePlan) -> bool:
    whole = plan.resource
    return (whole is not None and whole.prior is not None and whole.planned is not None
            and whole.prior.get("scope") == whole.planned.get("scope") == "single_region")


SCHEMA = Schema(
    description="A Layer 2 VPC: a flat, isolated layer-2 segment that workloads attach to. Creating one "
    "needs no host; it is realized on the hosts where attachments land.",
    attributes={
        "id": string(computed=True, plan_modifiers=STABLE, description="The VPC's id."),
        "name": string(required=True, validators=[matches(NAME_PATTERN, "1–63 lowercase letters, digits and '-'")],
                       description="Unique name: 1–63 lowercase letters, digits and `-`."),
        "description": string(default="", description="Free text."),
        "scope": string(default="single_region", validators=[one_of("single_region", "multi_region")],
                        description="`single_region` (default) or `multi_region`. Changing it is done in place "
                        "but restarts every attached workload."),
        "region": string(optional=True, computed=True,
                         plan_modifiers=[requires_replace_if(
                             _stays_single_region, "changing it replaces the VPC (a scope conversion does not)")],
                         description="Region of a single_region VPC, one where hosts are registered (checked at "
                         "plan). Default: the provider's `region`; must be unset for multi_region."),
        "mtu": integer(default=1500, validators=[between(576, 9000)], description="MTU of the segment (576–9000)."),
        "cidr": string(optional=True, validators=[is_ipv4_cidr()],
                       description="IPv4 subnet of the segment: a /8 (16,777,216 addresses) or smaller."),
        "dhcp": DHCP,
        "vni": integer(computed=True, plan_modifiers=STABLE, description="VXLAN network identifier (allocated)."),
        "status": string(computed=True, plan_modifiers=STABLE,
                         description="`available` once created; `degraded` while an underlay path between two of "
                                     "its hosts drops its frames (see `l2vpc controller status`)."),
        "timeouts": timeouts(),
    },
)

_ENGINE_FIELDS = ("name", "description", "scope", "region", "mtu", "cidr", "dhcp")


def to_state(vpc: Any) -> dict[str, Any]:
    dhcp = None
    if vpc.dhcp is not None:
        dhcp = {
            "range_start": vpc.dhcp.range_start,
            "range_end": vpc.dhcp.range_end,
            "gateway": vpc.dhcp.gateway,
            "dns_servers": list(vpc.dhcp.dns_servers) or None,
            "lease_time": vpc.dhcp.lease_time,
            "server_ip": vpc.dhcp_server_ip,
        }
    return {
        "id": vpc.id,
        "name": vpc.name,
        "description": vpc.description,
        "scope": vpc.scope,
        "region": vpc.region,
        "mtu": vpc.mtu,
        "cidr": vpc.cidr,
        "dhcp": dhcp,
        "vni": vpc.vni,
        "status": vpc.status,
    }


class VpcResource(EngineResource):
    type_name = "l2vpc_vpc"
    schema = SCHEMA
    kind = "vpc"
    model_name = "VPC"

    def engine_data(self, values: dict[str, Any]) -> dict[str, Any]:
        return drop_unset({k: values.get(k) for k in _ENGINE_FIELDS})

    def touches_hosts(self, obj_id: str) -> bool:
        # A VPC is logical until attachments land: without them no host carries it.
        return bool(client_of(self).engine.attached_workloads(obj_id))

    def to_state(self, obj: Any, values: dict[str, Any] | None) -> dict[str, Any]:
        return to_state(obj)

    def adjust_plan(self, plan: ResourcePlan, diags: Diagnostics) -> None:
        planned, config, prior = plan.planned, plan.config, plan.prior
        assert planned is not None and config is not None
        scope = planned.get("scope")
        if isinstance(scope, str):
            if scope == "multi_region":
                if config.get("region") is not None and known(config.get("region")):
                    diags.error("Invalid attribute combination", "region must be unset for a multi_region VPC",
                                "region")
                planned["region"] = None
            elif config.get("region") is None:
                default = getattr(self.provider, "settings", {}).get("region")
                if default:
                    planned["region"] = default
                elif prior is not None and prior.get("scope") == "single_region":
                    planned["region"] = prior.get("region")
                else:
                    diags.error("Missing required argument",
                                "region is required for a single_region VPC (or set region in the provider block)",
                                "region")
        if prior is not None:
            # A region left to the provider's default changes with it (a written one replaces
            # through its modifier).
            if (prior.get("scope") == planned.get("scope") == "single_region"
                    and known(planned.get("region")) and prior.get("region") != planned.get("region")):
                plan.replace("region")
            if known(scope) and prior.get("scope") != scope and not plan.requires_replace:
                workloads = client_of(self).engine.attached_workloads(prior["id"])
                if workloads:
                    shown = ", ".join(workloads[:20]) + (" …" if len(workloads) > 20 else "")
                    diags.warning(
                        f"Changing scope restarts {len(workloads)} workloads",
                        f"Converting VPC {prior.get('name')} from {prior.get('scope')} to {scope} restarts the "
                        f"interface of every attached workload: {shown}.",
                        "scope",
                    )
