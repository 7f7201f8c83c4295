"""The host agent: a gRPC service (l2vpc.agent.v1, mutual TLS) in front of one dataplane driver.

    agent = Agent(driver, state_dir, driver_name="linux")   # loads the persisted config
    server, address = serve(agent, "unix:/run/l2vpc/host1.sock", tls)
    agent.start()                        # re-converge it in the background; pushes queue behind
    ...
    server.stop(grace=2); agent.close()  # the dataplane keeps running

`Agent` is the logic without gRPC. It serialises converges (the driver is used from one thread
at a time), refuses stale generations, rejects invalid configs without touching the host, and
persists every accepted config (JSON, 0600, atomic) before converging it, so an agent killed in
the middle of a converge finishes the job when it comes back. At start it re-converges the
persisted config; since converging is idempotent, segments that did not change see no change
at all (no traffic loss). Without a persisted config it touches nothing and waits for a push.

Logs name generations, counts and failure paths, never config contents (configs carry keys,
and the state file is the only place they are written).

A call naming a host in its `l2vpc-host` metadata (the engine's client always does) is refused
with NOT_FOUND unless it names this agent's host: one address may serve many simulated hosts
(fleet.py), and a real agent must not take a config meant for another host. With a controller,
`run` also registers the host and heartbeats (heartbeat.py); `actual_digest` is what the
heartbeats carry, computed from facts read at most every so often and after every converge.

Secrets: a push carries them (a VPN's psk, a BGP md5_key, a circuit key); the persisted config
keeps them (`to_dict(secrets=True)`, 0600), because a restarted agent must re-apply them.
Nothing the agent sends back carries them: `desired` and `actual` in replies go through
`wire.config_to_pb`, which blanks secrets. Observations in a push are ignored (they are the
agent's to report).
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import signal
import stat
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from l2vpc._proto import agent_pb2 as pb
from l2vpc._proto import agent_pb2_grpc as pb_grpc
from l2vpc.agent import wire
from l2vpc.agent.channel import HOST_METADATA
from l2vpc.agent.drivers.base import Action, ConvergeResult, Driver, Failure, split_reason
from l2vpc.hostconfig import HostConfig, config_digest, validate_host_config
from l2vpc.pki import TlsFiles, write_private

if TYPE_CHECKING:
    from l2vpc.agent.heartbeat import HeartbeatScheduler

log = logging.getLogger("l2vpc.agent")

STATE_FILE = "desired.json"
LOCK_FILE = "agent.lock"
STATE_FORMAT = 1
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # a host with thousands of ports is a few MB


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

    def __init__(self, driver: Driver, state_dir: Path, driver_name: str = "", *, durable: bool = True) -> None:
        self.driver = driver
        self.state_dir = state_dir
        self.driver_name = driver_name or type(driver).__name__
        self.durable = durable
        # The digest of the facts read last (by a converge or by actual_digest), when, and those
        # facts: config_digest costs several times a memory driver's facts, so unchanged facts
        # (compared as values) keep their digest.
        self._digest = ""
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
        self._prepare_state_dir()
        self._load_persisted()

    # -- lifecycle ----------------------------------------------------------------------

    def _prepare_state_dir(self) -> None:
        try:
            # 0711: helpers the driver starts as `nobody` (dnsmasq) must reach their files
            # below; our own files are 0600, and listing the directory stays root's.
            self.state_dir.mkdir(mode=0o711, parents=True, exist_ok=True)
            os.chmod(self.state_dir, 0o711)
            fd = os.open(self.state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise AgentError(f"state dir {self.state_dir}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise AgentError(
                f"state dir {self.state_dir} is in use by another agent (pid {other or 'unknown'})"
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
        reasons = self._reasons(persisted)
        if reasons:
            log.error("persisted config (generation %d) does not fit this agent, not applying it: %s",
                      persisted.generation, "; ".join(reasons))
            return
        self._desired = persisted
        self._resync_pending = True

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

    def _reasons(self, cfg: HostConfig) -> list[str]:
        reasons = validate_host_config(cfg)
        if cfg.host != self.driver.host:
            reasons.append(f"host: config is for host {cfg.host!r}, this agent runs {self.driver.host!r}")
        if cfg.underlay_ip != self.driver.underlay_ip:
            reasons.append(
                f"underlay_ip: config says {cfg.underlay_ip}, this host's underlay is {self.driver.underlay_ip}"
            )
        return reasons

    def push(self, cfg: HostConfig) -> PushOutcome:
        if cfg.observations:
            cfg = dataclasses.replace(cfg, observations=())
        reasons = self._reasons(cfg)
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
                                   actual=self.driver.facts(), accepted_generation=current.generation)
            # Persist first: a crash during the converge must not lose the accepted config.
            try:
                self._persist(cfg)
            except OSError as e:
                raise AgentError(f"cannot persist the config in {self.state_dir}: {e.strerror}") from None
            with self._status_lock:
                self._desired = cfg
                self._resync_pending = False
            return self._converge(cfg)

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

    def _converge(self, cfg: HostConfig) -> PushOutcome:
        """Run one converge (caller holds the converge lock) and record its outcome."""
        with self._status_lock:
            self._converging = True
        started = time.monotonic()
        try:
            result = self.driver.converge(cfg)
        except Exception as e:  # a driver bug must not take the agent down
            log.exception("converge of generation %d crashed", cfg.generation)
            result = ConvergeResult((), (Failure("", f"internal error in the {self.driver_name} driver: {e}"),),
                                    self._safe_facts(cfg))
        seconds = time.monotonic() - started
        digest = config_digest(result.actual)
        with self._status_lock:
            self._converging = False
            self._last = _LastConverge(result.ok, result.failures, time.time(), seconds, cfg.generation)
            self._digest, self._digest_at, self._digest_of = digest, time.monotonic(), result.actual
        status = "rejected" if result.rejected else ("converged" if result.ok else "failed")
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

    def state(self) -> tuple[HostConfig | None, HostConfig]:
        """(last accepted config, what the host runs now)."""
        with self._converge_lock:
            actual = self.driver.facts()
        with self._status_lock:
            return self._desired, actual

    def actual_digest(self, max_age: float = 0.0) -> str:
        """`config_digest` of what the host runs. Facts are read again only when the last read
        is older than `max_age` seconds, and never while a converge runs (it reads them at its
        end): then the previous digest is returned at once ("" before any read)."""
        with self._status_lock:
            if self._digest and time.monotonic() - self._digest_at <= max_age:
                return self._digest
        if not self._converge_lock.acquire(blocking=False):
            with self._status_lock:
                return self._digest
        try:  # under the converge lock: no converge can record newer facts meanwhile
            read_at = time.monotonic()
            try:
                facts = self.driver.facts()
            except Exception:
                log.exception("reading facts for the heartbeat failed")
                with self._status_lock:
                    return self._digest
            with self._status_lock:
                same, digest = facts == self._digest_of, self._digest
            if not same:
                digest = config_digest(facts)
            with self._status_lock:
                self._digest, self._digest_at, self._digest_of = digest, read_at, facts
            return digest
        finally:
            self._converge_lock.release()

    @property
    def host(self) -> str:
        return self.driver.host

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


class AgentService(pb_grpc.AgentServicer):
    """The gRPC face of an Agent: protobuf in, protobuf out, nothing else."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def _check_host(self, context: grpc.ServicerContext) -> None:
        for key, value in context.invocation_metadata():
            if key == HOST_METADATA and value != self.agent.host:
                context.abort(grpc.StatusCode.NOT_FOUND,
                              f"this agent runs host {self.agent.host!r}, not {value!r} (is {value}'s "
                              "agent_address right?)")

    def Push(self, request: pb.PushRequest, context: grpc.ServicerContext) -> pb.PushResponse:
        self._check_host(context)
        if not request.HasField("config"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "config: required")
        try:
            outcome = self.agent.push(wire.config_from_pb(request.config))
        except AgentError as e:
            log.error("%s", e)
            context.abort(grpc.StatusCode.INTERNAL, str(e))
        status = {
            "converged": pb.PushResponse.CONVERGED,
            "failed": pb.PushResponse.FAILED,
            "rejected": pb.PushResponse.REJECTED,
            "stale": pb.PushResponse.STALE,
        }[outcome.status]
        response = pb.PushResponse(
            status=status,
            actions=wire.actions_to_pb(outcome.actions),
            failures=wire.failures_to_pb(outcome.failures),
            accepted_generation=outcome.accepted_generation,
            seconds=outcome.seconds,
        )
        if outcome.actual is not None:
            response.actual.CopyFrom(wire.config_to_pb(outcome.actual))
        return response

    def GetState(self, request: pb.GetStateRequest, context: grpc.ServicerContext) -> pb.GetStateResponse:
        self._check_host(context)
        desired, actual = self.agent.state()
        response = pb.GetStateResponse(actual=wire.config_to_pb(actual),
                                       accepted_generation=desired.generation if desired else 0)
        if desired is not None:
            response.desired.CopyFrom(wire.config_to_pb(desired))
        return response

    def Health(self, request: pb.HealthRequest, context: grpc.ServicerContext) -> pb.HealthResponse:
        self._check_host(context)
        h = self.agent.health()
        return pb.HealthResponse(
            host=h.host, api_version=wire.API_VERSION, driver=h.driver,
            accepted_generation=h.accepted_generation, converged_generation=h.converged_generation,
            converging=h.converging, last_converge_ok=h.last_ok,
            last_failures=wire.failures_to_pb(h.last_failures), last_converge_unix=h.last_unix,
            last_converge_seconds=h.last_seconds, uptime_seconds=h.uptime, pid=h.pid,
        )


