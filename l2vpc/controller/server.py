"""Running a controller: store, secrets, agent pool, control plane and the TLS gRPC API.

    settings = ControllerSettings(store="postgresql://l2vpc@db/l2vpc", listen="0.0.0.0:7700",
                                  pki_dir=Path("/etc/l2vpc/pki"))
    server, handle = serve(settings)     # serving; handle.address has the port it got
    ...
    handle.stop()                        # API first, then the plane, agents, store

    run(settings)                        # the same until SIGTERM/SIGINT (`l2vpc controller run`)

The pki dir is the deployment's CA directory (l2vpc/pki.py): `controller.pem`/`.key` is the
API's server certificate (clients verify it with `ca.pem`; they authenticate with tokens, not
certificates), `engine.pem`/`.key` the client certificate the controller presents to agents.
`l2vpc controller pki init DIR --name HOST` writes both.

Secrets: with PostgreSQL the Fernet key comes from L2VPC_SECRET_KEY only (every controller of
a cluster needs the same key and there is no state file to keep one beside); a controller
without it refuses to start. With SQLite the key file beside the state file works too.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from l2vpc.controller.auth import DEFAULT_CACHE_SECONDS, Authenticator
from l2vpc.controller.contract import ControlPlane
from l2vpc.controller.service import (
    DEFAULT_CONVERGE_TIMEOUT,
    DEFAULT_MAX_DOCUMENT_BYTES,
    ControllerService,
    add_to_server,
)
from l2vpc.engine.agent_client import GrpcAgentPool, engine_tls
from l2vpc.engine.api import Engine
from l2vpc.engine.secrets import SecretBox
from l2vpc.engine.store import open_store
from l2vpc.engine.store.base import Store
from l2vpc.observability.listener import Listener, ListenerError, parse_address
from l2vpc.pki import PkiError, TlsFiles, files_in, write_private
from l2vpc.stop_signals import StopSignals

if TYPE_CHECKING:  # loaded when metrics are on (prometheus_client is not needed otherwise)
    from l2vpc.controller.metrics import ControllerMetrics
    from l2vpc.controller.statuspage import StatusPage

log = logging.getLogger("l2vpc.controller")

SERVER_CERT_NAME = "controller"
SECRET_KEY_ENV = "L2VPC_SECRET_KEY"
DEFAULT_MAX_REQUEST_BYTES = 1024 * 1024
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")

PlaneFactory = Callable[[Store, GrpcAgentPool, SecretBox, "ControllerSettings"], ControlPlane]


class ControllerError(Exception):
    """The controller cannot start: the message names the setting or file to fix."""


def default_controller_id() -> str:
    host = re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().split(".")[0].lower()).strip("-") or "controller"
    return f"{host[:50]}-{os.getpid()}"


@dataclass
class ControllerSettings:
    store: str  # postgresql:// URL (replicated controllers) or a SQLite path
    listen: str  # HOST:PORT (port 0: any free port) or unix:/absolute/path
    pki_dir: Path
    controller_id: str = field(default_factory=default_controller_id)
    heartbeat_interval: float = 2.0  # what agents are told to keep
    down_after: float = 10.0  # a host silent for this long is marked down
    resync_interval: float = 60.0  # re-read every host at least this often
    # Heartbeats/s the cluster is paced to: with many hosts agents are told a longer interval
    # (and down_after stretches with it). See ClusterPlane.agent_interval.
    max_heartbeat_rate: float = 150.0
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES  # larger requests: RESOURCE_EXHAUSTED
    max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES  # per JSON document in a request
    workers: int = 32  # threads serving calls
    max_long_calls: int = 0  # concurrent Converge/Refresh calls; 0: half the workers
    converge_timeout: float = DEFAULT_CONVERGE_TIMEOUT  # Converge requests without their own
    token_cache_seconds: float = DEFAULT_CACHE_SECONDS  # a revoked token works at most this long
    stop_grace: float = 5.0  # seconds calls in flight get to finish on stop
    ready_file: Path | None = None  # written (the listen address) once serving
    # HOST:PORT of the HTTP listener with /metrics, /healthz, /readyz and /status; None: off.
    metrics_address: str | None = None

    def check(self) -> None:
        problems = []
        if not _ID_RE.fullmatch(self.controller_id):
            problems.append(f"controller id {self.controller_id!r}: 1-63 lowercase letters, digits or '-'")
        for name in ("heartbeat_interval", "down_after", "resync_interval", "converge_timeout", "stop_grace"):
            value = getattr(self, name)
            if not value > 0:
                problems.append(f"{name}: must be a positive number of seconds, got {value}")
        if not self.max_heartbeat_rate > 0:
            problems.append(f"max_heartbeat_rate: must be a positive number of heartbeats/s, got {self.max_heartbeat_rate}")
        if self.heartbeat_interval > 0 and self.down_after < 2 * self.heartbeat_interval:
            problems.append(f"down_after ({self.down_after:g}s) must be at least twice heartbeat_interval "
                            f"({self.heartbeat_interval:g}s), or every late heartbeat marks a host down")
        if not 4096 <= self.max_request_bytes <= 256 * 1024 * 1024:
            problems.append(f"max_request_bytes: {self.max_request_bytes} is outside 4096..268435456")
        if not 1 <= self.workers <= 1024:
            problems.append(f"workers: {self.workers} is outside 1..1024")
        if self.metrics_address is not None:
            try:
                parse_address(self.metrics_address)
            except ValueError as e:
                problems.append(f"metrics_address: {e}")
        if problems:
            raise ControllerError("; ".join(problems))


@dataclass
class ControllerHandle:
    """A serving controller's parts, to stop them in order."""

    controller_id: str
    address: str
    server: grpc.Server
    store: Store
    agents: GrpcAgentPool
    plane: ControlPlane
    service: ControllerService
    listener: Listener | None = None  # metrics, health and the status page (when on)
    metrics: ControllerMetrics | None = None
    status_page: StatusPage | None = None
    _stopped: bool = False

    def stop(self, grace: float = 5.0) -> None:
        """Stop taking calls (those in flight get `grace` seconds), then the plane, agents, store."""
        if self._stopped:
            return
        self._stopped = True
        if self.listener is not None:
            self.listener.stop()
        self.server.stop(grace).wait()
        try:
            self.service.creates.close()
            self.plane.stop()
        finally:
            self.agents.close()
            self.store.close()


