"""The controller's gRPC service (proto/controller.proto): thin, per call

1. authenticate the bearer token (auth.Authenticator) and check its role allows the call;
2. check the request's shape (kind, JSON documents, sizes) before anything touches the store;
3. object calls: run them on an Engine scoped to the caller's tenant (one per call, over the
   shared store, agent pool and SecretBox), so another tenant's id is simply not found (an
   admin token acts for the tenant named in metadata `l2vpc-tenant`, or across all tenants
   without it);
   agent calls, Converge and Status: hand them to the ControlPlane (a Pod's on-demand
   attachments, AttachPod and DetachPod, are engine calls across tenants, then a converge);
4. turn engine errors into a status plus the `l2vpc-error-bin` trailer (errors.to_status).

Every refusal happens before a write: a rejected request changes nothing. Logs name methods,
token ids and outcomes, never tokens nor documents (they carry pre-shared keys).

Longer than most modules (~590 lines): one servicer class holds every RPC of the service (40
methods, each a few lines of the four steps above), as grpc's generated base class asks. The
next split: the agent-facing RPCs (Register, Heartbeat, AttachPod, DetachPod) into a servicer
mixin of their own.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from google.protobuf.message import DecodeError

from l2vpc._proto import controller_pb2 as pb
from l2vpc._proto import controller_pb2_grpc as pb_grpc
from l2vpc.controller.auth import Authenticator, AuthError, Principal
from l2vpc.controller.batching import CreateBatcher
from l2vpc.controller.contract import ControlPlane, ConvergeOutcome
from l2vpc.controller.enrollment import Refused as NotAdmitted
from l2vpc.controller.errors import to_status
from l2vpc.engine.api import Engine
from l2vpc.engine.errors import L2vpcError, NotFoundError, TemporaryError, ValidationError
from l2vpc.engine.executor import AgentPool
from l2vpc.engine.model import Host, parse
from l2vpc.engine.secrets import SecretBox
from l2vpc.engine.store.base import Store
from l2vpc.observability.logs import from_metadata, new_request_id, request_scope

log = logging.getLogger("l2vpc.controller.api")

OBJECT_KINDS = ("vpc", "attachment", "direct_connect", "vpn")
DETAIL_KINDS = ("direct_connect", "vpc", "vpn")  # a VPC: its failing overlay pairs
HOST_ROLES = ("compute", "edge")
TENANT_KEY = "l2vpc-tenant"
DEFAULT_MAX_DOCUMENT_BYTES = 256 * 1024
DEFAULT_CONVERGE_TIMEOUT = 300.0
MAX_CONVERGE_TIMEOUT = 3600.0
DEFAULT_REFRESH_TIMEOUT = 10.0
MAX_REFRESH_TIMEOUT = 60.0
MAX_REFRESH_HOSTS = 10_000
MAX_ID_LENGTH = 255
MAX_CONTAINER_ID_LENGTH = 256  # CNI_CONTAINERID (a runtime's are 64 hex digits)
_NAME_RE = re.compile(r"^[a-z0-9-]{1,63}$")
# Who may make a call: object calls, agent calls, operator calls.
OBJECT, AGENT, ADMIN = "object", "agent", "admin"
_ROLES_FOR = {OBJECT: ("tenant", "admin"), AGENT: ("agent", "admin"), ADMIN: ("admin",)}
_WHAT_FOR = {OBJECT: "object calls need a tenant token", AGENT: "agent calls need an agent token",
             ADMIN: "this call needs an admin token"}


class Refused(Exception):
    """A request refused with a status code other than an engine error's (size, load, role)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Caller:
    principal: Principal
    tenant: str  # the tenant object calls act for; '' for an admin acting across tenants


class Malformed:
    """Stands in for a request whose bytes are not its message (so the handler, after checking
    the token, answers INVALID_ARGUMENT instead of gRPC's INTERNAL "Exception deserializing")."""

    def __init__(self, message: str, reason: str) -> None:
        self.message, self.reason = message, reason

    def error(self) -> ValidationError:
        return ValidationError(f"malformed {self.message} message: {self.reason}")


def _tolerant(cls: Any) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return cls.FromString(data)
        except DecodeError as e:
            return Malformed(cls.__name__, str(e) or "cannot be decoded")

    return deserialize


