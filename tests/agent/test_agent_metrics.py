"""An agent's metrics and readiness through its real listener (HTTP on loopback), with the
memory driver: not ready while its config fails to converge, ready once it has; converges
counted by outcome; edge observations and DHCP leases by their object; the Linux driver's
lease count read from dnsmasq lease files; the overlay prober's counters and peer verdicts, with
real probers in two namespaces joined by a 1500-MTU veth."""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from l2vpc.agent.core import Agent
from l2vpc.agent.drivers.linux.dhcp_servers import DhcpServers
from l2vpc.agent.drivers.memory import MemoryDriver
from l2vpc.agent.metrics import AgentMetrics
from l2vpc.agent.overlay_probe import OverlayProber, PeerBook
from l2vpc.hostconfig import BgpPeer, DhcpServer, EdgeRouter, HostConfig, Observation, Segment
from l2vpc.lab import netns
from l2vpc.observability.listener import Listener, ListenerError
from l2vpc.testing.scrape import get, samples, value, wait_for

HOST, UNDERLAY = "edge1", "10.99.0.1"


def config(generation: int) -> HostConfig:
    return HostConfig(
        host=HOST, underlay_ip=UNDERLAY, generation=generation,
        segments=(Segment(vni=300, vpc_id="vpc-web", mtu=1500),),
        dhcp_servers=(DhcpServer(vni=300, server_ip="10.30.0.254/24", range_start="10.30.0.100",
                                 range_end="10.30.0.150"),),
        edge_routers=(EdgeRouter(id="dcx-1", vni=300, mode="layer3", handoff="xc0", bandwidth_mbps=1000,
                                 gateway_ip="10.30.0.1/24",
                                 bgp=BgpPeer(local_asn=64512, peer_asn=65001, local_ip="169.254.0.0/31",
                                             peer_ip="169.254.0.1")),),
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Agent, MemoryDriver, str]]:
    driver = MemoryDriver(HOST, UNDERLAY)
    agent = Agent(driver, tmp_path / "state", driver_name="memory")
    metrics = AgentMetrics(agent)
    listener = Listener("127.0.0.1:0", metrics.metrics, ready=metrics.ready)
    listener.start()
    try:
        yield agent, driver, f"http://{listener.address}"
    finally:
        listener.stop()
        agent.close()


def test_readiness_and_converge_metrics_follow_the_agent(served: tuple[Agent, MemoryDriver, str]) -> None:
    agent, driver, base = served
    assert get(f"{base}/healthz") == (200, "ok\n")
    status, text = get(f"{base}/readyz")
    assert status == 200 and "no config yet" in text  # a fresh host: nothing to converge

    driver.fail("segments[vni=300]", "bridge refused")
    assert agent.push(config(1)).status == "failed"
    status, text = get(f"{base}/readyz")
    assert status == 503 and "has not converged" in text and "bridge refused" in text, text
    assert value(base, "l2vpc_agent_converges_total", outcome="failed") == 1
    assert value(base, "l2vpc_agent_converges_total", outcome="converged") == 0

    driver.heal("segments[vni=300]")
    assert agent.push(config(2)).status == "converged"
    status, text = get(f"{base}/readyz")
    assert status == 200 and "converged at least once" in text
    got = samples(base)
    assert got[("l2vpc_agent_converges_total", (("outcome", "converged"),))] == 1
    assert got[("l2vpc_agent_converge_duration_seconds_count", ())] == 2
    assert got[("l2vpc_agent_generation", (("kind", "accepted"),))] == 2
    assert got[("l2vpc_agent_generation", (("kind", "converged"),))] == 2
    # The memory driver observes its layer-3 edge router established, learning nothing.
    assert got[("l2vpc_agent_bgp_established", (("direct_connect", "dcx-1"),))] == 1
    assert got[("l2vpc_agent_bgp_learned_prefixes", (("direct_connect", "dcx-1"),))] == 0
    assert got[("l2vpc_agent_dhcp_leases", (("vpc", "vpc-web"),))] == 0  # the memory driver counts none

    driver.observe("dcx-1", Observation("dcx-1", "down", reason="session_down"))
    agent.push(dataclasses.replace(config(3)))
    assert value(base, "l2vpc_agent_bgp_established", direct_connect="dcx-1") == 0

    # Still ready after a later failure: it converged once since it started.
    driver.fail("segments[vni=300]")
    agent.push(dataclasses.replace(config(4), segments=(Segment(vni=300, vpc_id="vpc-web", mtu=1400),)))
    assert get(f"{base}/readyz")[0] == 200
    assert get(f"{base}/nothing")[0] == 404


