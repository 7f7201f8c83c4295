"""`l2vpc controller ...`: pki init, token create/list/revoke on PostgreSQL, and `run` as a real
process (ready line, TLS, tokens, graceful SIGTERM) whose output never shows a token or the
database password."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest

from l2vpc._proto import controller_pb2 as pb
from l2vpc.cli import main
from l2vpc.controller import auth
from l2vpc.controller.cli import parse_duration
from l2vpc.engine.errors import ValidationError
from l2vpc.engine.store import open_store
from l2vpc.testing.daemons import signal_a_thread

from ._api_helpers import Client, rejected

CLI = [sys.executable, "-c", "import sys; from l2vpc.cli import main; sys.exit(main())"]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_durations() -> None:
    assert parse_duration("90") == 90 and parse_duration("30m") == 1800 and parse_duration("24h") == 86400
    assert parse_duration("1h30m") == 5400 and parse_duration("2w") == 14 * 86400 and parse_duration("0") == 0
    for bad in ("", "h", "10x", "1h 30m", "-5s"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_token_commands(db: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, out, err = run_cli(capsys, "controller", "token", "create", "--store", db.url, "--role", "tenant",
                           "--tenant", "acme", "--ttl", "24h")
    assert rc == 0, err
    text = out.strip()
    assert out.count("\n") == 1 and auth.parse_token(text) is not None  # stdout: the token alone
    token_id = auth.parse_token(text)[0]  # type: ignore[index]
    assert token_id in err and "only this once" in err and text not in err

    path = tmp_path / "agent.token"
    rc, out, err = run_cli(capsys, "controller", "token", "create", "--store", db.url, "--role", "agent",
                           "--host", "h1", "--output", str(path), "--no-expiry")
    assert rc == 0 and out == "" and "never expires" in err
    assert auth.parse_token(path.read_text().strip()) is not None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    rc, out, err = run_cli(capsys, "controller", "token", "create", "--store", db.url, "--role", "tenant",
                           "--ttl", "1h")
    assert rc == 1 and "--tenant: required for role tenant" in err and out == ""
    # A lifetime of 0 or less is refused, naming --ttl and what is allowed; never-expiring
    # tokens only by asking for them.
    store = open_store(db.url)
    count = len(auth.list_tokens(store))
    for flags, words in ((["--ttl", "0s"], "--ttl: 0 s is not allowed: give more than 0"),
                         (["--ttl", "0"], "--ttl: 0 s is not allowed"),
                         (["--ttl=-5s"], "--ttl: -5 s is not allowed"),
                         (["--ttl", "11000d"], "at most 10 years"),
                         ([], "--ttl: required"),
                         (["--ttl", "1h", "--no-expiry"], "--ttl, --no-expiry: give one of them")):
        rc, out, err = run_cli(capsys, "controller", "token", "create", "--store", db.url, "--role", "tenant",
                               "--tenant", "acme", *flags)
        assert rc == 1 and words in err and out == "", (flags, err)
        assert "--no-expiry" in err or "at most" in err
    try:
        assert len(auth.list_tokens(store)) == count
        for ttl in (0, -1.0, float("inf")):
            with pytest.raises(ValidationError, match="ttl: must be more than 0 seconds"):
                auth.create_token(store, "admin", ttl=ttl)
        assert len(auth.list_tokens(store)) == count
    finally:
        store.close()

    rc, out, _ = run_cli(capsys, "controller", "token", "revoke", "--store", db.url, token_id)
    assert rc == 0
    rc, out, _ = run_cli(capsys, "controller", "token", "list", "--store", db.url, "--json")
    listed = {t["id"]: t for t in json.loads(out)}
    assert listed[token_id]["state"] == "revoked" and listed[token_id]["tenant"] == "acme"
    assert [t["role"] for t in listed.values()].count("agent") == 1
    assert text.split("_", 2)[2] not in out and "digest" not in out
    rc, out, _ = run_cli(capsys, "controller", "token", "list", "--store", db.url)
    assert token_id in out and "revoked" in out and "host h1" in out

    rc, _, err = run_cli(capsys, "controller", "token", "revoke", "--store", db.url, "tok-000000000000")
    assert rc == 1 and "not found" in err
    # The password in the URL never shows, not even in errors.
    bad_url = db.url.replace(f"/{db.url.rsplit('/', 1)[1]}", "/no_such_database")
    rc, _, err = run_cli(capsys, "controller", "token", "list", "--store", bad_url)
    assert rc == 1 and db.server.password not in err


def test_run_serves_until_sigterm(db: Any, secret_key: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    pki = tmp_path / "pki"
    rc, out, err = run_cli(capsys, "controller", "pki", "init", str(pki), "--name", "ctl.example.net")
    assert rc == 0, err
    for name in ("ca.pem", "controller.pem", "controller.key", "engine.pem", "engine.key"):
        assert (pki / name).is_file()
    assert stat.S_IMODE((pki / "controller.key").stat().st_mode) == 0o600

    store = open_store(db.url)
    try:
        tenant = auth.create_token(store, "tenant", tenant="acme")[1]
        admin = auth.create_token(store, "admin")[1]
    finally:
        store.close()
    ready = tmp_path / "ready"
    env = {**os.environ, "L2VPC_STORE": db.url}  # the URL carries a password: not on the command line
    proc = subprocess.Popen(
        [*CLI, "controller", "run", "--listen", "127.0.0.1:0", "--pki", str(pki), "--id", "ctl-a",
         "--log-level", "debug", "--ready-file", str(ready)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("controller ctl-a listening on 127.0.0.1:"), line + (proc.stderr.read()
                                                                                   if proc.poll() else "")
        address = line.split()[-1]
        assert ready.read_text().strip() == address
        client = Client(address, pki / "ca.pem")
        try:
            vpc = client.create(tenant, "vpc", {"name": "web", "region": "r1"})
            assert client.get(tenant, "vpc", vpc["id"])["name"] == "web"
            e = rejected(client.list, tenant[:-3] + "abc", "vpc")
            assert e.code() == grpc.StatusCode.UNAUTHENTICATED
            status = client.call("Status", pb.StatusRequest(), admin)
            assert status.controller == "ctl-a"
        finally:
            client.close()
        admin_file = tmp_path / "admin.token"
        admin_file.write_text(admin + "\n")
        admin_file.chmod(0o600)
        rc, out, err = run_cli(capsys, "controller", "status", "--endpoint", address, "--token-file",
                               str(admin_file), "--ca", str(pki / "ca.pem"))
        assert rc == 0, err
        assert out.startswith("controller ctl-a; leader ") and "revisions: desired " in out and "hosts: 0 up, 0 down" in out
        admin_file.write_text(tenant)
        rc, out, err = run_cli(capsys, "controller", "status", "--endpoint", address, "--token-file",
                               str(admin_file), "--ca", str(pki / "ca.pem"))
        assert rc == 1 and "PERMISSION_DENIED" in err and tenant not in err
        # To one of gRPC's threads, as the kernel may deliver it: the main thread still acts on it.
        signal_a_thread(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "received SIGTERM, stopping" in err and "controller ctl-a stopped" in err
    assert not ready.exists()
    for secret in (tenant.split("_", 2)[2], admin.split("_", 2)[2], db.server.password, secret_key):
        assert secret not in out and secret not in err


def test_host_enroll(db: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    def hosts() -> dict[str, dict[str, Any]]:
        return {i: json.loads(d) for i, d in db.raw("SELECT id, data::text FROM objects WHERE kind = 'host'")}

    token_file = tmp_path / "host1.token"
    rc, out, err = run_cli(capsys, "controller", "host", "enroll", "host1", "--store", db.url, "--region", "us-east",
                           "--underlay-ip", "10.0.0.11", "--token-output", str(token_file), "--no-expiry")
    assert rc == 0 and out == "", err
    assert "enrolled host1: compute in us-east, underlay 10.0.0.11" in err and "never expires" in err
    assert hosts()["host1"]["status"] == "down" and "agent_address" not in {k for k, v in hosts()["host1"].items() if v}
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token_id = auth.parse_token(token_file.read_text().strip())[0]  # type: ignore[index]
    store = open_store(db.url)
    try:
        (info,) = [t for t in auth.list_tokens(store) if t.id == token_id]
    finally:
        store.close()
    assert (info.role, info.host, info.expires) == ("agent", "host1", 0)

    # A fleet or a lab: the hosts file, HOST TOKEN lines out (as `agent fleet` and `lab up` read).
    rc, out, err = run_cli(capsys, "lab", "hosts", "--hosts", "1", "--edges", "1")
    assert rc == 0, err
    lab = json.loads(out)
    assert [h["name"] for h in lab] == ["host1", "edge1"] and lab[1]["public_cidr"]
    lab[0] |= {"name": "host2", "underlay_ip": "10.0.0.12", "agent_address": "10.0.0.12:7600"}  # address: dropped
    hosts_file, tokens_file = tmp_path / "hosts.json", tmp_path / "tokens"
    hosts_file.write_text(json.dumps(lab))
    rc, out, err = run_cli(capsys, "controller", "host", "enroll", "--store", db.url, "--hosts", str(hosts_file),
                           "--token-output", str(tokens_file), "--ttl", "7d")
    assert rc == 0, err
    assert [line.split()[0] for line in tokens_file.read_text().splitlines()] == ["host2", "edge1"]
    assert hosts()["edge1"]["role"] == "edge" and hosts()["edge1"]["location"] == "nyc1"
    assert hosts()["host2"].get("agent_address") is None

    before = hosts()
    for argv, words in (
        (["host3", "--region", "us-east"], "--underlay-ip: required"),
        (["host3", "--region", "us-east", "--underlay-ip", "10.0.0.11"], "--underlay-ip: 10.0.0.11 is already the "
                                                                          "underlay address of host host1"),
        (["host3", "--region", "us-east", "--underlay-ip", "10.0.0.13", "--role", "edge"], "--location"),
        (["host3", "--region", "us-east", "--underlay-ip", "10.0.0.13", "--public-cidr", "198.51.100.0/28"],
         "only edge hosts give out public addresses"),
        (["host3", "--region", "us-east", "--underlay-ip", "10.0.0.13", "--token-output", "t", "--ttl", "0s"],
         "--ttl: 0 s is not allowed"),
        (["host3", "--region", "us-east", "--underlay-ip", "10.0.0.13", "--ttl", "1h"], "only with --token-output"),
        (["--hosts", str(hosts_file), "--region", "us-east"], "--region: not with --hosts"),
    ):
        rc, out, err = run_cli(capsys, "controller", "host", "enroll", "--store", db.url, *argv)
        assert rc == 1 and words in err, (argv, err)
    assert hosts() == before and not (tmp_path / "t").exists()


def test_status_flags_go_together_or_come_from_the_local_control_plane(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("L2VPC_HOME", str(tmp_path))
    monkeypatch.delenv("L2VPC_STATE_PATH", raising=False)
    rc, _, err = run_cli(capsys, "controller", "status", "--endpoint", "127.0.0.1:7700")
    assert rc == 1 and "--endpoint given without --ca, --token-file" in err, err
    rc, _, err = run_cli(capsys, "controller", "status")
    assert rc == 1 and "no local control plane runs (`l2vpc lab up` starts one)" in err, err
    (tmp_path / "control-plane.json").write_text("{}")
    rc, _, err = run_cli(capsys, "controller", "status")
    assert rc == 1 and "control-plane.json: not a record of a local control plane" in err, err
