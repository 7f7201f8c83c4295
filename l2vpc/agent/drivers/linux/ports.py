"""Ports on Linux: veth `l2p<id tail>` on the segment's bridge, its peer renamed `net1`..`net10`
in the workload's namespace `<prefix>l2w-<workload>`, MAC/MTU set, up, a static address and
routes (protocol 76), or a udhcpc client tracked by pidfile.

What the kernel cannot tell about a port (its id, workload, kind, address mode, restart epoch)
is in the host side's alias, so facts need no memory of the driver.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from l2vpc.agent.drivers.base import Action, DataplaneError
from l2vpc.agent.drivers.linux import netlink, netns, rtnl, udhcpc
from l2vpc.agent.drivers.linux.host import Host, HostView
from l2vpc.agent.drivers.linux.marks import OWN_GROUP, RTPROT_L2VPC
from l2vpc.agent.drivers.linux.namespaces import Namespaces, NsView
from l2vpc.hostconfig import HostConfig, Port, Route
from l2vpc.hostconfig.diff import port_path
from l2vpc.hostconfig.names import BRIDGE_RE, PORT_RE, bridge_name, port_device_name, workload_netns_name


def _port_alias(p: Port, address: str | None) -> str:
    """The host side's alias: what the kernel cannot tell about a port (at most 256 bytes:
    id <= 64 and workload <= 63 characters keep it well below)."""
    meta: dict[str, str | int] = {"id": p.id, "w": p.workload, "k": p.workload_kind, "m": p.ip_mode,
                                  "e": p.restart_epoch}
    if address:
        meta["a"] = address
    if p.routes:
        meta["r"] = 1
    return json.dumps(meta, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True, slots=True)
class _PortMeta:
    id: str
    workload: str
    kind: str
    mode: str
    epoch: int
    address: str | None
    routes: bool

    @staticmethod
    @functools.lru_cache(maxsize=4096)  # aliases repeat on every read; parse each once
    def parse(alias: str) -> _PortMeta | None:
        try:
            m = json.loads(alias)
            return _PortMeta(str(m["id"]), str(m["w"]), str(m["k"]), str(m["m"]), int(m["e"]),
                             m.get("a"), bool(m.get("r")))
        except (ValueError, KeyError, TypeError):
            return None


class Ports:
    """The ports of one LinuxDriver; DHCP clients' files in `clients` (a directory)."""

    def __init__(self, host: Host, spaces: Namespaces, prefix: str, clients: Path) -> None:
        self.host = host
        self.spaces = spaces
        self.prefix = prefix
        self.clients = clients

    def netns(self, workload: str) -> str:
        return workload_netns_name(self.prefix, workload)

    # -- facts -----------------------------------------------------------------------------

    def facts(self, view: HostView) -> list[Port]:
        # Port identity comes from the host side's alias; the workload side is read once per
        # namespace, addresses and routes only where some port there has them.
        metas: list[tuple[rtnl.Link, _PortMeta]] = []
        needs: dict[str, tuple[bool, bool]] = {}
        for name, hl in view.links.items():
            if not PORT_RE.match(name) or not hl.up:
                continue
            meta = _PortMeta.parse(hl.alias)
            if meta is None or port_device_name(meta.id) != name:
                continue
            ns = self.netns(meta.workload)
            addrs, routes = needs.get(ns, (False, False))
            needs[ns] = (addrs or meta.mode == "static", routes or meta.routes)
            metas.append((hl, meta))
        views = {ns: self.spaces.read(ns, addrs, routes) for ns, (addrs, routes) in needs.items()}
        by_index = {lk.index: lk for lk in view.links.values()}
        ports: list[Port] = []
        for hl, meta in metas:
            port = self._port(hl, meta, by_index, views[self.netns(meta.workload)])
            if port is not None:
                ports.append(port)
        return ports

    def _port(self, hl: rtnl.Link, meta: _PortMeta, by_index: dict[int, rtnl.Link], view: NsView | None) -> Port | None:
        br = by_index.get(hl.master)
        m = BRIDGE_RE.match(br.name) if br is not None else None
        if m is None or hl.netnsid < 0 or view is None:
            return None
        peer = view.links.get(hl.link)
        if peer is None or peer.link != hl.index:
            return None
        mode = meta.mode
        address: str | None = None
        if mode == "static":
            present = [f"{a.address}/{a.prefixlen}" for a in view.addrs.get(peer.index, [])]
            address = meta.address if meta.address in present else (present[0] if present else None)
        elif mode == "dhcp" and not udhcpc.running(self.clients, meta.id):
            mode = "none"  # the client died: an update restarts it
        routes = tuple(
            Route(r.prefix, r.via)
            for r in view.routes.get(peer.index, [])
            if r.protocol == RTPROT_L2VPC and r.table == rtnl.RT_TABLE_MAIN
        )
        return Port(
            id=meta.id,
            vni=int(m.group(1)),
            workload=meta.workload,
            interface_name=peer.name,
            mac=peer.mac,
            mtu=peer.mtu if peer.mtu == hl.mtu else 0,
            workload_kind=meta.kind,
            ip_mode=mode,
            ip_address=address,
            routes=routes,
            restart_epoch=meta.epoch,
        )

    # -- operations ------------------------------------------------------------------------

    def create(self, p: Port) -> None:
        path = port_path(p.id)
        br = self.host.view.links.get(bridge_name(p.vni))
        if br is None:
            raise DataplaneError(path, f"no bridge for VNI {p.vni}")
        hname = port_device_name(p.id)
        self._remove_devices(p.id, hname)
        ns = self.netns(p.workload)
        nl = self.spaces.socket(ns, create=True)
        assert nl is not None
        stale = nl.link(p.interface_name)
        if stale is not None:  # a leftover of an interrupted run, or of a foreign tool
            netlink.apply(nl, path, [rtnl.del_link(stale.index)])
        address = p.ip_address if p.ip_mode == "static" else None
        with netns.opened(ns) as fd:
            netlink.apply(self.host.nl, path, [
                rtnl.new_veth(hname, p.mtu, br.index, p.interface_name, p.mac, fd, OWN_GROUP),
                *netlink.bring_up(hname, alias=_port_alias(p, address)),
            ])
        peer = nl.link(p.interface_name)
        if peer is None:
            raise DataplaneError(path, f"{p.interface_name} did not appear in namespace {ns}")
        reqs = [rtnl.set_link(peer.index, up=True)]
        if address:
            ip, plen = address.split("/")
            reqs.append(rtnl.new_addr(peer.index, ip, int(plen)))
        reqs += [rtnl.new_route(r.prefix, r.via, peer.index, RTPROT_L2VPC) for r in p.routes]
        netlink.apply(nl, path, reqs)
        if p.ip_mode == "dhcp":
            udhcpc.start(self.clients, p.id, p.interface_name, netns.path(ns), p.workload)

    def _remove_devices(self, port_id: str, hname: str) -> None:
        udhcpc.stop(self.clients, port_id)
        # Deleting one end of a veth deletes its peer in the workload namespace too.
        self.host.delete(port_path(port_id), [hname])

    def remove(self, p: Port) -> None:
        self._remove_devices(p.id, port_device_name(p.id))

    def update(self, old: Port, new: Port) -> None:
        path = port_path(new.id)
        hname = port_device_name(new.id)
        hl = self.host.view.links.get(hname)
        ns = self.netns(new.workload)
        nl = self.spaces.socket(ns, create=False)
        peer = nl.link(new.interface_name) if nl is not None else None
        if hl is None or nl is None or peer is None:
            raise DataplaneError(path, "port devices missing; the next converge recreates them")
        if old.mtu != new.mtu:
            # Host side first when growing, workload side first when shrinking: never a
            # moment where the workload sends frames its bridge port would drop.
            order = [(self.host.nl, hl.index), (nl, peer.index)]
            for sock, index in (order if new.mtu > old.mtu else order[::-1]):
                netlink.apply(sock, path + ".mtu", [rtnl.set_link(index, mtu=new.mtu)])
        reqs: list[rtnl.Request] = []
        if old.ip_mode == "dhcp" and new.ip_mode != "dhcp":
            udhcpc.stop(self.clients, new.id)
            reqs += [rtnl.del_addr(peer.index, a.address, a.prefixlen) for a in nl.addrs() if a.index == peer.index]
        if old.ip_address and old.ip_address != (new.ip_address if new.ip_mode == "static" else None):
            ip, plen = old.ip_address.split("/")
            reqs.append(rtnl.del_addr(peer.index, ip, int(plen)))
        if new.ip_mode == "static" and new.ip_address and new.ip_address != old.ip_address:
            ip, plen = new.ip_address.split("/")
            reqs.append(rtnl.new_addr(peer.index, ip, int(plen)))
        if reqs:
            netlink.apply(nl, path + ".ip_address", reqs)
        gone = set(old.routes) - set(new.routes)
        added = set(new.routes) - set(old.routes)
        reqs = [rtnl.del_route(r.prefix, r.via, peer.index, RTPROT_L2VPC) for r in sorted(gone, key=str)]
        reqs += [rtnl.new_route(r.prefix, r.via, peer.index, RTPROT_L2VPC) for r in sorted(added, key=str)]
        if reqs:
            netlink.apply(nl, path + ".routes", reqs)
        if new.ip_mode == "dhcp" and not udhcpc.running(self.clients, new.id):
            udhcpc.start(self.clients, new.id, new.interface_name, netns.path(ns), new.workload)
        address = new.ip_address if new.ip_mode == "static" else None
        netlink.apply(self.host.nl, path, [rtnl.set_link(hl.index, up=True, alias=_port_alias(new, address))])

    # -- clients ---------------------------------------------------------------------------

    def collect_clients(self, desired: HostConfig) -> list[Action]:
        """Stop DHCP clients of ports that are not (or no longer) in DHCP mode."""
        actions: list[Action] = []
        dhcp_ports = {p.id for p in desired.ports if p.ip_mode == "dhcp"}
        for port_id in udhcpc.tracked_ports(self.clients):
            if port_id not in dhcp_ports:
                udhcpc.stop(self.clients, port_id)
                actions.append(Action("delete", f"dhcp client of {port_path(port_id)}", "orphan"))
        return actions

    def stop_clients(self) -> None:
        for port_id in udhcpc.tracked_ports(self.clients):
            udhcpc.stop(self.clients, port_id)
