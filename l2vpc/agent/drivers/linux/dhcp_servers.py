"""DHCP servers on Linux: namespace `<prefix>l2d-<vni>` with veth `l2d<vni>` on the segment's
bridge, the peer `dhcp0` holding server_ip, and dnsmasq in it (dnsmasq.py); its files in
`<state>/dhcp/<vni>/`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from l2vpc.agent.drivers.base import Action, DataplaneError
from l2vpc.agent.drivers.linux import dnsmasq, netlink, netns, procs, rtnl
from l2vpc.agent.drivers.linux.host import Host, HostView
from l2vpc.agent.drivers.linux.marks import OWN_GROUP
from l2vpc.agent.drivers.linux.namespaces import Namespaces
from l2vpc.hostconfig import DhcpServer, HostConfig, Segment
from l2vpc.hostconfig.diff import dhcp_path
from l2vpc.hostconfig.names import DHCP_SERVER_IFNAME, bridge_name, dhcp_device_name, dhcp_netns_name


class DhcpServers:
    """The DHCP servers of one LinuxDriver; their files below `state` (a directory)."""

    def __init__(self, host: Host, spaces: Namespaces, prefix: str, state: Path) -> None:
        self.host = host
        self.spaces = spaces
        self.prefix = prefix
        self.state = state

    def netns(self, vni: int) -> str:
        return dhcp_netns_name(self.prefix, vni)

    def _dir(self, vni: int) -> Path:
        return self.state / str(vni)

    def facts(self, view: HostView) -> list[DhcpServer]:
        servers: list[DhcpServer] = []
        for d in sorted(self.state.iterdir()):
            server = dnsmasq.running(d)
            if server is None or not netns.exists(self.netns(server.vni)):
                continue
            dl = view.links.get(dhcp_device_name(server.vni))
            dbr = view.links.get(bridge_name(server.vni))
            if dl is None or dbr is None or dl.master != dbr.index or not dl.up:
                continue
            servers.append(server)
        return servers

    def leases(self) -> dict[int, int]:
        """Unexpired leases of each server (dnsmasq's lease file: `<expiry> <mac> <ip> ...` per
        line, expiry 0 for infinite), by VNI."""
        now = time.time()
        out: dict[int, int] = {}
        try:
            dirs = [d for d in self.state.iterdir() if d.name.isdigit()]
        except FileNotFoundError:
            return out
        for d in dirs:
            try:
                lines = (d / "leases").read_text().splitlines()
            except OSError:
                continue
            expiries = (line.split(" ", 1)[0] for line in lines if line.strip())
            out[int(d.name)] = sum(1 for e in expiries if e.isdigit() and (int(e) == 0 or int(e) > now))
        return out

    def create(self, d: DhcpServer) -> None:
        path = dhcp_path(d.vni)
        self.remove(d.vni)
        br = self.host.link(bridge_name(d.vni))  # read now: its MTU is the VPC's
        if br is None:
            raise DataplaneError(path, f"no bridge for VNI {d.vni}")
        ns = self.netns(d.vni)
        nl = self.spaces.socket(ns, create=True)
        assert nl is not None
        hname = dhcp_device_name(d.vni)
        with netns.opened(ns) as fd:
            mac = "02:00:" + ":".join(f"{b:02x}" for b in os.urandom(4))
            # At the bridge's MTU: a smaller device on the bridge would lower the VPC's MTU.
            veth = rtnl.new_veth(hname, br.mtu, br.index, DHCP_SERVER_IFNAME, mac, fd, OWN_GROUP)
            netlink.apply(self.host.nl, path, [veth, *netlink.bring_up(hname)])
        peer = nl.link(DHCP_SERVER_IFNAME)
        if peer is None:
            raise DataplaneError(path, f"{DHCP_SERVER_IFNAME} did not appear in namespace {ns}")
        ip, plen = d.server_ip.split("/")
        netlink.apply(nl, path, [rtnl.set_link(peer.index, up=True), rtnl.new_addr(peer.index, ip, int(plen))])
        state = self._dir(d.vni)
        dnsmasq.start(d, state, netns.path(ns))
        self._wait_ready(path, state)

    def follow_mtu(self, seg: Segment) -> None:
        """The server's own end of its veth takes the segment's MTU (the bridge end did when the
        segment was ensured), in place: a new server would forget its leases."""
        nl = self.spaces.socket(self.netns(seg.vni), create=False)
        peer = nl.link(DHCP_SERVER_IFNAME) if nl is not None else None
        if nl is not None and peer is not None and peer.mtu != seg.mtu:
            netlink.apply(nl, dhcp_path(seg.vni) + ".mtu", [rtnl.set_link(peer.index, mtu=seg.mtu)])

    def update(self, old: DhcpServer, new: DhcpServer) -> None:
        """New reservations: dnsmasq re-reads them (or, if that fails, starts anew); the leases
        of clients that left are released."""
        state = self._dir(new.vni)
        if old.reservations != new.reservations and not dnsmasq.reload(new, state):
            self.create(new)
        self.release(old, new)
        dnsmasq.record(state, new)

    def release(self, old: DhcpServer, new: DhcpServer) -> None:
        """Release the leases of the MACs in `old.clients` but not in `new`'s (clients or
        reservations): the address returns to the pool at once."""
        gone = set(old.clients) - set(new.clients) - {r.mac for r in new.reservations}
        if gone:
            dnsmasq.release(self._dir(new.vni), netns.path(self.netns(new.vni)), DHCP_SERVER_IFNAME, gone)

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

    def remove(self, vni: int) -> None:
        dnsmasq.remove(self._dir(vni))
        self.host.delete(dhcp_path(vni), [dhcp_device_name(vni)])
        self.spaces.drop(self.netns(vni))

    def collect_garbage(self, desired: HostConfig) -> list[Action]:
        """Stop dnsmasq instances no DHCP server of `desired` wants (their devices and namespaces
        go with the driver's sweep)."""
        actions: list[Action] = []
        servers = {str(d.vni) for d in desired.dhcp_servers}
        for d in sorted(self.state.iterdir()):
            if d.name not in servers:
                dnsmasq.remove(d)
                actions.append(Action("delete", f"dnsmasq {d.name}", "orphan"))
        return actions

    def stop_all(self) -> None:
        for d in sorted(self.state.iterdir()):
            dnsmasq.remove(d)
