"""Secrets never leave through the controller (issue 15, item 4; tests/test_secret_sweep.py does
the same for the embedded engine's commands): its replies, the `l2vpc controller` commands' output
and its log at DEBUG hold none of the secrets its objects were given."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from l2vpc.controller import auth
from l2vpc.controller.client import RemoteEngine
from l2vpc.engine.api import Engine
from tests.test_secret_sweep import TOPOLOGY, leaks, run

from ._api_helpers import make_pki, running_controller


@pytest.mark.usefixtures("secret_key")
def test_no_controller_reply_cli_output_nor_log_holds_a_secret(db: Any, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str],
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    pki = make_pki(tmp_path / "pki")
    with running_controller(db.url, pki) as ctl:
        admin_engine = Engine(ctl.store, ctl.agents, secrets=ctl.service.secrets)
        for h in TOPOLOGY["hosts"]:
            admin_engine.register_host(h)
        tenant = auth.create_token(ctl.store, "tenant", tenant="acme")[1]
        admin = auth.create_token(ctl.store, "admin")[1]
        (tmp_path / "admin.token").write_text(admin)
        remote = RemoteEngine(ctl.address, tenant, ca_file=str(pki / "ca.pem"))
        try:
            vpc = remote.create("vpc", TOPOLOGY["vpcs"][0])
            seen: list[Any] = []
            for dx in TOPOLOGY["direct_connects"]:
                seen.append(remote.create("direct_connect", {**{k: v for k, v in dx.items() if k != "vpc"},
                                                             "vpc_id": vpc.id}))
            vpn = {**{k: v for k, v in TOPOLOGY["vpns"][0].items() if k != "vpc"}, "vpc_id": vpc.id}
            seen.append(remote.create("vpn", vpn))
            seen += remote.list("direct_connect") + remote.list("vpn")
            seen += [remote.get((o.__class__.__name__ == "VPN" and "vpn") or "direct_connect", o.id) for o in seen[:3]]
            seen.append(remote.check("vpn", {**vpn, "name": "w"}))
        finally:
            remote.close()
        replies = json.dumps([o.model_dump(mode="json") for o in seen])
        assert leaks(replies) == [], "a controller reply holds a secret"
        cli = [run(capsys, "controller", "token", "list", "--store", db.url),
               run(capsys, "controller", "status", "--endpoint", ctl.address, "--token-file",
                   str(tmp_path / "admin.token"), "--ca", str(pki / "ca.pem")),
               run(capsys, "show", "--json", "--state", str(tmp_path / "empty.db"))]
        assert leaks("\n".join(cli)) == []
    logged = "\n".join(f"{r.name}: {r.getMessage()}" for r in caplog.records)
    assert leaks(logged) == [], "a controller log record holds a secret"
