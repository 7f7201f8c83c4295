"""Netlink requests applied for the driver: the one seam where a kernel refusal becomes a
DataplaneError (as Neutron's privileged ip_lib translates errnos in one place).

    netlink.apply(nl, "segments[vni=100]", [rtnl.new_bridge(...), *netlink.bring_up("l2b100")])

What each refusal means is decided here, by the request's kind, not by every caller:

    already so: fine      a delete of what is gone (link ENODEV, address EADDRNOTAVAIL,
                          route ESRCH or ENOENT, fdb entry ENOENT); an append or replace that
                          finds its entry there (EEXIST without NLM_F_EXCL)
    ENODEV elsewhere      DeviceNotFound; fine with `missing_ok`, for changes to devices
                          that may have gone meanwhile
    anything else         KernelRefused(path, "netlink: <errno text>"), its `errno` for code

Both are DataplaneErrors: a failed step of a converge.

Errors raised outside a batch (a dump, a single call) become the same DataplaneError through
`refused`.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence

from l2vpc.agent.drivers.base import DataplaneError
from l2vpc.agent.drivers.linux import rtnl

# Per request type: the errnos that say "already done" for it.
_ALREADY: dict[int, frozenset[int]] = {
    rtnl.RTM_DELLINK: frozenset({errno.ENODEV}),
    rtnl.RTM_DELADDR: frozenset({errno.EADDRNOTAVAIL}),
    rtnl.RTM_DELROUTE: frozenset({errno.ESRCH, errno.ENOENT}),
    rtnl.RTM_DELNEIGH: frozenset({errno.ENOENT}),
}


class KernelRefused(DataplaneError):
    """The kernel refused a request at `path`; `errno` says why (for code), the reason in words."""

    def __init__(self, path: str, err: rtnl.NetlinkError) -> None:
        super().__init__(path, f"netlink: {err.strerror}")
        self.errno = err.errno


class DeviceNotFound(KernelRefused):
    """A request named a device (by name or index) the kernel does not have (ENODEV)."""


def refused(path: str, err: rtnl.NetlinkError) -> KernelRefused:
    """The DataplaneError for a kernel refusal at `path`."""
    return DeviceNotFound(path, err) if err.errno == errno.ENODEV else KernelRefused(path, err)


def _fine(request: rtnl.Request, err: rtnl.NetlinkError, missing_ok: bool) -> bool:
    mtype, flags, _ = request
    if err.errno in _ALREADY.get(mtype, ()):
        return True
    if err.errno == errno.EEXIST and not flags & rtnl.F_EXCL:
        return True
    return missing_ok and err.errno == errno.ENODEV


def apply(nl: rtnl.Rtnl, path: str, requests: Sequence[rtnl.Request], *, missing_ok: bool = False) -> None:
    """Send `requests` as one batch (the kernel handles them in order, each on its own); raise
    for the first refusal that is not fine (see the module doc), naming `path`."""
    for request, err in zip(requests, nl.batch(requests), strict=True):
        if err is not None and not _fine(request, err, missing_ok):
            raise refused(path, err)


def bring_up(name: str, alias: str | None = None) -> list[rtnl.Request]:
    """Requests that finish a new device: IPv6 address generation off *before* it goes up (the
    kernel applies IFLA_AF_SPEC after the flags within one request, and a device that went up
    with IPv6 on already has its link-local address): nothing of ours speaks IPv6 on a
    customer's segment or link."""
    return [rtnl.set_link(name=name, alias=alias, no_ipv6=True), rtnl.set_link(name=name, up=True)]
