"""The store on SQLite: the embedded engine's state file.

Concurrency
- Every transaction starts with BEGIN IMMEDIATE, which takes SQLite's single write lock up
  front. A DEFERRED transaction that read first and then wrote after another process had
  committed would fail at once (SQLITE_BUSY_SNAPSHOT, no waiting); IMMEDIATE makes a second
  writer wait in SQLite's busy handler for up to `busy_timeout` seconds and only then fail,
  which we raise as TemporaryError.
- Threads: one connection per store, guarded by a lock. Since every transaction holds the
  write lock anyway, a connection per thread would buy no parallelism; queueing on a Python
  lock is cheaper and fairer than sleep-polling in SQLite's busy handler. A transaction opened
  while the same thread already has one raises RuntimeError (no savepoints: pass the open
  transaction down instead). A store must not be used across fork(): open it again in the child.
- WAL + synchronous=NORMAL: readers never block the writer and a commit costs no fsync. A commit
  survives a crash of the process; a power loss may lose the last commits but never corrupts
  the file.

The file and its -wal/-shm companions are mode 0600: the state holds secrets (service keys).
"""

from __future__ import annotations

import builtins
import fcntl
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Any

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
    dumps,
    encode,
    loads,
)
from l2vpc.engine.store.migrations import Migration, check_sequence, load_migrations

DEFAULT_BUSY_TIMEOUT = 10.0
# RETURNING (3.35) and built-in JSON functions (3.38) are used below.
MIN_SQLITE = (3, 38, 0)

# SQLite result codes, spelled out (the sqlite3 module's named constants vary by version).
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
_SQLITE_BUSY_SNAPSHOT = _SQLITE_BUSY | (2 << 8)  # only if a transaction were not IMMEDIATE
_LEADER_NAME = re.compile(r"[A-Za-z0-9_-]{1,63}")



