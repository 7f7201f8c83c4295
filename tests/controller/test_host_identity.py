"""What a host is comes from its enrollment, never from its agent (issue 15, item 1).

A real controller on PostgreSQL, real agents (memory driver) served over TLS and heartbeating
with their own agent tokens, as `agent run --controller` wires them. A compute host's agent
restarted as `--role edge --location nyc1 --public-cidr ...` is refused (PERMISSION_DENIED, an
event), the host stays compute, and when the real edge goes silent the tenant's VPN does not
move onto it: its desired.json never holds the pre-shared key.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from l2vpc._proto import controller_pb2 as cpb
from l2vpc.agent.core import STATE_FILE
from l2vpc.agent.daemon import Agent, serve
from l2vpc.agent.drivers.memory import MemoryDriver
from l2vpc.agent.heartbeat import ControllerLink, ControllerSettings, HeartbeatScheduler, TokenSource
from l2vpc.controller.auth import create_token
from l2vpc.controller.enrollment import enroll_hosts
from l2vpc.engine.errors import ValidationError
from l2vpc.engine.store import open_store
from l2vpc.pki import CertificateAuthority

from ._api_helpers import Client, make_pki, rejected, running_controller, snapshot

COMPUTE = {"name": "c1", "region": "r1", "underlay_ip": "10.60.0.1"}
EDGE = {"name": "e1", "region": "r1", "role": "edge", "location": "nyc1", "underlay_ip": "10.60.0.9",
        "public_cidr": "203.0.113.32/28", "public_gateway": "203.0.113.33"}
PSK = "Tenant.secret.psk_42"


def wait_for(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := pred()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)
    return value


def host_rows(db: Any) -> list[Any]:
    return db.raw("SELECT id, generation, data::text FROM objects WHERE kind = 'host' ORDER BY id")


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    return make_pki(tmp_path / "pki")


def test_an_agent_cannot_make_its_host_an_edge(db: Any, secret_key: str, pki: Path, tmp_path: Path) -> None:
    store = open_store(db.url)
    try:
        enroll_hosts(store, [COMPUTE, EDGE])
        tokens = {h: create_token(store, "agent", host=h)[1] for h in ("c1", "e1")}
        tenant, admin = create_token(store, "tenant", tenant="acme")[1], create_token(store, "admin")[1]
    finally:
        store.close()
    ca = CertificateAuthority.load(pki)
    undo: list[Callable[[], None]] = []
    try:
        with running_controller(db.url, pki, heartbeat_interval=0.3, down_after=1.5, resync_interval=30.0) as handle:
            settings = ControllerSettings((handle.address,), pki / "ca.pem")
            source = TokenSource(tokens)
            agents: dict[str, Agent] = {}
            links: dict[str, ControllerLink] = {}
            beats: dict[str, HeartbeatScheduler] = {}
            for doc in (COMPUTE, EDGE):
                name = str(doc["name"])
                agent = agents[name] = Agent(MemoryDriver(name, str(doc["underlay_ip"])), tmp_path / name,
                                             driver_name="memory")
                undo.append(agent.close)
                server, address = serve(agent, "127.0.0.1:0", ca.issue_server(name))
                undo.append(lambda s=server: s.stop(0).wait())
                links[name] = ControllerLink(agent, {**doc, "agent_address": address}, source)
                beats[name] = HeartbeatScheduler(settings, [links[name]])
                beats[name].start()
                undo.append(beats[name].stop)
            client = Client(handle.address, pki / "ca.pem")
            undo.append(client.close)

            def hosts() -> dict[str, dict[str, Any]]:
                reply = client.call("ListHosts", cpb.ListHostsRequest(), tenant)
                return {h["name"]: h for h in (json.loads(x) for x in reply.hosts_json)}

            wait_for(lambda: all(h["status"] == "up" for h in hosts().values()), 20, "both hosts up")
            vpc = client.create(tenant, "vpc", {"name": "apps", "region": "r1", "cidr": "10.9.0.0/24"})
            client.create(tenant, "attachment", {"vpc_id": vpc["id"], "workload": "w1", "host": "c1",
                                                 "ip_mode": "static", "ip_address": "10.9.0.11/24"})
            vpn = client.create(tenant, "vpn", {"name": "office", "vpc_id": vpc["id"], "peer_address": "198.51.100.7",
                                                "pre_shared_key": PSK, "remote_cidrs": ["192.168.50.0/24"]})
            assert vpn["vpn_host"] == "e1"
            done = client.call("Converge", cpb.ConvergeRequest(timeout_seconds=20), tenant, timeout=30)[-1]
            assert done.done and not done.failures, [(f.host, f.error) for f in done.failures]
            enrolled = hosts()["c1"]

            # c1's agent restarted as an edge at nyc1 with a public block: its registration is
            # refused, whatever it claims (another location, the real edge's block or address).
            before = snapshot(db), host_rows(db)
            claims = [
                {"role": "edge", "location": "nyc1", "public_cidr": "198.51.100.0/28"},
                {"role": "edge", "location": "ams1", "public_cidr": "203.0.113.32/28"},
                {"underlay_ip": "10.60.0.9"},
                {"region": "r2"},
            ]
            for claim in claims:
                request = cpb.RegisterRequest(host_json=json.dumps({**COMPUTE, **claim, "agent_address": "x:1"}))
                e = rejected(client.call, "Register", request, tokens["c1"])
                assert e.code() == grpc.StatusCode.PERMISSION_DENIED, (claim, e.code(), e.details())
                assert "enrolled" in e.details() and all(k in e.details() for k in claim), e.details()
            assert (snapshot(db), host_rows(db)) == before  # nothing changed
            status = client.call("Status", cpb.StatusRequest(), admin)
            refusals = [ev for ev in status.recent if ev.host == "c1" and "registration refused" in ev.what]
            assert len(refusals) >= len(claims)

            # The same through a restarted agent's own link, while the honest link keeps c1 up.
            evil = ControllerLink(agents["c1"], {**COMPUTE, "role": "edge", "location": "nyc1",
                                                 "public_cidr": "198.51.100.0/28",
                                                 "agent_address": links["c1"].host_doc["agent_address"]}, source)
            evil_beats = HeartbeatScheduler(settings, [evil])
            evil_beats.start()
            undo.append(evil_beats.stop)
            assert evil_beats.wait(lambda s: s.problems.get("register: PERMISSION_DENIED") == 1, timeout=10)

            # The real edge goes silent: its VPN has nowhere to go, certainly not to c1.
            beats["e1"].stop()
            wait_for(lambda: hosts()["e1"]["status"] == "down", 15, "e1 marked down")
            time.sleep(1.0)  # a few reconcile rounds
            client.call("Converge", cpb.ConvergeRequest(timeout_seconds=20), tenant, timeout=30)
            now = hosts()["c1"]
            assert now == enrolled and now["role"] == "compute" and now["status"] == "up"
            assert not now.get("location") and not now.get("public_cidr")
            assert client.get(tenant, "vpn", vpn["id"])["vpn_host"] == "e1"
            desired = (tmp_path / "c1" / STATE_FILE).read_text()
            assert "w1" in desired or vpc["id"] in desired  # c1 was converged, with its own config only
            assert PSK not in desired
    finally:
        for u in reversed(undo):
            u()


def test_enrollment_is_the_operators_word(db: Any, secret_key: str, pki: Path) -> None:
    store = open_store(db.url)
    try:
        enroll_hosts(store, [COMPUTE, EDGE])
        agent = create_token(store, "agent", host="n1")[1]
        admin = create_token(store, "admin")[1]
        # Another host may not take an enrolled host's underlay address or overlap its public block.
        for doc, path in (({"name": "n1", "region": "r1", "underlay_ip": "10.60.0.9"}, "hosts[0].underlay_ip"),
                          ({**EDGE, "name": "e2", "underlay_ip": "10.60.0.10", "public_cidr": "203.0.113.40/29"},
                           "hosts[0].public_cidr"),
                          ({**COMPUTE, "name": "n1", "agent_address": "10.60.0.2:7600"}, "hosts[0]")):
            with pytest.raises(ValidationError) as info:
                enroll_hosts(store, [doc])
            assert info.value.problems[0][0] == path, info.value
    finally:
        store.close()
    with running_controller(db.url, pki) as handle:
        client = Client(handle.address, pki / "ca.pem")
        try:
            doc = {"name": "n1", "region": "r1", "underlay_ip": "10.60.0.2", "agent_address": "10.60.0.2:7600"}
            request = cpb.RegisterRequest(host_json=json.dumps(doc))
            e = rejected(client.call, "Register", request, agent)  # nobody enrolled n1
            assert e.code() == grpc.StatusCode.PERMISSION_DENIED and "not enrolled" in e.details()
            assert db.raw("SELECT id FROM objects WHERE kind = 'host' ORDER BY id") == [("c1",), ("e1",)]
            # Once the operator enrolls it, the same registration is admitted and brings it up.
            store = open_store(db.url)
            try:
                (n1,) = enroll_hosts(store, [{k: v for k, v in doc.items() if k != "agent_address"}])
            finally:
                store.close()
            assert n1.status == "down" and n1.agent_address is None
            client.call("Register", request, agent)
            (row,) = db.raw("SELECT data::text FROM objects WHERE kind = 'host' AND id = 'n1'")
            data = json.loads(row[0])
            assert (data["status"], data["agent_address"], data["region"]) == ("up", "10.60.0.2:7600", "r1")
            # The operator (an admin token) may still change what a host is.
            client.call("Register", cpb.RegisterRequest(host_json=json.dumps({**doc, "region": "r2"})), admin)
            (row,) = db.raw("SELECT data::text FROM objects WHERE kind = 'host' AND id = 'n1'")
            assert json.loads(row[0])["region"] == "r2"
        finally:
            client.close()
