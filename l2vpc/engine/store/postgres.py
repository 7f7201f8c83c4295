"""The store on PostgreSQL: shared state of controllers that run replicated.

Same interface and semantics as the SQLite store (sqlite.py), through psycopg 3.

Concurrency: one writer at a time, like SQLite
- Every transaction runs at READ COMMITTED and its first statement takes one exclusive,
  transaction-scoped advisory lock, the store's write lock (`pg_advisory_xact_lock`, released by
  COMMIT or ROLLBACK, and by the server when the session dies). So the transactions of all
  threads, processes and controllers on one database run one after the other, exactly as
  BEGIN IMMEDIATE makes them on SQLite. Because READ COMMITTED takes a fresh snapshot for each
  statement, everything after the lock sees every transaction committed before it.
- Why not SERIALIZABLE: the engine checks rules across objects (no attachment on a VPC being
  deleted, at most N VPCs per workload, the first free interface name) and increments shared
  counters (VNI, MAC, config generations) in most write transactions. Under SERIALIZABLE those
  transactions would abort each other with serialization failures that only re-running the
  whole `with` block can fix, and a context manager cannot re-run its body; the engine relies on
  the store's promise that a second writer *waits* (base.Store.transaction). Serial
  transactions keep every rule the engine checks true without retries, and a transaction
  holds the lock for a few milliseconds (bench/bench_store_postgres.py prints the rate).
- Defence in depth, true even for a writer that does not take the lock (psql by hand):
  update() and delete() name the generation in their WHERE clause, and READ COMMITTED
  re-evaluates it on the newest row version after waiting for a concurrent writer's row lock,
  so a stale writer updates nothing and gets ConflictError (no lost update); allocations have a
  primary key on (pool, value) and are claimed with INSERT ... ON CONFLICT DO NOTHING, so two
  owners can never hold one value; counters are a single UPDATE ... RETURNING of one row.
- A wait for the lock longer than `busy_timeout` (lock_timeout) raises TemporaryError. A session
  idle inside a transaction for `idle_timeout` (a hung or stopped process holding the lock) is
  ended by the server, which frees the lock for everyone else.
- Every transaction also reads the schema version with the lock: a controller started before a
  newer l2vpc migrated the database refuses to write instead of writing the old layout.

Connections: a small pool per store (`max_connections`, default 4) shared by the threads of
a process, each transaction borrowing one; since transactions are serial, more connections
would only wait longer on the lock. A thread that already has a transaction open cannot open
another (RuntimeError, as on SQLite). A store must not be used across fork(): open it again in
the child. A pooled connection that died while idle (server restart) is replaced transparently
on the next BEGIN; one that dies inside a transaction raises TemporaryError (during COMMIT: the
outcome is unknown, the message says so).

Leadership: `try_leadership(name)` takes a session-level advisory lock on a dedicated
connection; see `Leadership`.

Notifications: `Transaction.notify(channel, payload)` is NOTIFY, delivered when the
transaction commits; `listen(channel, callback)` LISTENs on a connection of its own (see
`Listener`). Channel names get a tag of the schema, so deployments sharing a database in
different schemas do not hear each other. They are hints to re-read, never data: a listener
that reconnects has missed what was sent meanwhile.

Documents are JSONB. jsonb cannot hold a NUL character ("\\u0000"), which we refuse as a
ValidationError naming the field; it keeps numbers exactly but writes floats >= 1e16 without an
exponent, so they read back as ints (the engine stores none).

The URL may carry a password: messages name the database as postgresql://user@host:port/db,
never with the password or query parameters.
"""

from __future__ import annotations

import builtins
import hashlib
import os
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, NoReturn

import psycopg
from psycopg import errors as pgerrors
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.types.string import TextLoader

from l2vpc.engine.errors import (
    ConflictError,
    L2vpcError,
    NotFoundError,
    StoreError,
    TemporaryError,
    ValidationError,
)
from l2vpc.engine.store.base import Event, Heartbeat, HostReport, Store, StoredObject, Transaction
from l2vpc.engine.store.documents import (
    LazyObject,
    check_event,
    check_heartbeats,
    check_kind,
    check_text,
    encode,
    loads,
)
from l2vpc.engine.store.migrations import Migration, check_sequence, load_migrations

DEFAULT_BUSY_TIMEOUT = 10.0
DEFAULT_IDLE_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 10
DEFAULT_MAX_CONNECTIONS = 4

# Advisory lock keys. The two-int form (class, object) for the write lock and the one-bigint
# form for leadership: PostgreSQL keeps the two key spaces apart, so they never collide.
_LOCK_CLASS = 0x6C327670  # "l2vp"
_WRITE_LOCK = 1
# One round trip: begin, wait for the write lock, read the schema version.
_BEGIN = (
    "BEGIN ISOLATION LEVEL READ COMMITTED; "
    f"SELECT pg_advisory_xact_lock({_LOCK_CLASS}, {_WRITE_LOCK}), (SELECT max(version) FROM schema_version)"
)
# Keyed writers: the write lock shared (plain transactions, which take it exclusively, wait for
# them and they for those), then each key's own lock.
_BEGIN_KEYED = (
    "BEGIN ISOLATION LEVEL READ COMMITTED; "
    f"SELECT pg_advisory_xact_lock_shared({_LOCK_CLASS}, {_WRITE_LOCK}), (SELECT max(version) FROM schema_version)"
)
_KEY_CLASS = _LOCK_CLASS + 1
# Locks taken in the order of the array, which the caller sorts: keyed writers never deadlock.
_LOCK_KEYS = f"SELECT pg_advisory_xact_lock({_KEY_CLASS}, k) FROM unnest(%s::int4[]) AS k"
# The same lock for migrating, before schema_version exists.
_BEGIN_MIGRATE = (
    "BEGIN ISOLATION LEVEL READ COMMITTED; "
    f"SELECT pg_advisory_xact_lock({_LOCK_CLASS}, {_WRITE_LOCK})"
)

