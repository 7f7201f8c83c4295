"""The provider process: go-plugin handshake, gRPC server, and an orderly exit.

Terraform starts the provider with a magic cookie in the environment, reads one handshake line
from its stdout and connects to the address in it:

    1|6|unix|/tmp/l2vpc-3f9c.../provider.sock|grpc|MIIBujCCAWCgAwIBAgIQ...

(go-plugin core protocol 1, Terraform plugin protocol 6, a unix socket, gRPC, and the server
certificate as unpadded base64 DER). When Terraform passes its client certificate
(PLUGIN_CLIENT_CERT) it insists on TLS, so we serve TLS with a fresh in-memory certificate (see
tls.py). We do not verify Terraform's client certificate: it is ECDSA P-521, which grpcio's TLS
cannot verify. What keeps other local users away is the socket's directory, created 0700 for
this process only and removed on exit.

Start-up time matters (Terraform starts a provider several times per command), so this module
imports only os and sys at load time (the warm-start client reads its constants), prints the
handshake as soon as the gRPC server listens, and only then loads the provider itself (schemas,
resources, engine) in a background thread; RPCs that arrive earlier wait for it. Usually this
runs in a child forked by a zygote that has imported all of that already (see warm/).

The process ends on GRPCController.Shutdown (what go-plugin sends when Terraform is done),
on SIGTERM, or when Terraform (our parent) disappears; a warm child also when its client does
(the client is what Terraform started). SIGINT is ignored: on Ctrl-C Terraform itself decides,
and tells us through StopProvider (see Provider.stop_event).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from collections.abc import Callable
    from typing import Any, Protocol

    class Lifeline(Protocol):
        """What a process serving for another one is handed (a warm child: warm/child.py).

        The other process's loss must remove what we create (register it under `lock`), and
        our exit status goes back through `report`.
        """

        lock: threading.Lock

        def at_loss(self, cleanup: Callable[[], None]) -> None: ...

        def report(self, code: int) -> None: ...

MAGIC_COOKIE_KEY = "TF_PLUGIN_MAGIC_COOKIE"
MAGIC_COOKIE_VALUE = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2"
CORE_PROTOCOL_VERSION = 1
PROTOCOL_VERSION = 6
DEFAULT_FACTORY = "l2vpc.provider.l2vpc_provider:build_provider"
# Terraform sends large configurations and states in single messages (its own providers allow 256 MiB).
MAX_MESSAGE_BYTES = 256 << 20
_SHUTDOWN_GRACE_SECONDS = 2.0

NOT_BY_HAND = """\
This program is a Terraform provider plugin: Terraform starts it, it is not run by hand.

Make it available to Terraform with `l2vpc provider install` (then run `terraform init`),
or run Terraform through `l2vpc tf -C DIR init|plan|apply`, which wires the provider up.
"""


def _usage_error(message: str) -> int:
    sys.stderr.write(f"l2vpc provider: {message}\n")
    return 1


def main(argv: list[str] | None = None, lifeline: Lifeline | None = None) -> int:
    """Entry point for `python -m l2vpc.provider [--provider MODULE:FUNCTION]` (cold, or in a
    warm child with its `lifeline` to the client)."""
    args = sys.argv[1:] if argv is None else argv
    factory = DEFAULT_FACTORY
    if args[:1] == ["--provider"] and len(args) == 2:
        factory = args[1]
    elif args:
        return _usage_error("usage: python -m l2vpc.provider [--provider MODULE:FUNCTION]")
    if os.environ.get(MAGIC_COOKIE_KEY) != MAGIC_COOKIE_VALUE:
        sys.stderr.write(NOT_BY_HAND)
        return 1
    versions = os.environ.get("PLUGIN_PROTOCOL_VERSIONS", str(PROTOCOL_VERSION)).split(",")
    if str(PROTOCOL_VERSION) not in versions:
        return _usage_error(
            f"Terraform offers plugin protocol versions {','.join(versions)}; this provider speaks only "
            f"version {PROTOCOL_VERSION} (Terraform 1.0 or later)."
        )
    module, _, function = factory.partition(":")
    if not module or not function:
        return _usage_error(f"--provider wants MODULE:FUNCTION, got {factory!r}")
    return serve(module, function, lifeline)


# A unix socket path must fit in sun_path (108 bytes with the terminating NUL).
_MAX_SOCKET_PATH = 107
_SOCKET_NAME = "provider.sock"


def _private_socket_dir() -> str:
    """A fresh directory only we can enter; the socket's only protection (see module doc)."""
    bases = [os.environ.get("TMPDIR") or "/tmp", "/tmp"]
    # A long TMPDIR (deep CI workspaces) would make the socket path too long to bind.
    base = next(
        b for b in bases if len(os.path.join(b, "l2vpc-0123456789abcdef", _SOCKET_NAME)) <= _MAX_SOCKET_PATH
    )
    while True:
        path = os.path.join(base, f"l2vpc-{os.urandom(8).hex()}")
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        # mkdir's mode is filtered by the umask, which can only remove bits; make it exact anyway.
        os.chmod(path, 0o700)
        return path


