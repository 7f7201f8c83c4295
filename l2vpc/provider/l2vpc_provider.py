"""The l2vpc provider: its provider block and the registry of resources and data sources.

`python -m l2vpc.provider` serves whatever `build_provider()` returns. Resources live in
l2vpc/provider/resources/, data sources in l2vpc/provider/data_sources/, and are registered
here; see framework.py for the API they implement.
"""

from __future__ import annotations

import os
import re
from typing import Any

from l2vpc import __version__, paths
from l2vpc.engine.errors import L2vpcError
from l2vpc.provider.client import EngineClient
from l2vpc.provider.cty import Unknown
from l2vpc.provider.diagnostics import Diagnostics
from l2vpc.provider.framework import Provider
from l2vpc.provider.resources.common import report_engine_error
from l2vpc.provider.schema import Schema, string

ENDPOINT_ENV = "L2VPC_ENDPOINT"
TOKEN_ENV = "L2VPC_TOKEN"
CA_FILE_ENV = "L2VPC_CA_FILE"
# HOST:PORT, the host a name, an IPv4 address or a bracketed IPv6 address.
_ENDPOINT_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?):([0-9]{1,5})$")


class L2vpcProvider(Provider):
    type_name = "l2vpc"
    version = __version__
    schema = Schema(
        description="Layer 2 VPCs: isolated layer-2 segments for virtual servers and pods.",
        attributes={
            "endpoint": string(
                optional=True,
                description="Address of an l2vpc controller as `HOST:PORT` (TLS), or a comma list of several "
                f"(calls move to the next when one cannot be reached). Default: `${ENDPOINT_ENV}`. "
                "When set, the provider keeps no state of its own: it calls the controller, which holds "
                "the state and drives the hosts. When unset, the engine runs inside the provider with its "
                "state in `state_path`.",
            ),
            "token": string(
                optional=True, sensitive=True,
                description=f"API token for the controller at `endpoint` (required with it). Default: `${TOKEN_ENV}`. "
                "A tenant token sees and changes only its tenant's objects.",
            ),
            "ca_file": string(
                optional=True,
                description="PEM file of the CA that signed the controller's certificate. Default: "
                f"`${CA_FILE_ENV}`, else the system's trusted roots.",
            ),
            "state_path": string(
                optional=True,
                description="State file of the embedded engine (not with `endpoint`). Default: the local "
                "controller `l2vpc lab up` runs, found through its record beside the default state "
                f"({paths.CONTROL_PLANE_FILE}), else the embedded engine on {paths.describe_default()}: "
                "what the lab and the `l2vpc` commands use.",
            ),
            "region": string(optional=True, description="Region for resources that do not name one."),
        },
    )

    def __init__(self) -> None:
        super().__init__()
        self.settings: dict[str, Any] = {}
        self.client: EngineClient | None = None

    def configure(self, config: dict[str, Any], diags: Diagnostics) -> None:
        unknown = sorted(k for k, v in config.items() if isinstance(v, Unknown))
        for name in unknown:
            diags.error("Provider setting not known yet",
                        f"{name} depends on a value known only after apply; the provider needs it to plan.", name)
        if unknown:
            return
        settings = dict(config)
        # Where each connection setting came from, for messages.
        origin = {name: name for name in ("endpoint", "token", "ca_file")}
        for name, env in (("endpoint", ENDPOINT_ENV), ("token", TOKEN_ENV), ("ca_file", CA_FILE_ENV)):
            if not settings.get(name) and os.environ.get(env):
                settings[name], origin[name] = os.environ[env], f"{name} (from ${env})"
        if not any(settings.get(name) for name in ("endpoint", "token", "ca_file", "state_path")):
            if not _local_control_plane(settings, origin, diags):
                return
        if settings.get("endpoint"):
            if not _remote_settings(settings, config, origin, diags):
                return
        else:
            if config.get("token"):
                diags.error("Token without an endpoint",
                            f"token is only used with endpoint (or ${ENDPOINT_ENV}), which is not set; the "
                            "embedded engine needs no token.", "token")
                return
            if origin["token"] != "token" and settings.get("token"):
                diags.warning("Token without an endpoint",
                              f"${TOKEN_ENV} is set but neither endpoint nor ${ENDPOINT_ENV} is: the provider runs "
                              f"the embedded engine and ignores the token. Set ${ENDPOINT_ENV} to use a controller, "
                              f"or unset ${TOKEN_ENV}.")
            settings["token"] = settings["ca_file"] = None
            if settings.get("state_path") is None:
                settings["state_path"] = paths.default_state_path()
        client = EngineClient(settings, self.stop_event)
        if client.remote:
            # A bad token fails the plan here, not the apply after it (creates call nobody at plan).
            try:
                client.check_token()
            except L2vpcError as e:
                client.close()
                # Reported without an attribute path: Terraform would print the configuration
                # line, token and all.
                if not report_engine_error(e, diags):
                    raise
                return
        self.settings = settings
        self.client = client
        self.client.warm_up()

    def error_diagnostics(self, exc: Exception) -> Diagnostics | None:
        diags = Diagnostics()
        return diags if report_engine_error(exc, diags) else None

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def _local_control_plane(settings: dict[str, Any], origin: dict[str, str], diags: Diagnostics) -> bool:
    """Nothing says where to go: the controller a lab runs on this machine, if its record is
    there (endpoints, CA, the tenant token). False (with an error) when the record is stale."""
    try:
        plane = paths.local_control_plane()
        if plane is None:
            return True
        settings["endpoint"], settings["ca_file"], settings["token"] = plane.endpoint, plane.ca_file, plane.token()
    except paths.ControlPlaneError as e:
        diags.error("Local control plane unavailable",
                    f"{e}. Or set endpoint (${ENDPOINT_ENV}) for a controller, or state_path for the embedded "
                    "engine.")
        return False
    for name in ("endpoint", "token", "ca_file"):
        origin[name] = f"{name} (from {plane.record})"
    return True


