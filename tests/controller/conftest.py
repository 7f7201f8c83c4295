"""Shared fixtures of the controller tests. PostgreSQL (`pg`, `db`: a fresh schema per test, so
controllers under test share a database exactly as replicated controllers do) comes from
tests/conftest.py."""

from __future__ import annotations

import pytest


@pytest.fixture
def secret_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """L2VPC_SECRET_KEY for controllers (required with PostgreSQL: no key file beside the state)."""
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    monkeypatch.setenv("L2VPC_SECRET_KEY", key)
    return key
