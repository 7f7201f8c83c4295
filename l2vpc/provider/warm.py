"""Warm starts: a per-user "zygote" process forks ready-made provider processes.

Terraform starts the provider 3–5 times per command and waits for each handshake line. A cold
start spends most of its time importing (grpcio alone ~150 ms here). Like Gradle's daemon or
Android's zygote, a long-lived process imports everything once and forks a child per start;
the child is then a provider process that only has to build its certificate and gRPC server.

What the launcher runs (`python -S -P -m l2vpc.provider`, see __main__.py and launcher.py) is
the *client*; without -P (a working directory on sys.path, which could shadow modules in a way
no zygote reproduces) it always starts cold:

1. It imports nothing but os/sys and the C modules _socket and _signal (the `socket` and
   `signal` modules pull in enum: ~10 ms), and works out which zygote fits this start: a
   key of the interpreter and its flags, the l2vpc package (path, version, newest mtime of
   anything under it), the PYTHONPATH directories' mtimes, the interpreter-level environment
   (PYTHON*, GRPC_*, OPENSSL_*, locale), user and group ids, namespaces, cgroup and root
   directory. The socket is `<runtime dir>/z-<hash of key>.sock`; edited code, an
   upgraded site-packages or another namespace means another key, so stale code never runs.
2. The runtime directory ($L2VPC_PROVIDER_RUNTIME_DIR, else $XDG_RUNTIME_DIR/l2vpc-provider,
   else /tmp/l2vpc-provider-<uid>) must be a real directory owned by us with no group/other
   access, else the warm path is not used. The zygote's uid is checked (SO_PEERCRED) too.
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
   there is none (`python -S -P -c ...`: double fork, own session, stdio on /dev/null, cwd /,
   only the environment the key covers).
   A zygote takes an exclusive flock on `z-<hash>.lock` before anything else, so simultaneous
   cold starts leave one zygote. L2VPC_PROVIDER_ZYGOTE=0 (or false/no/off) disables all of this.

The zygote (single-threaded) imports what a provider needs for its handshake with the
garbage collector off, listens on a 0600 socket, and per request forks, freezing the heap
first (gc.freeze) so children do not copy it on their first collection; between requests it
imports the rest (resources, engine), one module at a time. It exits after
L2VPC_PROVIDER_ZYGOTE_IDLE seconds (default 600) with no requests and no children, on SIGTERM,
or once its code is stale (after its children are done); its log is `z-<hash>.log` (0600),
start failures leave `.failed`.

The child: a session of its own, default signal dispositions (SIGINT raising
KeyboardInterrupt, as in a fresh interpreter), the zygote's descriptors closed, the client's
stdio on 0/1/2, its cwd, umask, environment (and TZ, tempfile's cached directory), argv,
fresh `random` state, no logging handlers, gc on (sys.path is already right: the key holds
PYTHONPATH and the flags, and -P keeps the cwd off it in both); then it says `pid N`, waits
for `g`, starts a thread that watches the connection, and runs server.main:
cookie check, a new certificate, a new 0700 socket directory, handshake, serve. If the
client dies (Terraform SIGKILLs it), the watcher removes the socket directory and ends the
child at once: the hard stop Terraform meant, minus the leftover directory.

Why fork after import is safe here:
- grpcio: importing `grpc` loads the Cython module but does not call grpc_init(); gRPC core
  starts its threads, pollers and (BoringSSL) TLS state only when the first channel or server
  is made, which happens in the child. The zygote makes no grpc object, and refuses to fork
  if it has more than one thread (/proc/self/task), so no lock or thread is lost in fork.
- OpenSSL (cryptography): the zygote generates no key and draws no random numbers
  (tls.warm_up only verifies), so OpenSSL's DRBG is first seeded in each child (strace shows
  no OpenSSL getrandom before fork); OpenSSL 3+ would also reseed on a pid change. The
  certificate serial comes from os.urandom (the kernel). Each child makes its own key.
- Python: `random` is reseeded in the child (and by its own at-fork hook). What children do
  share are hash seeds: Python's str hash seed and the hash-map seeds the Rust extensions
  (cryptography, pydantic-core) draw at import. None is key material; sharing them only
  weakens hash-flooding resistance, against input that comes from Terraform anyway.

What a warm child inherits from the zygote rather than from Terraform: resource limits,
niceness, scheduling and OOM settings (the zygote was started by an earlier provider start
of the same user, key and cgroup, so these normally match), and its command line in `ps`
(the zygote's `python -S -P -c ...`; its name, as `ps -e` and top show it, is l2vpc-provider,
the zygote's l2vpc-zygote).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket
    import socket
    from collections.abc import Callable, Mapping
    from typing import NoReturn

ENABLE_ENV = "L2VPC_PROVIDER_ZYGOTE"
_OFF = ("0", "false", "no", "off")
IDLE_ENV = "L2VPC_PROVIDER_ZYGOTE_IDLE"
RUNTIME_DIR_ENV = "L2VPC_PROVIDER_RUNTIME_DIR"
DEFAULT_IDLE_SECONDS = 600.0
PROTOCOL = b"l2vpc-zygote/1"

# Environment that shapes the interpreter or libraries at import time: part of the key and
# all of the zygote's own environment (children get the caller's, whole).
_KEY_ENV_PREFIXES = ("PYTHON", "GRPC_", "OPENSSL_", "SSL_CERT_", "CRYPTOGRAPHY_", "LANG", "LC_")
_MAX_SOCKET_PATH = 107  # sun_path is 108 bytes with the terminating NUL
_CONNECT_TIMEOUT = 2.0
_PID_TIMEOUT = 5.0  # longest wait for a fork; then the client starts cold
_REQUEST_TIMEOUT = 2.0  # a zygote spends at most this long on one client's request
_MAX_REQUEST = 4 << 20
_FAILED_BACKOFF = 60.0  # no new zygote for this long after one failed to start
_STALE_CHECK_SECONDS = 30.0
_TIDY_AFTER_SECONDS = 24 * 3600.0

_ZYGOTE_CODE = "from l2vpc.provider.warm import zygote_main; zygote_main()"

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


# --- shared by client and zygote ---------------------------------------------------------------


def runtime_dir(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    explicit = env.get(RUNTIME_DIR_ENV)
    if explicit:
        return explicit
    xdg = env.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg) and os.path.isdir(xdg):
        return os.path.join(xdg, "l2vpc-provider")
    return f"/tmp/l2vpc-provider-{os.geteuid()}"


def private_dir_ok(path: str) -> bool:
    """A real directory (no symlink), ours, closed to group and others."""
    import stat

    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and st.st_mode & 0o077 == 0


def zygote_key(environ: Mapping[str, str] | None = None) -> str:
    """Everything a zygote's imports depend on; equal keys mean a child = a cold start."""
    import l2vpc

    env = os.environ if environ is None else environ
    package = os.path.dirname(os.path.abspath(l2vpc.__file__))
    lines = [
        PROTOCOL.decode(),
        f"python {sys.executable} {sys.version} {sys.flags!r}",
        f"l2vpc {package} {l2vpc.__version__} {_newest_mtime(package)}",
        f"ids {os.getuid()} {os.geteuid()} {os.getgid()} {os.getegid()} {sorted(os.getgroups())}",
    ]
    for entry in env.get("PYTHONPATH", "").split(os.pathsep):
        lines.append(f"path {entry} {_mtime(entry)}")
    lines += [f"env {k}={v}" for k, v in sorted(env.items()) if k.startswith(_KEY_ENV_PREFIXES)]
    for ns in ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts"):
        lines.append(f"ns {_readlink(f'/proc/self/ns/{ns}')}")
    lines.append(f"root {_readlink('/proc/self/root')}")
    try:
        with open("/proc/self/cgroup") as f:
            lines.append(f"cgroup {f.read().strip()}")
    except OSError:
        lines.append("cgroup ?")
    return "\n".join(lines)


