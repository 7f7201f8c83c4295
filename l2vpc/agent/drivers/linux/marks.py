"""Numbers the Linux driver stamps on what it creates, so facts can tell its own from the rest.

Names of devices and namespaces are shared with the engine and live in l2vpc.hostconfig.names;
these are Linux-only.
"""

from __future__ import annotations

VXLAN_PORT = 4789
# Routes the driver installs in workloads carry this protocol number, so facts can tell
# them from kernel, DHCP (proto boot) and customer routes.
RTPROT_L2VPC = 76
# Host devices the driver creates carry this device group ("L2"); devices to delete in bulk
# are moved to the trash group first and then deleted with one request (see rtnl.del_group).
OWN_GROUP = 0x4C32
TRASH_GROUP = 0x4C33
