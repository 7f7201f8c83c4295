"""A store transaction seen through a cache: many creates in one transaction, few statements.

A batch of creates (the controller's group commit, controller/batching.py; Engine.create_many
for topology files and bulk writes) runs in one transaction. Each create reads its VPC, its
workload's other attachments and interface names, its hosts and its VPC's pools: a handful of
statements per create, most of its time. Here every read is made once per batch and kept
(`prefetch_creates` reads what a batch of attachments needs in a few queries), and the writes
a create makes of new things - new objects, claims of values seen free - are kept in memory
and sent together by `flush()`, one multi-row write per table (Transaction.write_many).

Still unique under concurrent writers: a claim is checked against the pool as read in this
transaction (which holds the store's write lock for what it touches), and the store's unique
(pool, value) key checks it again at flush; a clash there raises ConflictError and the whole
transaction rolls back. Writes the cache does not keep (updates, deletes, releases) flush first
and go to the store at once.

A create that fails inside a batch is undone alone: `mark()` before it, `rollback_to(mark)`
after, which drops what it kept in memory. That works while nothing it did reached the store
(`rollback_to` says False otherwise; the caller then rolls back the whole transaction).
The owner must call `flush()` before the transaction commits; Engine.create_many does.
"""

from __future__ import annotations

import builtins
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from l2vpc.engine.errors import ConflictError
from l2vpc.engine.store.base import HostReport, StoredObject, Transaction


