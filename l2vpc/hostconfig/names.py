"""Names of what agents create on a host, derived here so the engine, agents and tests agree.

Everything an agent creates starts with DEVICE_PREFIX (`l2`); anything else on a host is foreign.
Host devices fit IFNAMSIZ (15 characters).
"""

from __future__ import annotations

# Everything an agent creates on a host starts with this prefix; anything else is foreign.
DEVICE_PREFIX = "l2"


def bridge_name(vni: int) -> str:
    return f"{DEVICE_PREFIX}b{vni}"


def vxlan_name(vni: int) -> str:
    return f"{DEVICE_PREFIX}x{vni}"


def port_device_name(port_id: str) -> str:
    """Host side of an attachment's veth: prefix + a short stable id, within IFNAMSIZ (15)."""
    return f"{DEVICE_PREFIX}p{port_id[-10:]}"


def workload_netns(workload: str) -> str:
    return f"{DEVICE_PREFIX}w-{workload}"
