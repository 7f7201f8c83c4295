"""Data source `l2vpc_vpc`: look up a VPC by `name` or `id`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from l2vpc.provider.diagnostics import Diagnostics
from l2vpc.provider.framework import DataSource
from l2vpc.provider.resources import vpc as vpc_resource
from l2vpc.provider.resources.common import client_of
from l2vpc.provider.schema import Attribute, NestedObject, Schema, string
from l2vpc.provider.validators import exactly_one_of


def _read_only(description: str) -> str:
    """The resource's wording minus what only applies when setting a value (defaults, changes)."""
    first = re.split(r"(?<=[.])\s", description, maxsplit=1)[0]
    return re.sub(r"\s*\((default|\d[^)]*)\)|Default: [^.]*\.?", "", first).strip()


def all_computed(attributes: Mapping[str, Attribute]) -> dict[str, Attribute]:
    """The resource's attributes as read-only values of a data source."""
    out = {}
    for name, a in attributes.items():
        nested = None
        if a.nested is not None:
            nested = NestedObject(a.nested.nesting, all_computed(a.nested.attributes))
        out[name] = Attribute(type=a.type, nested=nested, computed=True, sensitive=a.sensitive,
                              description=_read_only(a.description))
    return out


# `timeouts` is about changing a VPC; a lookup has nothing to wait for.
_ATTRS = all_computed({k: a for k, a in vpc_resource.SCHEMA.attributes.items() if k != "timeouts"})
_ATTRS["id"] = string(optional=True, computed=True, description="Id of the VPC to look up.")
_ATTRS["name"] = string(optional=True, computed=True, description="Name of the VPC to look up.")

SCHEMA = Schema(description="Looks up an existing VPC by `name` or `id`.", attributes=_ATTRS)


class VpcDataSource(DataSource):
    type_name = "l2vpc_vpc"
    schema = SCHEMA
    config_validators = (exactly_one_of("id", "name"),)

    def read(self, config: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        engine = client_of(self).engine
        if config.get("id"):
            vpc = engine.find("vpc", config["id"])
            what = f"id {config['id']!r}"
        else:
            vpc = engine.vpc_by_name(config["name"])
            what = f"name {config['name']!r}"
        if vpc is None:
            diags.error("VPC not found", f"no VPC with {what}", "id" if config.get("id") else "name")
            return None
        return vpc_resource.to_state(vpc)


__all__ = ["SCHEMA", "VpcDataSource", "all_computed"]
