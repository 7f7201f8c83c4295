"""The VPN gateway's pure parts: charon configuration, proposals, failure reasons from the log."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from l2vpc.agent.drivers.linux import vpn
from l2vpc.agent.drivers.linux.charon import (
    LOG_KEEP,
    LOG_MAX,
    Charon,
    retransmit_schedule,
    supported_subset,
    unsupported,
)
from l2vpc.agent.drivers.linux.vpn_failures import failure_reason
from l2vpc.hostconfig import OBSERVATION_REASONS, VpnGateway
from l2vpc.hostconfig.names import vpn_device_name, vpn_netns_name

GW = VpnGateway(
    id="vpn-0123456789ab", vni=100, gateway_ip="10.0.0.1/24", outside_ip="203.0.113.33/24", outside="out0",
    peer_address="203.0.113.10", local_cidrs=("10.0.0.0/24",), remote_cidrs=("192.168.50.0/24", "192.168.60.0/24"),
    ike_proposal="aes256gcm16-prfsha256-modp2048", esp_proposal="aes256gcm16-modp2048", ike_lifetime=28800,
    esp_lifetime=3600, dpd_interval=30, dpd_timeout=120, psk="s3cret.key_1", secret_digest="d",
)
FIELDS = {"ike": GW.ike_proposal, "esp": GW.esp_proposal, "peer": GW.peer_address,
          "local": "10.0.0.0/24", "remote": "192.168.50.0/24"}


def test_names_fit_and_are_stable() -> None:
    assert vpn_device_name(GW.id) == "l2v0123456789ab" and len(vpn_device_name(GW.id)) <= 15
    assert vpn_netns_name("t1-", GW.id) == "t1-l2v-0123456789ab"
    assert vpn._mac(GW.id, "vpc") == vpn._mac(GW.id, "vpc") != vpn._mac(GW.id, "outside")
    assert int(vpn._mac(GW.id, "vpc")[:2], 16) & 0b11 == 0b10  # unicast, locally administered


@pytest.mark.parametrize("timeout", [3, 11, 120, 3600])
def test_retransmit_schedule_spans_dpd_timeout(timeout: int) -> None:
    first, tries, base = retransmit_schedule(timeout)
    span = sum(first * base**n for n in range(tries + 1))
    assert abs(span - timeout) / timeout < 0.01


def test_connection_carries_the_gateway_settings() -> None:
    conn = vpn._conn(GW)
    child = conn["children"][GW.id]
    assert conn["proposals"] == ["aes256gcm16-prfsha256-modp2048"]
    assert conn["local"] == {"auth": "psk", "id": "203.0.113.33"}
    assert conn["remote"] == {"auth": "psk", "id": "203.0.113.10"}
    assert vpn._conn(dataclasses.replace(GW, peer_id="gw.example"))["remote"]["id"] == "gw.example"
    assert (conn["rekey_time"], conn["over_time"], conn["dpd_delay"]) == ("25920s", "2880s", "30s")
    assert child["remote_ts"] == ["192.168.50.0/24", "192.168.60.0/24"] and child["local_ts"] == ["10.0.0.0/24"]
    assert (child["rekey_time"], child["life_time"]) == ("3240s", "3600s")
    assert (child["start_action"], child["close_action"], child["dpd_action"]) == ("trap|start", "restart", "restart")
    assert conn["keyingtries"] == "0" and conn["encap"] == "yes"
    assert "s3cret" not in repr(conn)


def test_strongswan_conf_is_self_contained() -> None:
    charon = Charon(Path("/tmp/x/gw/0123456789ab"), None)
    text = charon.render_conf(retransmit_schedule(120))
    load = next(line for line in text.splitlines() if "load =" in line).split()
    assert load.index("kernel-libipsec") < load.index("kernel-netlink")  # libipsec must win
    assert "include" not in text and "/etc" not in text  # nothing read from the host's config
    assert "unix:///tmp/x/gw/0123456789ab/vici.sock" in text
    assert "default = 1" in text and "retransmit_tries = 5" in text


def test_unsupported_proposal_tokens() -> None:
    algs = {"encryption": {"AES_CBC"}, "integrity": {"HMAC_SHA2_256_128"}, "prf": {"PRF_HMAC_SHA2_256"},
            "dh": {"MODP_2048"}, "aead": set()}
    assert unsupported("aes256-sha256-modp2048", algs) == []
    assert unsupported("aes256gcm16-prfsha256-ecp256", algs) == ["aes256gcm16", "ecp256"]
    assert unsupported("aes256-sha256-modp2048-esn", algs) == []  # unknown tokens: charon decides
    assert supported_subset(["aes256-sha256-modp2048", "aes128gcm16-modp2048"], algs) == [
        "aes256-sha256-modp2048"]


LOG = """\
2026-01-01T00:00:00 08[IKE] initiating IKE_SA vpn-1[1] to 203.0.113.10
2026-01-01T00:00:00 05[IKE] received AUTHENTICATION_FAILED notify error
"""


@pytest.mark.parametrize(("line", "code", "reason"), [
    ("05[IKE] received AUTHENTICATION_FAILED notify error", "auth_failed", "authentication failed: the peer rejected"),
    ("09[IKE] tried 1 shared key for '203.0.113.33' - '203.0.113.10', but MAC mismatched", "auth_failed",
     "the peer's pre-shared key does not match"),
    ("09[IKE] no shared key found for '203.0.113.33' - '203.0.113.10'", "auth_failed",
     "no pre-shared key for 203.0.113.33 - 203.0.113.10"),
    ("05[IKE] received NO_PROPOSAL_CHOSEN notify error", "proposal_rejected",
     "none of our IKE proposal (aes256gcm16-prfsha256-modp2048)"),
    ("05[IKE] received NO_PROPOSAL_CHOSEN notify, no CHILD_SA built", "proposal_rejected",
     "none of our ESP proposal (aes256gcm16-modp2048)"),
    ("05[IKE] received TS_UNACCEPTABLE notify, no CHILD_SA built", "selectors_rejected",
     "refused the traffic selectors (local 10.0.0.0/24 remote 192.168.50.0/24)"),
    ("05[IKE] received INTERNAL_ADDRESS_FAILURE notify error", "negotiation_refused",
     "refused the negotiation (INTERNAL_ADDRESS_FAILURE)"),
    ("12[IKE] giving up after 5 retransmits", "peer_not_responding",
     "203.0.113.10 does not answer (no reply after 5 retransmits)"),
])
def test_failure_reasons(line: str, code: str, reason: str) -> None:
    got_code, words = failure_reason([f"2026-01-01T00:00:00 {line}"], FIELDS)
    assert got_code == code and got_code in OBSERVATION_REASONS
    assert reason in words, words


def test_an_established_sa_clears_older_failures() -> None:
    lines = LOG.splitlines()
    assert failure_reason(lines, FIELDS)[0] == "auth_failed"
    lines.append("2026-01-01T00:00:01 05[IKE] IKE_SA vpn-1[2] established between 203.0.113.33[a]...b[b]")
    assert failure_reason(lines, FIELDS) == ("", "")
    lines.append("2026-01-01T00:00:02 05[IKE] received TS_UNACCEPTABLE notify, no CHILD_SA built")
    assert failure_reason(lines, FIELDS) == (
        "selectors_rejected", "the peer refused the traffic selectors (local 10.0.0.0/24 remote 192.168.50.0/24)")


def test_log_reads_from_an_offset_and_is_cut_back(tmp_path: Path) -> None:
    charon = Charon(tmp_path, None)
    charon.log.write_text("old failure\n")
    since = charon.log_size()
    with open(charon.log, "a") as f:
        f.write("new line\n")
    assert charon.read_log(since) == ["new line"]
    assert charon.read_log(since + 1000) == ["old failure", "new line"]  # cut back: read it all
    assert not charon.trim_log()
    with open(charon.log, "a") as f:
        f.write("x" * LOG_MAX + "\nlast\n")
    assert charon.trim_log() and charon.log_size() == LOG_KEEP
    assert charon.read_log(0)[-1] == "last"
