"""The provider process as Terraform sees it: handshake, TLS, unsupported RPCs, shutdown."""

from __future__ import annotations

import base64
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from l2vpc._proto import grpc_controller_pb2, grpc_controller_pb2_grpc, tfplugin6_pb2_grpc
from l2vpc._proto import tfplugin6_pb2 as pb
from l2vpc.provider import launcher
from l2vpc.provider.server import MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE
from l2vpc.testing import l2test_provider
from l2vpc.testing.provider_process import UNUSED_CLIENT_CERT, Handshake

FIXTURE = l2test_provider.FACTORY


def provider_command(factory: str = FIXTURE) -> list[str]:
    return [sys.executable, "-S", "-m", "l2vpc.provider", "--provider", factory]


def provider_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PLUGIN_CLIENT_CERT", MAGIC_COOKIE_KEY)}
    env["PYTHONPATH"] = ":".join(launcher.python_path())
    env[l2test_provider.STORE_ENV] = str(tmp_path / "store.json")
    env["TMPDIR"] = str(tmp_path)
    env.update(extra)
    return env


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    parts: list[str]
    channel: grpc.Channel

    @property
    def socket_dir(self) -> Path:
        return Path(self.parts[3]).parent


@contextmanager
def running_provider(tmp_path: Path, tls: bool = True, factory: str = FIXTURE) -> Iterator[Running]:
    env = provider_env(tmp_path, **{MAGIC_COOKIE_KEY: MAGIC_COOKIE_VALUE, "PLUGIN_PROTOCOL_VERSIONS": "5,6"})
    if tls:
        env["PLUGIN_CLIENT_CERT"] = UNUSED_CLIENT_CERT
    proc = subprocess.Popen(
        provider_command(factory), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line, proc.stderr.read().decode() if proc.stderr else ""
        handshake = Handshake.parse(line)
        with handshake.channel() as channel:
            yield Running(proc, handshake.parts, channel)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def test_run_by_hand_explains_itself_and_exits(tmp_path: Path) -> None:
    result = subprocess.run(provider_command(), env=provider_env(tmp_path), capture_output=True, timeout=30)
    assert result.returncode == 1 and result.stdout == b""
    assert b"Terraform provider plugin: Terraform starts it, it is not run by hand" in result.stderr
    assert b"l2vpc provider install" in result.stderr


def test_refuses_a_terraform_without_protocol_6(tmp_path: Path) -> None:
    env = provider_env(tmp_path, **{MAGIC_COOKIE_KEY: MAGIC_COOKIE_VALUE, "PLUGIN_PROTOCOL_VERSIONS": "4,5"})
    result = subprocess.run(provider_command(), env=env, capture_output=True, timeout=30)
    assert result.returncode == 1 and b"speaks only version 6" in result.stderr


def test_tls_handshake_serves_rpcs_and_shuts_down_cleanly(tmp_path: Path) -> None:
    with running_provider(tmp_path) as p:
        assert p.parts[:3] == ["1", "6", "unix"] and p.parts[4] == "grpc"
        assert not p.parts[5].endswith("=")  # unpadded base64, as go-plugin decodes it
        cert = x509.load_der_x509_certificate(base64.b64decode(p.parts[5] + "=" * (-len(p.parts[5]) % 4)))
        assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName
        ) == ["localhost"]
        key = cert.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
        mode = p.socket_dir.stat()
        assert stat.S_IMODE(mode.st_mode) == 0o700 and mode.st_uid == os.getuid()

        provider = tfplugin6_pb2_grpc.ProviderStub(p.channel)
        schema = provider.GetProviderSchema(pb.GetProviderSchema.Request(), timeout=30)
        assert "l2test_thing" in schema.resource_schemas

        # Features we do not offer answer with diagnostics, whatever the RPC's shape.
        unary = provider.ValidateEphemeralResourceConfig(
            pb.ValidateEphemeralResourceConfig.Request(type_name="x"), timeout=10
        )
        assert unary.diagnostics[0].summary == "Ephemeral resources not supported"
        (event,) = list(provider.ListResource(pb.ListResource.Request(type_name="x"), timeout=10))
        assert event.diagnostic[0].summary == "Listing resources not supported"
        written = provider.WriteStateBytes(iter([pb.WriteStateBytes.RequestChunk()]), timeout=10)
        assert written.diagnostics[0].summary == "State storage not supported"
        # go-plugin's optional services are simply absent, which Terraform tolerates.
        stdio = p.channel.unary_stream("/plugin.GRPCStdio/StreamStdio")
        with pytest.raises(grpc.RpcError) as absent:
            list(stdio(b"", timeout=10))
        assert absent.value.code() == grpc.StatusCode.UNIMPLEMENTED

        provider.StopProvider(pb.StopProvider.Request(), timeout=10)
        grpc_controller_pb2_grpc.GRPCControllerStub(p.channel).Shutdown(
            grpc_controller_pb2.Empty(), timeout=10
        )
        assert p.proc.wait(timeout=10) == 0
        assert not p.socket_dir.exists()


