"""Persistent tap devices for hypervisors: created through /dev/net/tun, then let go.

    tap.create("l2t93935e930a99", netns="host1")   # exists, down, no carrier until QEMU opens it

A tap is a tun device in tap mode (ethernet frames), without packet information and with a
virtio-net header (`vnet_hdr`: QEMU's virtio NIC passes offloaded frames through it), made
persistent so it outlives the file descriptor that created it: the hypervisor opens it later by
name. The ioctl creates it in the calling thread's network namespace, hence `netns.inside`.
Everything else about it (MTU, MAC, bridge, alias, up) is netlink's, as for any device.
"""

from __future__ import annotations

import fcntl
import os
import struct

from l2vpc.agent.drivers.linux import netns

TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000


def create(name: str, host_netns: str | None) -> None:
    """Create persistent tap `name` in `host_netns` (None: this thread's namespace); a tap of
    that name with the same flags is reused (the kernel attaches to it)."""
    with netns.inside(host_netns):
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR))
            fcntl.ioctl(fd, TUNSETPERSIST, 1)
        finally:
            os.close(fd)
