"""The controller's Prometheus metrics, its readiness, and what they read.

Counted as things happen (cheap, in the threads that do them):
    l2vpc_api_requests_total{method,code}            every API call answered
    l2vpc_api_request_duration_seconds{method,code}  its latency (histogram)
    l2vpc_host_converge_duration_seconds{host}       push + retries per host (histogram, leader)
    l2vpc_converges_total{outcome}                   converges run by this controller (ok | failed)
    l2vpc_converge_duration_seconds                  a whole converge (plan + every host)
    l2vpc_reconcile_repairs_total{reason}            drift repaired, by reason code
    l2vpc_leadership_changes_total{change}           this controller took (acquired) or lost leading

Read at scrape time from the store (`Snapshot`, at most once per SNAPSHOT_MAX_AGE seconds):
    l2vpc_hosts{status}                              hosts up / down
    l2vpc_host_heartbeat_age_seconds{host}           since the host's last recorded heartbeat
    l2vpc_converge_pending_revisions                 desired revision - converged revision
    l2vpc_converge_failed_hosts                      hosts the last converge failed on
    l2vpc_leader_term, l2vpc_leader                  the recorded term; 1 when this one leads
    l2vpc_direct_connect_bgp_established{direct_connect}, ..._learned_prefixes{direct_connect}
    l2vpc_vpn_tunnel_state{vpn,state}                1 for the tunnel's state (up|connecting|down)
    l2vpc_overlay_degraded_pairs{reason}             failing (VPC, host pair) rows the hosts report
                                                     (engine/overlay.py): path_mtu | peer_not_responding
    l2vpc_overlay_degraded_vpcs                      VPCs with at least one failing pair

Labels are method names, gRPC code names, host and object ids, reason codes: bounded sets.
A scrape of a controller with 1,000 hosts stays far below 1 MB (bench/bench_metrics.py).
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from l2vpc.controller.leader import read_leader
from l2vpc.controller.planestore import PlaneStore, open_plane
from l2vpc.controller.reconciler import CONVERGED_KEY, DESIRED
from l2vpc.engine import overlay
from l2vpc.engine.executor import ExecutionResult
from l2vpc.engine.model import VPC
from l2vpc.engine.store.base import Store
from l2vpc.hostconfig import HostConfig
from l2vpc.observability.metrics import Metrics, escape, label_value, text_family

SNAPSHOT_MAX_AGE = 1.0
# Per-host buckets: few, as there is one series per bucket and host (1,000 hosts).
HOST_BUCKETS = (0.05, 0.25, 1.0, 5.0, 30.0)
API_BUCKETS = (0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10.0, 60.0)
CONVERGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
VPN_STATES = ("up", "connecting", "down")
OVERLAY_REASONS = ("path_mtu", "peer_not_responding")
REPAIR_REASONS = ("no_report", "agent_restarted", "generation_regressed", "changed_behind_our_back",
                  "host_came_back", "periodic_resync")


@dataclass(frozen=True)
class Snapshot:
    """What the scrape-time gauges show, read in one store transaction."""

    now: float  # store clock
    leader: str
    term: int
    desired: int
    converged: int
    failed_hosts: int
    statuses: dict[str, str]  # host -> up | down
    last_seen: dict[str, float]  # host -> store clock of the last recorded heartbeat
    bgp: dict[str, tuple[bool, int]] = field(default_factory=dict)  # direct connect -> (up, learned)
    vpn: dict[str, str] = field(default_factory=dict)  # vpn -> state
    overlay_pairs: dict[str, int] = field(default_factory=dict)  # reason -> failing (VPC, host pair) rows
    overlay_vpcs: int = 0  # VPCs with a failing pair


def read_snapshot(store: Store | PlaneStore) -> Snapshot:
    plane = open_plane(store)
    with plane.transaction() as p:
        now = p.clock()
        leader = read_leader(p)
        desired = p.tx.current_sequence(DESIRED)
        converged = p.get_state(CONVERGED_KEY) or {}
        hosts = p.tx.list("host")
        beats = p.heartbeats()
        edges = [o.id for o in hosts if o.data.get("role") == "edge"]
        reports = p.tx.host_reports(edges) if edges else {}
        # The VPCs are decoded only when some host reports a failing pair (degraded_pairs asks
        # the index first): a healthy overlay costs the scrape one query of report stamps.
        degraded = overlay.degraded_pairs(p.tx, overlay.index_for(plane.store),
                                          (VPC.model_validate(o.data) for o in p.tx.list("vpc")))
    overlay_pairs = dict.fromkeys(OVERLAY_REASONS, 0)
    for pairs in degraded.values():
        for pair in pairs:
            overlay_pairs[pair.reason] = overlay_pairs.get(pair.reason, 0) + 1
    bgp: dict[str, tuple[bool, int]] = {}
    vpn: dict[str, str] = {}
    for rep in reports.values():
        cfg = HostConfig.from_dict(rep.config)
        routers = {e.id for e in cfg.edge_routers if e.mode == "layer3"}
        gateways = {v.id for v in cfg.vpn_gateways}
        for o in cfg.observations:
            if o.id in routers:
                bgp[o.id] = (o.state == "established", len(o.learned))
            elif o.id in gateways:
                vpn[o.id] = o.state if o.state in VPN_STATES else "down"
    live = leader is not None and now < leader.expires
    return Snapshot(
        now=now, leader=leader.id if live and leader else "", term=leader.term if leader else 0,
        desired=desired, converged=int(converged.get("revision", 0)),
        failed_hosts=len(converged.get("failures") or ()),
        statuses={o.id: str(o.data.get("status", "up")) for o in hosts},
        last_seen={h: b.last_seen for h, b in beats.items()}, bgp=bgp, vpn=vpn,
        overlay_pairs=overlay_pairs, overlay_vpcs=len(degraded),
    )


class _HostHistograms:
    """One histogram per host, kept as plain counts (a labelled prometheus Histogram costs a
    child object and a lock per host; this is a dict update under one lock)."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self._lock = threading.Lock()
        self._data: dict[str, tuple[list[int], float]] = {}

    def observe(self, host: str, seconds: float) -> None:
        i = bisect.bisect_left(self.buckets, seconds)
        with self._lock:
            counts, total = self._data.get(host) or ([0] * (len(self.buckets) + 1), 0.0)
            counts[i] += 1
            self._data[host] = (counts, total + seconds)

    def forget(self, hosts: set[str]) -> None:
        with self._lock:
            for h in hosts:
                self._data.pop(h, None)

    def text(self, name: str, doc: str) -> str:
        """The family in the text format (see observability.metrics.add_text)."""
        with self._lock:
            items = [(h, list(c), s) for h, (c, s) in self._data.items()]
        edges = [*(f"{b:g}" for b in self.buckets), "+Inf"]
        lines = []
        for host, counts, total in sorted(items):
            label = f'host="{escape(label_value(host))}"'
            running = 0
            for edge, n in zip(edges, counts, strict=True):
                running += n
                lines.append(f'{name}_bucket{{{label},le="{edge}"}} {running}')
            lines.append(f"{name}_count{{{label}}} {running}")
            lines.append(f"{name}_sum{{{label}}} {total!r}")
        return text_family(name, "histogram", doc, lines)


