"""A throwaway PostgreSQL server for tests and benchmarks.

`running_server()` runs `initdb` and `postgres` from the Debian packages in a fresh temporary
directory and yields a `PgServer`; on leaving (also on failure or Ctrl-C) it stops the server
and removes the directory. PostgreSQL refuses to run as root, so when we are root the server
runs as the `postgres` OS user (the Debian package creates it); otherwise as ourselves.

The server listens on a unix socket inside its directory and on 127.0.0.1 at a free port.
Local (socket) connections are trusted; TCP connections need a password (scram-sha-256), so
tests can use URLs that carry one. Databases are owned by an unprivileged login role, as a
controller's would be.

    with running_server() as pg:
        url = pg.create_database("t1")   # postgresql://l2vpc:<pw>@127.0.0.1:<port>/t1
        with Schema(pg, "t1", "s1") as db:   # a fresh schema first on db.url's search_path
            ...
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from l2vpc.lab.postgres import find_bin_dir, missing_reason

ROLE = "l2vpc"
ADMIN = "pgadmin"
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class PgServer:
    root: Path
    port: int
    password: str  # of ROLE; random per server

    @property
    def socket_dir(self) -> Path:
        return self.root

    def url(self, database: str, *, host: str = "127.0.0.1") -> str:
        return f"postgresql://{ROLE}:{self.password}@{host}:{self.port}/{database}"

    def admin(self, database: str = "postgres") -> psycopg.Connection:
        """A superuser connection over the unix socket (autocommit)."""
        return psycopg.connect(
            host=str(self.socket_dir), port=self.port, user=ADMIN, dbname=database, autocommit=True
        )

    def create_database(self, name: str) -> str:
        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(ROLE)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def terminate(self, database: str, application_name: str | None = None) -> int:
        """Kill the backends of `database` (of one application_name when given): what a
        crashed network or a DBA's pg_terminate_backend does. Returns how many."""
        query = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
        params: list[str] = [database]
        if application_name is not None:
            query += " AND application_name = %s"
            params.append(application_name)
        with self.admin() as conn:
            row = conn.execute(query, params).fetchone()
        return int(row[0]) if row else 0


class Schema:
    """A fresh, empty schema of `database`, first on the search_path of `url` (what a store or a
    controller under test gets): a schema costs a millisecond, a database a third of a second.
    Dropped with everything in it on leaving the `with` block (or by `drop()`)."""

    def __init__(self, server: PgServer, database: str, schema: str) -> None:
        self.server, self.database, self.schema = server, database, schema
        self.raw(f"CREATE SCHEMA {schema} AUTHORIZATION {ROLE}", search_path=False)
        self.url = f"{server.url(database)}?options=-csearch_path%3D{schema}"

    def raw(self, query: str, params: tuple[Any, ...] = (), *, search_path: bool = True) -> list[Any]:
        """Read or write behind the store's back, as the superuser."""
        with self.server.admin(self.database) as conn:
            if search_path:
                conn.execute(f"SET search_path = {self.schema}")
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def drop(self) -> None:
        self.raw(f"DROP SCHEMA {self.schema} CASCADE", search_path=False)

    def __enter__(self) -> Schema:
        return self

    def __exit__(self, *exc: object) -> None:
        self.drop()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(*, durable: bool = False, max_connections: int = 60) -> Iterator[PgServer]:
    """Start a private server; `durable=False` turns fsync off (tests), True keeps the defaults
    (benchmarks: every commit is flushed to disk)."""
    reason = missing_reason()
    if reason:
        raise RuntimeError(reason)
    bindir = find_bin_dir()
    assert bindir is not None
    as_user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="l2vpc-pg-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        if as_user is not None:
            os.chown(root, as_user.pw_uid, as_user.pw_gid)
        # As the postgres user when root (None: as ourselves).
        uid, gid = (as_user.pw_uid, as_user.pw_gid) if as_user else (None, None)
        groups: list[int] | None = [] if as_user else None
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": str(root)}
        password = secrets.token_urlsafe(18)
        pwfile = root / "pw"
        pwfile.write_text(secrets.token_urlsafe(18) + "\n")  # the superuser's; only trust-socket use
        if as_user is not None:
            os.chown(pwfile, as_user.pw_uid, as_user.pw_gid)
        os.chmod(pwfile, 0o600)
        data = root / "data"
        init = subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", ADMIN, "--pwfile", str(pwfile), "--encoding=UTF8",
             "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "--no-instructions"],
            cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False,
            user=uid, group=gid, extra_groups=groups,
        )
        pwfile.unlink()
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed ({init.returncode}): {init.stderr.strip()[-2000:]}")
        log = root / "postgres.log"
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(root),
            "max_connections": str(max_connections),
            "shared_buffers": "64MB",
            "fsync": "on" if durable else "off",
            "synchronous_commit": "on" if durable else "off",
            "full_page_writes": "on" if durable else "off",
            "logging_collector": "off",
            "log_min_messages": "warning",
        }
        for attempt in range(3):
            port = _free_port()
            args = [str(bindir / "postgres"), "-D", str(data), "-p", str(port)]
            for k, v in settings.items():
                args += ["-c", f"{k}={v}"]
            with open(log, "ab") as logf:
                proc = subprocess.Popen(args, cwd=root, env=env, stdout=logf, stderr=subprocess.STDOUT,
                                        start_new_session=True, user=uid, group=gid, extra_groups=groups)
            if _wait_ready(proc, root, port):
                break
            _stop(proc)
            proc = None
            if attempt == 2:
                raise RuntimeError(f"postgres did not start: {log.read_text(errors='replace')[-2000:]}")
        server = PgServer(root=root, port=port, password=password)
        with server.admin() as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(ROLE), sql.Literal(password)))
        yield server
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(proc: subprocess.Popen[bytes], root: Path, port: int) -> bool:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False  # e.g. the port was taken in the meantime
        try:
            psycopg.connect(host=str(root), port=port, user=ADMIN, dbname="postgres", connect_timeout=2).close()
            return True
        except psycopg.OperationalError:
            time.sleep(0.05)
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Fast shutdown (SIGINT: abort sessions, checkpoint, exit); SIGKILL the group if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


__all__ = ["ADMIN", "ROLE", "PgServer", "Schema", "find_bin_dir", "missing_reason", "running_server"]
