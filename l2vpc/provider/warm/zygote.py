"""The zygote: a long-lived process per user and key that has imported a provider and forks.

A client that finds none starts one in the background (`spawn`: `python -S -P -c ...`, double
fork, own session, stdio on /dev/null, cwd /, only the environment the key covers) and goes
cold itself. The zygote takes an exclusive flock on its lock file before anything else, so
simultaneous cold starts leave one zygote; it logs to its log file (0600), and a start that
fails leaves the `.failed` mark, which keeps clients from starting another for a minute.

Single-threaded, it imports what a provider needs for its handshake with the garbage
collector off, listens on a 0600 socket, and per request forks (child.py), freezing the heap
first (gc.freeze) so children do not copy it on their first collection; between requests it
imports the rest (resources, engine), one module at a time. It exits after
L2VPC_PROVIDER_ZYGOTE_IDLE seconds (default 600) with no requests and no children, on SIGTERM
or a `stop` request, or once its code is stale (after its children are done).
"""

from __future__ import annotations

import os
import sys

from l2vpc.provider.warm import wire
from l2vpc.provider.warm.child import run_child, set_process_name
from l2vpc.provider.warm.key import digest, key_environment, zygote_key
from l2vpc.provider.warm.runtime_dir import RUNTIME_DIR_ENV, RuntimeDir, UnsafeRuntimeDir, ZygoteFiles

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket

IDLE_ENV = "L2VPC_PROVIDER_ZYGOTE_IDLE"
DEFAULT_IDLE_SECONDS = 600.0
_REQUEST_TIMEOUT = 2.0  # a zygote spends at most this long on one client's request
_FAILED_BACKOFF = 60.0  # no new zygote for this long after one failed to start
_STALE_CHECK_SECONDS = 30.0

_ZYGOTE_CODE = "from l2vpc.provider.warm.zygote import main; main()"

# What a provider process imports before its handshake: the zygote has these before it listens.
PRELOAD_FIRST = (
    "concurrent.futures.thread",
    "json",
    "logging",
    "grpc",
    "grpc._server",
    "cryptography.hazmat.primitives.hashes",
    "cryptography.hazmat.primitives.asymmetric.ec",
    "l2vpc._proto.tfplugin6_pb2",
    "l2vpc._proto.tfplugin6_pb2_grpc",
    "l2vpc._proto.grpc_controller_pb2",
    "l2vpc.provider.server",
    "l2vpc.provider.tls",
    "l2vpc.provider.rpc",
    "l2vpc.provider.l2vpc_provider",
)
# ... and by the time it has applied something: loaded one by one while the zygote already
# serves, between requests, so that the second provider start of a command is warm already.
# Missing ones only make children slower (the zygote logs them).
PRELOAD_LATER = (
    "traceback",
    "sqlite3",
    "l2vpc.provider.resources.vpc",
    "l2vpc.provider.resources.attachment",
    "l2vpc.provider.resources.direct_connect",
    "l2vpc.provider.resources.vpn",
    "l2vpc.provider.data_sources.vpc",
    "l2vpc.provider.data_sources.hosts",
    "l2vpc.embedded",
    "l2vpc.engine.model",
    "l2vpc.engine.agent_client",
    "l2vpc.controller.client",
    "l2vpc.agent.drivers.memory",
    "cryptography.hazmat.primitives.serialization",
    "cryptography.x509",
    "l2vpc.pki",
)


