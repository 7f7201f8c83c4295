"""The Linux driver: one host (a network namespace, or the real host) programmed over netlink.

What it creates, all recognisable without the driver's memory, so a new driver object on the
same host and state dir (an agent restart) adopts everything:

- per segment: bridge `l2b<vni>` (alias = vpc id) and VXLAN `l2x<vni>` (VNI, local = underlay,
  dstport 4789, no learning) enslaved to it, head-end replication as all-zero-MAC fdb entries
  (`00:00:00:00:00:00 dst <remote>`), one per remote;
- per port: veth `l2p<id tail>` on the bridge (alias = JSON of the port's identity), its peer
  renamed `net1`..`net10` in the workload's namespace `<prefix>l2w-<workload>`, MAC/MTU set,
  up, a static address and routes (protocol 76), or a udhcpc client tracked by pidfile;
- per DHCP server: namespace `<prefix>l2d-<vni>` with veth `l2d<vni>` on the bridge, the peer
  `dhcp0` holding server_ip, and dnsmasq (see dnsmasq.py);
- per edge router (direct connect): devices `l2e[bhv]<tag>`, for layer3 a router namespace
  `<prefix>l2e-<tag>` running FRR, shapers and VLAN filters (see edge.py);
- per VPN gateway: what vpn.py's VpnManager makes (a namespace with strongSwan, a host veth
  `l2v<id tail>`), with its own state below `<state>/vpn`.

Bandwidth: direct connects are shaped at `bandwidth_mbps` times `bandwidth_scale` (argument,
else the environment variable L2VPC_BANDWIDTH_SCALE, else 1). The lab runs its agents at 0.1,
so a 1000 Mbps direct connect is a 100 Mbit/s shaper that iperf3 between namespaces can fill.

Namespaces carry the per-driver prefix so parallel test runs and several simulated hosts on
one machine never collide; the driver removes only namespaces it created (recorded in the
state dir). Host devices are recognised by their `l2` names; nothing else is touched.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from l2vpc.agent.drivers.base import Action, DataplaneError, Driver
from l2vpc.agent.drivers.linux import dnsmasq, netns, procs, rtnl, udhcpc
from l2vpc.agent.drivers.linux import netns as _netns  # LinuxDriver's `netns` argument shadows it
from l2vpc.agent.drivers.linux.edge import EdgeManager
from l2vpc.agent.drivers.linux.names import (
    BRIDGE_RE,
    OWN_GROUP,
    PORT_RE,
    RTPROT_L2VPC,
    TRASH_GROUP,
    VXLAN_PORT,
    VXLAN_RE,
    dhcp_device_name,
    dhcp_netns_name,
    owned_device,
    workload_netns_name,
)
from l2vpc.agent.drivers.linux.namespaces import Namespaces, NsView
from l2vpc.agent.drivers.linux.vpn import VpnManager
from l2vpc.hostconfig import (
    DhcpServer,
    EdgeRouter,
    HostConfig,
    Port,
    Route,
    Segment,
    VpnGateway,
    bridge_name,
    port_device_name,
    vxlan_name,
)
from l2vpc.hostconfig.diff import Change, dhcp_path, port_path, segment_path, vpn_path

BANDWIDTH_SCALE_ENV = "L2VPC_BANDWIDTH_SCALE"


def _bandwidth_scale(value: float | None) -> float:
    if value is None:
        raw = os.environ.get(BANDWIDTH_SCALE_ENV, "1")
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{BANDWIDTH_SCALE_ENV}: {raw!r} is not a number") from None
    if not 0 < value <= 1000:
        raise ValueError(f"bandwidth_scale: {value} must be above 0 and at most 1000")
    return value


@dataclass(slots=True)
class _HostView:
    links: dict[str, rtnl.Link] = field(default_factory=dict)
    floods: dict[int, set[str]] = field(default_factory=dict)  # vxlan ifindex -> remotes


def _bring_up(name: str, alias: str | None = None) -> list[rtnl.Request]:
    """Requests that finish a new host device: IPv6 address generation off *before* it goes
    up (the kernel applies IFLA_AF_SPEC after the flags within one request, and a device that
    went up with IPv6 on already has its link-local address)."""
    return [rtnl.set_link(name=name, alias=alias, no_ipv6=True), rtnl.set_link(name=name, up=True)]


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


class LinuxDriver(Driver):
    """Converge the host namespace `netns` (None: the namespace this process runs in).

    `prefix` goes in front of every namespace the driver creates; `state_dir` holds the
    generation, the namespaces it created, DHCP server and client files, edge routers' records.
    It is created 0700. `bandwidth_scale` multiplies direct connects' bandwidth (see above).
    """

    def __init__(
        self,
        host: str,
        underlay_ip: str,
        *,
        netns: str | None,
        prefix: str,
        state_dir: str | os.PathLike[str],
        vxlan_port: int = VXLAN_PORT,
        bandwidth_scale: float | None = None,
    ) -> None:
        super().__init__(host, underlay_ip)
        if netns is not None and not _netns.exists(netns):
            raise ValueError(f"netns: host namespace {netns!r} does not exist")
        self.host_netns = netns
        self.prefix = prefix
        self.bandwidth_scale = _bandwidth_scale(bandwidth_scale)
        self.vxlan_port = vxlan_port
        self.state = Path(state_dir)
        self.state.mkdir(parents=True, exist_ok=True)
        self.state.chmod(0o700)
        for sub in ("dhcp", "clients"):
            (self.state / sub).mkdir(mode=0o700, exist_ok=True)
        self._spaces = Namespaces(self.state / "netns")
        self._nl = rtnl.Rtnl(_netns.netlink_socket(netns))
        # Host reads are cached while nothing changes (a no-op reconcile then costs almost no
        # netlink traffic); any operation of ours invalidates them explicitly as well.
        self._host_watch = rtnl.Watcher(_netns.netlink_socket(netns), rtnl.RTMGRP_LINK | rtnl.RTMGRP_NEIGH)
        self._host_fresh = False
        self._view = _HostView()
        self._edges = EdgeManager(nl=self._nl, spaces=self._spaces, host_netns=netns, prefix=prefix,
                                  state=self.state, bandwidth_scale=self.bandwidth_scale)
        # The VPN manager keeps its own state (and namespace records) below ours; a state dir
        # too deep for its sockets leaves the host without VPN support, not without an agent.
        self._vpns: VpnManager | None = None
        self._no_vpn = ""
        try:
            self._vpns = VpnManager(netns, prefix, self.state / "vpn")
        except ValueError as e:
            self._no_vpn = str(e)

    # -- names ---------------------------------------------------------------------------

    def workload_netns(self, workload: str) -> str:
        return workload_netns_name(self.prefix, workload)

    def dhcp_netns(self, vni: int) -> str:
        return dhcp_netns_name(self.prefix, vni)

    def created_namespaces(self) -> list[str]:
        return self._spaces.created()

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        if self._vpns is not None:
            self._vpns.close()
        self._spaces.close()
        self._nl.close()
        self._host_watch.close()

    def teardown(self) -> None:
        # Daemons in namespaces first (FRR, charon), then the namespaces can go.
        self._edges.teardown()
        if self._vpns is not None:
            self._vpns.teardown_all()
        for port_id in udhcpc.tracked_ports(self.state / "clients"):
            udhcpc.stop(self.state / "clients", port_id)
        for d in sorted((self.state / "dhcp").iterdir()):
            dnsmasq.remove(d)
        # Namespaces first: the kernel then destroys their veth pairs as one batch, far
        # cheaper than deleting each port's device.
        for name in self._spaces.created():
            self._spaces.drop(name)
        self._delete_links("host", [lk for lk in self._nl.links() if owned_device(lk.name)])
        deadline = time.monotonic() + 10
        while (left := [lk.name for lk in self._nl.links() if owned_device(lk.name)]):
            if time.monotonic() > deadline:
                raise DataplaneError("host", f"teardown: devices still present: {', '.join(left[:5])}")
            time.sleep(0.02)
        self._invalidate()
        shutil.rmtree(self.state / "clients", ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (self.state / "generation").unlink()
        for sub in ("dhcp", "clients"):
            (self.state / sub).mkdir(exist_ok=True)

    def _delete_links(self, path: str, links: list[rtnl.Link]) -> None:
        """Delete host devices; many at once go through the trash group in one request."""
        if len(links) <= 2:
            self._batch(self._nl, path, [rtnl.del_link(lk.index) for lk in links], ignore=(errno.ENODEV,))
        else:
            reqs = [rtnl.set_link(lk.index, group=TRASH_GROUP) for lk in links]
            self._batch(self._nl, path, reqs, ignore=(errno.ENODEV,))
            self._batch(self._nl, path, [rtnl.del_group(TRASH_GROUP)], ignore=(errno.ENODEV,))
        for lk in links:
            self._view.links.pop(lk.name, None)

    def _set_generation(self, generation: int) -> None:
        if generation == self._generation():
            return
        tmp = self.state / "generation.tmp"
        tmp.write_text(str(generation))
        tmp.replace(self.state / "generation")

    # -- facts ---------------------------------------------------------------------------

    def facts(self) -> HostConfig:
        view = self._read_host()
        links = view.links
        by_index = {lk.index: lk for lk in links.values()}

        segments: list[Segment] = []
        for name, br in links.items():
            m = BRIDGE_RE.match(name)
            if not m or br.kind != "bridge":
                continue
            vni = int(m.group(1))
            vx = links.get(vxlan_name(vni))
            if vx is None or not br.up or not self._vxlan_ok(vx, vni, br.index):
                continue
            mtu = br.mtu if br.mtu == vx.mtu else 0  # 0: the two disagree, an update fixes it
            remotes = tuple(sorted(view.floods.get(vx.index, ())))
            segments.append(Segment(vni=vni, vpc_id=br.alias, mtu=mtu, remotes=remotes))

        # Port identity comes from the host side's alias; the workload side is read once per
        # namespace, addresses and routes only where some port there has them.
        metas: list[tuple[rtnl.Link, _PortMeta]] = []
        needs: dict[str, tuple[bool, bool]] = {}
        for name, hl in links.items():
            if not PORT_RE.match(name) or not hl.up:
                continue
            meta = _PortMeta.parse(hl.alias)
            if meta is None or port_device_name(meta.id) != name:
                continue
            ns = self.workload_netns(meta.workload)
            addrs, routes = needs.get(ns, (False, False))
            needs[ns] = (addrs or meta.mode == "static", routes or meta.routes)
            metas.append((hl, meta))
        views = {ns: self._spaces.read(ns, addrs, routes) for ns, (addrs, routes) in needs.items()}
        ports: list[Port] = []
        for hl, meta in metas:
            port = self._port_facts(hl, meta, by_index, views[self.workload_netns(meta.workload)])
            if port is not None:
                ports.append(port)

        servers: list[DhcpServer] = []
        for d in sorted((self.state / "dhcp").iterdir()):
            server = dnsmasq.running(d)
            if server is None or not netns.exists(self.dhcp_netns(server.vni)):
                continue
            dl = links.get(dhcp_device_name(server.vni))
            dbr = links.get(bridge_name(server.vni))
            if dl is None or dbr is None or dl.master != dbr.index or not dl.up:
                continue
            servers.append(server)

        edges, observations = self._edges.facts(links)
        vpns: list[VpnGateway] = []
        if self._vpns is not None:
            vpns = self._vpns.running()
            observations += self._vpns.observations()

        return HostConfig(
            host=self.host,
            underlay_ip=self.underlay_ip,
            generation=self._generation(),
            segments=tuple(segments),
            ports=tuple(ports),
            dhcp_servers=tuple(servers),
            edge_routers=tuple(edges),
            vpn_gateways=tuple(vpns),
            observations=tuple(observations),
        ).normalized()

    def _generation(self) -> int:
        try:
            return int((self.state / "generation").read_text())
        except (FileNotFoundError, ValueError):
            return 0

    def _invalidate(self) -> None:
        """Forget cached reads: the driver itself just changed the host."""
        self._host_fresh = False
        self._spaces.invalidate()

    def _read_host(self) -> _HostView:
        if self._host_watch.changed() or not self._host_fresh:
            self._read_host_now()
            self._host_fresh = True
        return self._view

    def _read_host_now(self) -> _HostView:
        links = {lk.name: lk for lk in self._nl.links()}
        vxlans = {lk.index for name, lk in links.items() if VXLAN_RE.match(name)}
        floods: dict[int, set[str]] = {}
        if vxlans:
            for e in self._nl.fdb(vxlans):
                if e.mac == "00:00:00:00:00:00" and e.dst:
                    floods.setdefault(e.ifindex, set()).add(e.dst)
        self._view = _HostView(links, floods)
        return self._view

    def _vxlan_ok(self, vx: rtnl.Link, vni: int, master: int) -> bool:
        return (
            vx.kind == "vxlan"
            and vx.vni == vni
            and vx.local == self.underlay_ip
            and vx.port == self.vxlan_port
            and vx.learning == 0
            and vx.master == master
            and vx.up
        )

    def _port_facts(
        self, hl: rtnl.Link, meta: _PortMeta, by_index: dict[int, rtnl.Link], view: NsView | None
    ) -> Port | None:
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
        elif mode == "dhcp" and not udhcpc.running(self.state / "clients", meta.id):
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

    # -- operations ----------------------------------------------------------------------

    def _apply(self, step: Change) -> None:
        self._invalidate()
        try:
            if step.kind == "segment":
                if step.action == "delete":
                    assert isinstance(step.before, Segment)
                    self._remove_segment(step.before)
                else:
                    assert isinstance(step.after, Segment)
                    self._ensure_segment(step.after)
            elif step.kind == "edge_router":
                self._apply_edge(step)
            elif step.kind == "vpn_gateway":
                self._apply_vpn(step)
            elif step.kind == "port":
                if step.action == "delete":
                    assert isinstance(step.before, Port)
                    self._remove_port(step.before)
                elif step.action == "create":
                    assert isinstance(step.after, Port)
                    self._create_port(step.after)
                else:
                    assert isinstance(step.before, Port) and isinstance(step.after, Port)
                    self._update_port(step.before, step.after)
            else:
                if step.action == "delete":
                    assert isinstance(step.before, DhcpServer)
                    self._remove_dhcp(step.before.vni)
                elif step.how == "reload":
                    assert isinstance(step.after, DhcpServer)
                    if not dnsmasq.reload(step.after, self._dhcp_state(step.after.vni)):
                        self._create_dhcp(step.after)
                else:
                    assert isinstance(step.after, DhcpServer)
                    self._create_dhcp(step.after)
        except rtnl.NetlinkError as e:
            raise DataplaneError(step.path, f"netlink: {e.strerror}") from e
        except OSError as e:
            raise DataplaneError(step.path, f"{e.strerror or e}") from e

    def _apply_edge(self, step: Change) -> None:
        if step.action == "delete":
            assert isinstance(step.before, EdgeRouter)
            self._edges.remove(step.before)
        elif step.action == "create":
            assert isinstance(step.after, EdgeRouter)
            self._edges.create(step.after)
        else:
            assert isinstance(step.before, EdgeRouter) and isinstance(step.after, EdgeRouter)
            if step.how == "reconfigure":
                self._edges.reconfigure(step.before, step.after)
            else:
                self._edges.update(step.before, step.after)

    def _apply_vpn(self, step: Change) -> None:
        if self._vpns is None:
            raise DataplaneError(step.path, f"this agent cannot run VPN gateways: {self._no_vpn}")
        if step.action == "delete":
            assert isinstance(step.before, VpnGateway)
            self._vpns.remove(step.before.id)
        else:  # create, reconfigure: the manager re-keys in place or rebuilds, as needed
            assert isinstance(step.after, VpnGateway)
            self._vpns.ensure(step.after, bridge_name(step.after.vni))

    def _batch(self, nl: rtnl.Rtnl, path: str, requests: list[rtnl.Request], ignore: tuple[int, ...] = ()) -> None:
        for err in nl.batch(requests):
            if err is not None and err.errno not in ignore:
                raise DataplaneError(path, f"netlink: {err.strerror}")

    def _link(self, name: str) -> rtnl.Link | None:
        lk = self._nl.link(name)
        if lk is None:
            self._view.links.pop(name, None)
        else:
            self._view.links[name] = lk
        return lk

    # segments

    def _ensure_segment(self, seg: Segment) -> None:
        path = segment_path(seg.vni)
        bname, xname = bridge_name(seg.vni), vxlan_name(seg.vni)
        br = self._view.links.get(bname)
        if br is not None and br.kind != "bridge":
            self._batch(self._nl, path, [rtnl.del_link(br.index)], ignore=(errno.ENODEV,))
            br = None
        if br is None:
            self._batch(self._nl, path, [rtnl.new_bridge(bname, seg.mtu, OWN_GROUP),
                                         *_bring_up(bname, alias=seg.vpc_id)])
            br = self._link(bname)
            if br is None:
                raise DataplaneError(path, f"bridge {bname} vanished after creation")
        elif (br.mtu, br.alias, br.up) != (seg.mtu, seg.vpc_id, True):
            self._batch(self._nl, path, [rtnl.set_link(br.index, up=True, mtu=seg.mtu, alias=seg.vpc_id)])

        vx = self._view.links.get(xname)
        if vx is not None and not (vx.kind == "vxlan" and vx.vni == seg.vni and vx.local == self.underlay_ip
                                   and vx.port == self.vxlan_port and vx.learning == 0):
            self._batch(self._nl, path, [rtnl.del_link(vx.index)], ignore=(errno.ENODEV,))
            self._view.floods.pop(vx.index, None)
            vx = None
        if vx is None:
            reqs = [rtnl.new_vxlan(xname, seg.vni, self.underlay_ip, self.vxlan_port, seg.mtu, br.index, OWN_GROUP),
                    *_bring_up(xname)]
            self._batch(self._nl, path, reqs)
            vx = self._link(xname)
            if vx is None:
                raise DataplaneError(path, f"vxlan {xname} vanished after creation")
        elif (vx.mtu, vx.master, vx.up) != (seg.mtu, br.index, True):
            self._batch(self._nl, path, [rtnl.set_link(vx.index, up=True, mtu=seg.mtu, master=br.index)])

        have = self._view.floods.get(vx.index, set())
        want = set(seg.remotes)
        reqs = [rtnl.new_flood_entry(vx.index, r) for r in sorted(want - have)]
        reqs += [rtnl.del_flood_entry(vx.index, r) for r in sorted(have - want)]
        if reqs:
            self._batch(self._nl, path + ".remotes", reqs, ignore=(errno.ENOENT,))
            self._view.floods[vx.index] = want

    def _remove_segment(self, seg: Segment) -> None:
        names = (vxlan_name(seg.vni), bridge_name(seg.vni))
        self._batch(self._nl, segment_path(seg.vni), [rtnl.del_link(name=n) for n in names], ignore=(errno.ENODEV,))
        for n in names:
            self._view.links.pop(n, None)

    # ports

    def _create_port(self, p: Port) -> None:
        path = port_path(p.id)
        br = self._view.links.get(bridge_name(p.vni))
        if br is None:
            raise DataplaneError(path, f"no bridge for VNI {p.vni}")
        hname = port_device_name(p.id)
        self._remove_port_devices(p.id, hname)
        ns = self.workload_netns(p.workload)
        nl = self._spaces.socket(ns, create=True)
        assert nl is not None
        stale = nl.link(p.interface_name)
        if stale is not None:  # a leftover of an interrupted run, or of a foreign tool
            self._batch(nl, path, [rtnl.del_link(stale.index)], ignore=(errno.ENODEV,))
        address = p.ip_address if p.ip_mode == "static" else None
        fd = os.open(netns.path(ns), os.O_RDONLY)
        try:
            self._batch(self._nl, path, [
                rtnl.new_veth(hname, p.mtu, br.index, p.interface_name, p.mac, fd, OWN_GROUP),
                *_bring_up(hname, alias=_port_alias(p, address)),
            ])
        finally:
            os.close(fd)
        peer = nl.link(p.interface_name)
        if peer is None:
            raise DataplaneError(path, f"{p.interface_name} did not appear in namespace {ns}")
        reqs = [rtnl.set_link(peer.index, up=True)]
        if address:
            ip, plen = address.split("/")
            reqs.append(rtnl.new_addr(peer.index, ip, int(plen)))
        reqs += [rtnl.new_route(r.prefix, r.via, peer.index, RTPROT_L2VPC) for r in p.routes]
        self._batch(nl, path, reqs)
        if p.ip_mode == "dhcp":
            udhcpc.start(self.state / "clients", p.id, p.interface_name, netns.path(ns), p.workload)

    def _remove_port_devices(self, port_id: str, hname: str) -> None:
        udhcpc.stop(self.state / "clients", port_id)
        # Deleting one end of a veth deletes its peer in the workload namespace too.
        self._batch(self._nl, port_path(port_id), [rtnl.del_link(name=hname)], ignore=(errno.ENODEV,))
        self._view.links.pop(hname, None)

    def _remove_port(self, p: Port) -> None:
        self._remove_port_devices(p.id, port_device_name(p.id))

    def _update_port(self, old: Port, new: Port) -> None:
        path = port_path(new.id)
        hname = port_device_name(new.id)
        hl = self._view.links.get(hname)
        ns = self.workload_netns(new.workload)
        nl = self._spaces.socket(ns, create=False)
        peer = nl.link(new.interface_name) if nl is not None else None
        if hl is None or nl is None or peer is None:
            raise DataplaneError(path, "port devices missing; the next converge recreates them")
        if old.mtu != new.mtu:
            # Host side first when growing, workload side first when shrinking: never a
            # moment where the workload sends frames its bridge port would drop.
            order = [(self._nl, hl.index), (nl, peer.index)]
            for sock, index in (order if new.mtu > old.mtu else order[::-1]):
                self._batch(sock, path + ".mtu", [rtnl.set_link(index, mtu=new.mtu)])
        reqs: list[rtnl.Request] = []
        if old.ip_mode == "dhcp" and new.ip_mode != "dhcp":
            udhcpc.stop(self.state / "clients", new.id)
            reqs += [rtnl.del_addr(peer.index, a.address, a.prefixlen) for a in nl.addrs() if a.index == peer.index]
        if old.ip_address and old.ip_address != (new.ip_address if new.ip_mode == "static" else None):
            ip, plen = old.ip_address.split("/")
            reqs.append(rtnl.del_addr(peer.index, ip, int(plen)))
        if new.ip_mode == "static" and new.ip_address and new.ip_address != old.ip_address:
            ip, plen = new.ip_address.split("/")
            reqs.append(rtnl.new_addr(peer.index, ip, int(plen)))
        if reqs:
            self._batch(nl, path + ".ip_address", reqs, ignore=(errno.EADDRNOTAVAIL,))
        gone = set(old.routes) - set(new.routes)
        added = set(new.routes) - set(old.routes)
        reqs = [rtnl.del_route(r.prefix, r.via, peer.index, RTPROT_L2VPC) for r in sorted(gone, key=str)]
        reqs += [rtnl.new_route(r.prefix, r.via, peer.index, RTPROT_L2VPC) for r in sorted(added, key=str)]
        if reqs:
            self._batch(nl, path + ".routes", reqs, ignore=(errno.ESRCH,))
        if new.ip_mode == "dhcp" and not udhcpc.running(self.state / "clients", new.id):
            udhcpc.start(self.state / "clients", new.id, new.interface_name, netns.path(ns), new.workload)
        address = new.ip_address if new.ip_mode == "static" else None
        self._batch(self._nl, path, [rtnl.set_link(hl.index, up=True, alias=_port_alias(new, address))])

    # DHCP servers

    def _dhcp_state(self, vni: int) -> Path:
        return self.state / "dhcp" / str(vni)

    def _create_dhcp(self, d: DhcpServer) -> None:
        path = dhcp_path(d.vni)
        self._remove_dhcp(d.vni)
        br = self._view.links.get(bridge_name(d.vni))
        if br is None:
            raise DataplaneError(path, f"no bridge for VNI {d.vni}")
        ns = self.dhcp_netns(d.vni)
        nl = self._spaces.socket(ns, create=True)
        assert nl is not None
        hname = dhcp_device_name(d.vni)
        fd = os.open(netns.path(ns), os.O_RDONLY)
        try:
            mac = "02:00:" + ":".join(f"{b:02x}" for b in os.urandom(4))
            veth = rtnl.new_veth(hname, min(br.mtu, 1500), br.index, dnsmasq.SERVER_IFNAME, mac, fd, OWN_GROUP)
            self._batch(self._nl, path, [veth, *_bring_up(hname)])
        finally:
            os.close(fd)
        peer = nl.link(dnsmasq.SERVER_IFNAME)
        if peer is None:
            raise DataplaneError(path, f"{dnsmasq.SERVER_IFNAME} did not appear in namespace {ns}")
        ip, plen = d.server_ip.split("/")
        self._batch(nl, path, [rtnl.set_link(peer.index, up=True), rtnl.new_addr(peer.index, ip, int(plen))])
        state = self._dhcp_state(d.vni)
        dnsmasq.start(d, state, netns.path(ns))
        self._wait_ready(path, state)

    def _wait_ready(self, path: str, state: Path, timeout: float = 2.0) -> None:
        """dnsmasq writes its pid-file once its sockets are bound: then it serves."""
        deadline = time.monotonic() + timeout
        pid = procs.read_pid(state / "pid")
        while time.monotonic() < deadline:
            if (state / "dnsmasq.pid").exists():
                return
            if pid is None or procs.exited(pid):
                break
            time.sleep(0.005)
        raise DataplaneError(path, f"dnsmasq did not start: {dnsmasq.log_tail(state) or 'no output'}")

    def _remove_dhcp(self, vni: int) -> None:
        dnsmasq.remove(self._dhcp_state(vni))
        hname = dhcp_device_name(vni)
        self._batch(self._nl, dhcp_path(vni), [rtnl.del_link(name=hname)], ignore=(errno.ENODEV,))
        self._view.links.pop(hname, None)
        self._spaces.drop(self.dhcp_netns(vni))

    # -- garbage -------------------------------------------------------------------------

    def _collect_garbage(self, desired: HostConfig) -> list[Action]:
        actions: list[Action] = []
        dhcp_ports = {p.id for p in desired.ports if p.ip_mode == "dhcp"}
        for port_id in udhcpc.tracked_ports(self.state / "clients"):
            if port_id not in dhcp_ports:
                udhcpc.stop(self.state / "clients", port_id)
                actions.append(Action("delete", f"dhcp client of {port_path(port_id)}", "orphan"))
        servers = {str(d.vni) for d in desired.dhcp_servers}
        for d in sorted((self.state / "dhcp").iterdir()):
            if d.name not in servers:
                dnsmasq.remove(d)
                actions.append(Action("delete", f"dnsmasq {d.name}", "orphan"))

        expected = {n for s in desired.segments for n in (bridge_name(s.vni), vxlan_name(s.vni))}
        expected |= {port_device_name(p.id) for p in desired.ports}
        expected |= {dhcp_device_name(d.vni) for d in desired.dhcp_servers}
        # The host view read by facts() and kept current by every operation since.
        stray = [lk for name, lk in self._view.links.items() if owned_device(name) and name not in expected]
        if stray:
            self._invalidate()
            self._delete_links("host", stray)
            actions += [Action("delete", f"device {lk.name}", "orphan") for lk in stray]

        actions += self._edges.collect_garbage(desired, self._view.links)
        if self._vpns is not None:
            wanted = {v.id for v in desired.vpn_gateways}
            for obs in self._vpns.observations():
                if obs.id not in wanted:
                    self._vpns.remove(obs.id)
                    actions.append(Action("delete", vpn_path(obs.id), "orphan"))

        namespaces = {self.workload_netns(p.workload) for p in desired.ports}
        namespaces |= {self.dhcp_netns(d.vni) for d in desired.dhcp_servers}
        namespaces |= self._edges.namespaces(desired)
        for name in self._spaces.created():
            if name not in namespaces:
                self._spaces.drop(name)
                actions.append(Action("delete", f"netns {name}", "no ports left"))
        return actions
