"""The provider in remote mode under real Terraform: a controller process on a throwaway
PostgreSQL, three agent processes (memory driver) that registered with it over gRPC.

- The quickstart example, unchanged, applied with L2VPC_ENDPOINT/L2VPC_TOKEN/L2VPC_CA_FILE:
  hosts run it, second plan empty, import, data sources, destroy.
- Another tenant can neither see nor import the first tenant's ids ("not found").
- Two applies at once in two working directories naming the same VPC: one fails cleanly with
  the conflict on `name`, the other succeeds; the store holds each object once.
- The controller SIGKILLed mid-apply and restarted: the apply rides it out or fails cleanly,
  the next one converges, nothing is duplicated.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from l2vpc.engine.agent_client import engine_tls
from l2vpc.testing.terraform import Result

from ._remote_helpers import (
    ControllerProcess,
    RegisteredAgent,
    RemoteWorkspace,
    make_pki,
    tenant_objects,
    tokens,
    use_terraform_env,
)

pytestmark = pytest.mark.terraform

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "terraform" / "quickstart" / "main.tf"


@dataclass
class Cluster:
    db: Any
    root: Path
    ca_file: Path
    controller: ControllerProcess
    agents: list[RegisteredAgent]

    def workspace(self, name: str, tenant: str = "acme") -> RemoteWorkspace:
        return RemoteWorkspace(self.root / name, self.controller.endpoint, tokens(self.db.url, "tenant", tenant=tenant),
                               self.ca_file)

    def reports(self) -> dict[str, set[str]]:
        """Port ids each host reports running (what the controller recorded from the agents)."""
        rows = self.db.raw("SELECT host, config::text FROM host_reports")
        return {h: {p["id"] for p in json.loads(c).get("ports", ())} for h, c in rows}


@pytest.fixture
def cluster(db: Any, secret_key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    use_terraform_env(tmp_path, monkeypatch)
    ca = make_pki(tmp_path / "pki")
    controller = ControllerProcess(db.url, tmp_path / "pki", tmp_path)
    sockdir = Path(tempfile.mkdtemp(prefix="l2r", dir="/tmp"))  # unix socket paths must stay short
    agents: list[RegisteredAgent] = []
    try:
        controller.start()
        (tmp_path / "agents").mkdir()
        for i in (1, 2, 3):
            agent = RegisteredAgent(f"host{i}", f"10.200.0.{i}", ca, controller, db.url, tmp_path / "agents",
                                    sockdir / f"host{i}.sock")
            agents.append(agent)
            agent.start()
        deadline = time.monotonic() + 30
        registered = ("SELECT id FROM objects WHERE kind = 'host' AND data->>'status' = 'up' "
                      "AND data->>'agent_address' IS NOT NULL")  # enrolled, and then registered by its agent
        while sorted(r[0] for r in db.raw(registered)) != ["host1", "host2", "host3"]:
            assert time.monotonic() < deadline, "agents did not register: " + "".join(
                a.log.read_text() for a in agents)
            time.sleep(0.1)
        for agent in agents:
            agent.wait_ready(engine_tls(tmp_path / "pki"))
        yield Cluster(db, tmp_path, ca.ca_path, controller, agents)
    finally:
        for agent in agents:
            agent.kill()
        controller.stop()
        shutil.rmtree(sockdir, ignore_errors=True)


def test_quickstart_through_a_controller_and_tenants_apart(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    acme = cluster.workspace("acme")
    # The example as it is: its provider block names only the region; the connection comes
    # from the environment.
    (acme.dir / "main.tf").write_text(QUICKSTART.read_text())
    monkeypatch.setenv("L2VPC_ENDPOINT", acme.endpoint)
    monkeypatch.setenv("L2VPC_TOKEN", acme.token)
    monkeypatch.setenv("L2VPC_CA_FILE", str(acme.ca_file))
    acme.apply()
    state = acme.resources()
    vpc = state["l2vpc_vpc.main"]
    atts = {k: a for k, a in state.items() if k.startswith("l2vpc_attachment")}
    # The quickstart's Pod waits for its Pod (no runtime here): placed, reported, pending.
    assert atts.pop("l2vpc_attachment.pod")["status"] == "pending"
    assert len(atts) == 3 and {a["status"] for a in atts.values()} == {"active"}
    assert vpc["dhcp"]["server_ip"] == "10.50.0.254"
    reports = cluster.reports()
    assert set().union(*reports.values()) == {a["id"] for a in atts.values()} | {state["l2vpc_attachment.pod"]["id"]}
    for a in atts.values():
        assert a["id"] in reports[a["host"]]
    acme.assert_plan_empty()

    # Import: forget one attachment, import it back by id; nothing to change afterwards.
    db1 = atts['l2vpc_attachment.workload["db1"]']["id"]
    acme.ok("state", "rm", 'l2vpc_attachment.workload["db1"]')
    acme.ok("import", "-input=false", 'l2vpc_attachment.workload["db1"]', db1)
    acme.assert_plan_empty()

    # Another tenant, configured in its provider block (the environment is acme's): acme's VPC
    # is not there for it, by id or by name, and it cannot import it.
    before = tenant_objects(cluster.db)
    globex = cluster.workspace("globex", tenant="globex")
    globex.write(f"""
import {{
  to = l2vpc_vpc.stolen
  id = "{vpc['id']}"
}}

