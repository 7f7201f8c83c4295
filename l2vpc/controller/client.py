"""`RemoteEngine`: the engine's calls, answered by a controller over its gRPC API.

    engine = RemoteEngine("controller.example.com:7443", token, ca_file="ca.pem", stop=stop)
    vpc = engine.create("vpc", {"name": "apps", "region": "us-east"}, adopt=True)
    _, result = engine.converge(progress=print, timeout=600)

The Terraform provider uses it instead of an embedded `Engine` when `endpoint` is set, so its
resources run unchanged: the same method names, arguments and return types (engine model
objects rebuilt from `data_json`), and failures come back as the same engine errors (see
errors.from_rpc), attribute paths included.

Transport: TLS, checked against the controller's CA (`ca_file`) or the system roots; every
call carries `authorization: Bearer <token>` (gRPC call credentials, so the token is only
ever sent over TLS). The token is never logged or shown in a repr.

Retries: a controller restarting or a store briefly unreachable answers UNAVAILABLE. Reads,
updates, deletes and adopting creates are retried with a short backoff for up to
`retry_seconds`: all of them are safe to repeat (a create with `adopt` returns the object an
earlier attempt committed instead of a duplicate; a repeated delete finds nothing, which the
provider takes as done). `stop` (Terraform's StopProvider) ends waits and cancels a running
Converge stream at once.
"""

from __future__ import annotations

import builtins
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from pydantic import BaseModel
from pydantic import ValidationError as PydanticError

from l2vpc._proto import controller_pb2 as pb
from l2vpc._proto import controller_pb2_grpc as pb_grpc
from l2vpc.controller.errors import ERROR_KEY, from_rpc
from l2vpc.engine.api import MODELS
from l2vpc.engine.errors import AuthenticationError, L2vpcError, NotFoundError, TemporaryError, UserError
from l2vpc.engine.model import REDACTED, VPC, Host
from l2vpc.hostconfig.failures import HostFailure, code_of
from l2vpc.observability.logs import REQUEST_ID_METADATA, current_request_id, new_request_id

log = logging.getLogger("l2vpc.controller.client")

MAX_MESSAGE_BYTES = 16 << 20
DEFAULT_CALL_TIMEOUT = 30.0
DEFAULT_RETRY_SECONDS = 15.0
# How long one connection (TCP and TLS handshake) may take; gRPC reads it from
# grpc.min_reconnect_backoff_ms. Long enough for a busy controller's handshake (at 100 ms one
# was cut off and reported as a certificate problem), short enough that a controller that
# drops packets is passed over for the next one well within a call's timeout.
CONNECT_TIMEOUT_MS = 5000
CHECK_TOKEN_TIMEOUT = 10.0  # the token check at configure: longer means "unreachable", told later (a busy controller's first call, which loads the tokens, can take seconds)
_FIRST_BACKOFF = 0.1
_MAX_BACKOFF = 1.0
# Slack on top of the converge wait the controller is asked for, so its own answer (with what
# is still pending) arrives before our deadline cuts the stream.
_CONVERGE_SLACK = 5.0

T = TypeVar("T")
Progress = Callable[[str, str], None]  # (host, message)


@dataclass
class ConvergeResult:
    """What `Engine.converge` returns as its ExecutionResult: failures, stopped, ok."""

    failures: list[HostFailure] = field(default_factory=list)
    stopped: bool = False
    revision: int = 0

    @property
    def ok(self) -> bool:
        return not self.stopped and not self.failures