# The streaming RPCs of tfplugin6.Provider (all others are unary), so that calls can be accepted
# before the generated code is imported; tests check this against the generated code.
STREAMING_RPCS = {
    "ListResource": "unary_stream",
    "ReadStateBytes": "unary_stream",
    "InvokeAction": "unary_stream",
    "WriteStateBytes": "stream_unary",
}
_PROVIDER_PREFIX = "/tfplugin6.Provider/"


class _LazyProvider:
    """gRPC handler for tfplugin6.Provider that loads everything behind it after the handshake.

    Until the provider has loaded, a call gets a raw-bytes handler that waits for the load and
    then decodes, dispatches and encodes with the generated code; afterwards calls go straight
    to the generated handlers. Methods of other services (go-plugin's stdio and broker, which
    Terraform tries and can do without) are left unimplemented.
    """

    def __init__(self) -> None:
        import threading

        self._loaded = threading.Event()
        self._handlers: dict[str, Any] | None = None
        self._failure = ""
        self.provider: Any = None

    def load(self, module: str, function: str) -> None:
        try:
            import importlib

            from l2vpc._proto import tfplugin6_pb2_grpc
            from l2vpc.provider.rpc import ProviderServicer

            build = getattr(importlib.import_module(module), function)
            self.provider = build()
            capture = _HandlerCapture()
            tfplugin6_pb2_grpc.add_ProviderServicer_to_server(ProviderServicer(self.provider), capture)
            self._handlers = capture.handlers
        except BaseException as e:  # reported to Terraform on every RPC instead
            import logging

            logging.getLogger("l2vpc.provider").exception("loading the provider failed")
            self._failure = f"{type(e).__name__}: {e}"
        finally:
            self._loaded.set()

    def service(self, details: Any) -> Any:
        import grpc

        method = details.method
        if not method.startswith(_PROVIDER_PREFIX):
            return None
        if self._handlers is not None:
            return self._handlers.get(method)
        kind = STREAMING_RPCS.get(method[len(_PROVIDER_PREFIX) :], "unary_unary")
        if kind == "unary_stream":
            return grpc.unary_stream_rpc_method_handler(lambda raw, ctx: self._call(method, raw, ctx))
        if kind == "stream_unary":
            return grpc.stream_unary_rpc_method_handler(lambda raws, ctx: self._call(method, raws, ctx))
        return grpc.unary_unary_rpc_method_handler(lambda raw, ctx: self._call(method, raw, ctx))

    def _call(self, method: str, raw: Any, context: Any) -> Any:
        import grpc

        self._loaded.wait()
        handler = None if self._handlers is None else self._handlers.get(method)
        if handler is None:
            if self._handlers is None:
                context.abort(
                    grpc.StatusCode.INTERNAL,
                    f"the l2vpc provider failed to load ({self._failure}); this is a bug, please report it",
                )
            context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented")
        assert handler is not None  # abort() raised otherwise
        decode, encode = handler.request_deserializer, handler.response_serializer
        if handler.stream_unary is not None:
            return encode(handler.stream_unary((decode(r) for r in raw), context))
        if handler.unary_stream is not None:
            return (encode(m) for m in handler.unary_stream(decode(raw), context))
        return encode(handler.unary_unary(decode(raw), context))


class _HandlerCapture:
    """Stands in for a grpc.Server to collect the handlers generated code registers."""

    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass  # the same handlers also arrive, by name, below

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self.handlers.update({f"/{service}/{name}": h for name, h in handlers.items()})


