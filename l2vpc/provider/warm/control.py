"""Requests other than starts: find the zygotes of a runtime directory, stop them.

For tests, benchmarks and tidying up; a provider start never runs this.
"""

from __future__ import annotations

from l2vpc.provider.warm import wire
from l2vpc.provider.warm.runtime_dir import RuntimeDir, UnsafeRuntimeDir, connect


def ask(path: str, op: bytes, timeout: float = 2.0) -> bytes:
    """Send `op` to the zygote socket at `path`; its reply line."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        connect(sock, path)
        sock.sendall(wire.frame(op))
        reply = b""
        while not reply.endswith(b"\n"):
            data = sock.recv(4096)
            if not data:
                break
            reply += data
        return reply


def running_zygotes(directory: str) -> dict[str, int]:
    """Socket path -> pid of every zygote answering in `directory`."""
    found: dict[str, int] = {}
    try:
        opened = RuntimeDir.open(directory, create=False)
    except UnsafeRuntimeDir:
        return found
    try:
        paths = opened.sockets()
    finally:
        opened.close()
    for path in paths:
        try:
            reply = ask(path, b"ping")
        except OSError:
            continue
        kind, _, value = reply.strip().partition(b" ")
        if kind == b"pong" and value.isdigit():
            found[path] = int(value)
    return found


def stop_zygotes(directory: str, timeout: float = 5.0) -> list[int]:
    """Ask every zygote in `directory` to exit and wait for them; returns their pids."""
    import time

    pids = []
    for path in running_zygotes(directory):
        try:
            reply = ask(path, b"stop")
        except OSError:
            continue
        kind, _, value = reply.strip().partition(b" ")
        if kind == b"stopping" and value.isdigit():
            pids.append(int(value))
    deadline = time.monotonic() + timeout
    for pid in pids:
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
    return pids


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
