"""A controller and two agents as processes (PostgreSQL, TLS, tokens, memory driver), each
with `--metrics-address` and `--log-format json`: the metrics move with real events (an API
create counts under its method and code, a converge lands in the host's histogram on the
controller and in the agent's, a killed agent flips hosts down), health endpoints answer, and
one change's request id is found in the provider-side client, the controller's log and the
agent's log."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from l2vpc.controller.client import RemoteEngine
from l2vpc.engine.errors import ValidationError
from l2vpc.observability.logs import request_scope
from l2vpc.pki import CertificateAuthority
from l2vpc.testing.ports import free_port
from l2vpc.testing.scrape import get, value, wait_for

from ._remote_helpers import ControllerProcess, RegisteredAgent, make_pki, tokens

pytestmark = pytest.mark.slow


@dataclass
class Site:
    controller: ControllerProcess
    metrics: str  # http://127.0.0.1:port of the controller's listener
    agents: dict[str, RegisteredAgent]
    agent_metrics: dict[str, str]
    ca: CertificateAuthority
    url: str
    root: Path


@pytest.fixture
def site(db: Any, secret_key: str, tmp_path: Path) -> Iterator[Site]:
    ca = make_pki(tmp_path / "pki")
    controller = ControllerProcess(db.url, tmp_path / "pki", tmp_path)
    mport = free_port()
    controller.argv += ["--metrics-address", f"127.0.0.1:{mport}", "--log-format", "json", "--down-after", "3"]
    agents: dict[str, RegisteredAgent] = {}
    agent_metrics: dict[str, str] = {}
    try:
        controller.start()
        for i, name in enumerate(("a1", "a2")):
            agent = RegisteredAgent(name, f"10.77.0.{i + 1}", ca, controller, db.url, tmp_path, tmp_path / f"{name}.sock")
            port = free_port()
            agent.argv += ["--metrics-address", f"127.0.0.1:{port}", "--log-format", "json"]
            agent.start()
            agents[name] = agent
            agent_metrics[name] = f"http://127.0.0.1:{port}"
        yield Site(controller, f"http://127.0.0.1:{mport}", agents, agent_metrics, ca, db.url, tmp_path)
    finally:
        for agent in agents.values():
            agent.kill()
        controller.stop()


def json_lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def test_metrics_health_and_request_ids_follow_real_events(site: Site) -> None:
    base = site.metrics
    assert get(f"{base}/healthz")[0] == 200
    status, text = get(f"{base}/readyz")
    assert status == 200 and "state store reachable" in text
    wait_for(lambda: value(base, "l2vpc_hosts", status="up") == 2, 20, "both agents registered and up")
    assert value(base, "l2vpc_hosts", status="down") == 0
    assert value(base, "l2vpc_leader") == 1 and (value(base, "l2vpc_leader_term") or 0) >= 1
    assert (value(base, "l2vpc_host_heartbeat_age_seconds", host="a1") or 99) < 3
    for name, agent_base in site.agent_metrics.items():
        assert get(f"{agent_base}/healthz")[0] == 200
        status, text = get(f"{agent_base}/readyz")
        assert status == 200 and "no config yet" in text, (name, text)

    creates = value(base, "l2vpc_api_requests_total", method="Create", code="OK") or 0
    engine = RemoteEngine(site.controller.endpoint, tokens(site.url, "tenant", tenant="acme"),
                          ca_file=str(site.ca.ca_path))
    try:
        with request_scope() as rid:
            vpc = engine.create("vpc", {"name": "web", "region": "us-east", "cidr": "10.9.0.0/24"}, adopt=True)
            engine.create("attachment", {"vpc_id": vpc.id, "workload": "vm1", "host": "a1", "ip_mode": "static",
                                         "ip_address": "10.9.0.10/24"}, adopt=True)
            _, result = engine.converge(timeout=30)
        assert result.ok, result
        with pytest.raises(ValidationError):
            engine.create("vpc", {"name": "Not A Name", "region": "us-east"})
    finally:
        engine.close()

    # An API create counts under its method and code; a refused one under its own code.
    assert value(base, "l2vpc_api_requests_total", method="Create", code="OK") == creates + 2
    assert value(base, "l2vpc_api_requests_total", method="Create", code="INVALID_ARGUMENT") == 1
    assert value(base, "l2vpc_api_request_duration_seconds_count", method="Converge", code="OK") == 1
    # The converge landed in the host's histogram (controller) and the agent's own.
    assert (value(base, "l2vpc_host_converge_duration_seconds_count", host="a1") or 0) >= 1
    assert value(base, "l2vpc_host_converge_duration_seconds_count", host="a2") is None  # nothing to push there
    assert (value(base, "l2vpc_converges_total", outcome="ok") or 0) >= 1
    a1 = site.agent_metrics["a1"]
    assert (value(a1, "l2vpc_agent_converge_duration_seconds_count") or 0) >= 1
    assert (value(a1, "l2vpc_agent_converges_total", outcome="converged") or 0) >= 1
    assert (value(a1, "l2vpc_agent_generation", kind="converged") or 0) >= 1
    status, text = get(f"{a1}/readyz")
    assert status == 200 and "converged at least once" in text
    assert value(base, "l2vpc_converge_pending_revisions") == 0

    # One change, one id: the client's request id is in the controller's log (the API calls and
    # the leader's converge) and in the agent's (the converge of the pushed generation).
    controller_lines = [e for e in json_lines(site.controller.log) if rid in e.get("request_id", "")]
    messages = " | ".join(e["message"] for e in controller_lines)
    assert "Create vpc" in messages and "Create attachment" in messages, messages
    assert any(e["message"].startswith("revision ") and "converged" in e["message"] for e in controller_lines), messages
    agent_lines = [e for e in json_lines(site.agents["a1"].log) if rid in e.get("request_id", "")]
    assert any("converged" in e["message"] and e["message"].startswith("generation") for e in agent_lines), \
        site.agents["a1"].log.read_text()[-2000:]
    assert not [e for e in json_lines(site.agents["a2"].log) if rid in e.get("request_id", "")]

    # A host going down flips the gauges; its heartbeat age grows.
    site.agents["a2"].signal(signal.SIGKILL)
    wait_for(lambda: value(base, "l2vpc_hosts", status="down") == 1, 20, "a2 marked down")
    assert value(base, "l2vpc_hosts", status="up") == 1
    assert (value(base, "l2vpc_host_heartbeat_age_seconds", host="a2") or 0) >= 3
    # Scrapes never carry the request ids or tokens.
    metrics_text = get(f"{base}/metrics")[1]
    assert rid not in metrics_text and "l2vpc_" in metrics_text and "Bearer" not in metrics_text
