"""ClusterPlane: the controller's control loop behind contract.ControlPlane.

Every controller of a store runs one. All of them take agents' registrations and heartbeats
and answer Converge and Status; one of them, the leader (leader.py), runs the reconcile
rounds (reconciler.py) that mark hosts down/up, move services, repair drift and push configs.

Threads (besides the callers'):
- the loop: tries to lead once per `tick`; while leading, a full round every tick and a quick
  round (desired vs converged revision only) whenever it is woken;
- liveness: on the leader, up/down verdicts every `tick` (Reconciler.judge), apart from the
  loop so that a round waiting on a hung agent delays no other host's verdict;
- the flusher: writes buffered heartbeats in one statement per flush (liveness.py) and, on the
  leader, checks the lock and renews the lease;
- on PostgreSQL a listener (LISTEN/NOTIFY) that wakes the leader when a Converge is requested
  anywhere and wakes waiters when the leader records a converged revision.

Waking: `request_converge` bumps the desired revision in the store and NOTIFYs in the same
transaction; the leader is woken at once when it runs in the same process, through the
notification otherwise. Without notifications (SQLite) the leader polls the desired revision
every 50 ms and waiters poll the converged one. One converge covers every revision requested
before it read the desired revision, so a burst of requests costs one converge.

Longer than most modules (~560 lines) because the four threads above share one lock, one
stop event and the leadership state: split apart they would pass those around. The next
split, when it grows again: the PostgreSQL listener and the heartbeat flusher in modules of
their own, started with the shared state as an object.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from l2vpc.controller.contract import (
    ConvergeOutcome,
    HostFailure,
    HostLiveness,
    OverlayPair,
    PlaneStatus,
    Progress,
    ReconcileEvent,
)
from l2vpc.controller.enrollment import Refused, admit
from l2vpc.controller.leader import CHANNEL, Elector, LeaderRecord, LostLeadership, read_leader
from l2vpc.controller.liveness import Beat, HeartbeatBuffer, check_heartbeat
from l2vpc.controller.planestore import Event, Heartbeat, PlaneStore, Subscription, open_plane
from l2vpc.controller.reconciler import (
    CONVERGED_KEY,
    CONVERGING_KEY,
    DESIRED,
    MAX_LISTED,
    Reconciler,
    parse_failures,
)
from l2vpc.engine import overlay
from l2vpc.engine.api import Engine
from l2vpc.engine.errors import L2vpcError, NotFoundError, TemporaryError, ValidationError
from l2vpc.engine.executor import AgentPool
from l2vpc.engine.kinds.context import dump, host_of
from l2vpc.engine.model import VPC, Host, parse
from l2vpc.engine.secrets import SecretBox
from l2vpc.engine.store.base import Store
from l2vpc.observability.logs import clean, current_request_id, join_ids

if TYPE_CHECKING:
    from l2vpc.controller.metrics import ControllerMetrics

log = logging.getLogger(__name__)

POLL = 0.05  # revision polling without notifications (SQLite)
SLOW_POLL = 1.0  # re-reading the converged revision although notifications should tell
VIEW_MAX_AGE = 0.5  # waiters share one read of the plane's records per this many seconds
CLOCK_EVERY = 60.0  # re-measure the store clock's offset this often
MAX_PENDING_REQUESTS = 256  # request ids kept for the next converge


def _positive(field: str, value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ValidationError(f"must be a positive number of seconds, got {value!r}", path=field)
    return float(value)


@dataclass(frozen=True)
class _View:
    """The plane's shared records as last read (for waiters that do not lead)."""

    read_at: float  # monotonic
    now: float  # store clock at the read
    leader: LeaderRecord | None
    converging: dict[str, Any]


