"""A small certificate authority for TLS between the engine and its agents.

The lab (and later the controller) creates one CA per deployment, issues every agent a server
certificate naming its host, and the engine a client certificate. Agents accept only clients
whose certificate this CA signed; the engine checks that the agent it reached holds the
certificate of the host it meant to reach (the host name is in the server certificate).

    ca = CertificateAuthority.create(Path(".l2vpc/pki"))
    agent = ca.issue_server("host1", ips=["10.255.0.1"])   # host1.pem / host1.key
    engine = ca.issue_client("engine")                     # engine.pem / engine.key

Keys are ECDSA P-256 (grpcio's TLS handles it; Terraform's P-521 is the one it cannot), written
0600 in a 0700 directory; certificates are public. Server and client certificates carry the
matching extended key usage, so an agent's certificate cannot be used to drive other agents.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
LEAF_DAYS = 825
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
# Certificates are valid from a little in the past so a slightly slow clock elsewhere still works.
_BACKDATE = dt.timedelta(minutes=5)


class PkiError(Exception):
    """The CA directory is missing, incomplete or unusable; the message says which file."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Paths of one party's TLS material: the CA certificate to trust, its own cert and key."""

    ca: Path
    cert: Path
    key: Path

    def read(self) -> tuple[bytes, bytes, bytes]:
        try:
            return self.ca.read_bytes(), self.cert.read_bytes(), self.key.read_bytes()
        except FileNotFoundError as e:
            raise PkiError(f"TLS file missing: {e.filename}") from None
        except PermissionError as e:
            raise PkiError(f"TLS file not readable: {e.filename}") from None


def files_in(directory: Path, name: str) -> TlsFiles:
    """Where a CA directory keeps `name`'s certificate and key (and the CA certificate)."""
    return TlsFiles(directory / "ca.pem", directory / f"{name}.pem", directory / f"{name}.key")


def write_private(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write a file only its owner can read, atomically (never briefly world-readable).
    `durable=False` skips the fsync (~2 ms) for state that is rewritten whenever it is lost."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _check_name(name: str) -> None:
    if not _NAME_RE.fullmatch(name) or name == "ca":
        raise PkiError(f"certificate name {name!r} must be 1-63 lowercase letters, digits or '-' (not 'ca')")


class CertificateAuthority:
    """A CA kept as `ca.pem` + `ca.key` in a directory; issued certs land beside them."""

    def __init__(self, directory: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.directory = directory
        self.cert = cert
        self.key = key

    @property
    def ca_path(self) -> Path:
        return self.directory / "ca.pem"

    @classmethod
    def create(cls, directory: Path, common_name: str = "l2vpc CA") -> CertificateAuthority:
        """A new CA in `directory` (created 0700); refuses to overwrite an existing one."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        if (directory / "ca.key").exists():
            raise PkiError(f"{directory / 'ca.key'} already exists; load it instead of creating a new CA")
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = dt.datetime.now(dt.UTC)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        write_private(directory / "ca.key", _key_pem(key))
        _write_public(directory / "ca.pem", cert.public_bytes(serialization.Encoding.PEM))
        return cls(directory, cert, key)

    @classmethod
    def load(cls, directory: Path) -> CertificateAuthority:
        try:
            cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
            key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), password=None)
        except FileNotFoundError as e:
            raise PkiError(f"no CA in {directory}: {e.filename} is missing") from None
        except ValueError as e:
            raise PkiError(f"CA in {directory} is unreadable: {e}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PkiError(f"{directory / 'ca.key'}: expected an EC private key")
        return cls(directory, cert, key)

    @classmethod
    def open(cls, directory: Path, common_name: str = "l2vpc CA") -> CertificateAuthority:
        """Load the CA in `directory`, creating it first if there is none."""
        if (directory / "ca.key").exists():
            return cls.load(directory)
        return cls.create(directory, common_name)

    def files(self, name: str) -> TlsFiles:
        return files_in(self.directory, name)

    def issue_server(self, name: str, dns_names: Iterable[str] = (), ips: Iterable[str] = ()) -> TlsFiles:
        """A server certificate for `name` (also valid for localhost and 127.0.0.1)."""
        _check_name(name)
        dns = [name, "localhost", *dns_names]
        addrs = ["127.0.0.1", *ips]
        san: list[x509.GeneralName] = [x509.DNSName(d) for d in dict.fromkeys(dns)]
        san += [x509.IPAddress(ipaddress.ip_address(a)) for a in dict.fromkeys(addrs)]
        return self._issue(name, san, ExtendedKeyUsageOID.SERVER_AUTH)

    def issue_client(self, name: str) -> TlsFiles:
        """A client certificate (e.g. the engine's); agents accept any client this CA signed."""
        _check_name(name)
        return self._issue(name, [x509.DNSName(name)], ExtendedKeyUsageOID.CLIENT_AUTH)

    def _issue(self, name: str, san: list[x509.GeneralName], usage: x509.ObjectIdentifier) -> TlsFiles:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        files = self.files(name)
        write_private(files.key, _key_pem(key))
        _write_public(files.cert, cert.public_bytes(serialization.Encoding.PEM))
        return files
