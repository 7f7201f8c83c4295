"""Names of what agents create on a host, derived here so the engine, agents, lab and tests agree.

Everything an agent creates on a host starts with DEVICE_PREFIX (`l2`); anything else there is
foreign. Host devices fit IFNAMSIZ (15 characters). Namespaces carry a per-driver `prefix` in
front (several simulated hosts, or test runs, share one machine). Running hosts have devices of
these names: a change here is a migration, not a rename.

    segment        bridge l2b<vni>, VXLAN l2x<vni>
    port           host veth l2p<id tail>; its peer net1..net10 in namespace <prefix>l2w-<workload>
                   (a Pod's: in the namespace its runtime made); a virtual server's tap l2t<id tail>
    DHCP server    host veth l2d<vni>; its peer dhcp0 in namespace <prefix>l2d-<vni>
    edge router    l2eb<tag> hand-off bridge, l2eh<tag> hand-off veth, l2ev<tag> VPC veth;
                   layer 3: namespace <prefix>l2e-<tag> holding dx0 (peering) and vpc0 (gateway)
    VPN gateway    host veth l2v<id tail>; namespace <prefix>l2v-<id tail> holding vpc0 and ext0
"""

from __future__ import annotations

import hashlib
import re

DEVICE_PREFIX = "l2"

# -- segments and ports ------------------------------------------------------------------------


def bridge_name(vni: int) -> str:
    return f"{DEVICE_PREFIX}b{vni}"


def vxlan_name(vni: int) -> str:
    return f"{DEVICE_PREFIX}x{vni}"


def port_device_name(port_id: str) -> str:
    """Host side of an attachment's veth: prefix + a short stable id, within IFNAMSIZ (15)."""
    return f"{DEVICE_PREFIX}p{port_id[-10:]}"


def tap_device_name(port_id: str) -> str:
    """A virtual server's tap, which its hypervisor opens by name (`-netdev tap,ifname=...`):
    prefix + `t` + the id's last 12 characters (15, IFNAMSIZ - 1)."""
    return f"{DEVICE_PREFIX}t{port_id[-12:]}"


def tap_mac(guest_mac: str) -> str:
    """The tap's own MAC: the guest's with the first byte fe (as libvirt does), never the
    guest's own (a bridge port holding the guest's MAC would swallow the guest's frames)."""
    return "fe" + guest_mac[2:]


def workload_netns(workload: str) -> str:
    return f"{DEVICE_PREFIX}w-{workload}"


def workload_netns_name(prefix: str, workload: str) -> str:
    """Namespace of a workload on a host whose driver uses `prefix` (lab: `exec` into it)."""
    return prefix + workload_netns(workload)


# -- workloads a runtime names -----------------------------------------------------------------

MAX_WORKLOAD_NAME = 63
_NOT_NAME = re.compile(r"[^a-z0-9-]+")


def workload_name(text: str) -> str:
    """`text` as a workload name (1-63 lowercase letters, digits and '-', starting and ending
    with a letter or digit): other characters become '-', and a name longer than 63 keeps its
    first 54 characters and gets '-' + 8 hex digits of a hash of the whole, so two long names
    stay apart and the same name always maps the same way."""
    name = _NOT_NAME.sub("-", text.lower()).strip("-")
    if len(name) > MAX_WORKLOAD_NAME:
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        name = f"{name[:54].rstrip('-')}-{digest}"
    return name or "w-" + hashlib.sha256(text.encode()).hexdigest()[:8]


def pod_workload(namespace: str, pod: str) -> str:
    """The workload a Kubernetes Pod is: `<namespace>-<pod name>` (e.g. `default-web-0`)."""
    return workload_name(f"{namespace}-{pod}")


def container_workload(container_id: str) -> str:
    """The workload of a container named by nothing else: `ctr-` + its id's first 12 digits."""
    return workload_name("ctr-" + container_id[:12])


# -- DHCP servers --------------------------------------------------------------------------------

DHCP_SERVER_IFNAME = "dhcp0"  # in the server's namespace: holds server_ip, dnsmasq listens there


def dhcp_device_name(vni: int) -> str:
    return f"{DEVICE_PREFIX}d{vni}"


def dhcp_netns_name(prefix: str, vni: int) -> str:
    return f"{prefix}{DEVICE_PREFIX}d-{vni}"


# -- edge routers (direct connect) ---------------------------------------------------------------

ROUTER_HANDOFF_IF = "dx0"  # in the router namespace: bgp.local_ip, the peering address
ROUTER_VPC_IF = "vpc0"  # in the router namespace: gateway_ip


def edge_tag(edge_id: str) -> str:
    """8 hex digits of a hash of the id: what names an edge router's devices and namespace."""
    return hashlib.sha256(edge_id.encode()).hexdigest()[:8]


def handoff_bridge(tag: str) -> str:
    return f"{DEVICE_PREFIX}eb{tag}"


def handoff_veth(tag: str) -> str:
    return f"{DEVICE_PREFIX}eh{tag}"


def edge_vpc_veth(tag: str) -> str:
    return f"{DEVICE_PREFIX}ev{tag}"


def router_netns(prefix: str, tag: str) -> str:
    return f"{prefix}{DEVICE_PREFIX}e-{tag}"


def router_netns_name(prefix: str, edge_id: str) -> str:
    """The router namespace of a layer-3 edge router of a driver with `prefix`."""
    return router_netns(prefix, edge_tag(edge_id))


# -- VPN gateways --------------------------------------------------------------------------------

VPN_VPC_IFNAME = "vpc0"  # in the gateway namespace: gateway_ip, on the VPC bridge
VPN_OUTSIDE_IFNAME = "ext0"  # in the gateway namespace: outside_ip, a macvlan on the outside device


def vpn_short_id(vpn_id: str) -> str:
    return vpn_id[-12:]


def vpn_device_name(vpn_id: str) -> str:
    """The VPN's veth on the VPC bridge, in the host namespace (`l2v` + 12 = IFNAMSIZ - 1)."""
    return f"{DEVICE_PREFIX}v{vpn_short_id(vpn_id)}"


def vpn_netns_name(prefix: str, vpn_id: str) -> str:
    return f"{prefix}{DEVICE_PREFIX}v-{vpn_short_id(vpn_id)}"


# -- recognising our own -------------------------------------------------------------------------

BRIDGE_RE = re.compile(rf"^{DEVICE_PREFIX}b(\d+)$")
VXLAN_RE = re.compile(rf"^{DEVICE_PREFIX}x(\d+)$")
DHCP_RE = re.compile(rf"^{DEVICE_PREFIX}d(\d+)$")
PORT_RE = re.compile(rf"^{DEVICE_PREFIX}p[A-Za-z0-9_-]+$")
TAP_RE = re.compile(rf"^{DEVICE_PREFIX}t[A-Za-z0-9_-]+$")
EDGE_DEVICE_RE = re.compile(rf"^{DEVICE_PREFIX}e[bhv]([0-9a-f]{{8}})$")  # group 1: the edge tag


def owned_device(name: str) -> bool:
    """True for host devices of segments, ports and DHCP servers (which the driver may delete
    when nothing wants them; edge routers' devices answer to EDGE_DEVICE_RE)."""
    return any(r.match(name) for r in (BRIDGE_RE, VXLAN_RE, DHCP_RE, PORT_RE, TAP_RE))