def read_status(store: Store | PlaneStore, controller_id: str = "") -> PlaneStatus:
    """What Status shows, read from the store (any controller, leading or not)."""
    plane = open_plane(store)
    with plane.transaction() as p:
        now = p.clock()
        leader = read_leader(p)
        desired = p.tx.current_sequence(DESIRED)
        converged = p.get_state(CONVERGED_KEY) or {}
        stored = p.tx.list("host")
        beats = p.heartbeats()
        events = p.events(200)
    hosts = [(o.id, str(o.data.get("status", "up"))) for o in stored]  # decoded outside the lock
    live = leader is not None and now < leader.expires
    with plane.store.transaction() as tx:  # VPCs have no secret fields to open
        vpcs = [VPC.model_validate(o.data) for o in tx.list("vpc")]
        pairs = overlay.degraded_pairs(tx, overlay.index_for(plane.store), vpcs)
    return PlaneStatus(
        controller=controller_id,
        leader=leader.id if live and leader else "",
        term=leader.term if leader else 0,
        desired_revision=desired,
        converged_revision=int(converged.get("revision", 0)),
        hosts=tuple(HostLiveness(n, s, beats[n].last_seen if n in beats else 0.0) for n, s in hosts),
        recent=tuple(ReconcileEvent(e.time, e.host, e.what) for e in events),
        overlay=tuple(OverlayPair(o.vpc_name, o.vpc_id, o.host, o.peer_host, o.peer_ip, o.reason, o.path_mtu,
                                  o.needed_mtu, o.describe())
                      for v in sorted(vpcs, key=lambda v: v.name) for o in pairs.get(v.id, ())),
    )


DEFAULT_MAX_HEARTBEAT_RATE = 150.0  # heartbeats/s the cluster is paced to (see agent_interval)
# A heartbeat whose digest changed is flushed at once and the leader looks at it in a round of
# its own (a session that came up routes in a second, not at the next flush and tick); a burst
# of them costs at most one flush per EARLY_FLUSH_GAP and one extra round per MIN_ROUND_GAP.
EARLY_FLUSH_GAP = 0.1
MIN_ROUND_GAP = 0.2