def test_a_restarted_agent_is_ready_only_once_it_re_converged(tmp_path: Path) -> None:
    first = Agent(MemoryDriver(HOST, UNDERLAY), tmp_path / "state", driver_name="memory")
    assert first.push(config(1)).status == "converged"
    first.close()
    driver = MemoryDriver(HOST, UNDERLAY)
    driver.fail("segments[vni=300]", "not yet")
    again = Agent(driver, tmp_path / "state", driver_name="memory")  # persisted generation 1
    try:
        metrics = AgentMetrics(again)
        assert metrics.ready()[0] is False  # a config to re-converge, not converged yet
        again.start().join(10)  # type: ignore[union-attr]
        assert metrics.ready() == (False, "generation 1 has not converged: segments[vni=300]: not yet "
                                         "(and 2 more failures)")
        driver.heal("segments[vni=300]")
        again.reconverge()
        assert metrics.ready() == (True, "converged at least once")
    finally:
        again.close()


def test_linux_driver_counts_unexpired_dnsmasq_leases(tmp_path: Path) -> None:
    now = int(time.time())
    (tmp_path / "300").mkdir()
    (tmp_path / "300" / "leases").write_text(
        f"{now + 600} 02:00:00:00:00:01 10.30.0.100 vm1 01:02:00:00:00:00:01\n"
        f"{now - 600} 02:00:00:00:00:02 10.30.0.101 vm2 *\n"  # expired
        f"0 02:00:00:00:00:03 10.30.0.102 * *\n")  # infinite
    (tmp_path / "301").mkdir()
    (tmp_path / "301" / "leases").write_text("")
    (tmp_path / "302").mkdir()  # a server starting: no lease file yet
    servers = DhcpServers(None, None, "", tmp_path)  # type: ignore[arg-type]  # leases() reads files only
    assert servers.leases() == {300: 2, 301: 0}
    assert DhcpServers(None, None, "", tmp_path / "none").leases() == {}  # type: ignore[arg-type]


def test_a_taken_or_bad_address_is_a_clear_error() -> None:
    listener = Listener("127.0.0.1:0", AgentMetrics.__new__(AgentMetrics))  # type: ignore[arg-type]
    listener.start()
    try:
        with pytest.raises(ListenerError, match=r"127\.0\.0\.1:\d+: cannot listen"):
            Listener(listener.address, listener.metrics).start()
    finally:
        listener.stop()
    with pytest.raises(ListenerError, match="is not HOST:PORT"):
        Listener("9100", listener.metrics)


@pytest.fixture
def two_namespaces() -> Iterator[tuple[str, str]]:
    """Namespaces A (10.77.0.1) and B (10.77.0.2 and .4) on a veth of MTU 1500: nothing above
    1500 bytes of IP passes between them."""
    a, b = f"l2am-a-{os.getpid()}", f"l2am-b-{os.getpid()}"
    made: list[str] = []
    try:
        for ns in (a, b):
            netns.create(ns)
            made.append(ns)
        netns.ip("link", "add", "ova", "mtu", "1500", "type", "veth", "peer", "name", "ovb", "mtu", "1500",
                 "netns", b, netns=a)
        netns.ip("addr", "add", "10.77.0.1/24", "dev", "ova", netns=a)
        netns.ip("addr", "add", "10.77.0.2/24", "dev", "ovb", netns=b)
        netns.ip("addr", "add", "10.77.0.4/24", "dev", "ovb", netns=b)
        for ns, dev in ((a, "ova"), (b, "ovb")):
            netns.ip("link", "set", dev, "up", netns=ns)
        yield a, b
    finally:
        for ns in made:
            netns.remove(ns)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")
