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

The statements are the SQL layer's (sql.py); this module holds the connection, the locking and
the migrations, and SqliteDialect: `?` parameters, JSON as TEXT, lists and batches as one JSON
parameter read with json_each, the clock as time.time().

The file and its -wal/-shm companions are mode 0600: the state holds secrets (service keys).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Any

from l2vpc.engine.errors import ConflictError, L2vpcError, StoreError, TemporaryError
from l2vpc.engine.store.documents import check_key, dumps
from l2vpc.engine.store.migrations import Migration, check_sequence, load_migrations, split_statements
from l2vpc.engine.store.sql import Dialect, SqlStore, SqlTransaction, Statements, not_unicode

DEFAULT_BUSY_TIMEOUT = 10.0
# RETURNING (3.35) and built-in JSON functions (3.38) are used below.
MIN_SQLITE = (3, 38, 0)

# SQLite result codes, spelled out (the sqlite3 module's named constants vary by version).
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
_SQLITE_BUSY_SNAPSHOT = _SQLITE_BUSY | (2 << 8)  # only if a transaction were not IMMEDIATE


class SqliteDialect(Dialect):
    name = "sqlite"
    param = "?"
    json = "?"
    greatest = "max"
    # time.time() (registered on each connection): one machine, the file's clock is ours.
    clock_timestamp = clock_seconds = "l2vpc_clock()"
    error = sqlite3.Error

    def __init__(self, path: str, busy_timeout: float) -> None:
        self.path = path
        self.busy_timeout = busy_timeout

    def seconds(self, column: str) -> str:
        return column  # REAL unix seconds

    def one_of(self, column: str) -> str:
        return f"{column} IN (SELECT value FROM json_each(?))"

    def values(self, items: Sequence[str]) -> object:
        return dumps(list(items))

    def batch(self, columns: Sequence[tuple[str, str]]) -> str:
        picks = ", ".join(f"j.value ->> {i} AS {name}" for i, (name, _) in enumerate(columns))
        return f"(SELECT {picks} FROM json_each(?) AS j) AS b"

    def batch_params(self, rows: Sequence[Sequence[object]], width: int) -> tuple[object, ...]:
        return (dumps([list(r) for r in rows]),)

    def table_exists(self) -> str:
        return "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?"

    def translate(self, exc: Exception, action: str, conn: Any = None) -> L2vpcError:
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


class SqliteTransaction(SqlTransaction):
    """One BEGIN IMMEDIATE ... COMMIT on the store's connection; see the module docstring."""

    __slots__ = ()

    def script(self, sql: str) -> None:
        # executescript() would commit the transaction first: one statement at a time.
        for statement in split_statements(sql):
            self.change(statement)

    def write_many(self, objects: Sequence[tuple[str, str, dict[str, Any], str]],
                   claims: Sequence[tuple[str, str, str]]) -> None:
        # executemany: one prepared statement stepped per row in C (~2 us a row, against ~15 us
        # for a statement of its own); a clash shows as fewer rows changed than sent.
        rows = [(kind, ident, tenant, self._check_new(kind, ident, tenant, data))
                for kind, ident, data, tenant in objects]
        for pool, value, owner in claims:
            for field, text in (("pool", pool), ("value", value), ("owner", owner)):
                check_key(field, text)
        if rows and self._many(self._sql.create, rows) != len(rows):
            taken = {i for (i,) in self.rows(
                f"SELECT id FROM objects WHERE {self.dialect.one_of('id')}", (self.dialect.values([r[1] for r in rows]),))}
            kind, ident = next((r[0], r[1]) for r in rows if r[1] in taken)
            raise ConflictError(f"{kind} {ident!r} already exists")
        if claims and self._many(self._sql.reserve, claims) != len(claims):
            for pool, value, owner in claims:
                held = self.rows(self._sql.holder, (pool, value))
                if held and held[0][0] != owner:
                    raise ConflictError(f"{pool} {value!r} is already held by {held[0][0]!r} (requested by {owner!r})")

    def _many(self, statement: str, rows: Sequence[Sequence[Any]]) -> int:
        conn = self._open()
        try:
            return int(conn.executemany(statement, rows).rowcount)
        except self.dialect.error as exc:
            raise self.dialect.translate(exc, "write", conn) from exc
        except UnicodeEncodeError as exc:
            raise not_unicode(exc) from None


class _TransactionContext(AbstractContextManager[SqliteTransaction]):
    __slots__ = ("_store", "_tx")

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._tx: SqliteTransaction | None = None

    def __enter__(self) -> SqliteTransaction:
        store = self._store
        conn = store._acquire()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            store._release()
            raise store.dialect.translate(exc, "begin a transaction") from exc
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
                    raise self._store.dialect.translate(commit_exc, "commit") from commit_exc
            else:
                _rollback(conn)
        finally:
            self._store._release()


class SqliteStore(SqlStore):
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
        self.dialect = SqliteDialect(self.path, busy_timeout)
        self.statements = Statements(self.dialect)
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
            raise self.dialect.translate(exc, "open") from exc
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
            conn.create_function("l2vpc_clock", 0, time.time)  # the dialect's clock
        except sqlite3.Error as exc:
            conn.close()
            raise self.dialect.translate(exc, "open") from exc
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
                raise self.dialect.translate(exc, "open") from exc
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
                raise self.dialect.translate(exc, step) from exc
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

    # --- Store -------------------------------------------------------------------------
    def __enter__(self) -> SqliteStore:
        return self

    def transaction(self) -> AbstractContextManager[SqliteTransaction]:
        return _TransactionContext(self)

    def schema_version(self) -> int:
        inside = self._owner == threading.get_ident()  # reads on the open transaction's connection
        conn = self._conn if inside else self._acquire()
        try:
            if conn is None:
                raise StoreError(f"state file {self.path}: the store is closed")
            return self._read_version(conn)
        except sqlite3.Error as exc:
            raise self.dialect.translate(exc, "read the schema version") from exc
        finally:
            if not inside:
                self._release()

    def check(self) -> None:
        """Run SQLite's integrity check; StoreError listing the first problems if it fails."""
        conn = self._acquire()
        try:
            problems = [r[0] for r in conn.execute("PRAGMA integrity_check(10)")]
        except sqlite3.Error as exc:
            raise self.dialect.translate(exc, "integrity check") from exc
        finally:
            self._release()
        if problems != ["ok"]:
            raise StoreError(f"state file {self.path} is damaged: {'; '.join(problems)}")

    def close(self) -> None:
        if self._owner == threading.get_ident():
            raise RuntimeError("store.close() called inside one of its transactions")
        with self._lock:  # lets a transaction running in another thread finish
            conn, self._conn = self._conn, None
        if conn is not None and os.getpid() == self._pid:
            conn.close()  # the last connection checkpoints and removes the -wal file


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite already rolled back by itself after some errors (disk full, I/O).
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass


__all__ = ["DEFAULT_BUSY_TIMEOUT", "SqliteDialect", "SqliteStore", "SqliteTransaction"]
