"""The plane store on SQLite (single-controller deployments, tests): leadership is an flock on
a file beside the state file; there are no notifications, so waiters poll (plane.py)."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable

from l2vpc.controller.planestore import Lease, PlaneStore, Subscription
from l2vpc.engine.errors import StoreError
from l2vpc.engine.store.migrations import Migration
from l2vpc.engine.store.sql import SqlTransaction
from l2vpc.engine.store.sqlite import SqliteStore


class SqlitePlaneStore(PlaneStore):
    store: SqliteStore

    def __init__(self, store: SqliteStore, *, migrations: tuple[Migration, ...] | None = None) -> None:
        super().__init__(store, migrations=migrations)

    def _lead(self, name: str) -> FileLeadership | None:
        path = f"{self.store.path}.{name}.leader"
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
            term = self._next_term(name)
        except BaseException:
            os.close(fd)
            raise
        return FileLeadership(name, term, fd)

    def _listen(self, channel: str, callback: Callable[[str | None], None]) -> Subscription | None:
        return None  # one machine, no notifications: listeners poll

    def _notify(self, tx: SqlTransaction, channel: str, payload: str) -> None:
        pass

    def _opened(self, tx: SqlTransaction) -> None:
        pass


class FileLeadership(Lease):
    """Leadership of `name` among the processes using one state file: an exclusive flock on
    `<state>.<name>.leader`, which the kernel frees when the holder closes it or dies.
    A lock on a local file cannot be lost while held, so `is_held()` only says whether
    `release()` was called."""

    def __init__(self, name: str, term: int, fd: int) -> None:
        super().__init__(name, term)
        self._fd: int | None = fd
        self._lock = threading.Lock()

    def is_held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # frees the flock


__all__ = ["FileLeadership", "SqlitePlaneStore"]
