"""The namespaces a Linux driver works in: sockets into them, creation, removal, bulk reads.

Each namespace gets two sockets, opened once: one for requests and dumps, one `Watcher` that
says whether anything changed there since the last read. A read is served from the previous
one while nothing changed, which is what keeps a no-op reconcile of a hundred workload
namespaces cheap. The driver removes only namespaces it created; it records them as marker
files in its state dir, so a new driver object (agent restart) knows them too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from l2vpc.agent.drivers.linux import netns, rtnl

_GROUPS = rtnl.RTMGRP_LINK | rtnl.RTMGRP_IPV4_IFADDR | rtnl.RTMGRP_IPV4_ROUTE


@dataclass(slots=True)
class NsView:
    """One namespace's links (by index), IPv4 addresses (by link) and routes (by out link)."""

    links: dict[int, rtnl.Link]
    addrs: dict[int, list[rtnl.Addr]]
    routes: dict[int, list[rtnl.Route]]


@dataclass(slots=True)
class _Handle:
    ino: int  # inode of /run/netns/<name> when opened: a new namespace of that name differs
    nl: rtnl.Rtnl
    watch: rtnl.Watcher
    view: NsView | None = None
    scope: tuple[bool, bool] = (False, False)  # (addresses, routes) the view holds

    def close(self) -> None:
        self.nl.close()
        self.watch.close()


class Namespaces:
    def __init__(self, marks: Path) -> None:
        self._marks = marks
        marks.mkdir(exist_ok=True)
        self._handles: dict[str, _Handle] = {}

    def created(self) -> list[str]:
        """Namespaces this driver (or an earlier one on the same state dir) created."""
        return sorted(p.name for p in self._marks.iterdir())

    def socket(self, name: str, create: bool) -> rtnl.Rtnl | None:
        """A socket in namespace `name`; None if it does not exist and `create` is False.

        A namespace created here gets its loopback up, as every workload expects.
        """
        try:
            ino = os.stat(netns.path(name)).st_ino
        except FileNotFoundError:
            ino = 0
        cached = self._handles.get(name)
        if cached is not None:
            if cached.ino == ino:
                return cached.nl
            cached.close()
            del self._handles[name]
        if not ino:
            if not create:
                return None
            if netns.create(name):
                (self._marks / name).touch()
            ino = os.stat(netns.path(name)).st_ino
        handle = _Handle(ino, rtnl.Rtnl(netns.netlink_socket(name)), rtnl.Watcher(netns.netlink_socket(name), _GROUPS))
        if create:
            handle.nl.call(rtnl.set_link(1, up=True))
        self._handles[name] = handle
        return handle.nl

    def read(self, name: str, addrs: bool, routes: bool) -> NsView | None:
        """Links, and addresses / routes if asked, of namespace `name` (None: no such namespace)."""
        if self.socket(name, create=False) is None:
            return None
        handle = self._handles[name]
        changed = handle.watch.changed()  # drain first: a change racing the read shows next time
        covers = (handle.scope[0] or not addrs) and (handle.scope[1] or not routes)
        if not changed and handle.view is not None and covers:
            return handle.view
        by_index: dict[int, list[rtnl.Addr]] = {}
        for a in handle.nl.addrs() if addrs else ():
            by_index.setdefault(a.index, []).append(a)
        by_oif: dict[int, list[rtnl.Route]] = {}
        for r in handle.nl.routes() if routes else ():
            by_oif.setdefault(r.oif, []).append(r)
        handle.view = NsView({lk.index: lk for lk in handle.nl.links()}, by_index, by_oif)
        handle.scope = (addrs, routes)
        return handle.view

    def invalidate(self) -> None:
        """Forget cached reads (the driver itself is changing things)."""
        for handle in self._handles.values():
            handle.view = None

    def drop(self, name: str) -> None:
        """Close our sockets into `name` and remove it if we created it (stop its processes first)."""
        cached = self._handles.pop(name, None)
        if cached is not None:
            cached.close()  # an open socket would keep the namespace (and its veths) alive
        mark = self._marks / name
        if mark.exists():
            netns.remove(name)
            mark.unlink()

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()
