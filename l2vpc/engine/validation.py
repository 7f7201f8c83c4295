"""Rules across objects: names, addresses, workloads, regions, placement targets.

`validate_topology` returns every problem as (path, message); the path starts with the
object's label (the file path `attachments[3]` from the CLI, or `vpc "prod"` by default) and
ends with the field. Runs in O(objects) so it can check 50,000 attachments per plan.

The rules a workload's attachments can break carry a rule id (RULES, on errors.Problem), so
that clients tell them apart without reading messages: the controller sends it in its error
trailer and the CNI plugin maps it to its error codes (the 11th VPC → "too many VPCs").
"""

from __future__ import annotations

import functools
import ipaddress
from collections import defaultdict
from collections.abc import Mapping

from l2vpc.engine.addresses import ip_int, ip_network, network_bounds, usable
from l2vpc.engine.errors import Problem as RuleProblem
from l2vpc.engine.model import MAX_VPCS_PER_WORKLOAD, VPC, Attachment
from l2vpc.engine.topology import Topology

Problem = tuple[str, str]

# Rule ids (see the module docstring). Stable: clients map them.
VPCS_PER_WORKLOAD = "vpcs_per_workload"  # at most 10 VPCs per workload
ONE_ATTACHMENT_PER_VPC = "one_attachment_per_vpc"  # a workload attaches a VPC once
ONE_HOST_PER_WORKLOAD = "one_host_per_workload"
INTERFACE_NAME_FREE = "interface_name_free"  # an asked-for interface name is the workload's only once
OVERLAPPING_SUBNETS = "overlapping_subnets"  # two interfaces of a workload on overlapping cidrs
UNIQUE_IP = "unique_ip"
IP_IN_CIDR = "ip_in_cidr"  # a static address: inside the VPC cidr, usable, not the DHCP server's
UNIQUE_MAC = "unique_mac"
DHCP_NEEDS_SERVER = "dhcp_needs_server"
HOST_PLACEMENT = "host_placement"  # a known compute host, in the VPC's region
RULES = frozenset({VPCS_PER_WORKLOAD, ONE_ATTACHMENT_PER_VPC, ONE_HOST_PER_WORKLOAD, INTERFACE_NAME_FREE,
                   OVERLAPPING_SUBNETS, UNIQUE_IP, IP_IN_CIDR, UNIQUE_MAC, DHCP_NEEDS_SERVER, HOST_PLACEMENT})


def _label(labels: Mapping[str, str], kind: str, ident: str, fallback: str) -> str:
    """The object's name in paths; an empty label means "the object being changed" (bare fields)."""
    return labels[ident] if ident in labels else f'{kind} "{fallback}"'


