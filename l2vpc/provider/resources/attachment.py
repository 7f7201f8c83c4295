"""`l2vpc_attachment`: one workload NIC on one VPC (`net1`…`net10` inside the workload)."""

from __future__ import annotations

from typing import Any

from l2vpc.hostconfig import MAX_ALLOWED_ADDRESSES
from l2vpc.provider.cty import STRING, Unknown
from l2vpc.provider.diagnostics import Diagnostics
from l2vpc.provider.framework import ResourcePlan
from l2vpc.provider.modifiers import requires_replace, use_state_for_unknown
from l2vpc.provider.resources.common import EngineResource, client_of, drop_unset, timeouts
from l2vpc.provider.resources.vpc import NAME_PATTERN
from l2vpc.provider.schema import Schema, boolean, integer, list_of, string
from l2vpc.provider.validators import (
    each,
    is_ipv4_address_or_cidr,
    is_ipv4_interface,
    length_between,
    matches,
    one_of,
)

STABLE = [use_state_for_unknown()]
MAC_PATTERN = r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$"

SCHEMA = Schema(
    description="Attaches a workload (virtual server or pod) to a VPC with one interface. A workload "
    "attaches at most 10 VPCs; its interfaces are named net1…net10 in order of attachment.",
    attributes={
        "id": string(computed=True, plan_modifiers=STABLE, description="The attachment's id."),
        "vpc_id": string(required=True, plan_modifiers=[requires_replace()], description="The VPC to attach to."),
        "workload": string(required=True, plan_modifiers=[requires_replace()],
                           validators=[matches(NAME_PATTERN, "1–63 lowercase letters, digits and '-'")],
                           description="Name of the virtual server or pod."),
        "workload_kind": string(default="virtual_server", plan_modifiers=[requires_replace()],
                                validators=[one_of("virtual_server", "pod")],
                                description="`virtual_server` (default) or `pod`."),
        "host": string(optional=True, computed=True, plan_modifiers=STABLE,
                       description="Host the workload runs on. Default: the workload's host if it already has "
                       "attachments, else the least-loaded compute host of the VPC's region."),
        "ip_mode": string(default="none", validators=[one_of("none", "static", "dhcp")],
                          description="`none` (customer-managed, default), `static` or `dhcp`."),
        "ip_address": string(optional=True, validators=[is_ipv4_interface()],
                             description="Address in CIDR form inside the VPC `cidr`: required for static; for dhcp a "
                             "fixed reservation."),
        "port_security": boolean(default=False,
                                 description="Pin the interface to its MAC and addresses on the host: frames from "
                                 "another MAC, ARP or IPv4 from another address than `ip_address` or "
                                 "`allowed_addresses`, and DHCP server replies from the workload are dropped (DHCP "
                                 "client traffic passes). Off (default): flat layer 2. Changing it is an in-place "
                                 "update. Needs `ip_address` or `allowed_addresses`."),
        "allowed_addresses": list_of(STRING, optional=True,
                                     validators=[length_between(0, MAX_ALLOWED_ADDRESSES),
                                                 each(is_ipv4_address_or_cidr())],
                                     description="With `port_security`: further source addresses or networks the "
                                     "workload may use (a virtual router or firewall forwarding other sources, a "
                                     f"virtual IP), at most {MAX_ALLOWED_ADDRESSES}, e.g. `[\"10.0.0.100\", "
                                     "\"192.168.0.0/16\"]`."),
        "mac_address": string(optional=True, computed=True, plan_modifiers=[*STABLE, requires_replace()],
                              validators=[matches(MAC_PATTERN, "a MAC address like 02:00:00:00:00:01")],
                              description="MAC address of the interface (allocated when unset)."),
        "interface_name": string(computed=True, plan_modifiers=STABLE,
                                 description="Interface name inside the workload (`net1`…`net10`), fixed for the life "
                                 "of the attachment."),
        "mtu": integer(computed=True, description="MTU of the interface (the VPC's)."),
        "status": string(computed=True, description="`active` when the host runs the interface, `pending` otherwise "
                         "(a Pod's attachment: until the Pod starts on its host and the CNI plugin adds it)."),
        "timeouts": timeouts(),
    },
)

_ENGINE_FIELDS = ("vpc_id", "workload", "workload_kind", "host", "ip_mode", "ip_address", "mac_address",
                  "port_security", "allowed_addresses")


def to_state(att: Any, mtu: int | None) -> dict[str, Any]:
    return {
        "id": att.id,
        "vpc_id": att.vpc_id,
        "workload": att.workload,
        "workload_kind": att.workload_kind,
        "host": att.host,
        "ip_mode": att.ip_mode,
        "ip_address": att.ip_address,
        "mac_address": att.mac_address,
        "port_security": att.port_security,
        "allowed_addresses": list(att.allowed_addresses) or None,
        "interface_name": att.interface_name,
        "mtu": mtu,
        "status": att.status,
    }


class AttachmentResource(EngineResource):
    type_name = "l2vpc_attachment"
    schema = SCHEMA
    kind = "attachment"
    model_name = "Attachment"

    def engine_data(self, values: dict[str, Any]) -> dict[str, Any]:
        data = drop_unset({k: values.get(k) for k in _ENGINE_FIELDS})
        if isinstance(data.get("mac_address"), str):
            data["mac_address"] = data["mac_address"].lower()
        return data

    def to_state(self, obj: Any, values: dict[str, Any] | None) -> dict[str, Any]:
        vpc = client_of(self).engine.find("vpc", obj.vpc_id)
        state = to_state(obj, vpc.mtu if vpc is not None else None)
        # Keep the user's spelling of the MAC (the engine stores it lower-case).
        if values and isinstance(values.get("mac_address"), str) and values["mac_address"].lower() == obj.mac_address:
            state["mac_address"] = values["mac_address"]
        if values and values.get("allowed_addresses") == [] and not obj.allowed_addresses:
            state["allowed_addresses"] = []  # written as an empty list: kept so, not null
        return state

    def read(self, state: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        # A Pod's attachment follows the Pod (its CNI ADD and DEL on the host), not an apply:
        # ask that host what it runs now, so a refresh sees the Pod come and go. Other
        # attachments change only by applies: the store's last report says it.
        if state.get("workload_kind") == "pod" and state.get("host"):
            client_of(self).engine.refresh([state["host"]], timeout=2.0)
        return super().read(state, diags)

    def adjust_plan(self, plan: ResourcePlan, diags: Diagnostics) -> None:
        planned, prior = plan.planned, plan.prior
        assert planned is not None
        if (prior is not None and not plan.requires_replace and prior.get("status") != "active"
                and prior.get("workload_kind") != "pod"):
            # Drift: the host does not run this interface (deleted by hand, host was down...).
            # Plan an update; applying it converges the host again. (A Pod's attachment is
            # pending until its Pod starts on the host: no apply can change that.)
            planned["status"] = Unknown()
            planned["mtu"] = Unknown()  # the VPC's MTU may change in the same apply
