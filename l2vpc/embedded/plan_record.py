"""The record of a no-op plan: `l2vpc plan -f` answers "no changes" from a fingerprint when
nothing it would read has changed since a plan, or an apply, found nothing to do.

A plan reads the topology file, the state's objects and host reports, the secret key (through
the digests of secrets) and runs this code; the same inputs give the same plan. The fingerprint
hashes all of them (the file's bytes, every object row and report row as stored, a keyed
digest standing for the key, the code's version and its files' sizes and times). A plan that
finds nothing to do records the fingerprint of the snapshot it planned from; `apply` records
the state it leaves when it has checked it is a no-op itself: every host it pushed runs its
desired config, no learned route changed, and the file is the one it synced (a sync of the
same file again writes nothing). The record holds only the hash, beside the state (0600).

Anything else that changes the state (another apply, an agent's report, a Pod's attachment,
a new key, an edit of the code) changes the fingerprint, and the plan is computed in full.
Measured on bench/bench_write_path.py's 1,000-host file: a no-op re-plan ~1.1 s of CPU in
full, ~0.3 s from the record (interpreter and imports included).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from l2vpc import __version__

RECORD_SUFFIX = ".noop-plan"
KEY_PURPOSE = "l2vpc plan record"  # the keyed digest of this text stands for the key

ObjectRow = tuple[str, str, str, int, str]  # kind, id, tenant, generation, document text
ReportRow = tuple[str, int, str]  # host, generation, config text

OBJECT_ROWS = "SELECT kind, id, tenant, generation, data FROM objects"
REPORT_ROWS = "SELECT host, generation, config FROM host_reports"


def _code_identity() -> bytes:
    """The version and the size and modification time of every module that takes part in a
    plan: a changed file (a development tree, an upgrade) is a different plan function."""
    root = Path(__file__).resolve().parents[1]
    parts = [__version__]
    for sub in ("engine", "hostconfig", "embedded"):
        for path in sorted((root / sub).rglob("*.py")):
            st = path.stat()
            parts.append(f"{path.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}")
    parts.append(f"cli.py:{(root / 'cli.py').stat().st_mtime_ns}")
    return "\n".join(parts).encode()


def fingerprint(file_bytes: bytes, key_id: str, objects: Iterable[ObjectRow], reports: Iterable[ReportRow]) -> str:
    h = hashlib.sha256(b"l2vpc no-op plan 1\0")
    h.update(hashlib.sha256(_code_identity()).digest())
    h.update(hashlib.sha256(file_bytes).digest())
    h.update(key_id.encode() + b"\0")
    # Lengths before values: no two different row lists hash alike.
    for kind, ident, tenant, generation, text in sorted(objects):
        for part in (kind, ident, tenant, str(generation), text):
            b = part.encode()
            h.update(b"%d:" % len(b) + b)
    h.update(b"\0reports\0")
    for host, generation, text in sorted(reports):
        for part in (host, str(generation), text):
            b = part.encode()
            h.update(b"%d:" % len(b) + b)
    return h.hexdigest()


def read_rows(state: str) -> tuple[list[ObjectRow], list[ReportRow]]:
    """Every object row and report row of a state file, from one read snapshot."""
    conn = sqlite3.connect(f"file:{state}?mode=ro", uri=True)
    try:
        conn.execute("BEGIN")
        objects = conn.execute(OBJECT_ROWS).fetchall()
        reports = conn.execute(REPORT_ROWS).fetchall()
        conn.execute("COMMIT")
        return objects, reports
    finally:
        conn.close()


def _path(state: str) -> str:
    return state + RECORD_SUFFIX


def recorded(state: str) -> str | None:
    try:
        with open(_path(state), encoding="ascii") as f:
            return f.read().strip() or None
    except (OSError, ValueError):
        return None


def record(state: str, print_: str) -> None:
    """Keep `print_` as the state's no-op fingerprint (atomically; a failure to write only
    costs the next plan its shortcut)."""
    tmp = f"{_path(state)}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(print_ + "\n")
        os.replace(tmp, _path(state))
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def forget(state: str) -> None:
    try:
        os.unlink(_path(state))
    except OSError:
        pass