class ControllerMetrics:
    """The metrics of one controller (see the module docstring); `metrics.add` takes more."""

    def __init__(self, store: Store | PlaneStore, controller_id: str,
                 leading: Callable[[], bool] | None = None) -> None:
        self.metrics = Metrics("controller")
        self.store = store
        self.controller_id = controller_id
        m = self.metrics
        self.api_requests = m.counter("api_requests", "API calls answered, by method and gRPC status code",
                                      ["method", "code"])
        self.api_latency = m.histogram("api_request_duration_seconds", "API call latency, by method and code",
                                       ["method", "code"], API_BUCKETS)
        self.converges = m.counter("converges", "converges this controller ran as leader, by outcome", ["outcome"])
        self.converge_seconds = m.histogram("converge_duration_seconds",
                                            "a whole converge: plan and every host pushed", buckets=CONVERGE_BUCKETS)
        self.repairs = m.counter("reconcile_repairs", "drift repaired on a host, by the reason it was looked at",
                                 ["reason"])
        self.leadership_changes = m.counter("leadership_changes", "this controller took or lost the lead",
                                            ["change"])
        self.host_converge = _HostHistograms(HOST_BUCKETS)
        self._snapshot: Snapshot | None = None
        self._snapshot_at = -1e9
        self._snapshot_lock = threading.Lock()
        self._leading = leading or (lambda: False)
        for reason in REPAIR_REASONS:  # present from the start, so rate() sees the first one
            self.repairs.labels(reason)
        for change in ("acquired", "lost"):
            self.leadership_changes.labels(change)
        for outcome in ("ok", "failed"):
            self.converges.labels(outcome)
        m.add(_SnapshotCollector(self))
        m.add_text(self._per_host)

    # ------------------------------------------------------------------ events
    def api_call(self, method: str, code: str, seconds: float) -> None:
        self.api_requests.labels(method, code).inc()
        self.api_latency.labels(method, code).observe(seconds)

    def converged(self, result: ExecutionResult, seconds: float) -> None:
        for host, res in result.results.items():
            if res.attempts:  # pushed (not skipped as down or stopped before it started)
                self.host_converge.observe(host, res.seconds)
        self.converges.labels("ok" if not result.failures else "failed").inc()
        self.converge_seconds.observe(seconds)

    def repaired(self, reason: str) -> None:
        self.repairs.labels(reason if reason in REPAIR_REASONS else "other").inc()

    def leadership(self, change: str) -> None:
        self.leadership_changes.labels(change).inc()

    # ------------------------------------------------------------------ reads
    def snapshot(self, max_age: float = SNAPSHOT_MAX_AGE) -> Snapshot:
        with self._snapshot_lock:
            if self._snapshot is None or time.monotonic() - self._snapshot_at > max_age:
                self._snapshot = read_snapshot(self.store)
                self._snapshot_at = time.monotonic()
                gone = set(self.host_converge._data) - set(self._snapshot.statuses)
                if gone:
                    self.host_converge.forget(gone)
            return self._snapshot

    def leading(self) -> bool:
        return bool(self._leading())

    def _per_host(self) -> str:
        """The families with a series per host, as text (1,000 hosts: ~9,000 lines)."""
        s = self.snapshot()
        name = "l2vpc_host_heartbeat_age_seconds"
        ages = [f'{name}{{host="{escape(label_value(h))}"}} {max(0.0, s.now - s.last_seen[h]):.3f}'
                for h in sorted(s.statuses) if h in s.last_seen]
        return (self.host_converge.text("l2vpc_host_converge_duration_seconds",
                                        "time to converge one host (push and retries), as leader")
                + text_family(name, "gauge", "seconds since the host's last recorded heartbeat", ages))


