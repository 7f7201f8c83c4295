"""An agent's Prometheus metrics and readiness (served by `l2vpc agent run --metrics-address`).

Counted as converges finish:
    l2vpc_agent_converge_duration_seconds            every converge of this host (histogram)
    l2vpc_agent_converges_total{outcome}             converged | failed | rejected
Read at scrape time from the agent (nothing is copied on the hot path):
    l2vpc_agent_generation{kind}                     accepted | converged config generation
    l2vpc_agent_converging                           1 while a converge runs
    l2vpc_agent_heartbeat_age_seconds                since the controller last answered a heartbeat
    l2vpc_agent_heartbeats_total{result}             ok | failed
    l2vpc_agent_bgp_established{direct_connect}, l2vpc_agent_bgp_learned_prefixes{direct_connect}
    l2vpc_agent_vpn_tunnel_state{vpn,state}          1 for the tunnel's state (up|connecting|down)
    l2vpc_agent_dhcp_leases{vpc}                     active leases of the DHCP servers on this host
Overlay probes (agent/overlay_probe.py; only when the agent runs a prober):
    l2vpc_overlay_probes_sent_total, l2vpc_overlay_probes_sent_bytes_total
    l2vpc_overlay_probes_answered_total              our probes the peers answered
    l2vpc_overlay_peer_probes_answered_total         the peers' probes this host answered
    l2vpc_overlay_probe_send_errors_total            sends the kernel refused (EMSGSIZE: above the MTU it knows)
    l2vpc_overlay_peers{state}                       VXLAN peers by verdict: healthy | degraded | unreachable
    l2vpc_overlay_path_mtu_min_bytes                 the smallest measured path MTU (absent: none measured)
    l2vpc_overlay_peer_path_mtu_bytes{peer}          the measured path MTU per degraded peer (underlay address)
The `peer` label is bounded by this host's VXLAN peers, and only peers degraded by their path
MTU have a series: a healthy overlay adds none (100 peers all degraded: 100 series).

Readiness (`/readyz`): a converge succeeded since the agent started, or it holds no config at
all (a fresh host has nothing to converge and is ready for its first push). An agent that
restarted with a persisted config is not ready until it has re-converged it.

More gauges go into `AgentMetrics.metrics` (observability.metrics).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from l2vpc.agent.core import Agent
from l2vpc.agent.heartbeat import HeartbeatScheduler
from l2vpc.agent.overlay_probe import PEER_STATES, OverlayProber
from l2vpc.observability.metrics import Metrics, label_value

CONVERGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
OUTCOMES = ("converged", "failed", "rejected")
VPN_STATES = ("up", "connecting", "down")


class AgentMetrics:
    def __init__(self, agent: Agent, heartbeats: HeartbeatScheduler | None = None,
                 prober: OverlayProber | None = None) -> None:
        self.agent = agent
        self.heartbeats = heartbeats
        self.metrics = Metrics("agent")
        self.converge_seconds = self.metrics.histogram(
            "agent_converge_duration_seconds", "time to converge this host to a config", buckets=CONVERGE_BUCKETS)
        self.converges = self.metrics.counter("agent_converges", "converges of this host, by outcome", ["outcome"])
        for outcome in OUTCOMES:
            self.converges.labels(outcome)
        self.metrics.add(_AgentCollector(self))
        if prober is not None:
            self.metrics.add(_OverlayCollector(prober))
        agent.on_converge = self.converged

    def converged(self, status: str, seconds: float) -> None:
        self.converge_seconds.observe(seconds)
        self.converges.labels(status if status in OUTCOMES else "failed").inc()

    def ready(self) -> tuple[bool, str]:
        return readiness(self.agent)


def readiness(agent: Agent) -> tuple[bool, str]:
    if agent.converged_once:
        return True, "converged at least once"
    health = agent.health()
    if health.accepted_generation == 0 and not health.converging:
        return True, "no config yet: nothing to converge"
    if health.converging:
        return False, f"converging generation {health.accepted_generation} for the first time"
    failures = health.last_failures
    why = str(failures[0]) if failures else "no converge finished yet"
    more = f" (and {len(failures) - 1} more failures)" if len(failures) > 1 else ""
    return False, f"generation {health.accepted_generation} has not converged: {why}{more}"


class _AgentCollector(Collector):
    def __init__(self, owner: AgentMetrics) -> None:
        self.owner = owner

    def describe(self) -> list[object]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        agent = self.owner.agent
        health = agent.health()
        generation = GaugeMetricFamily("l2vpc_agent_generation", "config generation of this host", labels=["kind"])
        generation.add_metric(["accepted"], health.accepted_generation)
        generation.add_metric(["converged"], health.converged_generation)
        yield generation
        yield GaugeMetricFamily("l2vpc_agent_converging", "1 while a converge runs", value=int(health.converging))
        beats = self.owner.heartbeats
        if beats is not None and beats.links:
            link = beats.links[0]
            if link.last_ok:
                yield GaugeMetricFamily("l2vpc_agent_heartbeat_age_seconds",
                                        "seconds since the controller last answered a heartbeat",
                                        value=round(time.monotonic() - link.last_ok, 3))
            stats = beats.stats()
            total = CounterMetricFamily("l2vpc_agent_heartbeats", "heartbeats sent, by result", labels=["result"])
            total.add_metric(["ok"], stats.heartbeats_ok)
            total.add_metric(["failed"], stats.heartbeats_failed)
            yield total
        actual = agent.last_actual
        bgp = GaugeMetricFamily("l2vpc_agent_bgp_established", "1 when the direct connect's BGP session is up",
                                labels=["direct_connect"])
        learned = GaugeMetricFamily("l2vpc_agent_bgp_learned_prefixes", "prefixes learned over BGP",
                                    labels=["direct_connect"])
        vpn = GaugeMetricFamily("l2vpc_agent_vpn_tunnel_state", "1 for the VPN tunnel's current state",
                                labels=["vpn", "state"])
        if actual is not None:
            routers = {e.id for e in actual.edge_routers if e.mode == "layer3"}
            gateways = {v.id for v in actual.vpn_gateways}
            for o in sorted(actual.observations, key=lambda o: o.id):
                if o.id in routers:
                    bgp.add_metric([o.id], int(o.state == "established"))
                    learned.add_metric([o.id], len(o.learned))
                elif o.id in gateways:
                    for state in VPN_STATES:
                        vpn.add_metric([o.id, state], int(o.state == state or (state == "down" and
                                                                                o.state not in VPN_STATES)))
        yield bgp
        yield learned
        yield vpn
        leases = GaugeMetricFamily("l2vpc_agent_dhcp_leases", "active DHCP leases of the VPC's server on this host",
                                   labels=["vpc"])
        desired = agent.desired
        if desired is not None and desired.dhcp_servers:
            vpcs = {s.vni: s.vpc_id for s in desired.segments}
            counts = agent.driver.dhcp_leases()
            for server in desired.dhcp_servers:
                leases.add_metric([label_value(vpcs.get(server.vni, str(server.vni)))], counts.get(server.vni, 0))
        yield leases


# Prober counter -> (family without _total, help).
_PROBE_COUNTERS = (
    ("probes_sent", "l2vpc_overlay_probes_sent", "overlay probes sent to VXLAN peers"),
    ("probe_bytes_sent", "l2vpc_overlay_probes_sent_bytes", "IP bytes of the overlay probes sent"),
    ("replies_received", "l2vpc_overlay_probes_answered", "overlay probes of this host its peers answered"),
    ("requests_answered", "l2vpc_overlay_peer_probes_answered", "overlay probes of peers this host answered"),
    ("send_errors", "l2vpc_overlay_probe_send_errors", "overlay probes the kernel refused to send"),
)


class _OverlayCollector(Collector):
    """The prober's counters and its peers' verdicts, read at scrape time."""

    def __init__(self, prober: OverlayProber) -> None:
        self.prober = prober

    def describe(self) -> list[object]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        stats = self.prober.stats()
        for key, name, doc in _PROBE_COUNTERS:
            yield CounterMetricFamily(name, doc, value=stats[key])
        peers = self.prober.peer_states()
        by_state = GaugeMetricFamily("l2vpc_overlay_peers", "VXLAN peers of this host by overlay probe verdict",
                                     labels=["state"])
        for state in PEER_STATES:
            by_state.add_metric([state], sum(1 for p in peers if p.state == state))
        yield by_state
        measured = [p for p in peers if p.path_mtu]
        if measured:
            yield GaugeMetricFamily("l2vpc_overlay_path_mtu_min_bytes",
                                    "the smallest underlay path MTU measured towards a peer",
                                    value=min(p.path_mtu for p in measured))
        per_peer = GaugeMetricFamily("l2vpc_overlay_peer_path_mtu_bytes",
                                     "underlay path MTU measured towards a peer degraded by it", labels=["peer"])
        for p in measured:
            per_peer.add_metric([p.peer], p.path_mtu)
        yield per_peer
