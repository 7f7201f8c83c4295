"""The warm child: a fresh fork of the zygote made into what a cold start would be, then served.

It gets a session of its own, default signal dispositions (SIGINT raising KeyboardInterrupt,
as in a fresh interpreter), the zygote's descriptors closed, the client's stdio on 0/1/2, its
cwd, umask, environment (and TZ, tempfile's cached directory), argv, fresh `random` state, no
logging handlers, gc on (sys.path is already right: the key holds PYTHONPATH and the flags,
and -P keeps the cwd off it in both); then it says `pid N`, waits for `g`, starts a thread
that watches the connection (`Lifeline`), and runs server.main: cookie check, a new
certificate, a new 0700 socket directory, handshake, serve. If the client dies (Terraform
SIGKILLs it), the lifeline removes the socket directory and ends the child at once: the hard
stop Terraform meant, minus the leftover directory.
"""

from __future__ import annotations

import os
import sys

from l2vpc.provider.warm import wire

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable
    from typing import NoReturn

# What the child's sys.argv[0] is: the module a cold start runs.
_MAIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "__main__.py")


class Lifeline:
    """A warm child's connection to its client: the client's death ends the child at once, and
    the child's exit status goes back through it (server.Lifeline is what the server sees)."""

    def __init__(self, conn: socket.socket) -> None:
        import threading

        self._conn = conn
        self.lock = threading.Lock()  # held while creating something at_loss must remove
        self._cleanups: list[Callable[[], None]] = []
        self._reported = False

    def at_loss(self, cleanup: Callable[[], None]) -> None:
        """Run `cleanup` if the client dies (call with `lock` held)."""
        self._cleanups.append(cleanup)

    def start(self) -> None:
        import threading

        threading.Thread(target=self._watch, name="lifeline", daemon=True).start()

    def _watch(self) -> None:
        while True:
            try:
                data = self._conn.recv(4096)
            except InterruptedError:
                continue
            except OSError:
                data = b""
            if not data:
                break
        with self.lock:
            if self._reported:
                return  # we are exiting anyway; the client left after our report
            for cleanup in self._cleanups:
                try:
                    cleanup()
                except Exception:
                    pass
            os._exit(1)

    def report(self, code: int) -> None:
        """Tell the client how we exit (the zygote tells it again after reaping us)."""
        self._reported = True
        try:
            self._conn.sendall(wire.exit_line(code))
        except OSError:
            pass


def set_process_name(name: bytes) -> None:
    """The name `ps -e` and top show (the command line stays the zygote's `python -c ...`)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, ctypes.c_char_p(name), 0, 0, 0)  # PR_SET_NAME
    except Exception:
        pass


def run_child(
    close_inherited: Callable[[], None],
    conn: socket.socket,
    fds: list[int],
    mask: int,
    args: list[str],
    env: list[bytes],
) -> NoReturn:
    """In the freshly forked child: become the provider process for this request, serve, exit.
    `close_inherited` closes the zygote's descriptors other than `conn`."""
    code = 1
    lifeline: Lifeline | None = None
    try:
        lifeline = _become_provider_process(close_inherited, conn, fds, mask, args, env)
        if lifeline is None:
            os._exit(0)  # the client gave up before "go": leave without a trace
        from l2vpc.provider.server import main

        code = main(args, lifeline=lifeline)
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            sys.stderr.write(f"{e.code}\n")
            code = 1
    except KeyboardInterrupt:
        import signal
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)  # as a fresh interpreter ends on an uncaught Ctrl-C
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
    code &= 0xFF  # what the exit status keeps, as for sys.exit(-1) == 255
    if lifeline is not None:
        lifeline.report(code)
    os._exit(code)


def _become_provider_process(
    close_inherited: Callable[[], None],
    conn: socket.socket,
    fds: list[int],
    mask: int,
    args: list[str],
    env: list[bytes],
) -> Lifeline | None:
    """Turn the freshly forked child into what a cold start of this request would be."""
    import gc
    import logging
    import random
    import signal
    import time

    os.setsid()
    set_process_name(b"l2vpc-provider")
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    close_inherited()
    stdin, stdout, stderr, cwd = fds
    os.fchdir(cwd)
    os.umask(mask)
    os.environb.clear()
    for entry in env:
        name, sep, value = entry.partition(b"=")
        if sep and name:
            os.environb[name] = value
    time.tzset()
    tempfile = sys.modules.get("tempfile")
    if tempfile is not None:
        setattr(tempfile, "tempdir", None)  # noqa: B010 - recomputed from this TMPDIR
    random.seed()
    logging.root.handlers.clear()
    logging.root.setLevel(logging.WARNING)
    sys.argv = [_MAIN, *args]
    gc.enable()
    # The caller's stdio last: whatever failed until here went to the zygote's log, and the
    # client, seeing no `pid` line, starts cold as if nothing had happened.
    for target, fd in ((0, stdin), (1, stdout), (2, stderr)):
        os.dup2(fd, target)
    for fd in fds:
        os.close(fd)
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=stream is sys.stderr or os.isatty(stream.fileno()))

    conn.settimeout(None)
    lifeline = Lifeline(conn)
    try:
        conn.sendall(b"pid %d\n" % os.getpid())
        go = conn.recv(1)
    except OSError:
        go = b""
    if go != b"g":
        return None
    lifeline.start()
    return lifeline
