"""PostgreSQL for the store tests: one throwaway server per session (l2vpc.testing.postgres)
and a fresh schema per test; tests that ask for `db` are skipped where no server can run."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import count

import pytest

from l2vpc.testing import postgres as pg_server

DATABASE = "l2vpc_tests"
_schemas = count()


@pytest.fixture(scope="session")
def pg() -> Iterator[pg_server.PgServer]:
    reason = pg_server.missing_reason()
    if reason is not None:
        pytest.skip(reason)
    with pg_server.running_server() as server:
        server.create_database(DATABASE)
        yield server


@pytest.fixture
def db(pg: pg_server.PgServer) -> Iterator[pg_server.Schema]:
    with pg_server.Schema(pg, DATABASE, f"t{next(_schemas)}") as d:
        yield d
