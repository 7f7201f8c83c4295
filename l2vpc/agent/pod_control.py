"""The agent's link to its controller for Pods' on-demand attachments (AttachPod, DetachPod).

    control = PodControl(settings, tokens, host="host1")       # with `agent run --controller`
    att = control.attach("blue", workload="default-web", interface_name="net1", container_id=cid)
    control.detach(att.id)
    control.close()

A Pod that names VPCs no `l2vpc_attachment` declares for it gets them at its CNI ADD: the agent
asks the controller to create each (placed on this host, owned by the Pod) and deletes them at
DEL. Synchronous gRPC (the CNI request's thread waits for the answer anyway) over one channel
per controller address, opened at once and kept, so an ADD pays no TLS handshake; a controller
that does not answer moves the call on to the next address (AttachPod is idempotent for one
Pod, so a retry after a lost answer gets the same attachment).

The controller's refusals become CNI errors chosen by rule, read from its error trailer
(`l2vpc-error-bin`, see proto/controller.proto), never by parsing its words:

    rule vpcs_per_workload          → TOO_MANY_VPCS (the message names the limit, 10)
    NOT_FOUND of the VPC            → UNKNOWN_VPC
    any other rule, a field's value → RULE_VIOLATED, the message naming the field path
    unreachable, busy, a concurrent change → TRY_AGAIN_LATER

The agent imports nothing of the engine: RULE_CODES holds the rule ids as strings
(engine/validation.py RULES; a test keeps the two equal).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from l2vpc._proto import controller_pb2 as cpb
from l2vpc._proto import controller_pb2_grpc as cpb_grpc
from l2vpc.agent.credentials import CONNECT_TIMEOUT_MS, ControllerSettings, TokenSource
from l2vpc.agent.pods import port_from_dict
from l2vpc.cni import spec
from l2vpc.cni.spec import CniError
from l2vpc.hostconfig import Port

log = logging.getLogger("l2vpc.agent.pods")

ERROR_KEY = "l2vpc-error-bin"
CALL_TIMEOUT = 10.0  # per controller address
# Rules of engine/validation.py that get a code of their own; every other one is RULE_VIOLATED.
RULE_CODES = {"vpcs_per_workload": spec.TOO_MANY_VPCS}
_RETRY_NEXT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)
_LATER = (*_RETRY_NEXT, grpc.StatusCode.ABORTED, grpc.StatusCode.FAILED_PRECONDITION,
          grpc.StatusCode.RESOURCE_EXHAUSTED)


@dataclass(frozen=True, slots=True)
class PodAttachment:
    """What AttachPod created (or found, for a retry): the engine's Attachment, in short."""

    id: str
    vpc_id: str
    workload: str
    interface_name: str
    mac_address: str
    ip_mode: str
    ip_address: str | None
    revision: int  # the desired revision that brings it to this host
    port: Port | None  # the port as that push will carry it (None from an older controller)

    @classmethod
    def from_reply(cls, reply: cpb.AttachPodReply) -> PodAttachment:
        doc = json.loads(reply.attachment_json)
        port = port_from_dict(json.loads(reply.port_json)) if reply.port_json else None
        return cls(str(doc["id"]), str(doc["vpc_id"]), str(doc["workload"]), str(doc.get("interface_name") or ""),
                   str(doc.get("mac_address") or ""), str(doc.get("ip_mode") or "none"), doc.get("ip_address"),
                   int(reply.revision), port)


def _trailer(e: grpc.RpcError) -> dict[str, Any]:
    trailers = e.trailing_metadata() if isinstance(e, grpc.Call) else None
    for key, value in trailers or ():
        if key == ERROR_KEY:
            try:
                body = json.loads(value)
            except (ValueError, TypeError):
                return {}
            return body if isinstance(body, dict) else {}
    return {}


