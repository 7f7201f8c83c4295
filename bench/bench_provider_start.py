#!/usr/bin/env python3
"""How fast the provider starts: process start -> handshake line, and -> first schema answer.

    python bench/bench_provider_start.py [--runs 30] [--no-tls] [--launcher PATH]

Starts the provider the way Terraform does (launcher script, magic cookie, a client
certificate in PLUGIN_CLIENT_CERT so the TLS path is measured), times the handshake line on
stdout, then connects like Terraform (TLS, trusting the printed certificate) and times the
first GetProviderSchema answer, which includes loading the provider after the handshake.
Prints median and p90 in milliseconds. Target: handshake median <= 120 ms.
"""

from __future__ import annotations

import argparse
import base64
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from l2vpc.provider import launcher  # noqa: E402
from l2vpc.provider.server import MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE  # noqa: E402


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


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def one_run(launcher_path: Path, env: dict[str, str]) -> tuple[float, float]:
    import grpc

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
        parts = line.split("|")
        if len(parts) < 6 or parts[:2] != ["1", "6"]:
            raise RuntimeError(f"bad handshake line: {line!r}")
        target = f"unix:{parts[3]}"
        if parts[5]:
            der = base64.b64decode(parts[5] + "=" * (-len(parts[5]) % 4))
            pem = b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der) + b"-----END CERTIFICATE-----\n"
            creds = grpc.ssl_channel_credentials(root_certificates=pem)
            channel = grpc.secure_channel(
                target, creds, options=[("grpc.ssl_target_name_override", "localhost")]
            )
        else:
            channel = grpc.insecure_channel(target)
        with channel:
            tfplugin6_pb2_grpc.ProviderStub(channel).GetProviderSchema(
                tfplugin6_pb2.GetProviderSchema.Request(), timeout=30
            )
            schema = time.perf_counter() - start
            grpc_controller_pb2_grpc.GRPCControllerStub(channel).Shutdown(
                grpc_controller_pb2.Empty(), timeout=10
            )
        proc.wait(timeout=10)
        return handshake, schema
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--no-tls", action="store_true", help="start without PLUGIN_CLIENT_CERT (plain gRPC)")
    parser.add_argument(
        "--launcher", type=Path, help="an existing launcher (default: a fresh one for this checkout)"
    )
    args = parser.parse_args()

    env = dict(os.environ, **{MAGIC_COOKIE_KEY: MAGIC_COOKIE_VALUE, "PLUGIN_PROTOCOL_VERSIONS": "5,6"})
    if not args.no_tls:
        env["PLUGIN_CLIENT_CERT"] = client_certificate_pem()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.launcher or launcher.write_launcher(Path(tmp) / "terraform-provider-l2vpc")
        launcher.precompile()
        one_run(path, env)  # warm the page cache; not counted
        results = [one_run(path, env) for _ in range(args.runs)]
    for label, values in (("handshake", [r[0] for r in results]), ("first schema", [r[1] for r in results])):
        ms = [v * 1000 for v in values]
        print(
            f"{label:>12}: median {statistics.median(ms):6.1f} ms   p90 {percentile(ms, 90):6.1f} ms   "
            f"min {min(ms):6.1f} ms   max {max(ms):6.1f} ms   ({len(ms)} runs, {'plain' if args.no_tls else 'TLS'})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
