"""Per-tenant quotas: how many objects of each kind one tenant may hold.

Each tenant shares the store with the others, so the number of its objects is bounded (the
defaults below, overridable for every tenant or for one). Objects are counted by an index pool
per (kind, tenant) in the allocations table, kept by Kind.insert/write and freed with the
object's other allocations. The store keeps each such pool's size as its rows come and go
(store/base.py COUNTED_POOL_PREFIX), so a create reads one number, whatever the tenant holds.
Writers that run side by side (the controller's keyed batches on PostgreSQL) check again after
their writes (`overdrawn`) and, when another took the last places meanwhile, run again with the
counters locked (Transaction.lock_pool_sizes): a tenant never ends above its limit.
Limits are rows of kind "quota": id `default` (every tenant) or `tenant:<name>`; the embedded
engine's objects belong to tenant '' (`tenant:`). Admins set them with `l2vpc controller quota
set`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from l2vpc.engine.errors import ValidationError
from l2vpc.engine.store.base import COUNTED_POOL_PREFIX, Store, Transaction

QUOTA_KIND = "quota"
LIMITED = ("vpc", "attachment", "direct_connect", "vpn")
DEFAULT_QUOTAS: Mapping[str, int] = {"vpc": 1_000, "attachment": 100_000, "direct_connect": 200, "vpn": 200}
MAX_QUOTA = 10_000_000
DEFAULTS_ID = "default"


def quota_id(tenant: str | None) -> str:
    """The row of a tenant's limits; None: the defaults of every tenant."""
    return DEFAULTS_ID if tenant is None else f"tenant:{tenant}"


def pool_count(kind: str, tenant: str) -> str:
    """Index of a tenant's objects of a kind (value = owner = object id)."""
    return f"{COUNTED_POOL_PREFIX}{kind}:{tenant}"


def limits(tx: Transaction, tenant: str) -> dict[str, int]:
    """The tenant's limit per kind: its own row over the `default` row over DEFAULT_QUOTAS."""
    out = dict(DEFAULT_QUOTAS)
    rows = {so.id: so for so in tx.get_many(QUOTA_KIND, [DEFAULTS_ID, quota_id(tenant)])}
    for ident in (DEFAULTS_ID, quota_id(tenant)):  # the tenant's own row wins
        so = rows.get(ident)
        if so is not None:
            out.update({k: int(v) for k, v in so.data.items() if k in DEFAULT_QUOTAS})
    return out


def _limits(tx: Transaction, tenant: str) -> dict[str, int]:
    derived = getattr(tx, "derived", None)  # a batch (store/cached.py): the limits read once
    return derived(QUOTA_KIND, tenant, lambda: limits(tx, tenant)) if derived else limits(tx, tenant)


def admit(tx: Transaction, kind: str, tenant: str, ident: str) -> None:
    """Count a new object of the tenant, or refuse it (ValidationError naming kind and limit)."""
    if kind not in DEFAULT_QUOTAS:
        return
    pool = pool_count(kind, tenant)
    limit = _limits(tx, tenant)[kind]
    held = tx.pool_sizes([pool]).get(pool, 0)
    if held >= limit:
        who = f"tenant {tenant!r}" if tenant else "this state"
        raise ValidationError(f"quota exceeded: {who} may hold at most {limit} {kind} objects and holds {held}; "
                              "delete some, or ask an operator to raise the quota (l2vpc controller quota set)")
    # A new object's id is unique by construction: claimed without reading the pool (in a
    # batch, reserve would read the tenant's whole count pool, growing with the tenant).
    tx.claim(pool, ident, ident)


def overdrawn(tx: Transaction, written: Transaction, counted: Iterable[tuple[str, str]]) -> list[str]:
    """The pools among the (kind, tenant) pairs `counted` that hold more than their tenant's
    limit, read from `written` (the store's transaction, after this one's writes reached it;
    limits through `tx`). Writers that run side by side (keyed transactions on PostgreSQL) may
    both pass `admit` at limit - 1; the second to add to a pool waits for the first's commit
    (its counter row is locked by the first one's trigger), so this read sees both."""
    wanted = {pool_count(kind, tenant): (kind, tenant) for kind, tenant in counted if kind in DEFAULT_QUOTAS}
    held = written.pool_sizes(sorted(wanted))
    return sorted(p for p, (kind, tenant) in wanted.items() if held.get(p, 0) > _limits(tx, tenant)[kind])


def keep(tx: Transaction, kind: str, tenant: str, ident: str) -> None:
    """An update released the object's allocations: count it again (never refused)."""
    if kind in DEFAULT_QUOTAS:
        tx.reserve(pool_count(kind, tenant), ident, ident)


def check_limits(values: Mapping[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for kind, value in values.items():
        if kind not in DEFAULT_QUOTAS:
            raise ValidationError(f"unknown kind {kind!r}; quotas exist for {', '.join(LIMITED)}", path="kind")
        if type(value) is not int or not 0 <= value <= MAX_QUOTA:
            raise ValidationError(f"must be a whole number from 0 to {MAX_QUOTA}, got {value!r}", path=f"limit.{kind}")
        out[kind] = value
    return out


def set_limits(store: Store, tenant: str | None, values: Mapping[str, int]) -> dict[str, int]:
    """Set limits of `tenant` (None: the defaults of every tenant); returns that row's limits."""
    new = check_limits(values)
    with store.transaction() as tx:
        ident = quota_id(tenant)
        so = tx.get(QUOTA_KIND, ident)
        data = {**(so.data if so else {}), **new}
        if so is None:
            tx.create(QUOTA_KIND, ident, data)
        else:
            tx.update(QUOTA_KIND, ident, data, so.generation)
        return dict(data)


def usage(store: Store, tenant: str) -> dict[str, tuple[int, int]]:
    """kind → (objects held, limit) of a tenant."""
    with store.transaction() as tx:
        lim = limits(tx, tenant)
        held = tx.pool_sizes([pool_count(k, tenant) for k in LIMITED])
        return {k: (held.get(pool_count(k, tenant), 0), lim[k]) for k in LIMITED}
