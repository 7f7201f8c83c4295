"""Shared fixtures of the controller tests: one throwaway PostgreSQL server per session
(tests/engine/pg_server.py) and a fresh schema per test, so controllers under test share a
database exactly as replicated controllers do."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "engine"))
import pg_server

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


class Db:
    """A fresh, empty schema first on the store's search_path; `url` is what a controller gets."""

    def __init__(self, server: pg_server.PgServer, schema: str) -> None:
        self.server, self.schema = server, schema
        self.raw(f"CREATE SCHEMA {schema} AUTHORIZATION {pg_server.ROLE}")
        self.url = f"{server.url(DATABASE)}?options=-csearch_path%3D{schema}"

    def raw(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Read or write behind the controllers' backs, as the superuser."""
        with self.server.admin(DATABASE) as conn:
            conn.execute(f"SET search_path = {self.schema}")
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []


@pytest.fixture
def db(pg: pg_server.PgServer) -> Iterator[Db]:
    d = Db(pg, f"c{next(_schemas)}")
    try:
        yield d
    finally:
        d.raw(f"DROP SCHEMA {d.schema} CASCADE")


@pytest.fixture
def secret_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """L2VPC_SECRET_KEY for controllers (required with PostgreSQL: no key file beside the state)."""
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    monkeypatch.setenv("L2VPC_SECRET_KEY", key)
    return key
