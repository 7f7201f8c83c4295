"""Traffic control for edge routers: a token-bucket shaper per direction and tc-BPF filters.

These run the `tc` command (iproute2) rather than netlink: they change a handful of qdiscs when
a direct connect is created or its bandwidth changes, where readability beats microseconds,
and `tc` computes the kernel's rate parameters exactly as operators know them. Reads use
`tc -j` (JSON), one call per namespace for all its shapers.

The shaper is a `tbf` root qdisc on the egress of a device, so a device limits what it sends.
tbf counts whole frames; TCP goodput through it measures ~95 % of the rate (headers), so a
cap is "accurate" within 5-10 % depending on frame size. The burst is at least 64 KiB so that
GSO super-packets of a veth pass without being split, and 4 ms worth of the rate above that.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

TC = "tc"
LATENCY = "20ms"
MIN_BURST = 64 * 1024


class TcError(Exception):
    """A tc command failed; the message holds the command's own words."""


def _run(netns: str | None, *args: str) -> str:
    cmd = [TC, *(("-n", netns) if netns else ()), *args]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise TcError(f"{' '.join(cmd)}: {e}") from None
    if out.returncode != 0:
        raise TcError(f"{' '.join(args)}: {out.stderr.strip() or f'exit {out.returncode}'}")
    return out.stdout


def burst_bytes(rate_bits: int) -> int:
    return max(MIN_BURST, rate_bits // 8 // 250)


def shape(netns: str | None, dev: str, rate_bits: int) -> None:
    """Limit what `dev` sends to rate_bits per second (replaces any previous limit in place)."""
    _run(netns, "qdisc", "replace", "dev", dev, "root", "tbf", "rate", f"{rate_bits}bit",
         "burst", f"{burst_bytes(rate_bits)}b", "latency", LATENCY)


def shaped(netns: str | None) -> dict[str, int]:
    """Device -> shaper rate (bits per second) of every tbf root qdisc in the namespace."""
    out: dict[str, int] = {}
    for q in _json(_run(netns, "-j", "qdisc", "show")):
        if q.get("kind") == "tbf" and q.get("root") and "dev" in q:
            out[str(q["dev"])] = int(q.get("options", {}).get("rate", 0)) * 8
    return out


def rate_matches(have_bits: int | None, want_bits: int) -> bool:
    """tc rounds rates to whole bytes per second; anything within 0.5 % is the same rate."""
    return have_bits is not None and abs(have_bits - want_bits) <= max(8, want_bits // 200)


def attach_bpf(netns: str | None, dev: str, direction: str, obj: str, section: str) -> None:
    """A direct-action BPF filter on `dev`'s clsact hook `direction` (ingress | egress)."""
    _run(netns, "qdisc", "replace", "dev", dev, "clsact")
    _run(netns, "filter", "replace", "dev", dev, direction, "pref", "1", "handle", "1", "bpf", "da",
         "obj", obj, "sec", section)


def detach_bpf(netns: str | None, dev: str) -> None:
    """Remove the clsact qdisc (and with it every filter) of `dev`; none is fine."""
    try:
        _run(netns, "qdisc", "del", "dev", dev, "clsact")
    except TcError as e:
        if "Cannot find" not in str(e) and "Invalid handle" not in str(e) and "No such file" not in str(e):
            raise


def bpf_filters(netns: str | None, dev: str) -> dict[str, str]:
    """direction -> BPF filter name (`<object file>:[<section>]`) on `dev`; {} without any."""
    out: dict[str, str] = {}
    for direction in ("ingress", "egress"):
        try:
            filters = _json(_run(netns, "-j", "filter", "show", "dev", dev, direction))
        except TcError:
            continue  # no clsact on the device
        for f in filters:
            name = f.get("options", {}).get("bpf_name")
            if f.get("kind") == "bpf" and name:
                out[direction] = str(name)
    return out


def _json(text: str) -> list[dict[str, Any]]:
    text = text.strip()
    if not text:
        return []
    data = json.loads(text)
    return data if isinstance(data, list) else []
