"""The host namespace as the Linux driver sees it: one netlink socket and a cached read of its
links and VXLAN flood entries.

The read is served again while nothing changed (a Watcher on link and neighbour events says
so), which keeps a no-op reconcile to almost no netlink traffic; every operation of the driver
invalidates it explicitly as well, and keeps the view current for the devices it touches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from l2vpc.agent.drivers.linux import netlink, netns, rtnl
from l2vpc.agent.drivers.linux.marks import TRASH_GROUP
from l2vpc.hostconfig.names import VXLAN_RE


@dataclass(slots=True)
class HostView:
    links: dict[str, rtnl.Link] = field(default_factory=dict)
    floods: dict[int, set[str]] = field(default_factory=dict)  # vxlan ifindex -> remotes


class Host:
    """Namespace `name` (None: the one this process runs in)."""

    def __init__(self, name: str | None) -> None:
        self.name = name
        self.nl = rtnl.Rtnl(netns.netlink_socket(name))
        self._watch = rtnl.Watcher(netns.netlink_socket(name), rtnl.RTMGRP_LINK | rtnl.RTMGRP_NEIGH)
        self._fresh = False
        self.view = HostView()

    def close(self) -> None:
        self.nl.close()
        self._watch.close()

    def read(self) -> HostView:
        """Links and flood entries, read again only if something changed since the last read."""
        if self._watch.changed() or not self._fresh:
            self._read_now()
            self._fresh = True
        return self.view

    def _read_now(self) -> None:
        links = {lk.name: lk for lk in self.nl.links()}
        vxlans = {lk.index for name, lk in links.items() if VXLAN_RE.match(name)}
        floods: dict[int, set[str]] = {}
        if vxlans:
            for e in self.nl.fdb(vxlans):
                if e.mac == "00:00:00:00:00:00" and e.dst:
                    floods.setdefault(e.ifindex, set()).add(e.dst)
        self.view = HostView(links, floods)

    def invalidate(self) -> None:
        """Forget the cached read: the driver is changing the host."""
        self._fresh = False

    def link(self, name: str) -> rtnl.Link | None:
        """Device `name` read now, and kept in the view."""
        lk = self.nl.link(name)
        if lk is None:
            self.view.links.pop(name, None)
        else:
            self.view.links[name] = lk
        return lk

    def forget(self, *names: str) -> None:
        for name in names:
            self.view.links.pop(name, None)

    def delete(self, path: str, names: list[str]) -> None:
        """Delete devices by name; gone already is fine."""
        netlink.apply(self.nl, path, [rtnl.del_link(name=n) for n in names])
        self.forget(*names)

    def delete_links(self, path: str, links: list[rtnl.Link]) -> None:
        """Delete host devices; many at once go through the trash group in one request."""
        if len(links) <= 2:
            netlink.apply(self.nl, path, [rtnl.del_link(lk.index) for lk in links])
        else:
            reqs = [rtnl.set_link(lk.index, group=TRASH_GROUP) for lk in links]
            netlink.apply(self.nl, path, reqs, missing_ok=True)
            netlink.apply(self.nl, path, [rtnl.del_group(TRASH_GROUP)])
        self.forget(*(lk.name for lk in links))