def server_credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    """TLS that requires a client certificate signed by our CA (anything else fails the handshake)."""
    ca, cert, key = tls.read()
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)


def _prepare_unix_socket(address: str) -> None:
    path = Path(address[len("unix:"):])
    if not path.is_absolute():
        raise AgentError(f"listen address {address!r}: a unix socket path must be absolute")
    if len(str(path).encode()) > 107:
        raise AgentError(f"listen address {address!r}: socket paths are limited to 107 bytes")
    try:
        st = path.lstat()
    except FileNotFoundError:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise AgentError(f"listen address {address!r}: {path} exists and is not a socket")
    path.unlink()  # left behind by a previous run of this agent (it would block the bind)


def start_server(add: Callable[[grpc.Server], None], listens: Sequence[str], tls: TlsFiles,
                 workers: int = 8) -> tuple[grpc.Server, list[str]]:
    """A started mutual-TLS server with the servicers `add` puts on it, on every address of
    `listens` (`host:port` or `unix:/abs/path`). Returns it and the addresses it listens on
    (port 0 resolved to the port it got)."""
    if not listens:
        raise AgentError("no listen address given")
    for listen in listens:
        if listen.startswith("unix:"):
            _prepare_unix_socket(listen)
    server = grpc.server(
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),  # a second agent on the same port must fail, not share it
        ],
    )
    add(server)
    credentials = server_credentials(tls)
    addresses = []
    for listen in listens:
        try:
            port = server.add_secure_port(listen, credentials)
        except RuntimeError as e:
            raise AgentError(f"cannot listen on {listen}: {e}") from None
        if port == 0:
            raise AgentError(f"cannot listen on {listen} (address in use or not available)")
        addresses.append(listen if listen.startswith("unix:") else f"{listen.rsplit(':', 1)[0]}:{port}")
    server.start()
    return server, addresses