# A NUL escape in encoded JSON: "\u0000" preceded by an even number of backslashes (an odd
# number means the backslash itself was escaped and the rest is plain text).
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")

# The session ended or a statement was cancelled (admin shutdown, crash, too many connections,
# idle-in-transaction timeout, cancel): retrying later helps.
_TEMPORARY_STATES = {"57P01", "57P02", "57P03", "53300", "25P03", "57014"}
# FATAL connection errors that pass (server starting, stopping, full, in recovery).
_TRANSIENT_FATAL = ("starting up", "shutting down", "too many clients", "remaining connection slots",
                    "recovery mode", "not yet accepting connections")
# Configuration problems: retrying the same thing fails again.
_CONFIG_CLASSES = ("28", "3D", "42501", "25006", "53100")


# Deferred writes, many rows per statement (PostgresTransaction._flush). A value claimed again
# by its owner counts as claimed (DO UPDATE ... WHERE returns it); another owner's is not returned.
_INSERT_OBJECTS = ("INSERT INTO objects (kind, id, tenant, generation, data) "
                   "SELECT k, i, t, 1, d::jsonb FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) "
                   "AS u(k, i, t, d) ON CONFLICT (kind, id) DO NOTHING RETURNING kind, id")
_CLAIM_MANY = ("INSERT INTO allocations (pool, value, owner) "
               "SELECT p, v, o FROM unnest(%s::text[], %s::text[], %s::text[]) AS u(p, v, o) "
               "ON CONFLICT (pool, value) DO UPDATE SET owner = excluded.owner "
               "WHERE allocations.owner = excluded.owner RETURNING pool, value")
_INSERT_OBJECT = ("INSERT INTO objects (kind, id, tenant, generation, data) VALUES (%s, %s, %s, 1, %s::jsonb) "
                  "ON CONFLICT (kind, id) DO NOTHING")


