"""The l2vpc provider: its provider block and the registry of resources and data sources.

`python -m l2vpc.provider` serves whatever `build_provider()` returns. Resources live in
l2vpc/provider/resources/, data sources in l2vpc/provider/data_sources/, and are registered
here; see framework.py for the API they implement.
"""

from __future__ import annotations

import os
from typing import Any

from l2vpc import __version__
from l2vpc.provider.client import EngineClient
from l2vpc.provider.diagnostics import Diagnostics
from l2vpc.provider.framework import Provider
from l2vpc.provider.resources.common import report_engine_error
from l2vpc.provider.schema import Schema, string

STATE_PATH_ENV = "L2VPC_STATE_PATH"
DEFAULT_STATE_PATH = os.path.join(".l2vpc", "state.db")


class L2vpcProvider(Provider):
    type_name = "l2vpc"
    version = __version__
    schema = Schema(
        description="Layer 2 VPCs: isolated layer-2 segments for virtual servers and pods.",
        attributes={
            "endpoint": string(
                optional=True,
                description="Address of an l2vpc controller. Not supported yet by this version: leave it "
                "unset to run the engine inside the provider, keeping its state in `state_path`.",
            ),
            "token": string(
                optional=True, sensitive=True, description="Token for the controller at `endpoint` (with `endpoint`; not supported yet)."
            ),
            "state_path": string(
                optional=True,
                description=f"State file of the embedded engine. Default: `${STATE_PATH_ENV}`, else "
                f"`{DEFAULT_STATE_PATH}` next to the configuration.",
            ),
            "region": string(optional=True, description="Region for resources that do not name one."),
        },
    )

    def __init__(self) -> None:
        super().__init__()
        self.settings: dict[str, Any] = {}
        self.client: EngineClient | None = None

    def configure(self, config: dict[str, Any], diags: Diagnostics) -> None:
        settings = dict(config)
        if settings.get("state_path") is None:
            settings["state_path"] = os.environ.get(STATE_PATH_ENV) or DEFAULT_STATE_PATH
        if settings.get("endpoint"):
            diags.error(
                "Controller endpoints are not supported yet",
                "This version of the provider runs the engine embedded; unset `endpoint` and use `state_path`.",
                "endpoint",
            )
            return
        self.settings = settings
        self.client = EngineClient(settings, self.stop_event)
        self.client.warm_up()

    def error_diagnostics(self, exc: Exception) -> Diagnostics | None:
        diags = Diagnostics()
        return diags if report_engine_error(exc, diags) else None

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def build_provider() -> L2vpcProvider:
    from l2vpc.provider.data_sources.hosts import HostsDataSource
    from l2vpc.provider.data_sources.vpc import VpcDataSource
    from l2vpc.provider.resources.attachment import AttachmentResource
    from l2vpc.provider.resources.direct_connect import DirectConnectResource
    from l2vpc.provider.resources.vpc import VpcResource
    from l2vpc.provider.resources.vpn import VpnResource

    provider = L2vpcProvider()
    for resource in (VpcResource(), AttachmentResource(), DirectConnectResource(), VpnResource()):
        provider.add_resource(resource)
    provider.add_data_source(VpcDataSource())
    provider.add_data_source(HostsDataSource())
    return provider
