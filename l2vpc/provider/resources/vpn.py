"""`l2vpc_vpn`: a site-to-site IKEv2 VPN from a VPC to a remote gateway."""

from __future__ import annotations

import re
from typing import Any

from l2vpc.provider.cty import STRING
from l2vpc.provider.diagnostics import Diagnostics
from l2vpc.provider.framework import ResourcePlan
from l2vpc.provider.modifiers import requires_replace, use_state_for_unknown
from l2vpc.provider.resources.common import (
    SETTLE_SECONDS,
    EdgeServiceResource,
    client_of,
    drop_unset,
    known,
    timeouts,
)
from l2vpc.provider.resources.vpc import NAME_PATTERN
from l2vpc.provider.schema import Schema, integer, list_of, single_nested, string
from l2vpc.provider.validators import (
    at_least,
    between,
    each,
    exactly_one_of,
    is_ipv4_address,
    is_ipv4_cidr,
    length_between,
    matches,
    one_of,
)

STABLE = [use_state_for_unknown()]
PSK_RE = re.compile(r"^[A-Za-z0-9_.]{8,64}$")
ENCRYPTION = ("aes128", "aes256", "aes128gcm16", "aes256gcm16")
INTEGRITY = ("sha256", "sha384", "sha512")
DH_GROUPS = ("modp2048", "modp3072", "modp4096", "ecp256", "ecp384", "curve25519")
IKE_DEFAULTS = {"encryption": "aes256", "integrity": "sha256", "dh_group": "modp2048", "lifetime": 28800}
ESP_DEFAULTS = {"encryption": "aes256", "integrity": "sha256", "dh_group": "modp2048", "lifetime": 3600}
DPD_DEFAULTS = {"interval": 30, "timeout": 120}


def _proposal(kind: str, lifetime: tuple[int, int], defaults: dict[str, Any]) -> Any:
    return single_nested(
        {
            "encryption": string(default=defaults["encryption"], validators=[one_of(*ENCRYPTION)],
                                 description="Cipher: " + ", ".join(ENCRYPTION) + "."),
            "integrity": string(default=defaults["integrity"], validators=[one_of(*INTEGRITY)],
                                description="Integrity algorithm: " + ", ".join(INTEGRITY) + "."),
            "dh_group": string(default=defaults["dh_group"], validators=[one_of(*DH_GROUPS)],
                               description="Diffie-Hellman group: " + ", ".join(DH_GROUPS) + "."),
            "lifetime": integer(default=defaults["lifetime"], validators=[between(*lifetime)],
                                description=f"Lifetime in seconds ({lifetime[0]}–{lifetime[1]})."),
        },
        optional=True, computed=True, default=dict(defaults),
        description=f"{kind} proposal; every field has a default.",
    )


SCHEMA = Schema(
    description="A site-to-site IKEv2 VPN instance in a VPC: workloads reach `remote_cidrs` through it.",
    attributes={
        "id": string(computed=True, plan_modifiers=STABLE, description="The VPN's id."),
        "name": string(required=True, validators=[matches(NAME_PATTERN, "1–63 lowercase letters, digits and '-'")],
                       description="Name (1–63 lowercase letters, digits, `-`)."),
        "vpc_id": string(required=True, plan_modifiers=[requires_replace()], description="The VPC it serves."),
        "gateway_ip": string(optional=True, computed=True, plan_modifiers=STABLE, validators=[is_ipv4_address()],
                             description="The VPN instance's address in the VPC (next hop to the remote networks)."),
        "peer_address": string(required=True, validators=[is_ipv4_address()],
                               description="Public IPv4 address of the remote gateway."),
        "peer_id": string(optional=True, description="IKE identity of the remote gateway (default: its address)."),
        "pre_shared_key": string(optional=True, sensitive=True,
                                 description="Pre-shared key: 8–64 letters, digits, `_` and `.`. Kept in state; "
                                 "prefer `pre_shared_key_wo`."),
        "pre_shared_key_wo": string(optional=True, write_only=True,
                                    description="Write-only pre-shared key (never stored in state; Terraform ≥ 1.11). "
                                    "Bump `pre_shared_key_wo_version` to change it."),
        "pre_shared_key_wo_version": integer(optional=True, validators=[at_least(1)],
                                             description="Version of `pre_shared_key_wo`; changing it re-keys."),
        "local_cidrs": list_of(STRING, optional=True, computed=True, plan_modifiers=STABLE,
                               validators=[each(is_ipv4_cidr()), length_between(1, 32)],
                               description="Local traffic selectors (default: the VPC `cidr`)."),
        "remote_cidrs": list_of(STRING, required=True, validators=[each(is_ipv4_cidr()), length_between(1, 32)],
                                description="Remote networks (must not overlap the VPC)."),
        "ike": _proposal("IKE", (900, 28800), IKE_DEFAULTS),
        "esp": _proposal("ESP", (900, 3600), ESP_DEFAULTS),
        "dpd": single_nested(
            {
                "interval": integer(default=30, validators=[at_least(10)], description="Seconds between probes (≥ 10)."),
                "timeout": integer(default=120, validators=[at_least(11)],
                                   description="Seconds without an answer before the peer is declared dead (> interval)."),
            },
            optional=True, computed=True, default=dict(DPD_DEFAULTS), description="Dead peer detection.",
        ),
        "public_ip": string(computed=True, plan_modifiers=STABLE, description="Our gateway's public address."),
        "status": string(computed=True, description="`up`, `down` or `connecting`."),
        "timeouts": timeouts(f"Creating or changing one also waits, within this time and for at most "
                             f"{SETTLE_SECONDS:g} s, for the tunnel to come up."),
    },
)