def test_overlay_probe_counters_and_peer_verdicts_are_metrics(two_namespaces: tuple[str, str],
                                                               tmp_path: Path) -> None:
    ns_a, ns_b = two_namespaces
    port = 7651

    def prober(ns: str, ip: str) -> OverlayProber:
        return OverlayProber(ip, lambda: netns.socket_in(ns, socket.AF_INET, socket.SOCK_DGRAM), port=port,
                             book=PeerBook(interval=0.2, timeout=0.1, measure_timeout=0.1))

    # A carries a jumbo VPC towards .2 (9050 bytes needed: the 1500 veth is too small), a
    # 1400 VPC towards .4 (1450 fits), and a VPC towards .3, where nobody answers.
    a_cfg = HostConfig("a", "10.77.0.1", segments=(Segment(7, "jumbo", 9000, ("10.77.0.2",)),
                                                   Segment(8, "small", 1400, ("10.77.0.4",)),
                                                   Segment(9, "gone", 1500, ("10.77.0.3",))))
    probers = [prober(ns_a, "10.77.0.1"), prober(ns_b, "10.77.0.2"), prober(ns_b, "10.77.0.4")]
    agent = Agent(MemoryDriver("a", "10.77.0.1"), tmp_path / "state", driver_name="memory")
    metrics = AgentMetrics(agent, prober=probers[0])
    listener = Listener("127.0.0.1:0", metrics.metrics, ready=metrics.ready)
    listener.start()
    base = f"http://{listener.address}"
    try:
        agent.attach_overlay(probers[0])
        assert agent.push(a_cfg).status == "converged"  # the agent tells its prober the peers
        probers[1].configure(HostConfig("b", "10.77.0.2", segments=(Segment(7, "jumbo", 9000, ("10.77.0.1",)),)))
        probers[2].configure(HostConfig("b", "10.77.0.4", segments=(Segment(8, "small", 1400, ("10.77.0.1",)),)))
        for p in probers:
            p.start()

        def judged() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
            got = samples(base)
            return got if got.get(("l2vpc_overlay_peers", (("state", "healthy"),))) == 1 and \
                got.get(("l2vpc_overlay_peers", (("state", "degraded"),))) == 1 and \
                got.get(("l2vpc_overlay_peers", (("state", "unreachable"),))) == 1 else None

        got = wait_for(judged, 15, "one healthy, one degraded (path MTU), one unreachable peer")
        # A veth takes frames up to its MTU (+4 for a VLAN tag the search may find).
        mtu = got[("l2vpc_overlay_path_mtu_min_bytes", ())]
        assert 1500 <= mtu <= 1504, got
        assert got[("l2vpc_overlay_peer_path_mtu_bytes", (("peer", "10.77.0.2"),))] == mtu
        # Only the peer degraded by its MTU has a per-peer series.
        assert [k for k in got if k[0] == "l2vpc_overlay_peer_path_mtu_bytes"] == [
            ("l2vpc_overlay_peer_path_mtu_bytes", (("peer", "10.77.0.2"),))]
        stats = probers[0].stats()
        assert got[("l2vpc_overlay_probes_sent_total", ())] >= 6
        assert 0 < got[("l2vpc_overlay_probes_answered_total", ())] < got[("l2vpc_overlay_probes_sent_total", ())]
        assert got[("l2vpc_overlay_probe_send_errors_total", ())] >= 1  # 9050 bytes refused at the 1500 veth
        assert got[("l2vpc_overlay_peer_probes_answered_total", ())] >= 1  # B probes A too
        assert got[("l2vpc_overlay_probes_sent_bytes_total", ())] >= 1450
        assert stats["probes_sent"] >= got[("l2vpc_overlay_probes_sent_total", ())]  # counters only grow

        # The jumbo VPC gone from A: that peer goes from the metrics, nothing is degraded.
        assert agent.push(dataclasses.replace(a_cfg, generation=2, segments=a_cfg.segments[1:])).status == \
            "converged"
        got = samples(base)
        assert got[("l2vpc_overlay_peers", (("state", "degraded"),))] == 0
        assert ("l2vpc_overlay_path_mtu_min_bytes", ()) not in got
        assert not [k for k in got if k[0] == "l2vpc_overlay_peer_path_mtu_bytes"]
    finally:
        listener.stop()
        for p in probers:
            p.close()
        agent.close()


def test_an_agent_without_a_prober_has_no_overlay_metrics(served: tuple[Agent, MemoryDriver, str]) -> None:
    assert not [k for k in samples(served[2]) if k[0].startswith("l2vpc_overlay_")]
