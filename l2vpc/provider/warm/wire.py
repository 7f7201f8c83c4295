"""What client and zygote say to each other over the zygote's unix socket.

A request is `<length>\\n` and then NUL-separated fields: the protocol name, an operation and
its arguments:

    l2vpc-zygote/1 \\0 start \\0 <key> \\0 <umask, octal> \\0 <argc> \\0 <args...> \\0 <NAME=value...>
    l2vpc-zygote/1 \\0 ping            -> `pong <pid>`
    l2vpc-zygote/1 \\0 stop            -> `stopping <pid>`

A start carries the client's fds 0, 1, 2 and its working directory (SCM_RIGHTS). Replies are
lines: `refused <why>`, or `pid <N>` from the forked child, answered by the client's `g` (go);
then the child's exit status, `exit <N>` or `signal <N>`, from the child and again from the
zygote once it has reaped it.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Mapping

PROTOCOL = b"l2vpc-zygote/1"
MAX_REQUEST = 4 << 20


def frame(op: bytes, *fields: bytes) -> bytes:
    payload = b"\0".join([PROTOCOL, op, *fields])
    return b"%d\n" % len(payload) + payload


def start_request(key: str, umask: int, args: list[str], environb: Mapping[bytes, bytes]) -> bytes:
    fields = [key.encode(), b"%o" % umask, b"%d" % len(args)]
    fields += [os.fsencode(a) for a in args]
    fields += [k + b"=" + v for k, v in environb.items()]
    return frame(b"start", *fields)


def read_request(conn: socket.socket) -> tuple[list[bytes], list[int]]:
    """The request's fields (from the protocol name on) and the descriptors that came with it."""
    import socket

    data, fds, flags, _ = socket.recv_fds(conn, 65536, 8)
    if flags & socket.MSG_CTRUNC:
        for fd in fds:
            os.close(fd)
        raise ValueError("too many descriptors")
    try:
        while b"\n" not in data[:16]:
            if len(data) >= 16:
                raise ValueError("no length header")
            more = conn.recv(65536)
            if not more:
                raise ValueError("connection closed")
            data += more
        header, _, payload = data.partition(b"\n")
        size = int(header)
        if size > MAX_REQUEST:
            raise ValueError(f"request of {size} bytes")
        while len(payload) < size:
            more = conn.recv(min(65536, size - len(payload)))
            if not more:
                raise ValueError("connection closed")
            payload += more
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    fields = payload.split(b"\0")
    if fields[0] != PROTOCOL:
        for fd in fds:
            os.close(fd)
        raise ValueError(f"unknown protocol {fields[0][:40]!r}")
    return fields, fds


def exit_line(code: int) -> bytes:
    """How a process ended, from its exit code as os.waitstatus_to_exitcode gives it."""
    return b"exit %d\n" % code if code >= 0 else b"signal %d\n" % -code


def status_of(line: bytes) -> tuple[str, int] | None:
    """("exit", N) or ("signal", N) from a status line; None for any other line."""
    kind, _, value = line.partition(b" ")
    if kind in (b"exit", b"signal") and value.isdigit():
        return kind.decode(), int(value)
    return None
