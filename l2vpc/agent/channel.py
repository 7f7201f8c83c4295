"""Dialling an agent: a TLS channel that presents our client certificate and checks the agent's.

The agent's certificate must name the host we mean to reach (`host`), whatever the address:
a unix socket path, a loopback port, an underlay address. So a config for host1 can never be
pushed to host2's agent by a mix-up of addresses.
"""

from __future__ import annotations

import grpc

from l2vpc._proto import agent_pb2_grpc as pb_grpc
from l2vpc.pki import TlsFiles

MAX_MESSAGE_BYTES = 64 * 1024 * 1024


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
