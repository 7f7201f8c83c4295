"""HostConfig.to_dict: the same plain data as dataclasses.asdict with every secret blanked
(blank_secrets), whatever the config holds; converted in one pass for speed."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from l2vpc.hostconfig import BgpPeer, HostConfig, Observation, VpnGateway
from l2vpc.hostconfig.model import blank_secrets

from .test_diff_properties import host_config

KEYS = st.one_of(st.none(), st.just(""), st.text("abcXYZ09", min_size=1, max_size=8))


@st.composite
def with_secrets(draw: st.DrawFn) -> HostConfig:
    cfg = draw(host_config())
    edges = tuple(dataclasses.replace(
        e, circuit_key=draw(KEYS), secret_digest=draw(st.sampled_from(["", "d1"])),
        bgp=dataclasses.replace(e.bgp, md5_key=draw(KEYS)) if e.bgp else None) for e in cfg.edge_routers)
    vpns = tuple(
        VpnGateway(id=f"vpn-{i}", vni=4096, gateway_ip="10.1.0.2/24", outside_ip="192.0.2.10/24", outside="out0",
                   peer_address="198.51.100.1", local_cidrs=("10.1.0.0/24",), remote_cidrs=("10.9.0.0/16",),
                   ike_proposal="aes256-sha256-modp2048", esp_proposal="aes256-sha256-modp2048",
                   psk=draw(st.text("abc.", max_size=8)), secret_digest="d2")
        for i in range(draw(st.integers(0, 2))))
    labels = draw(st.dictionaries(st.sampled_from(["plan", "psk", "md5_key", "note"]), st.text("ab", max_size=3)))
    observations = tuple(Observation(f"dx-{i}", "up", learned=("10.8.0.0/16",)) for i in range(draw(st.integers(0, 2))))
    return dataclasses.replace(cfg, edge_routers=edges, vpn_gateways=vpns, labels=labels, observations=observations)


@settings(max_examples=200, deadline=None)
@given(with_secrets())
def test_to_dict_is_asdict_with_secrets_blanked(cfg: HostConfig) -> None:
    assert cfg.to_dict() == blank_secrets(dataclasses.asdict(cfg))
    assert cfg.to_dict(secrets=True) == dataclasses.asdict(cfg)


def test_secrets_are_blank_and_the_config_untouched() -> None:
    bgp = BgpPeer(64600, 65010, "169.254.0.0/31", "169.254.0.1", md5_key="s3cret")
    vpn = VpnGateway(id="vpn-1", vni=4096, gateway_ip="10.1.0.2/24", outside_ip="192.0.2.10/24", outside="out0",
                     peer_address="198.51.100.1", local_cidrs=("10.1.0.0/24",), remote_cidrs=("10.9.0.0/16",),
                     ike_proposal="aes256-sha256-modp2048", esp_proposal="aes256-sha256-modp2048", psk="pre.shared")
    cfg = HostConfig("h1", "10.0.0.1", vpn_gateways=(vpn,), labels={"psk": "x"})
    from l2vpc.hostconfig import EdgeRouter

    cfg = dataclasses.replace(cfg, edge_routers=(EdgeRouter(id="dx-1", vni=4096, mode="layer3", handoff="xc0",
                                                             bandwidth_mbps=1000, gateway_ip="10.1.0.1/24", bgp=bgp,
                                                             circuit_key="xc-s3cr3t"),))
    data = cfg.to_dict()
    text = repr(data)
    assert "s3cret" not in text and "pre.shared" not in text and "xc-s3cr3t" not in text
    assert data["vpn_gateways"][0]["psk"] == "" and data["labels"] == {"psk": ""}
    assert cfg.vpn_gateways[0].psk == "pre.shared" and cfg.labels == {"psk": "x"}
    assert cfg.to_dict(secrets=True)["edge_routers"][0]["bgp"]["md5_key"] == "s3cret"
