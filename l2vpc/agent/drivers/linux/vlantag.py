"""802.1Q tagging on a veth by tc-BPF (see vlan_tag.bpf.c): compile, attach, detach, read back.

The kernel has no 802.1Q devices and no bridge VLAN filtering, so a tagged hand-off is made by
two direct-action tc programs on one device: frames the device *receives* from its veth peer
get the tag pushed (`tc/push` on ingress), frames it *sends* to its peer must carry the tag,
which is popped (`tc/pop` on egress; untagged frames and other tags are dropped). Put on the
hand-off side of an edge's veth pair, the device's bridge (and the hand-off) sees tagged
frames, the VPC side sees untagged ones. `inward=False` swaps the two hooks, which is what a
customer machine on the premises side needs (tag what it sends, untag what it receives).

Objects are compiled with clang on first use, one per tag, into a cache directory (the
driver's state dir): `vlan-<vid>-<source hash>.o`, so an edited source is recompiled.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import subprocess
from pathlib import Path

from l2vpc.agent.drivers.linux import tc

SOURCE = Path(__file__).with_name("vlan_tag.bpf.c")
CLANG = "clang"
MIN_VLAN, MAX_VLAN = 2, 4093
_OBJ_RE = re.compile(r"vlan-(\d+)-[0-9a-f]{12}\.o:\[tc/(push|pop)\]$")


class VlanTagError(Exception):
    """The program cannot be built or attached; the message says why."""


def _include_dirs() -> list[str]:
    # <asm/types.h> lives in the multiarch directory on Debian and Ubuntu.
    arch = f"/usr/include/{platform.machine()}-linux-gnu"
    return [f"-I{arch}"] if os.path.isdir(arch) else []


def object_for(vid: int, cache: Path) -> Path:
    """The compiled program for tag `vid` (compiled now if not cached)."""
    if not MIN_VLAN <= vid <= MAX_VLAN:
        raise VlanTagError(f"vlan: {vid} is outside {MIN_VLAN}..{MAX_VLAN}")
    try:
        source = SOURCE.read_bytes()
    except OSError as e:
        raise VlanTagError(f"BPF source {SOURCE} is missing ({e.strerror}); reinstall l2vpc") from None
    digest = hashlib.sha256(source).hexdigest()[:12]
    obj = cache / f"vlan-{vid}-{digest}.o"
    if obj.exists():
        return obj
    cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = obj.with_suffix(f".{os.getpid()}.tmp")
    cmd = [CLANG, "-O2", "-g", "-target", "bpf", f"-DVLAN_ID={vid}", *_include_dirs(), "-c", str(SOURCE),
           "-o", str(tmp)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise VlanTagError("clang is not installed (needed to build the VLAN tagging program)") from None
    except subprocess.TimeoutExpired:
        raise VlanTagError("clang took more than 60 s to build the VLAN tagging program") from None
    if out.returncode != 0:
        tmp.unlink(missing_ok=True)
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise VlanTagError(f"building the VLAN tagging program failed: {last}")
    tmp.replace(obj)
    return obj


def attach(netns: str | None, dev: str, vid: int, cache: Path, inward: bool = True) -> None:
    """Tag on `dev` with `vid` (see the module docstring for the direction)."""
    obj = str(object_for(vid, cache))
    push, pop = ("ingress", "egress") if inward else ("egress", "ingress")
    try:
        tc.detach_bpf(netns, dev)
        tc.attach_bpf(netns, dev, push, obj, "tc/push")
        tc.attach_bpf(netns, dev, pop, obj, "tc/pop")
    except tc.TcError as e:
        raise VlanTagError(f"attaching the VLAN tagging program to {dev}: {e}") from None


def detach(netns: str | None, dev: str) -> None:
    try:
        tc.detach_bpf(netns, dev)
    except tc.TcError as e:
        raise VlanTagError(f"removing the VLAN tagging program from {dev}: {e}") from None


def attached(netns: str | None, dev: str, inward: bool = True) -> int | None:
    """The tag `dev` pushes and pops, None when it has no tagging program; -1 when the two
    hooks disagree or hold something else (a half-made or foreign setup)."""
    filters = tc.bpf_filters(netns, dev)
    if not filters:
        return None
    push_at, pop_at = ("ingress", "egress") if inward else ("egress", "ingress")
    push = _OBJ_RE.search(filters.get(push_at, ""))
    pop = _OBJ_RE.search(filters.get(pop_at, ""))
    if push and pop and push.group(2) == "push" and pop.group(2) == "pop" and push.group(1) == pop.group(1):
        return int(push.group(1))
    return -1