class PostgresTransaction(Transaction):
    """One BEGIN ... COMMIT holding the write lock; see the module docstring."""

    __slots__ = ("_claims", "_conn", "_inserts", "_store")

    def __init__(self, store: PostgresStore, conn: psycopg.Connection[Any]) -> None:
        self._store = store
        self._conn: psycopg.Connection[Any] | None = conn
        # Writes whose outcome nobody reads at once (inserts of new ids, claims of values seen
        # free): sent with the next statement, as one multi-row statement per table.
        self._claims: dict[tuple[str, str], str] = {}
        self._inserts: list[tuple[str, str, str, str]] = []

    @property
    def _pending(self) -> bool:
        return bool(self._claims or self._inserts)

    def _flush(self, query: str | None = None, params: Sequence[Any] = ()) -> psycopg.Cursor[Any] | None:
        """Send the pending writes (and `query`, whose cursor is returned) in one round trip;
        then check them, so a clash raises ConflictError here."""
        conn = self._conn
        if conn is None:
            raise RuntimeError("store transaction used after its `with` block ended")
        claims, self._claims = self._claims, {}
        inserts, self._inserts = self._inserts, []
        try:
            with conn.pipeline():
                made = conn.execute(_INSERT_OBJECTS, [list(col) for col in zip(*inserts, strict=True)]) \
                    if inserts else None
                held = conn.execute(_CLAIM_MANY, ([p for p, _ in claims], [v for _, v in claims],
                                                  list(claims.values()))) if claims else None
                last = conn.execute(query, params) if query is not None else None
            done = {(k, i) for k, i in made.fetchall()} if made is not None else set()
            got = {(p, v) for p, v in held.fetchall()} if held is not None else set()
        except psycopg.Error as exc:
            raise self._store._translate(exc, "write", conn) from exc
        for kind, ident, _, _ in inserts:
            if (kind, ident) not in done:
                raise ConflictError(f"{kind} {ident!r} already exists")
        for (pool, value), owner in claims.items():
            if (pool, value) not in got:
                raise ConflictError(f"{pool} {value!r} is already held (requested by {owner!r})")
        return last

    def _rows(self, query: str, params: Sequence[Any] = ()) -> list[Any]:
        conn = self._conn
        if conn is None:
            raise RuntimeError("store transaction used after its `with` block ended")
        try:
            if self._pending:
                cur = self._flush(query, params)
                assert cur is not None
                return cur.fetchall()
            return conn.execute(query, params).fetchall()
        except psycopg.Error as exc:
            raise self._store._translate(exc, "query", conn) from exc
        except UnicodeEncodeError as exc:
            # Checked before anything is sent: the transaction is still usable.
            raise ValidationError(
                f"text is not valid Unicode (a lone surrogate at position {exc.start}): {exc.object!r}"
            ) from None

    def _change(self, query: str, params: Sequence[Any]) -> int:
        conn = self._conn
        if conn is None:
            raise RuntimeError("store transaction used after its `with` block ended")
        try:
            if self._pending:
                cur = self._flush(query, params)
                assert cur is not None
                return cur.rowcount
            return conn.execute(query, params).rowcount
        except psycopg.Error as exc:
            raise self._store._translate(exc, "write", conn) from exc
        except UnicodeEncodeError as exc:
            raise ValidationError(
                f"text is not valid Unicode (a lone surrogate at position {exc.start}): {exc.object!r}"
            ) from None

    # --- objects -----------------------------------------------------------------------
    def get(self, kind: str, ident: str, tenant: str | None = None) -> StoredObject | None:
        check_kind(kind)
        if not _lookup_key("id", ident):
            return None  # no stored id contains NUL
        rows = self._rows("SELECT tenant, generation, data FROM objects WHERE kind = %s AND id = %s", (kind, ident))
        if not rows or (tenant is not None and rows[0][0] != tenant):
            return None
        tenant_, generation, text = rows[0]
        return LazyObject.from_row(kind, ident, generation, text, tenant_)

    def get_many(self, kind: str, idents: Iterable[str]) -> list[StoredObject]:
        check_kind(kind)
        wanted = sorted({str(i) for i in idents if _lookup_key("id", str(i))})
        if not wanted:
            return []
        rows = self._rows(
            "SELECT id, tenant, generation, data FROM objects WHERE kind = %s AND id = ANY(%s) ORDER BY id",
            (kind, wanted),
        )
        new = LazyObject.from_row
        return [new(kind, i, g, d, t) for i, t, g, d in rows]

    def list(self, kind: str, tenant: str | None = None) -> list[StoredObject]:
        check_kind(kind)
        if tenant is None:
            rows = self._rows(
                "SELECT id, tenant, generation, data FROM objects WHERE kind = %s ORDER BY id", (kind,)
            )
        else:
            if not _lookup_key("tenant", tenant):
                return []
            rows = self._rows(
                "SELECT id, tenant, generation, data FROM objects WHERE kind = %s AND tenant = %s ORDER BY id",
                (kind, tenant),
            )
        new = LazyObject.from_row
        return [new(kind, i, g, d, t) for i, t, g, d in rows]

    def create(self, kind: str, ident: str, data: dict[str, Any], tenant: str = "") -> StoredObject:
        text = self._check_new(kind, ident, tenant, data)
        inserted = self._change(_INSERT_OBJECT, (kind, ident, tenant, text))
        if inserted != 1:
            raise ConflictError(f"{kind} {ident!r} already exists")
        # What a later get() returns (jsonb's text), not the caller's mutable dict.
        return LazyObject.from_row(kind, ident, 1, text, tenant)

    def create_new(self, kind: str, ident: str, data: dict[str, Any], tenant: str = "") -> StoredObject:
        text = self._check_new(kind, ident, tenant, data)

        if self._conn is None:
            raise RuntimeError("store transaction used after its `with` block ended")
        # Nobody reads the outcome now (the returned object is built here): sent with the next
        # statement; a duplicate id then raises there and fails the transaction.
        self._inserts.append((kind, ident, tenant, text))
        return LazyObject.from_row(kind, ident, 1, text, tenant)

    @staticmethod
    def _check_new(kind: str, ident: str, tenant: str, data: dict[str, Any]) -> str:
        check_kind(kind)
        _check_key("id", ident)
        if not isinstance(tenant, str):
            raise ValidationError(f"must be a string, got {type(tenant).__name__}", path="tenant")
        if "\x00" in tenant:
            raise ValidationError("must not contain NUL characters", path="tenant")
        return _encode_pg(kind, ident, data)

    def update(self, kind: str, ident: str, data: dict[str, Any], expected_generation: int) -> StoredObject:
        check_kind(kind)
        _check_generation("expected_generation", expected_generation)
        text = _encode_pg(kind, ident, data)
        if not _lookup_key("id", ident):
            raise NotFoundError(kind, ident)
        rows = self._rows(
            "UPDATE objects SET data = %s::jsonb, generation = generation + 1 "
            "WHERE kind = %s AND id = %s AND generation = %s RETURNING generation, tenant",
            (text, kind, ident, expected_generation),
        )
        if not rows:
            self._raise_missing_or_stale(kind, ident, expected_generation)
        generation, tenant = rows[0]
        return LazyObject.from_row(kind, ident, generation, text, tenant)

    def delete(self, kind: str, ident: str, expected_generation: int | None = None) -> None:
        check_kind(kind)
        if expected_generation is not None:
            _check_generation("expected_generation", expected_generation)
        if not _lookup_key("id", ident):
            raise NotFoundError(kind, ident)
        if expected_generation is None:
            if self._change("DELETE FROM objects WHERE kind = %s AND id = %s", (kind, ident)) != 1:
                raise NotFoundError(kind, ident)
            return
        deleted = self._change(
            "DELETE FROM objects WHERE kind = %s AND id = %s AND generation = %s",
            (kind, ident, expected_generation),
        )
        if deleted != 1:
            self._raise_missing_or_stale(kind, ident, expected_generation)

    def _raise_missing_or_stale(self, kind: str, ident: str, expected: int) -> NoReturn:
        rows = self._rows("SELECT generation FROM objects WHERE kind = %s AND id = %s", (kind, ident))
        if not rows:
            raise NotFoundError(kind, ident)
        raise ConflictError(
            f"{kind} {ident!r} was changed concurrently: expected generation {expected}, "
            f"actual generation {rows[0][0]}; re-read it and retry"
        )

    # --- allocations -------------------------------------------------------------------
    def reserve(self, pool: str, value: str, owner: str) -> None:
        if not (type(pool) is str and type(value) is str and type(owner) is str and pool and value and owner
                and "\x00" not in pool + value + owner):
            for field, text in (("pool", pool), ("value", value), ("owner", owner)):
                _check_key(field, text)
        # One round trip: the insert, or else the current holder. The CTE's new row is not
        # visible to the SELECT (same snapshot), so exactly one branch returns a row.
        rows = self._rows(
            "WITH claimed AS (INSERT INTO allocations (pool, value, owner) VALUES (%s, %s, %s) "
            "ON CONFLICT (pool, value) DO NOTHING RETURNING owner) "
            "SELECT owner FROM claimed UNION ALL SELECT owner FROM allocations WHERE pool = %s AND value = %s",
            (pool, value, owner, pool, value),
        )
        holder = rows[0][0] if rows else "?"
        if holder != owner:
            raise ConflictError(f"{pool} {value!r} is already held by {holder!r} (requested by {owner!r})")

    def claim(self, pool: str, value: str, owner: str) -> None:
        for field, text in (("pool", pool), ("value", value), ("owner", owner)):
            _check_key(field, text)

        if self._conn is None:
            raise RuntimeError("store transaction used after its `with` block ended")
        # Idempotent like reserve: the same owner claiming again is no clash.
        earlier = self._claims.setdefault((pool, value), owner)
        if earlier != owner:
            raise ConflictError(f"{pool} {value!r} is already held by {earlier!r} (requested by {owner!r})")

    def release_owner(self, owner: str, pool: str | None = None) -> None:
        if not _lookup_key("owner", owner) or (pool is not None and not _lookup_key("pool", pool)):
            return
        if pool is None:
            self._change("DELETE FROM allocations WHERE owner = %s", (owner,))
        else:
            self._change("DELETE FROM allocations WHERE owner = %s AND pool = %s", (owner, pool))

    def allocations(self, pool: str) -> dict[str, str]:
        if not _lookup_key("pool", pool):
            return {}
        return dict(self._rows("SELECT value, owner FROM allocations WHERE pool = %s", (pool,)))

    def allocations_many(self, pools: Iterable[str]) -> dict[str, dict[str, str]]:
        names = sorted({p for p in pools if _lookup_key("pool", p)})
        out: dict[str, dict[str, str]] = {p: {} for p in names}
        if names:
            for pool, value, owner in self._rows(
                    "SELECT pool, value, owner FROM allocations WHERE pool = ANY(%s::text[])", (names,)):
                out[pool][value] = owner
        return out

    def pool_sizes(self, pools: Iterable[str]) -> dict[str, int]:
        names = [p for p in pools if _lookup_key("pool", p)]
        if not names:
            return {}
        return {p: int(n) for p, n in self._rows(
            "SELECT pool, count(*) FROM allocations WHERE pool = ANY(%s::text[]) GROUP BY pool", (names,))}

    # --- host reports ------------------------------------------------------------------
    def put_host_report(self, host: str, generation: int, config: dict[str, Any]) -> None:
        _check_key("host", host)
        _check_generation("generation", generation, minimum=0)
        text = _encode_pg("host report", host, config, field="config")
        # The database's clock, like heartbeats' last_seen, so the two compare across controllers.
        self._change(
            "INSERT INTO host_reports (host, generation, config, updated_at) "
            "VALUES (%s, %s, %s::jsonb, clock_timestamp()) "
            "ON CONFLICT (host) DO UPDATE SET generation = excluded.generation, config = excluded.config, "
            "updated_at = excluded.updated_at",
            (host, generation, text),
        )

    def host_reports(self, hosts: Iterable[str] | None = None) -> dict[str, HostReport]:
        if hosts is None:
            rows = self._rows(
                "SELECT host, generation, config, extract(epoch FROM updated_at)::float8 FROM host_reports"
            )
        else:
            wanted = sorted({str(h) for h in hosts if _lookup_key("host", str(h))})
            rows = self._rows(
                "SELECT host, generation, config, extract(epoch FROM updated_at)::float8 FROM host_reports "
                "WHERE host = ANY(%s)", (wanted,),
            )
        return {h: HostReport(h, g, loads(c), u) for h, g, c, u in rows}

    def host_report_stamps(self) -> dict[str, tuple[int, float]]:
        rows = self._rows("SELECT host, generation, extract(epoch FROM updated_at)::float8 FROM host_reports")
        return {h: (g, u) for h, g, u in rows}

    def delete_host_report(self, host: str) -> None:
        if _lookup_key("host", host):
            self._change("DELETE FROM host_reports WHERE host = %s", (host,))

    # --- counters ----------------------------------------------------------------------
    def next_sequence(self, name: str) -> int:
        _check_key("name", name)
        rows = self._rows(
            "INSERT INTO sequences (name, value) VALUES (%s, 1) "
            "ON CONFLICT (name) DO UPDATE SET value = sequences.value + 1 RETURNING value",
            (name,),
        )
        return int(rows[0][0])

    def next_sequence_block(self, name: str, count: int) -> int:
        _check_key("name", name)
        if type(count) is not int or count < 1:
            raise ValidationError(f"must be a positive integer, got {count!r}", path="count")
        rows = self._rows(
            "INSERT INTO sequences (name, value) VALUES (%s, %s) "
            "ON CONFLICT (name) DO UPDATE SET value = sequences.value + excluded.value RETURNING value",
            (name, count),
        )
        return int(rows[0][0])

    def current_sequence(self, name: str) -> int:
        if not _lookup_key("name", name):
            return 0
        rows = self._rows("SELECT value FROM sequences WHERE name = %s", (name,))
        return int(rows[0][0]) if rows else 0

    # --- control plane -------------------------------------------------------------------
    def clock(self) -> float:
        rows = self._rows("SELECT extract(epoch FROM clock_timestamp())::float8")
        return float(rows[0][0])

    def put_heartbeats(self, beats: Sequence[Heartbeat]) -> set[str]:
        check_heartbeats(beats)
        for i, b in enumerate(beats):
            for field in ("host", "digest", "controller"):
                if "\x00" in getattr(b, field):
                    raise ValidationError("must not contain NUL characters", path=f"beats[{i}].{field}")
        if not beats:
            return set()
        # One statement for the whole batch: arrays in, unnest, upsert. A heartbeat older than
        # the recorded one (another controller flushed a newer one) keeps the newer values.
        newer = "excluded.last_seen >= h.last_seen"
        written = self._rows(
            "INSERT INTO heartbeats AS h (host, last_seen, accepted_generation, converged_generation, converging, "
            "digest, controller) "
            "SELECT u.host, u.seen, u.acc, u.conv, u.busy, u.digest, u.ctl "
            "FROM unnest(%s::text[], %s::float8[], %s::int8[], %s::int8[], %s::bool[], %s::text[], %s::text[]) "
            "AS u(host, seen, acc, conv, busy, digest, ctl) "
            "WHERE EXISTS (SELECT 1 FROM objects o WHERE o.kind = 'host' AND o.id = u.host) "
            "ON CONFLICT (host) DO UPDATE SET "
            f"accepted_generation = CASE WHEN {newer} THEN excluded.accepted_generation "
            "ELSE h.accepted_generation END, "
            f"converged_generation = CASE WHEN {newer} THEN excluded.converged_generation "
            "ELSE h.converged_generation END, "
            f"converging = CASE WHEN {newer} THEN excluded.converging ELSE h.converging END, "
            f"digest = CASE WHEN {newer} THEN excluded.digest ELSE h.digest END, "
            f"controller = CASE WHEN {newer} THEN excluded.controller ELSE h.controller END, "
            "last_seen = greatest(h.last_seen, excluded.last_seen) "
            "RETURNING host",
            (
                [b.host for b in beats], [float(b.last_seen) for b in beats],
                [b.accepted_generation for b in beats], [b.converged_generation for b in beats],
                [b.converging for b in beats], [b.digest for b in beats], [b.controller for b in beats],
            ),
        )
        return {b.host for b in beats} - {r[0] for r in written}

    def heartbeats(self) -> dict[str, Heartbeat]:
        rows = self._rows(
            "SELECT host, last_seen, accepted_generation, converged_generation, converging, digest, controller "
            "FROM heartbeats"
        )
        return {r[0]: Heartbeat(*r) for r in rows}

    def delete_heartbeat(self, host: str) -> None:
        if _lookup_key("host", host):
            self._change("DELETE FROM heartbeats WHERE host = %s", (host,))

    def get_state(self, key: str) -> dict[str, Any] | None:
        if not _lookup_key("key", key):
            return None
        rows = self._rows("SELECT value FROM plane_state WHERE key = %s", (key,))
        return loads(rows[0][0]) if rows else None

    def put_state(self, key: str, value: dict[str, Any]) -> None:
        _check_key("key", key)
        text = _encode_pg("state", key, value, field="value")
        self._change(
            "INSERT INTO plane_state (key, value) VALUES (%s, %s::jsonb) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, text),
        )

    def add_events(self, events: Sequence[Event], keep: int = 200) -> None:
        for i, e in enumerate(events):
            check_event(f"events[{i}]", e)
            if "\x00" in e.host + e.what:
                raise ValidationError("must not contain NUL characters", path=f"events[{i}]")
        if not events:
            return
        self._change(
            "INSERT INTO plane_events (time, host, what) SELECT * FROM unnest(%s::float8[], %s::text[], %s::text[])",
            ([float(e.time) for e in events], [e.host for e in events], [e.what for e in events]),
        )
        self._change("DELETE FROM plane_events WHERE id <= (SELECT max(id) FROM plane_events) - %s", (keep,))

    def events(self, limit: int = 200) -> builtins.list[Event]:
        rows = self._rows(
            "SELECT time, host, what FROM (SELECT id, time, host, what FROM plane_events ORDER BY id DESC LIMIT %s) "
            "AS newest ORDER BY id", (limit,),
        )
        return [Event(t, h, w) for t, h, w in rows]

    def notify(self, channel: str, payload: str) -> None:
        _check_channel(channel)
        if len(payload.encode()) >= 8000 or "\x00" in payload:
            raise ValidationError("must be shorter than 8000 bytes, without NUL", path="payload")
        # Delivered when (and only if) this transaction commits.
        self._rows("SELECT pg_notify(%s, %s)", (self._store._qualified(channel), payload))