def _newest_mtime(top: str) -> int:
    """Newest mtime of the package's files and directories (directories change when files are
    added or removed); __pycache__ is skipped. ~100 stats: well under a millisecond."""
    newest = _mtime(top)
    todo = [top]
    while todo:
        try:
            entries = os.scandir(todo.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                if entry.name == "__pycache__":
                    continue
                try:
                    newest = max(newest, entry.stat(follow_symlinks=False).st_mtime_ns)
                    if entry.is_dir(follow_symlinks=False):
                        todo.append(entry.path)
                except OSError:
                    continue
    return newest


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def _digest(text: str) -> str:
    try:
        import _sha256  # builtin in 3.11; hashlib would load OpenSSL first

        h = _sha256.sha256(text.encode())
    except ImportError:
        import hashlib

        h = hashlib.sha256(text.encode())
    return str(h.hexdigest())[:20]


def zygote_paths(directory: str, key: str) -> dict[str, str]:
    stem = os.path.join(directory, f"z-{_digest(key)}")
    return {s: f"{stem}.{s}" for s in ("sock", "lock", "log", "failed")}


def _status_line(line: bytes) -> tuple[str, int] | None:
    kind, _, value = line.partition(b" ")
    if kind in (b"exit", b"signal") and value.isdigit():
        return kind.decode(), int(value)
    return None


# --- client: what `python -m l2vpc.provider` runs ----------------------------------------------


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
            directory = runtime_dir()
            key = zygote_key()
        except (OSError, ValueError):
            return None
        paths = zygote_paths(directory, key)
        if len(paths["sock"]) > _MAX_SOCKET_PATH:
            return None
        if not private_dir_ok(directory):
            if os.path.lexists(directory):
                return None  # someone else's, or open to others: never trust it
            try:
                os.mkdir(directory, 0o700)
            except OSError:
                return None
            if not private_dir_ok(directory):
                return None
        for signum in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP):
            self.previous[signum] = _signal.signal(signum, self._forward)

        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        try:
            started = self._request(sock, directory, paths, key, args)
        except OSError:  # includes timeouts; a child, if forked, sees the close before "g"
            started = None
        if started is None:
            sock.close()
            return None
        return self._wait(sock, *started)

    def _request(
        self, sock: _socket.socket, directory: str, paths: dict[str, str], key: str, args: list[str]
    ) -> tuple[int, bytes] | None:
        """Ask the zygote for a child and let it go: (child pid, bytes read past the pid line)."""
        import _socket

        sock.settimeout(_CONNECT_TIMEOUT)
        try:
            sock.connect(paths["sock"])
        except (FileNotFoundError, ConnectionRefusedError):
            _spawn_zygote(directory, paths)
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
        fields = [PROTOCOL, b"start", key.encode(), b"%o" % mask, b"%d" % len(args)]
        fields += [os.fsencode(a) for a in args]
        fields += [k + b"=" + v for k, v in os.environb.items()]
        payload = b"\0".join(fields)
        message = b"%d\n" % len(payload) + payload
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
                status = _status_line(line)
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


