"""busybox udhcpc as a port's DHCP client, inside the workload's namespace.

The hook script is ours: it configures only the port's interface in that namespace (address,
default route, option-121 routes) and writes name servers to a file in the state dir, never
to /etc/resolv.conf (which is the host's: a network namespace shares the mount namespace).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path

from l2vpc.agent.drivers.linux import procs

SCRIPT = r"""#!/bin/sh
# l2vpc udhcpc hook: configures $interface in this network namespace only.
# Never touches /etc/resolv.conf; name servers go to $L2VPC_DNS_FILE.
metric=$((100 + ${interface#net}))
case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface"
    ip link set dev "$interface" up
    ;;
  bound|renew)
    set -- $(ip -br -4 addr show dev "$interface")
    if [ "${3:-}" != "$ip/$mask" ]; then
      ip -4 addr flush dev "$interface"
      ip addr add "$ip/$mask" dev "$interface"
    fi
    keep=" "
    if [ -n "${staticroutes:-}" ]; then
      set -- $staticroutes
      while [ $# -ge 2 ]; do
        ip route replace "$1" via "$2" dev "$interface" proto boot metric "$metric"
        case "$1" in 0.0.0.0/0) keep="$keep default " ;; *) keep="$keep $1 ${1%/32} " ;; esac
        shift 2
      done
    elif [ -n "${router:-}" ]; then
      ip route replace default via "${router%% *}" dev "$interface" proto boot metric "$metric"
      keep=" default "
    fi
    # Routes an earlier lease gave that this one does not (a prefix a direct connect no longer
    # learns): gone too, or traffic keeps going to a gateway that has no route.
    ip -4 route show dev "$interface" proto boot | while read -r dst rest; do
      case "$keep" in *" $dst "*) ;; *) ip route del "$dst" dev "$interface" proto boot metric "$metric" ;; esac
    done
    : > "$L2VPC_DNS_FILE"
    for ns in ${dns:-}; do echo "nameserver $ns" >> "$L2VPC_DNS_FILE"; done
    ;;
esac
exit 0
"""


# Renew again this many seconds after the first (see renew): the other host's push usually
# lands within a few hundred ms, on a loaded machine seconds later; a renew costs one unicast
# request, and a client that missed them all would wait for half its lease (30 min by default).
RENEW_AGAIN = (0.3, 1.0, 3.0, 10.0)


def _paths(state: Path, port_id: str) -> tuple[Path, Path, Path]:
    return state / f"{port_id}.pid", state / f"{port_id}.log", state / f"{port_id}.dns"


def _marker(state: Path, port_id: str) -> str:
    return str(_paths(state, port_id)[0])


def script_path(state: Path) -> Path:
    return state / "udhcpc.script"


def start(state: Path, port_id: str, ifname: str, netns_path: str, hostname: str) -> None:
    state.mkdir(parents=True, exist_ok=True)
    script = script_path(state)
    if not script.exists() or script.read_text() != SCRIPT:
        script.write_text(SCRIPT)
        script.chmod(0o755)
    pidfile, log, dns = _paths(state, port_id)
    stop(state, port_id)
    argv = [
        "busybox", "udhcpc",
        "-f",  # foreground: we track the pid
        "-i", ifname,
        "-s", str(script),
        "-p", str(pidfile) + ".udhcpc",  # marker path also appears in our pidfile name
        "-t", "0",  # retry discovery forever
        "-T", "1",  # one second between discovers
        "-A", "1",
        "-O", "staticroutes",
        "-x", f"hostname:{hostname}",
    ]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "L2VPC_DNS_FILE": str(dns)}
    procs.start(netns_path, argv, pidfile, log, env=env)


def renew(state: Path, port_id: str) -> None:
    """Have the client renew its lease now (SIGUSR1), and again a few moments later: the VPC's
    DHCP server (on another host, converged at the same time) may not offer the new options
    yet when the first request reaches it."""
    pid = procs.read_pid(_paths(state, port_id)[0])
    marker = _marker(state, port_id)
    procs.signal_if_ours(pid, marker, signal.SIGUSR1)
    for delay in RENEW_AGAIN:
        timer = threading.Timer(delay, procs.signal_if_ours, (pid, marker, signal.SIGUSR1))
        timer.daemon = True
        timer.start()


def running(state: Path, port_id: str) -> bool:
    pidfile = _paths(state, port_id)[0]
    return procs.alive(procs.read_pid(pidfile), _marker(state, port_id))


def stop(state: Path, port_id: str) -> None:
    pidfile, log, dns = _paths(state, port_id)
    procs.stop(pidfile, _marker(state, port_id))
    for p in (log, dns, Path(str(pidfile) + ".udhcpc")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def tracked_ports(state: Path) -> list[str]:
    """Port ids that have a client pidfile (running or not)."""
    if not state.is_dir():
        return []
    return sorted(p.name[: -len(".pid")] for p in state.glob("*.pid"))