class _TransactionContext(AbstractContextManager[Transaction]):
    __slots__ = ("_conn", "_keys", "_store", "_tx")

    def __init__(self, store: PostgresStore, keys: Iterable[str] | None = None) -> None:
        self._store = store
        self._tx: PostgresTransaction | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._keys = None if keys is None else sorted({_key_number(k) for k in keys})

    def __enter__(self) -> Transaction:
        store = self._store
        conn = store._begin(self._keys)
        self._conn = conn
        self._tx = PostgresTransaction(store, conn)
        return self._tx

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        tx, self._tx = self._tx, None
        conn, self._conn = self._conn, None
        if tx is None or conn is None:
            return
        store = self._store
        if exc_type is None and tx._pending:
            try:
                tx._flush()
            except BaseException:
                tx._conn = None
                _rollback(conn)
                store._release_conn(conn, not (conn.broken or conn.closed))
                raise
        tx._conn = None
        reusable = False
        try:
            if exc_type is None:
                # The caller swallowed an error of this transaction: COMMIT would quietly roll
                # back (PostgreSQL answers an aborted transaction's COMMIT with ROLLBACK).
                if conn.broken or conn.closed:
                    raise TemporaryError(
                        f"state database {store.name}: the connection was lost during the transaction; "
                        "nothing was committed, retry"
                    )
                if conn.info.transaction_status == TransactionStatus.INERROR:
                    _rollback(conn)
                    raise StoreError(
                        f"state database {store.name}: a statement of this transaction failed, so "
                        "nothing was committed"
                    )
                try:
                    conn.execute("COMMIT")
                except psycopg.Error as commit_exc:
                    if conn.broken or conn.closed:
                        raise TemporaryError(
                            f"state database {store.name}: the connection was lost during commit, so it "
                            "is unknown whether the transaction was committed; re-read and retry"
                        ) from commit_exc
                    _rollback(conn)
                    raise store._translate(commit_exc, "commit", conn) from commit_exc
            else:
                _rollback(conn)
            reusable = True
        finally:
            store._release_conn(conn, reusable)


