"""The update matrix, derived from the resources' schemas (issue 18).

For every resource and every configurable attribute, nested ones included, a case changes the
attribute to another valid value; for every optional attribute, a case removes it. Which cases
exist comes from the schema (a new attribute without a value here fails `uncovered()`); what
Terraform must plan for each comes from the schema too: "replace" exactly when the attribute's
plan modifiers require replacement, an update when the planned values change, else nothing.

The values are declared per resource below: a valid base configuration, another valid value per
attribute (`OTHER`, sometimes on a variant of the base), and the attributes that can only change
together, with the values they take together (`TOGETHER`, the one place they are declared).
`{n}` in a string is the case's number, `{x}` the same in two hex digits: every case is an
object of its own, so that one Terraform run applies them all.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from l2vpc.provider.cty import values_equal
from l2vpc.provider.diagnostics import Diagnostics, Path
from l2vpc.provider.framework import ResourcePlan
from l2vpc.provider.l2vpc_provider import build_provider
from l2vpc.provider.modifiers import AttributePlan
from l2vpc.provider.schema import Attribute, Nesting, Schema

REMOVED = None  # an attribute left out of the configuration


@dataclass(frozen=True)
class Ref:
    """A Terraform expression, written as is."""

    expr: str


@dataclass(frozen=True)
class Alt:
    """Another value of one attribute, on the base configuration changed by `base` first."""

    value: Any
    base: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Together:
    """Attributes that can only change together, and the values they take together."""

    values: Mapping[str, Any]
    base: Mapping[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Declared values

SUPPORT = """
resource "l2vpc_vpc" "att_a" {
  name   = "att-a"
  region = "us-east"
  cidr   = "10.50.0.0/16"
  dhcp   = { range_start = "10.50.250.1", range_end = "10.50.250.200" }
}

resource "l2vpc_vpc" "att_b" {
  name   = "att-b"
  region = "us-east"
  cidr   = "10.50.0.0/16"
  dhcp   = { range_start = "10.50.250.1", range_end = "10.50.250.200" }
}

resource "l2vpc_vpc" "dx_a" {
  name   = "dx-a"
  region = "us-east"
  cidr   = "10.60.0.0/16"
}

resource "l2vpc_vpc" "dx_b" {
  name   = "dx-b"
  region = "us-east"
  cidr   = "10.60.0.0/16"
}

resource "l2vpc_vpc" "vpn_a" {
  name   = "vpn-a"
  region = "us-east"
  cidr   = "10.70.0.0/16"
}