class RemoteEngine:
    """The subset of `l2vpc.engine.api.Engine` the provider uses, over the controller API."""

    def __init__(self, endpoint: str, token: str, *, ca_file: str | None = None,
                 stop: threading.Event | None = None, timeout: float = DEFAULT_CALL_TIMEOUT,
                 retry_seconds: float = DEFAULT_RETRY_SECONDS) -> None:
        if not token:
            raise UserError("a token is required to call the controller")
        roots = _read_ca(ca_file) if ca_file else None
        creds = grpc.composite_channel_credentials(
            grpc.ssl_channel_credentials(root_certificates=roots),
            grpc.access_token_call_credentials(token),
        )
        # Several controllers, comma-separated: calls go to one and move to the next when it
        # cannot be reached (any controller serves every call).
        self.endpoints = [e.strip() for e in endpoint.split(",") if e.strip()] or [endpoint]
        self._current = 0
        self.stop = stop or threading.Event()
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self._channels = [grpc.secure_channel(e, creds, options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            # Our retry loop decides (it knows which calls are safe to repeat); reconnect
            # quickly so a restarted controller is found within a second.
            ("grpc.enable_retries", 0),
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
            ("grpc.min_reconnect_backoff_ms", CONNECT_TIMEOUT_MS),
        ]) for e in self.endpoints]
        self._stubs = [pb_grpc.ControllerStub(grpc.intercept_channel(c, _RequestId())) for c in self._channels]

    @property
    def endpoint(self) -> str:
        """The controller calls go to now."""
        return self.endpoints[self._current]

    @property
    def _stub(self) -> pb_grpc.ControllerStub:
        return self._stubs[self._current]

    def _next_endpoint(self) -> None:
        self._current = (self._current + 1) % len(self.endpoints)

    def __repr__(self) -> str:  # never the token
        return f"RemoteEngine({','.join(self.endpoints)!r})"

    def close(self) -> None:
        for c in self._channels:
            c.close()

    def _unavailable(self, e: grpc.RpcError) -> L2vpcError:
        """The error for a call that failed; an unreachable controller names the others configured."""
        error = _error(e, self.endpoint)
        others = [x for x in self.endpoints if x != self.endpoint]
        if isinstance(error, TemporaryError) and others:
            return TemporaryError(f"{error}; the other configured controllers ({', '.join(others)}) did not "
                                  "answer either: check that one of them runs and is reachable from here")
        return error

    # ------------------------------------------------------------------ calls
    def _call(self, what: str, fn: Callable[[], T], *, retry: bool) -> T:
        """One RPC; engine errors out. UNAVAILABLE is retried (when `retry`) until
        `retry_seconds` pass or we are stopped."""
        deadline = time.monotonic() + self.retry_seconds
        delay = _FIRST_BACKOFF
        tried = 0  # other controllers tried since the last pause
        while True:
            try:
                return fn()
            except grpc.RpcError as e:
                if _retryable(e) and len(self.endpoints) > 1 and tried < len(self.endpoints) - 1:
                    # Another controller serves the same call: try it at once.
                    log.info("controller %s: %s unavailable, trying %s", self.endpoint, what,
                             self.endpoints[(self._current + 1) % len(self.endpoints)])
                    self._next_endpoint()
                    tried += 1
                    continue
                if (not retry or not _retryable(e) or self.stop.is_set()
                        or time.monotonic() + delay > deadline):
                    raise self._unavailable(e) from None
                log.info("controller %s: %s unavailable, retrying in %.1fs", self.endpoint, what, delay)
                if self.stop.wait(delay):
                    raise self._unavailable(e) from None
                tried = 0
                self._next_endpoint()
                delay = min(delay * 2, _MAX_BACKOFF)

    def _object(self, kind: str, reply: pb.ObjectReply) -> Any:
        return _model(MODELS[kind], reply.data_json, f"{kind} {reply.id}")

    def check_token(self, timeout: float = CHECK_TOKEN_TIMEOUT) -> None:
        """AuthenticationError when the controller refuses our token (invalid, expired, revoked, or not a
        tenant's): a provider asks when it is configured, so a plan fails with the reason before
        anything is applied. Any other failure (unreachable, slow) is left to the calls that
        follow, which retry and name it."""
        try:
            # Tokens are checked before a request is looked at: an empty id is refused as
            # INVALID_ARGUMENT once the token passed, and nothing is read from the store.
            self._stub.Get(pb.GetRequest(kind="vpc", id=""), timeout=timeout)
        except grpc.RpcError as e:
            code = e.code() if isinstance(e, grpc.Call) else None
            if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                # Either way this token cannot do what Terraform will ask (an agent's, say).
                details = e.details() if isinstance(e, grpc.Call) else ""
                raise AuthenticationError(f"controller refused the token: {details}") from None
            log.debug("controller %s: token check inconclusive: %s", self.endpoint, code)

    # ------------------------------------------------------------------ hosts
    def hosts(self, region: str | None = None, role: str | None = None) -> builtins.list[Host]:
        reply = self._call("ListHosts", lambda: self._stub.ListHosts(
            pb.ListHostsRequest(region=region or "", role=role or ""), timeout=self.timeout), retry=True)
        return sorted((_model(Host, h, "host") for h in reply.hosts_json), key=lambda h: h.name)

    # ------------------------------------------------------------------ reads
    def get(self, kind: str, ident: str, *, confirm: bool = False) -> Any:
        reply = self._call("Get", lambda: self._stub.Get(
            pb.GetRequest(kind=kind, id=ident, confirm=confirm), timeout=self.timeout), retry=True)
        return self._object(kind, reply)

    def find(self, kind: str, ident: str, *, confirm: bool = False) -> Any | None:
        try:
            return self.get(kind, ident, confirm=confirm)
        except NotFoundError:
            return None

    def list(self, kind: str) -> builtins.list[Any]:
        reply = self._call("List", lambda: self._stub.List(pb.ListRequest(kind=kind), timeout=self.timeout),
                           retry=True)
        return [self._object(kind, o) for o in reply.objects]

    def vpc_by_name(self, name: str) -> VPC | None:
        return next((v for v in self.list("vpc") if v.name == name), None)

    def status_detail(self, kind: str, ident: str) -> str:
        return str(self._status_detail(kind, ident).detail)

    def status_reason(self, kind: str, ident: str) -> str:
        return str(self._status_detail(kind, ident).reason)

    def learned(self, kind: str, ident: str) -> builtins.tuple[str, ...]:
        return tuple(self._status_detail(kind, ident).learned)

    def _status_detail(self, kind: str, ident: str) -> pb.StatusDetailReply:
        reply: pb.StatusDetailReply = self._call("StatusDetail", lambda: self._stub.StatusDetail(
            pb.StatusDetailRequest(kind=kind, id=ident), timeout=self.timeout), retry=True)
        return reply

    def attached_workloads(self, vpc_id: str) -> builtins.list[str]:
        reply = self._call("AttachedWorkloads", lambda: self._stub.AttachedWorkloads(
            pb.AttachedWorkloadsRequest(vpc_id=vpc_id), timeout=self.timeout), retry=True)
        return list(reply.workloads)

    def refresh(self, hosts: Iterable[str] | None = None, timeout: float = 10.0) -> None:
        names = list(hosts) if hosts is not None else []
        self._call("Refresh", lambda: self._stub.Refresh(
            pb.RefreshRequest(hosts=names, timeout_seconds=timeout), timeout=timeout + self.timeout), retry=True)

    def check(self, kind: str, data: Mapping[str, Any], ident: str | None = None, *,
              replacing: Iterable[str] = (), adopt: bool | str = False) -> Any:
        request = pb.CheckRequest(kind=kind, data_json=_dumps(data), id=ident or "", replacing=list(replacing),
                                  adopt=bool(adopt), adopt_key=adopt if isinstance(adopt, str) else "")
        reply = self._call("Check", lambda: self._stub.Check(request, timeout=self.timeout), retry=True)
        return self._object(kind, reply)

    # ------------------------------------------------------------------ writes
    def create(self, kind: str, data: Mapping[str, Any], *, adopt: bool | str = False) -> Any:
        # Repeating a create is safe only when it adopts what an earlier attempt committed.
        request = pb.CreateRequest(kind=kind, data_json=_dumps(data), adopt=bool(adopt),
                                   adopt_key=adopt if isinstance(adopt, str) else "")
        reply = self._call("Create", lambda: self._stub.Create(request, timeout=self.timeout), retry=bool(adopt))
        return self._object(kind, reply)

    def update(self, kind: str, ident: str, data: Mapping[str, Any]) -> Any:
        reply = self._call("Update", lambda: self._stub.Update(
            pb.UpdateRequest(kind=kind, id=ident, data_json=_dumps(data)), timeout=self.timeout), retry=True)
        return self._object(kind, reply)

    def delete(self, kind: str, ident: str) -> None:
        self._call("Delete", lambda: self._stub.Delete(pb.DeleteRequest(kind=kind, id=ident), timeout=self.timeout),
                   retry=True)

    # ------------------------------------------------------------------ convergence
    def converge(self, *, progress: Progress | None = None, retries: int = 3,
                 timeout: float = 60.0) -> tuple[None, ConvergeResult]:
        """Wait (up to `timeout` s) until the hosts run everything committed before this call.

        The controller's leader plans and pushes; we follow its progress events. Returns (None,
        result) like Engine.converge returns (plan, result): there is no plan on this side.
        `retries` is the embedded engine's; the leader has its own. Raises TemporaryError
        when the controller cannot be reached or does not answer in time; a stop cancels the
        stream and returns a result with `stopped` set.
        """
        if self.stop.is_set():
            return None, ConvergeResult(stopped=True)
        request = pb.ConvergeRequest(timeout_seconds=max(timeout, 0.1))
        # Not retried here (the caller decides whether there is time for another converge),
        # except on another controller when this one cannot be reached at all.
        for _ in range(len(self.endpoints) - 1):
            ready = grpc.channel_ready_future(self._channels[self._current])
            try:
                ready.result(timeout=min(2.0, timeout))
                break
            except grpc.FutureTimeoutError:
                ready.cancel()  # stop watching the channel (closing it later must not find a watcher)
                self._next_endpoint()
        call = self._stub.Converge(request, timeout=timeout + _CONVERGE_SLACK)
        finished = threading.Event()

        def cancel_on_stop() -> None:
            while not finished.wait(0.1):
                if self.stop.is_set():
                    call.cancel()
                    return

        watcher = threading.Thread(target=cancel_on_stop, name="converge-stop", daemon=True)
        watcher.start()
        try:
            for event in call:
                if event.done:
                    return None, ConvergeResult(
                        failures=[HostFailure(f.host, f.step, code_of(f.code, "converge_failed"), f.error)
                                  for f in event.failures],
                        revision=int(event.revision),
                    )
                if progress is not None and (event.host or event.message):
                    progress(event.host, event.message)
        except grpc.RpcError as e:
            if self.stop.is_set():
                return None, ConvergeResult(stopped=True)
            raise self._unavailable(e) from None
        finally:
            finished.set()
        raise TemporaryError(f"controller {self.endpoint}: the converge stream ended without a result")


