"""A PostgreSQL cluster the lab owns (`l2vpc lab up --controllers N --postgres`): created at up,
stopped and deleted at down, recorded in lab.json like every other thing the lab starts.

It listens on a unix socket only (no TCP port to collide with another lab or a real server),
in a directory of its own below /tmp (short enough for a socket path, and reachable by the
`postgres` OS user, which the server runs as when we are root: PostgreSQL refuses root).
Filesystem paths cross network namespaces, so controllers in the lab's switch namespace reach
it as well as the host does. Local connections are trusted; the database belongs to an
unprivileged role, as a controller's would.

    rec = start(progress)     # {"dir", "pid", "port", "url"}: recorded by the caller
    stop(rec)                 # SIGINT (fast shutdown), then the directory goes
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

ROLE = "l2vpc"
ADMIN = "pgadmin"
DATABASE = "l2vpc"
PORT = 5432  # only names the socket file: the cluster has no TCP listener
START_TIMEOUT = 30.0


class PostgresError(Exception):
    """The lab's cluster could not be created or started; the message says why."""


def find_bin_dir() -> Path | None:
    """The newest installed PostgreSQL's bin directory (`L2VPC_PG_BIN` overrides), or None."""
    override = os.environ.get("L2VPC_PG_BIN")
    candidates = [Path(override)] if override else sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: _major(p.parent.name), reverse=True
    )
    for d in candidates:
        if (d / "initdb").is_file() and (d / "postgres").is_file():
            return d
    return None


def _major(name: str) -> int:
    return int(name) if name.isdigit() else -1


def missing_reason() -> str | None:
    """Why a server cannot be started here, or None if it can."""
    if find_bin_dir() is None:
        return "PostgreSQL server binaries (initdb, postgres) not found; ./dev installs the postgresql package"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root but there is no `postgres` OS user to run the server as"
    return None


def socket_url(root: str | Path, port: int = PORT, database: str = DATABASE, user: str = ROLE) -> str:
    """A libpq URL reaching the cluster in `root` over its unix socket."""
    return f"postgresql://{user}@/{database}?host={root}&port={port}"


def start(prefix: str = "l2lab-pg-") -> dict[str, Any]:
    """Create and start a cluster with database `l2vpc` owned by role `l2vpc`; returns its record.
    On failure nothing is left behind."""
    reason = missing_reason()
    if reason:
        raise PostgresError(f"--postgres: cannot create a PostgreSQL cluster here: {reason}")
    bindir = find_bin_dir()
    assert bindir is not None
    as_user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    rec: dict[str, Any] = {"dir": str(root), "pid": None, "port": PORT, "url": socket_url(root)}
    try:
        # As the postgres user when root (None: as ourselves).
        uid, gid = (as_user.pw_uid, as_user.pw_gid) if as_user else (None, None)
        groups: list[int] | None = [] if as_user else None
        if as_user is not None:
            os.chown(root, as_user.pw_uid, as_user.pw_gid)
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": str(root)}
        data = root / "data"
        init = subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", ADMIN, "--encoding=UTF8", "--locale=C",
             "--auth-local=trust", "--auth-host=reject", "--no-sync", "--no-instructions"],
            cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False,
            user=uid, group=gid, extra_groups=groups)
        if init.returncode != 0:
            raise PostgresError(f"initdb failed ({init.returncode}): {init.stderr.strip()[-1000:]}")
        settings = {"listen_addresses": "", "unix_socket_directories": str(root), "max_connections": "100",
                    "shared_buffers": "32MB", "fsync": "off", "synchronous_commit": "off",
                    "full_page_writes": "off", "logging_collector": "off", "log_min_messages": "warning"}
        argv = [str(bindir / "postgres"), "-D", str(data), "-p", str(PORT)]
        for k, v in settings.items():
            argv += ["-c", f"{k}={v}"]
        with open(root / "postgres.log", "ab") as log:
            proc = subprocess.Popen(argv, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True, user=uid, group=gid,
                                    extra_groups=groups)
        proc.returncode = 0  # reaped by pid at stop(); keep Popen.__del__ quiet
        rec["pid"] = proc.pid
        _wait_ready(rec)
        _psql(rec, f"CREATE ROLE {ROLE} LOGIN")
        _psql(rec, f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
    except BaseException:
        stop(rec)
        raise
    return rec


def _psql(rec: dict[str, Any], statement: str) -> None:
    import psycopg

    with psycopg.connect(host=rec["dir"], port=rec["port"], user=ADMIN, dbname="postgres", autocommit=True) as c:
        c.execute(statement.encode())


def _wait_ready(rec: dict[str, Any]) -> None:
    import psycopg

    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            psycopg.connect(host=rec["dir"], port=rec["port"], user=ADMIN, dbname="postgres",
                            connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            pass
        if not _ours(rec) or time.monotonic() > deadline:
            raise PostgresError(f"postgres did not start: {_log_tail(rec)}")
        time.sleep(0.05)


def _ours(rec: dict[str, Any]) -> bool:
    """The recorded pid still runs our postmaster (its command line names our data dir)."""
    from l2vpc.agent.drivers.linux.procs import alive

    return alive(rec.get("pid"), str(Path(rec["dir"]) / "data"))


def _log_tail(rec: dict[str, Any]) -> str:
    with contextlib.suppress(OSError):
        return " | ".join((Path(rec["dir"]) / "postgres.log").read_text(errors="replace").strip().splitlines()[-5:])
    return "(no log)"


def stop(rec: dict[str, Any], timeout: float = 15.0) -> None:
    """Fast shutdown (SIGINT: abort sessions, checkpoint, exit), SIGKILL if it hangs; then the
    cluster's directory goes. Gone already is fine."""
    from l2vpc.agent.drivers.linux.procs import exited

    pid = rec.get("pid")
    if pid and _ours(rec):
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                if sig == signal.SIGKILL:  # the backends too: the server runs in a session of its own
                    os.killpg(pid, sig)
                else:
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while not exited(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if exited(pid):
                break
    shutil.rmtree(rec["dir"], ignore_errors=True)
