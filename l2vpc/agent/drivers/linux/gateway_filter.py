"""What a gateway namespace lets through: a VPN gateway forwards only between the VPC and its
tunnel, a direct-connect router only between the VPC and the hand-off, and neither answers
anything but its own protocol on the outside. Both namespaces are ours alone.

Each gets one nftables table, `inet l2vpc`, loaded in one transaction (nftables.py) before its
devices exist (~1 ms) and replaced atomically when what it is built from changes (the VPN's
peer; the router's peer or prefixes), gone with the namespace. Policies drop; rules are stateless (no conntrack: no per-flow state to fill, no
cost on the forwarding path). The table's comment is a digest of the rules, so facts can tell
in one netlink request whether the rules in place are the ones wanted.

    VPN gateway (vpc0 | ext0 | ipsec0, kernel-libipsec's TUN device, created by charon)
      forward  vpc0 <-> ipsec0 only (never between ext0 and the VPC: no cleartext in or out);
               which addresses is the tunnel's business: only remote_cidrs are routed into
               ipsec0, libipsec carries only what its SAs' selectors cover, and reverse-path
               filtering keeps sources honest. So a re-key with new selectors leaves the rules
               alone (replacing rules costs ~10 ms: the kernel waits for the old ones to retire)
      input    on ext0, from peer_address to outside_ip: UDP 500 and 4500 (IKE, ESP-in-UDP);
               echo requests to gateway_ip from the VPC or the tunnel; ICMP errors; lo
    direct-connect router (vpc0 | dx0, the hand-off)
      forward  vpc0 -> dx0 from the VPC's prefixes (its cidr and the advertised ones), and
               dx0 -> vpc0 to them; where to is left to the routes (only the prefixes learned
               over BGP lead to dx0) and where from to reverse-path filtering
      input    on dx0, from peer_ip to the peering address: TCP port 179 either way (BGP);
               echo requests to gateway_ip from the VPC; ICMP errors; lo

Reverse-path filtering is strict (rp_filter 1 for `all` and `default`, set before devices
exist): a packet is accepted only on the interface its source is routed through, so the
outside cannot forge a premises or VPC source, nor a workload a foreign one.
charon (strongSwan 5.9's socket-default) binds its sockets to the wildcard address and has no
option to do otherwise; this table is what keeps its ports closed everywhere but ext0.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from l2vpc.agent.drivers.linux import netns, nftables
from l2vpc.hostconfig import EdgeRouter, VpnGateway
from l2vpc.hostconfig.names import ROUTER_HANDOFF_IF, ROUTER_VPC_IF, VPN_OUTSIDE_IFNAME, VPN_VPC_IFNAME

FAMILY, TABLE = "inet", "l2vpc"
TUNNEL_IFNAME = "ipsec0"  # kernel-libipsec's TUN device (its first is ipsec0; one charon per namespace)
IKE_PORTS = (500, 4500)
BGP_PORT = 179
# Set before any device exists, so every device starts strict (`default`), and `all` keeps
# them strict (the kernel applies the larger of `all` and the device's own value).
STRICT_RP_FILTER = {"net/ipv4/conf/all/rp_filter": "1", "net/ipv4/conf/default/rp_filter": "1"}
_ICMP_ERRORS = "icmp type { destination-unreachable, time-exceeded, parameter-problem } accept"


@dataclass(frozen=True, slots=True)
class Ruleset:
    digest: str  # in the table's comment
    text: str  # an nft script that creates the table


def _nets(cidrs: Iterable[str]) -> str:
    """An nft set of networks: merged first (nft refuses overlapping intervals in a set)."""
    nets = ipaddress.collapse_addresses(ipaddress.IPv4Interface(c).network for c in cidrs)
    return "{ " + ", ".join(str(n) for n in nets) + " }"


def _ip(address: str) -> str:
    return str(ipaddress.IPv4Interface(address).ip)


def _ruleset(forward: list[str], inbound: list[str]) -> Ruleset:
    body = [
        "\tchain forward {",
        "\t\ttype filter hook forward priority filter; policy drop;",
        *(f"\t\t{rule}" for rule in forward),
        "\t}",
        "\tchain input {",
        "\t\ttype filter hook input priority filter; policy drop;",
        '\t\tiif "lo" accept',
        *(f"\t\t{rule}" for rule in inbound),
        f"\t\t{_ICMP_ERRORS}",
        "\t}",
    ]
    digest = hashlib.sha256("\n".join(body).encode()).hexdigest()[:16]
    return Ruleset(digest, "\n".join([f"table {FAMILY} {TABLE} {{", f'\tcomment "{digest}"', *body, "}"]) + "\n")


@functools.lru_cache(maxsize=256)  # facts ask for it on every read
def vpn_gateway(gw: VpnGateway) -> Ruleset:
    vpc, ext, tun = VPN_VPC_IFNAME, VPN_OUTSIDE_IFNAME, TUNNEL_IFNAME
    ports = ", ".join(str(p) for p in IKE_PORTS)
    return _ruleset(
        forward=[f'iifname "{vpc}" oifname "{tun}" accept', f'iifname "{tun}" oifname "{vpc}" accept'],
        inbound=[
            f'iifname "{ext}" ip saddr {_ip(gw.peer_address)} ip daddr {_ip(gw.outside_ip)} '
            f"udp dport {{ {ports} }} accept",
            f'iifname {{ "{vpc}", "{tun}" }} ip daddr {_ip(gw.gateway_ip)} icmp type echo-request accept',
        ],
    )


@functools.lru_cache(maxsize=256)
def edge_router(e: EdgeRouter) -> Ruleset:
    assert e.bgp is not None and e.gateway_ip is not None
    vpc, dx = ROUTER_VPC_IF, ROUTER_HANDOFF_IF
    prefixes = _nets([e.gateway_ip, *e.bgp.advertised])
    peer, local = _ip(e.bgp.peer_ip), _ip(e.bgp.local_ip)
    return _ruleset(
        forward=[
            f'iifname "{vpc}" oifname "{dx}" ip saddr {prefixes} accept',
            f'iifname "{dx}" oifname "{vpc}" ip daddr {prefixes} accept',
        ],
        inbound=[
            f'iifname "{dx}" ip saddr {peer} ip daddr {local} tcp dport {BGP_PORT} accept',
            f'iifname "{dx}" ip saddr {peer} ip daddr {local} tcp sport {BGP_PORT} accept',
            f'iifname "{vpc}" ip daddr {_ip(e.gateway_ip)} icmp type echo-request accept',
        ],
    )


def install(ns: str, rules: Ruleset, *, fresh: bool = False) -> None:
    """Strict reverse-path filtering and `rules` in namespace `ns`, replacing the rules before
    in one transaction (`fresh`: a namespace just made, with none). Raises nftables.NftError."""
    netns.sysctl(ns, STRICT_RP_FILTER)
    # Declaring the table first makes the delete succeed when there is none.
    replace = "" if fresh else f"table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n"
    nftables.load(ns, replace + rules.text)


def in_place(ns: str) -> str | None:
    """The digest of the rules in place in namespace `ns`, or None when there are none or
    reverse-path filtering is not strict."""
    try:
        with netns.inside(ns), open("/proc/sys/net/ipv4/conf/all/rp_filter") as f:
            if f.read().strip() != "1":
                return None
        return nftables.table_comment(ns, FAMILY, TABLE)
    except FileNotFoundError:  # the namespace is gone
        return None
