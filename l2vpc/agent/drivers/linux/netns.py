"""Named network namespaces (`/run/netns/<name>`, as `ip netns` keeps them), without forking.

The one place that enters namespaces, for the driver, its edge and VPN managers and the lab:

    netns.create(name) / remove(name) / exists(name) / list_names()
    with netns.inside(name): ...          # this thread in `name` (sockets opened there stay there)
    with netns.opened(name) as fd: ...    # an fd of `name`, e.g. to create a device in it
    netns.netlink_socket(name); netns.socket_in(name, family, kind)
    netns.sysctl(name, {"net/ipv4/ip_forward": "1"})

setns(2) and unshare(2) with CLONE_NEWNET change only the calling thread, so a thread can
step into a namespace, open a socket there or create a namespace, and step back, in
microseconds. pyroute2 forks a helper process for each of these (~13-15 ms), which is too slow
for a host with a hundred workloads.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
import threading
from collections.abc import Iterator, Mapping

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
MS_BIND, MS_REC, MS_SHARED = 4096, 16384, 1 << 20
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
# One namespace switch at a time per process keeps reasoning simple; reentrant, so a body
# inside one namespace may open a socket in another.
_lock = threading.RLock()


def path(name: str) -> str:
    """The file of namespace `name`: a name under /run/netns, or a path as it is (a runtime's
    namespace, e.g. /var/run/netns/cni-... or /proc/<pid>/ns/net)."""
    return name if name.startswith("/") else os.path.join(NETNS_DIR, name)


def exists(name: str) -> bool:
    return os.path.exists(path(name))


def list_names() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def _check(rc: int, what: str, name: str) -> None:
    if rc != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what} {name}: {os.strerror(code)}")


def _go_back(home: int, name: str) -> None:
    """Put this thread back in namespace `home` (an fd, closed here) after a visit to `name`."""
    try:
        # Failing to get back would leave this thread in the wrong namespace for good.
        _check(_libc.setns(home, CLONE_NEWNET), "setns back from", name)
    finally:
        os.close(home)


@contextlib.contextmanager
def _coming_back(name: str) -> Iterator[None]:
    """Hold the lock; after the body, put this thread back in the namespace it is in now."""
    with _lock:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            yield
        finally:
            _go_back(home, name)


@contextlib.contextmanager
def opened(name: str | None) -> Iterator[int]:
    """An fd of namespace `name` (None: this thread's own) for the body, closed after it."""
    fd = os.open(path(name) if name is not None else "/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def inside(name: str | None) -> Iterator[None]:
    """Run the body with this thread in namespace `name` (None: stay where it is)."""
    if name is None:
        yield
        return
    with opened(name) as fd, _coming_back(name):
        _check(_libc.setns(fd, CLONE_NEWNET), "setns", name)
        yield


def socket_in(name: str | None, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket created inside namespace `name` (it stays there; None: the current one).

    What `with inside(name)` does, written out: a driver opens two sockets per workload
    namespace on every cold read, and inside's three generator context managers were ~3 % of
    a cold no-op converge (bench_agent_converge, callgrind)."""
    if name is None:
        return socket.socket(family, kind, proto)
    target = os.open(path(name), os.O_RDONLY)
    try:
        with _lock:
            home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
            try:
                _check(_libc.setns(target, CLONE_NEWNET), "setns", name)
                return socket.socket(family, kind, proto)
            finally:
                _go_back(home, name)
    finally:
        os.close(target)


def netlink_socket(name: str | None) -> socket.socket:
    """A NETLINK_ROUTE socket inside namespace `name` (None: the current one)."""
    return socket_in(name, socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)


def sysctl(name: str, values: Mapping[str, str]) -> None:
    """Write /proc/sys/<key> inside namespace `name` (keys as paths: `net/ipv4/ip_forward`).
    /proc/sys/net follows the calling thread's network namespace: no `sysctl` process needed."""
    with inside(name):
        for key, value in values.items():
            with open(f"/proc/sys/{key}", "w") as f:
                f.write(value)


def _share_netns_dir() -> None:
    # As iproute2: /run/netns must be a shared mount so the bind mounts propagate.
    os.makedirs(NETNS_DIR, exist_ok=True)
    target = NETNS_DIR.encode()
    if _libc.mount(b"", target, b"none", MS_SHARED | MS_REC, None) == 0:
        return
    _check(_libc.mount(target, target, b"none", MS_BIND | MS_REC, None), "bind-mount", NETNS_DIR)
    _check(_libc.mount(b"", target, b"none", MS_SHARED | MS_REC, None), "make-shared", NETNS_DIR)


_dir_ready = False


def create(name: str) -> bool:
    """Create namespace `name`; False if it already exists (it is then left as it is)."""
    global _dir_ready
    if not _dir_ready:
        _share_netns_dir()
        _dir_ready = True
    target = path(name)
    try:
        os.close(os.open(target, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444))
    except FileExistsError:
        return False
    try:
        with _coming_back(name):
            _check(_libc.unshare(CLONE_NEWNET), "unshare for", name)
            _check(_libc.mount(b"/proc/thread-self/ns/net", target.encode(), b"none", MS_BIND, None), "bind-mount",
                   name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(target)
        raise
    return True


def remove(name: str) -> None:
    """Remove namespace `name`; already gone is fine."""
    target = path(name)
    if _libc.umount2(target.encode(), MNT_DETACH) != 0 and ctypes.get_errno() not in (errno.EINVAL, errno.ENOENT):
        code = ctypes.get_errno()
        raise OSError(code, f"umount {target}: {os.strerror(code)}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(target)
