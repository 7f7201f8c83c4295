"""Engine errors across the controller API, both ways.

The service turns an engine error into a gRPC status plus trailing metadata `l2vpc-error-bin`
(JSON, see proto/controller.proto); the client turns that back into the same engine error, so
the provider reports a remote error exactly as an embedded one (attribute paths included, and
the rule each problem breaks: `rules`, see engine/validation.py RULES).
"""

from __future__ import annotations

import json
from typing import Any

import grpc

from l2vpc.engine.errors import (
    AuthenticationError,
    ConflictError,
    HostError,
    L2vpcError,
    NotFoundError,
    Problem,
    StoreError,
    TemporaryError,
    UserError,
    ValidationError,
)

ERROR_KEY = "l2vpc-error-bin"
_MAX_PROBLEMS = 50


def to_status(exc: L2vpcError) -> tuple[grpc.StatusCode, str, tuple[tuple[str, bytes], ...]]:
    """(code, message, trailing metadata) for an engine error."""
    body: dict[str, Any] = {"message": str(exc)}
    if isinstance(exc, ValidationError):
        code, body["type"] = grpc.StatusCode.INVALID_ARGUMENT, "validation"
        body["problems"] = [[p, m] for p, m in exc.problems[:_MAX_PROBLEMS]]
        body["rules"] = exc.rules[:_MAX_PROBLEMS]
    elif isinstance(exc, NotFoundError):
        code, body["type"] = grpc.StatusCode.NOT_FOUND, "not_found"
        body["kind"], body["id"] = exc.kind, exc.ident
    elif isinstance(exc, ConflictError):
        code, body["type"] = grpc.StatusCode.FAILED_PRECONDITION, "conflict"
    elif isinstance(exc, TemporaryError):
        code, body["type"] = grpc.StatusCode.UNAVAILABLE, "temporary"
    elif isinstance(exc, HostError):
        code, body["type"] = grpc.StatusCode.FAILED_PRECONDITION, "host"
        body["host"], body["step"], body["reason"] = exc.host, exc.step, exc.reason
    elif isinstance(exc, StoreError):
        code, body["type"] = grpc.StatusCode.INTERNAL, "store"
    elif isinstance(exc, UserError):
        code, body["type"] = grpc.StatusCode.INVALID_ARGUMENT, "user"
    else:
        code, body["type"] = grpc.StatusCode.INTERNAL, "error"
    return code, str(exc), ((ERROR_KEY, json.dumps(body).encode()),)


def from_rpc(e: grpc.RpcError) -> L2vpcError:
    """The engine error a failed call stands for (TemporaryError for transport failures)."""
    code = e.code() if isinstance(e, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (e.details() if isinstance(e, grpc.Call) else "") or code.name.lower()
    body: dict[str, Any] = {}
    trailers = e.trailing_metadata() if isinstance(e, grpc.Call) else None
    for key, value in trailers or ():
        if key == ERROR_KEY:
            try:
                loaded = json.loads(value)
                body = loaded if isinstance(loaded, dict) else {}
            except (ValueError, TypeError):
                body = {}
    kind = body.get("type")
    message = str(body.get("message") or details)
    if kind == "validation":
        rules = [str(r) for r in body.get("rules") or ()]
        problems: list[tuple[str, str]] = [
            Problem(str(p), str(m), rules[i] if i < len(rules) else "")
            for i, (p, m) in enumerate(body.get("problems") or [["", message]])]
        return ValidationError(problems)
    if kind == "not_found":
        return NotFoundError(str(body.get("kind", "object")), str(body.get("id", "")))
    if kind == "conflict":
        return ConflictError(message)
    if kind == "host":
        return HostError(str(body.get("host", "")), str(body.get("step", "")), str(body.get("reason", message)))
    if kind == "store":
        return StoreError(message)
    if kind == "user":
        return UserError(message)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED,
                grpc.StatusCode.CANCELLED):
        return TemporaryError(f"controller: {code.name.lower()}: {details}")
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return AuthenticationError(f"controller refused the token: {details}")
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return UserError(f"controller: permission denied: {details}")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return UserError(f"controller: request too large or too many: {details}")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return ValidationError(details)
    return L2vpcError(f"controller: {code.name.lower()}: {details}")
