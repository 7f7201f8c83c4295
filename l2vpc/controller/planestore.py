"""The controllers' plane state, beside the engine's desired state in the same database.

The engine's store holds what users asked for; this holds what the controllers of a store need
to run the control loop together: the store's clock, agents' heartbeats, small shared records
(leader, revisions), recent events, API tokens, leadership and notifications.

A PlaneStore is built on an engine store (engine/store/sql.py's SqlStore) and works inside its
transactions: `transaction()` opens one and yields a PlaneTransaction, whose `tx` is the engine
transaction; `on(tx)` gives the plane's view of an engine transaction already open (a leader's
fence check runs inside the engine's write it guards). Statements are written once over the
engine's SQL dialect. The backends differ only in what this module leaves abstract:
leadership and notifications (planestore_sqlite.py: a file lock, no notifications, waiters
poll; planestore_postgres.py: a session advisory lock, NOTIFY/LISTEN). `open_plane(store)`
picks the one for an engine store.

Tables: heartbeats, plane_state and plane_events (migrations/ beside this module, a version
ladder of its own in plane_schema_version). API tokens stay rows of the engine's objects table
with kind 'token', where earlier versions wrote them; the engine's interface does not serve
that kind, only this one does.
"""

from __future__ import annotations

import abc
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from l2vpc.engine.errors import ConflictError, StoreError, ValidationError
from l2vpc.engine.store.base import Store, StoredObject, Transaction
from l2vpc.engine.store.documents import (
    LazyObject,
    check_generation,
    check_key,
    check_text,
    encode,
    loads,
    lookup_key,
)
from l2vpc.engine.store.migrations import Migration, check_sequence, load_migrations
from l2vpc.engine.store.sql import Dialect, SqlStore, SqlTransaction
from l2vpc.engine.store.sqlite import SqliteStore

TOKEN = "token"  # kind of the objects rows that hold API tokens
KEEP_EVENTS = 200
_LEADER_NAME = re.compile(r"[A-Za-z0-9_-]{1,63}")
_CHANNEL = re.compile(r"[a-z_][a-z0-9_]{0,49}")  # PostgreSQL adds "_<8 hex>" of the schema: at most 63
_VERSION_TABLE = "plane_schema_version"


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The last time a host's agent was heard from, and what it said then."""

    host: str
    last_seen: float  # unix seconds in the store's clock (PlaneTransaction.clock)
    accepted_generation: int  # 0: the agent holds no config (restarted empty)
    converged_generation: int
    converging: bool  # the agent is applying a config right now
    digest: str  # hostconfig.config_digest of what the host runs ('' unknown)
    controller: str = ""  # the controller that received it


@dataclass(frozen=True, slots=True)
class Event:
    """One thing the control loop did (host down, service moved, drift repaired)."""

    time: float  # unix seconds
    host: str  # '' for cluster-wide events
    what: str


class Lease(abc.ABC):
    """Leadership of a name, held until released or lost. `term` grows with every new holder
    (a durable counter in the store): a fencing token against a deposed leader's late writes."""

    def __init__(self, name: str, term: int) -> None:
        self.name = name
        self.term = term

    @abc.abstractmethod
    def is_held(self) -> bool:
        """Whether this holder still leads; it must stop acting as leader once False."""

    @abc.abstractmethod
    def release(self) -> None:
        """Give up leadership (idempotent)."""

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, term={self.term})"


class Subscription(Protocol):
    """A listener (PlaneStore.listen); `close()` stops it."""

    def close(self) -> None: ...