def validate_topology(topo: Topology, labels: Mapping[str, str] | None = None) -> list[Problem]:
    labels = labels or {}
    problems: list[Problem] = []

    def add(problem: Problem, rule: str = "") -> None:
        problems.append(RuleProblem(problem[0].lstrip("."), problem[1], rule))

    # --- hosts -------------------------------------------------------------------------
    seen_underlay: dict[str, str] = {}
    for h in topo.hosts.values():
        where = _label(labels, "host", h.name, h.name)
        other = seen_underlay.setdefault(h.underlay_ip, h.name)
        if other != h.name:
            add((f"{where}.underlay_ip", f"{h.underlay_ip} is already used by host {other}"))

    # --- VPCs --------------------------------------------------------------------------
    names: dict[str, str] = {}
    vnis: dict[int, str] = {}
    regions: set[str] | None = None  # of the hosts, computed once when needed (a file: 1,000 VPCs)
    for v in topo.vpcs.values():
        where = _label(labels, "vpc", v.id, v.name)
        other = names.setdefault(v.name, v.id)
        if other != v.id:
            add((f"{where}.name", f"duplicate name: a VPC named {v.name!r} already exists ({labels.get(other) or other})"))
        if v.vni is not None:
            prev = vnis.setdefault(v.vni, v.name)
            if prev != v.name:
                add((f"{where}.vni", f"VNI {v.vni} is already used by VPC {prev!r}"))
        # Only where this VPC is checked itself (a file, or the VPC being changed): when an
        # attachment is checked, the topology holds just the hosts that attachment touches.
        checked = not labels or v.id in labels
        if checked and v.scope == "single_region" and v.region and topo.hosts:
            if regions is None:
                regions = topo.regions
            if v.region not in regions:
                add((f"{where}.region", f"no host is in region {v.region!r}; known regions: {', '.join(sorted(regions))}"))

    # --- attachments -------------------------------------------------------------------
    ips: dict[tuple[str, str], str] = {}
    macs: dict[tuple[str, str], str] = {}
    per_workload: dict[str, list[Attachment]] = defaultdict(list)
    for a in topo.attachments.values():
        vpc = topo.vpcs.get(a.vpc_id)
        where = _label(labels, "attachment", a.id, f"{a.workload}/{vpc.name if vpc else a.vpc_id}")
        per_workload[a.workload].append(a)
        if vpc is None:
            add((f"{where}.vpc_id", f"no VPC with id {a.vpc_id!r}"))
            continue
        if a.host is not None:
            host = topo.hosts.get(a.host)
            if host is None:
                add((f"{where}.host", f"no host named {a.host!r}"), HOST_PLACEMENT)
            elif host.role != "compute":
                add((f"{where}.host", f"{a.host} is an edge host; workloads run on compute hosts"), HOST_PLACEMENT)
            elif vpc.scope == "single_region" and host.region != vpc.region:
                add((
                    f"{where}.host",
                    f"{a.host} is in region {host.region!r} but VPC {vpc.name!r} is single_region in "
                    f"{vpc.region!r}; use a host there or make the VPC multi_region",
                ), HOST_PLACEMENT)
        if a.mac_address:
            prev = macs.setdefault((vpc.id, a.mac_address), a.workload)
            if prev != a.workload:
                add((f"{where}.mac_address", f"{a.mac_address} is already used by {prev!r} in VPC {vpc.name!r}"),
                    UNIQUE_MAC)
        if a.ip_mode == "dhcp" and vpc.dhcp is None:
            add((f"{where}.ip_mode", f"dhcp needs VPC {vpc.name!r} to have a dhcp block"), DHCP_NEEDS_SERVER)
        if a.ip_address:
            for p in _address_problems(where, a, vpc):
                add(p, IP_IN_CIDR)
            ip = a.ip_address.split("/")[0]
            prev = ips.setdefault((vpc.id, ip), a.workload)
            if prev != a.workload:
                add((f"{where}.ip_address", f"{ip} is already used by {prev!r} in VPC {vpc.name!r}"), UNIQUE_IP)

    for workload, atts in per_workload.items():
        if len(atts) < 2:
            continue  # every rule below is about two or more of a workload's attachments
        # Blame the attachment being changed (empty label) when there is one, else the newest.
        atts.sort(key=lambda a: (labels.get(a.id) == "", a.interface_name is None, a.id))
        if len(atts) > MAX_VPCS_PER_WORKLOAD:
            last = atts[-1]
            where = _label(labels, "attachment", last.id, f"{workload}/{last.vpc_id}")
            add((
                f"{where}.workload",
                f"workload {workload!r} would attach {len(atts)} VPCs; at most {MAX_VPCS_PER_WORKLOAD} are allowed",
            ), VPCS_PER_WORKLOAD)
        vpc_ids = [a.vpc_id for a in atts]
        if len(set(vpc_ids)) != len(vpc_ids):
            dup = next(v for v in vpc_ids if vpc_ids.count(v) > 1)
            a = [x for x in atts if x.vpc_id == dup][-1]
            where = _label(labels, "attachment", a.id, f"{workload}/{dup}")
            add((f"{where}.vpc_id", f"workload {workload!r} is already attached to this VPC"), ONE_ATTACHMENT_PER_VPC)
        placed = {a.host for a in atts if a.host}
        if len(placed) > 1:
            a = atts[-1]
            where = _label(labels, "attachment", a.id, f"{workload}/{a.vpc_id}")
            add((f"{where}.host", f"workload {workload!r} is on several hosts ({', '.join(sorted(placed))}); a workload lives on one host"),
                ONE_HOST_PER_WORKLOAD)
        cidrs = [(a, cidr) for a in atts if a.vpc_id in topo.vpcs and (cidr := topo.vpcs[a.vpc_id].cidr)]
        for i, (a, n) in enumerate(cidrs):
            lo, hi, _ = network_bounds(n)
            for b, m in cidrs[i + 1 :]:  # b comes later in the blame order
                other_lo, other_hi, _ = network_bounds(m)
                if a.vpc_id != b.vpc_id and lo <= other_hi and other_lo <= hi:  # the two ranges overlap
                    where = _label(labels, "attachment", b.id, f"{workload}/{b.vpc_id}")
                    add((f"{where}.vpc_id", f"workload {workload!r} would have overlapping subnets "
                         f"{ip_network(n)} and {ip_network(m)} on two interfaces"), OVERLAPPING_SUBNETS)

    # --- direct connects and VPNs ------------------------------------------------------
    locations = {h.location for h in topo.hosts.values() if h.role == "edge" and h.location}
    for d in topo.direct_connects.values():
        vpc = topo.vpcs.get(d.vpc_id)
        where = _label(labels, "direct_connect", d.id, d.name)
        if vpc is None:
            add((f"{where}.vpc_id", f"no VPC with id {d.vpc_id!r}"))
            continue
        if topo.hosts and d.location not in locations:
            add((f"{where}.location", f"no edge host serves location {d.location!r}; known: {', '.join(sorted(locations)) or 'none'}"))
        if d.mode == "layer3":
            if vpc.cidr is None:
                add((f"{where}.mode", f"layer3 needs VPC {vpc.name!r} to have a cidr"))
                continue
            net = ip_network(vpc.cidr)
            if d.gateway_ip and not usable(net, d.gateway_ip):
                add((f"{where}.gateway_ip", f"{d.gateway_ip} is not a usable address of VPC cidr {vpc.cidr}"))
            if d.bgp and d.bgp.peering_cidr and ipaddress.IPv4Network(d.bgp.peering_cidr).overlaps(net):
                add((f"{where}.bgp.peering_cidr", f"{d.bgp.peering_cidr} overlaps VPC cidr {vpc.cidr}"))
    for vpn in topo.vpns.values():
        vpc = topo.vpcs.get(vpn.vpc_id)
        where = _label(labels, "vpn", vpn.id, vpn.name)
        if vpc is None:
            add((f"{where}.vpc_id", f"no VPC with id {vpn.vpc_id!r}"))
            continue
        if vpc.cidr is None:
            add((f"{where}.vpc_id", f"a VPN needs VPC {vpc.name!r} to have a cidr"))
            continue
        net = ip_network(vpc.cidr)
        for i, r in enumerate(vpn.remote_cidrs):
            if ipaddress.IPv4Network(r).overlaps(net):
                add((f"{where}.remote_cidrs[{i}]", f"{r} overlaps VPC cidr {vpc.cidr}"))
        if vpn.gateway_ip and not usable(net, vpn.gateway_ip):
            add((f"{where}.gateway_ip", f"{vpn.gateway_ip} is not a usable address of VPC cidr {vpc.cidr}"))
    return problems


