"""Shared test setup.

- Root-only tests are skipped (with a reason) when not running as root.
- Providers that Terraform starts during the tests keep their warm-start zygotes in a runtime
  directory of this test session, and those zygotes are stopped when the session ends.
- The default state (`$L2VPC_HOME`) is a directory of this test session, never the machine's.
- `pg`: one throwaway PostgreSQL server per session (l2vpc.testing.postgres), started by the
  first test that needs it; `db`: a fresh schema of it per test (skipped where no server runs).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from itertools import count
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from l2vpc.testing.postgres import PgServer, Schema

PG_DATABASE = "l2vpc_tests"
_schemas = count()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (network namespaces, daemons); run ./dev test as root")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def provider_runtime_dir() -> Iterator[str]:
    from l2vpc.provider.warm.control import stop_zygotes
    from l2vpc.provider.warm.runtime_dir import RUNTIME_DIR_ENV

    with tempfile.TemporaryDirectory(prefix="l2vpc-test-runtime-") as directory:
        os.chmod(directory, 0o700)
        previous = os.environ.get(RUNTIME_DIR_ENV)
        os.environ[RUNTIME_DIR_ENV] = directory
        try:
            yield directory
        finally:
            stop_zygotes(directory)
            if previous is None:
                os.environ.pop(RUNTIME_DIR_ENV, None)
            else:
                os.environ[RUNTIME_DIR_ENV] = previous


@pytest.fixture(scope="session", autouse=True)
def l2vpc_home() -> Iterator[str]:
    from l2vpc.paths import HOME_ENV

    with tempfile.TemporaryDirectory(prefix="l2vpc-test-home-") as directory:
        previous = os.environ.get(HOME_ENV)
        os.environ[HOME_ENV] = directory
        try:
            yield directory
        finally:
            if previous is None:
                os.environ.pop(HOME_ENV, None)
            else:
                os.environ[HOME_ENV] = previous


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    from l2vpc.testing import postgres

    reason = postgres.missing_reason()
    if reason is not None:
        pytest.skip(reason)
    with postgres.running_server() as server:
        server.create_database(PG_DATABASE)
        yield server


@pytest.fixture
def db(pg: PgServer) -> Iterator[Schema]:
    """A fresh, empty schema first on the search_path of `db.url`; `db.raw()` reads and writes
    behind the back of stores and controllers."""
    from l2vpc.testing.postgres import Schema

    with Schema(pg, PG_DATABASE, f"s{next(_schemas)}") as d:
        yield d
