"""`l2vpc_direct_connect`: a physical connection from an on-ramp location into a VPC."""

from __future__ import annotations

from typing import Any

from l2vpc.provider.cty import STRING
from l2vpc.provider.diagnostics import Diagnostics
from l2vpc.provider.framework import ResourcePlan
from l2vpc.provider.modifiers import (
    AttributePlan,
    requires_replace,
    requires_replace_if,
    use_state_for_unknown,
    use_state_while_unchanged,
)
from l2vpc.provider.resources.common import (
    SETTLE_SECONDS,
    EdgeServiceResource,
    client_of,
    drop_unset,
    timeouts,
)
from l2vpc.provider.resources.vpc import NAME_PATTERN
from l2vpc.provider.schema import Schema, integer, list_of, single_nested, string
from l2vpc.provider.validators import (
    at_least,
    between,
    conflicts_with,
    each,
    is_ipv4_address,
    is_ipv4_cidr,
    length_between,
    matches,
    multiple_of,
    one_of,
)

STABLE = [use_state_for_unknown()]
REPLACE = [requires_replace()]


def _key_was_known(plan: AttributePlan) -> bool:
    """Secrets are not read back, so an imported direct connect has no key in state: taking the
    configured one then is not a change of key (the engine refuses one that differs). A key
    that was write-only (its version in state) is another key than a plain one given now."""
    whole = plan.resource
    prior = whole.prior if whole is not None else None
    return plan.prior is not None or (isinstance(prior, dict) and prior.get("service_key_wo_version") is not None)


REPLACE_KNOWN = [requires_replace_if(_key_was_known, description="changing it replaces the resource")]
# A new version of the write-only key replaces it; leaving the number out changes no key.
REPLACE_BUMPED = [requires_replace_if(lambda plan: plan.prior is not None and plan.planned is not None,
                                      description="changing it replaces the resource")]
NAME = matches(NAME_PATTERN, "1–63 lowercase letters, digits and '-'")

BGP = single_nested(
    {
        "customer_asn": integer(required=True, validators=[between(1, 4294967294)],
                                description="The customer's ASN (1–4294967294, not 23456)."),
        "provider_asn": integer(optional=True, computed=True, plan_modifiers=STABLE, validators=[between(1, 4294967294)],
                                description="Our side's ASN (default 64600)."),
        "peering_cidr": string(optional=True, computed=True, plan_modifiers=STABLE, validators=[is_ipv4_cidr()],
                               description="The /30 or /31 between the routers (default: allocated from 169.254.0.0/16)."),
        "customer_ip": string(optional=True, computed=True, validators=[is_ipv4_address()],
                              plan_modifiers=[use_state_while_unchanged("bgp.peering_cidr", "bgp.provider_ip")],
                              description="The customer router's address in `peering_cidr`."),
        "provider_ip": string(optional=True, computed=True, validators=[is_ipv4_address()],
                              plan_modifiers=[use_state_while_unchanged("bgp.peering_cidr", "bgp.customer_ip")],
                              description="Our router's address in `peering_cidr`."),
        "md5_key": string(optional=True, sensitive=True,
                          description="TCP MD5 password of the BGP session. Kept in state; prefer `md5_key_wo`."),
        "md5_key_wo": string(optional=True, write_only=True,
                             description="Write-only TCP MD5 password (never stored in state; Terraform ≥ 1.11). "
                             "Bump `md5_key_wo_version` to change it."),
        "md5_key_wo_version": integer(optional=True, validators=[at_least(1)],
                                      description="Version of `md5_key_wo`; changing it re-keys the session."),
        "advertised_prefixes": list_of(STRING, optional=True, computed=True, plan_modifiers=STABLE,
                                       validators=[each(is_ipv4_cidr()), length_between(1, 64)],
                                       description="Prefixes announced to the customer (default: the VPC `cidr`)."),
    },
    optional=True,
    description="BGP session of a layer3 direct connect (required there).",
)

SCHEMA = Schema(
    description="A direct connect: a cross-connect or a Megaport circuit from an on-ramp location into a VPC, "
    "routed with BGP (layer3, default) or extending the VPC flat to the premises (layer2).",
    attributes={
        "id": string(computed=True, plan_modifiers=STABLE, description="The direct connect's id."),
        "name": string(required=True, validators=[NAME], description="Name (1–63 lowercase letters, digits, `-`)."),
        "vpc_id": string(required=True, plan_modifiers=REPLACE, description="The VPC it connects to."),
        "location": string(required=True, plan_modifiers=REPLACE, validators=[NAME],
                           description="On-ramp location code (e.g. `nyc1`)."),
        "bandwidth_mbps": integer(required=True, validators=[between(1000, 100000), multiple_of(1000)],
                                  description="Bandwidth in Mbps: 1000–100000 in steps of 1000; changed in place."),
        "partner": string(default="cross_connect", plan_modifiers=REPLACE, validators=[one_of("cross_connect", "megaport")],
                          description="`cross_connect` (default) or `megaport`."),
        "service_key": string(optional=True, sensitive=True, plan_modifiers=REPLACE_KNOWN,
                              description="Megaport service key (required for partner megaport). Kept in state; "
                              "prefer `service_key_wo`."),
        "service_key_wo": string(optional=True, write_only=True,
                                 description="Write-only Megaport service key (never stored in state; Terraform ≥ "
                                 "1.11). Bump `service_key_wo_version` to change it (a new key replaces the "
                                 "direct connect)."),
        "service_key_wo_version": integer(optional=True, validators=[at_least(1)], plan_modifiers=REPLACE_BUMPED,
                                          description="Version of `service_key_wo`; changing it replaces the "
                                          "direct connect."),
        "gateway_ip": string(optional=True, computed=True, plan_modifiers=STABLE, validators=[is_ipv4_address()],
                             description="layer3: the edge router's address in the VPC (next hop to the premises)."),
        "mode": string(default="layer3", plan_modifiers=REPLACE, validators=[one_of("layer3", "layer2")],
                       description="`layer3` (routed with BGP, default) or `layer2` (the VPC extended flat)."),
        "vlan": integer(optional=True, validators=[between(2, 4093)],
                        description="layer2 only: 802.1Q tag on the hand-off (unset: untagged)."),
        "bgp": BGP,
        "status": string(computed=True, description="`provisioning`, then `active`; `down` when the session is down."),
        "timeouts": timeouts(f"Creating or changing one also waits, within this time and for at most "
                             f"{SETTLE_SECONDS:g} s, for the session to come up."),
    },
)