def secret_box(store_url: str) -> SecretBox:
    postgres = store_url.startswith(("postgresql://", "postgres://"))
    key = os.environ.get(SECRET_KEY_ENV, "")
    if postgres and not key:
        raise ControllerError(
            f"{SECRET_KEY_ENV} is not set: controllers on PostgreSQL need the key that seals VPN and BGP "
            "secrets in the store (the same on every controller); make one with "
            "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`")
    if key:
        try:
            return SecretBox(key.encode())
        except ValueError:
            raise ControllerError(f"{SECRET_KEY_ENV} is not a Fernet key (32 bytes, url-safe base64)") from None
    path = store_url[len("sqlite://"):] if store_url.startswith("sqlite://") else store_url
    try:
        return SecretBox.for_state(path)
    except OSError as e:
        raise ControllerError(f"store {path}: cannot keep its secret key beside it ({e.strerror}); "
                              f"create the directory first or set {SECRET_KEY_ENV}") from None


def server_credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    """TLS with the controller's certificate; callers prove who they are with tokens."""
    try:
        cert, key = tls.cert.read_bytes(), tls.key.read_bytes()
    except FileNotFoundError as e:
        raise ControllerError(f"TLS file missing: {e.filename}; create it with "
                              f"`l2vpc controller pki init {tls.cert.parent} --name <this host's name>`") from None
    except PermissionError as e:
        raise ControllerError(f"TLS file not readable: {e.filename}") from None
    return grpc.ssl_server_credentials([(key, cert)], require_client_auth=False)


def _prepare_unix_socket(address: str) -> None:
    path = Path(address[len("unix:"):])
    if not path.is_absolute():
        raise ControllerError(f"listen address {address!r}: a unix socket path must be absolute")
    if len(str(path).encode()) > 107:
        raise ControllerError(f"listen address {address!r}: socket paths are limited to 107 bytes")
    try:
        st = path.lstat()
    except FileNotFoundError:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ControllerError(f"listen address {address!r}: {path} exists and is not a socket")
    path.unlink()  # left behind by a previous run (it would block the bind)


def _cluster_plane(store: Store, agents: GrpcAgentPool, secrets: SecretBox,
                   settings: ControllerSettings) -> ControlPlane:
    from l2vpc.controller.plane import ClusterPlane

    plane: ControlPlane = ClusterPlane(
        store, agents, secrets, controller_id=settings.controller_id,
        heartbeat_interval=settings.heartbeat_interval, down_after=settings.down_after,
        resync_interval=settings.resync_interval, max_heartbeat_rate=settings.max_heartbeat_rate,
    )
    return plane


