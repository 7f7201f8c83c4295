"""The opt-in HTTP listener of a controller or agent (`--metrics-address HOST:PORT`).

    listener = Listener("127.0.0.1:9100", metrics, ready=lambda: (True, "store reachable"))
    listener.route("/status", status_page)     # controllers: the read-only status page
    listener.start()                            # listener.address has the port it got
    ...
    listener.stop()

Routes: `/metrics` (Prometheus text format), `/healthz` (200 while the process serves: it
answers, so it is alive), `/readyz` (200 or 503 from the component's readiness check, with
its one-line reason), and whatever the component adds. Plain HTTP on a thread per request
(http.server): scrapes and probes are rare, and TLS and authentication for the status page
belong to the component (it sees the peer's address and headers).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol
from urllib.parse import urlsplit

log = logging.getLogger("l2vpc.observability")

TEXT = "text/plain; charset=utf-8"
# Prometheus' text format (prometheus_client's CONTENT_TYPE_LATEST; not imported here, so a
# process without metrics never loads prometheus_client).
METRICS_TYPE = "text/plain; version=1.0.0; charset=utf-8"


class Exposition(Protocol):
    def exposition(self) -> bytes: ...


class ListenerError(Exception):
    """The listener cannot start: the message names the address and why."""


@dataclass(frozen=True)
class Request:
    path: str
    query: str
    client: str  # peer address
    headers: dict[str, str]  # lowercase names

    @property
    def from_loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.client.removeprefix("::ffff:")).is_loopback
        except ValueError:
            return False

    def bearer(self) -> str:
        scheme, _, token = self.headers.get("authorization", "").strip().partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = TEXT
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Response]
Readiness = Callable[[], tuple[bool, str]]


def parse_address(text: str) -> tuple[str, int]:
    """(host, port) of `HOST:PORT` or `[IPv6]:PORT`; ValueError naming what is wrong."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:9100; port 0: any free port)")
    return host, int(port)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64


class _Server6(_Server):
    address_family = socket.AF_INET6


class Listener:
    def __init__(self, address: str, metrics: Exposition, ready: Readiness | None = None) -> None:
        try:
            self.host, self.port = parse_address(address)
        except ValueError as e:
            raise ListenerError(f"metrics address: {e}") from None
        self.metrics = metrics
        self.ready = ready or (lambda: (True, "ready"))
        self.routes: dict[str, Handler] = {
            "/metrics": self._metrics, "/healthz": self._healthz, "/readyz": self._readyz,
        }
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def route(self, path: str, handler: Handler) -> None:
        self.routes[path] = handler

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def start(self) -> None:
        listener = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "l2vpc"
            sys_version = ""

            def do_GET(self) -> None:
                self._answer(head=False)

            def do_HEAD(self) -> None:
                self._answer(head=True)

            def _answer(self, head: bool) -> None:
                url = urlsplit(self.path)
                request = Request(url.path, url.query, str(self.client_address[0]),
                                  {k.lower(): v for k, v in self.headers.items()})
                handler = listener.routes.get(url.path.rstrip("/") or "/") or listener.routes.get(url.path)
                if handler is None:
                    response = Response(404, f"not found: {url.path[:100]}; try /metrics, /healthz, /readyz\n".encode())
                else:
                    try:
                        response = handler(request)
                    except Exception:
                        log.exception("%s failed", url.path)
                        response = Response(500, b"internal error (the log has the details)\n")
                self.send_response(response.status)
                self.send_header("Content-Type", response.content_type)
                self.send_header("Content-Length", str(len(response.body)))
                self.send_header("Cache-Control", "no-store")
                for key, value in response.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if not head:
                    self.wfile.write(response.body)

            def log_message(self, format: str, *args: object) -> None:  # scrapes are not news
                log.debug("%s %s", self.client_address[0], format % args)

        try:
            server_cls = _Server6 if ":" in self.host else _Server
            self._server = server_cls((self.host, self.port), _Handler)
        except OSError as e:
            raise ListenerError(f"metrics address {self.address}: cannot listen ({e.strerror})") from None
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-listener", daemon=True)
        self._thread.start()
        log.info("metrics, /healthz and /readyz on http://%s", self.address)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # ------------------------------------------------------------------ built-in routes
    def _metrics(self, request: Request) -> Response:
        return Response(200, self.metrics.exposition(), METRICS_TYPE)

    @staticmethod
    def _healthz(request: Request) -> Response:
        return Response(200, b"ok\n")

    def _readyz(self, request: Request) -> Response:
        try:
            ok, reason = self.ready()
        except Exception as e:  # a failing check is a "not ready", with its reason
            ok, reason = False, f"readiness check failed: {type(e).__name__}"
        return Response(200 if ok else 503, f"{'ready' if ok else 'not ready'}: {reason}\n".encode())
