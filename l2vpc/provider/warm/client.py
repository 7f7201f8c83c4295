"""The client: what the launcher runs (`python -S -P -m l2vpc.provider`, see __main__.py).

Without -P (a working directory on sys.path, which could shadow modules in a way no zygote
reproduces) it always starts cold. Otherwise:

1. It imports nothing but os/sys and the C modules _socket and _signal (the `socket` and
   `signal` modules pull in enum: ~10 ms), and works out which zygote fits this start
   (key.py): its socket is `<runtime dir>/z-<digest of key>.sock` (runtime_dir.py).
2. The runtime directory must be private and safely reached (runtime_dir.py), else the warm
   path is not used and the client says why on stderr. The zygote's uid is checked
   (SO_PEERCRED) too.
3. It sends argv, the whole environment and the umask, with fds 0, 1, 2 and its working
   directory attached (SCM_RIGHTS). The zygote forks; the child, once it has taken all that
   on, answers `pid N`; the client answers `g` (go); only then does the child do anything
   visible. A child that could not get ready (say, no search permission on that directory)
   dies without a word, and the client starts cold as if there were no zygote. A client that
   gave up waiting (zygote wedged) closes the connection and starts cold: the child sees the
   connection close before `g` and vanishes, so two providers never share one stdout.
4. It forwards SIGINT, SIGTERM and SIGHUP to the child, and when Terraform (its parent)
   disappears it sends the child SIGTERM, as the cold server would stop itself. It ends
   with the child's exit status (`exit N`, or `signal N` which it re-raises on itself),
   sent by the child itself or by the zygote after reaping; a connection that drops without
   one gives exit 1.
5. No zygote (or the directory fails the checks, or a recent start of this zygote failed):
   it carries on in-process as a cold start, after starting a zygote in the background when
   there is none (zygote.spawn). L2VPC_PROVIDER_ZYGOTE=0 (or false/no/off) disables all of this.
"""

from __future__ import annotations

import os
import sys

from l2vpc.provider.warm import wire
from l2vpc.provider.warm.key import digest, zygote_key
from l2vpc.provider.warm.runtime_dir import RuntimeDir, UnsafeRuntimeDir, ZygoteFiles, location

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket
    from typing import NoReturn

ENABLE_ENV = "L2VPC_PROVIDER_ZYGOTE"
_OFF = ("0", "false", "no", "off")
_CONNECT_TIMEOUT = 2.0
_PID_TIMEOUT = 5.0  # longest wait for a fork; then the client starts cold


def launch(args: list[str]) -> int:
    """Serve this start through a zygote if possible (never returns then), else cold."""
    from l2vpc.provider.server import MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE

    # Only as the launcher runs us (-P: no working directory on sys.path, like the zygote);
    # `python -m l2vpc.provider` by hand may import from the cwd, which a zygote cannot match.
    if (
        sys.flags.safe_path
        and os.environ.get(ENABLE_ENV, "1").strip().lower() not in _OFF
        and os.environ.get(MAGIC_COOKIE_KEY) == MAGIC_COOKIE_VALUE
    ):
        client = _Client()
        status = client.run(args)
        if status is not None:
            _exit_with(status)
        client.restore_signals()
    from l2vpc.provider.server import main

    return main(args)


class _Client:
    def __init__(self) -> None:
        self.pid = 0
        self.pending: list[int] = []
        self.previous: dict[int, object] = {}

    def _forward(self, signum: int, frame: object) -> None:
        if self.pid:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass
        else:
            self.pending.append(signum)

    def restore_signals(self) -> None:
        """Back to the interpreter's defaults, and deliver what arrived meanwhile (cold start)."""
        import _signal

        for signum, handler in self.previous.items():
            _signal.signal(signum, handler)
        for signum in self.pending:
            os.kill(os.getpid(), signum)

    def run(self, args: list[str]) -> tuple[str, int] | None:
        """The child's exit status, or None when this start must go cold (nothing started)."""
        import _signal
        import _socket

        try:
            key = zygote_key()
        except (OSError, ValueError):
            return None
        try:
            directory = RuntimeDir.open(location())
        except UnsafeRuntimeDir as e:
            # Say so (Terraform logs a provider's stderr): otherwise every start is silently cold.
            os.write(2, f"l2vpc provider: warm starts are off: {e}\n".encode(errors="replace"))
            return None
        files = directory.zygote_files(digest(key))
        if not files.socket_fits():
            directory.close()
            return None
        for signum in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP):
            self.previous[signum] = _signal.signal(signum, self._forward)

        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        try:
            started = self._request(sock, files, key, args)
        except OSError:  # includes timeouts; a child, if forked, sees the close before "g"
            started = None
        directory.close()  # connected (or not): the directory is not needed any more
        if started is None:
            sock.close()
            return None
        return self._wait(sock, *started)

    def _request(
        self, sock: _socket.socket, files: ZygoteFiles, key: str, args: list[str]
    ) -> tuple[int, bytes] | None:
        """Ask the zygote for a child and let it go: (child pid, bytes read past the pid line)."""
        import _socket

        sock.settimeout(_CONNECT_TIMEOUT)
        try:
            files.connect(sock)
        except (FileNotFoundError, ConnectionRefusedError):
            from l2vpc.provider.warm.zygote import spawn

            spawn(files)
            return None
        uid = int.from_bytes(sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)[4:8], sys.byteorder)
        if uid != os.geteuid():
            return None
        self._send_request(sock, key, args)
        sock.settimeout(_PID_TIMEOUT)
        buffer = b""
        while b"\n" not in buffer:
            data = sock.recv(4096)
            if not data:
                return None  # refused or gone before forking
            buffer += data
        line, _, buffer = buffer.partition(b"\n")
        kind, _, value = line.partition(b" ")
        if kind != b"pid" or not value.isdigit():
            return None  # e.g. "refused stale"
        sock.sendall(b"g")
        return int(value), buffer

    def _send_request(self, sock: _socket.socket, key: str, args: list[str]) -> None:
        import _socket

        mask = os.umask(0o077)
        os.umask(mask)
        message = wire.start_request(key, mask, args, os.environb)
        cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fds = b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in (0, 1, 2, cwd))
            sent = sock.sendmsg([message], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
        finally:
            os.close(cwd)
        sock.sendall(message[sent:])

    def _wait(self, sock: _socket.socket, pid: int, buffer: bytes) -> tuple[str, int]:
        """Committed: the child runs. Forward signals, watch Terraform, wait for the status."""
        import _signal

        self.pid = pid
        for signum in self.pending:
            self._forward(signum, None)
        parent = os.getppid()
        told = False
        sock.settimeout(1.0)
        while True:
            while b"\n" in buffer:
                line, _, buffer = buffer.partition(b"\n")
                status = wire.status_of(line)
                if status is not None:
                    return status
            try:
                data = sock.recv(4096)
            except TimeoutError:
                if not told and os.getppid() != parent:
                    told = True  # Terraform is gone without telling us: stop, as a cold server would
                    self._forward(_signal.SIGTERM, None)
                continue
            except OSError:
                data = b""
            if not data:
                return ("exit", 1)
            buffer += data


def _exit_with(status: tuple[str, int]) -> NoReturn:
    kind, value = status
    if kind == "signal":
        import _signal

        try:
            _signal.signal(value, _signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # SIGKILL and SIGSTOP have no handler to reset
        os.kill(os.getpid(), value)
        value = 128 + value  # still here: a signal whose default is not to end a process
    os._exit(value)