class SqliteTransaction(Transaction):
    """One BEGIN IMMEDIATE ... COMMIT on the store's connection; see the module docstring."""

    __slots__ = ("_conn", "_store")

    def __init__(self, store: SqliteStore, conn: sqlite3.Connection) -> None:
        self._store = store
        self._conn: sqlite3.Connection | None = conn

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run a statement to completion and return its rows.

        Always fetching everything matters twice: errors such as a damaged page surface while
        stepping, inside the try; and a half-stepped write statement would block COMMIT.
        """
        conn = self._conn
        if conn is None:
            # The connection may already serve another thread's transaction.
            raise RuntimeError("store transaction used after its `with` block ended")
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._store._translate(exc, "query") from exc

    def _change(self, sql: str, params: Sequence[Any]) -> int:
        """Run a write statement; the number of rows it changed."""
        conn = self._conn
        if conn is None:
            raise RuntimeError("store transaction used after its `with` block ended")
        try:
            return conn.execute(sql, params).rowcount
        except sqlite3.Error as exc:
            raise self._store._translate(exc, "write") from exc

    # --- objects -----------------------------------------------------------------------
    def get(self, kind: str, ident: str, tenant: str | None = None) -> StoredObject | None:
        check_kind(kind)
        rows = self._rows(
            "SELECT tenant, generation, data FROM objects WHERE kind = ? AND id = ?", (kind, ident)
        )
        if not rows or (tenant is not None and rows[0][0] != tenant):
            return None
        tenant_, generation, text = rows[0]
        return LazyObject.from_row(kind, ident, generation, text, tenant_)

    def get_many(self, kind: str, idents: Iterable[str]) -> list[StoredObject]:
        check_kind(kind)
        wanted = sorted({str(i) for i in idents})
        new = LazyObject.from_row
        out: list[StoredObject] = []
        # SQLite allows 32,766 parameters per statement; stay far below.
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._rows(
                f"SELECT id, tenant, generation, data FROM objects WHERE kind = ? AND id IN ({marks}) ORDER BY id",
                (kind, *chunk),
            )
            out.extend(new(kind, i, g, d, t) for i, t, g, d in rows)
        return out

    def list(self, kind: str, tenant: str | None = None) -> list[StoredObject]:
        check_kind(kind)
        if tenant is None:
            rows = self._rows(
                "SELECT id, tenant, generation, data FROM objects WHERE kind = ? ORDER BY id", (kind,)
            )
        else:
            rows = self._rows(
                "SELECT id, tenant, generation, data FROM objects WHERE kind = ? AND tenant = ? ORDER BY id",
                (kind, tenant),
            )
        new = LazyObject.from_row
        return [new(kind, i, g, d, t) for i, t, g, d in rows]

    def create(self, kind: str, ident: str, data: dict[str, Any], tenant: str = "") -> StoredObject:
        check_kind(kind)
        check_text("id", ident)
        if not isinstance(tenant, str):
            raise ValidationError(f"must be a string, got {type(tenant).__name__}", path="tenant")
        text = encode(kind, ident, data)
        inserted = self._change(
            "INSERT INTO objects (kind, id, tenant, generation, data) VALUES (?, ?, ?, 1, ?) "
            "ON CONFLICT (kind, id) DO NOTHING",
            (kind, ident, tenant, text),
        )
        if inserted != 1:
            raise ConflictError(f"{kind} {ident!r} already exists")
        # Hand back what a later get() returns, not the caller's (mutable) dict.
        return LazyObject.from_row(kind, ident, 1, text, tenant)

    def update(self, kind: str, ident: str, data: dict[str, Any], expected_generation: int) -> StoredObject:
        check_kind(kind)
        text = encode(kind, ident, data)
        rows = self._rows(
            "UPDATE objects SET data = ?, generation = generation + 1 "
            "WHERE kind = ? AND id = ? AND generation = ? RETURNING generation, tenant",
            (text, kind, ident, expected_generation),
        )
        if not rows:
            self._raise_missing_or_stale(kind, ident, expected_generation)
        generation, tenant = rows[0]
        return LazyObject.from_row(kind, ident, generation, text, tenant)

    def delete(self, kind: str, ident: str, expected_generation: int | None = None) -> None:
        check_kind(kind)
        if expected_generation is None:
            if self._change("DELETE FROM objects WHERE kind = ? AND id = ?", (kind, ident)) != 1:
                raise NotFoundError(kind, ident)
            return
        deleted = self._change(
            "DELETE FROM objects WHERE kind = ? AND id = ? AND generation = ?",
            (kind, ident, expected_generation),
        )
        if deleted != 1:
            self._raise_missing_or_stale(kind, ident, expected_generation)

    def _raise_missing_or_stale(self, kind: str, ident: str, expected: int) -> None:
        rows = self._rows("SELECT generation FROM objects WHERE kind = ? AND id = ?", (kind, ident))
        if not rows:
            raise NotFoundError(kind, ident)
        raise ConflictError(
            f"{kind} {ident!r} was changed concurrently: expected generation {expected}, "
            f"actual generation {rows[0][0]}; re-read it and retry"
        )

    # --- allocations -------------------------------------------------------------------
    def reserve(self, pool: str, value: str, owner: str) -> None:
        if not (type(pool) is str and type(value) is str and type(owner) is str and pool and value and owner):
            for field, text in (("pool", pool), ("value", value), ("owner", owner)):
                check_text(field, text)
        inserted = self._change(
            "INSERT INTO allocations (pool, value, owner) VALUES (?, ?, ?) ON CONFLICT (pool, value) DO NOTHING",
            (pool, value, owner),
        )
        if inserted == 1:
            return
        rows = self._rows("SELECT owner FROM allocations WHERE pool = ? AND value = ?", (pool, value))
        holder = rows[0][0] if rows else "?"
        if holder != owner:
            raise ConflictError(f"{pool} {value!r} is already held by {holder!r} (requested by {owner!r})")

    def release_owner(self, owner: str, pool: str | None = None) -> None:
        if pool is None:
            self._change("DELETE FROM allocations WHERE owner = ?", (owner,))
        else:
            self._change("DELETE FROM allocations WHERE owner = ? AND pool = ?", (owner, pool))

    def allocations(self, pool: str) -> dict[str, str]:
        return dict(self._rows("SELECT value, owner FROM allocations WHERE pool = ?", (pool,)))

    def pool_sizes(self, pools: Iterable[str]) -> dict[str, int]:
        names = [p for p in pools if isinstance(p, str)]
        if not names:
            return {}
        return {p: int(n) for p, n in self._rows(
            "SELECT pool, count(*) FROM allocations WHERE pool IN (SELECT value FROM json_each(?)) GROUP BY pool",
            (dumps(names),))}

    # --- host reports ------------------------------------------------------------------
    def put_host_report(self, host: str, generation: int, config: dict[str, Any]) -> None:
        check_text("host", host)
        text = encode("host report", host, config, field="config")
        self._change(
            "INSERT INTO host_reports (host, generation, config, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (host) DO UPDATE SET generation = excluded.generation, config = excluded.config, "
            "updated_at = excluded.updated_at",
            (host, generation, text, time.time()),
        )

    def host_reports(self, hosts: Iterable[str] | None = None) -> dict[str, HostReport]:
        if hosts is None:
            rows = self._rows("SELECT host, generation, config, updated_at FROM host_reports")
        else:
            rows = self._rows(
                "SELECT host, generation, config, updated_at FROM host_reports "
                "WHERE host IN (SELECT value FROM json_each(?))", (dumps(sorted({str(h) for h in hosts})),),
            )
        return {h: HostReport(h, g, loads(c), u) for h, g, c, u in rows}

    def host_report_stamps(self) -> dict[str, tuple[int, float]]:
        return {h: (g, u) for h, g, u in self._rows("SELECT host, generation, updated_at FROM host_reports")}

    def delete_host_report(self, host: str) -> None:
        self._change("DELETE FROM host_reports WHERE host = ?", (host,))

    # --- counters ----------------------------------------------------------------------
    def next_sequence(self, name: str) -> int:
        check_text("name", name)
        rows = self._rows(
            "INSERT INTO sequences (name, value) VALUES (?, 1) "
            "ON CONFLICT (name) DO UPDATE SET value = sequences.value + 1 RETURNING value",
            (name,),
        )
        return int(rows[0][0])

    def current_sequence(self, name: str) -> int:
        rows = self._rows("SELECT value FROM sequences WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else 0

    # --- control plane -------------------------------------------------------------------
    def clock(self) -> float:
        return time.time()  # one machine: the file's clock is ours

    def put_heartbeats(self, beats: Sequence[Heartbeat]) -> set[str]:
        check_heartbeats(beats)
        if not beats:
            return set()
        rows = [[b.host, b.last_seen, b.accepted_generation, b.converged_generation, int(b.converging), b.digest,
                 b.controller] for b in beats]
        # One statement for the whole batch (json_each), like PostgreSQL's unnest. A heartbeat
        # older than the recorded one (another controller flushed a newer one) changes nothing.
        written = self._rows(
            "INSERT INTO heartbeats (host, last_seen, accepted_generation, converged_generation, converging, "
            "digest, controller) "
            "SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4, j.value ->> 5, "
            "j.value ->> 6 FROM json_each(?) AS j "
            "WHERE EXISTS (SELECT 1 FROM objects o WHERE o.kind = 'host' AND o.id = j.value ->> 0) "
            "ON CONFLICT (host) DO UPDATE SET "
            "accepted_generation = iif(excluded.last_seen >= heartbeats.last_seen, excluded.accepted_generation, "
            "heartbeats.accepted_generation), "
            "converged_generation = iif(excluded.last_seen >= heartbeats.last_seen, "
            "excluded.converged_generation, heartbeats.converged_generation), "
            "converging = iif(excluded.last_seen >= heartbeats.last_seen, excluded.converging, heartbeats.converging), "
            "digest = iif(excluded.last_seen >= heartbeats.last_seen, excluded.digest, heartbeats.digest), "
            "controller = iif(excluded.last_seen >= heartbeats.last_seen, excluded.controller, heartbeats.controller), "
            "last_seen = max(heartbeats.last_seen, excluded.last_seen) "
            "RETURNING host",
            (dumps(rows),),
        )
        return {b.host for b in beats} - {r[0] for r in written}

    def heartbeats(self) -> dict[str, Heartbeat]:
        rows = self._rows(
            "SELECT host, last_seen, accepted_generation, converged_generation, converging, digest, controller "
            "FROM heartbeats"
        )
        return {r[0]: Heartbeat(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6]) for r in rows}

    def delete_heartbeat(self, host: str) -> None:
        self._change("DELETE FROM heartbeats WHERE host = ?", (host,))

    def get_state(self, key: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT value FROM plane_state WHERE key = ?", (key,))
        return loads(rows[0][0]) if rows else None

    def put_state(self, key: str, value: dict[str, Any]) -> None:
        check_text("key", key)
        text = encode("state", key, value, field="value")
        self._change(
            "INSERT INTO plane_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, text),
        )

    def add_events(self, events: Sequence[Event], keep: int = 200) -> None:
        for i, e in enumerate(events):
            check_event(f"events[{i}]", e)
        if not events:
            return
        conn = self._conn
        if conn is None:
            raise RuntimeError("store transaction used after its `with` block ended")
        try:
            conn.executemany("INSERT INTO plane_events (time, host, what) VALUES (?, ?, ?)",
                             [(e.time, e.host, e.what) for e in events])
        except sqlite3.Error as exc:
            raise self._store._translate(exc, "write") from exc
        self._change("DELETE FROM plane_events WHERE id <= (SELECT max(id) FROM plane_events) - ?", (keep,))

    def events(self, limit: int = 200) -> builtins.list[Event]:
        rows = self._rows(
            "SELECT time, host, what FROM (SELECT id, time, host, what FROM plane_events ORDER BY id DESC LIMIT ?) "
            "ORDER BY id", (limit,),
        )
        return [Event(t, h, w) for t, h, w in rows]


class _TransactionContext(AbstractContextManager[Transaction]):
    __slots__ = ("_store", "_tx")

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._tx: SqliteTransaction | None = None

    def __enter__(self) -> Transaction:
        store = self._store
        conn = store._acquire()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            store._release()
            raise store._translate(exc, "begin a transaction") from exc
        except BaseException:
            store._release()
            raise
        self._tx = SqliteTransaction(store, conn)
        return self._tx

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        tx, self._tx = self._tx, None
        if tx is None or tx._conn is None:
            return
        conn, tx._conn = tx._conn, None
        try:
            if exc_type is None:
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as commit_exc:
                    _rollback(conn)
                    raise self._store._translate(commit_exc, "commit") from commit_exc
            else:
                _rollback(conn)
        finally:
            self._store._release()


class SqliteStore(Store):
    """The store in one SQLite file (created with its parent directory if missing).

    `migrations` replaces the shipped schema migrations (tests use it to exercise upgrades).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        migrations: Sequence[Migration] | None = None,
    ) -> None:
        self.path = os.path.abspath(os.path.expanduser(os.fspath(path)))
        self.busy_timeout = busy_timeout
        self._migrations = tuple(migrations) if migrations is not None else load_migrations("sqlite")
        check_sequence(self._migrations)
        self._lock = threading.Lock()
        self._owner: int | None = None  # ident of the thread inside a transaction
        self._pid = os.getpid()
        self._full_busy_ms = self._busy_ms = int(busy_timeout * 1000)
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise StoreError(
                f"SQLite {sqlite3.sqlite_version} is too old for the state file; "
                f"l2vpc needs {'.'.join(map(str, MIN_SQLITE))} or newer"
            )
        self._prepare_file()
        self._conn: sqlite3.Connection | None = self._connect()
        try:
            self._migrate()
        except BaseException:
            self._conn.close()
            self._conn = None
            raise

    # --- opening -----------------------------------------------------------------------
    def _prepare_file(self) -> None:
        """Create the directory and the file ourselves: SQLite would create it 0644."""
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                if os.fstat(fd).st_mode & 0o077:
                    os.fchmod(fd, 0o600)
            finally:
                os.close(fd)
            # SQLite gives new -wal/-shm files the database's mode; older ones may be looser.
            for suffix in ("-wal", "-shm"):
                try:
                    if os.stat(self.path + suffix).st_mode & 0o077:
                        os.chmod(self.path + suffix, 0o600)
                except FileNotFoundError:
                    pass
        except OSError as exc:
            raise StoreError(f"state file {self.path}: cannot create or open it: {exc.strerror}") from exc

    def _set_wal(self, conn: sqlite3.Connection) -> Any:
        """Switch to WAL, waiting out another process doing the same on a new file.

        Changing the journal mode needs an exclusive lock, and when two connections race for it
        SQLite may answer "locked" at once instead of calling the busy handler; so retry here
        until the busy timeout.
        """
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.01
        while True:
            try:
                return conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,  # guarded by self._lock instead
                cached_statements=256,
            )
        except sqlite3.Error as exc:
            raise self._translate(exc, "open") from exc
        try:
            mode = self._set_wal(conn)
            if str(mode).lower() != "wal":
                raise StoreError(
                    f"state file {self.path}: cannot switch to WAL journal mode (got {mode!r}); "
                    "is it on a network or read-only filesystem?"
                )
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            # 64 MiB of page cache: a list() of 50k objects stays in memory.
            conn.execute("PRAGMA cache_size = -65536")
            # Keep a burst's WAL from staying large on disk after its checkpoint.
            conn.execute("PRAGMA journal_size_limit = 67108864")
        except sqlite3.Error as exc:
            conn.close()
            raise self._translate(exc, "open") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _migrate(self) -> None:
        """Bring the schema to the newest version in one write transaction.

        Two processes opening a fresh file at once: the second waits for the write lock, then
        finds the schema current.
        """
        conn = self._acquire()
        try:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._translate(exc, "open") from exc
            step = "read the schema version"
            try:
                current = self._read_version(conn)
                latest = self._migrations[-1].version if self._migrations else 0
                if current > latest:
                    raise StoreError(
                        f"state file {self.path} was written by a newer l2vpc (schema {current}); "
                        f"upgrade l2vpc (this one knows schema {latest})"
                    )
                for mig in self._migrations[current:]:
                    step = f"migrate to schema {mig.version} ({mig.name})"
                    for statement in mig.statements():
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                        (mig.version, mig.name, time.time()),
                    )
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(conn)
                raise self._translate(exc, step) from exc
            except BaseException:
                _rollback(conn)
                raise
        finally:
            self._release()

    def _read_version(self, conn: sqlite3.Connection) -> int:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "schema_version" not in tables:
            if any(not t.startswith("sqlite_") for t in tables):
                raise StoreError(f"{self.path} is a SQLite database but not an l2vpc state file")
            return 0
        return int(conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0])

    # --- locking -----------------------------------------------------------------------
    def _acquire(self) -> sqlite3.Connection:
        me = threading.get_ident()
        if self._owner == me:  # only this thread can have stored its own ident
            raise RuntimeError(
                "store.transaction() nested in one thread; pass the open transaction down instead"
            )
        if os.getpid() != self._pid:
            raise StoreError(f"state file {self.path} was opened before fork(); open it again in the child")
        if self._lock.acquire(blocking=False):
            want = self._full_busy_ms
        else:
            started = time.monotonic()
            if not self._lock.acquire(timeout=self.busy_timeout):
                raise TemporaryError(
                    f"state file {self.path} is busy: another thread's transaction held it for more "
                    f"than {self.busy_timeout:g} s; retry later"
                )
            # Time spent queueing here counts against the same timeout as SQLite's busy wait.
            want = max(1, int((self.busy_timeout - (time.monotonic() - started)) * 1000))
        self._owner = me
        conn = self._conn
        if conn is None:
            self._release()
            raise StoreError(f"state file {self.path}: the store is closed")
        if abs(want - self._busy_ms) > 10:
            conn.execute(f"PRAGMA busy_timeout = {want}")
            self._busy_ms = want
        return conn

    def _release(self) -> None:
        self._owner = None
        self._lock.release()

    def _translate(self, exc: sqlite3.Error, action: str) -> L2vpcError:
        extended = getattr(exc, "sqlite_errorcode", 0)
        code = extended & 0xFF
        if extended == _SQLITE_BUSY_SNAPSHOT:
            return TemporaryError(
                f"state file {self.path} was changed by another process during this transaction "
                f"({action}); retry"
            )
        if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return TemporaryError(
                f"state file {self.path} is busy: another process held its write lock for more than "
                f"{self.busy_timeout:g} s ({action}); retry later"
            )
        if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            return StoreError(
                f"state file {self.path} is damaged or not an l2vpc state file ({exc}); "
                "restore it from a backup"
            )
        return StoreError(f"state file {self.path}: {action} failed: {exc}")

    # --- Store -------------------------------------------------------------------------
    def __enter__(self) -> SqliteStore:
        return self

    def transaction(self) -> AbstractContextManager[Transaction]:
        return _TransactionContext(self)

    def schema_version(self) -> int:
        inside = self._owner == threading.get_ident()  # reads on the open transaction's connection
        conn = self._conn if inside else self._acquire()
        try:
            if conn is None:
                raise StoreError(f"state file {self.path}: the store is closed")
            return self._read_version(conn)
        except sqlite3.Error as exc:
            raise self._translate(exc, "read the schema version") from exc
        finally:
            if not inside:
                self._release()

    def check(self) -> None:
        """Run SQLite's integrity check; StoreError listing the first problems if it fails."""
        conn = self._acquire()
        try:
            problems = [r[0] for r in conn.execute("PRAGMA integrity_check(10)")]
        except sqlite3.Error as exc:
            raise self._translate(exc, "integrity check") from exc
        finally:
            self._release()
        if problems != ["ok"]:
            raise StoreError(f"state file {self.path} is damaged: {'; '.join(problems)}")

    def try_leadership(self, name: str) -> FileLeadership | None:
        """Become the leader for `name` among the processes using this file, if nobody is
        (never waits); see FileLeadership."""
        check_text("name", name)
        if not _LEADER_NAME.fullmatch(name):
            raise ValidationError("must be 1-63 letters, digits, '-' or '_'", path="name")
        path = f"{self.path}.{name}.leader"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(f"leader lock {path}: cannot open it: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        try:
            with self.transaction() as tx:
                term = tx.next_sequence(f"leader:{name}")
        except BaseException:
            os.close(fd)
            raise
        return FileLeadership(name, term, fd)

    def close(self) -> None:
        if self._owner == threading.get_ident():
            raise RuntimeError("store.close() called inside one of its transactions")
        with self._lock:  # lets a transaction running in another thread finish
            conn, self._conn = self._conn, None
        if conn is not None and os.getpid() == self._pid:
            conn.close()  # the last connection checkpoints and removes the -wal file


class FileLeadership:
    """Leadership of `name` among the processes using one state file: an exclusive flock on
    `<state>.<name>.leader`, which the kernel frees when the holder closes it or dies.
    `term` grows with every new holder (a durable counter in the store), as on PostgreSQL.
    A lock on a local file cannot be lost while held, so `is_held()` only says whether
    `release()` was called."""

    def __init__(self, name: str, term: int, fd: int) -> None:
        self.name = name
        self.term = term
        self._fd: int | None = fd
        self._lock = threading.Lock()

    def is_held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # frees the flock

    def __enter__(self) -> FileLeadership:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"FileLeadership(name={self.name!r}, term={self.term}, held={self._fd is not None})"


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite already rolled back by itself after some errors (disk full, I/O).
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass


__all__ = ["DEFAULT_BUSY_TIMEOUT", "FileLeadership", "SqliteStore", "SqliteTransaction"]
