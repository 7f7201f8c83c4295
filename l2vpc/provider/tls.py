"""A fresh self-signed server certificate for each provider process, kept in memory only.

Terraform (go-plugin "AutoMTLS") only talks TLS to a plugin and trusts exactly the certificate
the plugin prints in its handshake line, checking it is valid for the name "localhost". So we
make an ECDSA P-256 key and a self-signed certificate at every start; nothing is written to disk.

The DER of the certificate and of the key is assembled here rather than with cryptography's
x509 builder and serialization modules: importing those costs ~55 ms on a small VM, and this
runs before the handshake, where every millisecond is Terraform waiting. Key generation and the
signature are cryptography's (OpenSSL); tests parse the results back with cryptography.
"""

from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass

# Object identifiers, DER-encoded (content bytes only).
_OID_ECDSA_SHA256 = bytes.fromhex("2a8648ce3d040302")  # 1.2.840.10045.4.3.2
_OID_EC_PUBLIC_KEY = bytes.fromhex("2a8648ce3d0201")  # 1.2.840.10045.2.1
_OID_P256 = bytes.fromhex("2a8648ce3d030107")  # 1.2.840.10045.3.1.7 (prime256v1)
_OID_COMMON_NAME = bytes.fromhex("550403")  # 2.5.4.3
_OID_ORGANIZATION = bytes.fromhex("55040a")  # 2.5.4.10
_OID_BASIC_CONSTRAINTS = bytes.fromhex("551d13")  # 2.5.29.19
_OID_KEY_USAGE = bytes.fromhex("551d0f")  # 2.5.29.15
_OID_EXT_KEY_USAGE = bytes.fromhex("551d25")  # 2.5.29.37
_OID_SUBJECT_ALT_NAME = bytes.fromhex("551d11")  # 2.5.29.17
_OID_SERVER_AUTH = bytes.fromhex("2b06010505070301")  # 1.3.6.1.5.5.7.3.1

HOSTNAME = "localhost"  # the name go-plugin verifies
_VALIDITY_SECONDS = 30 * 24 * 3600  # Terraform connects once, right after start
_CLOCK_SKEW_SECONDS = 300


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + content


def _seq(*items: bytes) -> bytes:
    return _der(0x30, b"".join(items))


def _oid(encoded: bytes) -> bytes:
    return _der(0x06, encoded)


def _utc_time(epoch: float) -> bytes:
    # UTCTime (YYMMDDHHMMSSZ) is required for dates before 2050.
    return _der(0x17, time.strftime("%y%m%d%H%M%SZ", time.gmtime(epoch)).encode())


def _name(common_name: str, organization: str) -> bytes:
    def rdn(oid: bytes, value: str) -> bytes:
        return _der(0x31, _seq(_oid(oid), _der(0x0C, value.encode())))

    return _seq(rdn(_OID_ORGANIZATION, organization), rdn(_OID_COMMON_NAME, common_name))


def _extension(oid: bytes, value: bytes, critical: bool = False) -> bytes:
    flag = _der(0x01, b"\xff") if critical else b""
    return _seq(_oid(oid), flag, _der(0x04, value))


@dataclass(frozen=True, slots=True)
class ServerCertificate:
    key_pem: bytes
    cert_pem: bytes
    cert_der: bytes

    @property
    def handshake_form(self) -> str:
        """Base64 without padding, as go-plugin expects in the handshake line."""
        return base64.b64encode(self.cert_der).decode().rstrip("=")


def _ec_private_key_pem(private_value: int, point: bytes) -> bytes:
    """SEC 1 ECPrivateKey for P-256 in PEM (what grpc's TLS reads)."""
    der = _seq(
        _der(0x02, b"\x01"),
        _der(0x04, private_value.to_bytes(32, "big")),
        _der(0xA0, _oid(_OID_P256)),
        _der(0xA1, _der(0x03, b"\x00" + point)),
    )
    return _pem("EC PRIVATE KEY", der)


def _pem(label: str, der: bytes) -> bytes:
    body = base64.b64encode(der).decode()
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----\n".encode()


# The generator of P-256 (SEC 2): a valid public key that is no one's secret.
_P256_GX = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
_P256_GY = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5


def warm_up() -> None:
    """Load what OpenSSL loads on first signing (~15 ms), without any randomness.

    The zygote (warm/zygote.py) calls this before forking: verifying a made-up signature against a
    fixed public key fetches the same EC, digest and signature code that signing needs, but
    draws no random numbers, so no RNG state exists yet that children could share.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    public = ec.EllipticCurvePublicNumbers(_P256_GX, _P256_GY, ec.SECP256R1()).public_key()
    signature = _seq(_der(0x02, b"\x01"), _der(0x02, b"\x01"))  # r = s = 1
    try:
        public.verify(signature, b"warm-up", ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        pass


def make_server_certificate(now: float | None = None) -> ServerCertificate:
    # ec and hashes only: cryptography's serialization module alone costs ~15 ms to import.
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    numbers = key.private_numbers()
    point = (
        b"\x04" + numbers.public_numbers.x.to_bytes(32, "big") + numbers.public_numbers.y.to_bytes(32, "big")
    )
    spki = _seq(_seq(_oid(_OID_EC_PUBLIC_KEY), _oid(_OID_P256)), _der(0x03, b"\x00" + point))
    start = (time.time() if now is None else now) - _CLOCK_SKEW_SECONDS
    # A positive 127-bit serial: random, as RFC 5280 recommends, with the sign bit clear.
    serial = int.from_bytes(os.urandom(16), "big") >> 1
    algorithm = _seq(_oid(_OID_ECDSA_SHA256))
    name = _name(HOSTNAME, "l2vpc terraform provider")
    # The certificate is its own CA (it is the only root Terraform trusts for this process),
    # like go-plugin's own: CA, may sign and authenticate a server, valid for localhost.
    extensions = _seq(
        _extension(_OID_BASIC_CONSTRAINTS, _seq(_der(0x01, b"\xff")), critical=True),
        # digitalSignature (bit 0) and keyCertSign (bit 5): 0b10000100, 2 unused bits.
        _extension(_OID_KEY_USAGE, _der(0x03, b"\x02\x84"), critical=True),
        _extension(_OID_EXT_KEY_USAGE, _seq(_oid(_OID_SERVER_AUTH))),
        _extension(_OID_SUBJECT_ALT_NAME, _seq(_der(0x82, HOSTNAME.encode()))),
    )
    tbs = _seq(
        _der(0xA0, _der(0x02, b"\x02")),  # version 3
        _der(0x02, serial.to_bytes((serial.bit_length() + 8) // 8, "big")),
        algorithm,
        name,
        _seq(_utc_time(start), _utc_time(start + _VALIDITY_SECONDS)),
        name,
        spki,
        _der(0xA3, extensions),
    )
    signature = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    cert_der = _seq(tbs, algorithm, _der(0x03, b"\x00" + signature))
    return ServerCertificate(
        key_pem=_ec_private_key_pem(numbers.private_value, point),
        cert_pem=_pem("CERTIFICATE", cert_der),
        cert_der=cert_der,
    )
