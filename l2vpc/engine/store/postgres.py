"""The store on PostgreSQL: shared state of controllers that run replicated.

Same interface and semantics as the SQLite store (sqlite.py), through psycopg 3. The statements
are the SQL layer's (sql.py); this module holds the connections, the locking, the migrations,
the deferred writes and PostgresDialect: `%s` parameters, jsonb, lists as arrays (`= ANY`),
batches as unnest(), the database's clock, and the mapping of SQLSTATEs to the engine's errors.
It is longer than most (~640 lines) because a shared server over the network needs all of
these and SQLite none of them: a pool that replaces dead sessions, two advisory lock modes, a
schema check per transaction, pipelined writes; they share the connection handling.

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

Deferred writes: `create_new` and `claim` (a new id, a value just seen free) are not sent at
once but with the next statement of the transaction, as one multi-row statement per table in
the same pipeline: an attachment create costs two round trips fewer. A clash still raises
ConflictError, at that statement, and fails the transaction.

Controllers take leadership and notify each other through their plane store
(l2vpc/controller/planestore_postgres.py), on connections this store opens (`connect`).

Documents are JSONB. jsonb cannot hold a NUL character ("\\u0000"), which we refuse as a
ValidationError naming the field; it keeps numbers exactly but writes floats >= 1e16 without an
exponent, so they read back as ints (the engine stores none).

The URL may carry a password: messages name the database as postgresql://user@host:port/db,
never with the password or query parameters.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.types.string import TextLoader

from l2vpc.engine.errors import ConflictError, L2vpcError, StoreError, TemporaryError
from l2vpc.engine.store.base import COUNTED_POOL_PREFIX, StoredObject
from l2vpc.engine.store.documents import LazyObject, check_key, dumps
from l2vpc.engine.store.migrations import Migration, check_sequence, load_migrations
from l2vpc.engine.store.sql import Dialect, SqlStore, SqlTransaction, Statements, check_keys, not_unicode

DEFAULT_BUSY_TIMEOUT = 10.0
DEFAULT_IDLE_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 10
DEFAULT_MAX_CONNECTIONS = 4

# Advisory lock keys. The two-int form (class, object) for the write lock and the one-bigint
# form for the controllers' leadership: PostgreSQL keeps the two key spaces apart.
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
# Sent with _BEGIN_KEYED in one round trip (the simple protocol runs the statements in order);
# the keys are numbers (_key_number), written into the text.
_LOCK_KEYS = "; SELECT pg_advisory_xact_lock({cls}, k) FROM unnest('{{{keys}}}'::int4[]) AS k"
# The same lock for migrating, before schema_version exists.
_BEGIN_MIGRATE = (
    "BEGIN ISOLATION LEVEL READ COMMITTED; "
    f"SELECT pg_advisory_xact_lock({_LOCK_CLASS}, {_WRITE_LOCK})"
)

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
# Many rows as one JSON array parameter, taken apart by the server: psycopg dumps a list
# parameter element by element in Python (in text form escaping every quote of every JSON
# document with a regular expression): ~1 s for 10,000 attachments' documents and claims.
_INSERT_OBJECTS = ("INSERT INTO objects (kind, id, tenant, generation, data) "
                   "SELECT r->>0, r->>1, r->>2, 1, r->3 FROM jsonb_array_elements(%s::jsonb) AS u(r) "
                   "ON CONFLICT (kind, id) DO NOTHING RETURNING kind, id")
_CLAIM_MANY = ("INSERT INTO allocations (pool, value, owner) "
               "SELECT r->>0, r->>1, r->>2 FROM jsonb_array_elements(%s::jsonb) AS u(r) "
               "ON CONFLICT (pool, value) DO UPDATE SET owner = excluded.owner "
               "WHERE allocations.owner = excluded.owner RETURNING pool, value")

# Counted pools' sizes, their rows locked (made if missing) in pool order, the triggers' order.
_LOCK_POOL_COUNTS = ("INSERT INTO pool_counts (pool, size) SELECT p, 0 FROM unnest(%s::text[]) AS u(p) ORDER BY p "
                     "ON CONFLICT (pool) DO UPDATE SET size = pool_counts.size RETURNING pool, size")


def _rows_json(inserts: Sequence[tuple[str, str, str, str]]) -> str:
    """Rows (kind, id, tenant, document text) as one JSON array of [kind, id, tenant, document]:
    the documents are JSON already, so they go in as they are."""
    return "[" + ",".join(f"[{dumps(k)},{dumps(i)},{dumps(t)},{text}]" for k, i, t, text in inserts) + "]"


class PostgresDialect(Dialect):
    name = "postgres"
    param = "%s"
    json = "%s::jsonb"
    greatest = "greatest"
    clock_timestamp = "clock_timestamp()"
    clock_seconds = "extract(epoch FROM clock_timestamp())::float8"
    error = psycopg.Error

    def __init__(self, name: str, busy_timeout: float, secret: str) -> None:
        self.db = name  # postgresql://user@host:port/db, without the password
        self.busy_timeout = busy_timeout
        self._secret = secret

    def seconds(self, column: str) -> str:
        return f"extract(epoch FROM {column})::float8"

    def rows_of_pairs(self, columns: Sequence[str], table: str, keys: tuple[str, str]) -> str:
        # One index lookup per pair whatever the planner guesses (see rows_of_each).
        a, b = keys
        return (f"SELECT t.* FROM unnest(%s::text[], %s::text[]) AS k({a}, {b}) CROSS JOIN LATERAL "
                f"(SELECT {', '.join(columns)} FROM {table} WHERE {table}.{a} = k.{a} AND {table}.{b} = k.{b} "
                "OFFSET 0) AS t")

    def one_of(self, column: str) -> str:
        return f"{column} = ANY(%s::text[])"

    def values(self, items: Sequence[str]) -> object:
        return list(items)

    def rows_of_each(self, columns: str, table: str, column: str, also: str = "") -> str:
        # Not `column = ANY(%s)`: without statistics (a new database, a table grown since the
        # last ANALYZE) the planner guesses 0.5% of the rows per value and scans the whole table
        # for a few dozen values (~10 ms at 60,000 allocations: most of a create's cost in
        # bench_controller_api.py). One index lookup per value whatever it guesses (OFFSET 0
        # keeps the subquery from being merged into a join it would plan the same way).
        return (f"SELECT t.* FROM unnest(%s::text[]) AS k(v) CROSS JOIN LATERAL "
                f"(SELECT {columns} FROM {table} WHERE {table}.{column} = k.v{f' AND {also}' if also else ''} "
                "OFFSET 0) AS t")

    def batch(self, columns: Sequence[tuple[str, str]]) -> str:
        arrays = ", ".join(f"%s::{kind}[]" for _, kind in columns)
        return f"unnest({arrays}) AS b({', '.join(name for name, _ in columns)})"

    def batch_params(self, rows: Sequence[Sequence[object]], width: int) -> tuple[object, ...]:
        return tuple([r[i] for r in rows] for i in range(width))

    def table_exists(self) -> str:
        return "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = %s)"

    def translate(self, exc: Exception, action: str, conn: Any = None) -> L2vpcError:
        name = self.db
        state = getattr(exc, "sqlstate", None) or ""
        text = self.scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        if isinstance(exc, pgerrors.LockNotAvailable):
            return TemporaryError(
                f"state database {name} is busy: another transaction held its write lock for more "
                f"than {self.busy_timeout:g} s ({action}); retry later"
            )
        if isinstance(exc, pgerrors.SerializationFailure | pgerrors.DeadlockDetected):
            return TemporaryError(
                f"state database {name}: {action} collided with a concurrent transaction ({text}); retry"
            )
        if state == "23505":
            return ConflictError(f"state database {name}: {action}: {text}")
        if state == "25P02":
            return StoreError(
                f"state database {name}: an earlier statement of this transaction failed; "
                "leave the `with` block to roll it back"
            )
        if state.startswith(_CONFIG_CLASSES) or (isinstance(exc, psycopg.ProgrammingError) and not state):
            hint = " (a read-only server? point the URL at the primary)" if state == "25006" else ""
            return StoreError(f"state database {name}: {action} failed: {text}{hint}")
        if state.startswith("08") or (conn is not None and conn.broken) or (
                isinstance(exc, psycopg.OperationalError) and not state):
            return TemporaryError(f"state database {name} is unreachable ({action}): {text}; retry later")
        if state in _TEMPORARY_STATES:
            return TemporaryError(f"state database {name}: {action} failed: {text}; retry later")
        return StoreError(f"state database {name}: {action} failed: {text}")

    def scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text


class PostgresTransaction(SqlTransaction):
    """One BEGIN ... COMMIT holding the write lock; see the module docstring."""

    __slots__ = ("_claims", "_inserts")

    def __init__(self, store: PostgresStore, conn: psycopg.Connection[Any]) -> None:
        super().__init__(store, conn)
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
        conn = self._open()
        claims, self._claims = self._claims, {}
        inserts, self._inserts = self._inserts, []
        try:
            with conn.pipeline():
                made = conn.execute(_INSERT_OBJECTS, (_rows_json(inserts),)) if inserts else None
                held = conn.execute(_CLAIM_MANY, (dumps([[p, v, o] for (p, v), o in claims.items()]),)) \
                    if claims else None
                last = conn.execute(query, params) if query is not None else None
            done = {(k, i) for k, i in made.fetchall()} if made is not None else set()
            got = {(p, v) for p, v in held.fetchall()} if held is not None else set()
        except psycopg.Error as exc:
            raise self.dialect.translate(exc, "write", conn) from exc
        for kind, ident, _, _ in inserts:
            if (kind, ident) not in done:
                raise ConflictError(f"{kind} {ident!r} already exists")
        for (pool, value), owner in claims.items():
            if (pool, value) not in got:
                raise ConflictError(f"{pool} {value!r} is already held (requested by {owner!r})")
        return last

    def rows(self, statement: str, params: Sequence[Any] = ()) -> list[Any]:
        if not (self._claims or self._inserts):
            return super().rows(statement, params)
        conn = self._open()
        try:
            cur = self._flush(statement, params)
            assert cur is not None
            return cur.fetchall()
        except psycopg.Error as exc:
            raise self.dialect.translate(exc, "query", conn) from exc
        except UnicodeEncodeError as exc:
            raise not_unicode(exc) from None

    def change(self, statement: str, params: Sequence[Any] = ()) -> int:
        if not (self._claims or self._inserts):
            return super().change(statement, params)
        conn = self._open()
        try:
            cur = self._flush(statement, params)
            assert cur is not None
            return cur.rowcount
        except psycopg.Error as exc:
            raise self.dialect.translate(exc, "write", conn) from exc
        except UnicodeEncodeError as exc:
            raise not_unicode(exc) from None

    def script(self, sql: str) -> None:
        if self._pending:
            self._flush()
        conn = self._open()
        try:
            conn.execute(sql, prepare=False)  # no parameters: the simple protocol runs a whole script
        except psycopg.Error as exc:
            raise self.dialect.translate(exc, "write", conn) from exc

    def lock_pool_sizes(self, pools: Iterable[str]) -> dict[str, int]:
        # Keyed transactions run side by side at READ COMMITTED: a plain read could be passed by
        # another's insert before either commits. Locking the counter rows (as the triggers do
        # when they add to them) makes every other writer of these pools wait for this one.
        names = sorted({p for p in pools if p.startswith(COUNTED_POOL_PREFIX)})
        for name in names:
            check_key("pool", name)
        if not names:
            return {}
        return {p: int(n) for p, n in self.rows(_LOCK_POOL_COUNTS, (names,)) if n}

    def create_new(self, kind: str, ident: str, data: dict[str, Any], tenant: str = "") -> StoredObject:
        text = self._check_new(kind, ident, tenant, data)
        self._open()
        # Nobody reads the outcome now (the returned object is built here): sent with the next
        # statement; a duplicate id then raises there and fails the transaction.
        self._inserts.append((kind, ident, tenant, text))
        return LazyObject.from_row(kind, ident, 1, text, tenant)

    def claim(self, pool: str, value: str, owner: str) -> None:
        for field, text in (("pool", pool), ("value", value), ("owner", owner)):
            check_key(field, text)
        self._open()
        # Idempotent like reserve: the same owner claiming again is no clash.
        earlier = self._claims.setdefault((pool, value), owner)
        if earlier != owner:
            raise ConflictError(f"{pool} {value!r} is already held by {earlier!r} (requested by {owner!r})")


class _TransactionContext(AbstractContextManager[PostgresTransaction]):
    __slots__ = ("_conn", "_keys", "_store", "_tx")

    def __init__(self, store: PostgresStore, keys: Iterable[str] | None = None) -> None:
        self._store = store
        self._tx: PostgresTransaction | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._keys = None if keys is None else sorted({_key_number(k) for k in keys})

    def __enter__(self) -> PostgresTransaction:
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
                    raise store.dialect.translate(commit_exc, "commit", conn) from commit_exc
            else:
                _rollback(conn)
            reusable = True
        finally:
            store._release_conn(conn, reusable)


class PostgresStore(SqlStore):
    """The store in one PostgreSQL database (tables in the first schema of its search_path).

    `url` is a libpq URL or connection string (`postgresql://user:pw@host:port/db`; libpq's
    PG* variables and ~/.pgpass apply). `migrations` replaces the shipped schema migrations
    (tests use it to exercise upgrades). Opening applies missing migrations under the write
    lock, so controllers starting at once migrate one after the other; an unreachable server
    raises TemporaryError, a bad URL, refused login or newer schema StoreError.
    """

    dialect: PostgresDialect

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
        self._params, self.name, secret = _parse_url(url)
        self.busy_timeout = busy_timeout
        self.dialect = PostgresDialect(self.name, busy_timeout, secret)
        self.statements = Statements(self.dialect)
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
        self._migrate()

    # --- connections -------------------------------------------------------------------
    def connect(self, **extra: Any) -> psycopg.Connection[Any]:
        """A new session of this store's database (autocommit; `extra` libpq parameters on top of
        the URL's): the pool's, and those of the controllers' leadership and listeners."""
        if self._closed:
            raise StoreError(f"state database {self.name}: the store is closed")
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
            raise self.dialect.translate(exc, "connect", None) from None
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
                conn = self.connect()
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
                begin = _BEGIN if keys is None else _BEGIN_KEYED
                if keys:
                    begin += _LOCK_KEYS.format(cls=_KEY_CLASS, keys=",".join(str(int(k)) for k in keys))
                cur = conn.execute(begin, prepare=False)
                cur.nextset()
                row = cur.fetchone()
            except psycopg.Error as exc:
                dead = conn.broken or conn.closed
                if not dead:
                    _rollback(conn)
                self._release_conn(conn, reusable=not dead)
                if dead and attempt == 1:
                    continue
                raise self.dialect.translate(exc, "begin a transaction", None) from exc
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
                raise self.dialect.translate(exc, step, None) from None
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
    def _connect_error(self, exc: psycopg.Error) -> L2vpcError:
        """libpq reports connection failures without SQLSTATE: tell by its words whether the
        server refused us (configuration: wrong password, no such database) or is away."""
        text = self.dialect.scrub(" ".join(str(exc).split()))
        if "Name or service not known" in text:  # NXDOMAIN, unlike "Temporary failure in name resolution"
            return StoreError(f"state database {self.name}: unknown host: {text}")
        if "no password supplied" in text:  # libpq's own refusal to try: nothing a retry changes
            return StoreError(f"state database {self.name}: login failed: the server wants a password and the URL "
                              "has none; put it in PGPASSWORD or ~/.pgpass (or in the URL, which `ps` shows), or "
                              "connect over the server's unix socket if it trusts local logins")
        if "FATAL:" in text and not any(w in text for w in _TRANSIENT_FATAL):
            return StoreError(f"state database {self.name}: the server refused the connection: "
                              f"{text.split('FATAL:', 1)[1].strip()}")
        return TemporaryError(f"state database {self.name} is unreachable: {text}; retry later")

    # --- Store -------------------------------------------------------------------------
    def __enter__(self) -> PostgresStore:
        return self

    def transaction(self) -> AbstractContextManager[PostgresTransaction]:
        return _TransactionContext(self)

    def keyed_transaction(self, keys: Iterable[str]) -> AbstractContextManager[PostgresTransaction]:
        return _TransactionContext(self, check_keys(keys))

    def schema_version(self) -> int:
        inside = getattr(self._local, "conn", None)  # reads on the open transaction's connection
        conn = inside if inside is not None else self._acquire()
        ok = False
        try:
            version = self._read_version(conn)
            ok = True
            return version
        except psycopg.Error as exc:
            raise self.dialect.translate(exc, "read the schema version", conn) from exc
        finally:
            if inside is None:
                self._release_conn(conn, reusable=ok)

    @property
    def closed(self) -> bool:
        return self._closed

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


def _key_number(key: str) -> int:
    """A key's advisory lock number (int4); a collision only makes two keys share a lock."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big", signed=True)


__all__ = ["DEFAULT_BUSY_TIMEOUT", "PostgresDialect", "PostgresStore", "PostgresTransaction"]
