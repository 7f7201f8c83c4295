"""Direct connects: a VPC extended to the premises through an edge host at an on-ramp
location, routed (layer3: a gateway address in the VPC, a BGP peering net, ASNs) or flat
(layer2).

The edge host is picked among the up edge hosts at the location, least loaded first, and kept
on updates while it is still valid (failover.py moves it when the host goes down).
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from typing import Any

from l2vpc.engine import allocator as alloc
from l2vpc.engine.errors import ValidationError
from l2vpc.engine.kinds.base import Kind, observed
from l2vpc.engine.kinds.context import Context, check_rules
from l2vpc.engine.model import DirectConnect, parse
from l2vpc.engine.placement import pick_edge_host
from l2vpc.engine.store.base import HostReport, StoredObject
from l2vpc.engine.topology import Topology

DEFAULT_PROVIDER_ASN = 64600
REPLACING = ("vpc_id", "location", "partner", "service_key", "mode")  # fields an update may not change


class DirectConnectKind(Kind[DirectConnect]):
    name = "direct_connect"
    model = DirectConnect
    id_prefix = "dx"
    computed = frozenset({"id", "status", "edge_host"})

    def create(self, cx: Context, data: dict[str, Any]) -> DirectConnect:
        ident = self.new_id()
        dx = parse(DirectConnect, {**data, "id": ident})
        cx.claim_name("direct_connect", dx.name, ident)
        dx = self._complete(cx, dx, None)
        self.insert(cx, dx, ident)
        return dx

    def update(self, cx: Context, so: StoredObject, cur: DirectConnect, data: dict[str, Any]) -> DirectConnect:
        new = parse(DirectConnect, data)
        for f in REPLACING:
            if getattr(new, f) != getattr(cur, f):
                raise ValidationError(f"changing {f} needs a new direct connect", path=f)
        cx.tx.release_owner(cur.id)
        cx.claim_name("direct_connect", new.name, cur.id)
        new = self._complete(cx, new, cur)
        self.write(cx, so, new)
        return new

    def _complete(self, cx: Context, dx: DirectConnect, cur: DirectConnect | None) -> DirectConnect:
        """Rules, edge host, addresses and BGP defaults (again on update: everything `dx`
        held was released, so what it keeps is claimed anew)."""
        tx = cx.tx
        vpc = cx.vpc(dx.vpc_id)
        hosts = cx.hosts()
        check_rules(Topology(hosts=hosts, vpcs={vpc.id: vpc}, direct_connects={dx.id: dx}), dx.id)
        load = Counter(d.edge_host for d in cx.objects("direct_connect", DirectConnect) if d.edge_host)
        edge = pick_edge_host(hosts.values(), dx.location, load, cur.edge_host if cur else None)
        update: dict[str, Any] = {"edge_host": edge.name}
        tx.reserve(alloc.pool_refs(vpc.id), dx.id, dx.id)
        if dx.mode == "layer3":
            assert dx.bgp is not None and vpc.cidr
            gw = dx.gateway_ip or alloc.allocate_address(tx, vpc.id, vpc.cidr, dx.id, alloc.vpc_reserved(vpc))
            if dx.gateway_ip:
                alloc.reserve_ip(tx, vpc.id, gw, dx.id, field="gateway_ip")
            bgp = dx.bgp
            peering = bgp.peering_cidr
            if peering is None:
                peering = alloc.allocate_peering(tx, dx.id)
            else:
                holder = tx.allocations("peering").get(peering)
                if holder not in (None, dx.id):
                    raise ValidationError(f"{peering} is already used by {holder}", path="bgp.peering_cidr")
                tx.reserve("peering", peering, dx.id)
            net = ipaddress.IPv4Network(peering)
            usable = [str(a) for a in (net if net.prefixlen == 31 else net.hosts())]
            provider_ip = bgp.provider_ip or next(a for a in usable if a != bgp.customer_ip)
            customer_ip = bgp.customer_ip or next(a for a in usable if a != provider_ip)
            update["gateway_ip"] = gw
            update["bgp"] = bgp.model_copy(update={
                "peering_cidr": peering, "provider_ip": provider_ip, "customer_ip": customer_ip,
                "provider_asn": bgp.provider_asn or DEFAULT_PROVIDER_ASN,
                "advertised_prefixes": bgp.advertised_prefixes or (vpc.cidr,),
            })
        return dx.model_copy(update=update)

    def placed_on(self, obj: DirectConnect) -> str | None:
        return obj.edge_host

    def with_status(self, obj: DirectConnect, report: HostReport | None) -> DirectConnect:
        """`provisioning` until the edge host reports the session, then `active` while it is
        established (or the layer-2 hand-off up), else `down`."""
        seen = observed(report, obj.id)
        state = seen.get("state") if seen else None
        status = "active" if state in ("established", "up") else "down" if state else "provisioning"
        return obj.model_copy(update={"status": status})
