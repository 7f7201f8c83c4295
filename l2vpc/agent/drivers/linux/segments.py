"""Segments on Linux: bridge `l2b<vni>` (alias = vpc id) and VXLAN `l2x<vni>` (VNI, local =
underlay, dstport 4789, no learning, alias = vpc name) enslaved to it, head-end replication as all-zero-MAC fdb
entries (`00:00:00:00:00:00 dst <remote>`), one per remote.

Every device on a segment's bridge takes the segment's MTU (the VPC's): a bridge follows the
smallest MTU among its devices, so one device at 1500 (a DHCP server's veth) would cut a 9000
VPC to 1500 on that host. A segment whose devices disagree reads as MTU 0, and ensuring it sets
them all.
"""

from __future__ import annotations

from l2vpc.agent.drivers.base import DataplaneError
from l2vpc.agent.drivers.linux import netlink, rtnl
from l2vpc.agent.drivers.linux.host import Host, HostView
from l2vpc.agent.drivers.linux.marks import OWN_GROUP
from l2vpc.hostconfig import Segment
from l2vpc.hostconfig.diff import segment_path
from l2vpc.hostconfig.names import BRIDGE_RE, bridge_name, vxlan_name


class Segments:
    def __init__(self, host: Host, underlay_ip: str, vxlan_port: int) -> None:
        self.host = host
        self.underlay_ip = underlay_ip
        self.vxlan_port = vxlan_port

    def facts(self, view: HostView) -> list[Segment]:
        segments: list[Segment] = []
        links = view.links
        on_bridge: dict[int, set[int]] = {}  # bridge index -> MTUs of the devices on it
        for lk in links.values():
            if lk.master:
                on_bridge.setdefault(lk.master, set()).add(lk.mtu)
        for name, br in links.items():
            m = BRIDGE_RE.match(name)
            if not m or br.kind != "bridge":
                continue
            vni = int(m.group(1))
            vx = links.get(vxlan_name(vni))
            if vx is None or not br.up or not self._vxlan_ok(vx, vni) or vx.master != br.index or not vx.up:
                continue
            # 0: a device on the bridge (the VXLAN too) disagrees with it; an update fixes it.
            mtu = br.mtu if on_bridge.get(br.index, set()) == {br.mtu} else 0
            remotes = tuple(sorted(view.floods.get(vx.index, ())))
            segments.append(Segment(vni=vni, vpc_id=br.alias, mtu=mtu, remotes=remotes, vpc_name=vx.alias))
        return segments

    def _vxlan_ok(self, vx: rtnl.Link, vni: int) -> bool:
        return (
            vx.kind == "vxlan"
            and vx.vni == vni
            and vx.local == self.underlay_ip
            and vx.port == self.vxlan_port
            and vx.learning == 0
        )

    def ensure(self, seg: Segment) -> None:
        path = segment_path(seg.vni)
        nl, view = self.host.nl, self.host.view
        bname, xname = bridge_name(seg.vni), vxlan_name(seg.vni)
        br = view.links.get(bname)
        if br is not None and br.kind != "bridge":
            netlink.apply(nl, path, [rtnl.del_link(br.index)])
            br = None
        new_bridge = br is None
        if br is None:
            netlink.apply(nl, path, [rtnl.new_bridge(bname, seg.mtu, OWN_GROUP),
                                     *netlink.bring_up(bname, alias=seg.vpc_id)])
            br = self.host.link(bname)
            if br is None:
                raise DataplaneError(path, f"bridge {bname} vanished after creation")
        elif (br.mtu, br.alias, br.up) != (seg.mtu, seg.vpc_id, True):
            netlink.apply(nl, path, [rtnl.set_link(br.index, up=True, mtu=seg.mtu, alias=seg.vpc_id)])

        vx = view.links.get(xname)
        if vx is not None and not self._vxlan_ok(vx, seg.vni):
            netlink.apply(nl, path, [rtnl.del_link(vx.index)])
            view.floods.pop(vx.index, None)
            vx = None
        if vx is None:
            netlink.apply(nl, path, [
                rtnl.new_vxlan(xname, seg.vni, self.underlay_ip, self.vxlan_port, seg.mtu, br.index, OWN_GROUP),
                *netlink.bring_up(xname, alias=seg.vpc_name),
            ])
            vx = self.host.link(xname)
            if vx is None:
                raise DataplaneError(path, f"vxlan {xname} vanished after creation")
        elif (vx.mtu, vx.master, vx.up, vx.alias) != (seg.mtu, br.index, True, seg.vpc_name):
            netlink.apply(nl, path, [rtnl.set_link(vx.index, up=True, mtu=seg.mtu, master=br.index,
                                                   alias=seg.vpc_name)])
        # A bridge created just now holds nothing else yet.
        others = [] if new_bridge else [rtnl.set_link(lk.index, mtu=seg.mtu) for lk in view.links.values()
                                         if lk.master == br.index and lk.index != vx.index and lk.mtu != seg.mtu]
        if others:  # ports, the DHCP server's veth, gateways (their peers follow in their own steps),
            # then the bridge, which followed the smallest of them
            netlink.apply(nl, path + ".mtu", [*others, rtnl.set_link(br.index, mtu=seg.mtu)])

        have = view.floods.get(vx.index, set())
        want = set(seg.remotes)
        reqs = [rtnl.new_flood_entry(vx.index, r) for r in sorted(want - have)]
        reqs += [rtnl.del_flood_entry(vx.index, r) for r in sorted(have - want)]
        if reqs:
            netlink.apply(nl, path + ".remotes", reqs)
            view.floods[vx.index] = want

    def remove(self, seg: Segment) -> None:
        self.host.delete(segment_path(seg.vni), [vxlan_name(seg.vni), bridge_name(seg.vni)])
