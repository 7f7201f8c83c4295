"""A controller's /readyz follows its store for real: on its own throwaway PostgreSQL, ready
while the server runs, `503 ... state store unreachable` within seconds of the server being
stopped (pg_ctl, as an operator would), while /healthz stays 200."""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path
from typing import Any

import pytest

from l2vpc.testing import postgres
from l2vpc.testing.scrape import get, wait_for

from ._api_helpers import make_pki, running_controller

pytestmark = [pytest.mark.slow, pytest.mark.skipif(postgres.missing_reason() is not None,
                                                      reason=str(postgres.missing_reason()))]


def pg_ctl(server: postgres.PgServer, *args: str) -> None:
    bindir = postgres.find_bin_dir()
    assert bindir is not None
    user: Any = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    subprocess.run([str(bindir / "pg_ctl"), "-D", str(server.root / "data"), "-w", "-t", "60", *args],
                   check=True, capture_output=True, timeout=90, cwd=server.root,
                   env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": str(server.root)},
                   user=user.pw_uid if user else None, group=user.pw_gid if user else None,
                   extra_groups=[] if user else None)


def refused(url: str) -> tuple[int, str] | None:
    got = get(url)
    return got if got[0] == 503 else None


def test_readyz_fails_while_postgresql_is_stopped(tmp_path: Path, secret_key: str) -> None:
    with postgres.running_server() as server:
        url = server.create_database("ready")
        with running_controller(url, make_pki(tmp_path / "pki"), metrics_address="127.0.0.1:0") as ctl:
            assert ctl.listener is not None
            base = f"http://{ctl.listener.address}"
            assert get(f"{base}/readyz") == (200, "ready: state store reachable\n")
            pg_ctl(server, "stop", "-m", "fast")  # running_server's own stop then finds it gone
            _, text = wait_for(lambda: refused(f"{base}/readyz"), 15, "readyz to fail")
            assert text.startswith("not ready: state store unreachable"), text
            assert get(f"{base}/healthz") == (200, "ok\n")  # alive: it reconnects when the store is back
