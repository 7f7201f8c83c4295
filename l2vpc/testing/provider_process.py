"""A provider process as Terraform sees it: the handshake line, a channel to it, timed starts.

`Handshake` reads go-plugin's line (`1|6|unix|<socket>|grpc|<certificate>`) and opens a gRPC
channel that trusts the certificate printed there; `timed_start` starts a launcher the way
Terraform does and times handshake, first schema and exit (bench_provider_start.py,
bench_provider_tf.py). Terraform passes its client certificate in PLUGIN_CLIENT_CERT, which
makes the provider serve TLS; the provider never reads it, so tests may pass UNUSED_CLIENT_CERT.
"""

from __future__ import annotations

import base64
import select
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

UNUSED_CLIENT_CERT = "-----BEGIN CERTIFICATE-----\n(unused)\n-----END CERTIFICATE-----\n"


@dataclass(frozen=True)
class Handshake:
    parts: list[str]

    @classmethod
    def parse(cls, line: str) -> Handshake:
        parts = line.rstrip("\n").split("|")
        if len(parts) < 6 or parts[:2] != ["1", "6"]:
            raise ValueError(f"bad handshake line: {line!r}")
        return cls(parts)

    @property
    def socket_path(self) -> Path:
        return Path(self.parts[3])

    @property
    def certificate_der(self) -> bytes | None:
        """The server certificate (unpadded base64 DER on the line); None: plain gRPC."""
        text = self.parts[5]
        return base64.b64decode(text + "=" * (-len(text) % 4)) if text else None

    def channel(self) -> Any:
        """A gRPC channel to the provider, trusting exactly the certificate it printed."""
        import grpc

        target = f"unix:{self.parts[3]}"
        der = self.certificate_der
        if der is None:
            return grpc.insecure_channel(target)
        pem = b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der) + b"-----END CERTIFICATE-----\n"
        return grpc.secure_channel(
            target,
            grpc.ssl_channel_credentials(root_certificates=pem),
            options=[("grpc.ssl_target_name_override", "localhost")],
        )


def client_certificate_pem() -> str:
    """A P-521 certificate, like the one Terraform passes (the provider does not read it)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP521R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(key, hashes.SHA512())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def timed_start(
    launcher_path: Path, env: dict[str, str], on_handshake: Callable[[], None] | None = None
) -> tuple[float, float, float]:
    """Start the provider at `launcher_path` as Terraform does; (start -> handshake,
    start -> first GetProviderSchema answer, GRPCController.Shutdown -> process gone), in
    seconds. `on_handshake` runs right after the handshake line, untimed."""
    import grpc  # noqa: F401 - imported before the clock starts (Handshake.channel uses it)

    from l2vpc._proto import grpc_controller_pb2, grpc_controller_pb2_grpc, tfplugin6_pb2, tfplugin6_pb2_grpc

    start = time.perf_counter()
    proc = subprocess.Popen([str(launcher_path)], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        if not ready:
            raise RuntimeError("no handshake within 30 s")
        line = proc.stdout.readline().decode().strip()
        handshake = time.perf_counter() - start
        if on_handshake is not None:
            on_handshake()  # not timed: happens while Terraform would be connecting
        with Handshake.parse(line).channel() as channel:
            tfplugin6_pb2_grpc.ProviderStub(channel).GetProviderSchema(
                tfplugin6_pb2.GetProviderSchema.Request(), timeout=30
            )
            schema = time.perf_counter() - start
            stopping = time.perf_counter()
            grpc_controller_pb2_grpc.GRPCControllerStub(channel).Shutdown(grpc_controller_pb2.Empty(), timeout=10)
        proc.wait(timeout=10)
        return handshake, schema, time.perf_counter() - stopping
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