def cni_error(e: grpc.RpcError, vpc: str = "") -> CniError:
    """The CNI error a refused AttachPod/DetachPod stands for (see the module docstring)."""
    code = e.code() if isinstance(e, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (e.details() if isinstance(e, grpc.Call) else "") or code.name.lower()
    body = _trailer(e)
    kind = body.get("type")
    if kind == "not_found" and body.get("kind") == "vpc":
        return CniError(spec.UNKNOWN_VPC, f"vpc: no VPC named {vpc or body.get('id')!r} (nor with that id)",
                        "name a VPC of the controller, by name or id")
    if kind == "validation":
        problems = [(str(p), str(m)) for p, m in body.get("problems") or ()] or [("", details)]
        rules = [str(r) for r in body.get("rules") or ()]
        rules += [""] * (len(problems) - len(rules))
        for (_path, message), rule in zip(problems, rules, strict=False):
            if rule in RULE_CODES:
                return CniError(RULE_CODES[rule], f"{spec.ERRORS[RULE_CODES[rule]]}: {message}", f"rule {rule}")
        text = "; ".join(f"{p}: {m}" if p else m for p, m in problems)
        return CniError(spec.RULE_VIOLATED, text, f"rule {rules[0]}" if rules[0] else "")
    if code in _LATER:
        return CniError(spec.TRY_AGAIN_LATER, f"the controller could not do it now ({code.name}): {details}")
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return CniError(spec.IO_FAILURE, f"the controller refused this agent ({code.name}): {details}",
                        "check the agent's token (--token-file)")
    return CniError(spec.IO_FAILURE, f"the controller failed ({code.name}): {details}")


class PodControl:
    """AttachPod and DetachPod for one host, with the agent's controller settings and token."""

    def __init__(self, settings: ControllerSettings, tokens: TokenSource, host: str, *,
                 timeout: float = CALL_TIMEOUT) -> None:
        self.host = host
        self.tokens = tokens
        self.timeout = timeout
        self.addresses = settings.addresses
        creds = grpc.ssl_channel_credentials(root_certificates=settings.read_ca())
        options: list[tuple[str, Any]] = [
            ("grpc.enable_retries", 0),
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 2000),
            ("grpc.min_reconnect_backoff_ms", CONNECT_TIMEOUT_MS),
        ]
        if settings.server_name:
            options += [("grpc.ssl_target_name_override", settings.server_name),
                        ("grpc.default_authority", settings.server_name)]
        self._channels = [grpc.secure_channel(a, creds, options=options) for a in settings.addresses]
        self._stubs = [cpb_grpc.ControllerStub(c) for c in self._channels]
        self._current = 0
        for c in self._channels:
            _connect_now(c)

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        token = self.tokens.get(self.host)
        return (("authorization", f"Bearer {token}"),) if token else ()

    def _call(self, method: str, request: Any, vpc: str = "") -> Any:
        """Call `method` on the current controller, then on the others while they are unreachable."""
        last: grpc.RpcError | None = None
        for step in range(len(self._stubs)):
            index = (self._current + step) % len(self._stubs)
            try:
                reply = getattr(self._stubs[index], method)(request, timeout=self.timeout, metadata=self._metadata())
            except grpc.RpcError as e:
                last = e
                if isinstance(e, grpc.Call) and e.code() in _RETRY_NEXT:
                    log.info("%s at controller %s: %s", method, self.addresses[index], e.code().name)
                    continue
                raise cni_error(e, vpc) from None
            self._current = index
            return reply
        assert last is not None
        err = cni_error(last, vpc)
        raise CniError(spec.TRY_AGAIN_LATER, f"no controller answers ({', '.join(self.addresses)}): "
                       "on-demand attachments need the controller", err.msg) from None

    def attach(self, vpc: str, *, workload: str, interface_name: str, container_id: str,
               ip_address: str | None = None) -> PodAttachment:
        reply = self._call("AttachPod", cpb.AttachPodRequest(
            host=self.host, vpc=vpc, workload=workload, interface_name=interface_name,
            ip_address=ip_address or "", container_id=container_id), vpc)
        att = PodAttachment.from_reply(reply)
        log.info("pod attachment %s of %s to VPC %s (%s) created, revision %d", att.id, workload, vpc,
                 att.interface_name, att.revision)
        return att

    def detach(self, attachment_id: str) -> bool:
        """Delete the Pod's attachment; False when it was gone already."""
        reply = self._call("DetachPod", cpb.DetachPodRequest(host=self.host, attachment_id=attachment_id))
        log.info("pod attachment %s %s", attachment_id, "deleted" if reply.deleted else "was gone already")
        return bool(reply.deleted)

    def close(self) -> None:
        for c in self._channels:
            c.close()


def _connect_now(channel: grpc.Channel) -> None:
    """Start connecting now, not at the first Pod. The subscription ends at its first report:
    grpc's watcher thread, left running, raises into the void when the channel is closed under it
    ("Cannot monitor channel state: Channel closed!")."""
    def first_report(_state: grpc.ChannelConnectivity) -> None:
        channel.unsubscribe(first_report)

    channel.subscribe(first_report, try_to_connect=True)


def static_address(args: Mapping[str, str], config: Mapping[str, Any]) -> str | None:
    """The static address a runtime asks for: CNI_ARGS `IP=a.b.c.d/len` (as the reference
    plugins take it), else the first of the `ips` runtime capability."""
    if args.get("IP"):
        return args["IP"]
    runtime = config.get("runtimeConfig")
    ips = runtime.get("ips") if isinstance(runtime, dict) else None
    if isinstance(ips, list) and ips and isinstance(ips[0], str) and ips[0]:
        return ips[0]
    return None
