"""One write transaction as the kinds, failover and adoption see it.

What they share: the caller's tenant (names are unique per tenant), reads of hosts, VPCs, a
VPC's members and a workload's attachments through the transaction, name claims, the rules
check, DHCP placement and sealing secrets for the store. Everything goes through `tx`, so a
rule that fails raises before anything is committed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from l2vpc.engine import allocator as alloc
from l2vpc.engine.errors import ConflictError, ValidationError
from l2vpc.engine.model import REDACTED, VPC, Attachment, Host, from_store
from l2vpc.engine.placement import place_dhcp
from l2vpc.engine.secrets import SecretBox
from l2vpc.engine.store.base import StoredObject, Transaction
from l2vpc.engine.store.cached import CachedTransaction
from l2vpc.engine.topology import Topology
from l2vpc.engine.validation import validate_topology

M = TypeVar("M", bound=BaseModel)

_HOSTS_SEEN: dict[str, Host] = {}  # stored host document text -> parsed Host
_HOSTS_SEEN_MAX = 20_000


def host_of(so: StoredObject) -> Host:
    """The Host a stored document holds. Hosts change rarely and placement and the rules read
    all of them (1,000 hosts: ~30 ms of parsing per create), so parsed hosts are kept by the
    exact stored text: the same text is the same host, whichever transaction read it."""
    raw = getattr(so, "_raw", None)
    if not isinstance(raw, str):
        return Host.model_validate(so.data)
    host = _HOSTS_SEEN.get(raw)
    if host is None:
        if len(_HOSTS_SEEN) >= _HOSTS_SEEN_MAX:
            _HOSTS_SEEN.clear()
        host = _HOSTS_SEEN[raw] = Host.model_validate(so.data)
    return host


UNREADABLE = "secret_unreadable"  # status of an object whose stored secret cannot be opened


def load_object(box: SecretBox, kind: str, model: type[M], data: dict[str, Any]) -> M:
    """See Context.load."""
    opened, failed = box.open_tolerant(kind, data)
    if not failed:
        return from_store(model, opened)
    # Validated as a read without secrets (REDACTED): the rules requiring one do not apply.
    return model.model_validate({**opened, "status": UNREADABLE}, context=REDACTED)


def dump(obj: BaseModel) -> dict[str, Any]:
    return obj.model_dump(mode="json")


def check_rules(topo: Topology, focus: str) -> None:
    """Cross-object rules on a small topology; problems of `focus` get bare field paths."""
    problems = validate_topology(topo, labels={focus: ""})
    if problems:
        raise ValidationError(problems)


@dataclass(frozen=True, slots=True)
class Context:
    tx: Transaction
    secrets: SecretBox
    tenant: str = ""
    default_region: str | None = None  # where placement prefers compute hosts for multi-region VPCs

    # ------------------------------------------------------------------ secrets
    def load(self, kind: str, model: type[M], so: StoredObject) -> M:
        """The object a stored document holds, its secrets opened. One whose secret cannot be
        opened still loads (so it can be read, updated with a new secret and deleted), with that
        secret empty and status UNREADABLE; the topology leaves it out."""
        return load_object(self.secrets, kind, model, so.data)

    def seal(self, kind: str, obj: BaseModel) -> dict[str, Any]:
        """What goes into the store: the object with its secrets sealed."""
        return self.secrets.seal_fields(kind, dump(obj))

    def objects(self, kind: str, model: type[M]) -> list[M]:
        """Every object of a kind, of all tenants (the rules and placement span tenants)."""
        return [self.load(kind, model, o) for o in self.tx.list(kind)]

    # ------------------------------------------------------------------ names
    def name_pool(self, kind: str) -> str:
        # Names are unique within a tenant: another tenant's "web" neither blocks nor shows.
        return f"name:{kind}:{self.tenant}" if self.tenant else f"name:{kind}"

    def claim_name(self, kind: str, name: str, owner: str) -> None:
        pool = self.name_pool(kind)
        try:
            # One statement when the name is free; the pool (all the tenant's names) is read
            # only to say who holds it (a plan checks every create: 200 VPCs read 200 names each).
            self.tx.reserve(pool, name, owner)
        except ConflictError:
            holder = self.tx.allocations(pool).get(name)
            raise ValidationError(f"a {kind} named {name!r} already exists ({holder})", path="name") from None

    # ------------------------------------------------------------------ reads
    def hosts(self) -> dict[str, Host]:
        """Every host (not to be changed: in a batch, the same dict until a host is written)."""
        if isinstance(self.tx, CachedTransaction):
            return self.tx.derived("host", "hosts", lambda: {o.id: host_of(o) for o in self.tx.list("host")})
        return {o.id: host_of(o) for o in self.tx.list("host")}

    def region_hosts(self) -> dict[str, Host]:
        """The hosts the rules of an object on no host (a VPC) look at, cut down to what
        changes their outcome: one host per region (its region must have one) and every host
        whose underlay address another shares. The same problems as with all 1,000 hosts,
        without a pass over all of them per create."""
        def build() -> dict[str, Host]:
            hosts = self.hosts()
            underlays = Counter(h.underlay_ip for h in hosts.values())
            picked: dict[str, Host] = {}
            regions: set[str] = set()
            for name, h in hosts.items():
                if h.region not in regions or underlays[h.underlay_ip] > 1:
                    regions.add(h.region)
                    picked[name] = h
            return picked

        if isinstance(self.tx, CachedTransaction):
            return self.tx.derived("host", "region_hosts", build)
        return build()

    def hosts_named(self, names: Iterable[str]) -> dict[str, Host]:
        stored = self.tx.get_many("host", names)
        if not isinstance(self.tx, CachedTransaction):
            return {o.id: host_of(o) for o in stored}
        # In a batch, each stored version parsed once (a host written in it has no stored text
        # for host_of's memo).
        memo, out = self.tx.parsed, {}
        for so in stored:
            hit = memo.get(("host", so.id))
            if hit is None or hit[0] is not so:
                hit = memo[("host", so.id)] = (so, host_of(so))
            out[so.id] = hit[1]
        return out

    def parsed(self, model: type[M], so: StoredObject) -> M:
        """The model a stored document holds (no secrets opened); in a batch, parsed once per
        stored version (a VPC's 10 attachments read it 10 times)."""
        memo = self.tx.parsed if isinstance(self.tx, CachedTransaction) else None
        if memo is None:
            return from_store(model, so.data)
        hit = memo.get((so.kind, so.id))
        if hit is not None and hit[0] is so:
            return hit[1]
        obj = from_store(model, so.data)
        memo[(so.kind, so.id)] = (so, obj)
        return obj

    def find_vpc(self, ident: str) -> VPC | None:
        so = self.tx.get("vpc", ident, tenant=self.tenant or None)
        return self.parsed(VPC, so) if so else None

    def vpc(self, ident: str) -> VPC:
        """The VPC an object names in `vpc_id` (the caller's tenant's only)."""
        vpc = self.find_vpc(ident)
        if vpc is None:
            raise ValidationError(f"no VPC with id {ident!r}", path="vpc_id")
        return vpc

    def attachments(self, ids: Iterable[str]) -> list[Attachment]:
        return [self.parsed(Attachment, so) for so in self.tx.get_many("attachment", ids)]

    def members(self, vpc_id: str) -> list[Attachment]:
        """A VPC's attachments, through its membership index (not a scan of all attachments)."""
        return self.attachments(self.tx.allocations(alloc.pool_members(vpc_id)))

    def workload_attachments(self, workload: str) -> list[Attachment]:
        stored = self.tx.get_many("attachment", self.tx.allocations(alloc.pool_ifname(workload)).values())
        if any(so.tenant != self.tenant for so in stored):
            # Workload names come from the compute service and are global; a workload's NICs
            # all belong to the tenant that attached it first.
            raise ValidationError(f"workload {workload!r} is not available to this tenant", path="workload")
        return [self.parsed(Attachment, so) for so in stored]

    # ------------------------------------------------------------------ DHCP placement
    def replace_dhcp(self, vpc: VPC, hosts: Mapping[str, Host]) -> None:
        """Place the VPC's DHCP server again after its members changed. `vpc` as read in this
        transaction (so current: writers hold the store's lock); `hosts`: those read already
        (the members' other hosts are read here). In a batch, once per VPC at its end
        (`finish_batch`): placing after each of a VPC's creates re-read all its members."""
        if vpc.dhcp is None and vpc.dhcp_host is None:
            return  # no DHCP server to place
        if isinstance(self.tx, CachedTransaction):
            self.tx.deferred.setdefault("dhcp", set()).add(vpc.id)
            return
        self._place_dhcp(vpc.id, hosts)

    def _place_dhcp(self, vpc_id: str, hosts: Mapping[str, Host]) -> None:
        so = self._to_place(vpc_id, hosts)
        if so is not None:
            self._place_from_members(so, hosts)

    def _to_place(self, vpc_id: str, hosts: Mapping[str, Host]) -> StoredObject | None:
        """The VPC as stored when its DHCP server must be placed from its members, else None:
        deleted (later in the same batch), no server to place, or the server stays.

        Placement keeps a host that is up and still carries the VPC (pick_service_host),
        whatever else changed, so the VPC's members (thousands, for Pods) are read only when
        its host no longer serves. Two indexes tell whether the host carries it."""
        so = self.tx.get("vpc", vpc_id)
        if so is None:
            return None
        vpc = self.parsed(VPC, so)
        host = vpc.dhcp_host
        if vpc.dhcp is None and host is None:
            return None  # no DHCP server to place
        if vpc.dhcp is not None and host is not None:
            h = hosts.get(host) or self.hosts_named({host}).get(host)
            if h is not None and h.status == "up" and \
                    self.tx.pools_share(alloc.pool_members(vpc.id), alloc.pool_on_host(host)):
                return None  # the server stays
        return so

    def _place_from_members(self, so: StoredObject, hosts: Mapping[str, Host]) -> None:
        current = self.parsed(VPC, so)
        members = self.members(so.id)
        member_hosts = {a.host for a in members if a.host}
        if not member_hosts <= set(hosts):
            hosts = {**hosts, **self.hosts_named(member_hosts - set(hosts))}
        placed = place_dhcp(current, members, hosts)
        if placed.dhcp_host != current.dhcp_host:
            self.tx.update("vpc", so.id, dump(placed), so.generation)


def place_deferred(tx: CachedTransaction, secrets: SecretBox) -> None:
    """Each VPC whose members a batch changed gets its DHCP server placed, once (kept as
    updates of the batch, see store/cached.py)."""
    cx = Context(tx, secrets)
    todo = [so for v in sorted(tx.deferred.pop("dhcp", ())) if (so := cx._to_place(v, {})) is not None]
    if todo:
        # Their members read together (a file's 500 new DHCP VPCs: one query, not 500).
        pools = tx.prefetch_pools([alloc.pool_members(so.id) for so in todo])
        tx.get_many("attachment", {a for held in pools.values() for a in held})
    for so in todo:
        cx._place_from_members(so, {})


def finish_batch(tx: CachedTransaction, secrets: SecretBox) -> None:
    """What a batch of writes left for its end: each touched VPC's DHCP server placed once,
    then every kept write sent to the store. Before the transaction commits."""
    place_deferred(tx, secrets)
    tx.flush()