def serve(module: str, function: str, lifeline: Lifeline | None = None) -> int:
    import signal
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    shutdown = threading.Event()
    cert = None
    if os.environ.get("PLUGIN_CLIENT_CERT"):
        from l2vpc.provider.tls import make_server_certificate

        cert = make_server_certificate()

    def on_shutdown(request: bytes, context: Any) -> bytes:
        shutdown.set()
        return b""  # plugin.Empty

    # go-plugin's controller takes and returns an empty message: no generated code needed.
    controller = grpc.method_handlers_generic_handler(
        "plugin.GRPCController", {"Shutdown": grpc.unary_unary_rpc_method_handler(on_shutdown)}
    )
    lazy = _LazyProvider()
    # From here on SIGTERM means an orderly exit, which removes the socket directory.
    signal.signal(signal.SIGTERM, lambda *_: shutdown.set())
    socket_dir = _socket_dir(lifeline)
    socket_path = os.path.join(socket_dir, _SOCKET_NAME)
    server = grpc.server(
        ThreadPoolExecutor(max_workers=16, thread_name_prefix="rpc"),
        handlers=[controller, lazy],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    try:
        address = f"unix:{socket_path}"
        if cert is not None:
            bound = server.add_secure_port(
                address, grpc.ssl_server_credentials([(cert.key_pem, cert.cert_pem)])
            )
        else:
            bound = server.add_insecure_port(address)
        if not bound:
            raise OSError(f"cannot listen on {socket_path}")
        server.start()
    except BaseException:
        _remove_socket_dir(socket_dir)
        raise

    suffix = cert.handshake_form if cert is not None else ""
    sys.stdout.write(f"{CORE_PROTOCOL_VERSION}|{PROTOCOL_VERSION}|unix|{socket_path}|grpc|{suffix}\n")
    sys.stdout.flush()

    # Everything below happens while Terraform is already connecting.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _setup_logging()
    threading.Thread(target=lazy.load, args=(module, function), name="load-provider", daemon=True).start()

    parent = os.getppid()
    while not shutdown.wait(1.0):
        # A warm child's parent is the zygote; its client watches Terraform instead.
        if lifeline is None and os.getppid() != parent:
            break  # Terraform is gone without telling us; do not linger
    return _exit(server, lazy, socket_dir, lifeline)


def _socket_dir(lifeline: Lifeline | None) -> str:
    if lifeline is None:
        return _private_socket_dir()
    # Under the lifeline's lock: a client dying right now finds the directory registered.
    with lifeline.lock:
        path = _private_socket_dir()
        lifeline.at_loss(lambda: _remove_socket_dir(path))
        return path


def _exit(server: Any, lazy: _LazyProvider, socket_dir: str, lifeline: Lifeline | None) -> int:
    # Let in-flight RPCs (and the Shutdown reply itself) finish, then leave at once: worker
    # threads may sit in resource code that ignores the stop request, and the interpreter
    # would wait for them at exit.
    server.stop(_SHUTDOWN_GRACE_SECONDS).wait()
    _remove_socket_dir(socket_dir)
    try:
        if lazy.provider is not None:
            lazy.provider.close()
    except Exception:
        import logging

        logging.getLogger("l2vpc.provider").exception("closing the provider failed")
    sys.stdout.flush()
    sys.stderr.flush()
    if lifeline is not None:
        lifeline.report(0)
    os._exit(0)


def _remove_socket_dir(path: str) -> None:
    try:
        os.unlink(os.path.join(path, _SOCKET_NAME))
    except FileNotFoundError:
        pass
    try:
        os.rmdir(path)
    except OSError:
        pass


def _setup_logging() -> None:
    """Log to stderr in hclog's JSON form, which Terraform files under TF_LOG with levels."""
    import json
    import logging
    import time

    class HclogJson(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            entry = {
                "@level": _HCLOG_LEVELS.get(record.levelno, "info"),
                "@message": record.getMessage(),
                "@module": record.name,
                "@timestamp": f"{stamp}.{int(record.msecs * 1000):06d}Z",
            }
            if record.exc_info:
                entry["error"] = self.formatException(record.exc_info)
            return json.dumps(entry)

    level_name = (os.environ.get("TF_LOG_PROVIDER") or os.environ.get("TF_LOG") or "WARN").upper()
    level = {
        "TRACE": logging.DEBUG,
        "DEBUG": logging.DEBUG,
        "INFO": logging.INFO,
        "ERROR": logging.ERROR,
    }.get(level_name, logging.WARNING)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(HclogJson())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


_HCLOG_LEVELS = {10: "debug", 20: "info", 30: "warn", 40: "error", 50: "error"}