def add_to_server(service: ControllerService, server: grpc.Server) -> None:
    """Register `service` like the generated add_ControllerServicer_to_server, but with
    deserializers that let malformed messages reach the handler (see Malformed)."""
    desc = pb.DESCRIPTOR.services_by_name["Controller"]
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for m in desc.methods:
        request, reply = getattr(pb, m.input_type.name), getattr(pb, m.output_type.name)
        make = grpc.unary_stream_rpc_method_handler if m.server_streaming else grpc.unary_unary_rpc_method_handler
        handlers[m.name] = make(getattr(service, m.name), request_deserializer=_tolerant(request),
                                response_serializer=reply.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(desc.full_name, handlers),))
    server.add_registered_method_handlers(desc.full_name, handlers)


def _json_type(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "true/false",
            type(None): "null"}.get(type(value), "a number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice")
        out[key] = value
    return out


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def parse_document(text: str, field: str, limit: int) -> dict[str, Any]:
    """A request's JSON document as a dict; ValidationError naming `field` when it is not one,
    Refused(RESOURCE_EXHAUSTED) when it is larger than `limit` bytes."""
    size = len(text.encode(errors="surrogatepass"))
    if size > limit:
        raise Refused(grpc.StatusCode.RESOURCE_EXHAUSTED,
                      f"{field}: {size} bytes is more than this controller accepts ({limit} bytes)")
    if not text.strip():
        raise ValidationError("required: a JSON object", path=field)
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise ValidationError(f"not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})", path=field) from None
    except RecursionError:
        raise ValidationError("not usable JSON: nested too deeply", path=field) from None
    except ValueError as e:
        raise ValidationError(f"not usable JSON: {e}", path=field) from None
    if not isinstance(value, dict):
        raise ValidationError(f"must be a JSON object, got {_json_type(value)}", path=field)
    return value


def _kind(kind: str, allowed: tuple[str, ...] = OBJECT_KINDS) -> str:
    if kind not in allowed:
        shown = repr(kind) if len(kind) <= 64 else repr(kind[:64] + "...")
        raise ValidationError(f"unknown kind {shown}; allowed: {', '.join(allowed)}", path="kind")
    return kind


def _ident(value: str, field: str = "id") -> str:
    if not value:
        raise ValidationError("required", path=field)
    if len(value) > MAX_ID_LENGTH:
        raise ValidationError(f"longer than {MAX_ID_LENGTH} characters", path=field)
    return value


def _reply(kind: str, obj: Any) -> pb.ObjectReply:
    return pb.ObjectReply(kind=kind, id=obj.id, data_json=json.dumps(obj.model_dump(mode="json")))


