"""Our small rtnetlink reader agrees with pyroute2's full decoder on a real namespace; kernel
refusals map to dataplane errors at one seam (netlink.apply); the namespace helper enters and
leaves namespaces (netns)."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator

import pytest
from pyroute2 import IPRoute

from l2vpc.agent.drivers.base import DataplaneError
from l2vpc.agent.drivers.linux import netlink, rtnl
from l2vpc.agent.drivers.linux import netns as nsmod

from .conftest import IS_ROOT, sh

pytestmark = pytest.mark.root


@pytest.fixture
def ns(prefix: str) -> Iterator[str]:
    if not IS_ROOT:
        pytest.skip("needs root")
    name = f"{prefix}rtnl"
    nsmod.create(name)
    try:
        yield name
    finally:
        nsmod.remove(name)
        assert not nsmod.exists(name)


def test_reader_matches_pyroute2(ns: str) -> None:
    other = f"{ns}-w"
    nsmod.create(other)
    try:
        nl = rtnl.Rtnl(nsmod.netlink_socket(ns))
        fd = os.open(nsmod.path(other), os.O_RDONLY)
        errs = nl.batch([rtnl.new_bridge("l2b7", 9000, 5), rtnl.set_link(name="l2b7", alias="vpc-7", up=True)])
        assert errs == [None, None]
        br = nl.link("l2b7")
        assert br is not None
        errs = nl.batch([
            rtnl.new_vxlan("l2x7", 7, "10.99.0.1", 4789, 9000, br.index, 5),
            rtnl.new_veth("l2pabc", 1400, br.index, "net4", "02:00:00:00:00:44", fd, 5),
        ])
        os.close(fd)
        assert errs == [None, None]
        vx = nl.link("l2x7")
        assert vx is not None
        assert nl.batch([rtnl.new_flood_entry(vx.index, "10.99.0.2"), rtnl.new_flood_entry(vx.index, "10.99.0.3")]) == [None, None]
        # Duplicate creation reports the kernel's error, with its errno.
        (dup,) = nl.batch([rtnl.new_bridge("l2b7", 1500)])
        assert dup is not None and dup.errno == 17

        ours = {lk.name: lk for lk in nl.links()}
        with IPRoute(netns=ns) as ipr:
            theirs = {lk.get_attr("IFLA_IFNAME"): lk for lk in ipr.get_links()}
            assert set(ours) == set(theirs)
            for name, lk in ours.items():
                ref = theirs[name]
                assert (lk.index, lk.mtu, lk.master or None, lk.mac, lk.group) == (
                    ref["index"], ref.get_attr("IFLA_MTU"), ref.get_attr("IFLA_MASTER"),
                    ref.get_attr("IFLA_ADDRESS"), ref.get_attr("IFLA_GROUP"),
                ), name
                info = ref.get_attr("IFLA_LINKINFO")
                assert lk.kind == (info.get_attr("IFLA_INFO_KIND") if info else ""), name
            x = theirs["l2x7"].get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
            assert (ours["l2x7"].vni, ours["l2x7"].local, ours["l2x7"].port, ours["l2x7"].learning) == (
                x.get_attr("IFLA_VXLAN_ID"), x.get_attr("IFLA_VXLAN_LOCAL"), x.get_attr("IFLA_VXLAN_PORT"),
                x.get_attr("IFLA_VXLAN_LEARNING"))
            assert ours["l2b7"].alias == "vpc-7"
            assert ours["l2pabc"].link == theirs["l2pabc"].get_attr("IFLA_LINK")
            assert ours["l2pabc"].netnsid == theirs["l2pabc"].get_attr("IFLA_LINK_NETNSID")
            floods = {e.dst for e in nl.fdb([vx.index]) if e.mac == "00:00:00:00:00:00"}
            ref_floods = {
                e.get_attr("NDA_DST") for e in ipr.fdb("dump", ifindex=vx.index)
                if e.get_attr("NDA_LLADDR") == "00:00:00:00:00:00"
            }
            assert floods == ref_floods == {"10.99.0.2", "10.99.0.3"}

        w = rtnl.Rtnl(nsmod.netlink_socket(other))
        peer = w.link("net4")
        assert peer is not None and peer.mac == "02:00:00:00:00:44" and peer.mtu == 1400
        assert w.batch([rtnl.set_link(peer.index, up=True), rtnl.new_addr(peer.index, "10.7.0.5", 24),
                        rtnl.new_route("10.8.0.0/16", "10.7.0.1", peer.index, 76)]) == [None, None, None]
        assert rtnl.Addr(peer.index, "10.7.0.5", 24) in w.addrs()
        assert rtnl.Route("10.8.0.0/16", "10.7.0.1", peer.index, 76, 254) in w.routes()
        out = sh("ip", "-n", other, "route", "show", "10.8.0.0/16").stdout
        assert "via 10.7.0.1 dev net4 proto 76" in out
        # An unreachable gateway: the kernel's extended-ack text reaches the caller.
        (bad,) = w.batch([rtnl.new_route("10.9.0.0/16", "10.200.0.1", peer.index, 76)])
        assert bad is not None and "gateway" in str(bad).lower()
        w.close()
        nl.close()
    finally:
        nsmod.remove(other)


def test_watcher_sees_changes_and_only_changes(ns: str) -> None:
    watch = rtnl.Watcher(nsmod.netlink_socket(ns), rtnl.RTMGRP_LINK | rtnl.RTMGRP_IPV4_IFADDR)
    try:
        assert not watch.changed()
        sh("ip", "-n", ns, "link", "add", "l2b9", "type", "bridge")
        assert watch.changed()
        assert not watch.changed()  # drained
    finally:
        watch.close()


def test_netlink_apply_maps_kernel_refusals(ns: str) -> None:
    nl = rtnl.Rtnl(nsmod.netlink_socket(ns))
    try:
        path = "segments[vni=1]"
        netlink.apply(nl, path, [rtnl.new_bridge("l2b1", 1500), *netlink.bring_up("l2b1", alias="vpc-1")])
        br = nl.link("l2b1")
        assert br is not None and br.up and br.alias == "vpc-1"
        assert sh("ip", "-n", ns, "-6", "addr", "show", "dev", "l2b1").stdout == ""  # IPv6 off before up

        # Already so: deletes of what is gone, an address or route that is not there.
        netlink.apply(nl, path, [rtnl.del_link(name="l2b9"), rtnl.del_addr(br.index, "10.9.9.9", 32),
                                 rtnl.del_route("10.8.0.0/16", "10.9.9.1", br.index, 76)])
        # A fine refusal does not stop the rest of the batch.
        netlink.apply(nl, path, [rtnl.del_link(name="l2b9"), rtnl.new_bridge("l2b2", 1500)])
        assert nl.link("l2b2") is not None

        # ENODEV elsewhere: not found (a DataplaneError naming the path), unless missing is fine.
        with pytest.raises(netlink.DeviceNotFound) as missing:
            netlink.apply(nl, path, [rtnl.set_link(name="l2b9", up=True)])
        assert (missing.value.path, missing.value.reason) == (path, "netlink: No such device")
        netlink.apply(nl, path, [rtnl.set_link(name="l2b9", up=True)], missing_ok=True)

        # An exclusive create of what exists is refused, with the kernel's words.
        with pytest.raises(DataplaneError) as exists:
            netlink.apply(nl, path + ".x", [rtnl.new_bridge("l2b1", 1500)])
        assert isinstance(exists.value, netlink.KernelRefused) and not isinstance(exists.value, netlink.DeviceNotFound)
        assert exists.value.errno == errno.EEXIST
        assert exists.value.path == path + ".x" and exists.value.reason.startswith("netlink: File exists")
    finally:
        nl.close()


def test_one_namespace_helper_enters_and_leaves(ns: str) -> None:
    home = os.stat("/proc/thread-self/ns/net").st_ino
    there = os.stat(nsmod.path(ns)).st_ino
    other = f"{ns}-o"
    assert nsmod.create(other) and not nsmod.create(other)
    try:
        with nsmod.inside(ns):
            assert os.stat("/proc/thread-self/ns/net").st_ino == there
            # Reentrant: a body inside one namespace may open a socket in another and come back here.
            nl = rtnl.Rtnl(nsmod.socket_in(other, socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE))
            assert os.stat("/proc/thread-self/ns/net").st_ino == there
        assert os.stat("/proc/thread-self/ns/net").st_ino == home
        nl.call(rtnl.new_bridge("l2b3", 1500))  # the socket stayed in `other`
        nl.close()
        assert "l2b3" in sh("ip", "-n", other, "link", "show").stdout
    finally:
        nsmod.remove(other)
    before = open("/proc/sys/net/ipv4/ip_forward").read()
    nsmod.sysctl(ns, {"net/ipv4/ip_forward": "1"})
    assert sh("ip", "netns", "exec", ns, "cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"
    assert open("/proc/sys/net/ipv4/ip_forward").read() == before
    with nsmod.opened(ns) as fd:
        assert os.fstat(fd).st_ino == there
    with pytest.raises(FileNotFoundError):
        nsmod.sysctl(f"{ns}-gone", {"net/ipv4/ip_forward": "1"})
