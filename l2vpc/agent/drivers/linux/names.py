"""Names and tags of everything the Linux driver creates, so it can recognise its own.

Host devices: `l2b<vni>` bridge, `l2x<vni>` VXLAN, `l2p<id tail>` port veth, `l2d<vni>` DHCP
server veth (hostconfig derives the first three). Namespaces: `<prefix>l2w-<workload>` and
`<prefix>l2d-<vni>`, where the prefix is per driver.
"""

from __future__ import annotations

import re

from l2vpc.hostconfig import DEVICE_PREFIX, workload_netns

VXLAN_PORT = 4789
# Routes the driver installs in workloads carry this protocol number, so facts can tell
# them from kernel, DHCP (proto boot) and customer routes.
RTPROT_L2VPC = 76
# Host devices the driver creates carry this device group ("L2"); devices to delete in bulk
# are moved to the trash group first and then deleted with one request (see rtnl.del_group).
OWN_GROUP = 0x4C32
TRASH_GROUP = 0x4C33

BRIDGE_RE = re.compile(rf"^{DEVICE_PREFIX}b(\d+)$")
VXLAN_RE = re.compile(rf"^{DEVICE_PREFIX}x(\d+)$")
DHCP_RE = re.compile(rf"^{DEVICE_PREFIX}d(\d+)$")
PORT_RE = re.compile(rf"^{DEVICE_PREFIX}p[A-Za-z0-9_-]+$")


def workload_netns_name(prefix: str, workload: str) -> str:
    """Namespace of a workload on a host whose driver uses `prefix` (lab: `exec` into it)."""
    return prefix + workload_netns(workload)


def dhcp_netns_name(prefix: str, vni: int) -> str:
    return f"{prefix}{DEVICE_PREFIX}d-{vni}"


def dhcp_device_name(vni: int) -> str:
    return f"{DEVICE_PREFIX}d{vni}"


def owned_device(name: str) -> bool:
    """True for host device names this driver creates (and may therefore delete)."""
    return any(r.match(name) for r in (BRIDGE_RE, VXLAN_RE, DHCP_RE, PORT_RE))