def serve(settings: ControllerSettings, *,
          plane_factory: PlaneFactory | None = None) -> tuple[grpc.Server, ControllerHandle]:
    """Open everything and start serving; returns the server and a handle to stop it with.

    Raises ControllerError (or the store's L2vpcError) naming what is wrong; nothing is left
    running then."""
    settings.check()
    if settings.listen.startswith("unix:"):
        _prepare_unix_socket(settings.listen)
    box = secret_box(settings.store)
    credentials = server_credentials(files_in(settings.pki_dir, SERVER_CERT_NAME))
    agent_tls = engine_tls(settings.pki_dir)
    try:
        agent_tls.read()  # fail now, not at the first push
    except PkiError as e:
        raise ControllerError(f"{e}; the controller reaches agents with it: create it with "
                              f"`l2vpc controller pki init {settings.pki_dir} --name <host>`") from None
    store = open_store(settings.store)
    agents = GrpcAgentPool(agent_tls)
    plane: ControlPlane | None = None
    server: grpc.Server | None = None
    listener: Listener | None = None
    metrics: ControllerMetrics | None = None
    page: StatusPage | None = None
    try:
        plane = (plane_factory or _cluster_plane)(store, agents, box, settings)
        workers = settings.workers
        service = ControllerService(
            store, agents, box, plane, Authenticator(store, cache_seconds=settings.token_cache_seconds),
            max_document_bytes=min(settings.max_document_bytes, settings.max_request_bytes),
            default_converge_timeout=settings.converge_timeout,
            max_long_calls=settings.max_long_calls or max(1, workers // 2),
        )
        server = grpc.server(
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="api"),
            options=[
                ("grpc.max_receive_message_length", settings.max_request_bytes),
                ("grpc.so_reuseport", 0),  # a second controller on the same port must fail, not share it
                # Agents and clients may keep idle connections alive with pings.
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_recv_ping_interval_without_data_ms", 5000),
            ],
        )
        add_to_server(service, server)
        try:
            port = server.add_secure_port(settings.listen, credentials)
        except RuntimeError as e:
            raise ControllerError(f"cannot listen on {settings.listen}: {e}") from None
        if port == 0:
            raise ControllerError(f"cannot listen on {settings.listen} (address in use or not available)")
        if settings.metrics_address is not None:  # counting from the plane's first round on
            listener, metrics, page = _observability(settings, store, agents, box, plane, service)
        plane.start()
        server.start()
        if listener is not None:
            try:
                listener.start()
            except ListenerError as e:
                raise ControllerError(str(e)) from None
    except BaseException:
        if server is not None:
            server.stop(0)
        if plane is not None:
            plane.stop()
        agents.close()
        store.close()
        raise
    address = settings.listen if settings.listen.startswith("unix:") else \
        f"{settings.listen.rsplit(':', 1)[0]}:{port}"
    handle = ControllerHandle(settings.controller_id, address, server, store, agents, plane, service,
                              listener, metrics, page)
    return server, handle


def _observability(settings: ControllerSettings, store: Store, agents: GrpcAgentPool, box: SecretBox,
                   plane: ControlPlane, service: ControllerService) -> tuple[Listener, ControllerMetrics, StatusPage]:
    """Metrics wired into the service and plane, and the listener (to start) serving them with
    the health endpoints and the status page."""
    from l2vpc.controller.metrics import ControllerMetrics, Readiness
    from l2vpc.controller.statuspage import StatusPage

    assert settings.metrics_address is not None
    metrics = ControllerMetrics(store, settings.controller_id, leading=lambda: bool(getattr(plane, "leading", False)))
    service.observe = metrics.api_call
    attach = getattr(plane, "attach_metrics", None)
    if attach is not None:
        attach(metrics)
    page = StatusPage(plane.status, lambda: Engine(store, agents, secrets=box).topology(), service.auth)
    listener = Listener(settings.metrics_address, metrics.metrics, ready=Readiness(store))
    listener.route("/status", page)
    listener.route("/", page)
    return listener, metrics, page


def run(settings: ControllerSettings, *, plane_factory: PlaneFactory | None = None) -> int:
    """Serve until SIGTERM/SIGINT, then stop gracefully. Prints one line when ready:
    `controller <id> listening on <address>`."""
    with StopSignals(log) as stop:
        try:
            _, handle = serve(settings, plane_factory=plane_factory)
        except PkiError as e:
            raise ControllerError(str(e)) from None
        try:
            log.info("controller %s serving on %s (store %s)", handle.controller_id, handle.address,
                     getattr(handle.store, "name", "sqlite"))
            if settings.ready_file is not None:
                write_private(settings.ready_file, f"{handle.address}\n".encode())
            print(f"controller {handle.controller_id} listening on {handle.address}", flush=True)
            stop.wait()
        finally:
            handle.stop(settings.stop_grace)
            if settings.ready_file is not None:
                settings.ready_file.unlink(missing_ok=True)
        log.info("controller %s stopped", handle.controller_id)
        return 0