def _remote_settings(settings: dict[str, Any], config: dict[str, Any], origin: dict[str, str],
                     diags: Diagnostics) -> bool:
    """Check the settings of a controller connection; False (with errors) when unusable."""
    at = {name: name if origin[name] == name else None for name in origin}  # attribute paths
    if config.get("state_path") is not None:
        diags.error("Conflicting provider settings",
                    f"state_path and {origin['endpoint']} are both set: state_path is the embedded engine's state "
                    "file, with an endpoint the controller keeps the state. Set only one.", "state_path")
        return False
    endpoint = str(settings["endpoint"])
    for one in endpoint.split(","):  # several controllers: calls move to the next when one is unreachable
        one = one.strip()
        if not _ENDPOINT_RE.match(one) or not 0 < int(one.rsplit(":", 1)[1]) < 65536:
            diags.error("Invalid provider setting",
                        f"{origin['endpoint']} must be HOST:PORT, e.g. controller.example.com:7443, got "
                        f"{endpoint!r} (several controllers: a comma list).", at["endpoint"])
            return False
    if not settings.get("token"):
        diags.error("Missing token",
                    f"token is required with {origin['endpoint']}: set token in the provider block or ${TOKEN_ENV} "
                    "(create one with `l2vpc controller token create`).", "token")
        return False
    ca_file = settings.get("ca_file")
    if ca_file:
        problem = _ca_problem(str(ca_file))
        if problem:
            diags.error("Invalid provider setting", f"{origin['ca_file']} {ca_file!r}: {problem}.", at["ca_file"])
            return False
    settings["state_path"] = None
    return True


def _ca_problem(path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    return "" if b"-----BEGIN CERTIFICATE-----" in data else "is not a PEM certificate (no BEGIN CERTIFICATE line)"


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