class CachedTransaction(Transaction):
    def __init__(self, tx: Transaction) -> None:
        self._tx = tx
        self._objects: dict[tuple[str, str], StoredObject | None] = {}
        self._lists: dict[str, list[StoredObject]] = {}  # whole kinds read (all tenants)
        self._derived: dict[tuple[str, str], Any] = {}  # computed from whole kinds (see derived())
        self._pools: dict[str, dict[str, str]] = {}  # complete pools: the store's + kept claims
        self._sizes: dict[str, int] = {}  # sizes of pools read as sizes only, kept claims counted
        # Holders of single values of pools not read whole (a VPC's addresses and MACs grow with
        # it): what the store said, None for free; kept claims are in _claims_by_pool.
        self._holders: dict[tuple[str, str], str | None] = {}
        self._ranges: dict[str, tuple[str, str]] = {}  # pool -> values low..high whose holders are in _holders
        self._blocks: dict[str, deque[int]] = {}  # counter values taken ahead, handed out in order
        # Kept writes, sent by flush().
        self._new: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
        self._new_kinds: dict[str, int] = {}  # kind -> how many of _new
        self._claims: dict[tuple[str, str], str] = {}
        # Updates of stored objects: (kind, id) -> (data, the stored generation they expect).
        self._updates: dict[tuple[str, str], tuple[dict[str, Any], int]] = {}
        self._claims_by_pool: dict[str, dict[str, str]] = {}
        # What to do to undo each kept write, newest last: data, not closures (a closure would
        # hold `self`: a reference cycle keeping a whole batch's objects alive until the cyclic
        # collector finds it, ~0.4 s for a 10,000-attachment file).
        self._undo: list[tuple[Any, ...]] = []
        self._fence = 0  # undo entries before it reached the store: not undoable
        self.deferred: dict[str, Any] = {}  # work a batch does once at its end (see kinds/context.py)
        self.parsed: dict[tuple[str, str], tuple[StoredObject, Any]] = {}  # (stored, model) read here

    # ------------------------------------------------------------------ batch control
    def mark(self) -> int:
        return len(self._undo)

    def rollback_to(self, mark: int) -> bool:
        """Drop what was kept since `mark`; False (nothing dropped) if some of it reached the store."""
        if mark < self._fence:
            return False
        while len(self._undo) > mark:
            self._undo_one(self._undo.pop())
        return True

    def _undo_one(self, entry: tuple[Any, ...]) -> None:
        what = entry[0]
        if what == "create":
            _, key, before, dropped = entry
            del self._new[key]
            self._new_kinds[key[0]] -= 1
            if before is _ABSENT:
                self._objects.pop(key, None)
            else:
                self._objects[key] = before
            if dropped is not None:
                self._lists[key[0]] = dropped
        elif what == "claim":
            _, pool, value = entry
            del self._claims[(pool, value)]
            del self._claims_by_pool[pool][value]
            if pool in self._pools:
                self._pools[pool].pop(value, None)
            if pool in self._sizes:
                self._sizes[pool] -= 1
        elif what == "update":
            _, key, cur, new, before_update, dropped = entry
            self._objects[key] = cur
            if new is not None:
                self._new[key] = new
            elif before_update is None:
                del self._updates[key]
            else:
                self._updates[key] = before_update
            if dropped is not None:
                self._lists[key[0]] = dropped

    def flush(self) -> None:
        """Send the kept writes to the store (one multi-row write per table)."""
        if self._new or self._claims:
            objects = [(kind, ident, data, tenant) for (kind, ident), (data, tenant) in self._new.items()]
            claims = [(pool, value, owner) for (pool, value), owner in self._claims.items()]
            self._new, self._new_kinds, self._claims, self._claims_by_pool = {}, {}, {}, {}
            self._tx.write_many(objects, claims)
            self._holders.update(((pool, value), owner) for pool, value, owner in claims)
        if self._updates:
            updates = [(kind, ident, data, generation) for (kind, ident), (data, generation) in self._updates.items()]
            self._updates = {}
            self._tx.update_many(updates)
            for kind, ident, _, _ in updates:
                # Their generation as the store counts it now (one step, however many kept).
                self._objects.pop((kind, ident), None)
        self._fence = len(self._undo)

    def _direct(self) -> None:
        """Before a write that goes to the store at once: what came before can no longer be undone."""
        self.flush()
        self._undo.append(("sent",))
        self._fence = len(self._undo)

    def derived(self, kind: str, name: str, build: Callable[[], Any]) -> Any:
        """A value computed from the objects of `kind` (`build()`), kept until one is written."""
        key = (kind, name)
        if key not in self._derived:
            self._derived[key] = build()
        return self._derived[key]

    def _changed(self, kind: str) -> None:
        self._lists.pop(kind, None)
        for key in [k for k in self._derived if k[0] == kind]:
            del self._derived[key]

    # ------------------------------------------------------------------ prefetch
    def prefetch_creates(self, items: Sequence[tuple[str, Mapping[str, Any]]], mac_numbers: Sequence[int],
                         also: Iterable[tuple[str, str]] = ()) -> None:
        """Read ahead what creating `items` ((kind, data) pairs) will read, and the objects
        `also` names ((kind, id) pairs: quota rows). `mac_numbers`: values of the MAC counter
        taken beforehand, one per attachment (see batching.py)."""
        attachments = [d for kind, d in items if kind == "attachment"]
        vpcs = {str(d.get("vpc_id")) for d in attachments if isinstance(d.get("vpc_id"), str)}
        workloads = {str(d.get("workload")) for d in attachments if isinstance(d.get("workload"), str)}
        hosts = {str(d["host"]) for d in attachments if isinstance(d.get("host"), str)}
        # The VPCs, the hosts asked for and `also` in one query.
        self.get_each([*also, *(("vpc", v) for v in vpcs), *(("host", h) for h in hosts)])
        if not attachments:
            return
        # Imported here: the allocator imports the store package.
        from l2vpc.engine.allocator import counter_mac, pool_ifname, pool_ip, pool_mac

        # Whole pools only where a create reads them whole: its workload's interface names. A
        # VPC's addresses, MACs and members grow with it: only the values these creates take
        # are looked up (a DHCP server is placed again from its members only when its host no
        # longer serves, kinds/context.py).
        pools = self.prefetch_pools([pool_ifname(w) for w in workloads])
        values: list[tuple[str, str]] = []
        counted: set[str] = set()  # MAC pools of the VPCs whose new MACs come from the counter
        for d in attachments:
            vpc = d.get("vpc_id")
            if not isinstance(vpc, str):
                continue
            ip, mac = d.get("ip_address"), d.get("mac_address")
            if isinstance(ip, str):
                values.append((pool_ip(vpc), ip.split("/")[0]))
            if isinstance(mac, str) and mac:
                values.append((pool_mac(vpc), mac.lower()))
            else:
                counted.add(pool_mac(vpc))
        self.prefetch_holders(values)
        # The MAC counter values these creates will take (given, or taken ahead by take_block)
        # stand for MACs in one narrow range: who holds any of it, in every VPC, in one query
        # (nearly always nobody: only a MAC a user chose can be there).
        numbers = mac_numbers or self._blocks.get("mac", ())
        if counted and numbers:
            low, high = min(numbers), max(numbers)
            if high - low < 1 << 20 and low % (1 << 24) <= high % (1 << 24):  # no wrap-around
                self.prefetch_range(counted, counter_mac(low), counter_mac(high))
        siblings = {owner for held in pools.values() for owner in held.values()}
        stored = self.get_many("attachment", siblings)
        self.get_many("host", {str(o.data.get("host")) for o in stored if o.data.get("host")})
        if mac_numbers:
            self._blocks.setdefault("mac", deque()).extend(mac_numbers)

    def _pool(self, pool: str) -> dict[str, str]:
        """One pool as known here (read once): the hot path of every create's allocations."""
        held = self._pools.get(pool)
        return held if held is not None else self.prefetch_pools([pool])[pool]

    def prefetch_pools(self, pools: Iterable[str]) -> dict[str, dict[str, str]]:
        pools = list(pools)
        missing = sorted({p for p in pools if p not in self._pools})
        if missing:
            found = self._tx.allocations_many(missing)
            for p in missing:
                self._pools[p] = {**found.get(p, {}), **self._claims_by_pool.get(p, {})}
                self._sizes.pop(p, None)
        return {p: self._pools[p] for p in pools}

    def take_block(self, name: str, count: int) -> None:
        """Take `count` values of counter `name` now (one statement) for the creates to come."""
        if count > 0:
            last = self._tx.next_sequence_block(name, count)
            self._blocks.setdefault(name, deque()).extend(range(last - count + 1, last + 1))

    # ------------------------------------------------------------------ objects
    def get(self, kind: str, ident: str, tenant: str | None = None) -> StoredObject | None:
        key = (kind, ident)
        if key not in self._objects:
            self._objects[key] = self._tx.get(kind, ident)
        so = self._objects[key]
        if so is None or (tenant is not None and so.tenant != tenant):
            return None
        return so

    def get_many(self, kind: str, idents: Iterable[str]) -> list[StoredObject]:
        wanted = sorted({str(i) for i in idents})
        missing = [i for i in wanted if (kind, i) not in self._objects]
        if missing:
            found = {o.id: o for o in self._tx.get_many(kind, missing)}
            for i in missing:
                self._objects[(kind, i)] = found.get(i)
        return [so for so in (self._objects[(kind, i)] for i in wanted) if so is not None]

    def get_each(self, keys: Iterable[tuple[str, str]]) -> list[StoredObject]:
        wanted = sorted({(k, str(i)) for k, i in keys})
        missing = [key for key in wanted if key not in self._objects]
        if missing:
            found = {(o.kind, o.id): o for o in self._tx.get_each(missing)}
            for key in missing:
                self._objects[key] = found.get(key)
        return [so for so in (self._objects[key] for key in wanted) if so is not None]

    def list(self, kind: str, tenant: str | None = None) -> list[StoredObject]:
        if self._new_kinds.get(kind) or any(k == kind for k, _ in self._updates):
            self.flush()
        if tenant is not None:
            return self._tx.list(kind, tenant)
        if kind not in self._lists:
            found = self._lists[kind] = self._tx.list(kind)
            for so in found:
                self._objects.setdefault((kind, so.id), so)
        return list(self._lists[kind])

    def create(self, kind: str, ident: str, data: dict[str, Any], tenant: str = "") -> StoredObject:
        self._direct()
        self._changed(kind)
        so = self._objects[(kind, ident)] = self._tx.create(kind, ident, data, tenant)
        return so

    def create_new(self, kind: str, ident: str, data: dict[str, Any], tenant: str = "") -> StoredObject:
        key = (kind, ident)
        if self._objects.get(key) is not None:
            raise ConflictError(f"{kind} {ident!r} already exists")
        before = self._objects.get(key, _ABSENT)
        so = self._objects[key] = StoredObject(kind, ident, 1, data, tenant)
        self._new[key] = (data, tenant)
        self._new_kinds[kind] = self._new_kinds.get(kind, 0) + 1
        dropped = self._lists.pop(kind, None)
        for k in [k for k in self._derived if k[0] == kind]:
            del self._derived[k]
        self._undo.append(("create", key, before, dropped))
        return so

    def stored(self, kind: str) -> builtins.list[StoredObject]:
        """Every object of a kind as the store holds it in this transaction, read again (after
        flush: what the commit will leave; topology_file.sync_snapshot)."""
        self.flush()
        return self._tx.list(kind)

    def view(self, kind: str) -> builtins.list[StoredObject]:
        """Every object of a kind as this transaction sees it, kept writes included, without
        sending them (a dry run plans from it: topology_file.plan_sync)."""
        stored = self._lists.get(kind)
        if stored is None:
            stored = self._tx.list(kind)
        out: builtins.list[StoredObject] = []
        for so in stored:
            mine = self._objects.get((kind, so.id), so)  # None: deleted here, after the list was read
            if mine is not None:
                out.append(mine)
        for key in self._new:
            new = self._objects[key] if key[0] == kind else None
            if new is not None:
                out.append(new)
        out.sort(key=lambda so: so.id)  # the store's order (its lists are by id)
        return out

    def update(self, kind: str, ident: str, data: dict[str, Any], expected_generation: int) -> StoredObject:
        key = (kind, ident)
        cur = self._objects.get(key)
        if cur is not None and not self._tx_only(kind):
            return self._keep_update(key, cur, data, expected_generation)
        self._direct()
        self._changed(kind)
        self._objects.pop((kind, ident), None)  # if the update fails, re-read
        so = self._objects[(kind, ident)] = self._tx.update(kind, ident, data, expected_generation)
        return so

    @staticmethod
    def _tx_only(kind: str) -> bool:
        """Kinds whose updates go to the store at once: all but those a batch updates often."""
        return kind not in _KEPT_UPDATES

    def _keep_update(self, key: tuple[str, str], cur: StoredObject, data: dict[str, Any],
                     expected_generation: int) -> StoredObject:
        """An update kept for flush(): checked against the version read here (the store checks
        the generation again when it is sent). An object created in this batch is stored once,
        with its last data."""
        kind, ident = key
        if cur.generation != expected_generation:
            raise ConflictError(
                f"{kind} {ident!r} was changed concurrently: expected generation {expected_generation}, "
                f"actual generation {cur.generation}; re-read it and retry")
        new = self._new.get(key)
        before_update = self._updates.get(key)
        so = StoredObject(kind, ident, cur.generation + (0 if new is not None else 1), data, cur.tenant)
        if new is not None:
            self._new[key] = (data, new[1])
        else:
            base = before_update[1] if before_update is not None else cur.generation
            self._updates[key] = (data, base)
        self._objects[key] = so
        dropped = self._lists.pop(kind, None)
        derived = {k: v for k, v in self._derived.items() if k[0] == kind}
        for k in derived:
            del self._derived[k]

        self._undo.append(("update", key, cur, new, before_update, dropped))
        return so

    def delete(self, kind: str, ident: str, expected_generation: int | None = None) -> None:
        self._direct()
        self._changed(kind)
        self._objects.pop((kind, ident), None)
        self._tx.delete(kind, ident, expected_generation)
        self._objects[(kind, ident)] = None

    # ------------------------------------------------------------------ allocations
    def reserve(self, pool: str, value: str, owner: str) -> None:
        holder = self.holder(pool, value)
        if holder == owner:
            return  # the same owner claiming again: a no-op, as in the store
        if holder is not None:
            raise ConflictError(f"{pool} {value!r} is already held by {holder!r} (requested by {owner!r})")
        self._keep(pool, value, owner)

    def claim(self, pool: str, value: str, owner: str) -> None:
        # A value the caller has just seen free: checked against what is known here; the
        # store checks again at flush.
        held = self._pools.get(pool)
        holder = held.get(value) if held is not None else (
            self._claims_by_pool.get(pool, {}).get(value) or self._holders.get((pool, value)))
        if holder == owner:
            return
        if holder is not None:
            raise ConflictError(f"{pool} {value!r} is already held by {holder!r} (requested by {owner!r})")
        self._keep(pool, value, owner)

    def _keep(self, pool: str, value: str, owner: str) -> None:
        self._claims[(pool, value)] = owner
        self._claims_by_pool.setdefault(pool, {})[value] = owner
        if pool in self._pools:
            self._pools[pool][value] = owner
        if pool in self._sizes:
            self._sizes[pool] += 1

        self._undo.append(("claim", pool, value))

    def release_owner(self, owner: str, pool: str | None = None) -> None:
        self._direct()
        self._tx.release_owner(owner, pool)
        self._sizes.clear()
        self._holders.clear()
        self._ranges.clear()
        for name, held in self._pools.items():
            if pool is None or name == pool:
                for value in [v for v, o in held.items() if o == owner]:
                    del held[value]

    def allocations(self, pool: str) -> dict[str, str]:
        return dict(self._pool(pool))

    def holder(self, pool: str, value: str) -> str | None:
        """Who holds `value`: from the pool when it was read whole, else from this batch's
        claims or the store (that one value, remembered)."""
        held = self._pools.get(pool)
        if held is not None:
            return held.get(value)
        mine = self._claims_by_pool.get(pool, {}).get(value)
        if mine is not None:
            return mine
        key = (pool, value)
        if key not in self._holders:
            span = self._ranges.get(pool)
            if span is not None and span[0] <= value <= span[1]:
                return None  # the range was read: not held
            self._holders[key] = self._tx.holder(pool, value)
        return self._holders[key]

    def pools_share(self, pool: str, other: str) -> bool:
        a, b = self._pools.get(pool), self._pools.get(other)
        if a is not None and b is not None:
            return not a.keys().isdisjoint(b)
        # Values claimed here are not in the store yet (a new attachment claims both its
        # indexes together); the store answers for the rest.
        if not self._claims_by_pool.get(pool, {}).keys().isdisjoint(self._claims_by_pool.get(other, {})):
            return True
        return self._tx.pools_share(pool, other)

    def prefetch_range(self, pools: Iterable[str], low: str, high: str) -> None:
        """Read who holds any value low..high of each pool (not read whole) in one query."""
        pools = sorted({p for p in pools if p not in self._pools and p not in self._ranges})
        if pools:
            self._holders.update(self._tx.holders_between(pools, low, high))
            for p in pools:
                self._ranges[p] = (low, high)

    def prefetch_holders(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Read who holds each (pool, value) in one query (those of pools not read whole)."""
        missing = sorted({key for key in pairs if key[0] not in self._pools and key not in self._holders})
        if missing:
            found = self._tx.holders(missing)
            for key in missing:
                self._holders[key] = found.get(key)

    def holds(self, owner: str, pool: str) -> bool:
        return owner in self.prefetch_pools([pool])[pool].values()

    def allocations_many(self, pools: Iterable[str]) -> dict[str, dict[str, str]]:
        return {p: dict(v) for p, v in self.prefetch_pools(list(pools)).items()}

    def pool_sizes(self, pools: Iterable[str]) -> dict[str, int]:
        pools = list(pools)
        missing = sorted({p for p in pools if p not in self._pools and p not in self._sizes})
        if missing:
            found = self._tx.pool_sizes(missing)  # without the kept claims: added here
            for p in missing:
                self._sizes[p] = found.get(p, 0) + len(self._claims_by_pool.get(p, {}))
        sizes = {p: len(self._pools[p]) if p in self._pools else self._sizes[p] for p in pools}
        return {p: n for p, n in sizes.items() if n}

    def lock_pool_sizes(self, pools: Iterable[str]) -> dict[str, int]:
        pools = sorted(set(pools))
        found = self._tx.lock_pool_sizes(pools)  # without the kept claims: added here
        for p in pools:
            self._pools.pop(p, None)
            self._sizes[p] = found.get(p, 0) + len(self._claims_by_pool.get(p, {}))
        return {p: self._sizes[p] for p in pools if self._sizes[p]}

    # ------------------------------------------------------------------ counters
    def next_sequence(self, name: str) -> int:
        block = self._blocks.get(name)
        if block:
            return block.popleft()
        return self._tx.next_sequence(name)

    def next_sequence_block(self, name: str, count: int) -> int:
        return self._tx.next_sequence_block(name, count)

    def current_sequence(self, name: str) -> int:
        return self._tx.current_sequence(name)

    # ------------------------------------------------------------------ the rest: the store's
    def put_host_report(self, host: str, generation: int, config: dict[str, Any]) -> None:
        self._direct()
        self._tx.put_host_report(host, generation, config)

    def host_reports(self, hosts: Iterable[str] | None = None) -> dict[str, HostReport]:
        return self._tx.host_reports(hosts)

    def host_observations(self) -> dict[str, Sequence[Any]]:
        return self._tx.host_observations()

    def host_report_stamps(self) -> dict[str, tuple[int, float]]:
        return self._tx.host_report_stamps()

    def delete_host_report(self, host: str) -> None:
        self._direct()
        self._tx.delete_host_report(host)


_ABSENT = object()
# VPCs: a batch places each touched VPC's DHCP server at its end, one update per VPC.
_KEPT_UPDATES = frozenset({"vpc"})
