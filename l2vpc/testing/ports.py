"""Free TCP ports on the loopback interface, for servers a test starts on a fixed port (one a
restarted server must find again)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on right now (another process could still take it: use it soon)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