class _Statements:
    """The plane's statements, spelled for one dialect."""

    def __init__(self, d: Dialect) -> None:
        p, j = d.param, d.json
        self.clock = f"SELECT {d.clock_seconds}"
        beat = (("host", "text"), ("seen", "float8"), ("acc", "int8"), ("conv", "int8"), ("busy", "bool"),
                ("digest", "text"), ("ctl", "text"))
        # A heartbeat older than the recorded one (another controller flushed a newer one)
        # keeps the newer values.
        newer = "excluded.last_seen >= h.last_seen"
        kept = ", ".join(f"{c} = CASE WHEN {newer} THEN excluded.{c} ELSE h.{c} END"
                         for c in ("accepted_generation", "converged_generation", "converging", "digest",
                                   "controller"))
        self.put_heartbeats = (
            "INSERT INTO heartbeats AS h (host, last_seen, accepted_generation, converged_generation, converging, "
            f"digest, controller) SELECT b.host, b.seen, b.acc, b.conv, b.busy, b.digest, b.ctl FROM {d.batch(beat)} "
            "WHERE EXISTS (SELECT 1 FROM objects o WHERE o.kind = 'host' AND o.id = b.host) "
            f"ON CONFLICT (host) DO UPDATE SET {kept}, last_seen = {d.greatest}(h.last_seen, excluded.last_seen) "
            "RETURNING host")
        self.heartbeats = ("SELECT host, last_seen, accepted_generation, converged_generation, converging, digest, "
                           "controller FROM heartbeats")
        self.delete_heartbeats = f"DELETE FROM heartbeats WHERE {d.one_of('host')}"
        self.get_state = f"SELECT value FROM plane_state WHERE key = {p}"
        self.put_state = (f"INSERT INTO plane_state (key, value) VALUES ({p}, {j}) "
                          "ON CONFLICT (key) DO UPDATE SET value = excluded.value")
        event = (("t", "float8"), ("h", "text"), ("w", "text"))
        self.add_events = f"INSERT INTO plane_events (time, host, what) SELECT b.t, b.h, b.w FROM {d.batch(event)}"
        self.trim_events = f"DELETE FROM plane_events WHERE id <= (SELECT max(id) FROM plane_events) - {p}"
        self.events = ("SELECT time, host, what FROM (SELECT id, time, host, what FROM plane_events "
                       f"ORDER BY id DESC LIMIT {p}) AS newest ORDER BY id")
        self.get_token = f"SELECT generation, data FROM objects WHERE kind = '{TOKEN}' AND id = {p}"
        self.tokens = f"SELECT id, generation, data FROM objects WHERE kind = '{TOKEN}' ORDER BY id"
        self.create_token = (f"INSERT INTO objects (kind, id, tenant, generation, data) VALUES ('{TOKEN}', {p}, '', 1, "
                             f"{j}) ON CONFLICT (kind, id) DO NOTHING")
        self.update_token = (f"UPDATE objects SET data = {j}, generation = generation + 1 "
                             f"WHERE kind = '{TOKEN}' AND id = {p} AND generation = {p}")
        self.version = f"SELECT coalesce(max(version), 0) FROM {_VERSION_TABLE}"
        self.create_version_table = f"CREATE TABLE {_VERSION_TABLE} (version integer PRIMARY KEY, name text NOT NULL)"
        self.record_version = f"INSERT INTO {_VERSION_TABLE} (version, name) VALUES ({p}, {p})"


class PlaneTransaction:
    """The plane's records inside one open transaction of the engine store: read and written on
    its connection, committed or rolled back with it. Every input check happens before
    anything is sent (on PostgreSQL a failed statement aborts the whole transaction)."""

    __slots__ = ("_plane", "_sql", "tx")

    def __init__(self, plane: PlaneStore, tx: SqlTransaction) -> None:
        self._plane = plane
        self._sql = plane.statements
        self.tx = tx  # the engine's transaction: objects, allocations, counters

    def clock(self) -> float:
        """Now, in unix seconds, by the store's clock: every controller of a database times
        heartbeats and leases with it, so their own clocks need not agree."""
        return float(self.tx.rows(self._sql.clock)[0][0])

    # --- heartbeats --------------------------------------------------------------------
    def put_heartbeats(self, beats: Sequence[Heartbeat]) -> set[str]:
        """Record a batch of heartbeats in one statement; a heartbeat older than the one
        recorded for its host is ignored. Returns the hosts that are not registered (skipped).
        `beats` holds at most one heartbeat per host."""
        check_heartbeats(beats)
        if not beats:
            return set()
        rows = [(b.host, float(b.last_seen), b.accepted_generation, b.converged_generation, b.converging, b.digest,
                 b.controller) for b in beats]
        written = self.tx.rows(self._sql.put_heartbeats, self.tx.dialect.batch_params(rows, 7))
        return {b.host for b in beats} - {r[0] for r in written}

    def heartbeats(self) -> dict[str, Heartbeat]:
        """The last heartbeat of every host that ever sent one."""
        return {r[0]: Heartbeat(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6])
                for r in self.tx.rows(self._sql.heartbeats)}

    def delete_heartbeats(self, hosts: Iterable[str]) -> None:
        names = sorted({h for h in hosts if lookup_key("host", h)})
        if names:
            self.tx.change(self._sql.delete_heartbeats, (self.tx.dialect.values(names),))

    # --- shared records and events -----------------------------------------------------
    def get_state(self, key: str) -> dict[str, Any] | None:
        """A small shared record of the control plane (leader, revisions), or None."""
        if not lookup_key("key", key):
            return None
        rows = self.tx.rows(self._sql.get_state, (key,))
        return loads(rows[0][0]) if rows else None

    def put_state(self, key: str, value: dict[str, Any]) -> None:
        check_key("key", key)
        self.tx.change(self._sql.put_state, (key, encode("state", key, value, field="value")))

    def add_events(self, events: Sequence[Event], keep: int = KEEP_EVENTS) -> None:
        """Append events and drop all but the newest `keep`."""
        for i, e in enumerate(events):
            check_event(f"events[{i}]", e)
        if not events:
            return
        rows = [(float(e.time), e.host, e.what) for e in events]
        self.tx.change(self._sql.add_events, self.tx.dialect.batch_params(rows, 3))
        self.tx.change(self._sql.trim_events, (keep,))

    def events(self, limit: int = KEEP_EVENTS) -> list[Event]:
        """The newest `limit` events, oldest first."""
        return [Event(t, h, w) for t, h, w in self.tx.rows(self._sql.events, (limit,))]

    def notify(self, channel: str, payload: str) -> None:
        """Wake listeners of `channel` in other processes once this transaction commits, where
        the store can (PostgreSQL); elsewhere nothing happens and listeners poll."""
        check_channel(channel)
        if not isinstance(payload, str) or len(payload.encode()) >= 8000 or "\x00" in payload:
            raise ValidationError("must be shorter than 8000 bytes, without NUL", path="payload")
        self._plane._notify(self.tx, channel, payload)

    # --- API tokens (auth.py) ----------------------------------------------------------
    def get_token(self, ident: str) -> StoredObject | None:
        if not lookup_key("id", ident):
            return None
        rows = self.tx.rows(self._sql.get_token, (ident,))
        return LazyObject.from_row(TOKEN, ident, rows[0][0], rows[0][1], "") if rows else None

    def tokens(self) -> list[StoredObject]:
        """Every token, by id."""
        return [LazyObject.from_row(TOKEN, i, g, d, "") for i, g, d in self.tx.rows(self._sql.tokens)]

    def create_token(self, ident: str, data: dict[str, Any]) -> None:
        """Record a new token; ConflictError if the id is taken."""
        check_key("id", ident)
        if self.tx.change(self._sql.create_token, (ident, encode(TOKEN, ident, data))) != 1:
            raise ConflictError(f"token {ident!r} already exists")

    def update_token(self, ident: str, data: dict[str, Any], expected_generation: int) -> bool:
        """Replace a token's record if it is still at `expected_generation`; False if not."""
        check_key("id", ident)
        check_generation("expected_generation", expected_generation)
        text = encode(TOKEN, ident, data)
        return self.tx.change(self._sql.update_token, (text, ident, expected_generation)) == 1