def spawn(files: ZygoteFiles) -> None:
    """Start a zygote for these files in the background, unless one failed to start just now."""
    if files.failed_recently(_FAILED_BACKOFF):
        return
    env = key_environment()
    env[RUNTIME_DIR_ENV] = files.directory.path
    for name in (IDLE_ENV, "PATH"):
        if name in os.environ:
            env[name] = os.environ[name]
    argv = [sys.executable, "-S", "-P", "-c", _ZYGOTE_CODE]  # the client's flags: part of the key
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the forked process
        try:
            os.setsid()
            if os.fork() == 0:
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                os.closerange(3, 1 << 30)  # nothing of Terraform's may stay open in a daemon
                os.chdir("/")
                os.execve(sys.executable, argv, env)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def main() -> None:
    """Entry of the background zygote (see _ZYGOTE_CODE); returns when it should exit."""
    import gc

    gc.disable()  # no collections while importing: fewer holes, fewer pages a child copies
    try:
        directory = RuntimeDir.open(os.environ[RUNTIME_DIR_ENV], create=False)
    except UnsafeRuntimeDir:
        return  # nowhere safe to log either; the client that spawned us said why
    key = zygote_key()
    files = directory.zygote_files(digest(key))
    lock = files.take_lock()
    if lock is None:
        return  # another zygote for this key is starting or running
    log = files.open_log()
    os.dup2(log, 2, inheritable=False)
    os.close(log)
    try:
        _log(f"zygote {os.getpid()} starting for {files.sock_path}")
        set_process_name(b"l2vpc-zygote")
        directory.tidy(keep=files)
        for name in PRELOAD_FIRST:
            _preload(name)
        from l2vpc.provider import tls

        tls.warm_up()
        if zygote_key() != key:
            _log("the code changed while the zygote was loading it: not serving it")
            return
        zygote = _Zygote(key, files, lock)
    except BaseException:
        import traceback

        traceback.print_exc()
        files.mark_failed()
        return
    files.clear_failed()
    zygote.run()


def _log(message: str) -> None:
    import time

    sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}\n")
    sys.stderr.flush()


def _preload(name: str) -> None:
    import importlib

    try:
        importlib.import_module(name)
    except Exception as e:
        _log(f"preloading {name} failed ({type(e).__name__}: {e}); children import it themselves")