class _SnapshotCollector(Collector):
    def __init__(self, owner: ControllerMetrics) -> None:
        self.owner = owner

    def describe(self) -> list[object]:
        return []  # families depend on the store; describing would read it at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        owner = self.owner
        s = owner.snapshot()
        hosts = GaugeMetricFamily("l2vpc_hosts", "registered hosts by liveness", labels=["status"])
        up = sum(1 for st in s.statuses.values() if st == "up")
        hosts.add_metric(["up"], up)
        hosts.add_metric(["down"], len(s.statuses) - up)
        yield hosts
        yield GaugeMetricFamily("l2vpc_converge_pending_revisions",
                                "desired-state revisions requested and not converged yet",
                                value=max(0, s.desired - s.converged))
        yield GaugeMetricFamily("l2vpc_converge_failed_hosts", "hosts the last converge failed on",
                                value=s.failed_hosts)
        yield GaugeMetricFamily("l2vpc_leader_term", "the recorded leader's term", value=s.term)
        yield GaugeMetricFamily("l2vpc_leader", "1 when this controller leads", value=1 if owner.leading() else 0)
        bgp = GaugeMetricFamily("l2vpc_direct_connect_bgp_established",
                                "1 when the direct connect's BGP session is established", labels=["direct_connect"])
        learned = GaugeMetricFamily("l2vpc_direct_connect_learned_prefixes",
                                    "prefixes learned from the customer over BGP", labels=["direct_connect"])
        for ident, (established, count) in sorted(s.bgp.items()):
            bgp.add_metric([ident], 1 if established else 0)
            learned.add_metric([ident], count)
        yield bgp
        yield learned
        vpn = GaugeMetricFamily("l2vpc_vpn_tunnel_state", "1 for the VPN tunnel's current state",
                                labels=["vpn", "state"])
        for ident, state in sorted(s.vpn.items()):
            for candidate in VPN_STATES:
                vpn.add_metric([ident, candidate], 1 if state == candidate else 0)
        yield vpn
        pairs = GaugeMetricFamily("l2vpc_overlay_degraded_pairs",
                                  "failing overlay (VPC, host pair) rows the hosts report, by reason",
                                  labels=["reason"])
        for reason, count in sorted(s.overlay_pairs.items()):
            pairs.add_metric([label_value(reason)], count)
        yield pairs
        yield GaugeMetricFamily("l2vpc_overlay_degraded_vpcs", "VPCs with a failing overlay host pair",
                                value=s.overlay_vpcs)


class Readiness:
    """A controller is ready when its store answers a short transaction within `timeout`
    seconds. One check runs at a time: probes arriving while one hangs (a database that does
    not answer) are told so at once instead of piling up threads."""

    def __init__(self, store: Store | PlaneStore, timeout: float = 2.0) -> None:
        self.plane = open_plane(store)
        self.timeout = timeout
        self._running = threading.Lock()

    def _check(self, out: list[str]) -> None:
        try:
            with self.plane.transaction() as p:
                p.clock()
            out.append("")
        except Exception as e:
            first = str(e).splitlines()[0][:200] if str(e) else ""
            out.append(f"{type(e).__name__}: {first}" if first else type(e).__name__)
        finally:
            self._running.release()

    def __call__(self) -> tuple[bool, str]:
        if not self._running.acquire(blocking=False):
            return False, "state store unreachable: the previous check has not returned yet"
        out: list[str] = []
        worker = threading.Thread(target=self._check, args=(out,), name="readyz", daemon=True)
        worker.start()
        worker.join(self.timeout)
        if not out:
            return False, f"state store unreachable: no answer within {self.timeout:g} s"
        if out[0]:
            return False, f"state store unreachable: {out[0]}"
        return True, "state store reachable"
