"""Namespaces and links of a lab: the underlay switch, host namespaces, sockets inside them.

The underlay is a bridge in a namespace of its own (nothing of the lab lives in the machine's
namespace), each host a namespace with one veth (`ul0`) to that bridge. Setup runs `ip` (a
handful of calls per host, once per `lab up`: readability wins over microseconds here);
`inside()` moves only the calling thread into a namespace, to open sockets there.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

# Named namespaces live where the agent's driver keeps them; one definition for both.
from l2vpc.agent.drivers.linux.netns import exists, path

CLONE_NEWNET = 0x40000000
UNDERLAY_BRIDGE = "br0"
HOST_UPLINK = "ul0"

_libc = ctypes.CDLL(None, use_errno=True)
_lock = threading.Lock()


class LabNetError(Exception):
    """A namespace or link could not be set up; names the command and the kernel's reason."""


def ip(*args: str, netns: str | None = None) -> str:
    cmd = ["ip", *(("-n", netns) if netns else ()), *args]
    try:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30)
    except subprocess.CalledProcessError as e:
        raise LabNetError(f"{' '.join(cmd)}: {e.stderr.strip() or e.returncode}") from None
    return out.stdout


def create(name: str) -> None:
    if exists(name):
        raise LabNetError(f"network namespace {name} already exists; it is not ours, so the lab will not use it")
    ip("netns", "add", name)
    ip("link", "set", "lo", "up", netns=name)


def pids_in(name: str) -> list[int]:
    """Processes whose network namespace is `name`."""
    try:
        st = os.stat(path(name))
    except FileNotFoundError:
        return []
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            ns = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (ns.st_ino, ns.st_dev) == (st.st_ino, st.st_dev):
            out.append(int(entry))
    return out


def remove(name: str, grace: float = 2.0) -> None:
    """Stop whatever still runs inside namespace `name` (it is ours), then remove it; gone is fine."""
    pids = pids_in(name)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if _running(p)]
            time.sleep(0.01)
        if not pids:
            break
    if exists(name):
        ip("netns", "del", name)


def _running(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except OSError:
        return False


def make_switch(name: str, mtu: int) -> None:
    """The underlay: namespace `name` with bridge br0."""
    create(name)
    ip("link", "add", UNDERLAY_BRIDGE, "mtu", str(mtu), "type", "bridge", netns=name)
    ip("link", "set", UNDERLAY_BRIDGE, "up", netns=name)


def plug_host(switch: str, port: str, host_ns: str, address: str, prefixlen: int, mtu: int) -> None:
    """A veth from the switch's bridge (`port`) to `ul0` in the host namespace, addressed."""
    ip("link", "add", port, "mtu", str(mtu), "type", "veth", "peer", "name", HOST_UPLINK,
       "netns", host_ns, "mtu", str(mtu), netns=switch)
    ip("link", "set", port, "master", UNDERLAY_BRIDGE, "up", netns=switch)
    ip("addr", "add", f"{address}/{prefixlen}", "dev", HOST_UPLINK, netns=host_ns)
    ip("link", "set", HOST_UPLINK, "up", netns=host_ns)


@contextlib.contextmanager
def inside(name: str) -> Iterator[None]:
    """Run the body with this thread in namespace `name` (sockets opened there stay there)."""
    target = os.open(path(name), os.O_RDONLY)
    with _lock:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            if _libc.setns(target, CLONE_NEWNET) != 0:
                code = ctypes.get_errno()
                raise OSError(code, f"setns {name}: {os.strerror(code)}")
            try:
                yield
            finally:
                if _libc.setns(home, CLONE_NEWNET) != 0:
                    code = ctypes.get_errno()
                    raise OSError(code, f"cannot return from namespace {name}: {os.strerror(code)}")
        finally:
            os.close(home)
            os.close(target)


def socket_in(name: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    with inside(name):
        return socket.socket(family, kind, proto)
