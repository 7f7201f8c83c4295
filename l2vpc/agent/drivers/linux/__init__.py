"""The Linux dataplane driver (netlink, network namespaces, dnsmasq, udhcpc)."""

from l2vpc.agent.drivers.linux.driver import LinuxDriver
from l2vpc.agent.drivers.linux.names import dhcp_netns_name, owned_device, workload_netns_name

__all__ = ["LinuxDriver", "dhcp_netns_name", "owned_device", "workload_netns_name"]
