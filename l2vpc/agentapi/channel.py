"""Dialling an agent: a TLS channel that presents our client certificate and checks the agent's.

The agent's certificate must name the host we mean to reach (`host`), whatever the address:
a unix socket path, a loopback port, an underlay address. So a config for host1 can never be
pushed to host2's agent by a mix-up of addresses.

One address may serve many hosts (a fleet of simulated hosts, l2vpc/agent/fleet.py): every
call then names its host in the `l2vpc-host` metadata (`host_metadata`), the server routes by
it and refuses a host it does not serve, and the server's certificate names every host it
serves. A channel checks one name during its handshake; `certificate_names` reads the whole
list once, so a client sharing the channel among several hosts can check the others too.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Sequence
from typing import Any

import grpc

from l2vpc._proto import agent_pb2_grpc as pb_grpc
from l2vpc.pki import TlsFiles

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# The metadata key naming the host a call is meant for (gRPC keys are lowercase ASCII).
HOST_METADATA = "l2vpc-host"
_PROBE_TIMEOUT = 5.0


def host_metadata(host: str) -> Sequence[tuple[str, str]]:
    return ((HOST_METADATA, host),)


def open_channel(address: str, host: str, tls: TlsFiles) -> grpc.Channel:
    """A channel to the agent of `host` at `address` (`host:port` or `unix:/abs/path`)."""
    ca, cert, key = tls.read()
    creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
    return grpc.secure_channel(
        address,
        creds,
        options=[
            ("grpc.ssl_target_name_override", host),
            ("grpc.default_authority", host),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            # Fail fast and let the caller's retry policy decide, instead of waiting silently.
            ("grpc.enable_retries", 0),
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 2000),
        ],
    )


def stub(channel: grpc.Channel) -> pb_grpc.AgentStub:
    return pb_grpc.AgentStub(channel)


def _connect(address: str, timeout: float) -> socket.socket:
    if address.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address[len("unix:"):])
        except BaseException:
            sock.close()
            raise
        return sock
    target = address[len("ipv4:"):] if address.startswith("ipv4:") else address
    hostpart, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or "," in target:
        raise ValueError(f"agent address {address!r}: expected HOST:PORT or unix:/absolute/path")
    return socket.create_connection((hostpart.strip("[]"), int(port)), timeout=timeout)


def certificate_names(address: str, tls: TlsFiles, timeout: float = _PROBE_TIMEOUT) -> frozenset[str]:
    """The DNS names in the certificate of the server at `address`, after checking that our CA
    signed it (a TLS handshake with our client certificate, nothing sent after it).

    Raises OSError when the address cannot be reached, ssl.SSLError when the handshake or the
    certificate check fails, ValueError for an address this cannot dial.
    """
    ca, _, _ = tls.read()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # we want the whole list of names, checked by the caller
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=ca.decode())
    ctx.load_cert_chain(str(tls.cert), str(tls.key))
    ctx.set_alpn_protocols(["h2"])  # what a gRPC server expects of its clients
    with _connect(address, timeout) as raw, ctx.wrap_socket(raw) as conn:
        cert = conn.getpeercert()
    names: Any = cert.get("subjectAltName", ()) if cert else ()  # ((type, value), ...)
    return frozenset(str(entry[1]) for entry in names if entry[0] == "DNS")
