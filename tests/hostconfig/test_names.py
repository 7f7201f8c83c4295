"""Device and namespace names: running hosts have devices of these names, so they never change;
every host device fits IFNAMSIZ; the driver recognises its own and nothing else."""

from __future__ import annotations

import pytest

from l2vpc.hostconfig import names

IFNAMSIZ = 15


def test_names_are_as_running_hosts_have_them() -> None:
    assert (names.bridge_name(100), names.vxlan_name(100)) == ("l2b100", "l2x100")
    assert names.port_device_name("att-0123456789abcdef") == "l2p6789abcdef"
    assert names.workload_netns_name("h1-", "web1") == "h1-l2w-web1"
    assert (names.dhcp_device_name(100), names.dhcp_netns_name("h1-", 100)) == ("l2d100", "h1-l2d-100")
    tag = names.edge_tag("dx-1")
    assert tag == "bb33a4f1"
    assert (names.handoff_bridge(tag), names.handoff_veth(tag), names.edge_vpc_veth(tag)) == (
        "l2ebbb33a4f1", "l2ehbb33a4f1", "l2evbb33a4f1")
    assert names.router_netns_name("h1-", "dx-1") == names.router_netns("h1-", tag) == "h1-l2e-bb33a4f1"
    assert names.vpn_device_name("vpn-0123456789ab") == "l2v0123456789ab"
    assert names.vpn_netns_name("h1-", "vpn-0123456789ab") == "h1-l2v-0123456789ab"
    assert (names.DHCP_SERVER_IFNAME, names.ROUTER_HANDOFF_IF, names.ROUTER_VPC_IF) == ("dhcp0", "dx0", "vpc0")
    assert (names.VPN_VPC_IFNAME, names.VPN_OUTSIDE_IFNAME) == ("vpc0", "ext0")


def test_host_devices_fit_ifnamsiz() -> None:
    longest_id = "x" * 64
    for name in (names.bridge_name(16_777_215), names.vxlan_name(16_777_215), names.dhcp_device_name(16_777_215),
                 names.port_device_name(longest_id), names.vpn_device_name(longest_id),
                 names.handoff_bridge(names.edge_tag(longest_id))):
        assert len(name) <= IFNAMSIZ, name


@pytest.mark.parametrize(("name", "owned"), [
    ("l2b100", True), ("l2x100", True), ("l2d100", True), ("l2p6789abcdef", True),
    ("l2b", False), ("l2bx1", False), ("eth0", False), ("br0", False), ("l2ebbb33a4f1", False),
])
def test_owned_devices_are_recognised(name: str, owned: bool) -> None:
    assert names.owned_device(name) is owned


def test_edge_devices_carry_their_tag() -> None:
    for name in ("l2ebbb33a4f1", "l2ehbb33a4f1", "l2evbb33a4f1"):
        m = names.EDGE_DEVICE_RE.match(name)
        assert m is not None and m.group(1) == "bb33a4f1"
    assert names.EDGE_DEVICE_RE.match("l2exbb33a4f1") is None
