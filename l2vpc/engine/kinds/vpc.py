"""VPCs: a name unique per tenant, a VNI from the counter, the region and scope rules, and the
host of the DHCP server.

A VPC needs no host: it is realized where its attachments land. A scope change bumps
`scope_epoch` (every attached workload restarts); a cidr change re-claims the members'
addresses inside the new cidr.
"""

from __future__ import annotations

from typing import Any

from l2vpc.engine import allocator as alloc
from l2vpc.engine.errors import ConflictError, ValidationError
from l2vpc.engine.kinds.base import Kind
from l2vpc.engine.kinds.context import Context, check_rules
from l2vpc.engine.model import VPC, VPN, DirectConnect, parse
from l2vpc.engine.placement import place_dhcp
from l2vpc.engine.store.base import StoredObject
from l2vpc.engine.topology import Topology


class VpcKind(Kind[VPC]):
    name = "vpc"
    model = VPC
    id_prefix = "vpc"
    computed = frozenset({"id", "vni", "status", "scope_epoch", "dhcp_host"})

    def create(self, cx: Context, data: dict[str, Any]) -> VPC:
        ident = self.new_id()
        vpc = parse(VPC, {**data, "id": ident})
        cx.claim_name("vpc", vpc.name, ident)
        vpc = vpc.model_copy(update={"vni": alloc.allocate_vni(cx.tx, ident)})
        check_rules(Topology(hosts=cx.region_hosts(), vpcs={ident: vpc}), ident)
        self.insert(cx, vpc, ident)
        return vpc

    def update(self, cx: Context, so: StoredObject, cur: VPC, data: dict[str, Any]) -> VPC:
        tx = cx.tx
        new = parse(VPC, data)
        if cur.scope == new.scope == "single_region" and cur.region != new.region:
            raise ValidationError(
                f"changing the region of a single_region VPC ({cur.region} → {new.region}) needs a new VPC",
                path="region",
            )
        if new.name != cur.name:
            tx.release_owner(cur.id, pool=cx.name_pool("vpc"))
            cx.claim_name("vpc", new.name, cur.id)
        if new.scope != cur.scope:
            new = new.model_copy(update={"scope_epoch": cur.scope_epoch + 1})
        members = cx.members(cur.id)
        hosts = cx.hosts()
        refs = tx.allocations(alloc.pool_refs(cur.id))
        topo = Topology(hosts=hosts, vpcs={cur.id: new}, attachments={a.id: a for a in members},
                        direct_connects={d.id: d for d in cx.objects("direct_connect", DirectConnect) if d.id in refs},
                        vpns={v.id: v for v in cx.objects("vpn", VPN) if v.id in refs})
        if new.scope == "single_region" and cur.scope == "multi_region":
            away = sorted(f"{a.workload} on {a.host} ({hosts[a.host].region})" for a in members
                          if a.host in hosts and hosts[a.host].region != new.region)
            if away:
                raise ValidationError(
                    f"cannot become single_region in {new.region!r}: attachments on hosts of other regions: "
                    + ", ".join(away), path="scope")
        if new.cidr != cur.cidr:
            # Reserved addresses belong to the old cidr: re-claim them inside the new one.
            for a in members:
                if a.ip_address:
                    tx.release_owner(a.id, pool=alloc.pool_ip(cur.id))
        check_rules(topo, cur.id)
        if new.cidr != cur.cidr:
            for a in members:
                if a.ip_address:
                    alloc.reserve_ip(tx, cur.id, a.ip_address.split("/")[0], a.id)
        new = place_dhcp(new, members, hosts)
        self.write(cx, so, new)
        return new

    def delete(self, cx: Context, so: StoredObject, cur: VPC) -> None:
        users = (sorted(cx.tx.allocations(alloc.pool_members(cur.id)))
                 + sorted(cx.tx.allocations(alloc.pool_refs(cur.id))))
        if users:
            raise ConflictError(f"VPC {cur.name!r} is still used by {', '.join(users[:10])}; delete those first")
        super().delete(cx, so, cur)
