"""Single-object rules of the Terraform contract (DESIGN.md "Terraform interface"), via `parse()`.

One case per rule: the exact dotted path of the problem, and words of the message that say
what is allowed. Accepted boundary values sit beside the rejected ones so an off-by-one in
either direction fails.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from l2vpc.engine.errors import ValidationError
from l2vpc.engine.model import VPC, VPN, Attachment, DirectConnect, parse

VPC_BASE: dict[str, Any] = {"name": "prod", "region": "us-east"}
VPC_CIDR: dict[str, Any] = {**VPC_BASE, "cidr": "10.0.0.0/24"}
DHCP: dict[str, Any] = {"range_start": "10.0.0.100", "range_end": "10.0.0.200"}
ATT: dict[str, Any] = {"vpc_id": "vpc-0001", "workload": "web1"}
BGP: dict[str, Any] = {"customer_asn": 65000}
DX: dict[str, Any] = {
    "name": "dx1",
    "vpc_id": "vpc-0001",
    "location": "nyc1",
    "bandwidth_mbps": 1000,
    "bgp": BGP,
}
DX_L2: dict[str, Any] = {
    "name": "dx1",
    "vpc_id": "vpc-0001",
    "location": "nyc1",
    "bandwidth_mbps": 1000,
    "mode": "layer2",
}
PSK = "s3cret.Key_1"
VPN_BASE: dict[str, Any] = {
    "name": "vpn1",
    "vpc_id": "vpc-0001",
    "peer_address": "203.0.113.5",
    "remote_cidrs": ["192.168.0.0/24"],
    "pre_shared_key": PSK,
}


def problems_of(model: type[BaseModel], data: Any) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as ei:
        parse(model, data)
    return ei.value.problems


def dhcp(**kw: Any) -> dict[str, Any]:
    return {**VPC_CIDR, "dhcp": {**DHCP, **kw}}


def bgp(**kw: Any) -> dict[str, Any]:
    return {**DX, "bgp": {**BGP, **kw}}


def vpn(**kw: Any) -> dict[str, Any]:
    return {**VPN_BASE, **kw}


# (model, data, exact path, words the message must contain)
REJECTED = [
    # --- l2vpc_vpc ------------------------------------------------------------------
    pytest.param(VPC, {**VPC_BASE, "name": ""}, "name", ["1-63", "lowercase"], id="vpc-name-empty"),
    pytest.param(VPC, {**VPC_BASE, "name": "a" * 64}, "name", ["1-63"], id="vpc-name-64"),
    pytest.param(VPC, {**VPC_BASE, "name": "Prod"}, "name", ["lowercase"], id="vpc-name-upper"),
    pytest.param(VPC, {**VPC_BASE, "name": "prod_1"}, "name", ["digits and '-'"], id="vpc-name-underscore"),
    pytest.param(VPC, {**VPC_BASE, "name": "prod 1"}, "name", ["lowercase"], id="vpc-name-space"),
    pytest.param(
        VPC, {**VPC_BASE, "scope": "global"}, "scope", ["single_region", "multi_region"], id="vpc-scope-value"
    ),
    pytest.param(VPC, {"name": "prod"}, "region", ["required", "single_region"], id="vpc-region-required"),
    pytest.param(
        VPC,
        {"name": "prod", "scope": "single_region", "region": None},
        "region",
        ["required"],
        id="vpc-region-null",
    ),
    pytest.param(
        VPC,
        {**VPC_BASE, "scope": "multi_region"},
        "region",
        ["unset", "multi_region"],
        id="vpc-region-forbidden",
    ),
    pytest.param(VPC, {**VPC_BASE, "mtu": 575}, "mtu", ["576"], id="vpc-mtu-575"),
    pytest.param(VPC, {**VPC_BASE, "mtu": 9001}, "mtu", ["9000"], id="vpc-mtu-9001"),
    pytest.param(
        VPC,
        {**VPC_BASE, "cidr": "10.0.0.1/24"},
        "cidr",
        ["host bits", "10.0.0.0/24"],
        id="vpc-cidr-host-bits",
    ),
    pytest.param(
        VPC, {**VPC_BASE, "cidr": "banana"}, "cidr", ["IPv4 network", "10.0.0.0/24"], id="vpc-cidr-format"
    ),
    pytest.param(VPC, {**VPC_BASE, "cidr": "10.0.0.0/33"}, "cidr", ["IPv4 network"], id="vpc-cidr-prefix-33"),
    pytest.param(VPC, {**VPC_BASE, "cidr": "fd00::/64"}, "cidr", ["IPv4 network"], id="vpc-cidr-ipv6"),
    pytest.param(VPC, {**VPC_BASE, "dhcp": DHCP}, "dhcp", ["cidr"], id="dhcp-without-cidr"),
    pytest.param(
        VPC,
        dhcp(range_start="10.0.1.100", range_end="10.0.1.200"),
        "dhcp.range_start",
        ["usable address", "10.0.0.0/24"],
        id="dhcp-range-start-outside",
    ),
    pytest.param(
        VPC,
        dhcp(range_end="10.0.0.255"),
        "dhcp.range_end",
        ["usable address", "10.0.0.0/24"],
        id="dhcp-range-end-broadcast",
    ),
    pytest.param(
        VPC,
        dhcp(range_start="10.0.0.0"),
        "dhcp.range_start",
        ["usable address"],
        id="dhcp-range-start-network",
    ),
    pytest.param(
        VPC,
        dhcp(range_start="10.0.0.150", range_end="10.0.0.120"),
        "dhcp.range_end",
        ["before range_start"],
        id="dhcp-range-order",
    ),
    pytest.param(
        VPC,
        dhcp(gateway="10.0.0.0"),
        "dhcp.gateway",
        ["usable address", "10.0.0.0/24"],
        id="dhcp-gateway-network",
    ),
    pytest.param(
        VPC, dhcp(gateway="10.0.1.1"), "dhcp.gateway", ["usable address"], id="dhcp-gateway-outside"
    ),
    pytest.param(
        VPC, dhcp(gateway="10.0.0.150"), "dhcp.gateway", ["inside the range"], id="dhcp-gateway-in-range"
    ),
    pytest.param(
        VPC, dhcp(server_ip="10.0.0.255"), "dhcp.server_ip", ["usable address"], id="dhcp-server-broadcast"
    ),
    pytest.param(
        VPC, dhcp(server_ip="10.0.0.150"), "dhcp.server_ip", ["inside the range"], id="dhcp-server-in-range"
    ),
    pytest.param(
        VPC,
        dhcp(range_end="10.0.0.254"),
        "dhcp.server_ip",
        ["inside the range", "server_ip"],
        id="dhcp-default-server-in-range",
    ),
    pytest.param(VPC, dhcp(lease_time=119), "dhcp.lease_time", ["120"], id="dhcp-lease-119"),
    pytest.param(VPC, dhcp(lease_time=604801), "dhcp.lease_time", ["604800"], id="dhcp-lease-604801"),
    pytest.param(
        VPC,
        dhcp(dns_servers=["10.0.0.1", "dns.example"]),
        "dhcp.dns_servers[1]",
        ["IPv4 address"],
        id="dhcp-dns-server-format",
    ),
    pytest.param(
        VPC,
        {**VPC_BASE, "cidr": "10.0.0.0/30", "dhcp": {"range_start": "10.0.0.1", "range_end": "10.0.0.1"}},
        "cidr",
        ["/29"],
        id="dhcp-cidr-too-small",
    ),
    # --- l2vpc_attachment -------------------------------------------------------------
    pytest.param(
        Attachment,
        {**ATT, "ip_mode": "static"},
        "ip_address",
        ["required", "static"],
        id="att-static-needs-ip",
    ),
    pytest.param(
        Attachment,
        {**ATT, "ip_address": "10.0.0.5/24"},
        "ip_address",
        ["unset", "ip_mode"],
        id="att-ip-with-mode-none",
    ),
    pytest.param(
        Attachment,
        {**ATT, "ip_mode": "static", "ip_address": "10.0.0.5"},
        "ip_address",
        ["prefix length", "10.0.0.5/24"],
        id="att-ip-without-prefix",
    ),
    pytest.param(
        Attachment,
        {**ATT, "ip_mode": "static", "ip_address": "10.0.0.256/24"},
        "ip_address",
        ["IPv4 address"],
        id="att-ip-format",
    ),
    pytest.param(
        Attachment, {**ATT, "ip_mode": "auto"}, "ip_mode", ["none", "static", "dhcp"], id="att-ip-mode-value"
    ),
    pytest.param(
        Attachment,
        {**ATT, "mac_address": "02-00-00-00-00-01"},
        "mac_address",
        ["02:00:00:00:00:01"],
        id="att-mac-format-dashes",
    ),
    pytest.param(
        Attachment,
        {**ATT, "mac_address": "02:00:00:00:00:0g"},
        "mac_address",
        ["MAC address"],
        id="att-mac-format-hex",
    ),
    pytest.param(
        Attachment,
        {**ATT, "mac_address": "01:00:5e:00:00:01"},
        "mac_address",
        ["multicast", "unicast"],
        id="att-mac-multicast",
    ),
    pytest.param(
        Attachment,
        {**ATT, "mac_address": "ff:ff:ff:ff:ff:ff"},
        "mac_address",
        ["unicast"],
        id="att-mac-broadcast",
    ),
    pytest.param(
        Attachment,
        {**ATT, "mac_address": "00:00:00:00:00:00"},
        "mac_address",
        ["00:00:00:00:00:00"],
        id="att-mac-all-zero",
    ),
    pytest.param(Attachment, {**ATT, "allowed_addresses": ["10.0.0.9"]}, "allowed_addresses",
                 ["only meaningful with port_security"], id="att-allowed-without-port-security"),
    pytest.param(Attachment, {**ATT, "port_security": True}, "port_security",
                 ["needs an address", "ip_address", "allowed_addresses"], id="att-port-security-nothing-to-pin"),
    pytest.param(Attachment, {**ATT, "ip_mode": "dhcp", "port_security": True}, "port_security",
                 ["dhcp reservation"], id="att-port-security-dynamic-dhcp"),
    pytest.param(Attachment, {**ATT, "port_security": True, "allowed_addresses": ["10.0.0.9/24"]},
                 "allowed_addresses[0]", ["host bits"], id="att-allowed-host-bits"),
    pytest.param(Attachment, {**ATT, "port_security": True, "allowed_addresses": ["10.0.0.300"]},
                 "allowed_addresses[0]", ["IPv4 address or network"], id="att-allowed-not-ipv4"),
    pytest.param(Attachment, {**ATT, "port_security": True,
                              "allowed_addresses": [f"10.0.{i}.0/24" for i in range(11)]},
                 "allowed_addresses", ["at most 10"], id="att-allowed-too-many"),
    pytest.param(Attachment, {**ATT, "workload": "Web_1"}, "workload", ["lowercase"], id="att-workload-name"),
    pytest.param(Attachment, {**ATT, "workload": ""}, "workload", ["1-63"], id="att-workload-empty"),
    pytest.param(
        Attachment,
        {**ATT, "workload_kind": "vm"},
        "workload_kind",
        ["virtual_server", "pod"],
        id="att-workload-kind",
    ),
    pytest.param(Attachment, {"workload": "web1"}, "vpc_id", ["required"], id="att-vpc-id-missing"),
    pytest.param(
        Attachment,
        {**ATT, "interface_name": "net11"},
        "interface_name",
        ["net10"],
        id="att-interface-name",
    ),
    # --- l2vpc_direct_connect ---------------------------------------------------------
    pytest.param(DirectConnect, {**DX, "bandwidth_mbps": 999}, "bandwidth_mbps", ["1000"], id="dx-bw-999"),
    pytest.param(
        DirectConnect, {**DX, "bandwidth_mbps": 1500}, "bandwidth_mbps", ["multiple of 1000"], id="dx-bw-1500"
    ),
    pytest.param(
        DirectConnect, {**DX, "bandwidth_mbps": 101000}, "bandwidth_mbps", ["100000"], id="dx-bw-101000"
    ),
    pytest.param(
        DirectConnect,
        {**DX, "partner": "megaport"},
        "service_key",
        ["required", "megaport"],
        id="dx-megaport-needs-key",
    ),
    pytest.param(
        DirectConnect,
        {**DX, "partner": "equinix"},
        "partner",
        ["cross_connect", "megaport"],
        id="dx-partner-value",
    ),
    pytest.param(DirectConnect, {**DX_L2, "vlan": 1}, "vlan", ["2"], id="dx-vlan-1"),
    pytest.param(DirectConnect, {**DX_L2, "vlan": 4094}, "vlan", ["4093"], id="dx-vlan-4094"),
    pytest.param(DirectConnect, {**DX, "vlan": 100}, "vlan", ["layer2"], id="dx-vlan-on-layer3"),
    pytest.param(
        DirectConnect, {**DX_L2, "mode": "layer3"}, "bgp", ["required", "layer3"], id="dx-bgp-required-layer3"
    ),
    pytest.param(DirectConnect, {**DX_L2, "bgp": BGP}, "bgp", ["layer3"], id="dx-bgp-forbidden-layer2"),
    pytest.param(DirectConnect, {**DX, "mode": "layer4"}, "mode", ["layer3", "layer2"], id="dx-mode-value"),
    pytest.param(DirectConnect, bgp(customer_asn=0), "bgp.customer_asn", ["1"], id="dx-asn-0"),
    pytest.param(
        DirectConnect, bgp(customer_asn=23456), "bgp.customer_asn", ["23456", "reserved"], id="dx-asn-23456"
    ),
    pytest.param(
        DirectConnect,
        bgp(customer_asn=4294967295),
        "bgp.customer_asn",
        ["4294967294"],
        id="dx-asn-4294967295",
    ),
    pytest.param(
        DirectConnect,
        bgp(peering_cidr="169.254.0.0/29"),
        "bgp.peering_cidr",
        ["/30 or /31"],
        id="dx-peering-29",
    ),
    pytest.param(
        DirectConnect,
        bgp(peering_cidr="169.254.0.0/30", customer_ip="169.254.0.5"),
        "bgp.customer_ip",
        ["usable address", "169.254.0.0/30"],
        id="dx-customer-ip-outside",
    ),
    pytest.param(
        DirectConnect,
        bgp(peering_cidr="169.254.0.0/30", customer_ip="169.254.0.3"),
        "bgp.customer_ip",
        ["usable address"],
        id="dx-customer-ip-broadcast",
    ),
    pytest.param(
        DirectConnect,
        bgp(customer_ip="169.254.0.1"),
        "bgp.peering_cidr",
        ["customer_ip"],
        id="dx-customer-ip-without-peering",
    ),
    # --- l2vpc_vpn --------------------------------------------------------------------
    pytest.param(
        VPN, vpn(pre_shared_key="abcdefg"), "pre_shared_key", ["8-64", "letters, digits"], id="vpn-psk-7"
    ),
    pytest.param(VPN, vpn(pre_shared_key="a" * 65), "pre_shared_key", ["8-64"], id="vpn-psk-65"),
    pytest.param(VPN, vpn(pre_shared_key="abcd-efgh"), "pre_shared_key", ["'_' and '.'"], id="vpn-psk-dash"),
    pytest.param(VPN, vpn(pre_shared_key="abcd efgh"), "pre_shared_key", ["letters"], id="vpn-psk-space"),
    pytest.param(
        VPN, vpn(peer_address="vpn.example.com"), "peer_address", ["IPv4 address"], id="vpn-peer-hostname"
    ),
    pytest.param(
        VPN, vpn(peer_address="203.0.113.5/32"), "peer_address", ["IPv4 address"], id="vpn-peer-with-prefix"
    ),
    pytest.param(
        VPN,
        {k: v for k, v in VPN_BASE.items() if k != "peer_address"},
        "peer_address",
        ["required"],
        id="vpn-peer-missing",
    ),
    pytest.param(
        VPN,
        {k: v for k, v in VPN_BASE.items() if k != "remote_cidrs"},
        "remote_cidrs",
        ["required"],
        id="vpn-remote-missing",
    ),
    pytest.param(VPN, vpn(remote_cidrs=[]), "remote_cidrs", ["at least 1"], id="vpn-remote-empty"),
    pytest.param(
        VPN,
        vpn(remote_cidrs=["192.168.0.0/24", "192.168.0.128/25"]),
        "remote_cidrs",
        ["overlaps", "192.168.0.128/25"],
        id="vpn-remote-overlap",
    ),
    pytest.param(
        VPN,
        vpn(remote_cidrs=["192.168.0.0/16"], local_cidrs=["192.168.1.0/24"]),
        "remote_cidrs",
        ["overlaps", "local_cidrs"],
        id="vpn-remote-overlaps-local",
    ),
    pytest.param(
        VPN,
        vpn(remote_cidrs=["192.168.0.1/24"]),
        "remote_cidrs[0]",
        ["host bits"],
        id="vpn-remote-host-bits",
    ),
    pytest.param(VPN, vpn(ike={"lifetime": 899}), "ike.lifetime", ["900"], id="vpn-ike-lifetime-899"),
    pytest.param(VPN, vpn(ike={"lifetime": 28801}), "ike.lifetime", ["28800"], id="vpn-ike-lifetime-28801"),
    pytest.param(VPN, vpn(esp={"lifetime": 899}), "esp.lifetime", ["900"], id="vpn-esp-lifetime-899"),
    pytest.param(VPN, vpn(esp={"lifetime": 3601}), "esp.lifetime", ["3600"], id="vpn-esp-lifetime-3601"),
    pytest.param(VPN, vpn(ike={"encryption": "des"}), "ike.encryption", ["aes256"], id="vpn-ike-encryption"),
    pytest.param(VPN, vpn(ike={"dh_group": "modp1024"}), "ike.dh_group", ["modp2048"], id="vpn-ike-dh-group"),
    pytest.param(VPN, vpn(esp={"encryption": "3des"}), "esp.encryption", ["aes128"], id="vpn-esp-encryption"),
    pytest.param(
        VPN,
        vpn(ike={"integrity": "md5"}),
        "ike.integrity",
        ["sha256"],
        id="vpn-ike-integrity",
    ),
    pytest.param(
        VPN,
        vpn(esp={"integrity": "sha1"}),
        "esp.integrity",
        ["sha256"],
        id="vpn-esp-integrity",
    ),
    pytest.param(
        VPN,
        vpn(dpd={"interval": 9}),
        "dpd.interval",
        ["10"],
        id="vpn-dpd-interval-9",
    ),
    pytest.param(
        VPN,
        vpn(dpd={"interval": 30, "timeout": 30}),
        "dpd.timeout",
        ["longer than interval"],
        id="vpn-dpd-timeout-equal",
    ),
    pytest.param(
        VPN,
        vpn(dpd={"interval": 300}),
        "dpd.timeout",
        ["longer than interval 300"],
        id="vpn-dpd-default-timeout-shorter",
    ),
    # --- unknown fields and wrong types -------------------------------------------------
    pytest.param(VPC, {**VPC_BASE, "colour": "blue"}, "colour", ["unknown field"], id="unknown-top"),
    pytest.param(VPC, dhcp(colour="blue"), "dhcp.colour", ["unknown field"], id="unknown-dhcp"),
    pytest.param(DirectConnect, bgp(colour="blue"), "bgp.colour", ["unknown field"], id="unknown-bgp"),
    pytest.param(VPN, vpn(ike={"colour": "blue"}), "ike.colour", ["unknown field"], id="unknown-ike"),
    pytest.param(
        Attachment, {**ATT, "ipaddress": "10.0.0.5/24"}, "ipaddress", ["unknown field"], id="unknown-typo"
    ),
    pytest.param(VPC, {**VPC_BASE, "mtu": "big"}, "mtu", ["integer", "'big'"], id="type-mtu-string"),
    pytest.param(VPC, {**VPC_BASE, "mtu": 1500.5}, "mtu", ["integer"], id="type-mtu-fraction"),
    pytest.param(VPC, {**VPC_BASE, "name": 123}, "name", ["string"], id="type-name-int"),
    pytest.param(VPC, {**VPC_CIDR, "dhcp": "yes"}, "dhcp", ["dictionary"], id="type-dhcp-string"),
    pytest.param(VPC, dhcp(lease_time="long"), "dhcp.lease_time", ["integer"], id="type-lease-string"),
    pytest.param(VPC, dhcp(dns_servers="10.0.0.1"), "dhcp.dns_servers", ["tuple"], id="type-dns-string"),
    pytest.param(
        DirectConnect,
        {**DX, "bandwidth_mbps": [1000]},
        "bandwidth_mbps",
        ["integer"],
        id="type-bandwidth-list",
    ),
    pytest.param(VPN, vpn(remote_cidrs="192.168.0.0/24"), "remote_cidrs", ["tuple"], id="type-remote-string"),
    # Digits of other scripts are digits to a regular expression's \d, not to an IPv4 address.
    pytest.param(Attachment, {**ATT, "ip_mode": "static", "ip_address": "10.0.0.\u0665/24"}, "ip_address",
                 ["IPv4 address"], id="ip-arabic-indic-digit"),
    pytest.param(VPC, dhcp(gateway="10.0.0.\u0661"), "dhcp.gateway", ["IPv4 address"], id="gateway-arabic-indic-digit"),
    pytest.param(
        DirectConnect,
        bgp(customer_asn=True),
        "bgp.customer_asn",
        ["integer"],
        id="type-asn-bool",
    ),
]


@pytest.mark.parametrize(("model", "data", "path", "words"), REJECTED)
def test_rejected(model: type[BaseModel], data: Any, path: str, words: list[str]) -> None:
    problems = problems_of(model, data)
    assert [p for p, _ in problems] == [path], problems
    message = problems[0][1]
    for w in words:
        assert w in message, f"{w!r} not in {message!r}"


# Boundary and default values the contract allows.
ACCEPTED = [
    pytest.param(VPC, {**VPC_BASE, "name": "a"}, id="vpc-name-1"),
    pytest.param(VPC, {**VPC_BASE, "name": "a" * 63}, id="vpc-name-63"),
    pytest.param(VPC, {**VPC_BASE, "name": "0-prod-9"}, id="vpc-name-charset"),
    pytest.param(VPC, {"name": "m", "scope": "multi_region"}, id="vpc-multi-region"),
    pytest.param(VPC, {**VPC_BASE, "mtu": 576}, id="vpc-mtu-576"),
    pytest.param(VPC, {**VPC_BASE, "mtu": 9000}, id="vpc-mtu-9000"),
    pytest.param(VPC, {**VPC_BASE, "cidr": "192.168.10.0/29"}, id="vpc-cidr-29"),
    pytest.param(VPC, dhcp(lease_time=120), id="dhcp-lease-120"),
    pytest.param(VPC, dhcp(lease_time=604800), id="dhcp-lease-604800"),
    pytest.param(VPC, dhcp(range_start="10.0.0.1", range_end="10.0.0.253"), id="dhcp-range-full"),
    pytest.param(VPC, dhcp(range_start="10.0.0.7", range_end="10.0.0.7"), id="dhcp-range-single"),
    pytest.param(
        VPC, dhcp(gateway="10.0.0.1", server_ip="10.0.0.2", dns_servers=["10.0.0.1"]), id="dhcp-all-fields"
    ),
    pytest.param(Attachment, ATT, id="att-minimal"),
    pytest.param(Attachment, {**ATT, "ip_mode": "static", "ip_address": "10.0.0.5/24"}, id="att-static"),
    pytest.param(Attachment, {**ATT, "ip_mode": "dhcp"}, id="att-dhcp-dynamic"),
    pytest.param(Attachment, {**ATT, "ip_mode": "dhcp", "ip_address": "10.0.0.5/24"}, id="att-dhcp-reserved"),
    pytest.param(Attachment, {**ATT, "ip_mode": "dhcp", "ip_address": "10.0.0.5/24", "port_security": True},
                 id="att-port-security-reserved"),
    pytest.param(Attachment, {**ATT, "port_security": True,
                              "allowed_addresses": ["0.0.0.0/0", *(f"10.0.{i}.1" for i in range(9))]},
                 id="att-port-security-ten-allowed"),
    pytest.param(
        Attachment, {**ATT, "workload_kind": "pod", "mac_address": "02:00:00:00:00:01"}, id="att-pod"
    ),
    pytest.param(DirectConnect, DX, id="dx-bw-1000"),
    pytest.param(DirectConnect, {**DX, "bandwidth_mbps": 100000}, id="dx-bw-100000"),
    pytest.param(DirectConnect, {**DX, "partner": "megaport", "service_key": "mp-key-1"}, id="dx-megaport"),
    pytest.param(DirectConnect, DX_L2, id="dx-layer2-untagged"),
    pytest.param(DirectConnect, {**DX_L2, "vlan": 2}, id="dx-vlan-2"),
    pytest.param(DirectConnect, {**DX_L2, "vlan": 4093}, id="dx-vlan-4093"),
    pytest.param(DirectConnect, bgp(customer_asn=1), id="dx-asn-1"),
    pytest.param(DirectConnect, bgp(customer_asn=4294967294), id="dx-asn-4294967294"),
    pytest.param(
        DirectConnect, bgp(peering_cidr="169.254.0.0/30", customer_ip="169.254.0.2"), id="dx-peering-30"
    ),
    pytest.param(
        DirectConnect,
        bgp(peering_cidr="169.254.0.0/31", customer_ip="169.254.0.0", provider_ip="169.254.0.1"),
        id="dx-peering-31",
    ),
    pytest.param(VPN, vpn(pre_shared_key="abcdefgh"), id="vpn-psk-8"),
    pytest.param(VPN, vpn(pre_shared_key="A_b.9" + "x" * 59), id="vpn-psk-64"),
    pytest.param(VPN, vpn(ike={"lifetime": 900}, esp={"lifetime": 900}), id="vpn-lifetimes-900"),
    pytest.param(VPN, vpn(ike={"lifetime": 28800}, esp={"lifetime": 3600}), id="vpn-lifetimes-max"),
    pytest.param(VPN, vpn(dpd={"interval": 10, "timeout": 20}), id="vpn-dpd-10-20"),
    pytest.param(
        VPN,
        vpn(dpd={"interval": 10, "timeout": 11}),
        id="vpn-dpd-10-11",
    ),
]


@pytest.mark.parametrize(("model", "data"), ACCEPTED)
def test_accepted(model: type[BaseModel], data: Any) -> None:
    parse(model, data)


def test_vpc_defaults_and_computed_server_ip() -> None:
    v = parse(VPC, dhcp())
    assert (v.scope, v.mtu, v.dhcp.lease_time if v.dhcp else None) == ("single_region", 1500, 3600)
    assert v.dhcp_server_ip == "10.0.0.254"  # last usable address of the cidr


def test_mac_is_normalised_to_lowercase() -> None:
    a = parse(Attachment, {**ATT, "mac_address": "02:AB:CD:00:00:01"})
    assert a.mac_address == "02:ab:cd:00:00:01"


def test_every_problem_is_reported_with_its_own_path() -> None:
    problems = problems_of(VPC, {"name": "Bad", "region": "us-east", "mtu": 100, "colour": "x"})
    assert sorted(p for p, _ in problems) == ["colour", "mtu", "name"]


def test_prefix_and_string_form() -> None:
    with pytest.raises(ValidationError) as ei:
        parse(VPC, {**VPC_BASE, "mtu": 9001}, prefix="vpcs[2].")
    assert ei.value.first[0] == "vpcs[2].mtu"
    assert str(ei.value).startswith("vpcs[2].mtu: ")


def test_not_a_mapping() -> None:
    problems = problems_of(VPC, ["prod"])
    assert len(problems) == 1 and "dictionary" in problems[0][1]


SECRET_CASES = [
    pytest.param({"pre_shared_key": "hunter2"}, "hunter2", id="psk-too-short"),
    pytest.param({"pre_shared_key": "Tr0ub4dor&3-horse"}, "Tr0ub4dor&3-horse", id="psk-bad-chars"),
    pytest.param({"pre_shared_key": "k" * 70 + "ZZsecretTAIL"}, "ZZsecretTAIL", id="psk-too-long"),
    pytest.param({"pre_shared_key": ["wrongTypeSecret1"]}, "wrongTypeSecret1", id="psk-wrong-type"),
    pytest.param(
        {"pre_shared_key": "Tr0ub4dor&3-horse", "peer_address": "x"},
        "Tr0ub4dor&3-horse",
        id="psk-with-other-error",
    ),
]


@pytest.mark.parametrize(("override", "secret"), SECRET_CASES)
def test_psk_never_appears_in_errors(override: dict[str, Any], secret: str) -> None:
    with pytest.raises(ValidationError) as ei:
        parse(VPN, vpn(**override))
    assert "pre_shared_key" in [p for p, _ in ei.value.problems]
    assert secret not in str(ei.value)
    assert secret not in repr(ei.value.problems)


@pytest.mark.parametrize("field", ["service_key", "md5_key"])
def test_other_secrets_never_appear_in_errors(field: str) -> None:
    secret = "S" * 200 + "tail-of-secret"
    data = (
        {**DX, "partner": "megaport", "service_key": secret}
        if field == "service_key"
        else bgp(md5_key=secret)
    )
    with pytest.raises(ValidationError) as ei:
        parse(DirectConnect, data)
    assert "tail-of-secret" not in str(ei.value) and "SSSS" not in str(ei.value)


def test_secrets_not_in_repr() -> None:
    v = parse(VPN, VPN_BASE)
    assert PSK not in repr(v)


def test_vpn_needs_a_key() -> None:
    problems = problems_of(VPN, {k: v for k, v in VPN_BASE.items() if k != "pre_shared_key"})
    assert problems[0][0] == "pre_shared_key"
