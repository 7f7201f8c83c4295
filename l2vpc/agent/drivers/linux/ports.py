"""Ports on Linux: veth `l2p<id tail>` on the segment's bridge, its peer renamed `net1`..`net10`
in the workload's namespace `<prefix>l2w-<workload>`, MAC/MTU set, up, a static address and
routes (protocol 76), or a udhcpc client tracked by pidfile (the lab's synthetic workloads: a
real workload runs its own DHCP client).

What the kernel cannot tell about a port (its id, workload, kind, address mode, restart epoch)
is in the host side's alias, so facts need no memory of the driver.

A pod port lives in a namespace its runtime made (`Port.sandbox`, from a CNI ADD): its peer is
born there, named, addressed and routed once, and from then on nothing inside is touched (the
runtime owns it; `sandbox_drift` only reads). A virtual server's port realised as a tap
(`Port.tap`) is a persistent tap `l2t<id tail>` on the bridge, MTU the VPC's, its own MAC not the
guest's, alias the port's metadata; the hypervisor opens it, the guest configures its side.
Facts of both are their host side plus what was set up, recorded in `records/<id>.json`;
changes later pushed for the inside (address, routes) reach the workload when it is re-created
(a Pod: `sandbox_drift` says so meanwhile; a VM: through its own DHCP client).

Port security sits on the host side whatever the kind (port_security.py, keyed by the host
device): pinned before the device is made, unpinned when it goes, re-pinned in place when the
port's security changes; facts take it from the pins in place, never from a record.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from l2vpc.agent.drivers.base import Action, DataplaneError
from l2vpc.agent.drivers.linux import netlink, netns, rtnl, tap, udhcpc
from l2vpc.agent.drivers.linux.host import Host, HostView
from l2vpc.agent.drivers.linux.marks import OWN_GROUP, RTPROT_L2VPC
from l2vpc.agent.drivers.linux.namespaces import Namespaces, NsView
from l2vpc.agent.drivers.linux.nftables import NftError
from l2vpc.agent.drivers.linux.port_security import Pin, PortSecurity
from l2vpc.hostconfig import HostConfig, Port, Route
from l2vpc.hostconfig.diff import port_path
from l2vpc.hostconfig.names import (
    BRIDGE_RE,
    PORT_RE,
    TAP_RE,
    bridge_name,
    port_device_name,
    tap_device_name,
    tap_mac,
    workload_netns_name,
)


def _port_alias(p: Port, address: str | None) -> str:
    """The host side's alias: what the kernel cannot tell about a port (at most 256 bytes:
    id <= 64 and workload <= 63 characters keep it well below)."""
    meta: dict[str, str | int] = {"id": p.id, "w": p.workload, "k": p.workload_kind, "m": p.ip_mode,
                                  "e": p.restart_epoch}
    if address:
        meta["a"] = address
    if p.routes:
        meta["r"] = 1
    if p.dhcp_options:
        meta["o"] = p.dhcp_options
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
    offer: str = ""

    @staticmethod
    @functools.lru_cache(maxsize=4096)  # aliases repeat on every read; parse each once
    def parse(alias: str) -> _PortMeta | None:
        try:
            m = json.loads(alias)
            return _PortMeta(str(m["id"]), str(m["w"]), str(m["k"]), str(m["m"]), int(m["e"]),
                             m.get("a"), bool(m.get("r")), str(m.get("o", "")))
        except (ValueError, KeyError, TypeError):
            return None


def device_name(p: Port) -> str:
    """The host device of a port: its veth end, or its tap."""
    return tap_device_name(p.id) if p.tap else port_device_name(p.id)


def _secured(p: Port, pin: Pin | None) -> Port:
    """`p` with the port security `pin` puts in place (a pin of another MAC pins nothing of p's)."""
    if pin is not None and pin.mac == p.mac:
        return replace(p, port_security=True, allowed_addresses=pin.sources)
    if p.port_security or p.allowed_addresses:  # a record's
        return replace(p, port_security=False, allowed_addresses=())
    return p


class Ports:
    """The ports of one LinuxDriver; DHCP clients' files in `clients`, the records of pods' and
    taps' ports in `records` (directories)."""

    def __init__(self, host: Host, spaces: Namespaces, prefix: str, clients: Path, records: Path,
                 security: PortSecurity) -> None:
        self.host = host
        self.security = security
        self.spaces = spaces
        self.prefix = prefix
        self.clients = clients
        self.records = records
        # Records as last written or read: facts read every one of them on every converge
        # (200 Pods' ports: ~10 ms of file reads), and only this object writes them.
        self._records: dict[str, Port] = {}

    def netns(self, workload: str) -> str:
        return workload_netns_name(self.prefix, workload)

    # -- facts -----------------------------------------------------------------------------

    def facts(self, view: HostView, pins: dict[str, Pin]) -> list[Port]:
        """The ports in place; `pins`: the port security in place (PortSecurity.read)."""
        return [_secured(p, pins.get(device_name(p))) for p in self._ports(view)]

    def _ports(self, view: HostView) -> list[Port]:
        # Port identity comes from the host side's alias; the workload side is read once per
        # namespace, addresses and routes only where some port there has them.
        ports: list[Port] = []
        metas: list[tuple[rtnl.Link, _PortMeta]] = []
        needs: dict[str, tuple[bool, bool]] = {}
        by_index = {lk.index: lk for lk in view.links.values()}
        for name, hl in view.links.items():
            if TAP_RE.match(name) and hl.up:
                tapped = self._tap_port(hl, by_index)
                if tapped is not None:
                    ports.append(tapped)
                continue
            if not PORT_RE.match(name) or not hl.up:
                continue
            meta = _PortMeta.parse(hl.alias)
            if meta is None or port_device_name(meta.id) != name:
                continue
            if meta.kind == "pod":
                pod = self._pod_port(hl, meta, by_index)
                if pod is not None:
                    ports.append(pod)
                continue
            ns = self.netns(meta.workload)
            addrs, routes = needs.get(ns, (False, False))
            needs[ns] = (addrs or meta.mode == "static", routes or meta.routes)
            metas.append((hl, meta))
        views = {ns: self.spaces.read(ns, addrs, routes) for ns, (addrs, routes) in needs.items()}
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
            dhcp_options=meta.offer,
        )

    def _pod_port(self, hl: rtnl.Link, meta: _PortMeta, by_index: dict[int, rtnl.Link]) -> Port | None:
        """What was set up for a pod port, if its host side still sits on its bridge and its peer
        is in another namespace (a Pod that died took the pair with it)."""
        record = self._record(meta.id)
        if record is None or hl.netnsid < 0:
            return None
        br = by_index.get(hl.master)
        m = BRIDGE_RE.match(br.name) if br is not None else None
        if m is None or int(m.group(1)) != record.vni:
            return None
        return replace(record, mtu=hl.mtu)

    def _tap_port(self, hl: rtnl.Link, by_index: dict[int, rtnl.Link]) -> Port | None:
        """What was set up for a tap, if it is still a tap on its bridge (opened or not)."""
        meta = _PortMeta.parse(hl.alias)
        if meta is None or tap_device_name(meta.id) != hl.name or hl.kind != "tun":
            return None
        record = self._record(meta.id)
        if record is None:
            return None
        br = by_index.get(hl.master)
        m = BRIDGE_RE.match(br.name) if br is not None else None
        if m is None or int(m.group(1)) != record.vni:
            return None
        return replace(record, mtu=hl.mtu, tap=True)

    def _record(self, port_id: str) -> Port | None:
        cached = self._records.get(port_id)
        if cached is not None:
            return cached
        try:
            data = json.loads((self.records / f"{port_id}.json").read_bytes())
            routes = tuple(Route(str(r["prefix"]), str(r["via"])) for r in data.pop("routes", ()))
            record = self._records[port_id] = Port(**data, routes=routes)
            return record
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def _keep_record(self, p: Port) -> None:
        tmp = self.records / f".{p.id}.tmp"
        tmp.write_text(json.dumps(asdict(p), sort_keys=True))
        os.replace(tmp, self.records / f"{p.id}.json")
        self._records[p.id] = p

    def _forget_record(self, port_id: str) -> None:
        self._records.pop(port_id, None)
        (self.records / f"{port_id}.json").unlink(missing_ok=True)

    def sandbox_drift(self, p: Port) -> list[str]:
        """How the Pod's end of a pod port differs from what was set up (read only)."""
        record = self._record(p.id) or p
        if not p.sandbox or not os.path.exists(p.sandbox):
            return [f"the Pod's namespace {p.sandbox or '(none)'} is gone"]
        hl = self.host.view.links.get(port_device_name(p.id))
        if hl is None:
            return [f"the host side {port_device_name(p.id)} of {p.interface_name} is missing"]
        nl = rtnl.Rtnl(netns.netlink_socket(p.sandbox))
        try:
            peer = nl.link(record.interface_name)
            if peer is None:
                return [f"interface {record.interface_name} is missing in {p.sandbox}"]
            out = []
            if peer.mac != record.mac:
                out.append(f"{record.interface_name} has MAC {peer.mac}, set up with {record.mac}")
            if peer.mtu != record.mtu:
                out.append(f"{record.interface_name} has MTU {peer.mtu}, set up with {record.mtu}")
            if peer.link != hl.index:
                out.append(f"{record.interface_name} is not the peer of {hl.name}")
            if record.ip_mode == "static" and record.ip_address:
                have = {f"{a.address}/{a.prefixlen}" for a in nl.addrs() if a.index == peer.index}
                if record.ip_address not in have:
                    out.append(f"{record.interface_name} lacks its address {record.ip_address}")
            if (p.ip_mode, p.ip_address, p.routes) != (record.ip_mode, record.ip_address, record.routes):
                out.append(f"the attachment's addressing changed since the Pod started "
                           f"({record.ip_address or record.ip_mode} -> {p.ip_address or p.ip_mode}): re-create the Pod")
            return out
        finally:
            nl.close()

    # -- operations ------------------------------------------------------------------------

    def secure(self, p: Port) -> None:
        """Pin `p`'s host device as `p` says (or let it be, without port security)."""
        device = device_name(p)
        try:
            if p.port_security:
                self.security.pin(Pin(device, p.mac, p.allowed_addresses))
            else:
                self.security.unpin(device)
        except (NftError, OSError) as e:
            raise DataplaneError(port_path(p.id) + ".port_security", str(e)) from None

    def create(self, p: Port) -> None:
        # Pinned first: the device's first frame is filtered already.
        self.secure(p)
        if p.workload_kind == "pod":
            self._create_in_sandbox(p)
            return
        if p.tap:
            self._create_tap(p)
            return
        path = port_path(p.id)
        br = self.host.view.links.get(bridge_name(p.vni))
        if br is None:
            raise DataplaneError(path, f"no bridge for VNI {p.vni}")
        if self._replug(p, br):
            return
        self._remove_devices(p.id, port_device_name(p.id))
        ns = self.netns(p.workload)
        nl = self.spaces.socket(ns, create=True)
        assert nl is not None
        stale = nl.link(p.interface_name)
        if stale is not None:  # a leftover of an interrupted run, or of a foreign tool
            netlink.apply(nl, path, [rtnl.del_link(stale.index)])
        self._plug(p, br, nl, ns)
        if p.ip_mode == "dhcp":
            udhcpc.start(self.clients, p.id, p.interface_name, netns.path(ns), p.workload)

    def _replug(self, p: Port, br: rtnl.Link) -> bool:
        """An intact veth that only lost its bridge (the bridge was deleted and made again) goes
        back on it: the workload keeps its interface, address, lease and DHCP client, as it
        would on a real switch whose port came back. False when anything else is off."""
        hl = self.host.view.links.get(port_device_name(p.id))
        nl = self.spaces.socket(self.netns(p.workload), create=False)
        if hl is None or hl.master or hl.netnsid < 0 or nl is None:
            return False
        peer = nl.link(p.interface_name)
        if peer is None or peer.link != hl.index or peer.index != hl.link or peer.mac.lower() != p.mac.lower():
            return False
        path = port_path(p.id)
        address = p.ip_address if p.ip_mode == "static" else None
        netlink.apply(self.host.nl, path, [rtnl.set_link(hl.index, up=True, mtu=p.mtu, master=br.index,
                                                         alias=_port_alias(p, address))])
        netlink.apply(nl, path, [rtnl.set_link(peer.index, up=True, mtu=p.mtu)])
        # Addresses and routes the workload lost meanwhile: the next converge's update puts
        # them back from its facts, as for any other port.
        if p.ip_mode == "dhcp" and not udhcpc.running(self.clients, p.id):
            udhcpc.start(self.clients, p.id, p.interface_name, netns.path(self.netns(p.workload)), p.workload)
        return True

    def _plug(self, p: Port, br: rtnl.Link, nl: rtnl.Rtnl, ns: str) -> None:
        """The veth: host side on the bridge, the peer born in namespace `ns` (a name or a
        path; `nl` a socket there), named, MAC and MTU set, up, its static address and routes."""
        path = port_path(p.id)
        hname = port_device_name(p.id)
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

    def _create_in_sandbox(self, p: Port) -> None:
        path = port_path(p.id)
        if not p.sandbox:
            raise DataplaneError(path, "a pod port needs its Pod's namespace (from a CNI ADD)")
        br = self.host.view.links.get(bridge_name(p.vni))
        if br is None:
            raise DataplaneError(path, f"no bridge for VNI {p.vni}")
        self._remove_devices(p.id, port_device_name(p.id))
        try:
            nl = rtnl.Rtnl(netns.netlink_socket(p.sandbox))
        except OSError as e:
            raise DataplaneError(path, f"the Pod's namespace {p.sandbox}: {e.strerror or e}") from None
        try:
            if nl.link(p.interface_name) is not None:
                # The runtime's namespace: what is there is not ours to delete.
                raise DataplaneError(path, f"{p.interface_name} already exists in the Pod's namespace {p.sandbox}")
            self._plug(p, br, nl, p.sandbox)
        finally:
            nl.close()
        self._keep_record(p)

    def _create_tap(self, p: Port) -> None:
        path = port_path(p.id)
        br = self.host.view.links.get(bridge_name(p.vni))
        if br is None:
            raise DataplaneError(path, f"no bridge for VNI {p.vni}")
        name = tap_device_name(p.id)
        self._remove_devices(p.id, port_device_name(p.id))  # its veth, if it was a namespace's before
        existing = self.host.link(name)
        if existing is not None and existing.kind != "tun":
            self.host.delete(path, [name])
        try:
            tap.create(name, self.host.name)
        except OSError as e:
            raise DataplaneError(path, f"tap {name}: {e.strerror or e}") from None
        address = p.ip_address if p.ip_mode == "static" else None
        netlink.apply(self.host.nl, path, [
            rtnl.set_link(name=name, mtu=p.mtu, mac=tap_mac(p.mac), master=br.index, group=OWN_GROUP),
            *netlink.bring_up(name, alias=_port_alias(p, address)),
        ])
        self.host.link(name)
        self._keep_record(p)

    def _remove_devices(self, port_id: str, hname: str) -> None:
        udhcpc.stop(self.clients, port_id)
        # Deleting one end of a veth deletes its peer in the workload namespace too.
        self.host.delete(port_path(port_id), [hname])

    def remove(self, p: Port) -> None:
        self._remove_devices(p.id, device_name(p))
        self.secure(replace(p, port_security=False, allowed_addresses=()))
        if p.workload_kind == "pod" or p.tap:
            self._forget_record(p.id)

    def update(self, old: Port, new: Port) -> None:
        if (old.port_security, old.allowed_addresses) != (new.port_security, new.allowed_addresses):
            self.secure(new)
        if new.workload_kind == "pod" or new.tap:
            self._update_recorded(old, new)
            return
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
        elif new.ip_mode == "dhcp" and old.dhcp_options != new.dhcp_options:
            udhcpc.renew(self.clients, new.id)
        address = new.ip_address if new.ip_mode == "static" else None
        netlink.apply(self.host.nl, path, [rtnl.set_link(hl.index, up=True, alias=_port_alias(new, address))])

    def _update_recorded(self, old: Port, new: Port) -> None:
        """Only the host side changes (its MTU); the inside is the workload's (see the module
        docstring): the record says what it was given."""
        path = port_path(new.id)
        hl = self.host.view.links.get(device_name(new))
        if hl is None:
            raise DataplaneError(path, "port devices missing; the next converge recreates them")
        if old.mtu != new.mtu:
            netlink.apply(self.host.nl, path + ".mtu", [rtnl.set_link(hl.index, mtu=new.mtu)])
        record = self._record(new.id)
        if record is not None:
            self._keep_record(replace(record, mtu=new.mtu, ip_mode=new.ip_mode, ip_address=new.ip_address,
                                      routes=new.routes, dhcp_options=new.dhcp_options))

    def collect_records(self, desired: HostConfig) -> None:
        """Forget records of pods' and taps' ports no longer wanted here."""
        wanted = {p.id for p in desired.ports if p.workload_kind == "pod" or p.tap}
        for f in self.records.glob("*.json"):
            if f.stem not in wanted:
                self._forget_record(f.stem)

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