class ClusterPlane:
    """contract.ControlPlane for one controller; see the module docstring."""

    def __init__(self, store: Store | PlaneStore, agents: AgentPool, secrets: SecretBox, *, controller_id: str,
                 heartbeat_interval: float = 2.0, down_after: float | None = None,
                 resync_interval: float = 30.0, tick: float = 1.0,
                 max_heartbeat_rate: float = DEFAULT_MAX_HEARTBEAT_RATE) -> None:
        if not isinstance(controller_id, str) or not controller_id.strip() or len(controller_id) > 200:
            raise ValidationError(f"must be a non-empty name of at most 200 characters, got {controller_id!r}",
                                  path="controller_id")
        self.heartbeat_interval = _positive("heartbeat_interval", heartbeat_interval)
        self.down_after = _positive("down_after", 3 * self.heartbeat_interval if down_after is None else down_after)
        if self.down_after <= self.heartbeat_interval:
            raise ValidationError(f"must be longer than heartbeat_interval ({self.heartbeat_interval:g} s), "
                                  f"got {self.down_after:g}", path="down_after")
        self.resync_interval = _positive("resync_interval", resync_interval)
        self.max_heartbeat_rate = _positive("max_heartbeat_rate", max_heartbeat_rate)
        self.tick = _positive("tick", tick)
        self.controller_id = controller_id
        self.plane = open_plane(store)
        self.store = self.plane.store
        self.engine = Engine(self.store, agents, secrets=secrets)
        # Flush at least twice per heartbeat interval: a live host's recorded heartbeat is
        # then never older than interval + flush, well inside down_after.
        self.flush_every = min(1.0, self.heartbeat_interval / 2)
        self.elector = Elector(self.plane, controller_id, lease_seconds=max(5 * self.flush_every, 3 * self.tick, 2.0))
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._flush_soon = threading.Event()  # a changed digest waits in the buffer
        self._round_due = threading.Event()  # the leader: a full round now (a changed digest recorded)
        self._buffer = HeartbeatBuffer()
        self._known: set[str] = set()
        self._known_lock = threading.Lock()
        self._cv = threading.Condition()
        self._converged: tuple[int, tuple[HostFailure, ...]] = (0, ())
        self._subs: list[queue.SimpleQueue[tuple[str, str]]] = []
        self._subs_lock = threading.Lock()
        self._view: _View | None = None
        self._view_lock = threading.Lock()
        self._offset = 0.0  # store clock - time.time()
        self._offset_at = -math.inf
        self._threads: list[threading.Thread] = []
        self._listener: Subscription | None = None
        self._started = False
        self._requests: list[tuple[int, str]] = []  # (revision, request id) waiting for a converge
        self._requests_lock = threading.Lock()
        self.metrics: ControllerMetrics | None = None  # set by the server when metrics are on
        self.reconciler = Reconciler(
            self.engine, self.elector, down_after=self.down_after, resync_interval=self.resync_interval,
            progress=self._fan_out, converged=self._set_converged, abort=self.engine.stop,
            stopping=self._stopping, requests=self._take_requests,
        )

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._started:
            return
        self._started = True
        with self.plane.transaction() as p:
            self._offset, self._offset_at = p.clock() - time.time(), time.monotonic()
            known = {o.id for o in p.tx.list("host")}
            state = p.get_state(CONVERGED_KEY)
        with self._known_lock:
            self._known |= known
        self._pace()
        if state:
            self._set_converged(int(state.get("revision", 0)), parse_failures(state))
        self._listener = self.plane.listen(CHANNEL, self._on_notify)
        for name, target in (("loop", self._run), ("liveness", self._liveness_loop), ("flush", self._flush_loop)):
            t = threading.Thread(target=target, name=f"plane-{name}-{self.controller_id}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        """Stop the loop (a running converge is cut short: hosts keep what they got and the
        next leader carries on), write the last heartbeats, step down."""
        self._stopping.set()
        self.engine.stop.set()
        self._wake.set()
        self._flush_soon.set()
        for t in self._threads:
            t.join(timeout=60)
        self._threads.clear()
        if self._started:
            self._flush()
            self.elector.resign()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._cv:
            self._cv.notify_all()

    @property
    def leading(self) -> bool:
        return self.elector.leading

    def attach_metrics(self, metrics: ControllerMetrics) -> None:
        """Count converges, repairs and leadership changes into `metrics` from now on."""
        self.metrics = self.reconciler.metrics = self.elector.metrics = metrics

    # ------------------------------------------------------------------ agents
    def register(self, host: Host | Mapping[str, Any]) -> float:
        if isinstance(host, Host):
            h = host
        elif isinstance(host, Mapping):
            h = parse(Host, dict(host))
        else:
            raise ValidationError(f"must be a host document, got {type(host).__name__}", path="host")
        h = self.engine.register_host(h, keep_status=True)
        with self._known_lock:
            self._known.add(h.name)
        self._pace()
        # Counts as a heartbeat. Generation 0 and no digest: the leader re-reads the host,
        # as an agent that (re)starts may have lost its config.
        self._buffer.add(h.name, Beat(time.time(), 0, 0, False, ""))
        return self.agent_interval

    def register_agent(self, host: Host, given: Iterable[str]) -> float:
        """An agent's registration (enrollment.py): only an enrolled host, only with its enrolled
        identity; refreshes the agent address and counts as a heartbeat. A refusal
        (enrollment.Refused) records an event and changes nothing else."""
        try:
            with self.plane.transaction() as p:
                so = p.tx.get("host", host.name)
                enrolled = host_of(so) if so is not None else None
                admitted = admit(enrolled, host, given)
                if so is not None and enrolled is not None:
                    if enrolled.status == "down" and enrolled.agent_address is None:
                        # Enrolled and never heard from: up at its first registration, as a
                        # host registered without enrollment used to be.
                        admitted = admitted.model_copy(update={"status": "up"})
                    if dump(admitted) != so.data:
                        p.tx.update("host", host.name, dump(admitted), so.generation)
        except Refused as e:
            log.warning("registration of host %s refused: %s", host.name, e)
            with self.plane.transaction() as p:
                p.add_events([Event(p.clock(), host.name, f"registration refused: {e}")])
            raise
        with self._known_lock:
            self._known.add(host.name)
        self._pace()
        self._buffer.add(host.name, Beat(time.time(), 0, 0, False, ""))
        return self.agent_interval

    def heartbeat(self, host: str, accepted_generation: int, converged_generation: int,
                  converging: bool, actual_digest: str) -> float:
        check_heartbeat(host, accepted_generation, converged_generation, converging, actual_digest)
        with self._known_lock:
            known = host in self._known
        if not known:
            with self.store.transaction() as tx:
                found = tx.get("host", host) is not None
            if not found:
                raise NotFoundError("host", host)
            with self._known_lock:
                self._known.add(host)
            self._pace()
        changed = self._buffer.add(host, Beat(time.time(), accepted_generation, converged_generation, converging,
                                              actual_digest))
        # Another controller's leader cannot be asked what it recorded: it judges (see _flush).
        if changed and (not self.elector.leading or self.reconciler.unexplained(host, actual_digest)):
            self._flush_soon.set()
        return self.agent_interval

    # Heartbeats cost the controller ~0.7 ms of CPU each, nearly all of it gRPC's; a fixed
    # interval would make that load grow with the fleet. Agents are told an interval that keeps
    # the cluster at most `max_heartbeat_rate` heartbeats/s (never shorter than
    # `heartbeat_interval`), and a host counts as down after as many missed beats as configured.
    @property
    def agent_interval(self) -> float:
        with self._known_lock:
            hosts = len(self._known)
        return max(self.heartbeat_interval, hosts / self.max_heartbeat_rate)

    def _pace(self) -> None:
        interval = self.agent_interval
        self.reconciler.down_after = self.down_after * interval / self.heartbeat_interval

    def _flush_loop(self) -> None:
        while not self._stopping.is_set():
            early = self._flush_soon.wait(self.flush_every)
            self._flush_soon.clear()
            if self._stopping.is_set():
                return
            try:
                self._flush(early)
            except Exception:
                log.exception("heartbeat flush failed")
            if early:
                self._stopping.wait(EARLY_FLUSH_GAP)

    def _flush(self, early: bool = False) -> None:
        """Write buffered heartbeats (one statement) and, when leading, renew the lease.
        `early`: a changed digest is among them: the leader runs a full round at once (told
        by a notification when it is another controller)."""
        beats = self._buffer.drain()
        leading = self.elector.leading
        if leading and not self.elector.check():
            self._lost()
            leading = False
        if not beats and not leading:
            return
        lost = False
        try:
            with self.plane.transaction() as p:
                if time.monotonic() - self._offset_at > CLOCK_EVERY:
                    self._offset, self._offset_at = p.clock() - time.time(), time.monotonic()
                unknown: set[str] = set()
                if beats:
                    unknown = p.put_heartbeats([
                        Heartbeat(h, b.received + self._offset, b.accepted_generation, b.converged_generation,
                                  b.converging, b.digest, self.controller_id) for h, b in beats.items()])
                    if early and not leading:
                        p.notify(CHANNEL, "beat")
                if leading:
                    try:
                        self.elector.renew(p, time.time() + self._offset)
                    except LostLeadership:
                        lost = True
        except L2vpcError as e:
            if not isinstance(e, ValidationError):
                self._buffer.restore(beats)
            log.warning("could not record %d heartbeats: %s", len(beats), e)
            return
        if lost:
            self._lost()
        elif early and beats and leading:
            self._ask_round()
        if unknown:  # deregistered meanwhile: their next heartbeat is refused
            with self._known_lock:
                self._known -= unknown

    def _lost(self) -> None:
        """Leadership is gone: stop pushing at once (a successor may already be)."""
        self.elector.drop()
        self.engine.stop.set()
        self._wake.set()

    # ------------------------------------------------------------------ the loop
    def _ask_round(self) -> None:
        """The leader's loop runs a full round now (at most one per MIN_ROUND_GAP)."""
        self._round_due.set()
        self._wake.set()

    def _run(self) -> None:
        next_full = last_full = 0.0
        while not self._stopping.is_set():
            delay = self.tick
            with self._failures("reconcile round"):
                if not self.elector.leading and self.elector.try_acquire():
                    self.reconciler.reset()
                    next_full = 0.0
                    self._refresh_view(0)
                if self.elector.leading:
                    now = time.monotonic()
                    if self._round_due.is_set():
                        self._round_due.clear()
                        next_full = min(next_full, last_full + MIN_ROUND_GAP)
                    full = now >= next_full
                    if full:
                        last_full, next_full = now, now + self.tick
                    self.reconciler.round(full)
                    delay = max(0.0, next_full - time.monotonic())
                    if self._listener is None:
                        delay = min(delay, POLL)
            self._wake.wait(delay)
            self._wake.clear()

    def _liveness_loop(self) -> None:
        """Verdicts on their own thread: the loop's round may wait on a hung agent (a refresh,
        a push) and must not hold back other hosts' down verdicts meanwhile."""
        while not self._stopping.is_set():
            with self._failures("liveness check"):
                if self.elector.leading and self.reconciler.judge():
                    self._wake.set()  # the loop converges with the new statuses
            self._stopping.wait(self.tick)

    @contextmanager
    def _failures(self, what: str) -> Iterator[None]:
        """A failed pass of a loop is logged and the loop goes on; lost leadership stops pushing."""
        try:
            yield
        except LostLeadership as e:
            log.warning("%s", e)
            self._lost()
        except L2vpcError as e:
            log.warning("%s failed: %s", what, e)
        except Exception:
            log.exception("%s failed", what)

    def _on_notify(self, payload: str | None) -> None:
        """From the listener thread: a hint to re-read, never the data itself."""
        try:
            kind, _, value = (payload or "").partition(":")
            if payload is None:
                self._wake.set()
                self._refresh_view(0)
            elif kind == "desired" and self.elector.leading:
                revision, _, rid = value.partition(":")
                if revision.isdigit() and clean(rid):
                    self._note_request(int(revision), clean(rid))
                self._wake.set()
            elif kind == "converged" and value.isdigit() and int(value) > self._converged[0]:
                self._refresh_view(0)
            elif kind == "leader" and not self.elector.leading:
                self._wake.set()
            elif kind == "beat" and self.elector.leading:  # another controller recorded a changed digest
                self._ask_round()
        except Exception as e:  # a lost notification only delays: waiters re-read on their own
            log.info("notification %r not handled: %s", payload, e)

    # ------------------------------------------------------------------ converge
    def request_converge(self) -> int:
        rid = current_request_id()
        with self.plane.transaction() as p:
            revision = p.tx.next_sequence(DESIRED)
            p.notify(CHANNEL, f"desired:{revision}:{rid}" if rid else f"desired:{revision}")
        if rid:
            self._note_request(revision, rid)
        if self.elector.leading:
            self._wake.set()
        return revision

    # The ids of the requests a converge serves (l2vpc.observability.logs): noted here when the
    # request came to this controller, from the notification when it came to another, taken by
    # the leader's converge of a revision at least as new. Best effort: an id missed only
    # means that converge logs under an id of its own.
    def _note_request(self, revision: int, rid: str) -> None:
        with self._requests_lock:
            self._requests.append((revision, rid))
            del self._requests[:-MAX_PENDING_REQUESTS]

    def _take_requests(self, revision: int) -> str:
        with self._requests_lock:
            taken = [rid for rev, rid in self._requests if rev <= revision]
            self._requests = [(rev, rid) for rev, rid in self._requests if rev > revision]
        return join_ids(taken)

    def wait_converged(self, revision: int, timeout: float, progress: Progress | None,
                       cancelled: Callable[[], bool]) -> ConvergeOutcome:
        if type(revision) is not int or revision < 0:
            raise ValidationError(f"must be a revision from request_converge, got {revision!r}", path="revision")
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not timeout >= 0:
            raise ValidationError(f"must be a number of seconds >= 0, got {timeout!r}", path="timeout")
        deadline = time.monotonic() + timeout
        inbox: queue.SimpleQueue[tuple[str, str]] | None = None
        if progress is not None:
            inbox = queue.SimpleQueue()
            with self._subs_lock:
                self._subs.append(inbox)
        try:
            if self._converged[0] < revision:
                self._refresh_view(0)
            last_note = ""
            next_note = time.monotonic()
            while True:
                converged, failures = self._converged
                # Progress is queued before the converge is recorded: all of it is in the
                # inbox once the revision shows as converged.
                if inbox is not None and progress is not None:
                    while not inbox.empty():
                        progress(*inbox.get_nowait())
                if converged >= revision:
                    return ConvergeOutcome(converged, failures)
                if self._stopping.is_set():
                    raise TemporaryError(f"controller {self.controller_id} is stopping: {self._why(revision)}")
                if cancelled():
                    raise TemporaryError(f"stopped waiting: {self._why(revision)}; the converge goes on")
                now = time.monotonic()
                if now >= deadline:
                    raise TemporaryError(f"timed out after {timeout:g} s: {self._why(revision)}")
                if not self.elector.leading:
                    poll = SLOW_POLL if self._listener is not None else POLL
                    self._refresh_view(poll)
                    if progress is not None and now >= next_note:
                        note = self._coarse(revision)
                        if note != last_note:
                            progress("", note)
                            last_note = note
                        next_note = now + 1.0
                with self._cv:
                    if self._converged[0] < revision and not self._stopping.is_set():
                        self._cv.wait(timeout=min(POLL, max(0.0, deadline - now)))
        finally:
            if inbox is not None:
                with self._subs_lock:
                    self._subs.remove(inbox)

    def _fan_out(self, host: str, message: str) -> None:
        """Executor progress (from its threads) to the waiters of this process."""
        with self._subs_lock:
            subs = list(self._subs)
        for inbox in subs:
            inbox.put((host, message))

    def _set_converged(self, revision: int, failures: tuple[HostFailure, ...]) -> None:
        with self._cv:
            if revision > self._converged[0]:
                self._converged = (revision, failures)
                self._cv.notify_all()

    def _refresh_view(self, max_age: float) -> _View:
        """The leader record, the converging hosts and the converged revision, read at most
        once per `max_age` for all waiters of this process."""
        with self._view_lock:
            view = self._view
            if view is not None and time.monotonic() - view.read_at < max_age:
                return view
            with self.plane.transaction() as p:
                now = p.clock()
                leader = read_leader(p)
                converging = p.get_state(CONVERGING_KEY) or {}
                state = p.get_state(CONVERGED_KEY)
            view = self._view = _View(time.monotonic(), now, leader, converging)
        if state:
            self._set_converged(int(state.get("revision", 0)), parse_failures(state))
        return view

    def _coarse(self, revision: int) -> str:
        view = self._refresh_view(VIEW_MAX_AGE)
        leader = view.leader
        if leader is None or view.now >= leader.expires:
            return f"waiting for a controller to lead (revision {revision})"
        hosts = view.converging.get("hosts") or []
        if hosts:
            return (f"leader {leader.id} is converging revision {view.converging.get('revision')} on "
                    f"{view.converging.get('count', len(hosts))} hosts")
        return f"waiting for leader {leader.id} to converge revision {revision}"

    def _why(self, revision: int) -> str:
        """What is missing for `revision` (the message of a timeout or cancel)."""
        try:
            view = self._refresh_view(0.2)
        except L2vpcError as e:
            return f"revision {revision} is not converged; the state store is unreachable ({e})"
        converged = self._converged[0]
        tail = f"waiting for revision {revision} (converged: {converged})"
        if self.elector.leading:
            hosts = list(self.reconciler.in_flight)
            if hosts:
                return f"still converging: hosts {_names(hosts)} (leader {self.controller_id}); {tail}"
            return f"leader {self.controller_id} has not converged revision {revision} yet; {tail}"
        leader = view.leader
        if leader is None:
            return f"no controller is leading; {tail}"
        if view.now >= leader.expires:
            return (f"no controller is leading (the lease of the last leader, {leader.id}, term {leader.term}, "
                    f"expired {view.now - leader.expires:.0f} s ago); {tail}")
        hosts = [str(h) for h in view.converging.get("hosts") or []]
        if hosts:
            count = int(view.converging.get("count", len(hosts)))
            return f"still converging: hosts {_names(hosts, count)} (leader {leader.id}); {tail}"
        return f"leader {leader.id} has not converged revision {revision} yet; {tail}"

    # ------------------------------------------------------------------ status
    def status(self) -> PlaneStatus:
        return read_status(self.plane, self.controller_id)


def _names(hosts: list[str], count: int | None = None) -> str:
    count = len(hosts) if count is None else count
    shown = ", ".join(hosts[:MAX_LISTED])
    return shown + (f" and {count - len(hosts[:MAX_LISTED])} more" if count > len(hosts[:MAX_LISTED]) else "")
