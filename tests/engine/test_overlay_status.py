"""A VPC is degraded while a host carrying it reports a failing overlay pair towards another of
its hosts: agents (the real Agent on the memory driver, in-process) report what their overlay
watcher sees, the engine records it with `refresh` and shows it on the VPC (status, detail)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from l2vpc.agent.local import LocalAgentPool
from l2vpc.cli import main
from l2vpc.engine.api import Engine
from l2vpc.engine.store import open_store
from l2vpc.hostconfig import HostConfig, Observation, overlay_observation_id


class Watcher:
    """Stands in for the prober (tests/agent/test_overlay_probe.py tests the real one)."""

    def __init__(self) -> None:
        self.seen: tuple[Observation, ...] = ()
        self.configured: HostConfig | None = None

    def configure(self, cfg: HostConfig) -> None:
        self.configured = cfg

    def observations(self) -> tuple[Observation, ...]:
        return self.seen


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Engine, LocalAgentPool]]:
    store = open_store(str(tmp_path / "state.db"))
    pool = LocalAgentPool()
    eng = Engine(store, pool)
    for i in (1, 2, 3):
        eng.register_host({"name": f"host{i}", "region": "r1", "underlay_ip": f"10.9.0.{i}"})
    jumbo = eng.create("vpc", {"name": "jumbo", "region": "r1", "mtu": 9000})
    small = eng.create("vpc", {"name": "small", "region": "r1", "mtu": 1400})
    for vpc in (jumbo, small):
        for i in (1, 2):
            eng.create("attachment", {"vpc_id": vpc.id, "workload": f"{vpc.name}{i}", "host": f"host{i}"})
    eng.create("attachment", {"vpc_id": small.id, "workload": "small3", "host": "host3"})
    _, result = eng.converge()
    assert result.ok
    yield eng, pool
    store.close()


def test_a_small_path_mtu_degrades_only_the_vpcs_whose_frames_it_drops(site: tuple[Engine, LocalAgentPool],
                                                                        capsys: Any) -> None:
    eng, pool = site
    watcher = Watcher()
    pool.clients()["host1"].agent.attach_overlay(watcher)
    assert watcher.configured is not None and watcher.configured.host == "host1"  # told the accepted config
    assert {v.name: v.status for v in eng.list("vpc")} == {"jumbo": "available", "small": "available"}

    watcher.seen = (Observation(overlay_observation_id("10.9.0.2"), "degraded", "path MTU 1500", (), "path_mtu",
                                1500),)
    eng.refresh()
    status = {v.name: v.status for v in eng.list("vpc")}
    assert status == {"jumbo": "degraded", "small": "available"}  # 1400 + 50 fits in 1500
    jumbo = eng.vpc_by_name("jumbo")
    assert jumbo is not None and eng.get("vpc", jumbo.id).status == "degraded"
    [pair] = eng.overlay_degraded()
    assert (pair.vpc_name, pair.host, pair.peer_host, pair.path_mtu, pair.needed_mtu) == \
        ("jumbo", "host1", "host2", 1500, 9050)
    assert eng.status_reason("vpc", jumbo.id) == "path_mtu"
    assert eng.status_detail("vpc", jumbo.id) == \
        "overlay degraded: host1 -> host2: underlay path MTU 1500 < 9050 needed"
    assert eng.plan().is_empty  # observations are no dataplane change
    # `l2vpc show` reads the recorded reports (`--refresh` asks the agents first).
    capsys.readouterr()
    assert main(["show", "--state", str(eng.store.path)]) == 0  # type: ignore[attr-defined]
    out = capsys.readouterr().out
    assert re.search(r"^vpc jumbo .*, degraded\n  degraded: host1 -> host2: underlay path MTU 1500 < 9050 needed$",
                     out, re.M), out
    assert re.search(r"^vpc small .*, available$", out, re.M), out
    assert main(["show", "--state", str(eng.store.path), "--json"]) == 0  # type: ignore[attr-defined]
    data = json.loads(capsys.readouterr().out)
    assert [(o["vpc"], o["host"], o["peer_host"], o["path_mtu"]) for o in data["overlay"]] == \
        [("jumbo", "host1", "host2", 1500)]
    assert {v["name"]: v["status"] for v in data["vpc"]} == {"jumbo": "degraded", "small": "available"}

    # No answer at all: every VPC the pair shares is degraded, host3's are not involved.
    watcher.seen = (Observation(overlay_observation_id("10.9.0.2"), "degraded", "", (), "peer_not_responding"),)
    eng.refresh()
    assert {v.name: v.status for v in eng.list("vpc")} == {"jumbo": "degraded", "small": "degraded"}
    assert {(p.vpc_name, p.reason, p.path_mtu) for p in eng.overlay_degraded()} == {
        ("jumbo", "peer_not_responding", 0), ("small", "peer_not_responding", 0)}

    watcher.seen = ()
    eng.refresh()
    assert {v.name: v.status for v in eng.list("vpc")} == {"jumbo": "available", "small": "available"}
    assert eng.overlay_degraded() == [] and eng.status_detail("vpc", jumbo.id) == ""
