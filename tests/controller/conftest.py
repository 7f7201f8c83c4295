"""Shared fixtures of the controller tests: one throwaway PostgreSQL server per session
(l2vpc.testing.postgres) and a fresh schema per test, so controllers under test share a
database exactly as replicated controllers do."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import count

import pytest

from l2vpc.testing import postgres as pg_server

DATABASE = "l2vpc_controller_tests"
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
    """A fresh, empty schema first on the store's search_path; `url` is what a controller gets,
    `raw()` reads and writes behind the controllers' backs."""
    with pg_server.Schema(pg, DATABASE, f"c{next(_schemas)}") as d:
        yield d


@pytest.fixture
def secret_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """L2VPC_SECRET_KEY for controllers (required with PostgreSQL: no key file beside the state)."""
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    monkeypatch.setenv("L2VPC_SECRET_KEY", key)
    return key
