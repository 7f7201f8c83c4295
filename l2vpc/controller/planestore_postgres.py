"""The plane store on PostgreSQL (replicated controllers): leadership is a session-level
advisory lock on a connection of its own (`Leadership`), notifications are NOTIFY, sent when
the transaction commits, and LISTEN on a connection of its own (`Listener`).

Channel names get a tag of the schema: notification channels are per database, so deployments
sharing a database in different schemas would otherwise wake each other. Notifications are
hints to re-read, never data: a listener that reconnects has missed what was sent meanwhile.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import Any

import psycopg

from l2vpc.controller.planestore import Lease, PlaneStore
from l2vpc.engine.errors import L2vpcError, StoreError
from l2vpc.engine.store.migrations import Migration
from l2vpc.engine.store.postgres import PostgresStore
from l2vpc.engine.store.sql import SqlTransaction


class PostgresPlaneStore(PlaneStore):
    store: PostgresStore

    def __init__(self, store: PostgresStore, *, migrations: tuple[Migration, ...] | None = None) -> None:
        self._tag = ""
        super().__init__(store, migrations=migrations)

    def _opened(self, tx: SqlTransaction) -> None:
        schema = tx.rows("SELECT current_schema()")[0][0]
        self._tag = hashlib.blake2b(str(schema).encode(), digest_size=4).hexdigest()

    def qualified(self, channel: str) -> str:
        return f"{channel}_{self._tag}"

    def _lead(self, name: str) -> Leadership | None:
        # 63 bits: non-negative, so is_held() can rebuild it from pg_locks' two unsigned halves.
        key = int.from_bytes(hashlib.blake2b(f"l2vpc leader:{name}".encode(), digest_size=8).digest(), "big") >> 1
        conn = self.store.connect(tcp_user_timeout=4000, application_name=f"l2vpc leader {name}"[:63])
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
            raise self.store.dialect.translate(exc, "take leadership", None) from exc
        if not row or not row[0]:
            conn.close()
            return None
        try:
            term = self._next_term(name)
        except BaseException:
            conn.close()
            raise
        return Leadership(name, term, conn, key)

    def _listen(self, channel: str, callback: Callable[[str | None], None]) -> Listener:
        if self.store.closed:  # fail now, not in the listener's thread
            raise StoreError(f"state database {self.store.name}: the store is closed")
        return Listener(self, channel, callback)

    def _notify(self, tx: SqlTransaction, channel: str, payload: str) -> None:
        # Delivered when (and only if) this transaction commits.
        tx.rows("SELECT pg_notify(%s, %s)", (self.qualified(channel), payload))


class Leadership(Lease):
    """Leadership of `name` among the controllers of one database: a session-level advisory
    lock held by a connection of its own.

    The server frees the lock when the holder calls `release()` (or leaves its `with` block),
    closes the connection, or dies: at once when its process ends (the socket closes), and for a
    holder that vanished from the network once the server's TCP keepalives give up on it
    (`tcp_keepalives_idle` + `count` x `interval` = 5 + 3 x 2 s on this connection). The holder
    must call `is_held()` before acting as leader (each reconcile round) and stop when it
    returns False: its own TCP user timeout (4 s) is shorter than the server's detection, so
    after a partition the old leader learns it lost first.
    """

    def __init__(self, name: str, term: int, conn: psycopg.Connection[Any], key: int) -> None:
        super().__init__(name, term)
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


class Listener:
    """LISTEN on one channel on a connection of its own, in a daemon thread.

    `callback(payload)` runs in that thread for each notification, and `callback(None)` after
    every (re)connection: notifications sent while the connection was down are lost, so the
    callback should then re-read what it waits for. A lost connection is retried with backoff.
    `close()` stops the thread (within half a second) and closes the connection.
    """

    def __init__(self, plane: PostgresPlaneStore, channel: str, callback: Callable[[str | None], None]) -> None:
        self.channel = channel
        self._plane = plane
        self._callback = callback
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"listen-{channel}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        delay = 0.1
        while not self._stop.is_set():
            conn: psycopg.Connection[Any] | None = None
            try:
                conn = self._plane.store.connect(application_name=f"l2vpc listen {self.channel}"[:63])
                conn.execute(f"LISTEN {self._plane.qualified(self.channel)}")  # a checked identifier
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


__all__ = ["Leadership", "Listener", "PostgresPlaneStore"]