class Leadership:
    """Leadership of `name` among everyone calling `PostgresStore.try_leadership(name)` on the
    same database: a session-level advisory lock held by a connection of its own.

    The server frees the lock when the holder calls `release()` (or leaves its `with` block),
    closes the connection, or dies: at once when its process ends (the socket closes), and for a
    holder that vanished from the network once the server's TCP keepalives give up on it
    (`tcp_keepalives_idle` + `count` x `interval` = 5 + 3 x 2 s on this connection). The holder
    must call `is_held()` before acting as leader (each reconcile round) and stop when it
    returns False: its own TCP user timeout (4 s) is shorter than the server's detection, so
    after a partition the old leader learns it lost first.

    `term` grows by one with every new holder of `name` (a durable counter in the store): a
    fencing token that lets followers and agents refuse a deposed leader's late writes.
    """

    def __init__(self, name: str, term: int, conn: psycopg.Connection[Any], key: int) -> None:
        self.name = name
        self.term = term
        self._conn: psycopg.Connection[Any] | None = conn
        self._key = key
        self._lock = threading.Lock()

    def is_held(self) -> bool:
        """Ask the server whether this session still holds the lock (one round trip)."""
        with self._lock:
            conn = self._conn
            if conn is None or conn.closed:
                return False
            try:
                row = conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND pid = pg_backend_pid() AND objsubid = 1 "
                    "AND ((classid::bigint << 32) | objid::bigint) = %s",
                    (self._key,),
                ).fetchone()
            except psycopg.Error:
                self._drop()
                return False
            if not row or row[0] != 1:
                self._drop()
                return False
            return True

    def release(self) -> None:
        """Give up leadership (idempotent)."""
        with self._lock:
            conn = self._conn
            if conn is None:
                return
            try:
                if not conn.closed:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
            except psycopg.Error:
                pass  # closing the session frees it anyway
            self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __enter__(self) -> Leadership:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"Leadership(name={self.name!r}, term={self.term}, held={self._conn is not None})"


