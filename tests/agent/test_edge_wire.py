"""Edge routers and VPN gateways over the agent API: secrets go in, never come back out."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from l2vpc._proto import agent_pb2 as pb
from l2vpc.agentapi import wire
from l2vpc.hostconfig import PEER_REFUSED, BgpPeer, EdgeRouter, HostConfig, Observation, Segment, VpnGateway

from .daemon_helpers import Pki, client, make_pki, start_agent

SECRETS = ("k3y-one", "mp-key-1", "secret.psk1")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pki]:
    yield make_pki(tmp_path_factory.mktemp("pki"))


def config(generation: int = 1) -> HostConfig:
    bgp = BgpPeer(4_200_000_000, 65010, "169.254.10.0/31", "169.254.10.1", ("10.1.0.0/24",), md5_key="k3y-one")
    return HostConfig(
        "h1", "10.0.0.1", generation, (Segment(100, "vpc-aaaa", 1500, ()),),
        edge_routers=(
            EdgeRouter("dx-1", 100, "layer3", "xc0", 1000, gateway_ip="10.1.0.1/24", bgp=bgp, secret_digest="d1"),
            EdgeRouter("dx-2", 100, "layer2", "xc1", 2000, vlan=100, circuit_key="mp-key-1", secret_digest="c1"),
        ),
        vpn_gateways=(VpnGateway(
            "vpn-1", 100, "10.1.0.2/24", "203.0.113.33/28", "out0", "203.0.113.10", ("10.1.0.0/24",),
            ("192.168.50.0/24",), "aes256-sha256-modp2048", "aes256-sha256-modp2048", peer_id="premises",
            outside_gateway="203.0.113.1", psk="secret.psk1", secret_digest="p1"),),
    )


def test_round_trip_keeps_secrets_only_when_asked() -> None:
    cfg = config()
    pushed = wire.config_from_pb(wire.push_request(cfg).config)
    assert pushed == cfg and pushed.to_dict(secrets=True) == cfg.to_dict(secrets=True)
    reported = wire.config_from_pb(wire.config_to_pb(cfg))
    assert reported.same_dataplane(cfg)  # secrets take no part in comparisons
    text = str(wire.config_to_pb(cfg))
    assert not any(s in text for s in SECRETS)
    assert reported.edge_routers[1].vlan == 100 and reported.edge_routers[0].vlan is None
    assert reported.vpn_gateways[0].peer_id == "premises"


def test_agent_persists_secrets_privately_and_never_reports_them(tmp_path: Path, pki: Pki) -> None:
    running = start_agent(tmp_path / "state", pki.server("h1"))
    try:
        channel, s = client(running.address, pki.engine)
        with channel:
            reply = s.Push(wire.push_request(config()), timeout=10)
            assert reply.status == pb.PushResponse.CONVERGED, reply.failures
            assert not any(x in str(reply) for x in SECRETS)
            assert [(o.id, o.state) for o in reply.actual.observations] == [
                ("dx-1", "established"), ("dx-2", "up"), ("vpn-1", "up")]
            state = s.GetState(pb.GetStateRequest(), timeout=10)
            assert len(state.desired.edge_routers) == 2 and not any(x in str(state) for x in SECRETS)
            # The driver got the secrets: they are what it must apply.
            bgp = running.driver.facts().edge_routers[0].bgp
            assert bgp is not None and bgp.md5_key == "k3y-one"
            # A push without secrets (a VPN needs its psk) is rejected, naming the field.
            bare = s.Push(pb.PushRequest(config=wire.config_to_pb(config(2))), timeout=10)
            assert bare.status == pb.PushResponse.REJECTED
            assert [f.path for f in bare.failures] == ["vpn_gateways[0].psk"]
    finally:
        running.stop()
    f = tmp_path / "state" / "desired.json"
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    saved = HostConfig.from_dict(json.loads(f.read_text())["config"])
    assert saved.to_dict(secrets=True) == config().to_dict(secrets=True)

    # A restarted agent re-applies the persisted config, secrets included.
    again = start_agent(tmp_path / "state", pki.server("h1"))
    try:
        assert again.driver.facts().vpn_gateways[0].psk == "secret.psk1"
        assert again.driver.facts().same_dataplane(config())
    finally:
        again.stop()


def test_pushed_observations_are_ignored(tmp_path: Path, pki: Pki) -> None:
    running = start_agent(tmp_path / "state", pki.server("h1"))
    try:
        cfg = replace(config(), observations=(Observation("dx-1", "down", "forged"),))
        outcome = running.agent.push(cfg)
        assert outcome.status == "converged"
        assert outcome.actual is not None and outcome.actual.observation("dx-1") == Observation("dx-1", "established")
    finally:
        running.stop()


def test_observation_reasons_cross_the_wire(tmp_path: Path, pki: Pki) -> None:
    """A session that is down says why as a code (the provider acts on it) beside the words."""
    running = start_agent(tmp_path / "state", pki.server("h1"))
    try:
        running.driver.observe("vpn-1", Observation("vpn-1", "down", "authentication failed: ...",
                                                    reason="auth_failed"))
        channel, s = client(running.address, pki.engine)
        with channel:
            s.Push(wire.push_request(config()), timeout=10)
            state = wire.config_from_pb(s.GetState(pb.GetStateRequest(), timeout=10).actual)
        seen = state.observation("vpn-1")
        assert seen is not None and (seen.state, seen.reason) == ("down", "auth_failed")
        assert seen.reason in PEER_REFUSED
    finally:
        running.stop()
