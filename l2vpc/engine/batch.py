"""Many writes in one transaction: what topology files, bulk creates and the controller's group
commit use (Engine.batch, Engine.create_many).

A batch runs every write through one CachedTransaction (store/cached.py): each pool, VPC,
host and workload is read once, the values a create takes come from those reads, new objects
and claims are sent together at the end (one multi-row write per table), and each touched
VPC's DHCP server is placed once, at the end. The rules are the same code as a single create
(kinds/): a create in a batch sees the ones before it exactly as if they had been committed.

A create that breaks a rule fails alone with its own error (the field it names, its rule id):
what it kept is dropped and the batch goes on (`create_many` returns the error in its place).
Measured in bench/bench_write_path.py (10,000 attachments in one transaction): create_in one
after the other 6.2 s on SQLite and 46 s on PostgreSQL; a batch ~1.2-1.5 s of CPU on either.

A batch also tells where it leads without a read back: `topology()` is what Engine.topology()
will read once it is written (the models its creates made, each stored version parsed once),
and `plan()` plans from it. A dry run (Engine.batch(dry_run=True): `l2vpc plan -f`) sends none
of its kept writes and commits nothing; `apply -f` converges from the topology of its batch.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from l2vpc.engine.errors import NotFoundError, UserError
from l2vpc.engine.kinds import KINDS
from l2vpc.engine.kinds.context import UNREADABLE, Context, dump, finish_batch, host_of, place_deferred
from l2vpc.engine.model import VPC, VPN, Attachment, DirectConnect, Host
from l2vpc.engine.planner import Plan, plan
from l2vpc.engine.secrets import SECRET_FIELDS, redacted
from l2vpc.engine.store.base import KINDS as STORED_KINDS
from l2vpc.engine.store.base import StoredObject
from l2vpc.engine.store.cached import CachedTransaction
from l2vpc.engine.store.documents import dumps
from l2vpc.engine.topology import Topology, host_configs
from l2vpc.hostconfig import HostConfig

M = TypeVar("M", bound=BaseModel)

if TYPE_CHECKING:
    from l2vpc.engine.api import Engine


def each_or_error(create: Callable[[Mapping[str, Any]], Any], items: Sequence[Mapping[str, Any]]) -> list[Any]:
    """`create(item)` of each item in order: its result, or the UserError that refused it."""
    out: list[Any] = []
    for data in items:
        try:
            out.append(create(data))
        except UserError as e:
            out.append(e)
    return out


class NotUndone(Exception):
    """A create failed after some of its writes reached the store: only rolling back the whole
    transaction undoes it (the caller then retries the creates one at a time)."""

    def __init__(self, error: UserError) -> None:
        super().__init__(str(error))
        self.error = error


class Batch:
    """Writes of one engine (its tenant) in one transaction; see the module docstring."""

    def __init__(self, engine: Engine, tx: CachedTransaction) -> None:
        self.engine = engine
        self.tx = tx
        self.cx: Context = engine._context(tx)
        self._hosts: set[str] | None = None  # names of the hosts stored, once read

    # ------------------------------------------------------------------ reads
    def hosts(self) -> dict[str, Host]:
        return self.cx.hosts()

    def objects(self, kind: str) -> builtins.list[Any]:
        """The engine's tenant's objects of a kind, as stored (no status from hosts)."""
        tenant = self.engine.tenant
        model = KINDS[kind].model if kind in KINDS else None
        if model is None:
            return [self.engine._load(kind, o) for o in self.tx.list(kind) if not tenant or o.tenant == tenant]
        return [redacted(kind, self._loaded(kind, model, o)) for o in self.tx.list(kind)
                if not tenant or o.tenant == tenant]

    def _loaded(self, kind: str, model: type[M], so: StoredObject) -> M:
        """The object `so` holds, secrets opened (Context.load); each stored version of a kind
        without secrets parsed once per batch (shared with Context.parsed: the same model)."""
        if kind in SECRET_FIELDS:
            return self.cx.load(kind, model, so)
        memo = self.tx.parsed
        hit = memo.get((kind, so.id))
        if hit is not None and hit[0] is so:
            return hit[1]
        obj = self.cx.load(kind, model, so)
        memo[(kind, so.id)] = (so, obj)
        return obj

    # ------------------------------------------------------------------ writes
    def register_host(self, host: Host) -> None:
        if self._hosts is None:  # every host in one query, not one per host
            self._hosts = {o.id for o in self.tx.list("host")}
        cur = self.tx.get("host", host.name) if host.name in self._hosts else None
        if cur is None:
            self._hosts.add(host.name)
            # Known absent under the write lock: written with the batch (a clash fails it).
            self.tx.create_new("host", host.name, dump(host))
        elif host_of(cur) != host:
            self.tx.update("host", host.name, dump(host), cur.generation)

    def create(self, kind: str, data: Mapping[str, Any], *, adopt: bool | str = False) -> Any:
        """One create of the batch; raises its UserError after undoing what it kept (NotUndone
        when that is impossible: some of it reached the store)."""
        mark = self.tx.mark()
        try:
            return self.engine.create_in(self.tx, kind, data, adopt=adopt)
        except UserError as e:
            if not self.tx.rollback_to(mark):
                raise NotUndone(e) from e
            raise

    def create_many(self, kind: str, items: Sequence[Mapping[str, Any]]) -> builtins.list[Any]:
        """Each item created in order; per item the object or the UserError that refused it."""
        self.prefetch(kind, items)
        return each_or_error(lambda data: self.create(kind, data), items)

    def prefetch(self, kind: str, items: Sequence[Mapping[str, Any]]) -> None:
        """Read what creating `items` reads, in a few queries; MAC counter values in one."""
        if kind == "attachment":
            self.tx.take_block("mac", sum(1 for d in items if not d.get("mac_address")))
        elif kind == "vpc":
            self.tx.take_block("vni", len(items))
        self.tx.prefetch_creates([(kind, d) for d in items], ())

    def update(self, kind: str, ident: str, data: Mapping[str, Any]) -> Any:
        k = KINDS[kind]
        so = self.tx.get(kind, ident, tenant=self.engine.tenant or None)
        if so is None:
            raise NotFoundError(kind, ident)
        return redacted(kind, k.update(self.cx, so, k.load(self.cx, so), k.merged(so.data, data)))

    def same_secrets(self, kind: str, ident: str, data: Mapping[str, Any]) -> bool:
        """Whether the stored object's secrets equal those in `data` (Engine.same_secrets)."""
        return self.engine.same_secrets_in(self.tx, kind, ident, data)

    def delete(self, kind: str, ident: str) -> None:
        k = KINDS[kind]
        so = self.tx.get(kind, ident, tenant=self.engine.tenant or None)
        if so is None:
            raise NotFoundError(kind, ident)
        k.delete(self.cx, so, k.load(self.cx, so))

    def finish(self) -> None:
        """DHCP placement of the touched VPCs, then every kept write to the store."""
        finish_batch(self.tx, self.engine.secrets)

    def stored_rows(self) -> builtins.list[tuple[str, str, str, int, str]]:
        """Every object as this batch leaves the store, finished (DHCP placed, writes sent), as
        (kind, id, tenant, generation, document text): what a read after its commit sees,
        whatever another writer does after that (embedded/plan_record.py)."""
        self.finish()
        return [(kind, so.id, so.tenant, so.generation, raw if isinstance(raw := getattr(so, "_raw", None), str)
                 else dumps(so.data))
                for kind in STORED_KINDS for so in self.tx.stored(kind)]

    # ------------------------------------------------------------------ dry runs
    def plan(self) -> tuple[Plan, Topology]:
        """The plan the state this batch leaves would lead to, and that topology, without
        sending its kept writes (a dry run, Engine.batch(dry_run=True)): each stored version
        parsed once in the batch, the models its creates made used as they are."""
        topo = self.topology()
        reports = self.tx.host_reports()
        actual = {h: HostConfig.from_dict(r.config) for h, r in reports.items()}
        desired = host_configs(topo, self.engine.learned_prefixes(actual), self.engine.secrets.digest)
        return plan(desired, actual), topo

    def topology(self) -> Topology:
        """What Engine.topology() will read once this batch is written, from the batch itself
        (its DHCP servers placed first)."""
        place_deferred(self.tx, self.engine.secrets)
        def objects(kind: str, model: type[M]) -> builtins.list[M]:
            return [self._loaded(kind, model, so) for so in self.tx.view(kind)]

        return Topology(
            hosts={so.id: host_of(so) for so in self.tx.view("host")},
            vpcs={v.id: v for v in objects("vpc", VPC)},
            attachments={a.id: a for a in objects("attachment", Attachment)},
            # As Engine.topology: an object whose secret cannot be opened is left out.
            direct_connects={d.id: d for d in objects("direct_connect", DirectConnect) if d.status != UNREADABLE},
            vpns={v.id: v for v in objects("vpn", VPN) if v.status != UNREADABLE},
        )

