"""Shared test setup: root-only tests are skipped (with a reason) when not running as root."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (network namespaces, daemons); run ./dev test as root")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)
