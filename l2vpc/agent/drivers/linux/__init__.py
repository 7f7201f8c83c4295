"""The Linux dataplane driver (netlink, network namespaces, dnsmasq, udhcpc, FRR, strongSwan)."""

from l2vpc.agent.drivers.linux.driver import LinuxDriver

__all__ = ["LinuxDriver"]
