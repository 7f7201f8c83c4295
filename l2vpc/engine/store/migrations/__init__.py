"""Forward-only schema migrations, one SQL file per version and dialect.

Files are named `<dialect>_<NNNN>_<name>.sql` (e.g. `sqlite_0001_initial.sql`); version N of a
dialect must follow N-1 with no gaps, so every state file climbs the same ladder. A migration
runs inside the store's write transaction together with the row recording it, so it is applied
completely or not at all. Never edit a released migration: add the next one.

These are the engine's tables (versions in `schema_version`). The controller's tables have a
ladder of their own (l2vpc/controller/migrations, versions in `plane_schema_version`), loaded
with the same `load_migrations`. Version 2 here created the controller's tables until they
moved there; it is kept, empty, so that version numbers keep their meaning, and the
controller's version 1 adopts the tables that databases migrated by it hold.

SQLite statements that cannot run inside a transaction (VACUUM, PRAGMA journal_mode) do not
belong here.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from importlib import resources

_FILE_RE = re.compile(r"^(?P<dialect>[a-z]+)_(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        return split_statements(self.sql)


def load_migrations(dialect: str, package: str = __package__) -> tuple[Migration, ...]:
    """The shipped migrations of one dialect in `package`, in order. A gap or duplicate is a
    packaging bug."""
    found: list[Migration] = []
    for entry in resources.files(package).iterdir():
        m = _FILE_RE.match(entry.name)
        if m and m["dialect"] == dialect:
            found.append(Migration(int(m["version"]), m["name"], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda mig: mig.version)
    check_sequence(found)
    return tuple(found)


def check_sequence(migrations: list[Migration] | tuple[Migration, ...]) -> None:
    """Versions must be exactly 1, 2, ..., N."""
    for expected, mig in enumerate(migrations, start=1):
        if mig.version != expected:
            raise RuntimeError(
                f"schema migrations are not numbered 1..N: expected version {expected}, "
                f"found {mig.version} ({mig.name}); please report"
            )


def split_statements(sql: str) -> list[str]:
    """Split a script into single statements.

    sqlite3's executescript() would commit the surrounding transaction first, so migrations are
    run statement by statement; complete_statement() knows about string literals, comments and
    trigger bodies, so a `;` inside them does not split.
    """
    statements: list[str] = []
    start = 0
    for i, ch in enumerate(sql):
        if ch == ";" and sqlite3.complete_statement(sql[start : i + 1]):
            statements.append(sql[start : i + 1].strip())
            start = i + 1
    rest = "\n".join(line for line in sql[start:].splitlines() if not line.strip().startswith("--"))
    if rest.strip():
        raise ValueError(f"SQL script ends with an incomplete statement: {rest.strip()[:60]!r}")
    return statements