_FIELDS = ("name", "vpc_id", "gateway_ip", "peer_address", "peer_id", "local_cidrs", "remote_cidrs", "ike", "esp", "dpd")


class VpnResource(EdgeServiceResource):
    type_name = "l2vpc_vpn"
    schema = SCHEMA
    kind = "vpn"
    model_name = "VPN"
    host_field = "vpn_host"
    up_states = ("up",)
    config_validators = (exactly_one_of("pre_shared_key", "pre_shared_key_wo"),)

    def given_up(self, obj_id: str, status: str) -> bool:
        # The peer answered and said no (key, proposal, selectors): waiting will not change it.
        if status != "down":
            return False
        # Imported here: the host model costs ~10 ms, before the first schema of a cold start.
        from l2vpc.hostconfig import PEER_REFUSED

        return client_of(self).engine.status_reason(self.kind, obj_id) in PEER_REFUSED

    def engine_data(self, values: dict[str, Any]) -> dict[str, Any]:
        data = drop_unset({k: values.get(k) for k in _FIELDS})
        key = values.get("pre_shared_key") or values.get("pre_shared_key_wo")
        if isinstance(key, str):
            data["pre_shared_key"] = key
        return data

    def to_state(self, obj: Any, values: dict[str, Any] | None) -> dict[str, Any]:
        values = values or {}
        # The plain key is echoed only where the configuration (or prior state) uses the plain
        # form: a write-only key, or an imported VPN whose form is not known yet, stays out.
        write_only = not isinstance(values.get("pre_shared_key"), str)
        return {
            "id": obj.id, "name": obj.name, "vpc_id": obj.vpc_id, "gateway_ip": obj.gateway_ip,
            "peer_address": obj.peer_address, "peer_id": obj.peer_id,
            # The write-only form never lands in state; the plain form is kept (sensitive).
            # Reads return no secret: the plain key is the configuration's (or prior state's).
            "pre_shared_key": None if write_only else values["pre_shared_key"],
            "pre_shared_key_wo": None,
            "pre_shared_key_wo_version": values.get("pre_shared_key_wo_version"),
            "local_cidrs": list(obj.local_cidrs or ()), "remote_cidrs": list(obj.remote_cidrs),
            "ike": obj.ike.model_dump(), "esp": obj.esp.model_dump(), "dpd": obj.dpd.model_dump(),
            "public_ip": obj.public_ip, "status": obj.status,
        }

    def validate(self, config: dict[str, Any], diags: Diagnostics) -> None:
        for attr in ("pre_shared_key", "pre_shared_key_wo"):
            value = config.get(attr)
            if isinstance(value, str) and not PSK_RE.fullmatch(value):
                # Never echo the key.
                diags.error("Invalid pre-shared key", "must be 8–64 characters of letters, digits, '_' and '.'", attr)
        dpd = config.get("dpd")
        if isinstance(dpd, dict) and known(dpd.get("interval")) and known(dpd.get("timeout")):
            if dpd.get("interval") is not None and dpd.get("timeout") is not None and dpd["timeout"] <= dpd["interval"]:
                diags.error("Invalid value", f"timeout {dpd['timeout']} must be longer than interval {dpd['interval']}",
                            "dpd.timeout")

    def adjust_plan(self, plan: ResourcePlan, diags: Diagnostics) -> None:
        if plan.prior is not None and plan.changed("pre_shared_key_wo_version"):
            diags.warning("The VPN re-keys", "A new pre-shared key is installed; the tunnel renegotiates.",
                          "pre_shared_key_wo_version")