def _address_problems(where: str, a: Attachment, vpc: VPC) -> list[Problem]:
    assert a.ip_address is not None
    if vpc.cidr is None:
        return [(f"{where}.ip_address", f"VPC {vpc.name!r} has no cidr; set one or use ip_mode none")]
    # Integers, not ipaddress objects: this runs once per attachment of a file or batch.
    address, _, prefix = a.ip_address.partition("/")
    n = ip_int(address)
    lo_net, hi_net, prefixlen = network_bounds(vpc.cidr)
    if int(prefix) != prefixlen or not lo_net <= n <= hi_net:
        if lo_net <= n <= hi_net:
            return [(f"{where}.ip_address", f"{a.ip_address} must use the VPC prefix length /{prefixlen}")]
        return [(f"{where}.ip_address", f"{a.ip_address} is outside VPC cidr {vpc.cidr}")]
    if n in (lo_net, hi_net):
        return [(f"{where}.ip_address", f"{address} is the network or broadcast address of {ip_network(vpc.cidr)}")]
    out = []
    if vpc.dhcp is not None:
        # Integers, as above; the range's text is canonical (validated), as ipaddress prints it.
        start, end = vpc.dhcp.range_start, vpc.dhcp.range_end
        if a.ip_mode == "static" and _within(start, end, n):
            out.append((f"{where}.ip_address", f"{address} lies in the DHCP range {start}-{end}, where the server may "
                        "lease it to another workload; use an address outside the range or ip_mode dhcp (a reservation)"))
        if address == vpc.dhcp_server_ip:
            out.append((f"{where}.ip_address", f"{address} is the VPC's DHCP server address"))
        if address == vpc.dhcp.gateway:
            out.append((f"{where}.ip_address", f"{address} is the VPC's gateway address"))
    return out


@functools.lru_cache(maxsize=4096)
def _bounds(start: str, end: str) -> tuple[int, int]:
    return ip_int(start), ip_int(end)


def _within(start: str, end: str, n: int) -> bool:
    """`n` lies in the range start-end (a VPC's DHCP range: the same few per batch, memoized)."""
    lo, hi = _bounds(start, end)
    return lo <= n <= hi