class _RequestId(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Every call carries the caller's request id (l2vpc.observability.logs), a fresh one
    outside any request, in metadata `l2vpc-request-id`."""

    @staticmethod
    def _details(details: Any) -> Any:
        metadata = (*(details.metadata or ()), (REQUEST_ID_METADATA, current_request_id() or new_request_id()))
        return details._replace(metadata=metadata)

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return continuation(self._details(client_call_details), request)


def _read_ca(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise UserError(f"ca_file {path}: {e.strerror or e}") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise UserError(f"ca_file {path}: not a PEM certificate (no BEGIN CERTIFICATE line)")
    return data


def _dumps(data: Mapping[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"))


M = TypeVar("M", bound=BaseModel)


def _model(cls: type[M], text: str, what: str) -> M:
    try:
        # Objects come without their secrets (reads never return one): REDACTED.
        return cls.model_validate(json.loads(text), context=REDACTED)
    except (ValueError, PydanticError) as e:
        # Not the document: it may hold secrets.
        raise L2vpcError(f"the controller sent a {what} this client cannot read "
                         f"({type(e).__name__}); is the provider older than the controller?") from None


_TLS_WORDS = ("ssl", "tls", "handshake", "certificate", "peer name")
# A peer that went away in the middle of the handshake (a controller killed a moment ago) is
# the transport, not trust: the next endpoint, or a retry, may answer.
_TRANSPORT_WORDS = ("connection reset", "connection refused", "broken pipe", "socket closed", "end of file",
                    "tcp handshaker")


def _tls_failure(e: grpc.RpcError) -> bool:
    """gRPC reports a certificate we do not trust as UNAVAILABLE; retrying will not help."""
    details = ((e.details() if isinstance(e, grpc.Call) else "") or "").lower()
    return any(w in details for w in _TLS_WORDS) and not any(w in details for w in _TRANSPORT_WORDS)


def _retryable(e: grpc.RpcError) -> bool:
    code = e.code() if isinstance(e, grpc.Call) else None
    return code == grpc.StatusCode.UNAVAILABLE and not _tls_failure(e)


def _error(e: grpc.RpcError, endpoint: str) -> L2vpcError:
    code = e.code() if isinstance(e, grpc.Call) else None
    if code == grpc.StatusCode.UNAVAILABLE and ERROR_KEY not in dict(_trailers(e)):
        # The transport failed (no answer from the service itself): say where to look.
        details = (e.details() if isinstance(e, grpc.Call) else "") or "no answer"
        if _tls_failure(e):
            return UserError(f"TLS connection to the controller at {endpoint} failed ({details}); check "
                             "`ca_file` (the CA that signed the controller's certificate) and that the "
                             "certificate names the endpoint's host")
        return TemporaryError(f"controller {endpoint} unavailable: {details}")
    return from_rpc(e)


def _trailers(e: grpc.RpcError) -> builtins.list[tuple[str, Any]]:
    return list((e.trailing_metadata() if isinstance(e, grpc.Call) else None) or ())