def test_plain_grpc_without_client_certificate_and_sigterm(tmp_path: Path) -> None:
    with running_provider(tmp_path, tls=False) as p:
        assert p.parts[5] == ""  # no certificate: go-plugin then speaks plain gRPC
        metadata = tfplugin6_pb2_grpc.ProviderStub(p.channel).GetMetadata(
            pb.GetMetadata.Request(), timeout=30
        )
        assert [r.type_name for r in metadata.resources] == ["l2test_thing"]
        p.proc.send_signal(signal.SIGINT)  # Terraform's business: ignored
        time.sleep(0.3)
        assert p.proc.poll() is None
        p.proc.send_signal(signal.SIGTERM)
        assert p.proc.wait(timeout=10) == 0
        assert not p.socket_dir.exists()


def test_a_provider_that_fails_to_load_says_so_on_every_rpc(tmp_path: Path) -> None:
    with running_provider(tmp_path, factory="l2vpc.testing.l2test_provider:no_such_function") as p:
        with pytest.raises(grpc.RpcError) as failure:
            tfplugin6_pb2_grpc.ProviderStub(p.channel).GetProviderSchema(
                pb.GetProviderSchema.Request(), timeout=30
            )
        assert failure.value.code() == grpc.StatusCode.INTERNAL
        assert "failed to load (AttributeError" in str(failure.value.details())
        assert "please report" in str(failure.value.details())


def test_calls_arriving_before_the_provider_loads_wait_and_then_work() -> None:
    from l2vpc.provider.server import _LazyProvider

    lazy = _LazyProvider()

    class Details:
        def __init__(self, method: str) -> None:
            self.method = method

    # Handlers handed out before loading take raw bytes: no generated code needed yet.
    listing = lazy.service(Details("/tfplugin6.Provider/ListResource"))
    writing = lazy.service(Details("/tfplugin6.Provider/WriteStateBytes"))
    metadata = lazy.service(Details("/tfplugin6.Provider/GetMetadata"))
    assert lazy.service(Details("/plugin.GRPCStdio/StreamStdio")) is None
    assert listing.request_deserializer is None and listing.unary_stream is not None
    lazy.load(l2test_provider.__name__, "build_provider")

    events = list(listing.unary_stream(pb.ListResource.Request(type_name="x").SerializeToString(), None))
    assert (
        pb.ListResource.Event.FromString(events[0]).diagnostic[0].summary == "Listing resources not supported"
    )
    written = writing.stream_unary(iter([b""]), None)
    assert (
        pb.WriteStateBytes.Response.FromString(written).diagnostics[0].summary
        == "State storage not supported"
    )
    meta = pb.GetMetadata.Response.FromString(metadata.unary_unary(b"", None))
    assert [r.type_name for r in meta.resources] == ["l2test_thing"]
    # Once loaded, the generated handlers are used directly.
    assert lazy.service(Details("/tfplugin6.Provider/GetMetadata")).request_deserializer is not None
