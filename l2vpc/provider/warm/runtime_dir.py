"""The runtime directory: where zygotes keep their sockets, locks, logs and failure marks.

$L2VPC_PROVIDER_RUNTIME_DIR, else $XDG_RUNTIME_DIR/l2vpc-provider, else
/tmp/l2vpc-provider-<uid>. It must be a real directory (no symlink) owned by us with no
group/other access, else the warm path is not used at all: the client starts cold, and no
zygote is started there. Each zygote has `z-<digest of its key>.sock` (0600), `.lock` (an
exclusive flock: one zygote per key), `.log` (0600) and `.failed` (a start failed just now).

Every operation on the directory or on a file in it by path lives in this module, so that
opening them relative to a checked directory descriptor changes this module only. Client and
zygote imports are cheap here on purpose: os and sys at load time, the rest when called.
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


def connect(sock: _socket.socket, path: str) -> None:
    """Connect a unix stream socket to the zygote socket at `path`."""
    sock.connect(path)


class RuntimeDir:
    def __init__(self, path: str) -> None:
        self.path = path

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> RuntimeDir:
        env = os.environ if environ is None else environ
        explicit = env.get(RUNTIME_DIR_ENV)
        if explicit:
            return cls(explicit)
        xdg = env.get("XDG_RUNTIME_DIR")
        if xdg and os.path.isabs(xdg) and os.path.isdir(xdg):
            return cls(os.path.join(xdg, "l2vpc-provider"))
        return cls(f"/tmp/l2vpc-provider-{os.geteuid()}")

    def is_private(self) -> bool:
        """A real directory (no symlink), ours, closed to group and others."""
        import stat

        try:
            st = os.lstat(self.path)
        except OSError:
            return False
        return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and st.st_mode & 0o077 == 0

    def make_private(self) -> bool:
        """Private as above, creating it (0700) if it does not exist; False: do not use it."""
        if self.is_private():
            return True
        if os.path.lexists(self.path):
            return False  # someone else's, or open to others: never trust it
        try:
            os.mkdir(self.path, 0o700)
        except OSError:
            return False
        return self.is_private()

    def zygote_files(self, digest: str) -> ZygoteFiles:
        return ZygoteFiles(self, digest)

    def sockets(self) -> list[str]:
        """Paths of every zygote socket here (live or not), sorted."""
        try:
            names = sorted(os.listdir(self.path))
        except OSError:
            return []
        return [os.path.join(self.path, n) for n in names if n.endswith(".sock")]

    def tidy(self, keep: ZygoteFiles) -> None:
        """Remove files of zygotes that have not run for a day (each code change makes a new key)."""
        import fcntl
        import time

        for name in os.listdir(self.path):
            path = os.path.join(self.path, name)
            if not name.endswith(".lock") or path == keep.lock:
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
            for suffix in ("sock", "log", "failed", "lock"):  # the lock last
                try:
                    os.unlink(f"{stem}.{suffix}")
                except OSError:
                    pass
            os.close(fd)


class ZygoteFiles:
    """The files of the zygote for one key: z-<digest>.{sock,lock,log,failed}."""

    def __init__(self, directory: RuntimeDir, digest: str) -> None:
        self.directory = directory
        stem = os.path.join(directory.path, f"z-{digest}")
        self.sock, self.lock, self.log, self.failed = (f"{stem}.{s}" for s in _SUFFIXES)

    def socket_fits(self) -> bool:
        return len(self.sock) <= MAX_SOCKET_PATH

    def connect(self, sock: _socket.socket) -> None:
        connect(sock, self.sock)

    # --- the zygote's start ---

    def failed_recently(self, seconds: float) -> bool:
        import time

        try:
            return time.time() - os.stat(self.failed).st_mtime < seconds
        except OSError:
            return False

    def mark_failed(self) -> None:
        with open(self.failed, "w"):
            pass

    def clear_failed(self) -> None:
        try:
            os.unlink(self.failed)
        except FileNotFoundError:
            pass

    def take_lock(self) -> int | None:
        """The lock file's descriptor, exclusively locked; None when another zygote holds it."""
        import fcntl

        fd = os.open(self.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def open_log(self) -> int:
        return os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)

    # --- the zygote's socket ---

    def bind(self, listener: _socket.socket) -> int:
        """Bind `listener` at the socket path (0600 from the start); returns the socket's inode."""
        try:
            os.unlink(self.sock)  # a dead zygote's; we hold the lock, so no live one owns it
        except FileNotFoundError:
            pass
        old = os.umask(0o177)
        try:
            listener.bind(self.sock)  # mode 0600 from the umask: no window with a wider one
        finally:
            os.umask(old)
        return os.stat(self.sock).st_ino

    def socket_is(self, inode: int) -> bool:
        """The socket path still names our socket (nobody removed or replaced it)."""
        try:
            return os.stat(self.sock).st_ino == inode
        except OSError:
            return False

    def remove_socket(self, inode: int) -> None:
        """Remove the socket path if it is still ours."""
        try:
            if os.stat(self.sock).st_ino == inode:
                os.unlink(self.sock)
        except OSError:
            pass