resource "l2vpc_vpc" "stolen" {{
  name = "quickstart"
}}
""")
    failed = globex.fails("plan", "-input=false")
    assert "Cannot import non-existent remote object" in failed.text, failed
    globex.write('data "l2vpc_vpc" "peek" {\n  name = "quickstart"\n}\n')
    failed = globex.fails("plan", "-input=false")
    assert "VPC not found" in failed.text and "no VPC with name 'quickstart'" in failed.text, failed
    globex.write(f'data "l2vpc_vpc" "peek" {{\n  id = "{vpc["id"]}"\n}}\n')
    failed = globex.fails("plan", "-input=false")
    assert f"no VPC with id '{vpc['id']}'" in failed.text, failed
    # Its own VPC of the same name is fine, and a hosts lookup works remotely too.
    globex.write('resource "l2vpc_vpc" "own" {\n  name = "quickstart"\n}\n'
                 'data "l2vpc_hosts" "all" {}\noutput "hosts" {\n  value = data.l2vpc_hosts.all.hosts[*].name\n}\n')
    applied = globex.apply()
    assert 'hosts = tolist([ "host1", "host2", "host3", ])' in applied.text, applied
    assert sorted(tenant_objects(cluster.db)) == sorted([*before, ("vpc", "globex", "quickstart")])

    acme.ok("destroy", "-input=false", "-auto-approve")
    logs = cluster.controller.log.read_text() + "".join(a.log.read_text() for a in cluster.agents)
    assert acme.token not in logs and globex.token not in logs
    assert tenant_objects(cluster.db) == [("vpc", "globex", "quickstart")]
    assert set().union(*cluster.reports().values()) == set()  # the hosts run nothing of acme's


def two_dirs(cluster: Cluster) -> tuple[RemoteWorkspace, RemoteWorkspace]:
    dirs = []
    for i, name in enumerate(("team-a", "team-b")):
        ws = cluster.workspace(name)
        ws.write(f"""
resource "l2vpc_vpc" "shared" {{
  name = "shared"
  cidr = "10.7{i}.0.0/24"
}}

resource "l2vpc_attachment" "vm" {{
  vpc_id   = l2vpc_vpc.shared.id
  workload = "{name}-vm"
}}
""")
        ws.ok("init", "-input=false")
        dirs.append(ws)
    return dirs[0], dirs[1]


def test_two_applies_at_once_one_fails_cleanly_on_the_name(cluster: Cluster) -> None:
    a, b = two_dirs(cluster)
    results: dict[str, Result] = {}
    threads = [threading.Thread(target=lambda w=w: results.__setitem__(w.dir.name, w.tf(
        "apply", "-input=false", "-auto-approve"))) for w in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(r.rc for r in results.values()) == [0, 1], "\n".join(map(str, results.values()))
    loser = next(name for name, r in results.items() if r.rc == 1)
    winner = next(name for name, r in results.items() if r.rc == 0)
    text = results[loser].text
    assert "on main.tf line" in text and 'name = "shared"' in text, text  # points at the attribute
    assert "name: a vpc named 'shared' already exists" in text, text
    objects = tenant_objects(cluster.db)
    assert sorted(objects) == [("attachment", "acme", f"{winner}-vm"), ("vpc", "acme", "shared")]
    allocations = cluster.db.raw("SELECT pool, value, count(*) FROM allocations GROUP BY pool, value HAVING count(*) > 1")
    assert allocations == []
    loser_ws = a if a.dir.name == loser else b
    if (loser_ws.dir / "terraform.tfstate").exists():
        assert loser_ws.resources() == {}
    # The loser's next plan still wants its VPC (nothing of the winner's leaked into its state),
    # and says at plan that the name is taken.
    planned = loser_ws.tf("plan", "-input=false", "-detailed-exitcode")
    assert planned.rc == 1 and 'resource "l2vpc_vpc" "shared"' in planned.text, planned
    assert "name: a vpc named 'shared' already exists" in planned.text, planned


MANY = """
resource "l2vpc_vpc" "v" {
  count = 6
  name  = "many-${count.index}"
  cidr  = "10.${count.index + 100}.0.0/24"
}

resource "l2vpc_attachment" "w" {
  count      = 12
  vpc_id     = l2vpc_vpc.v[count.index % 6].id
  workload   = "many-vm${count.index}"
  ip_mode    = "static"
  ip_address = "10.${count.index % 6 + 100}.0.${count.index + 10}/24"
}
"""


def test_controller_killed_mid_apply_and_restarted(cluster: Cluster) -> None:
    ws = cluster.workspace("many")
    ws.write(MANY)
    ws.ok("init", "-input=false")
    result: list[Result] = []
    apply = threading.Thread(target=lambda: result.append(ws.tf("apply", "-input=false", "-auto-approve")))
    apply.start()
    try:
        deadline = time.monotonic() + 60
        while len(tenant_objects(cluster.db)) < 6:
            assert apply.is_alive() and time.monotonic() < deadline, result
            time.sleep(0.02)
        cluster.controller.kill()
        killed_with = len(tenant_objects(cluster.db))
        time.sleep(0.5)
        cluster.controller.start()
    finally:
        apply.join(180)
    assert killed_with < 18, "the apply finished before the controller was killed"
    first = result[0]
    # Reads and adopting creates ride out the restart; if the apply failed, it says why.
    if first.rc != 0:
        assert "unavailable" in first.text or "Timed out" in first.text, first

    ws.apply()
    objects = tenant_objects(cluster.db)
    names = Counter(name for _, _, name in objects)
    assert max(names.values()) == 1, names
    assert sorted(names) == sorted([f"many-{i}" for i in range(6)] + [f"many-vm{i}" for i in range(12)])
    state = ws.resources()
    assert len(state) == 18
    running = set().union(*cluster.reports().values())
    assert running == {a["id"] for k, a in state.items() if k.startswith("l2vpc_attachment")}
    ws.assert_plan_empty()
