"""Data source `l2vpc_hosts`: the hosts the engine can place on, sorted by name."""

from __future__ import annotations

from typing import Any

from l2vpc.provider.diagnostics import Diagnostics
from l2vpc.provider.framework import DataSource
from l2vpc.provider.resources.common import client_of
from l2vpc.provider.schema import Schema, list_nested, string
from l2vpc.provider.validators import one_of

SCHEMA = Schema(
    description="Lists hosts (compute hosts run workloads; edge hosts serve direct connects and VPNs).",
    attributes={
        "region": string(optional=True, description="Only hosts of this region."),
        "role": string(optional=True, validators=[one_of("compute", "edge")], description="Only `compute` or `edge` hosts."),
        "hosts": list_nested(
            {
                "name": string(computed=True, description="Host name."),
                "region": string(computed=True, description="Region."),
                "role": string(computed=True, description="`compute` or `edge`."),
                "location": string(computed=True, description="On-ramp location (edges)."),
                "status": string(computed=True, description="`up` or `down`."),
            },
            computed=True,
            description="Matching hosts, sorted by name.",
        ),
    },
)


class HostsDataSource(DataSource):
    type_name = "l2vpc_hosts"
    schema = SCHEMA

    def read(self, config: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        hosts = client_of(self).engine.hosts(region=config.get("region"), role=config.get("role"))
        return {
            "region": config.get("region"),
            "role": config.get("role"),
            "hosts": [
                {"name": h.name, "region": h.region, "role": h.role, "location": h.location, "status": h.status}
                for h in hosts
            ],
        }
