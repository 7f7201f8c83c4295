"""The shared host model: the contract between the engine and the agents.

The engine computes a HostConfig per host and pushes it; an agent converges its host to it and
reports the HostConfig it actually runs. Both sides diff configs with the same function
(diff.py), name devices the same way (names.py), validate alike (validate.py) and describe a
host's failures with one type (failures.py). This package imports nothing else of l2vpc, so the
engine, the agents, the controller and the provider can all depend on it.

    model.py     HostConfig and its items (segments, ports, DHCP servers, edge routers, VPNs)
    validate.py  every reason a config is unacceptable, with field paths
    diff.py      actual x desired -> changes (one vocabulary, a disruptive flag) -> steps
    names.py     device and namespace names derived from ids
    failures.py  HostFailure: host, step, reason code, retryable, detail
"""

from l2vpc.hostconfig.model import (
    INTERFACE_NAMES,
    MAX_ALLOWED_ADDRESSES,
    MAX_INTERFACES_PER_WORKLOAD,
    MAX_MTU,
    MAX_VNI,
    MIN_MTU,
    OBSERVATION_REASONS,
    OVERLAY_OBSERVATION_PREFIX,
    PEER_REFUSED,
    SECRET_FIELDS,
    VXLAN_OVERHEAD,
    BgpPeer,
    DhcpServer,
    EdgeRouter,
    HostConfig,
    Observation,
    Port,
    Reservation,
    Route,
    Segment,
    VpnGateway,
    config_digest,
    overlay_observation_id,
    overlay_peer,
    pinned_sources,
)
from l2vpc.hostconfig.names import DEVICE_PREFIX, bridge_name, port_device_name, vxlan_name, workload_netns
from l2vpc.hostconfig.validate import validate_host_config

__all__ = [
    "DEVICE_PREFIX",
    "INTERFACE_NAMES",
    "MAX_ALLOWED_ADDRESSES",
    "MAX_INTERFACES_PER_WORKLOAD",
    "MAX_MTU",
    "MAX_VNI",
    "MIN_MTU",
    "OBSERVATION_REASONS",
    "OVERLAY_OBSERVATION_PREFIX",
    "PEER_REFUSED",
    "SECRET_FIELDS",
    "VXLAN_OVERHEAD",
    "BgpPeer",
    "DhcpServer",
    "EdgeRouter",
    "HostConfig",
    "Observation",
    "Port",
    "Reservation",
    "Route",
    "Segment",
    "VpnGateway",
    "bridge_name",
    "config_digest",
    "overlay_observation_id",
    "overlay_peer",
    "pinned_sources",
    "port_device_name",
    "validate_host_config",
    "vxlan_name",
    "workload_netns",
]
