"""Site-to-site VPNs: a gateway address inside the VPC and a public address from the block of
the edge host that runs the tunnel.

The edge host is picked among the up edge hosts with public addresses, least loaded first,
and kept on updates while it is still valid (failover.py moves it when the host goes down).
A write-only pre-shared key is only sent when it changes: an update without one keeps it. An
update keeps the public address while the VPN stays on its edge host.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from l2vpc.engine import allocator as alloc
from l2vpc.engine.errors import ValidationError
from l2vpc.engine.kinds.base import Kind, observed
from l2vpc.engine.kinds.context import Context, check_rules
from l2vpc.engine.model import VPN, parse
from l2vpc.engine.placement import pick_edge_host
from l2vpc.engine.store.base import HostReport, StoredObject
from l2vpc.engine.topology import Topology


class VpnKind(Kind[VPN]):
    name = "vpn"
    model = VPN
    id_prefix = "vpn"
    computed = frozenset({"id", "status", "public_ip", "vpn_host"})

    def create(self, cx: Context, data: dict[str, Any]) -> VPN:
        ident = self.new_id()
        vpn = parse(VPN, {**data, "id": ident})
        cx.claim_name("vpn", vpn.name, ident)
        vpn = self._complete(cx, vpn, None)
        self.insert(cx, vpn, ident)
        return vpn

    def update(self, cx: Context, so: StoredObject, cur: VPN, data: dict[str, Any]) -> VPN:
        if not data.get("pre_shared_key"):  # a write-only key is only sent when it changes
            data = {**data, "pre_shared_key": cur.pre_shared_key}
        new = parse(VPN, data)
        if new.vpc_id != cur.vpc_id:
            raise ValidationError("changing vpc_id needs a new VPN", path="vpc_id")
        cx.tx.release_owner(cur.id)
        cx.claim_name("vpn", new.name, cur.id)
        new = self._complete(cx, new, cur)
        self.write(cx, so, new)
        return new

    def _complete(self, cx: Context, vpn: VPN, cur: VPN | None) -> VPN:
        """Rules, edge host and addresses (again on update: everything `vpn` held was
        released, so what it keeps is claimed anew)."""
        tx = cx.tx
        vpc = cx.vpc(vpn.vpc_id)
        hosts = cx.hosts()
        check_rules(Topology(hosts=hosts, vpcs={vpc.id: vpc}, vpns={vpn.id: vpn}), vpn.id)
        assert vpc.cidr
        load = Counter(v.vpn_host for v in cx.objects("vpn", VPN) if v.vpn_host)
        edge = pick_edge_host(hosts.values(), None, load, cur.vpn_host if cur else None, public=True)
        tx.reserve(alloc.pool_refs(vpc.id), vpn.id, vpn.id)
        if vpn.gateway_ip:
            alloc.reserve_ip(tx, vpc.id, vpn.gateway_ip, vpn.id, field="gateway_ip")
            gw = vpn.gateway_ip
        else:
            gw = alloc.allocate_address(tx, vpc.id, vpc.cidr, vpn.id, alloc.vpc_reserved(vpc))
        # An update keeps the public address while the VPN stays on its edge host.
        keep = cur.public_ip if cur is not None and cur.vpn_host == edge.name else None
        public = alloc.allocate_public_ip(tx, edge, vpn.id, keep=keep)
        return vpn.model_copy(update={
            "gateway_ip": gw, "vpn_host": edge.name, "public_ip": public,
            "local_cidrs": vpn.local_cidrs or (vpc.cidr,),
        })

    def placed_on(self, obj: VPN) -> str | None:
        return obj.vpn_host

    def with_status(self, obj: VPN, report: HostReport | None) -> VPN:
        """The tunnel's state as the edge host reports it (`up`, `down`), `connecting` before."""
        seen = observed(report, obj.id)
        status = str(seen.get("state")) if seen else "connecting"
        return obj.model_copy(update={"status": status})