def serve(agent: Agent, listen: str | Sequence[str], tls: TlsFiles, workers: int = 8) -> tuple[grpc.Server, str]:
    """Start serving `agent` on `listen` (one address or several: `host:port` or `unix:/abs/path`).

    Returns the server and the (first) address it listens on (port 0 resolved to the port it got).
    """
    listens = [listen] if isinstance(listen, str) else list(listen)
    server, addresses = start_server(lambda s: pb_grpc.add_AgentServicer_to_server(AgentService(agent), s),
                                     listens, tls, workers)
    return server, addresses[0]


def stop_on_signals() -> threading.Event:
    """An event SIGTERM and SIGINT set (installed before serving: a stop request is never lost)."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    return stop


def run(agent: Agent, listen: str | Sequence[str], tls: TlsFiles, ready: Callable[[grpc.Server], Any] | None = None,
        heartbeats: HeartbeatScheduler | None = None) -> int:
    """Serve until SIGTERM/SIGINT; the dataplane is left running (a restart must not disturb it).

    With `heartbeats`, the host registers with its controller once the agent serves, and
    heartbeats until the agent stops."""
    stop = stop_on_signals()
    server, _ = serve(agent, listen, tls)
    log.info("agent for %s (%s driver) listening on %s", agent.host, agent.driver_name,
             listen if isinstance(listen, str) else ", ".join(listen))
    agent.start()
    if heartbeats is not None:
        heartbeats.start()
    if ready is not None:
        ready(server)
    try:
        stop.wait()
    finally:
        if heartbeats is not None:
            heartbeats.stop()
        server.stop(grace=2).wait()
        agent.close()
    log.info("stopped")
    return 0
