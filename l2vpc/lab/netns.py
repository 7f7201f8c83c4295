"""Namespaces and links of a lab: the underlay switch, host namespaces, what runs inside them.

The underlay is a bridge in a namespace of its own (nothing of the lab lives in the machine's
namespace), each host a namespace with one veth (`ul0`) to that bridge. Links are set up with
`ip` (a handful of calls per host, once per `lab up`: readability wins over microseconds here).
Namespaces themselves, and entering them, are the agent driver's helpers (one definition for
both: `path`, `exists`, `inside` and `socket_in` are those); what only a lab does is here:
refusing a namespace that is not its own, and stopping whatever runs in one before removing it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

from l2vpc.agent.drivers.linux import netns as _netns
from l2vpc.agent.drivers.linux import procs, rtnl
from l2vpc.agent.drivers.linux.netns import exists, inside, path, socket_in

__all__ = ["HOST_UPLINK", "UNDERLAY_BRIDGE", "LabNetError", "create", "exists", "inside", "ip", "make_switch",
           "path", "pids_in", "plug_host", "remove", "socket_in"]

UNDERLAY_BRIDGE = "br0"
HOST_UPLINK = "ul0"


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
    """Namespace `name`, its loopback up; one that exists already is not ours: refused."""
    try:
        if not _netns.create(name):
            raise LabNetError(f"network namespace {name} already exists; it is not ours, so the lab will not use it")
        nl = rtnl.Rtnl(_netns.netlink_socket(name))
        try:
            nl.call(rtnl.set_link(1, up=True))
        finally:
            nl.close()
    except OSError as e:
        raise LabNetError(f"network namespace {name}: {e.strerror or e}") from None


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
            pids = [p for p in pids if not procs.exited(p)]
            time.sleep(0.01)
        if not pids:
            break
    _netns.remove(name)


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