class Listener:
    """LISTEN on one channel on a connection of its own, in a daemon thread.

    `callback(payload)` runs in that thread for each notification, and `callback(None)` after
    every (re)connection: notifications sent while the connection was down are lost, so the
    callback should then re-read what it waits for. A lost connection is retried with backoff.
    `close()` stops the thread (within half a second) and closes the connection.
    """

    def __init__(self, store: PostgresStore, channel: str, callback: Callable[[str | None], None]) -> None:
        self.channel = channel
        self._store = store
        self._callback = callback
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"listen-{channel}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        delay = 0.1
        while not self._stop.is_set():
            conn: psycopg.Connection[Any] | None = None
            try:
                conn = self._store._connect(application_name=f"l2vpc listen {self.channel}"[:63])
                conn.execute(f"LISTEN {self._store._qualified(self.channel)}")  # a checked identifier
                delay = 0.1
                self._callback(None)
                while not self._stop.is_set():
                    for note in conn.notifies(timeout=0.5):
                        self._callback(note.payload)
            except (psycopg.Error, L2vpcError):
                if self._stop.wait(delay):
                    break
                delay = min(delay * 2, 5.0)
            finally:
                if conn is not None:
                    conn.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PostgresStore(Store):
    """The store in one PostgreSQL database (tables in the first schema of its search_path).

    `url` is a libpq URL or connection string (`postgresql://user:pw@host:port/db`; libpq's
    PG* variables and ~/.pgpass apply). `migrations` replaces the shipped schema migrations
    (tests use it to exercise upgrades). Opening applies missing migrations under the write
    lock, so controllers starting at once migrate one after the other; an unreachable server
    raises TemporaryError, a bad URL, refused login or newer schema StoreError.
    """

    def __init__(
        self,
        url: str,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        connect_timeout: int = DEFAULT_CONNECT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        application_name: str = "l2vpc",
        migrations: Sequence[Migration] | None = None,
    ) -> None:
        if busy_timeout <= 0 or idle_timeout <= 0 or connect_timeout <= 0 or max_connections < 1:
            raise ValueError("timeouts must be positive and max_connections at least 1")
        self._params, self.name, self._secret = _parse_url(url)
        self.busy_timeout = busy_timeout
        self.idle_timeout = idle_timeout
        self._params.setdefault("connect_timeout", str(connect_timeout))
        self._params.setdefault("application_name", application_name)
        # Notice a dead server inside a query instead of waiting for the kernel (hours).
        for k, v in (("keepalives", "1"), ("keepalives_idle", "10"), ("keepalives_interval", "5"),
                     ("keepalives_count", "3")):
            self._params.setdefault(k, v)
        self._migrations = tuple(migrations) if migrations is not None else load_migrations("postgres")
        check_sequence(self._migrations)
        self._latest = self._migrations[-1].version if self._migrations else 0
        self._pid = os.getpid()
        self._local = threading.local()  # .conn: this thread's open transaction's connection
        self._slots = threading.BoundedSemaphore(max_connections)
        self._idle: list[psycopg.Connection[Any]] = []
        self._pool_lock = threading.Lock()
        self._closed = False
        self._channel_tag = ""  # set from the schema's name by _read_version
        self._migrate()

    # --- connections -------------------------------------------------------------------
    def _connect(self, **extra: Any) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(**{**self._params, **extra}, autocommit=True)
        except psycopg.Error as exc:
            raise self._connect_error(exc) from None
        try:
            # Our SQL converts nothing: hand jsonb over as its text, decoded lazily (see LazyObject).
            conn.adapters.register_loader("jsonb", TextLoader)
            conn.execute(
                "SELECT set_config('lock_timeout', %s, false), "
                "set_config('idle_in_transaction_session_timeout', %s, false)",
                (f"{int(self.busy_timeout * 1000)}ms", f"{int(self.idle_timeout * 1000)}ms"),
            )
        except psycopg.Error as exc:
            conn.close()
            raise self._translate(exc, "connect", None) from None
        return conn

    def _acquire(self) -> psycopg.Connection[Any]:
        """A connection for this thread's transaction (pooled or new)."""
        if getattr(self._local, "conn", None) is not None:
            raise RuntimeError("store.transaction() nested in one thread; pass the open transaction down instead")
        if os.getpid() != self._pid:
            raise StoreError(f"state database {self.name} was opened before fork(); open it again in the child")
        if self._closed:
            raise StoreError(f"state database {self.name}: the store is closed")
        if not self._slots.acquire(timeout=self.busy_timeout):
            raise TemporaryError(
                f"state database {self.name} is busy: this process's other threads held all its "
                f"connections for more than {self.busy_timeout:g} s; retry later"
            )
        try:
            with self._pool_lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = self._connect()
        except BaseException:
            self._slots.release()
            raise
        self._local.conn = conn
        return conn

    def _release_conn(self, conn: psycopg.Connection[Any], reusable: bool) -> None:
        self._local.conn = None
        try:
            ok = reusable and not conn.closed and not conn.broken and (
                conn.info.transaction_status == TransactionStatus.IDLE)
            with self._pool_lock:
                if ok and not self._closed:
                    self._idle.append(conn)
                    return
            conn.close()
        finally:
            self._slots.release()

    def _begin(self, keys: Sequence[int] | None = None) -> psycopg.Connection[Any]:
        """Borrow a connection, BEGIN and take the write lock (with `keys`: shared, and the
        keys' locks); a pooled connection found dead (server restarted while it idled) is
        replaced once, since nothing has happened yet."""
        for attempt in (1, 2):
            conn = self._acquire()
            try:
                cur = conn.execute(_BEGIN if keys is None else _BEGIN_KEYED, prepare=False)
                cur.nextset()
                row = cur.fetchone()
                if keys:
                    conn.execute(_LOCK_KEYS, (list(keys),))
            except psycopg.Error as exc:
                dead = conn.broken or conn.closed
                if not dead:
                    _rollback(conn)
                self._release_conn(conn, reusable=not dead)
                if dead and attempt == 1:
                    continue
                raise self._translate(exc, "begin a transaction", None) from exc
            except BaseException:
                self._release_conn(conn, reusable=False)
                raise
            version = row[1] if row else None
            if version is not None and version > self._latest:
                _rollback(conn)
                self._release_conn(conn, reusable=True)
                raise StoreError(
                    f"state database {self.name} was upgraded to schema {version} by a newer l2vpc "
                    f"while this one (schema {self._latest}) was running; upgrade and restart it"
                )
            return conn
        raise AssertionError("unreachable")

    # --- opening -----------------------------------------------------------------------
    def _migrate(self) -> None:
        """Bring the schema to the newest version in one transaction under the write lock."""
        conn = self._acquire()
        ok = False
        step = "begin the migration"
        try:
            try:
                conn.execute(_BEGIN_MIGRATE, prepare=False)
                step = "read the schema version"
                current = self._read_version(conn)
                if current > self._latest:
                    raise StoreError(
                        f"state database {self.name} was written by a newer l2vpc (schema {current}); "
                        f"upgrade l2vpc (this one knows schema {self._latest})"
                    )
                for mig in self._migrations[current:]:
                    step = f"migrate to schema {mig.version} ({mig.name})"
                    conn.execute(mig.sql, prepare=False)  # a whole script: the simple query protocol
                    conn.execute(
                        "INSERT INTO schema_version (version, name) VALUES (%s, %s)", (mig.version, mig.name)
                    )
                conn.execute("COMMIT")
                ok = True
            except psycopg.Error as exc:
                dead = conn.broken or conn.closed
                if not dead:
                    _rollback(conn)
                raise self._translate(exc, step, None) from None
            except BaseException:
                _rollback(conn)
                raise
        finally:
            self._release_conn(conn, reusable=ok)

    def _read_version(self, conn: psycopg.Connection[Any]) -> int:
        row = conn.execute(
            "SELECT current_schema(), to_regclass('schema_version') IS NOT NULL, "
            "(SELECT count(*) FROM pg_tables WHERE schemaname = current_schema())"
        ).fetchone()
        assert row is not None
        schema, has_version, tables = row
        if schema is not None:
            # Notification channels are per database, not per schema: qualify ours so that
            # deployments in different schemas of one database do not wake each other.
            self._channel_tag = hashlib.blake2b(str(schema).encode(), digest_size=4).hexdigest()
        if schema is None:
            raise StoreError(
                f"state database {self.name}: no schema of the search_path exists to hold the tables; "
                "create it or fix the search_path"
            )
        if not has_version:
            if tables:
                raise StoreError(
                    f"state database {self.name}: schema {schema!r} holds other tables but no l2vpc state; "
                    "use an empty database or schema (options=-csearch_path=...)"
                )
            return 0
        version = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
        return int(version[0]) if version else 0

    # --- errors ------------------------------------------------------------------------
    def _translate(self, exc: psycopg.Error, action: str, conn: psycopg.Connection[Any] | None) -> L2vpcError:
        state = exc.sqlstate or ""
        text = self._scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        if isinstance(exc, pgerrors.LockNotAvailable):
            return TemporaryError(
                f"state database {self.name} is busy: another transaction held its write lock for more "
                f"than {self.busy_timeout:g} s ({action}); retry later"
            )
        if isinstance(exc, pgerrors.SerializationFailure | pgerrors.DeadlockDetected):
            return TemporaryError(
                f"state database {self.name}: {action} collided with a concurrent transaction ({text}); retry"
            )
        if state == "23505":
            return ConflictError(f"state database {self.name}: {action}: {text}")
        if state == "25P02":
            return StoreError(
                f"state database {self.name}: an earlier statement of this transaction failed; "
                "leave the `with` block to roll it back"
            )
        if state.startswith(_CONFIG_CLASSES) or (isinstance(exc, psycopg.ProgrammingError) and not state):
            hint = " (a read-only server? point the URL at the primary)" if state == "25006" else ""
            return StoreError(f"state database {self.name}: {action} failed: {text}{hint}")
        if state.startswith("08") or (conn is not None and conn.broken) or (
                isinstance(exc, psycopg.OperationalError) and not state):
            return TemporaryError(f"state database {self.name} is unreachable ({action}): {text}; retry later")
        if state in _TEMPORARY_STATES:
            return TemporaryError(f"state database {self.name}: {action} failed: {text}; retry later")
        return StoreError(f"state database {self.name}: {action} failed: {text}")

    def _connect_error(self, exc: psycopg.Error) -> L2vpcError:
        """libpq reports connection failures without SQLSTATE: tell by its words whether the
        server refused us (configuration: wrong password, no such database) or is away."""
        text = self._scrub(" ".join(str(exc).split()))
        if "Name or service not known" in text:  # NXDOMAIN, unlike "Temporary failure in name resolution"
            return StoreError(f"state database {self.name}: unknown host: {text}")
        if "FATAL:" in text and not any(w in text for w in _TRANSIENT_FATAL):
            return StoreError(f"state database {self.name}: the server refused the connection: "
                              f"{text.split('FATAL:', 1)[1].strip()}")
        return TemporaryError(f"state database {self.name} is unreachable: {text}; retry later")

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    # --- Store -------------------------------------------------------------------------
    def __enter__(self) -> PostgresStore:
        return self

    def transaction(self) -> AbstractContextManager[Transaction]:
        return _TransactionContext(self)

    def keyed_transaction(self, keys: Iterable[str]) -> AbstractContextManager[Transaction]:
        keys = list(keys)
        for i, k in enumerate(keys):
            _check_key(f"keys[{i}]", k)
        return _TransactionContext(self, keys)

    def schema_version(self) -> int:
        inside = getattr(self._local, "conn", None)  # reads on the open transaction's connection
        conn = inside if inside is not None else self._acquire()
        ok = False
        try:
            version = self._read_version(conn)
            ok = True
            return version
        except psycopg.Error as exc:
            raise self._translate(exc, "read the schema version", conn) from exc
        finally:
            if inside is None:
                self._release_conn(conn, reusable=ok)

    def try_leadership(self, name: str) -> Leadership | None:
        """Become the leader for `name` if nobody is (never waits); see Leadership."""
        _check_key("name", name)
        if self._closed:
            raise StoreError(f"state database {self.name}: the store is closed")
        # 63 bits: non-negative, so is_held() can rebuild it from pg_locks' two unsigned halves.
        key = int.from_bytes(hashlib.blake2b(f"l2vpc leader:{name}".encode(), digest_size=8).digest(), "big") >> 1
        conn = self._connect(tcp_user_timeout=4000, application_name=f"l2vpc leader {name}"[:63])
        try:
            conn.execute(
                "SELECT set_config('tcp_keepalives_idle', '5', false), "
                "set_config('tcp_keepalives_interval', '2', false), "
                "set_config('tcp_keepalives_count', '3', false), "
                "set_config('idle_in_transaction_session_timeout', '0', false)"
            )
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        except psycopg.Error as exc:
            conn.close()
            raise self._translate(exc, "take leadership", None) from exc
        if not row or not row[0]:
            conn.close()
            return None
        try:
            with self.transaction() as tx:
                term = tx.next_sequence(f"leader:{name}")
        except BaseException:
            conn.close()
            raise
        return Leadership(name, term, conn, key)

    def _qualified(self, channel: str) -> str:
        return f"{channel}_{self._channel_tag}"

    def listen(self, channel: str, callback: Callable[[str | None], None]) -> Listener:
        """Call `callback(payload)` for every notification on `channel` (Transaction.notify),
        from a thread of its own; see Listener."""
        _check_channel(channel)
        if self._closed:
            raise StoreError(f"state database {self.name}: the store is closed")
        return Listener(self, channel, callback)

    def close(self) -> None:
        if getattr(self._local, "conn", None) is not None:
            raise RuntimeError("store.close() called inside one of its transactions")
        with self._pool_lock:
            self._closed = True
            idle, self._idle = self._idle, []
        if os.getpid() == self._pid:  # in a forked child the sessions are the parent's
            for conn in idle:
                conn.close()


