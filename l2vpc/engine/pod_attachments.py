"""A Pod's on-demand attachments: its host's agent asks for them at CNI ADD (through the
controller's AttachPod) and deletes them at DEL.

A Pod names a VPC without knowing its tenant: by id, or by a name no other tenant uses (names
are unique per tenant only, so a name is looked up in the VPC list). The attachment is created
in that VPC's tenant with every rule of a create (kinds/attachment.py), owned by the Pod, under
the interface name its runtime chose. With it comes the port exactly as the host's next push
will carry it (a static port's routes, a DHCP port's digest of its VPC's offer), so that the
agent can set the port up at once instead of waiting for that push, which then finds nothing to
change.
"""

from __future__ import annotations

from l2vpc.engine import allocator as alloc
from l2vpc.engine.errors import NotFoundError, ValidationError
from l2vpc.engine.kinds import KINDS
from l2vpc.engine.kinds.attachment import AttachmentKind
from l2vpc.engine.kinds.context import Context
from l2vpc.engine.model import VPC, VPN, Attachment, DirectConnect
from l2vpc.engine.store.base import StoredObject
from l2vpc.engine.topology import Topology, TopologyIndex, dhcp_options, make_port
from l2vpc.hostconfig import HostConfig, Port


def find_vpc(cx: Context, ref: str) -> StoredObject:
    """The VPC `ref` names: an id, else a name unique across tenants (of `cx.tenant` only when
    it has one). NotFoundError when none; ValidationError when two tenants use the name."""
    tenant = cx.tenant or None
    so = cx.tx.get("vpc", ref, tenant=tenant)
    if so is not None:
        return so
    named = [o for o in cx.tx.list("vpc", tenant=tenant) if o.data.get("name") == ref]
    if len(named) > 1:
        raise ValidationError(f"{len(named)} VPCs of different tenants are named {ref!r}; name it by its id",
                              path="vpc")
    if not named:
        raise NotFoundError("vpc", ref)
    return named[0]


def attach(cx: Context, vpc_ref: str, *, host: str, workload: str, interface_name: str | None, owner: str,
           ip_address: str | None) -> tuple[Attachment, Port]:
    """Create (or, for a retry by the same owner, find) the Pod's attachment; see Engine.attach_pod."""
    so = find_vpc(cx, vpc_ref)
    cx = Context(cx.tx, cx.secrets, so.tenant, cx.default_region)  # the VPC's tenant
    vpc = VPC.model_validate(so.data)
    att = next((a for a in cx.workload_attachments(workload) if a.vpc_id == vpc.id and a.owner == owner), None)
    if att is None:
        kind = KINDS["attachment"]
        assert isinstance(kind, AttachmentKind)
        mode = "static" if ip_address else ("dhcp" if vpc.dhcp is not None else "none")
        data = {"vpc_id": vpc.id, "workload": workload, "workload_kind": "pod", "host": host, "ip_mode": mode,
                **({"ip_address": ip_address} if ip_address else {})}
        att = kind.create(cx, data, owner=owner, interface_name=interface_name)
    return att, host_port(cx, att, vpc)


def host_port(cx: Context, att: Attachment, vpc: VPC) -> Port:
    """The port of `att` as engine/topology.py projects it onto its host: the routes to the
    prefixes of the VPC's direct connects and VPNs are a static port's, and part of what the
    VPC's DHCP server offers a DHCP port (its `dhcp_options`)."""
    topo = Topology(vpcs={vpc.id: vpc})
    learned: dict[str, tuple[str, ...]] = {}
    if att.ip_mode == "static" or (att.ip_mode == "dhcp" and vpc.dhcp is not None):
        refs = list(cx.tx.allocations(alloc.pool_refs(vpc.id)))
        topo.direct_connects = {d.id: d for d in (cx.load("direct_connect", DirectConnect, so)
                                                  for so in cx.tx.get_many("direct_connect", refs))}
        topo.vpns = {v.id: v for v in (cx.load("vpn", VPN, so) for so in cx.tx.get_many("vpn", refs))}
        edges = {d.edge_host for d in topo.direct_connects.values() if d.edge_host}
        if edges:
            for report in cx.tx.host_reports(edges).values():
                for seen in HostConfig.from_dict(report.config).observations:
                    if seen.learned:
                        learned[seen.id] = tuple(sorted(seen.learned))
    routes = TopologyIndex(topo, learned).routes(vpc.id)
    return make_port(att, vpc, routes, dhcp_options(vpc, routes) if att.ip_mode == "dhcp" else "")