def _spawn_zygote(directory: str, paths: dict[str, str]) -> None:
    """Start a zygote for this key in the background, unless one failed to start just now."""
    import time

    try:
        if time.time() - os.stat(paths["failed"]).st_mtime < _FAILED_BACKOFF:
            return
    except OSError:
        pass
    env = {k: v for k, v in os.environ.items() if k.startswith(_KEY_ENV_PREFIXES)}
    env[RUNTIME_DIR_ENV] = directory
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


# --- requests other than starts (tests, benchmarks, `stop`) ------------------------------------


def _ask(path: str, op: bytes, timeout: float = 2.0) -> bytes:
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        payload = b"\0".join([PROTOCOL, op])
        sock.sendall(b"%d\n" % len(payload) + payload)
        reply = b""
        while not reply.endswith(b"\n"):
            data = sock.recv(4096)
            if not data:
                break
            reply += data
        return reply


def running_zygotes(directory: str) -> dict[str, int]:
    """Socket path -> pid of every zygote answering in `directory`."""
    found = {}
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return {}
    for name in names:
        if not name.endswith(".sock"):
            continue
        path = os.path.join(directory, name)
        try:
            reply = _ask(path, b"ping")
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
            reply = _ask(path, b"stop")
        except OSError:
            continue
        kind, _, value = reply.strip().partition(b" ")
        if kind == b"stopping" and value.isdigit():
            pids.append(int(value))
    deadline = time.monotonic() + timeout
    for pid in pids:
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
    return pids


def _alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


# --- zygote ------------------------------------------------------------------------------------