def _parse_url(url: str) -> tuple[dict[str, str], str, str]:
    """libpq parameters, a printable name without secrets, and the password (to scrub)."""
    if not isinstance(url, str) or not url.strip():
        raise StoreError("state store URL is empty")
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error as exc:
        # libpq quotes the offending part, which may be the password: drop quoted text.
        reason = re.sub(r'"[^"]*"', "(…)", str(exc).strip().splitlines()[0])
        raise StoreError(f"state store URL is not a valid PostgreSQL URL: {reason}") from None
    out = {k: str(v) for k, v in params.items() if v is not None}
    port = out.get("port", "")
    if port and not all(p.isdigit() for p in port.split(",")):
        raise StoreError(f"state store URL: port must be a number, got {port!r}")
    host = out.get("host") or out.get("hostaddr") or os.environ.get("PGHOST") or "localhost"
    user = out.get("user") or os.environ.get("PGUSER") or ""
    db = out.get("dbname") or os.environ.get("PGDATABASE") or user
    name = f"postgresql://{user + '@' if user else ''}{host}{':' + port if port else ''}/{db}"
    return out, name, out.get("password", "")


def _rollback(conn: psycopg.Connection[Any]) -> None:
    if not conn.closed and not conn.broken and conn.info.transaction_status != TransactionStatus.IDLE:
        try:
            conn.execute("ROLLBACK")
        except psycopg.Error:
            pass


