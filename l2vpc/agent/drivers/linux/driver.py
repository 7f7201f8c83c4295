"""The Linux driver: one host (a network namespace, or the real host) programmed over netlink.

What it creates, all recognisable without the driver's memory, so a new driver object on the
same host and state dir (an agent restart) adopts everything (names: l2vpc.hostconfig.names):

- per segment: bridge `l2b<vni>` and VXLAN `l2x<vni>` with head-end replication (segments.py);
- per port: veth `l2p<id tail>` on the bridge, its peer `net1`..`net10` in the workload's
  namespace `<prefix>l2w-<workload>`, addressed statically or by udhcpc (ports.py); with port
  security, its chain in our nftables table `bridge l2vpc` (port_security.py);
- per DHCP server: namespace `<prefix>l2d-<vni>` on the bridge running dnsmasq (dhcp_servers.py);
- per edge router (direct connect): devices `l2e[bhv]<tag>`, for layer3 a router namespace
  `<prefix>l2e-<tag>` running FRR, shapers and VLAN filters (edge.py);
- per VPN gateway: what vpn.py's VpnManager makes (a namespace with strongSwan, a host veth
  `l2v<id tail>`), with its own state below `<state>/vpn`.

This module composes them: facts, one converge step at a time (`_apply`), garbage collection
and teardown. Netlink refusals become DataplaneErrors in netlink.py; the host's links are read
through host.py's cache.

Bandwidth: direct connects are shaped at `bandwidth_mbps` times `bandwidth_scale` (argument,
else the environment variable L2VPC_BANDWIDTH_SCALE, else 1). The lab runs its agents at 0.1,
so a 1000 Mbps direct connect is a 100 Mbit/s shaper that iperf3 between namespaces can fill.

Namespaces carry the per-driver prefix so parallel test runs and several simulated hosts on
one machine never collide; the driver removes only namespaces it created (recorded in the
state dir). Host devices are recognised by their `l2` names; nothing else is touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

from l2vpc.agent.drivers.base import Action, DataplaneError, Driver
from l2vpc.agent.drivers.linux import netns as _netns  # LinuxDriver's `netns` argument shadows it
from l2vpc.agent.drivers.linux import rtnl
from l2vpc.agent.drivers.linux.dhcp_servers import DhcpServers
from l2vpc.agent.drivers.linux.edge import EdgeManager
from l2vpc.agent.drivers.linux.host import Host
from l2vpc.agent.drivers.linux.marks import VXLAN_PORT
from l2vpc.agent.drivers.linux.namespaces import Namespaces
from l2vpc.agent.drivers.linux.netlink import refused
from l2vpc.agent.drivers.linux.nftables import NftError
from l2vpc.agent.drivers.linux.port_security import PortSecurity
from l2vpc.agent.drivers.linux.ports import Ports, device_name
from l2vpc.agent.drivers.linux.segments import Segments
from l2vpc.agent.drivers.linux.vpn import VpnManager
from l2vpc.hostconfig import DhcpServer, EdgeRouter, HostConfig, Port, Segment, VpnGateway
from l2vpc.hostconfig.diff import Change, vpn_path
from l2vpc.hostconfig.names import (
    bridge_name,
    dhcp_device_name,
    dhcp_netns_name,
    owned_device,
    vxlan_name,
    workload_netns_name,
)

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
        for sub in ("dhcp", "clients", "records"):
            (self.state / sub).mkdir(mode=0o700, exist_ok=True)
        self._spaces = Namespaces(self.state / "netns")
        self._host = Host(netns)
        self._nl = self._host.nl
        self._segments = Segments(self._host, underlay_ip, vxlan_port)
        self._security = PortSecurity(netns)
        self._ports = Ports(self._host, self._spaces, prefix, self.state / "clients", self.state / "records",
                            self._security)
        self._dhcp = DhcpServers(self._host, self._spaces, prefix, self.state / "dhcp")
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
        self._host.close()

    def teardown(self) -> None:
        # Daemons in namespaces first (FRR, charon), then the namespaces can go.
        self._edges.teardown()
        if self._vpns is not None:
            self._vpns.teardown_all()
        self._ports.stop_clients()
        self._dhcp.stop_all()
        # Namespaces first: the kernel then destroys their veth pairs as one batch, far
        # cheaper than deleting each port's device.
        for name in self._spaces.created():
            self._spaces.drop(name)
        self._host.delete_links("host", [lk for lk in self._nl.links() if owned_device(lk.name)])
        self._security.teardown()
        deadline = time.monotonic() + 10
        while (left := [lk.name for lk in self._nl.links() if owned_device(lk.name)]):
            if time.monotonic() > deadline:
                raise DataplaneError("host", f"teardown: devices still present: {', '.join(left[:5])}")
            time.sleep(0.02)
        self._invalidate()
        for sub in ("clients", "records"):
            shutil.rmtree(self.state / sub, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (self.state / "generation").unlink()
        for sub in ("dhcp", "clients", "records"):
            (self.state / sub).mkdir(exist_ok=True)

    def _set_generation(self, generation: int) -> None:
        if generation == self._generation():
            return
        tmp = self.state / "generation.tmp"
        tmp.write_text(str(generation))
        tmp.replace(self.state / "generation")

    def _generation(self) -> int:
        try:
            return int((self.state / "generation").read_text())
        except (FileNotFoundError, ValueError):
            return 0

    def _invalidate(self) -> None:
        """Forget cached reads: the driver itself just changed the host."""
        self._host.invalidate()
        self._spaces.invalidate()

    # -- facts ---------------------------------------------------------------------------

    def sessions(self) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
        """The BGP sessions of the edge routers here (EdgeManager.sessions)."""
        return self._edges.sessions()

    def dhcp_leases(self) -> dict[int, int]:
        return self._dhcp.leases()

    def facts(self) -> HostConfig:
        view = self._host.read()
        edges, observations = self._edges.facts(view.links)
        vpns: list[VpnGateway] = []
        if self._vpns is not None:
            vpns = self._vpns.running()
            observations += self._vpns.observations()
        return HostConfig(
            host=self.host,
            underlay_ip=self.underlay_ip,
            generation=self._generation(),
            segments=tuple(self._segments.facts(view)),
            ports=tuple(self._ports.facts(view, self._security.read())),
            dhcp_servers=tuple(self._dhcp.facts(view)),
            edge_routers=tuple(edges),
            vpn_gateways=tuple(vpns),
            observations=tuple(observations),
        ).normalized()

    # -- operations ----------------------------------------------------------------------

    def _apply(self, step: Change) -> None:
        self._invalidate()
        try:
            if step.kind == "segment":
                if step.action == "delete":
                    assert isinstance(step.before, Segment)
                    self._segments.remove(step.before)
                else:
                    assert isinstance(step.after, Segment)
                    self._segments.ensure(step.after)
                    self._dhcp.follow_mtu(step.after)
            elif step.kind == "edge_router":
                self._apply_edge(step)
            elif step.kind == "vpn_gateway":
                self._apply_vpn(step)
            elif step.kind == "port":
                if step.action == "delete":
                    assert isinstance(step.before, Port)
                    self._ports.remove(step.before)
                elif step.action == "create":
                    assert isinstance(step.after, Port)
                    self._ports.create(step.after)
                else:
                    assert isinstance(step.before, Port) and isinstance(step.after, Port)
                    self._ports.update(step.before, step.after)
            else:
                if step.action == "delete":
                    assert isinstance(step.before, DhcpServer)
                    self._dhcp.remove(step.before.vni)
                elif step.how in ("reload", "live"):
                    assert isinstance(step.before, DhcpServer) and isinstance(step.after, DhcpServer)
                    self._dhcp.update(step.before, step.after)
                else:
                    assert isinstance(step.after, DhcpServer)
                    self._dhcp.create(step.after)
                    if isinstance(step.before, DhcpServer):
                        self._dhcp.release(step.before, step.after)
        except rtnl.NetlinkError as e:
            raise refused(step.path, e) from e
        except NftError as e:
            raise DataplaneError(step.path, str(e)) from e
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

    def sandbox_drift(self, port: Port) -> list[str]:
        self._invalidate()
        self.facts()  # a fresh host view
        return self._ports.sandbox_drift(port)

    # -- garbage -------------------------------------------------------------------------

    def _collect_garbage(self, desired: HostConfig) -> list[Action]:
        actions = self._ports.collect_clients(desired)
        self._ports.collect_records(desired)
        actions += self._dhcp.collect_garbage(desired)
        try:
            unpinned = self._security.collect_garbage({device_name(p) for p in desired.ports if p.port_security})
        except (NftError, OSError) as e:
            raise DataplaneError("host", f"port security: {e}") from e
        actions += [Action("delete", f"port security of device {d}", "orphan") for d in unpinned]

        expected = {n for s in desired.segments for n in (bridge_name(s.vni), vxlan_name(s.vni))}
        expected |= {device_name(p) for p in desired.ports}
        expected |= {dhcp_device_name(d.vni) for d in desired.dhcp_servers}
        # The host view read by facts() and kept current by every operation since.
        links = self._host.view.links
        stray = [lk for name, lk in links.items() if owned_device(name) and name not in expected]
        if stray:
            self._invalidate()
            self._host.delete_links("host", stray)
            actions += [Action("delete", f"device {lk.name}", "orphan") for lk in stray]

        actions += self._edges.collect_garbage(desired, self._host.view.links)
        if self._vpns is not None:
            wanted = {v.id for v in desired.vpn_gateways}
            for obs in self._vpns.observations():
                if obs.id not in wanted:
                    self._vpns.remove(obs.id)
                    actions.append(Action("delete", vpn_path(obs.id), "orphan"))

        namespaces = {self.workload_netns(p.workload) for p in desired.ports if p.workload_kind != "pod" and not p.tap}
        namespaces |= {self.dhcp_netns(d.vni) for d in desired.dhcp_servers}
        namespaces |= self._edges.namespaces(desired)
        for name in self._spaces.created():
            if name not in namespaces:
                self._spaces.drop(name)
                actions.append(Action("delete", f"netns {name}", "no ports left"))
        return actions