class PlaneStore(abc.ABC):
    """The plane state of the controllers of one engine store; see the module docstring.
    Opening applies the plane's missing migrations (in one transaction of the store)."""

    def __init__(self, store: SqlStore, *, migrations: Sequence[Migration] | None = None) -> None:
        self.store = store
        self.statements = _Statements(store.dialect)
        self._migrations = tuple(migrations) if migrations is not None else load_migrations(
            store.dialect.name, "l2vpc.controller.migrations")
        check_sequence(self._migrations)
        self._migrate()

    @contextmanager
    def transaction(self) -> Iterator[PlaneTransaction]:
        """A transaction of the engine store (`.tx`) with the plane's records beside it."""
        with self.store.transaction() as tx:
            yield PlaneTransaction(self, tx)

    def on(self, tx: Transaction) -> PlaneTransaction:
        """The plane's records inside `tx`, an open transaction of this plane's engine store."""
        if not isinstance(tx, SqlTransaction) or tx.store is not self.store:
            raise TypeError(f"not a transaction of this plane's store: {type(tx).__name__}")
        return PlaneTransaction(self, tx)

    def schema_version(self) -> int:
        with self.store.transaction() as tx:
            return int(tx.rows(self.statements.version)[0][0])

    # --- leadership and notifications: what the backends do differently ------------------
    def try_leadership(self, name: str) -> Lease | None:
        """Become the leader for `name` among the controllers of this store if nobody is
        (never waits): a Lease with a term higher than every earlier holder's, else None."""
        check_text("name", name)
        if not _LEADER_NAME.fullmatch(name):
            raise ValidationError("must be 1-63 letters, digits, '-' or '_'", path="name")
        return self._lead(name)

    def listen(self, channel: str, callback: Callable[[str | None], None]) -> Subscription | None:
        """Call `callback(payload)` for every notification on `channel`, and `callback(None)`
        whenever notifications may have been missed (after each (re)connection); None where
        the store has no notifications (callers poll instead)."""
        check_channel(channel)
        return self._listen(channel, callback)

    def _next_term(self, name: str) -> int:
        with self.store.transaction() as tx:
            return tx.next_sequence(f"leader:{name}")

    @abc.abstractmethod
    def _lead(self, name: str) -> Lease | None: ...

    @abc.abstractmethod
    def _listen(self, channel: str, callback: Callable[[str | None], None]) -> Subscription | None: ...

    @abc.abstractmethod
    def _notify(self, tx: SqlTransaction, channel: str, payload: str) -> None:
        """Send a checked notification when `tx` commits (or not at all)."""

    @abc.abstractmethod
    def _opened(self, tx: SqlTransaction) -> None:
        """Read what the backend needs once, in the transaction that opens the plane."""

    # --- migrations --------------------------------------------------------------------
    def _migrate(self) -> None:
        latest = self._migrations[-1].version if self._migrations else 0
        with self.store.transaction() as tx:
            current = self._read_version(tx)
            if current > latest:
                raise StoreError(f"the controllers' tables were written by a newer l2vpc (plane schema {current}); "
                                 f"upgrade l2vpc (this one knows plane schema {latest})")
            for mig in self._migrations[current:]:
                tx.script(mig.sql)
                tx.change(self.statements.record_version, (mig.version, mig.name))
            self._opened(tx)

    def _read_version(self, tx: SqlTransaction) -> int:
        exists = tx.dialect.table_exists()
        if tx.rows(exists, (_VERSION_TABLE,))[0][0]:
            return int(tx.rows(self.statements.version)[0][0])
        tx.change(self.statements.create_version_table)
        if tx.rows(exists, ("heartbeats",))[0][0]:
            # Made by the engine's schema 2 of earlier versions: plane version 1's very tables.
            tx.change(self.statements.record_version, (1, "plane (made by engine schema 2)"))
            return 1
        return 0