def _check_key(field: str, value: object) -> None:
    check_text(field, value)
    if "\x00" in value:  # type: ignore[operator]  # a str after check_text
        raise ValidationError("must not contain NUL characters", path=field)


def _lookup_key(field: str, value: object) -> bool:
    """For reads by key: a non-string is a caller bug (ValidationError); a string with NUL
    cannot be stored, so it matches nothing (False)."""
    if type(value) is not str:
        raise ValidationError(f"must be a string, got {type(value).__name__}", path=field)
    return "\x00" not in value


_CHANNEL = re.compile(r"[a-z_][a-z0-9_]{0,49}")  # + "_<8 hex>" of the schema: at most 63


def _check_channel(channel: object) -> None:
    if not isinstance(channel, str) or not _CHANNEL.fullmatch(channel):
        raise ValidationError("must be a lowercase identifier (letters, digits, '_'), at most 50", path="channel")


def _check_generation(field: str, value: object, minimum: int = 1) -> None:
    if type(value) is not int or value < minimum:
        raise ValidationError(f"must be an integer >= {minimum}, got {value!r}", path=field)


def _encode_pg(kind: str, ident: str, data: object, field: str = "data") -> str:
    text = encode(kind, ident, data, field)
    if "\\u0000" in text and _JSON_NUL.search(text):
        raise ValidationError(f"{kind} {ident!r}: not storable as JSON: contains a NUL character", path=field)
    return text


__all__ = ["DEFAULT_BUSY_TIMEOUT", "Leadership", "Listener", "PostgresStore", "PostgresTransaction"]


def _key_number(key: str) -> int:
    """A key's advisory lock number (int4); a collision only makes two keys share a lock."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big", signed=True)
