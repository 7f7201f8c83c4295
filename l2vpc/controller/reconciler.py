"""The leader's reconcile round: liveness, failover, drift, converge. Level-triggered.

Each round compares recorded state with what should be and acts on the difference, so running
it twice, or after a crash half-way, does no harm:

1. desired revision (bumped by every Converge request) vs the converged revision;
2. (each tick, on the liveness thread: `judge`) hosts heard from too long ago → down, heard
   from again → up; services on down hosts move (Engine.set_host_status / evacuate, one
   transaction each). Verdicts never wait for agents: a hung agent's refresh or push cannot
   delay another host's verdict, and once its host is down nobody waits for its calls
   (executor.Abandoned), so the others' pushes go on;
3. (each tick) hosts whose heartbeat says they run something else than their recorded report
   (digest differs, or the agent accepted an older generation than recorded: it restarted
   empty) are re-read ("refreshed"); every `resync_interval` all hosts are;
4. if anything of the above calls for it: plan + execute (Engine.converge) with down hosts
   skipped, then record the converged revision, its failures and what was done (events).

Only the leader runs rounds, and it checks its lease before converging; every recorded write
is fenced by its term (leader.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from l2vpc.controller.contract import HostFailure
from l2vpc.controller.leader import CHANNEL, Elector
from l2vpc.controller.liveness import verdicts
from l2vpc.controller.planestore import Event, Heartbeat
from l2vpc.engine.api import Engine
from l2vpc.engine.errors import L2vpcError
from l2vpc.engine.executor import Abandoned, gather
from l2vpc.engine.model import Host
from l2vpc.engine.planner import Plan
from l2vpc.hostconfig import HostConfig, config_digest
from l2vpc.hostconfig.diff import Change
from l2vpc.observability.logs import request_scope

if TYPE_CHECKING:
    from l2vpc.controller.metrics import ControllerMetrics

log = logging.getLogger(__name__)

DESIRED = "plane:desired"  # sequence: the desired-state revision
CONVERGED_KEY = "converged"  # plane_state: {revision, failures, time, term}
CONVERGING_KEY = "converging"  # plane_state: {revision, hosts, count, since} while a converge runs
MAX_FAILURES = 100
MAX_LISTED = 10
# Why a host was re-read: (reason code, words for the event). Codes are the metrics' labels
# (l2vpc_reconcile_repairs_total{reason}); the words may name generations.
Reason = tuple[str, str]
NO_REASON: Reason = ("", "")


@dataclass
class _Report:
    stamp: tuple[int, float]  # (generation, updated_at) of the recorded report
    digest: str


def describe(changes: Iterable[Change], limit: int = 5) -> str:
    changes = list(changes)
    text = ", ".join(f"{c.action} {c.path}" for c in changes[:limit])
    return text + (f" and {len(changes) - limit} more" if len(changes) > limit else "")


def parse_failures(state: dict[str, Any] | None) -> tuple[HostFailure, ...]:
    out = []
    for f in (state or {}).get("failures") or ():
        if isinstance(f, dict):
            out.append(HostFailure.from_dict(f))
    return tuple(out)


STALL_SECONDS = 5.0  # a gap between liveness checks longer than this (and down_after/2) is a stall

class Reconciler:
    def __init__(self, engine: Engine, elector: Elector, *, down_after: float, resync_interval: float,
                 progress: Callable[[str, str], None],
                 converged: Callable[[int, tuple[HostFailure, ...]], None],
                 abort: threading.Event, stopping: threading.Event,
                 refresh_timeout: float = 5.0, push_timeout: float = 30.0,
                 requests: Callable[[int], str] | None = None) -> None:
        self.engine = engine
        self.store = engine.store
        self.plane = elector.plane
        self.elector = elector
        self.down_after = down_after
        self.resync_interval = resync_interval
        self.refresh_timeout = refresh_timeout
        self.push_timeout = push_timeout
        self._progress = progress
        self._converged = converged
        self._abort = abort  # = engine.stop: set to cut a running converge short
        self._stopping = stopping
        self._reports: dict[str, _Report] = {}
        self._last_observed = 0.0  # store clock of the last liveness check
        self._trust_from = 0.0  # store clock from which missing heartbeats count
        # host -> (accepted generation, digest) of a heartbeat that a refresh did not explain
        # (an agent that counts or hashes differently): not re-read again for the same values.
        self._ignored: dict[str, tuple[int, str]] = {}
        self._refresh_backoff: dict[str, tuple[int, float]] = {}  # host -> (failures, retry at)
        self._next_resync = 0.0  # monotonic; 0: at the first round
        self._retry_at: float | None = None
        self._retry_delay = 1.0
        self._failed: dict[str, str] = {}  # host -> last failure text recorded as an event
        self._stuck: set[str] = set()  # evacuation messages already recorded
        # Shared with the liveness thread (judge): verdicts it drew for the next round to act on.
        self._lock = threading.Lock()
        self._due = False  # a verdict calls for a converge
        self._came_up: set[str] = set()  # to re-read: what they run after coming back
        self.abandoned = Abandoned()  # hosts marked down: their running pushes are not waited for
        self.in_flight: tuple[str, ...] = ()  # hosts of the running converge (local waiters)
        self.converging_revision = 0
        # The request ids a converge of a revision serves (see plane.ClusterPlane._take_requests).
        self._requests = requests or (lambda revision: "")
        self.metrics: ControllerMetrics | None = None

    def reset(self) -> None:
        """Forget what a previous term learned (on taking over): resync at once."""
        self._reports.clear()
        self._ignored.clear()
        self._next_resync = 0.0
        self._retry_at = None
        self.abandoned = Abandoned()

    def unexplained(self, host: str, digest: str) -> bool:
        """A heartbeat's digest is not that of the host's report as this leader last read it:
        drift, or an observation that changed (a BGP session came up). A round should look now."""
        report = self._reports.get(host)
        return bool(digest) and (report is None or report.digest != digest)

    # ------------------------------------------------------------------ the round
    def round(self, full: bool) -> list[Event]:
        """One round (`full`: with drift, else only the revisions); returns the events it
        recorded. Liveness is judged apart (`judge`, on its own thread): a round held up by a
        hung host's refresh or push never delays another host's verdict."""
        events: list[Event] = []
        if not self.elector.check():
            return events
        with self.plane.transaction() as p:
            desired = p.tx.current_sequence(DESIRED)
            state = p.get_state(CONVERGED_KEY) or {}
        converged = int(state.get("revision", 0))
        need = desired > converged
        drift: dict[str, Reason] = {}
        with self._lock:
            need |= self._due
            self._due = False
        if full:
            need |= self._observe(drift, events)
        if self._retry_at is not None and time.monotonic() >= self._retry_at:
            need = True
        if events:
            self._record_events(events)
        if need and not self._stopping.is_set():
            self._converge(desired, drift, events)
        return events

    def judge(self) -> bool:
        """Liveness and failover: hosts heard from too long ago → down (their running pushes
        are no longer waited for), heard from again → up; services on down hosts move.
        Records its events; True when a verdict calls for a converge (the next round runs one)."""
        if not self.elector.check():
            return False
        with self.plane.transaction() as p:
            now = p.clock()
            hosts = p.tx.list("host")
            beats = p.heartbeats()
            gone = beats.keys() - {o.id for o in hosts}
            if gone:  # deregistered hosts (Engine.deregister_host): their heartbeats go too
                p.delete_heartbeats(gone)
                beats = {h: b for h, b in beats.items() if h not in gone}
        # Decoded after the transaction: the store's write lock is not held meanwhile.
        statuses = {o.id: str(o.data.get("status", "up")) for o in hosts}
        # When this leader could not look for a while (the store's write lock held by a long
        # transaction, a pause), heartbeats could not be recorded either: silence in that gap
        # says nothing about the hosts. Count it like a takeover: from now on.
        if self._last_observed and now - self._last_observed > max(self.down_after / 2, STALL_SECONDS):
            self._trust_from = now
        self._last_observed = now
        changes = verdicts(statuses, {h: b.last_seen for h, b in beats.items()}, now, self.down_after,
                           max(self.elector.since, self._trust_from))
        for host, status in statuses.items():
            if status == "up" and host not in changes:  # up again (perhaps under another leader)
                self.abandoned.discard(host)
        events: list[Event] = []
        for host, status in sorted(changes.items()):
            moved = self.engine.set_host_status(host, status, fence=self.elector.fence)
            if status == "down":
                self.abandoned.add(host)
                quiet = now - beats[host].last_seen
                events.append(Event(now, host, f"host down: no heartbeat for {quiet:.1f} s"))
            else:
                self.abandoned.discard(host)
                with self._lock:
                    self._came_up.add(host)
                events.append(Event(now, host, "host up: heartbeats resumed"))
            events.extend(Event(now, host, m) for m in self._unstuck(moved))
        if events:
            self._record_events(events)
        if changes:
            with self._lock:
                self._due = True
        return bool(changes)

    def _unstuck(self, moved: list[str], *, reset: bool = False) -> list[str]:
        """What moved, without evacuation messages already recorded ("X stays on Y")."""
        with self._lock:
            new = [m for m in moved if m not in self._stuck]
            stays = {m for m in moved if " stays on " in m}
            self._stuck = stays if reset else self._stuck | stays
        return new

    def _observe(self, drift: dict[str, Reason], events: list[Event]) -> bool:
        """Periodic failover and drift detection; True when a converge is due."""
        with self.plane.transaction() as p:
            now = p.clock()
            hosts = p.tx.list("host")
            beats = p.heartbeats()
            stamps = p.tx.host_report_stamps()
        statuses = {o.id: str(o.data.get("status", "up")) for o in hosts}
        need = False
        with self._lock:
            came_up, self._came_up = self._came_up, set()
        resync = time.monotonic() >= self._next_resync
        if resync:
            self._next_resync = time.monotonic() + self.resync_interval
            moved = self.engine.evacuate(fence=self.elector.fence)
            events.extend(Event(now, "", m) for m in self._unstuck(moved, reset=True))
            need = True
        self._load_reports(stamps)
        up = [h for h, s in statuses.items() if s == "up"]
        candidates: dict[str, Reason] = {}
        for host in up:
            reason = self._suspect(host, beats.get(host), stamps.get(host))
            if reason[0]:
                candidates[host] = reason
        for host in came_up & set(up):
            candidates.setdefault(host, ("host_came_back", "host came back"))
        if resync:
            for host in up:
                candidates.setdefault(host, NO_REASON)
        if candidates:
            need |= self._refresh(candidates, beats, drift)
        return need

    def _suspect(self, host: str, beat: Heartbeat | None, stamp: tuple[int, float] | None) -> Reason:
        """Why the host may run something else than its recorded report (NO_REASON if none)."""
        if beat is None or beat.converging:
            return NO_REASON
        backoff = self._refresh_backoff.get(host)
        if backoff and time.monotonic() < backoff[1]:
            return NO_REASON
        if self._ignored.get(host) == (beat.accepted_generation, beat.digest):
            return NO_REASON
        report = self._reports.get(host)
        if stamp is None or report is None:
            return ("no_report", "no report recorded") if beat.digest else NO_REASON
        generation, updated_at = stamp
        if beat.last_seen <= updated_at:
            return NO_REASON  # the heartbeat predates the report: it may not show the last push yet
        if beat.accepted_generation < generation:
            if beat.accepted_generation == 0:
                return ("agent_restarted", f"agent restarted empty: it accepted generation 0, recorded {generation}")
            return ("generation_regressed",
                    f"agent went back to generation {beat.accepted_generation}, recorded {generation}")
        if beat.digest and beat.digest != report.digest:
            return ("changed_behind_our_back", "the host runs something else than recorded: changed behind our back")
        return NO_REASON

    def _load_reports(self, stamps: dict[str, tuple[int, float]]) -> None:
        """Digests of recorded reports, re-reading only those that changed since last time."""
        for host in set(self._reports) - set(stamps):
            del self._reports[host]
        changed = [h for h, st in stamps.items() if (r := self._reports.get(h)) is None or r.stamp != st]
        if not changed:
            return
        with self.store.transaction() as tx:
            reports = tx.host_reports(changed)
        for host, rep in reports.items():
            digest = config_digest(HostConfig.from_dict(rep.config))
            self._reports[host] = _Report((rep.generation, rep.updated_at), digest)

    def _refresh(self, candidates: dict[str, Reason], beats: dict[str, Heartbeat],
                 drift: dict[str, Reason]) -> bool:
        """Re-read the candidates' agents concurrently and record what they run; fills `drift`
        (host -> reason) for hosts whose report changed. True when any did."""
        with self.store.transaction() as tx:
            stored = tx.get_many("host", candidates)
        hosts = {o.id: Host.model_validate(o.data) for o in stored}
        names = sorted(hosts)

        def read(name: str) -> HostConfig:
            return self.engine.agents.client(hosts[name]).report(self.refresh_timeout)

        got: dict[str, HostConfig] = {}
        pool = ThreadPoolExecutor(max_workers=max(1, min(16, len(names))))
        try:
            # Each read has its own deadline (refresh_timeout); a host marked down meanwhile
            # is not waited for at all.
            done, _ = gather({name: pool.submit(read, name) for name in names}, self.abandoned)
        finally:
            pool.shutdown(wait=False)
        for name, fut in sorted(done.items()):
            try:
                got[name] = fut.result()
                self._refresh_backoff.pop(name, None)
            except Exception as e:  # unreachable: liveness, not refresh, judges the host
                failures = self._refresh_backoff.get(name, (0, 0.0))[0] + 1
                self._refresh_backoff[name] = (failures, time.monotonic() + min(30.0, 2.0 ** failures))
                log.info("refresh of %s failed: %s", name, e)
        if not got:
            return False
        with self.store.transaction() as tx:
            for name, cfg in got.items():
                tx.put_host_report(name, cfg.generation, cfg.to_dict())
            stamps = tx.host_report_stamps()
        changed = False
        for name, cfg in got.items():
            digest = config_digest(cfg)
            before = self._reports.get(name)
            beat = beats.get(name)
            if name in stamps:  # what we just wrote: no need to read it back next tick
                self._reports[name] = _Report(stamps[name], digest)
            if before is None or before.digest != digest:
                changed = True
                if candidates[name][0]:
                    drift[name] = candidates[name]
                elif before is not None:
                    drift[name] = ("periodic_resync", "found by the periodic resync")
            elif beat is not None and candidates[name][0]:
                self._ignored[name] = (beat.accepted_generation, beat.digest)
        return changed

    # ------------------------------------------------------------------ converge
    def _converge(self, desired: int, drift: dict[str, Reason], events: list[Event]) -> int | None:
        # Logs and pushes carry the ids of the requests this converge serves (or one of its own).
        with request_scope(self._requests(desired) or None):
            return self._converge_now(desired, drift, events)

    def _converge_now(self, desired: int, drift: dict[str, Reason], events: list[Event]) -> int | None:
        # Clear the abort flag before checking the lease: losing it from now on (noticed by
        # the heartbeat flusher) sets the flag again and cuts the pushes short.
        self._abort.clear()
        if self._stopping.is_set() or not self.elector.check():
            return None
        self.converging_revision = desired
        started = time.monotonic()
        plan_ops: dict[str, tuple[Change, ...]] = {}

        def on_plan(p: Plan) -> None:
            nonlocal plan_ops
            plan_ops = {h: hp.changes for h, hp in p.hosts.items() if hp.changes}
            self.in_flight = tuple(sorted(plan_ops))
            if plan_ops:
                with self.plane.transaction() as ptx:
                    self.elector.fence(ptx.tx)
                    ptx.put_state(CONVERGING_KEY, {"revision": desired, "hosts": list(self.in_flight[:MAX_LISTED]),
                                                   "count": len(plan_ops), "since": ptx.clock()})

        def progress(host: str, message: str) -> None:
            if message == "converged":
                self.in_flight = tuple(h for h in self.in_flight if h != host)
            self._progress(host, message)

        try:
            _plan, result = self.engine.converge(progress=progress, retries=2, timeout=self.push_timeout,
                                                 on_plan=on_plan, abandoned=self.abandoned)
        finally:
            self.in_flight = ()
        failures = tuple(result.failures)
        with self.plane.transaction() as p:
            self.elector.fence(p.tx)
            now = p.clock()
            new: list[Event] = []
            for host, (code, reason) in sorted(drift.items()):
                ops = plan_ops.get(host, ())
                res = result.results.get(host)
                if not ops:
                    continue
                if res is not None and res.ok:
                    new.append(Event(now, host, f"drift repaired: {describe(ops)}; cause: {reason}"))
                    if self.metrics is not None:
                        self.metrics.repaired(code)
                else:
                    why = f"{res.step}: {res.error}" if res is not None else "not pushed"
                    new.append(Event(now, host, f"drift found, repair failed: {why}; cause: {reason}"))
            for f in failures:
                text = f"converge failed: {f.step}: {f.detail}"
                # A down host's failure is its "host down" event already.
                if f.step != "down" and self._failed.get(f.host) != text:
                    new.append(Event(now, f.host, text))
            p.put_state(CONVERGED_KEY, {
                "revision": desired, "term": self.elector.term, "time": now,
                "seconds": round(time.monotonic() - started, 3),
                "failures": [f.to_dict() for f in failures[:MAX_FAILURES]],
            })
            if plan_ops:
                p.put_state(CONVERGING_KEY, {})
            if new:
                p.add_events(new)
            p.notify(CHANNEL, f"converged:{desired}")
        self._failed = {f.host: f"converge failed: {f.step}: {f.detail}" for f in failures}
        events.extend(new)
        seconds = time.monotonic() - started
        if self.metrics is not None:
            self.metrics.converged(result, seconds)
        if plan_ops or failures:
            log.info("revision %d converged: %d hosts changed, %d failures in %.2f s", desired, len(plan_ops),
                     len(failures), seconds)
        retry = [f for f in failures if f.code not in ("down", "stopped")]
        if retry:
            self._retry_at = time.monotonic() + self._retry_delay
            self._retry_delay = min(self._retry_delay * 2, 30.0)
        else:
            self._retry_at, self._retry_delay = None, 1.0
        self._converged(desired, failures)
        return desired

    def _record_events(self, events: list[Event]) -> None:
        try:
            with self.plane.transaction() as p:
                p.add_events(events)
        except L2vpcError as e:
            log.warning("could not record %d events: %s", len(events), e)
