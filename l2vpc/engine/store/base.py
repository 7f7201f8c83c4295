"""The store interface: durable desired state, allocations and what hosts reported.

SQLite (embedded) and PostgreSQL (controllers) implement it through one SQL layer (sql.py).
What controllers keep beside it to run together (heartbeats, leadership, events, API tokens)
is their plane store (l2vpc/controller/planestore.py), built on these stores.

Objects are stored as JSON documents keyed by (kind, id) with a per-object generation: every
write names the generation it read, and a mismatch raises ConflictError instead of overwriting
a concurrent change.

Allocations (VNIs, MACs, interface names, addresses) are rows in named pools with a unique
(pool, value) key, so two writers can never hand out the same value: the loser gets
ConflictError and nothing of its transaction is kept.

All reads and writes happen inside `store.transaction()`; leaving the `with` block commits,
an exception rolls everything back.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

# Object kinds the store holds.
KINDS = ("host", "vpc", "attachment", "direct_connect", "vpn", "quota")  # quota: engine/quotas.py
# Pools whose size the store keeps as it changes, so that pool_sizes reads it in O(1) whatever
# the size: the quotas' pools of a tenant's objects (engine/quotas.py). Their size is exact in
# every transaction, as a count would be (kept in the same transaction as the pool's rows).
COUNTED_POOL_PREFIX = "count:"


@dataclass(frozen=True, slots=True)
class StoredObject:
    kind: str
    id: str
    generation: int  # 1 on create, +1 on every update
    data: dict[str, Any]
    tenant: str = ""


@dataclass(frozen=True, slots=True)
class HostReport:
    """What an agent last reported for its host (its actual HostConfig, as a dict)."""

    host: str
    generation: int  # the config generation the host has converged to
    config: dict[str, Any]
    updated_at: float


class Transaction(abc.ABC):
    @abc.abstractmethod
    def get(self, kind: str, ident: str, tenant: str | None = None) -> StoredObject | None:
        """The object, or None. With `tenant` set, another tenant's object is None."""

    def get_many(self, kind: str, idents: Iterable[str]) -> list[StoredObject]:
        """The objects among `idents` that exist, ordered by id (one round trip where the
        store can). Used for a VPC's members and a workload's attachments."""
        found = (self.get(kind, i) for i in sorted(set(idents)))
        return [o for o in found if o is not None]

    def get_each(self, keys: Iterable[tuple[str, str]]) -> list[StoredObject]:
        """The objects among the (kind, id) `keys` that exist, of any kinds (one round trip where
        the store can): what a batch reads before its creates."""
        by_kind: dict[str, set[str]] = {}
        for kind, ident in keys:
            by_kind.setdefault(kind, set()).add(ident)
        return [so for kind in sorted(by_kind) for so in self.get_many(kind, by_kind[kind])]

    @abc.abstractmethod
    def list(self, kind: str, tenant: str | None = None) -> list[StoredObject]:
        """All objects of a kind (of one tenant when given), ordered by id."""

    @abc.abstractmethod
    def create(self, kind: str, ident: str, data: dict[str, Any], tenant: str = "") -> StoredObject:
        """Insert with generation 1; ConflictError if (kind, id) exists."""

    @abc.abstractmethod
    def update(self, kind: str, ident: str, data: dict[str, Any], expected_generation: int) -> StoredObject:
        """Replace data if the stored generation equals `expected_generation`, bump it.

        NotFoundError if absent; ConflictError if the generation differs.
        """

    @abc.abstractmethod
    def delete(self, kind: str, ident: str, expected_generation: int | None = None) -> None:
        """Remove the object (and nothing else). NotFoundError if absent; ConflictError on a
        generation mismatch when one is given."""

    # --- allocations -------------------------------------------------------------------
    @abc.abstractmethod
    def reserve(self, pool: str, value: str, owner: str) -> None:
        """Claim `value` in `pool` for `owner`; ConflictError if another owner holds it.
        Claiming a value the same owner already holds is a no-op."""

    @abc.abstractmethod
    def release_owner(self, owner: str, pool: str | None = None) -> None:
        """Free every value `owner` holds (in one pool, or in all)."""

    @abc.abstractmethod
    def allocations(self, pool: str) -> dict[str, str]:
        """value -> owner for one pool."""

    def holder(self, pool: str, value: str) -> str | None:
        """Who holds `value` in `pool` (None: nobody); one row where the store can, for callers
        that ask about one value of a pool that grows with the state (names, adoption)."""
        return self.allocations(pool).get(value)

    def holds(self, owner: str, pool: str) -> bool:
        """Whether `owner` holds any value in `pool` (one row where the store can)."""
        return owner in self.allocations(pool).values()

    def pools_share(self, pool: str, other: str) -> bool:
        """Whether some value is in both pools (one indexed query where the store can): e.g.
        whether a host carries a VPC (its attachments' index and the host's)."""
        return not set(self.allocations(pool)).isdisjoint(self.allocations(other))

    def holders_between(self, pools: Iterable[str], low: str, high: str) -> dict[tuple[str, str], str]:
        """Every held value `low` <= value <= `high` (as text) of each pool, in one round trip
        where the store can: the MACs a block of the counter stands for (a narrow range,
        nearly always free) asked about in every VPC of a batch at once."""
        return {(p, v): o for p in set(pools) for v, o in self.allocations(p).items() if low <= v <= high}

    def holders(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """`holder` of each (pool, value) pair, in one round trip where the store can; pairs
        nobody holds are left out. For values of pools that grow with a VPC (its addresses,
        MACs): a create asks about its own values, not the whole pool."""
        out: dict[tuple[str, str], str] = {}
        for pool, value in pairs:
            owner = self.holder(pool, value)
            if owner is not None:
                out[(pool, value)] = owner
        return out

    def create_new(self, kind: str, ident: str, data: dict[str, Any], tenant: str = "") -> StoredObject:
        """`create` for an id just generated for it (random): a store may send it together with
        the next statement; a clash then raises ConflictError there, failing the transaction."""
        return self.create(kind, ident, data, tenant)

    def claim(self, pool: str, value: str, owner: str) -> None:
        """`reserve` for a value the caller has just seen free in this transaction (or that is
        unique by construction, like a new object's id): a store may send it together with the
        next statement; a clash then raises ConflictError there, failing the transaction."""
        self.reserve(pool, value, owner)

    def write_many(self, objects: Sequence[tuple[str, str, dict[str, Any], str]],
                   claims: Sequence[tuple[str, str, str]]) -> None:
        """`create_new(kind, ident, data, tenant)` of every object and `claim(pool, value, owner)`
        of every value, as few statements as the store can (a batch of creates, see cached.py).
        A clash raises ConflictError; the caller then rolls the transaction back."""
        for kind, ident, data, tenant in objects:
            self.create_new(kind, ident, data, tenant)
        for pool, value, owner in claims:
            self.claim(pool, value, owner)

    def update_many(self, updates: Sequence[tuple[str, str, dict[str, Any], int]]) -> None:
        """`update(kind, ident, data, expected_generation)` of each, as few statements as the
        store can (a batch's DHCP placements, see cached.py). A missing or changed object raises
        NotFoundError/ConflictError; the caller then rolls the transaction back."""
        for kind, ident, data, generation in updates:
            self.update(kind, ident, data, generation)

    def allocations_many(self, pools: Iterable[str]) -> dict[str, dict[str, str]]:
        """`allocations` of several pools (one round trip where the store can); pools holding
        nothing map to {}."""
        return {p: self.allocations(p) for p in pools}

    @abc.abstractmethod
    def pool_sizes(self, pools: Iterable[str]) -> dict[str, int]:
        """How many values each of `pools` holds (pools holding none are left out); for a
        counted pool (COUNTED_POOL_PREFIX) one row read, not a count of its values."""

    def lock_pool_sizes(self, pools: Iterable[str]) -> dict[str, int]:
        """`pool_sizes` of counted pools, which no other transaction may change until this one
        ends: a quota check that must be exact against concurrent writers (keyed transactions
        run side by side). Here a read: a store whose transactions exclude each other (SQLite)
        is exact already."""
        return self.pool_sizes(pools)

    # --- host reports ------------------------------------------------------------------
    @abc.abstractmethod
    def put_host_report(self, host: str, generation: int, config: dict[str, Any]) -> None:
        """Record what a host runs now (replaces the previous report)."""

    @abc.abstractmethod
    def host_reports(self, hosts: Iterable[str] | None = None) -> dict[str, HostReport]:
        """The latest report of every host (of `hosts` only, when given)."""

    def host_observations(self) -> dict[str, Sequence[Any]]:
        """host -> the `observations` of its report (sessions, tunnels, learned prefixes), without
        decoding whole configs where the store can."""
        return {h: list(r.config.get("observations") or ()) for h, r in self.host_reports().items()}

    @abc.abstractmethod
    def host_report_stamps(self) -> dict[str, tuple[int, float]]:
        """host -> (generation, updated_at) of its report, without the configs: tells which
        reports changed since they were last read."""

    @abc.abstractmethod
    def delete_host_report(self, host: str) -> None: ...

    # --- counters ----------------------------------------------------------------------
    @abc.abstractmethod
    def next_sequence(self, name: str) -> int:
        """A durable counter: 1, 2, 3, ... per name (used for config generations)."""

    def next_sequence_block(self, name: str, count: int) -> int:
        """Advance the counter by `count` at once; returns the last value taken (the block is
        last - count + 1 ... last)."""
        last = 0
        for _ in range(count):
            last = self.next_sequence(name)
        return last

    @abc.abstractmethod
    def current_sequence(self, name: str) -> int:
        """The counter's last value (0 if never advanced), without advancing it."""


class Store(abc.ABC):
    """A durable store; safe to use from several threads and processes at once."""

    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[Transaction]:
        """A read-write transaction; commits on normal exit, rolls back on exception.
        Waits for a concurrent writer (busy timeout) rather than failing at once; if the wait
        runs out, raises TemporaryError."""

    def keyed_transaction(self, keys: Iterable[str]) -> AbstractContextManager[Transaction]:
        """A transaction that excludes only the writers of the same `keys` (and every plain
        `transaction()`), where the store can; else a plain transaction.

        For writes whose rules only involve what the keys name (attachment creates: their VPC
        and workload), so that such writes by several controllers run side by side. Whatever
        else it writes must be safe under concurrency by itself (new ids, unique claims)."""
        return self.transaction()

    @abc.abstractmethod
    def schema_version(self) -> int: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def iter_objects(self, kind: str) -> Iterator[StoredObject]:
        with self.transaction() as tx:
            yield from tx.list(kind)