resource "l2vpc_vpc" "vpn_b" {
  name   = "vpn-b"
  region = "us-east"
  cidr   = "10.70.0.0/16"
}
"""

TIMEOUTS = {"create": "20m", "update": "20m", "delete": "20m"}
TIMEOUTS_OTHER = {"timeouts.create": "30m", "timeouts.update": "30m", "timeouts.delete": "30m"}

DHCP = {"range_start": "10.{n}.0.100", "range_end": "10.{n}.0.150", "gateway": "10.{n}.0.1",
        "dns_servers": ["10.{n}.0.53"], "lease_time": 600, "server_ip": "10.{n}.0.254"}

BASE: dict[str, dict[str, Any]] = {
    "l2vpc_vpc": {
        "name": "m{n}", "description": "case {n}", "scope": "single_region", "region": "us-east", "mtu": 9000,
        "cidr": "10.{n}.0.0/24", "dhcp": DHCP, "timeouts": TIMEOUTS,
    },
    "l2vpc_attachment": {
        "vpc_id": Ref("l2vpc_vpc.att_a.id"), "workload": "w{n}", "workload_kind": "virtual_server",
        "host": "host1", "ip_mode": "static", "ip_address": "10.50.{n}.10/16", "mac_address": "02:00:00:00:{x}:01",
        "port_security": True, "allowed_addresses": ["192.168.{n}.0/24"], "timeouts": TIMEOUTS,
    },
    "l2vpc_direct_connect": {
        "name": "dx{n}", "vpc_id": Ref("l2vpc_vpc.dx_a.id"), "location": "nyc1", "bandwidth_mbps": 1000,
        "partner": "megaport", "service_key": "svc-{n}", "gateway_ip": "10.60.{n}.1", "mode": "layer3",
        "bgp": {"customer_asn": 65010, "provider_asn": 64600, "peering_cidr": "169.254.{n}.0/30",
                "customer_ip": "169.254.{n}.2", "provider_ip": "169.254.{n}.1", "md5_key": "md5.{n}",
                "advertised_prefixes": ["10.60.0.0/16"]},
        "timeouts": TIMEOUTS,
    },
    "l2vpc_vpn": {
        "name": "vpn{n}", "vpc_id": Ref("l2vpc_vpc.vpn_a.id"), "gateway_ip": "10.70.{n}.1",
        "peer_address": "198.51.100.{n}", "peer_id": "peer-{n}", "pre_shared_key": "key.{n}.plain",
        "local_cidrs": ["10.70.0.0/16"], "remote_cidrs": ["192.168.{n}.0/24"],
        "ike": {"encryption": "aes128", "integrity": "sha384", "dh_group": "ecp256", "lifetime": 3600},
        "esp": {"encryption": "aes128", "integrity": "sha384", "dh_group": "ecp256", "lifetime": 1800},
        "dpd": {"interval": 20, "timeout": 90}, "timeouts": TIMEOUTS,
    },
}

LAYER2 = {"mode": "layer2", "bgp": REMOVED, "gateway_ip": REMOVED, "vlan": 100}
WRITE_ONLY_KEY = {"pre_shared_key": REMOVED, "pre_shared_key_wo": "key.{n}.wo.one", "pre_shared_key_wo_version": 1}
WRITE_ONLY_MD5 = {"bgp.md5_key": REMOVED, "bgp.md5_key_wo": "md5.{n}.wo.one", "bgp.md5_key_wo_version": 1}
WRITE_ONLY_SERVICE = {"service_key": REMOVED, "service_key_wo": "svc-{n}-wo-one", "service_key_wo_version": 1}
BGP_ADDRESSES_LEFT_OUT = {"bgp.customer_ip": REMOVED, "bgp.provider_ip": REMOVED}

OTHER: dict[str, dict[str, Any]] = {
    "l2vpc_vpc": {
        "name": "m{n}-b", "description": "case {n}, changed", "region": "eu-west", "mtu": 1500,
        # Left out, the DHCP server's address is the cidr's last usable one: computed again.
        "cidr": Alt("10.{n}.0.0/23", base={"dhcp.server_ip": REMOVED}),
        "dhcp.range_start": "10.{n}.0.110", "dhcp.range_end": "10.{n}.0.160", "dhcp.gateway": "10.{n}.0.2",
        "dhcp.dns_servers": ["10.{n}.0.53", "10.{n}.0.54"], "dhcp.lease_time": 1200, "dhcp.server_ip": "10.{n}.0.253",
        **TIMEOUTS_OTHER,
    },
    "l2vpc_attachment": {
        "vpc_id": Ref("l2vpc_vpc.att_b.id"), "workload": "w{n}-b", "workload_kind": "pod", "host": "host2",
        "ip_mode": "dhcp", "ip_address": "10.50.{n}.11/16", "mac_address": "02:00:00:00:{x}:02",
        # Allowed addresses go with port security: off, the port has none.
        "port_security": Alt(False, base={"allowed_addresses": REMOVED}),
        "allowed_addresses": ["192.168.{n}.0/24", "10.99.{n}.1"], **TIMEOUTS_OTHER,
    },
    "l2vpc_direct_connect": {
        "name": "dx{n}-b", "vpc_id": Ref("l2vpc_vpc.dx_b.id"), "location": "ams1", "bandwidth_mbps": 2000,
        "service_key": "svc-{n}-b", "gateway_ip": "10.60.{n}.2", "vlan": Alt(200, base=LAYER2),
        "bgp.customer_asn": 65020, "bgp.provider_asn": 64700,
        "bgp.peering_cidr": Alt("169.254.{n}.4/30", base=BGP_ADDRESSES_LEFT_OUT),
        "bgp.customer_ip": Alt("169.254.{n}.1", base={"bgp.provider_ip": REMOVED}),
        "bgp.provider_ip": Alt("169.254.{n}.2", base={"bgp.customer_ip": REMOVED}),
        "bgp.md5_key": "md5.{n}.b", "bgp.advertised_prefixes": ["10.60.0.0/16", "198.18.{n}.0/24"],
        "bgp.md5_key_wo_version": Alt(2, base=WRITE_ONLY_MD5),
        "service_key_wo_version": Alt(2, base=WRITE_ONLY_SERVICE),
        **TIMEOUTS_OTHER,
    },
    "l2vpc_vpn": {
        "name": "vpn{n}-b", "vpc_id": Ref("l2vpc_vpc.vpn_b.id"), "gateway_ip": "10.70.{n}.2",
        "peer_address": "198.51.101.{n}", "peer_id": "peer-{n}-b", "pre_shared_key": "key.{n}.other",
        "pre_shared_key_wo_version": Alt(2, base=WRITE_ONLY_KEY),
        "local_cidrs": ["10.70.0.0/17"], "remote_cidrs": ["192.168.{n}.0/25"],
        "ike.encryption": "aes256gcm16", "ike.integrity": "sha512", "ike.dh_group": "curve25519", "ike.lifetime": 7200,
        "esp.encryption": "aes256gcm16", "esp.integrity": "sha512", "esp.dh_group": "curve25519", "esp.lifetime": 900,
        "dpd.interval": 40, "dpd.timeout": 150, **TIMEOUTS_OTHER,
    },
}

# Attributes that can only change together: mode with bgp (and what only one mode has), partner
# with service key, scope with region, the plain key with the write-only one, a write-only key
# with its version. Their removals are covered here too where a value below is a removal.
TOGETHER: dict[str, list[Together]] = {
    "l2vpc_vpc": [Together({"scope": "multi_region", "region": REMOVED})],
    "l2vpc_direct_connect": [
        Together(LAYER2),
        Together({"partner": "cross_connect", "service_key": REMOVED}),
        Together(WRITE_ONLY_MD5),
        Together({"bgp.md5_key_wo": "md5.{n}.wo.two", "bgp.md5_key_wo_version": 2}, base=WRITE_ONLY_MD5),
        Together(WRITE_ONLY_SERVICE),
        Together({"service_key_wo": "svc-{n}-wo-two", "service_key_wo_version": 2}, base=WRITE_ONLY_SERVICE),
    ],
    "l2vpc_vpn": [
        Together(WRITE_ONLY_KEY),
        Together({"pre_shared_key_wo": "key.{n}.wo.two", "pre_shared_key_wo_version": 2}, base=WRITE_ONLY_KEY),
    ],
    "l2vpc_attachment": [],
}

# Removals that need another base (the base's other attributes would make them invalid).
REMOVAL_BASE: dict[str, dict[str, Mapping[str, Any]]] = {
    "l2vpc_vpc": {"cidr": {"dhcp": REMOVED}},
    "l2vpc_attachment": {"ip_mode": {"ip_mode": "dhcp", "ip_address": REMOVED}, "ip_address": {"ip_mode": "dhcp"},
                         "port_security": {"allowed_addresses": REMOVED}},
    "l2vpc_direct_connect": {"vlan": LAYER2, "bgp.md5_key_wo_version": WRITE_ONLY_MD5,
                             "service_key_wo_version": WRITE_ONLY_SERVICE},
    "l2vpc_vpn": {"pre_shared_key_wo_version": WRITE_ONLY_KEY},
}

# Every case of a VPC carries an attachment, so that what changes is realized on a host.
DEPENDENTS = {
    "l2vpc_vpc": 'resource "l2vpc_attachment" "on_{name}" {{\n  vpc_id   = {type}.{name}.id\n  workload = "vw{n}"\n}}\n',
}


# --------------------------------------------------------------------------------------------
# Cases, derived from the schemas


@dataclass
class Case:
    type_name: str
    name: str  # resource name in the configuration
    n: int
    what: str  # e.g. "change bgp.peering_cidr", "remove dhcp", "together mode+bgp+..."
    base: dict[str, Any]
    changed: dict[str, Any]
    expected: str  # "replace", "update" or "no-op"

    @property
    def address(self) -> str:
        return f"{self.type_name}.{self.name}"


def schemas() -> dict[str, Schema]:
    provider = build_provider()
    return {name: r.schema for name, r in provider.resources.items()}


def attribute_paths(attributes: Mapping[str, Attribute], prefix: str = "") -> Iterator[tuple[str, Attribute]]:
    """Every configurable attribute (required or optional), nested objects and their fields."""
    for name in sorted(attributes):
        a = attributes[name]
        if not (a.required or a.optional):
            continue
        path = f"{prefix}{name}"
        yield path, a
        if a.nested is not None:
            assert a.nested.nesting is Nesting.SINGLE, "the matrix knows single nested attributes only"
            yield from attribute_paths(a.nested.attributes, path + ".")


def set_path(config: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = config
    for p in parents:
        node = node.setdefault(p, {})
        if node is None:
            raise ValueError(f"{path}: its object is left out")
    if value is REMOVED:
        node.pop(last, None)
    else:
        node[last] = copy.deepcopy(value)


def changed(base: Mapping[str, Any], updates: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for path, value in updates.items():
        set_path(out, path, value)
    return out


def numbered(value: Any, n: int) -> Any:
    if isinstance(value, str):
        return value.replace("{n}", str(n)).replace("{x}", f"{n:02x}")
    if isinstance(value, dict):
        return {k: numbered(v, n) for k, v in value.items()}
    if isinstance(value, list):
        return [numbered(v, n) for v in value]
    return value


def uncovered(schema: Schema, type_name: str) -> list[str]:
    """Configurable attributes without another value, or in no group: the matrix misses them."""
    grouped = {p for t in TOGETHER[type_name] for p in t.values}
    return [p for p, a in attribute_paths(schema.attributes) if a.nested is None
            and p not in OTHER[type_name] and p not in grouped]


def removal_covered_by_group(type_name: str, path: str, a: Attribute) -> bool:
    """A group removes the attribute (or sets its default), or adds it to a base without it:
    changed back, it is removed."""
    for t in TOGETHER[type_name]:
        if path not in t.values:
            continue
        value = t.values[path]
        if value is REMOVED or (a.has_default and value == a.default):
            return True
        if not has_path(changed(BASE[type_name], t.base), path):
            return True
    return False


def has_path(config: Mapping[str, Any], path: str) -> bool:
    node: Any = config
    for p in path.split("."):
        if not isinstance(node, Mapping) or node.get(p) is None:
            return False
        node = node[p]
    return True


def cases(schemas: Mapping[str, Schema]) -> list[Case]:
    out: list[Case] = []
    counter = itertools.count(1)
    for type_name, schema in schemas.items():
        base = BASE[type_name]

        def add(what: str, base_updates: Mapping[str, Any], updates: Mapping[str, Any],
                type_name: str = type_name, schema: Schema = schema, base: dict[str, Any] = base) -> None:
            n = next(counter)
            before = numbered(changed(base, base_updates), n)
            after = numbered(changed(before, updates), n)
            for path, value in updates.items():
                # A removal must remove something; a change must change something.
                assert has_path(before, path) or value is not REMOVED, f"{type_name}: {what}: not in its base"
            out.append(Case(type_name, f"c{n}", n, what, before, after, expected_action(schema, before, after)))

        for path, a in attribute_paths(schema.attributes):
            other = OTHER[type_name].get(path)
            if other is not None:
                alt = other if isinstance(other, Alt) else Alt(other)
                add(f"change {path}", alt.base, {path: alt.value})
            if not a.optional:
                continue
            if path in REMOVAL_BASE[type_name]:
                add(f"remove {path}", REMOVAL_BASE[type_name][path], {path: REMOVED})
            elif not removal_covered_by_group(type_name, path, a):
                add(f"remove {path}", {}, {path: REMOVED})
        for t in TOGETHER[type_name]:
            add("together " + "+".join(t.values), t.base, t.values)
    return out


# --------------------------------------------------------------------------------------------
# What Terraform must plan: from the schema's defaults and plan modifiers


def planned_values(attributes: Mapping[str, Attribute], config: Mapping[str, Any] | None,
                   prior: Mapping[str, Any] | None) -> dict[str, Any]:
    """The values an update plans: the configuration's, a default where left out, the prior
    value of a computed attribute left out (Terraform proposes it), never a write-only value."""
    config, prior = config or {}, prior or {}
    out: dict[str, Any] = {}
    for name, a in attributes.items():
        c, p = config.get(name), prior.get(name)
        if a.write_only:
            v = None
        elif c is not None:
            v = planned_values(a.nested.attributes, c, p) if a.nested is not None else c
        elif a.has_default:
            v = copy.deepcopy(a.default)
        elif a.computed:
            v = p
        else:
            v = None
        if v is not None:
            out[name] = v
    return out


def requires_replacement(schema: Schema, before: dict[str, Any], config: dict[str, Any],
                         after: dict[str, Any]) -> bool:
    whole = ResourcePlan(prior=before, config=config, planned=after, schema=schema)
    diags = Diagnostics()

    def visit(attributes: Mapping[str, Attribute], base: Path, cfg: Any, old: Any, new: Any) -> bool:
        cfg, old, new = cfg or {}, old or {}, new or {}
        for name, a in attributes.items():
            ap = AttributePlan(path=base.child(name), type=a.value_type, config=cfg.get(name), prior=old.get(name),
                               planned=new.get(name), creating=False, diags=diags, resource=whole)
            for m in a.plan_modifiers:
                m.modify(ap)
            if ap.requires_replace:
                return True
            if a.nested is not None and visit(a.nested.attributes, base.child(name), cfg.get(name), old.get(name),
                                              new.get(name)):
                return True
        return False

    return visit(schema.attributes, Path(), config, before, after)


def expected_action(schema: Schema, base: dict[str, Any], config: dict[str, Any]) -> str:
    before = planned_values(schema.attributes, base, None)
    after = planned_values(schema.attributes, config, before)
    if requires_replacement(schema, before, config, after):
        return "replace"
    full = {k: None for k in schema.attributes}
    return "no-op" if values_equal(schema.type, {**full, **before}, {**full, **after}) else "update"


# --------------------------------------------------------------------------------------------
# Configurations


def hcl(value: Any) -> str:
    if isinstance(value, Ref):
        return value.expr
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(hcl(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {hcl(v)}" for k, v in value.items()) + " }"
    return str(value)


def resource(case: Case, config: Mapping[str, Any]) -> str:
    body = "".join(f"  {k} = {hcl(v)}\n" for k, v in config.items())
    out = f'resource "{case.type_name}" "{case.name}" {{\n{body}}}\n'
    dependent = DEPENDENTS.get(case.type_name)
    if dependent:
        out += dependent.format(type=case.type_name, name=case.name, n=case.n)
    return out


def configuration(all_cases: list[Case], phase: str) -> str:
    """The configuration of every case: "base" or "changed"."""
    return SUPPORT + "\n".join(resource(c, c.base if phase == "base" else c.changed) for c in all_cases)
