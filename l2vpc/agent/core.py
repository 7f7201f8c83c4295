"""The host agent's logic, without gRPC: one driver, generations, persistence, health.

    agent = Agent(driver, state_dir, driver_name="linux")   # loads the persisted config
    agent.start()                        # re-converge it in the background; pushes queue behind
    outcome = agent.push(config)         # converged | failed | rejected | stale
    agent.close()                        # the dataplane keeps running

`Agent` serialises converges (the driver is used from one thread at a time), refuses stale
generations, rejects invalid configs without touching the host, and persists every accepted
config (JSON, 0600, atomic) before converging it, so an agent killed in the middle of a converge
finishes the job when it comes back. At start it re-converges the persisted config; since
converging is idempotent, segments that did not change see no change at all (no traffic loss).
Without a persisted config it touches nothing and waits for a push. With `state_dir=None` it
keeps its config in memory only (in-process agents, see local.py).

Pod ports are realised once a CNI ADD bound them to their Pod's namespace (pods.py: the driver
converges to the pushed config with bound pod ports carrying their sandbox, unbound ones left
out). What the agent reports lists the unbound ones too, without a sandbox: they are placed here
and wait for their Pod, so the engine sees nothing to change and calls them pending.

Logs name generations, counts and failure paths, never config contents (configs carry keys,
and the state file is the only place they are written).

`actual_digest` is what heartbeats carry (heartbeat.py), computed from facts read at most every
so often and after every converge (from a converge's facts only when first asked for: a push
from the engine needs none, and hashing is a large part of a small converge).

Overlay health (overlay_probe.py): with `attach_overlay(prober)`, every accepted config tells
the prober which VXLAN peers to probe, and what the host reports carries its failing pairs as
observations `overlay:<peer>` besides the driver's.

Secrets: a push carries them (a VPN's psk, a BGP md5_key, a circuit key); the persisted config
keeps them (`to_dict(secrets=True)`, 0600), because a restarted agent must re-apply them.
Observations in a push are ignored (they are the agent's to report).
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from l2vpc.agent.drivers.base import ConvergeResult, Driver
from l2vpc.agent.pods import PodBindings
from l2vpc.agent.virtual_servers import VirtualServers
from l2vpc.hostconfig import HostConfig, Observation, config_digest
from l2vpc.hostconfig.diff import Action
from l2vpc.hostconfig.failures import Failure, split_reason
from l2vpc.pki import write_private

log = logging.getLogger("l2vpc.agent")

STATE_FILE = "desired.json"
LOCK_FILE = "agent.lock"
STATE_FORMAT = 1


class ObservationSource(Protocol):
    """Something beside the driver that watches the host and reports observations (the overlay
    prober): told every accepted config, asked what it sees now."""

    def configure(self, cfg: HostConfig) -> None: ...

    def observations(self) -> tuple[Observation, ...]: ...


class AgentError(Exception):
    """The agent cannot start or cannot keep its promises (state dir unusable, address taken)."""


@dataclass(frozen=True, slots=True)
class PushOutcome:
    status: str  # converged | failed | rejected | stale
    actions: tuple[Action, ...] = ()
    failures: tuple[Failure, ...] = ()
    actual: HostConfig | None = None
    accepted_generation: int = 0
    seconds: float = 0.0


@dataclass
class _LastConverge:
    ok: bool = False
    failures: tuple[Failure, ...] = ()
    finished_unix: float = 0.0
    seconds: float = 0.0
    generation: int = 0


@dataclass
class Health:
    host: str
    driver: str
    accepted_generation: int
    converged_generation: int
    converging: bool
    last_ok: bool
    last_failures: tuple[Failure, ...]
    last_unix: float
    last_seconds: float
    uptime: float
    pid: int = field(default_factory=os.getpid)


class Agent:
    """`durable=False` skips the fsyncs of the persisted config: for simulated hosts (a fleet of
    hundreds in one process), whose state does not outlive the machine's uptime anyway."""

    def __init__(self, driver: Driver, state_dir: Path | None, driver_name: str = "", *,
                 durable: bool = True, virtual_servers: str = "tap") -> None:
        self.driver = driver
        self.state_dir = state_dir
        self.driver_name = driver_name or type(driver).__name__
        self.durable = durable
        # The digest of the facts read last (by a converge or by actual_digest), when, and those
        # facts: config_digest costs several times a memory driver's facts, so unchanged facts
        # (compared as values) keep their digest. None: not computed yet for `_digest_of`.
        self._digest: str | None = ""
        self._digest_at = float("-inf")
        self._digest_of: HostConfig | None = None
        self._converge_lock = threading.Lock()  # one converge (and driver call) at a time
        self._status_lock = threading.Lock()  # guards the fields below; never held for long
        self._desired: HostConfig | None = None
        self._converging = False
        self._last = _LastConverge()
        self._started = time.monotonic()
        self._resync_pending = False
        self._lock_fd: int | None = None
        self._converged_once = False
        # Called (status, seconds) after every converge: the agent's metrics (metrics.py).
        self.on_converge: Callable[[str, float], None] | None = None
        self._watchers: list[ObservationSource] = []
        self.pods = PodBindings(state_dir)
        self.vms = VirtualServers(state_dir, virtual_servers)
        if state_dir is not None:
            self._prepare_state_dir(state_dir)
            self._load_persisted()

    # -- lifecycle ----------------------------------------------------------------------

    def _prepare_state_dir(self, state_dir: Path) -> None:
        try:
            # 0711: helpers the driver starts as `nobody` (dnsmasq) must reach their files
            # below; our own files are 0600, and listing the directory stays root's.
            state_dir.mkdir(mode=0o711, parents=True, exist_ok=True)
            os.chmod(state_dir, 0o711)
            fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise AgentError(f"state dir {state_dir}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise AgentError(
                f"state dir {state_dir} is in use by another agent (pid {other or 'unknown'})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _load_persisted(self) -> None:
        """Adopt the persisted config as the accepted one (before serving, so stale checks hold)."""
        persisted = self._load()
        if persisted is None:
            log.info("no persisted config in %s; waiting for a push", self.state_dir)
            return
        reasons = self.driver.rejections(persisted)
        if reasons:
            log.error("persisted config (generation %d) does not fit this agent, not applying it: %s",
                      persisted.generation, "; ".join(reasons))
            return
        self._desired = persisted
        self._resync_pending = True

    def attach_overlay(self, source: ObservationSource) -> None:
        """Report what `source` observes from now on, and tell it every accepted config."""
        self._watchers.append(source)
        desired = self.desired
        if desired is not None:
            source.configure(desired)

    def start(self) -> threading.Thread | None:
        """Re-converge the persisted config in a background thread (returned; None if none).

        Pushes that arrive meanwhile wait for it; a push of a newer config makes it a no-op.
        """
        if not self._resync_pending:
            return None
        thread = threading.Thread(target=self._resync, name="resync", daemon=True)
        thread.start()
        return thread

    def _resync(self) -> None:
        with self._converge_lock:
            with self._status_lock:
                if not self._resync_pending or self._desired is None:
                    return
                desired = self._desired
            log.info("re-converging persisted generation %d", desired.generation)
            try:
                self._converge(desired)
            finally:
                with self._status_lock:
                    self._resync_pending = False

    def close(self) -> None:
        """Release the driver and the state dir; the dataplane stays as it is."""
        with self._converge_lock:
            self.driver.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- persistence --------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        assert self.state_dir is not None, "an in-memory agent has no state file"
        return self.state_dir / STATE_FILE

    def _load(self) -> HostConfig | None:
        try:
            raw = self.state_file.read_bytes()
        except FileNotFoundError:
            return None
        try:
            doc = json.loads(raw)
            if doc.get("format") != STATE_FORMAT:
                raise ValueError(f"unknown format {doc.get('format')!r}")
            return HostConfig.from_dict(doc["config"])
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            # Applying half a config (or nothing, which removes everything) would be worse than
            # waiting for the engine's next push.
            log.error("persisted config %s is unreadable (%s); waiting for a push", self.state_file, e)
            return None

    def _persist(self, cfg: HostConfig) -> None:
        if self.state_dir is None:
            return
        data = json.dumps({"format": STATE_FORMAT, "config": cfg.to_dict(secrets=True)}, sort_keys=True).encode()
        if not self.durable:
            tmp = self.state_file.with_name(f".{STATE_FILE}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, self.state_file)
            return
        write_private(self.state_file, data)
        dir_fd = os.open(self.state_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself must survive a crash
        finally:
            os.close(dir_fd)

    # -- the API ------------------------------------------------------------------------

    def push(self, cfg: HostConfig) -> PushOutcome:
        if cfg.observations:
            cfg = dataclasses.replace(cfg, observations=())
        reasons = self.driver.rejections(cfg)
        if reasons:
            log.warning("rejected generation %d: %d problems, first: %s", cfg.generation, len(reasons), reasons[0])
            return PushOutcome("rejected", failures=tuple(split_reason(r) for r in reasons),
                               accepted_generation=self.accepted_generation)
        with self._converge_lock:
            current = self._desired
            stale = self._staleness(current, cfg)
            if stale:
                assert current is not None
                log.warning("refused generation %d: %s", cfg.generation, stale)
                return PushOutcome("stale", failures=(Failure("generation", stale),),
                                   actual=self._reported(self.driver.facts(), current),
                                   accepted_generation=current.generation)
            # Persist first: a crash during the converge must not lose the accepted config.
            try:
                self._persist(cfg)
            except OSError as e:
                raise AgentError(f"cannot persist the config in {self.state_dir}: {e.strerror}") from None
            with self._status_lock:
                self._desired = cfg
                self._resync_pending = False
            return self._converge(cfg, checked=True)

    @staticmethod
    def _staleness(current: HostConfig | None, cfg: HostConfig) -> str:
        if current is None:
            return ""
        if cfg.generation < current.generation:
            return (f"generation {cfg.generation} is older than the last accepted generation "
                    f"{current.generation}; nothing was changed")
        if cfg.generation == current.generation and not cfg.same_dataplane(current):
            return (f"generation {cfg.generation} was already accepted with a different config; "
                    "push it under a new generation")
        return ""

    def _converge(self, cfg: HostConfig, *, checked: bool = False) -> PushOutcome:
        """Run one converge (caller holds the converge lock) and record its outcome. `checked`:
        `cfg` passed the driver's rejections already (a push)."""
        with self._status_lock:
            self._converging = True
        for watcher in self._watchers:
            watcher.configure(cfg)
        started = time.monotonic()
        try:
            ready = self.vms.apply(self.pods.apply(cfg))
            # Ports of Pods and VMs added here are checked by the driver: only `cfg` itself was.
            result = self.driver.converge(ready, checked=checked and ready is cfg)
        except Exception as e:  # a driver bug must not take the agent down
            log.exception("converge of generation %d crashed", cfg.generation)
            result = ConvergeResult((), (Failure("", f"internal error in the {self.driver_name} driver: {e}"),),
                                    self._safe_facts(cfg))
        result = dataclasses.replace(result, actual=self._reported(result.actual, cfg))
        seconds = time.monotonic() - started
        with self._status_lock:
            prev, digest = self._digest_of, self._digest
        # The same facts keep their digest (hashing 200 ports costs ~8 ms; most converges
        # change nothing); other facts get theirs when first asked for (actual_digest).
        # Observations count: the digest carries them.
        if prev is None or prev.dataplane() != result.actual.dataplane() or \
                prev.observations != result.actual.observations:
            digest = None
        with self._status_lock:
            self._converging = False
            self._converged_once |= result.ok
            self._last = _LastConverge(result.ok, result.failures, time.time(), seconds, cfg.generation)
            self._digest, self._digest_at, self._digest_of = digest, time.monotonic(), result.actual
        status = "rejected" if result.rejected else ("converged" if result.ok else "failed")
        if self.on_converge is not None:
            self.on_converge(status, seconds)
        log.info("generation %d %s: %d actions, %d failures in %.3fs",
                 cfg.generation, status, len(result.actions), len(result.failures), seconds)
        for f in result.failures:
            log.warning("generation %d: %s", cfg.generation, f)
        return PushOutcome(status, result.actions, result.failures, result.actual, cfg.generation, seconds)

    def _safe_facts(self, fallback: HostConfig) -> HostConfig:
        try:
            return self.driver.facts()
        except Exception:
            log.exception("reading facts failed")
            return HostConfig(fallback.host, fallback.underlay_ip)

    def _reported(self, facts: HostConfig, desired: HostConfig | None) -> HostConfig:
        """What the host reports: its facts with the watchers' observations, plus the pod ports of
        `desired` that wait for their Pod (no sandbox: nothing of them exists yet), so the engine
        sees them placed, pending."""
        seen = tuple(o for w in self._watchers for o in w.observations())
        if seen:
            facts = dataclasses.replace(
                facts, observations=tuple(sorted((*facts.observations, *seen), key=lambda o: o.id)))
        if desired is None or not any(p.workload_kind == "pod" for p in desired.ports):
            return facts
        have = {p.id for p in facts.ports}
        waiting = [p for p in desired.ports if p.workload_kind == "pod" and p.id not in have
                   and self.pods.of_port(p.id) is None]
        if not waiting:
            return facts
        return dataclasses.replace(facts, ports=tuple(sorted((*facts.ports, *waiting), key=lambda p: p.id)))

    def reconverge(self) -> PushOutcome | None:
        """Converge the accepted config again now (a Pod was bound or unbound); None without one."""
        with self._converge_lock:
            with self._status_lock:
                desired = self._desired
            return self._converge(desired) if desired is not None else None

    def realize(self, workload: str, mode: str) -> PushOutcome | None:
        """Realise virtual server `workload` as `mode` (tap | netns) from now on, and converge:
        its ports are removed as they are, then made anew (how a port is realised is not part
        of what the diff compares). None when nothing changed or there is no config yet."""
        with self._converge_lock:
            if not self.vms.realize(workload, mode):
                return None
            with self._status_lock:
                desired = self._desired
            if desired is None:
                return None
            log.info("virtual server %s realised as %s from now on", workload, mode)
            self._converge(dataclasses.replace(desired, ports=tuple(p for p in desired.ports
                                                                    if p.workload != workload)))
            return self._converge(desired)

    @property
    def desired(self) -> HostConfig | None:
        """The last accepted config (as pushed)."""
        with self._status_lock:
            return self._desired

    def state(self) -> tuple[HostConfig | None, HostConfig]:
        """(last accepted config, what the host runs now)."""
        with self._converge_lock:
            with self._status_lock:
                desired = self._desired
            actual = self._reported(self.driver.facts(), desired)
        return desired, actual

    def actual_digest(self, max_age: float = 0.0) -> str:
        """`config_digest` of what the host runs. Facts are read again only when the last read
        is older than `max_age` seconds, and never while a converge runs (it reads them at its
        end): then the previous digest is returned at once ("" before any read)."""
        with self._status_lock:
            fresh = self._digest != "" and time.monotonic() - self._digest_at <= max_age
        if fresh:
            return self._last_digest()
        if not self._converge_lock.acquire(blocking=False):
            return self._last_digest()
        try:  # under the converge lock: no converge can record newer facts meanwhile
            read_at = time.monotonic()
            try:
                facts = self._reported(self.driver.facts(), self.desired)
            except Exception:
                log.exception("reading facts for the heartbeat failed")
                return self._last_digest()
            with self._status_lock:
                # Observations do not take part in ==: compared on their own.
                same = (self._digest_of is not None and facts == self._digest_of
                        and facts.observations == self._digest_of.observations)
            digest = self._last_digest() if same else config_digest(facts)
            with self._status_lock:
                self._digest, self._digest_at, self._digest_of = digest, read_at, facts
            return digest
        finally:
            self._converge_lock.release()

    def _last_digest(self) -> str:
        """The digest of the facts read last ("" before any), computed now if not yet."""
        with self._status_lock:
            digest, of = self._digest, self._digest_of
        if digest is not None:
            return digest
        assert of is not None  # None is set only together with the facts it stands for
        digest = config_digest(of)
        with self._status_lock:
            if self._digest_of is of:  # nothing newer was recorded meanwhile
                self._digest = digest
        return digest

    @property
    def host(self) -> str:
        return self.driver.host

    def exclusive(self) -> threading.Lock:
        """Hold this to keep converges and fact reads off the driver meanwhile (`with`)."""
        return self._converge_lock

    @property
    def converged_once(self) -> bool:
        """Whether a converge succeeded since this agent started (its readiness)."""
        with self._status_lock:
            return self._converged_once

    @property
    def last_actual(self) -> HostConfig | None:
        """What the host ran at the last converge or fact read (None before any)."""
        with self._status_lock:
            return self._digest_of

    @property
    def accepted_generation(self) -> int:
        with self._status_lock:
            return self._desired.generation if self._desired else 0

    def health(self) -> Health:
        with self._status_lock:
            last = self._last
            return Health(
                host=self.driver.host,
                driver=self.driver_name,
                accepted_generation=self._desired.generation if self._desired else 0,
                converged_generation=last.generation if last.ok else 0,
                converging=self._converging or self._resync_pending,
                last_ok=last.ok,
                last_failures=last.failures,
                last_unix=last.finished_unix,
                last_seconds=last.seconds,
                uptime=time.monotonic() - self._started,
            )