_FIELDS = ("name", "vpc_id", "location", "bandwidth_mbps", "partner", "service_key", "gateway_ip", "mode", "vlan", "bgp")


class DirectConnectResource(EdgeServiceResource):
    type_name = "l2vpc_direct_connect"
    schema = SCHEMA
    kind = "direct_connect"
    model_name = "DirectConnect"
    host_field = "edge_host"
    up_states = ("active",)
    config_validators = (conflicts_with("service_key", "service_key_wo"), conflicts_with("bgp.md5_key", "bgp.md5_key_wo"))

    def engine_data(self, values: dict[str, Any]) -> dict[str, Any]:
        data = drop_unset({k: values.get(k) for k in _FIELDS})
        key = values.get("service_key") or values.get("service_key_wo")
        if isinstance(key, str):
            data["service_key"] = key
        bgp = values.get("bgp")
        if isinstance(bgp, dict) and "bgp" in data:
            data["bgp"] = {k: v for k, v in data["bgp"].items() if k not in ("md5_key_wo", "md5_key_wo_version")}
            md5 = bgp.get("md5_key") or bgp.get("md5_key_wo")
            if isinstance(md5, str):
                data["bgp"]["md5_key"] = md5
        return data

    def to_state(self, obj: Any, values: dict[str, Any] | None) -> dict[str, Any]:
        # Reads return no secret: a plain key is echoed from the configuration (or prior state),
        # a write-only one never lands in state.
        values = values or {}
        given = values.get("bgp")
        given_bgp: dict[str, Any] = given if isinstance(given, dict) else {}
        bgp = None
        if obj.bgp is not None:
            bgp = {
                "customer_asn": obj.bgp.customer_asn,
                "provider_asn": obj.bgp.provider_asn,
                "peering_cidr": obj.bgp.peering_cidr,
                "customer_ip": obj.bgp.customer_ip,
                "provider_ip": obj.bgp.provider_ip,
                "md5_key": _plain(given_bgp.get("md5_key")),
                "md5_key_wo": None,
                "md5_key_wo_version": given_bgp.get("md5_key_wo_version"),
                "advertised_prefixes": list(obj.bgp.advertised_prefixes or ()),
            }
        return {
            "id": obj.id, "name": obj.name, "vpc_id": obj.vpc_id, "location": obj.location,
            "bandwidth_mbps": obj.bandwidth_mbps, "partner": obj.partner,
            "service_key": _plain(values.get("service_key")), "service_key_wo": None,
            "service_key_wo_version": values.get("service_key_wo_version"),
            "gateway_ip": obj.gateway_ip, "mode": obj.mode, "vlan": obj.vlan, "bgp": bgp, "status": obj.status,
        }

    def wait_learned(self, obj_id: str, deadline: float) -> None:
        # A BGP session is Established before the peer's routes arrive; give them a moment so
        # the routes reach the workloads in this apply (an empty table waits the full time).
        # The same through a controller: the edge's report, refreshed, carries what it learned.
        import time

        # Only while the VPC has workloads to route them to (asked each round: attachments of
        # this apply are created meanwhile); a peer that announces nothing to a VPC without
        # workloads cost every apply the full wait.
        engine = client_of(self).engine
        dx = engine.get(self.kind, obj_id)
        if dx.mode != "layer3":
            return
        while time.monotonic() < deadline and not self.provider.stopping:
            self._refresh(obj_id, timeout=min(2.0, deadline - time.monotonic()))
            if engine.learned(self.kind, obj_id) or not engine.attached_workloads(dx.vpc_id):
                return
            self.provider.stop_event.wait(0.2)

    def validate(self, config: dict[str, Any], diags: Diagnostics) -> None:
        bgp = config.get("bgp")
        if isinstance(bgp, dict) and bgp.get("customer_asn") == 23456:
            diags.error("Invalid value", "23456 is AS_TRANS (reserved); use a real ASN", "bgp.customer_asn")

    def adjust_plan(self, plan: ResourcePlan, diags: Diagnostics) -> None:
        if plan.prior is not None and plan.changed("bgp.md5_key_wo_version"):
            diags.warning("The BGP session re-keys", "A new MD5 password is installed; the session restarts.",
                          "bgp.md5_key_wo_version")


def _plain(value: Any) -> str | None:
    return value if isinstance(value, str) else None