def open_plane(store: Store | PlaneStore) -> PlaneStore:
    """The plane store of an engine store (opened, migrated), or `store` if it is one."""
    if isinstance(store, PlaneStore):
        return store
    # The backends' modules import this one; PostgreSQL's imports psycopg, which a store of
    # that dialect has loaded already.
    if isinstance(store, SqliteStore):
        from l2vpc.controller.planestore_sqlite import SqlitePlaneStore

        return SqlitePlaneStore(store)
    if isinstance(store, SqlStore) and store.dialect.name == "postgres":
        from l2vpc.controller.planestore_postgres import PostgresPlaneStore
        from l2vpc.engine.store.postgres import PostgresStore

        if isinstance(store, PostgresStore):
            return PostgresPlaneStore(store)
    raise TypeError(f"controllers need a SQLite or PostgreSQL store, not {type(store).__name__}")


# --- input checks ---------------------------------------------------------------------------


def check_heartbeats(beats: object) -> None:
    """A batch for put_heartbeats: heartbeats, at most one per host (one upsert per row)."""
    if not isinstance(beats, list | tuple):
        raise ValidationError(f"must be a list of heartbeats, got {type(beats).__name__}", path="beats")
    seen: set[str] = set()
    for i, b in enumerate(beats):
        check_heartbeat(f"beats[{i}]", b)
        if b.host in seen:
            raise ValidationError(f"host {b.host!r} appears twice in one batch", path=f"beats[{i}].host")
        seen.add(b.host)


def check_heartbeat(field: str, beat: object) -> None:
    """Types of a heartbeat going into the store (the control plane validated the values)."""
    if not isinstance(beat, Heartbeat):
        raise ValidationError(f"must be a Heartbeat, got {type(beat).__name__}", path=field)
    check_text(f"{field}.host", beat.host)
    if not _finite(beat.last_seen):
        raise ValidationError(f"must be a finite number, got {beat.last_seen!r}", path=f"{field}.last_seen")
    for name in ("accepted_generation", "converged_generation"):
        value = getattr(beat, name)
        if type(value) is not int or not 0 <= value < 2**63:
            raise ValidationError(f"must be an integer from 0 to 2^63-1, got {value!r}", path=f"{field}.{name}")
    if type(beat.converging) is not bool:
        raise ValidationError(f"must be true or false, got {beat.converging!r}", path=f"{field}.converging")
    for name in ("host", "digest", "controller"):
        value = getattr(beat, name)
        if not isinstance(value, str):
            raise ValidationError("must be a string", path=f"{field}.{name}")
        if "\x00" in value:
            raise ValidationError("must not contain NUL characters", path=f"{field}.{name}")


def check_event(field: str, event: object) -> None:
    if not isinstance(event, Event):
        raise ValidationError(f"must be an Event, got {type(event).__name__}", path=field)
    if not _finite(event.time):
        raise ValidationError(f"must be a finite number, got {event.time!r}", path=f"{field}.time")
    if not isinstance(event.host, str) or not isinstance(event.what, str):
        raise ValidationError("host and what must be strings", path=field)
    if "\x00" in event.host + event.what:
        raise ValidationError("must not contain NUL characters", path=field)


def check_channel(channel: object) -> None:
    if not isinstance(channel, str) or not _CHANNEL.fullmatch(channel):
        raise ValidationError("must be a lowercase identifier (letters, digits, '_'), at most 50", path="channel")


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


__all__ = ["Event", "Heartbeat", "Lease", "PlaneStore", "PlaneTransaction", "Subscription", "open_plane"]
