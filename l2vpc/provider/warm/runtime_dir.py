"""The runtime directory: where zygotes keep their sockets, locks, logs and failure marks.

$L2VPC_PROVIDER_RUNTIME_DIR, else $XDG_RUNTIME_DIR/l2vpc-provider, else
/tmp/l2vpc-provider-<uid>. Each zygote has `z-<digest of its key>.sock` (0600), `.lock` (an
exclusive flock: one zygote per key), `.log` (0600) and `.failed` (a start failed just now).

The directory is opened once (`RuntimeDir.open`) and every file in it is reached relative to
that descriptor, never by its path again: a path checked and then used could be swapped in
between (root running with an XDG_RUNTIME_DIR inside another user's directory would then write
through a planted symlink). Opening it: its parent is opened and checked with fstat (ours or
root's, and not writable by others unless sticky, like /tmp, where others cannot rename our
entry), the directory is opened relative to the parent with O_NOFOLLOW and checked with fstat
(a directory, ours, no group/other access), created 0700 first when missing. Anything else
raises `UnsafeRuntimeDir` saying why, and the warm path is not used (the client says so on
stderr, which Terraform logs). Files are created with O_NOFOLLOW, the log and marks with
O_EXCL after removing the old one; the socket is bound and connected through
/proc/self/fd/<directory fd>/<name>, which resolves to the opened directory itself whatever
its path names now (bind never follows a symlink in the last component, it fails if anything
is there).

Client and zygote imports are cheap here on purpose: os and sys at load time, the rest when
called.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket
    from collections.abc import Mapping

RUNTIME_DIR_ENV = "L2VPC_PROVIDER_RUNTIME_DIR"
MAX_SOCKET_PATH = 107  # sun_path is 108 bytes with the terminating NUL
_TIDY_AFTER_SECONDS = 24 * 3600.0
_SUFFIXES = ("sock", "lock", "log", "failed")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class UnsafeRuntimeDir(Exception):
    """The runtime directory must not be used; the message says why and what to do."""


def connect(sock: _socket.socket, path: str) -> None:
    """Connect a unix stream socket to the zygote socket at `path` (tests and control)."""
    sock.connect(path)


def location(environ: Mapping[str, str] | None = None) -> str:
    """Where the runtime directory is, from the environment (see the module docstring)."""
    env = os.environ if environ is None else environ
    explicit = env.get(RUNTIME_DIR_ENV)
    if explicit:
        return explicit
    xdg = env.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg) and os.path.isdir(xdg):
        return os.path.join(xdg, "l2vpc-provider")
    return f"/tmp/l2vpc-provider-{os.geteuid()}"


def _parent_problem(st: os.stat_result) -> str:
    import stat

    me = os.geteuid()
    if st.st_uid not in (me, 0):
        return f"is owned by uid {st.st_uid}, neither us (uid {me}) nor root"
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        return f"is writable by others (mode {stat.S_IMODE(st.st_mode):04o}) and not sticky"
    return ""


def _dir_problem(st: os.stat_result) -> str:
    import stat

    me = os.geteuid()
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if st.st_uid != me:
        return f"is owned by uid {st.st_uid}, not us (uid {me})"
    if st.st_mode & 0o077:
        return f"is open to group or others (mode {stat.S_IMODE(st.st_mode):04o}, must be 0700)"
    return ""


class RuntimeDir:
    """An opened and checked runtime directory (`open`); `close` when done."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.fd = fd

    @classmethod
    def open(cls, path: str, *, create: bool = True) -> RuntimeDir:
        """Open and check the directory at `path` (creating it 0700 if missing and `create`);
        UnsafeRuntimeDir naming the problem otherwise."""
        import errno

        def unsafe(problem: str) -> UnsafeRuntimeDir:
            return UnsafeRuntimeDir(f"runtime directory {path} {problem}; remove it or set {RUNTIME_DIR_ENV} to "
                                    "a private directory of ours (mode 0700)")

        if not os.path.isabs(path):
            raise unsafe("is not an absolute path")
        parent, name = os.path.split(path.rstrip("/"))
        if not name or name in (".", ".."):
            raise unsafe("names no directory of its own")
        try:
            parent_fd = os.open(parent or "/", _DIR_FLAGS)
        except OSError as e:
            raise unsafe(f"cannot be reached: its parent {parent}: {e.strerror}") from None
        try:
            problem = _parent_problem(os.fstat(parent_fd))
            if problem:
                raise unsafe(f"is not safe: its parent {parent} {problem}")
            try:
                fd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent_fd)
            except FileNotFoundError:
                if not create:
                    raise unsafe("does not exist") from None
                try:
                    os.mkdir(name, 0o700, dir_fd=parent_fd)
                except FileExistsError:
                    pass  # made by a concurrent start: checked below like any other
                except OSError as e:
                    raise unsafe(f"cannot be created: {e.strerror}") from None
                fd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent_fd)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise unsafe("is a symlink or not a directory") from None
            raise unsafe(f"cannot be opened: {e.strerror}") from None
        finally:
            os.close(parent_fd)
        problem = _dir_problem(os.fstat(fd))
        if problem:
            os.close(fd)
            raise unsafe(problem)
        return cls(path, fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def zygote_files(self, digest: str) -> ZygoteFiles:
        return ZygoteFiles(self, digest)

    def via_fd(self, name: str) -> str:
        """A path to `name` in this very directory, whatever its own path names now."""
        return f"/proc/self/fd/{self.fd}/{name}"

    def sockets(self) -> list[str]:
        """Paths of every zygote socket here (live or not), sorted (tests, benchmarks)."""
        try:
            names = sorted(os.listdir(self.fd))
        except OSError:
            return []
        return [os.path.join(self.path, n) for n in names if n.endswith(".sock")]

    def tidy(self, keep: ZygoteFiles) -> None:
        """Remove files of zygotes that have not run for a day (each code change makes a new key)."""
        import fcntl
        import time

        for name in os.listdir(self.fd):
            if not name.endswith(".lock") or name == keep.lock:
                continue
            try:
                if time.time() - os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_mtime < _TIDY_AFTER_SECONDS:
                    continue
                fd = os.open(name, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.fd)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue  # running
            stem = name[: -len(".lock")]
            for suffix in ("sock", "log", "failed", "lock"):  # the lock last
                try:
                    os.unlink(f"{stem}.{suffix}", dir_fd=self.fd)
                except OSError:
                    pass
            os.close(fd)


class ZygoteFiles:
    """The files of the zygote for one key: z-<digest>.{sock,lock,log,failed}, names in `directory`."""

    def __init__(self, directory: RuntimeDir, digest: str) -> None:
        self.directory = directory
        self.sock, self.lock, self.log, self.failed = (f"z-{digest}.{s}" for s in _SUFFIXES)

    @property
    def fd(self) -> int:
        return self.directory.fd

    @property
    def sock_path(self) -> str:
        """The socket's path by its real location (what `ps`, logs and control show)."""
        return os.path.join(self.directory.path, self.sock)

    def socket_fits(self) -> bool:
        return len(self.directory.via_fd(self.sock)) <= MAX_SOCKET_PATH

    def connect(self, sock: _socket.socket) -> None:
        connect(sock, self.directory.via_fd(self.sock))

    # --- the zygote's start ---

    def failed_recently(self, seconds: float) -> bool:
        import time

        try:
            return time.time() - os.stat(self.failed, dir_fd=self.fd, follow_symlinks=False).st_mtime < seconds
        except OSError:
            return False

    def _create(self, name: str) -> int:
        """A new 0600 file `name` (an old one removed first), never through a symlink."""
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            pass
        return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                       dir_fd=self.fd)

    def mark_failed(self) -> None:
        try:
            os.close(self._create(self.failed))
        except FileExistsError:
            pass  # another start marked it meanwhile

    def clear_failed(self) -> None:
        try:
            os.unlink(self.failed, dir_fd=self.fd)
        except FileNotFoundError:
            pass

    def take_lock(self) -> int | None:
        """The lock file's descriptor, exclusively locked; None when another zygote holds it.
        The lock file outlives its zygote (its next one locks it again), so it is opened with
        O_NOFOLLOW rather than O_EXCL, and must then be a regular file of ours."""
        import fcntl
        import stat

        fd = os.open(self.lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=self.fd)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            os.close(fd)
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def open_log(self) -> int:
        return self._create(self.log)

    # --- the zygote's socket ---

    def bind(self, listener: _socket.socket) -> int:
        """Bind `listener` at the socket (0600 from the start); returns the socket's inode."""
        try:
            os.unlink(self.sock, dir_fd=self.fd)  # a dead zygote's; we hold the lock, so no live one owns it
        except FileNotFoundError:
            pass
        old = os.umask(0o177)
        try:
            listener.bind(self.directory.via_fd(self.sock))  # mode 0600 from the umask: no wider window
        finally:
            os.umask(old)
        return os.stat(self.sock, dir_fd=self.fd, follow_symlinks=False).st_ino

    def socket_is(self, inode: int) -> bool:
        """The socket still names our socket (nobody removed or replaced it)."""
        try:
            return os.stat(self.sock, dir_fd=self.fd, follow_symlinks=False).st_ino == inode
        except OSError:
            return False

    def remove_socket(self, inode: int) -> None:
        """Remove the socket if it is still ours."""
        try:
            if os.stat(self.sock, dir_fd=self.fd, follow_symlinks=False).st_ino == inode:
                os.unlink(self.sock, dir_fd=self.fd)
        except OSError:
            pass