class _Zygote:
    def __init__(self, key: str, files: ZygoteFiles, lock_fd: int) -> None:
        import signal
        import socket
        import time

        self.key = key
        self.files = files
        self.lock_fd = lock_fd
        self.children: dict[int, socket.socket] = {}
        self.stopping = False  # SIGTERM or `stop`: leave now
        self.draining = False  # stale: accept nothing more, leave when the children are done
        self.idle = _idle_seconds()
        self.last_activity = time.monotonic()
        self.last_check = self.last_activity

        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.inode = files.bind(self.listener)
        self.listener.listen(64)
        self.listener.setblocking(False)

        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # the wakeup fd does the work
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def _on_term(self, signum: int, frame: object) -> None:
        self.stopping = True

    def run(self) -> None:
        import gc
        import select
        import time

        _log(f"zygote {os.getpid()} listening ({len(sys.modules)} modules, idle timeout {self.idle:g} s)")
        later = list(PRELOAD_LATER)
        poll = select.poll()
        poll.register(self.listener.fileno(), select.POLLIN)
        poll.register(self.wake_r, select.POLLIN)
        try:
            while not self.stopping:
                idle_for = time.monotonic() - self.last_activity
                if not self.children and not later and (self.draining or idle_for >= self.idle):
                    break
                if later:
                    wait = 0.0
                elif self.children:
                    wait = _STALE_CHECK_SECONDS
                else:
                    wait = min(_STALE_CHECK_SECONDS, self.idle - idle_for)
                # Signals (SIGCHLD, SIGTERM) arrive as bytes on wake_r, so poll wakes for them.
                events = poll.poll(max(0.0, wait) * 1000)
                for fd, _ in events:
                    if fd == self.wake_r:
                        self._drain_wakeups()
                    elif not self.draining:
                        self._accept()
                self._reap()
                if later and not events:  # requests first; between them, one more module
                    _preload(later.pop(0))
                    if not later:
                        gc.collect()
                        gc.freeze()
                        _log(f"zygote {os.getpid()} ready ({len(sys.modules)} modules)")
                        self.last_check = 0.0  # the code must not have changed while we imported it
                due = time.monotonic() - self.last_check >= _STALE_CHECK_SECONDS
                if due and not later and not self.draining:
                    self.last_check = time.monotonic()
                    if not self._still_current():
                        _log("code or socket changed: draining")
                        poll.unregister(self.listener.fileno())
                        self._stop_listening()
        finally:
            self._stop_listening()
            _log(f"zygote {os.getpid()} exiting")

    def _still_current(self) -> bool:
        return self.files.socket_is(self.inode) and zygote_key() == self.key

    def _stop_listening(self) -> None:
        if self.draining and self.listener.fileno() < 0:
            return
        self.draining = True
        self.files.remove_socket(self.inode)
        self.listener.close()

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self.wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def _reap(self) -> None:
        import time

        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            self.last_activity = time.monotonic()
            if conn is None:
                continue
            try:
                conn.sendall(wire.exit_line(os.waitstatus_to_exitcode(status)))
            except OSError:
                pass  # the client is gone (or already has the child's own report)
            conn.close()

    def _accept(self) -> None:
        import socket
        import struct
        import time

        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        self.last_activity = time.monotonic()
        fds: list[int] = []
        try:
            _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
            if uid != os.geteuid():
                _log(f"refused a connection from uid {uid}")
                conn.close()
                return
            conn.settimeout(_REQUEST_TIMEOUT)
            fields, fds = wire.read_request(conn)
            op = fields[1] if len(fields) > 1 else b""
            if op == b"ping":
                conn.sendall(b"pong %d\n" % os.getpid())
            elif op == b"stop":
                self.stopping = True
                conn.sendall(b"stopping %d\n" % os.getpid())
            elif op == b"start":
                if self._start(conn, fields, fds):
                    fds = []  # closed by _start
                    return  # conn kept until the child is reaped
            else:
                raise ValueError(f"unknown request {op[:40]!r}")
        except Exception as e:
            _log(f"bad request: {type(e).__name__}: {e}")
        for fd in fds:
            os.close(fd)
        conn.close()

    def _start(self, conn: socket.socket, fields: list[bytes], fds: list[int]) -> bool:
        if fields[2].decode() != self.key:
            conn.sendall(b"refused stale\n")
            return False
        if len(fds) != 4:
            raise ValueError(f"expected 4 descriptors, got {len(fds)}")
        threads = len(os.listdir("/proc/self/task"))
        if threads != 1:
            _log(f"{threads} threads: refusing to fork")
            conn.sendall(b"refused threads\n")
            return False
        mask, argc = int(fields[3], 8), int(fields[4])
        args = [os.fsdecode(a) for a in fields[5 : 5 + argc]]
        env = fields[5 + argc :]
        import gc

        sys.stdout.flush()
        sys.stderr.flush()
        gc.freeze()
        pid = os.fork()
        if pid == 0:
            run_child(lambda: self._close_in_child(conn), conn, fds, mask, args, env)
        for fd in fds:
            os.close(fd)
        self.children[pid] = conn  # the child itself says `pid N` once it is ready
        return True

    def _close_in_child(self, keep: socket.socket) -> None:
        """Drop every descriptor of the zygote in a child (the lock above all: a child holding
        it would keep the next zygote from starting)."""
        for conn in self.children.values():
            if conn is not keep:
                conn.close()
        self.listener.close()
        for fd in (self.wake_r, self.wake_w, self.lock_fd):
            os.close(fd)
        self.files.directory.close()


def _idle_seconds() -> float:
    text = os.environ.get(IDLE_ENV)
    if text is None:
        return DEFAULT_IDLE_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        _log(f"{IDLE_ENV}={text!r} is not a positive number of seconds; using {DEFAULT_IDLE_SECONDS:g}")
        return DEFAULT_IDLE_SECONDS
    return value
