"""What a test or lab left behind: network namespaces with its prefix, live processes naming
its files. Tests assert both are empty after teardown (by recorded names, never by pattern
kills: other tests and users run beside them)."""

from __future__ import annotations

import os
from pathlib import Path


def processes_mentioning(text: str) -> list[str]:
    """`pid command line` of live processes (zombies and this one excluded) whose command line
    contains `text` (as `pgrep -af`)."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            stat = Path(f"/proc/{pid}/stat").read_bytes()
        except OSError:
            continue
        if text.encode() in cmd and stat.rsplit(b")", 1)[-1].split()[0] != b"Z":
            command = cmd.replace(b"\0", b" ").decode(errors="replace").strip()
            out.append(f"{pid} {command}")
    return out


def namespaces_with_prefix(prefix: str) -> list[str]:
    from l2vpc.agent.drivers.linux import netns

    return [n for n in netns.list_names() if n.startswith(prefix)]


def leftovers(prefix: str, *mentions: str) -> list[str]:
    """Namespaces named `prefix`..., and live processes whose command line names any of `mentions`."""
    out = [f"netns {n}" for n in namespaces_with_prefix(prefix)]
    for text in mentions:
        out += [f"process {p}" for p in processes_mentioning(text)]
    return out