def zygote_main() -> None:
    """Entry of the background zygote (see _ZYGOTE_CODE); returns when it should exit."""
    import fcntl
    import gc

    gc.disable()  # no collections while importing: fewer holes, fewer pages a child copies
    directory = os.environ[RUNTIME_DIR_ENV]
    if not private_dir_ok(directory):
        return
    key = zygote_key()
    paths = zygote_paths(directory, key)
    lock = os.open(paths["lock"], os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return  # another zygote for this key is starting or running
    log = os.open(paths["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    os.dup2(log, 2, inheritable=False)
    os.close(log)
    try:
        _log(f"zygote {os.getpid()} starting for {paths['sock']}")
        _set_process_name(b"l2vpc-zygote")
        _tidy(directory, paths)
        for name in PRELOAD_FIRST:
            _preload(name)
        from l2vpc.provider import tls

        tls.warm_up()
        if zygote_key() != key:
            _log("the code changed while the zygote was loading it: not serving it")
            return
        zygote = _Zygote(key, paths, lock)
    except BaseException:
        import traceback

        traceback.print_exc()
        with open(paths["failed"], "w"):
            pass
        return
    try:
        os.unlink(paths["failed"])
    except FileNotFoundError:
        pass
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


def _tidy(directory: str, mine: dict[str, str]) -> None:
    """Remove files of zygotes that have not run for a day (each code change makes a new key)."""
    import fcntl
    import time

    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if not name.endswith(".lock") or path == mine["lock"]:
            continue
        try:
            if time.time() - os.stat(path).st_mtime < _TIDY_AFTER_SECONDS:
                continue
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # running
        stem = path[: -len(".lock")]
        for suffix in (".sock", ".log", ".failed", ".lock"):
            try:
                os.unlink(stem + suffix)
            except OSError:
                pass
        os.close(fd)


class _Zygote:
    def __init__(self, key: str, paths: dict[str, str], lock_fd: int) -> None:
        import signal
        import socket
        import time

        self.key = key
        self.paths = paths
        self.lock_fd = lock_fd
        self.children: dict[int, socket.socket] = {}
        self.stopping = False  # SIGTERM or `stop`: leave now
        self.draining = False  # stale: accept nothing more, leave when the children are done
        self.idle = _idle_seconds()
        self.last_activity = time.monotonic()
        self.last_check = self.last_activity

        path = paths["sock"]
        try:
            os.unlink(path)  # a dead zygote's; we hold the lock, so no live one owns it
        except FileNotFoundError:
            pass
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self.listener.bind(path)  # mode 0600 from the umask: no window with a wider one
        finally:
            os.umask(old)
        self.inode = os.stat(path).st_ino
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
        try:
            if os.stat(self.paths["sock"]).st_ino != self.inode:
                return False
        except OSError:
            return False
        return zygote_key() == self.key

    def _stop_listening(self) -> None:
        if self.draining and self.listener.fileno() < 0:
            return
        self.draining = True
        try:
            if os.stat(self.paths["sock"]).st_ino == self.inode:
                os.unlink(self.paths["sock"])
        except OSError:
            pass
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
            code = os.waitstatus_to_exitcode(status)
            line = b"exit %d\n" % code if code >= 0 else b"signal %d\n" % -code
            try:
                conn.sendall(line)
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
            payload, fds = _read_request(conn)
            fields = payload.split(b"\0")
            if fields[0] != PROTOCOL:
                raise ValueError(f"unknown protocol {fields[0][:40]!r}")
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
            _child(self, conn, fds, mask, args, env)
        for fd in fds:
            os.close(fd)
        self.children[pid] = conn  # the child itself says `pid N` once it is ready
        return True

    def close_in_child(self, keep: socket.socket) -> None:
        """Drop every descriptor of the zygote in a child (the lock above all: a child holding
        it would keep the next zygote from starting)."""
        for conn in self.children.values():
            if conn is not keep:
                conn.close()
        self.listener.close()
        for fd in (self.wake_r, self.wake_w, self.lock_fd):
            os.close(fd)


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


def _set_process_name(name: bytes) -> None:
    """The name `ps -e` and top show (the command line stays the zygote's `python -c ...`)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, ctypes.c_char_p(name), 0, 0, 0)  # PR_SET_NAME
    except Exception:
        pass


def _read_request(conn: socket.socket) -> tuple[bytes, list[int]]:
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
        if size > _MAX_REQUEST:
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
    return payload, fds


# --- child -------------------------------------------------------------------------------------


class Lifeline:
    """A warm child's connection to its client: the client's death ends the child at once, and
    the child's exit status goes back through it."""

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
            self._conn.sendall(b"exit %d\n" % code)
        except OSError:
            pass


def _child(
    zygote: _Zygote, conn: socket.socket, fds: list[int], mask: int, args: list[str], env: list[bytes]
) -> NoReturn:
    code = 1
    lifeline: Lifeline | None = None
    try:
        lifeline = _become_provider_process(zygote, conn, fds, mask, args, env)
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
    zygote: _Zygote, conn: socket.socket, fds: list[int], mask: int, args: list[str], env: list[bytes]
) -> Lifeline | None:
    """Turn the freshly forked child into what a cold start of this request would be."""
    import gc
    import logging
    import random
    import signal
    import time

    os.setsid()
    _set_process_name(b"l2vpc-provider")
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    zygote.close_in_child(conn)
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
    sys.argv = [os.path.join(os.path.dirname(os.path.abspath(__file__)), "__main__.py"), *args]
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
