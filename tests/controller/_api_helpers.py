"""Helpers of the API tests: a CA directory, a controller served in-process over real TLS on
real PostgreSQL, and a client that calls it with a token."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest

from l2vpc._proto import controller_pb2 as pb
from l2vpc._proto import controller_pb2_grpc as pb_grpc
from l2vpc.controller.server import ControllerHandle, ControllerSettings, serve
from l2vpc.pki import CertificateAuthority

OBJECT_KINDS = ("vpc", "attachment", "direct_connect", "vpn")


def make_pki(directory: Path) -> Path:
    """A CA with the controller's server certificate and the engine's client certificate."""
    ca = CertificateAuthority.create(directory)
    ca.issue_server("controller")
    ca.issue_client("engine")
    return directory


@contextmanager
def running_controller(url: str, pki: Path, **settings: Any) -> Iterator[ControllerHandle]:
    options: dict[str, Any] = {"controller_id": "api-test", "down_after": 3600.0, "heartbeat_interval": 1.0,
                               "token_cache_seconds": 0.2, "stop_grace": 0.5, **settings}
    _, handle = serve(ControllerSettings(store=url, listen="127.0.0.1:0", pki_dir=pki, **options))
    try:
        yield handle
    finally:
        handle.stop(0.5)


class Client:
    """Calls one controller; `token` is sent as `authorization: Bearer <token>`."""

    def __init__(self, address: str, ca: Path) -> None:
        creds = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
        self.channel = grpc.secure_channel(address, creds, options=[("grpc.max_send_message_length", 8 << 20)])
        self.stub = pb_grpc.ControllerStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def call(self, method: str, request: Any, token: str | None, *, tenant: str | None = None,
             metadata: tuple[tuple[str, str], ...] = (), timeout: float = 10.0) -> Any:
        md = list(metadata)
        if token is not None:
            md.append(("authorization", f"Bearer {token}"))
        if tenant is not None:
            md.append(("l2vpc-tenant", tenant))
        fn = getattr(self.stub, method)
        if method == "Converge":
            return list(fn(request, metadata=md, timeout=timeout))
        return fn(request, metadata=md, timeout=timeout)

    def raw(self, method: str, data: bytes, token: str, timeout: float = 10.0) -> bytes:
        """Send bytes as a request to `method` (to test malformed messages)."""
        fn = self.channel.unary_unary(f"/l2vpc.controller.v1.Controller/{method}",
                                      request_serializer=None, response_deserializer=None)
        result: bytes = fn(data, metadata=[("authorization", f"Bearer {token}")], timeout=timeout)
        return result

    # Object calls returning the object's document (dict).
    def create(self, token: str, kind: str, data: dict[str, Any], **kw: Any) -> dict[str, Any]:
        reply = self.call("Create", pb.CreateRequest(kind=kind, data_json=json.dumps(data)), token, **kw)
        return dict(json.loads(reply.data_json))

    def get(self, token: str, kind: str, ident: str, **kw: Any) -> dict[str, Any]:
        reply = self.call("Get", pb.GetRequest(kind=kind, id=ident), token, **kw)
        return dict(json.loads(reply.data_json))

    def update(self, token: str, kind: str, ident: str, data: dict[str, Any], **kw: Any) -> dict[str, Any]:
        reply = self.call("Update", pb.UpdateRequest(kind=kind, id=ident, data_json=json.dumps(data)), token, **kw)
        return dict(json.loads(reply.data_json))

    def list(self, token: str, kind: str, **kw: Any) -> list[dict[str, Any]]:
        reply = self.call("List", pb.ListRequest(kind=kind), token, **kw)
        return [json.loads(o.data_json) for o in reply.objects]


def rejected(fn: Any, *args: Any, **kwargs: Any) -> grpc.RpcError:
    """The RpcError a call fails with (the test fails if it succeeds)."""
    with pytest.raises(grpc.RpcError) as info:
        fn(*args, **kwargs)
    return info.value


def snapshot(db: Any) -> tuple[list[Any], list[Any]]:
    """Every tenant object and allocation, behind the controller's back."""
    objects = db.raw("SELECT kind, id, tenant, generation, data::text FROM objects "
                     "WHERE kind IN ('vpc', 'attachment', 'direct_connect', 'vpn') ORDER BY kind, id")
    allocations = db.raw("SELECT pool, value, owner FROM allocations ORDER BY pool, value")
    return objects, allocations
