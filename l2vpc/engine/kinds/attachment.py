"""Attachments: one workload NIC on one VPC.

A workload lives on one host and attaches at most 10 VPCs, once each; its interface names
(net1…net10), MACs and addresses are claimed in store pools. Creates are the hot path of a
large apply: one that names its host (or whose workload already has one) reads only the hosts
it touches, and placement reads the per-host index of attachments for the hosts' load
instead of every attachment.

A Pod's on-demand attachment (Engine.attach_pod) is created with an `owner` and the interface
name its runtime chose (CNI_IFNAME); both are computed fields, so no other caller sets them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from l2vpc.engine import allocator as alloc
from l2vpc.engine.errors import ValidationError
from l2vpc.engine.kinds.base import Kind
from l2vpc.engine.kinds.context import Context, check_rules
from l2vpc.engine.model import Attachment, copy_with, parse
from l2vpc.engine.placement import pick_compute_host
from l2vpc.engine.store.base import HostReport, StoredObject
from l2vpc.engine.topology import Topology
from l2vpc.engine.validation import INTERFACE_NAME_FREE, ONE_ATTACHMENT_PER_VPC
from l2vpc.hostconfig import INTERFACE_NAMES


class AttachmentKind(Kind[Attachment]):
    name = "attachment"
    model = Attachment
    id_prefix = "att"
    computed = frozenset({"id", "status", "interface_name", "owner"})

    def create(self, cx: Context, data: dict[str, Any], *, owner: str | None = None,
               interface_name: str | None = None) -> Attachment:
        """`owner`, `interface_name`: an owned attachment's (Engine.attach_pod), else unset."""
        tx = cx.tx
        ident = self.new_id()
        att = parse(Attachment, {**data, "id": ident, "owner": owner})
        vpc = cx.vpc(att.vpc_id)
        siblings = cx.workload_attachments(att.workload)
        if any(s.vpc_id == vpc.id for s in siblings):
            other = next(s.id for s in siblings if s.vpc_id == vpc.id)
            raise ValidationError(
                f"workload {att.workload!r} is already attached to VPC {vpc.name!r} by attachment {other}",
                path="vpc_id", rule=ONE_ATTACHMENT_PER_VPC)
        host = att.host or next((s.host for s in siblings if s.host), None)
        if host != att.host:
            att = copy_with(att, {"host": host})
        # Placement looks at every host; otherwise the rules only need the hosts this workload
        # touches: read those, not all of them.
        hosts = cx.hosts() if host is None else cx.hosts_named({host, *(s.host for s in siblings if s.host)})
        # The rules before placement: a bad address is reported as such, not as "no compute host
        # is up". A placed host satisfies the host rules (compute, up, the VPC's region).
        check_rules(Topology(hosts=hosts, vpcs={vpc.id: vpc, **{s.vpc_id: cx.vpc(s.vpc_id) for s in siblings}},
                             attachments={ident: att, **{s.id: s for s in siblings}}), ident)
        if host is None:
            sizes = tx.pool_sizes(alloc.pool_on_host(h) for h in hosts)
            load = Counter({h: sizes.get(alloc.pool_on_host(h), 0) for h in hosts})
            host = pick_compute_host(hosts.values(), vpc, load, cx.default_region).name
            att = copy_with(att, {"host": host})
        if interface_name is None:
            ifname = alloc.allocate_interface_name(tx, att.workload, ident)
        else:  # after the rules: the 11th VPC is refused as such, whatever name it asks for
            ifname = self._claim_interface_name(cx, att.workload, interface_name, ident)
        if att.mac_address:
            alloc.reserve_mac(tx, vpc.id, att.mac_address, ident)
            mac = att.mac_address
        else:
            mac = alloc.allocate_mac(tx, vpc.id, ident)
        if att.ip_address:
            alloc.reserve_ip(tx, vpc.id, att.ip_address.split("/")[0], ident)
        tx.claim(alloc.pool_members(vpc.id), ident, ident)  # a new id: free by construction
        tx.claim(alloc.pool_on_host(host), ident, ident)
        att = copy_with(att, {"interface_name": ifname, "mac_address": mac})
        self.insert(cx, att, ident)
        cx.replace_dhcp(vpc, hosts)
        return att

    @staticmethod
    def _claim_interface_name(cx: Context, workload: str, name: str, ident: str) -> str:
        if name not in INTERFACE_NAMES:
            raise ValidationError(f"{name[:20]!r} is not an interface name of a workload; allowed: "
                                  f"{', '.join(INTERFACE_NAMES)}", path="interface_name")
        holder = cx.tx.allocations(alloc.pool_ifname(workload)).get(name)
        if holder is not None:
            raise ValidationError(f"workload {workload!r} already has an interface {name} (attachment {holder}); "
                                  "use a free name", path="interface_name", rule=INTERFACE_NAME_FREE)
        cx.tx.claim(alloc.pool_ifname(workload), name, ident)  # just seen free, under the write lock
        return name

    def update(self, cx: Context, so: StoredObject, cur: Attachment, data: dict[str, Any]) -> Attachment:
        tx = cx.tx
        new = parse(Attachment, data)
        for f in ("vpc_id", "workload", "workload_kind"):
            if getattr(new, f) != getattr(cur, f):
                raise ValidationError(f"changing {f} needs a new attachment", path=f)
        if new.mac_address is None:
            new = new.model_copy(update={"mac_address": cur.mac_address})
        if new.host is None:
            new = new.model_copy(update={"host": cur.host})
        vpc = cx.vpc(cur.vpc_id)
        hosts = cx.hosts()
        siblings = [s for s in cx.workload_attachments(cur.workload) if s.id != cur.id]
        if new.host != cur.host and siblings:
            raise ValidationError(
                f"workload {cur.workload!r} has other attachments on {cur.host}; a workload lives on one host",
                path="host")
        topo = Topology(hosts=hosts, vpcs={vpc.id: vpc, **{s.vpc_id: cx.vpc(s.vpc_id) for s in siblings}},
                        attachments={cur.id: new, **{s.id: s for s in siblings}})
        check_rules(topo, cur.id)
        if new.mac_address != cur.mac_address:
            assert new.mac_address
            tx.release_owner(cur.id, pool=alloc.pool_mac(vpc.id))
            alloc.reserve_mac(tx, vpc.id, new.mac_address, cur.id)
        if new.ip_address != cur.ip_address:
            tx.release_owner(cur.id, pool=alloc.pool_ip(vpc.id))
            if new.ip_address:
                alloc.reserve_ip(tx, vpc.id, new.ip_address.split("/")[0], cur.id)
        if new.host != cur.host:
            if cur.host:
                tx.release_owner(cur.id, pool=alloc.pool_on_host(cur.host))
            if new.host:
                tx.reserve(alloc.pool_on_host(new.host), cur.id, cur.id)
        self.write(cx, so, new)
        cx.replace_dhcp(vpc, hosts)
        return new

    def delete(self, cx: Context, so: StoredObject, cur: Attachment) -> None:
        super().delete(cx, so, cur)
        vpc = cx.find_vpc(cur.vpc_id)
        if vpc is not None:
            cx.replace_dhcp(vpc, cx.hosts())

    def placed_on(self, obj: Attachment) -> str | None:
        return obj.host

    def with_status(self, obj: Attachment, report: HostReport | None) -> Attachment:
        """Active once its host runs the port (a Pod's port: once the Pod is there, which its
        host reports as the port's sandbox)."""
        ports = {p["id"] for p in report.config.get("ports", ())
                 if p.get("workload_kind") != "pod" or p.get("sandbox")} if report else set()
        return obj.model_copy(update={"status": "active" if obj.id in ports else "pending"})

    def same_objects(self, cx: Context, data: Mapping[str, Any]) -> list[str]:
        """An attachment has no name: the workload's attachment to the same VPC."""
        return [a.id for a in cx.workload_attachments(str(data.get("workload"))) if a.vpc_id == data.get("vpc_id")]