def _rpc(access: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Wrap a unary handler `(self, request, context, caller)`: authorize the caller for
    `access`, run it, and turn every refusal into a status (context.abort)."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        method = fn.__name__

        audit = method in _AUDITED

        @functools.wraps(fn)
        def handler(self: ControllerService, request: Any, context: grpc.ServicerContext) -> Any:
            started = time.monotonic()
            caller: Caller | None = None
            with request_scope(from_metadata(context.invocation_metadata()) or None):
                try:
                    caller = self.authorize(context, access, method)
                    if isinstance(request, Malformed):
                        raise request.error()
                    reply = fn(self, request, context, caller)
                except Exception as e:  # every failure becomes a status, below
                    failure = self.failure(e, method, caller)
                else:
                    seconds = time.monotonic() - started
                    if self.observe is not None:
                        self.observe(method, "OK", seconds)
                    if audit:
                        log.info("%s %s by %s: ok in %.1f ms", method, _subject(request), _who(caller), seconds * 1e3)
                    elif log.isEnabledFor(logging.DEBUG):
                        log.debug("%s by %s: ok in %.1f ms", method, _who(caller), seconds * 1e3)
                    return reply
                if self.observe is not None:
                    self.observe(method, failure[0].name, time.monotonic() - started)
                if audit:
                    log.info("%s %s by %s: %s", method, _subject(request), _who(caller), failure[0].name)
            self.abort(context, failure)

        return handler

    return wrap


# Calls that change objects: logged at info (with the request id in JSON logs), an audit trail.
_AUDITED = frozenset({"Create", "Update", "Delete", "AttachPod", "DetachPod"})


def _subject(request: Any) -> str:
    """What a call is about, for its log line: kind and id, never the document."""
    kind = getattr(request, "kind", "")
    ident = getattr(request, "id", "") or getattr(request, "attachment_id", "")
    return " ".join(str(x)[:64] for x in (kind, ident) if x) or "-"


def _who(caller: Caller | None) -> str:
    if caller is None:
        return "unauthenticated caller"
    p = caller.principal
    if p.role == "tenant":
        return f"token {p.token_id} (tenant {caller.tenant})"
    if p.role == "agent":
        return f"token {p.token_id} (agent of {p.host})"
    return f"token {p.token_id} (admin{', as tenant ' + caller.tenant if caller.tenant else ''})"


Failure = tuple[grpc.StatusCode, str, tuple[tuple[str, bytes], ...]]


class ControllerService(pb_grpc.ControllerServicer):
    def __init__(self, store: Store, agents: AgentPool, secrets: SecretBox, plane: ControlPlane,
                 auth: Authenticator, *, max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
                 default_converge_timeout: float = DEFAULT_CONVERGE_TIMEOUT,
                 max_long_calls: int = 16) -> None:
        self.store = store
        self.agents = agents
        self.secrets = secrets
        self.plane = plane
        self.auth = auth
        self.max_document_bytes = max_document_bytes
        self.default_converge_timeout = default_converge_timeout
        # Converge and Refresh hold a worker thread for long; cap them so heartbeats (which
        # keep hosts "up") always find a free thread.
        self.max_long_calls = max_long_calls
        self._long_calls = threading.BoundedSemaphore(max_long_calls)
        # Called (method, gRPC code name, seconds) after every call when metrics are on.
        self.observe: Callable[[str, str, float], None] | None = None
        self.creates = CreateBatcher(store, lambda tenant: Engine(store, agents, tenant=tenant, secrets=secrets))

    # ------------------------------------------------------------------ plumbing
    def authorize(self, context: grpc.ServicerContext, access: str, method: str) -> Caller:
        metadata = tuple(context.invocation_metadata() or ())
        try:
            principal = self.auth.authenticate(metadata)
        except AuthError as e:
            log.info("refused %s from %s: %s", method, context.peer(), e)
            raise
        if principal.role not in _ROLES_FOR[access]:
            log.info("refused %s by token %s: role %s", method, principal.token_id, principal.role)
            raise AuthError(grpc.StatusCode.PERMISSION_DENIED,
                            f"{method}: {_WHAT_FOR[access]}; token {principal.token_id} has role {principal.role}")
        tenant = principal.tenant
        wanted = next((str(v) for k, v in metadata if k == TENANT_KEY), None)
        if access == OBJECT and wanted is not None:
            if principal.role == "admin":
                # An admin acts for the tenant it names; without one, across all tenants.
                if wanted and not _NAME_RE.fullmatch(wanted):
                    raise ValidationError(f"{wanted[:64]!r} must be 1-63 lowercase letters, digits or '-'",
                                          path=TENANT_KEY)
                tenant = wanted
            elif wanted != tenant:
                raise AuthError(grpc.StatusCode.PERMISSION_DENIED,
                                f"{method}: metadata {TENANT_KEY} names another tenant than the token's")
        return Caller(principal, tenant)

    def failure(self, exc: Exception, method: str, caller: Caller | None) -> Failure:
        if isinstance(exc, AuthError | Refused):
            if caller is not None:
                log.info("refused %s by %s: %s", method, _who(caller), exc)
            return exc.code, str(exc), ()
        if isinstance(exc, L2vpcError):
            code, message, trailer = to_status(exc)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s by %s: %s: %s", method, _who(caller), code.name, message)
            return code, message, trailer
        log.exception("%s by %s failed unexpectedly", method, _who(caller))
        return grpc.StatusCode.INTERNAL, f"{method}: internal error in the controller (its log has the details)", ()

    @staticmethod
    def abort(context: grpc.ServicerContext, failure: Failure) -> NoReturn:
        code, message, trailer = failure
        if trailer:
            context.set_trailing_metadata(trailer)
        context.abort(code, message)
        raise AssertionError("unreachable: context.abort raises")  # for type checkers

    def engine(self, caller: Caller) -> Engine:
        return Engine(self.store, self.agents, tenant=caller.tenant, secrets=self.secrets)

    def document(self, text: str, field: str = "data_json") -> dict[str, Any]:
        return parse_document(text, field, self.max_document_bytes)

    # ------------------------------------------------------------------ object calls
    @_rpc(OBJECT)
    def Create(self, request: pb.CreateRequest, context: grpc.ServicerContext, caller: Caller) -> pb.ObjectReply:
        kind = _kind(request.kind)
        data = self.document(request.data_json)
        adopt = (request.adopt_key or True) if request.adopt else False
        return _reply(kind, self.creates.create(caller.tenant, kind, data, adopt=adopt))

    @_rpc(OBJECT)
    def Get(self, request: pb.GetRequest, context: grpc.ServicerContext, caller: Caller) -> pb.ObjectReply:
        kind = _kind(request.kind)
        return _reply(kind, self.engine(caller).get(kind, _ident(request.id), confirm=request.confirm))

    @_rpc(OBJECT)
    def Update(self, request: pb.UpdateRequest, context: grpc.ServicerContext, caller: Caller) -> pb.ObjectReply:
        kind = _kind(request.kind)
        ident = _ident(request.id)
        data = self.document(request.data_json)
        return _reply(kind, self.engine(caller).update(kind, ident, data))

    @_rpc(OBJECT)
    def Delete(self, request: pb.DeleteRequest, context: grpc.ServicerContext, caller: Caller) -> pb.DeleteReply:
        kind = _kind(request.kind)
        self.engine(caller).delete(kind, _ident(request.id))
        return pb.DeleteReply()

    @_rpc(OBJECT)
    def List(self, request: pb.ListRequest, context: grpc.ServicerContext, caller: Caller) -> pb.ListReply:
        kind = _kind(request.kind)
        return pb.ListReply(objects=[_reply(kind, o) for o in self.engine(caller).list(kind)])

    @_rpc(OBJECT)
    def Check(self, request: pb.CheckRequest, context: grpc.ServicerContext, caller: Caller) -> pb.ObjectReply:
        kind = _kind(request.kind)
        data = self.document(request.data_json)
        ident = _ident(request.id) if request.id else None
        replacing = [_ident(r) for r in request.replacing]
        adopt = (request.adopt_key or True) if request.adopt else False
        return _reply(kind, self.engine(caller).check(kind, data, ident, replacing=replacing, adopt=adopt))

    @_rpc(OBJECT)
    def AttachedWorkloads(self, request: pb.AttachedWorkloadsRequest, context: grpc.ServicerContext,
                          caller: Caller) -> pb.AttachedWorkloadsReply:
        vpc_id = _ident(request.vpc_id, "vpc_id")
        engine = self.engine(caller)
        engine.get("vpc", vpc_id)  # another tenant's VPC: not found (its members are not ours to list)
        return pb.AttachedWorkloadsReply(workloads=engine.attached_workloads(vpc_id))

    @_rpc(OBJECT)
    def StatusDetail(self, request: pb.StatusDetailRequest, context: grpc.ServicerContext,
                     caller: Caller) -> pb.StatusDetailReply:
        kind = _kind(request.kind, DETAIL_KINDS)
        seen = self.engine(caller).observation(kind, _ident(request.id))
        return pb.StatusDetailReply(detail=seen.detail if seen else "", reason=seen.reason if seen else "",
                                    learned=sorted(seen.learned) if seen else [])

    @_rpc(OBJECT)
    def ListHosts(self, request: pb.ListHostsRequest, context: grpc.ServicerContext,
                  caller: Caller) -> pb.ListHostsReply:
        if request.role and request.role not in HOST_ROLES:
            raise ValidationError(f"unknown role {request.role[:64]!r}; allowed: {', '.join(HOST_ROLES)} "
                                  "(or empty for any)", path="role")
        hosts = self.engine(caller).hosts(request.region or None, request.role or None)
        return pb.ListHostsReply(hosts_json=[json.dumps(h.model_dump(mode="json")) for h in hosts])

    @_rpc(OBJECT)
    def Refresh(self, request: pb.RefreshRequest, context: grpc.ServicerContext, caller: Caller) -> pb.RefreshReply:
        if len(request.hosts) > MAX_REFRESH_HOSTS:
            raise ValidationError(f"at most {MAX_REFRESH_HOSTS} hosts per call", path="hosts")
        timeout = self._seconds(request.timeout_seconds, "timeout_seconds", DEFAULT_REFRESH_TIMEOUT,
                                MAX_REFRESH_TIMEOUT)
        with self._long_call("Refresh"):
            self.engine(caller).refresh(list(request.hosts) or None, timeout)
        return pb.RefreshReply()

    @staticmethod
    def _seconds(value: float, field: str, default: float, maximum: float) -> float:
        if not math.isfinite(value) or value < 0:
            raise ValidationError(f"must be a number of seconds >= 0 (0: the default, {default:g})", path=field)
        return min(value or default, maximum)

    def _long_call(self, method: str) -> _Slot:
        if not self._long_calls.acquire(blocking=False):
            raise Refused(grpc.StatusCode.UNAVAILABLE,
                          f"{method}: this controller already serves {self.max_long_calls} converge/refresh "
                          "calls; retry shortly")
        return _Slot(self._long_calls)

    # ------------------------------------------------------------------ converge
    def Converge(self, request: pb.ConvergeRequest, context: grpc.ServicerContext) -> Iterator[pb.ConvergeEvent]:
        """Stream the plane's progress while it converges, then one event with `done` set.

        The wait runs in a thread of its own so progress can be sent while it blocks; it stops
        when the client goes away (cancelled()), and no state is held beyond that wait: the
        store is consistent whenever a client stops waiting."""
        method = "Converge"
        caller: Caller | None = None
        failure: Failure | None = None
        events: queue.Queue[tuple[str, str] | ConvergeOutcome | BaseException] = queue.Queue()
        started = time.monotonic()
        # A generator: the request's scope is entered around each part, never across a yield.
        rid = from_metadata(context.invocation_metadata()) or new_request_id()
        with request_scope(rid):
            try:
                caller = self.authorize(context, OBJECT, method)
                if isinstance(request, Malformed):
                    raise request.error()
                timeout = self._seconds(request.timeout_seconds, "timeout_seconds", self.default_converge_timeout,
                                        MAX_CONVERGE_TIMEOUT)
                remaining = context.time_remaining()
                if remaining is not None and remaining < timeout + 1:
                    # Answer with the plane's words before the client's own deadline cuts us off.
                    timeout = max(remaining - 0.5, 0.05)
                slot = self._long_call(method)
                try:
                    revision = self.plane.request_converge()
                except BaseException:
                    slot.release()
                    raise

                def wait() -> None:
                    try:
                        outcome = self.plane.wait_converged(revision, timeout, lambda h, m: events.put((h, m)),
                                                            cancelled=lambda: not context.is_active())
                        events.put(outcome)
                    except BaseException as e:  # handed to the handler thread, which reports it
                        events.put(e)
                    finally:
                        slot.release()

                threading.Thread(target=wait, name="converge-wait", daemon=True).start()
                log.info("%s by %s: waiting for revision %d", method, _who(caller), revision)
            except Exception as e:  # becomes a status below
                failure = self.failure(e, method, caller)
        if failure is not None:
            self._finished(method, failure[0].name, started)
            self.abort(context, failure)
        while True:
            item = events.get()
            if isinstance(item, tuple):
                yield pb.ConvergeEvent(host=item[0], message=item[1])
            elif isinstance(item, ConvergeOutcome):
                with request_scope(rid):
                    log.info("%s by %s: revision %d converged, %d failures", method, _who(caller), item.revision,
                             len(item.failures))
                self._finished(method, "OK", started)
                yield pb.ConvergeEvent(done=True, revision=item.revision, failures=[
                    pb.HostFailure(host=f.host, step=f.step, error=f.detail, code=f.code) for f in item.failures])
                return
            else:
                break
        if isinstance(item, TemporaryError):
            # The plane gave up waiting (its message names what is missing).
            _, message, trailer = to_status(item)
            failure = grpc.StatusCode.DEADLINE_EXCEEDED, message, trailer
        elif isinstance(item, Exception):
            with request_scope(rid):
                failure = self.failure(item, method, caller)
        else:
            failure = grpc.StatusCode.INTERNAL, f"{method}: the wait was interrupted", ()
        self._finished(method, failure[0].name, started)
        self.abort(context, failure)

    def _finished(self, method: str, code: str, started: float) -> None:
        if self.observe is not None:
            self.observe(method, code, time.monotonic() - started)

    # ------------------------------------------------------------------ agents
    @_rpc(AGENT)
    def Register(self, request: pb.RegisterRequest, context: grpc.ServicerContext,
                 caller: Caller) -> pb.RegisterReply:
        doc = self.document(request.host_json, "host_json")
        host = parse(Host, doc)
        self._own_host(caller, host.name, "Register")
        if caller.principal.role == "admin":
            interval = self.plane.register(host)  # the operator's word: creates or changes the host
        else:
            try:
                interval = self.plane.register_agent(host, doc.keys())
            except NotAdmitted as e:  # not enrolled, or another identity than enrolled
                raise AuthError(grpc.StatusCode.PERMISSION_DENIED, f"Register: {e}") from None
        log.info("host %s registered (agent at %s)", host.name, host.agent_address or "no address")
        return pb.RegisterReply(heartbeat_interval_seconds=interval)

    @_rpc(AGENT)
    def Heartbeat(self, request: pb.HeartbeatRequest, context: grpc.ServicerContext,
                  caller: Caller) -> pb.HeartbeatReply:
        self._own_host(caller, _ident(request.host, "host"), "Heartbeat")
        if len(request.actual_digest) > 128:
            raise ValidationError("longer than 128 characters", path="actual_digest")
        interval = self.plane.heartbeat(request.host, request.accepted_generation, request.converged_generation,
                                        request.converging, request.actual_digest)
        return pb.HeartbeatReply(heartbeat_interval_seconds=interval)

    @_rpc(AGENT)
    def AttachPod(self, request: pb.AttachPodRequest, context: grpc.ServicerContext,
                  caller: Caller) -> pb.AttachPodReply:
        host = _ident(request.host, "host")
        self._own_host(caller, host, "AttachPod")
        container = _ident(request.container_id, "container_id")
        if len(container) > MAX_CONTAINER_ID_LENGTH:
            raise ValidationError(f"longer than {MAX_CONTAINER_ID_LENGTH} characters", path="container_id")
        engine = Engine(self.store, self.agents, secrets=self.secrets)  # the VPC's tenant, whichever
        att, port = engine.attach_pod(_ident(request.vpc, "vpc"), host=host, workload=request.workload,
                                      interface_name=request.interface_name or None, owner=f"pod:{host}/{container}",
                                      ip_address=request.ip_address or None)
        revision = self.plane.request_converge()
        log.info("host %s: pod attachment %s (%s, %s) for container %s", host, att.id, att.workload,
                 att.interface_name, container[:16])
        return pb.AttachPodReply(attachment_json=json.dumps(att.model_dump(mode="json")), revision=revision,
                                 port_json=json.dumps(dataclasses.asdict(port)))

    @_rpc(AGENT)
    def DetachPod(self, request: pb.DetachPodRequest, context: grpc.ServicerContext,
                  caller: Caller) -> pb.DetachPodReply:
        host = _ident(request.host, "host")
        self._own_host(caller, host, "DetachPod")
        ident = _ident(request.attachment_id, "attachment_id")
        engine = Engine(self.store, self.agents, secrets=self.secrets)
        att = engine.find("attachment", ident)
        if att is None:
            return pb.DetachPodReply(deleted=False)
        if not (att.owner or "").startswith(f"pod:{host}/"):
            raise AuthError(grpc.StatusCode.PERMISSION_DENIED,
                            f"DetachPod: attachment {ident} is not an on-demand attachment of a Pod on host {host}")
        try:
            engine.delete("attachment", ident)
        except NotFoundError:
            return pb.DetachPodReply(deleted=False)  # a concurrent DEL won
        revision = self.plane.request_converge()
        log.info("host %s: pod attachment %s deleted", host, ident)
        return pb.DetachPodReply(deleted=True, revision=revision)

    @staticmethod
    def _own_host(caller: Caller, host: str, method: str) -> None:
        p = caller.principal
        if p.role == "agent" and host != p.host:
            raise AuthError(grpc.StatusCode.PERMISSION_DENIED,
                            f"{method}: token {p.token_id} is for host {p.host}, not {host[:63]}")

    # ------------------------------------------------------------------ operators
    @_rpc(ADMIN)
    def Status(self, request: pb.StatusRequest, context: grpc.ServicerContext, caller: Caller) -> pb.StatusReply:
        s = self.plane.status()
        return pb.StatusReply(
            controller=s.controller, leader=s.leader, term=s.term, desired_revision=s.desired_revision,
            converged_revision=s.converged_revision,
            hosts=[pb.HostLiveness(name=h.name, status=h.status, last_seen_unix=h.last_seen_unix) for h in s.hosts],
            recent=[pb.ReconcileEvent(time_unix=e.time_unix, host=e.host, what=e.what) for e in s.recent],
            overlay=[pb.OverlayPair(vpc=o.vpc, vpc_id=o.vpc_id, host=o.host, peer_host=o.peer_host, peer_ip=o.peer_ip,
                                    reason=o.reason, path_mtu=o.path_mtu, needed_mtu=o.needed_mtu, detail=o.detail)
                     for o in s.overlay],
        )


class _Slot:
    """One held place among the long calls; released exactly once."""

    def __init__(self, sem: threading.BoundedSemaphore) -> None:
        self._sem = sem
        self._lock = threading.Lock()
        self._held = True

    def release(self) -> None:
        with self._lock:
            if self._held:
                self._held = False
                self._sem.release()

    def __enter__(self) -> _Slot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
