"""A store transaction seen through a cache: many creates in one transaction, few round trips.

The controller commits creates that arrive together in one transaction (controller/batching.py).
Each attachment create reads its VPC, its workload's other attachments and interface names,
its host and its VPC's MACs: a handful of round trips to PostgreSQL, most of the time of a
create. `CachedTransaction.prefetch_creates` reads all of that for the whole batch in a few
queries; the creates then find it here. Writes go to the store (where PostgreSQL sends them
with the next statement) and update the cache, so a create sees what the earlier ones of the
batch wrote.

Coherent because the transaction holds the store's write lock (nobody else writes meanwhile)
and every write of the batch goes through this object. Reads the cache cannot answer exactly
(lists, host reports, counters of other names) go to the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from l2vpc.engine.store.base import HostReport, StoredObject, Transaction


class CachedTransaction(Transaction):
    def __init__(self, tx: Transaction) -> None:
        self._tx = tx
        self._objects: dict[tuple[str, str], StoredObject | None] = {}
        self._pools: dict[str, dict[str, str]] = {}
        self._blocks: dict[str, list[int]] = {}  # counter values taken ahead, handed out in order

    # ------------------------------------------------------------------ prefetch
    def prefetch_creates(self, items: Sequence[tuple[str, Mapping[str, Any]]], mac_numbers: Sequence[int]) -> None:
        """Read ahead what creating `items` ((kind, data) pairs) will read. `mac_numbers`:
        values of the MAC counter taken beforehand, one per attachment (see batching.py)."""
        attachments = [d for kind, d in items if kind == "attachment"]
        if not attachments:
            return
        vpcs = {str(d.get("vpc_id")) for d in attachments if isinstance(d.get("vpc_id"), str)}
        workloads = {str(d.get("workload")) for d in attachments if isinstance(d.get("workload"), str)}
        self.get_many("vpc", vpcs)
        # Imported here: the allocator imports the store package.
        from l2vpc.engine.allocator import pool_ifname, pool_mac

        pools = self.prefetch_pools([pool_ifname(w) for w in workloads] + [pool_mac(v) for v in vpcs])
        siblings = {owner for p, held in pools.items() if p.startswith("ifname:") for owner in held.values()}
        self.get_many("attachment", siblings)
        hosts = {str(d["host"]) for d in attachments if isinstance(d.get("host"), str)}
        hosts |= {str(o.data.get("host")) for o in self.get_many("attachment", siblings) if o.data.get("host")}
        self.get_many("host", hosts)
        self._blocks["mac"] = list(mac_numbers)

    def prefetch_pools(self, pools: Iterable[str]) -> dict[str, dict[str, str]]:
        missing = sorted({p for p in pools if p not in self._pools})
        if missing:
            found = self._tx.allocations_many(missing)
            for p in missing:
                self._pools[p] = dict(found.get(p, {}))
        return {p: self._pools[p] for p in pools}

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

    def list(self, kind: str, tenant: str | None = None) -> list[StoredObject]:
        return self._tx.list(kind, tenant)

    def create(self, kind: str, ident: str, data: dict[str, Any], tenant: str = "") -> StoredObject:
        so = self._objects[(kind, ident)] = self._tx.create(kind, ident, data, tenant)
        return so

    def create_new(self, kind: str, ident: str, data: dict[str, Any], tenant: str = "") -> StoredObject:
        so = self._objects[(kind, ident)] = self._tx.create_new(kind, ident, data, tenant)
        return so

    def update(self, kind: str, ident: str, data: dict[str, Any], expected_generation: int) -> StoredObject:
        self._objects.pop((kind, ident), None)  # if the update fails, re-read
        so = self._objects[(kind, ident)] = self._tx.update(kind, ident, data, expected_generation)
        return so

    def delete(self, kind: str, ident: str, expected_generation: int | None = None) -> None:
        self._objects.pop((kind, ident), None)
        self._tx.delete(kind, ident, expected_generation)
        self._objects[(kind, ident)] = None

    # ------------------------------------------------------------------ allocations
    def reserve(self, pool: str, value: str, owner: str) -> None:
        self._tx.reserve(pool, value, owner)
        if pool in self._pools:
            self._pools[pool][value] = owner

    def claim(self, pool: str, value: str, owner: str) -> None:
        self._tx.claim(pool, value, owner)
        if pool in self._pools:
            self._pools[pool][value] = owner

    def release_owner(self, owner: str, pool: str | None = None) -> None:
        self._tx.release_owner(owner, pool)
        for name, held in self._pools.items():
            if pool is None or name == pool:
                for value in [v for v, o in held.items() if o == owner]:
                    del held[value]

    def allocations(self, pool: str) -> dict[str, str]:
        if pool not in self._pools:
            self._pools[pool] = self._tx.allocations(pool)
        return dict(self._pools[pool])

    def allocations_many(self, pools: Iterable[str]) -> dict[str, dict[str, str]]:
        return {p: dict(v) for p, v in self.prefetch_pools(list(pools)).items()}

    def pool_sizes(self, pools: Iterable[str]) -> dict[str, int]:
        return self._tx.pool_sizes(pools)

    # ------------------------------------------------------------------ counters
    def next_sequence(self, name: str) -> int:
        block = self._blocks.get(name)
        if block:
            return block.pop(0)
        return self._tx.next_sequence(name)

    def next_sequence_block(self, name: str, count: int) -> int:
        return self._tx.next_sequence_block(name, count)

    def current_sequence(self, name: str) -> int:
        return self._tx.current_sequence(name)

    # ------------------------------------------------------------------ the rest: the store's
    def put_host_report(self, host: str, generation: int, config: dict[str, Any]) -> None:
        self._tx.put_host_report(host, generation, config)

    def host_reports(self, hosts: Iterable[str] | None = None) -> dict[str, HostReport]:
        return self._tx.host_reports(hosts)

    def host_report_stamps(self) -> dict[str, tuple[int, float]]:
        return self._tx.host_report_stamps()

    def delete_host_report(self, host: str) -> None:
        self._tx.delete_host_report(host)
