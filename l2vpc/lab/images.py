"""The lab's container image: busybox-static as an OCI image tar, built here, no registry.

    tar = busybox_image()          # cached: ~/.cache/l2vpc/images/busybox-<version>.tar

The Debian package busybox-static is fetched with `apt-get download` and unpacked (installing it
would replace the `busybox` package the lab's synthetic workloads use). The image holds
/bin/busybox, its applets as links, and /etc/l2vpc-init: a Pod's entry point that starts a DHCP
client on every VPC interface (net1..net10) that came without an address, then sleeps.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

IMAGE_NAME = "l2vpc.local/busybox:1"
PACKAGE = "busybox-static"
APPLETS = ("sh", "ip", "ping", "udhcpc", "sleep", "cat", "ls", "echo", "hostname", "ifconfig", "route", "grep",
           "sed", "awk", "kill", "ps", "wc", "head", "tail", "seq", "true", "false", "nc", "wget", "arping",
           "traceroute", "mkdir", "rm", "date", "env", "test", "[", "printf", "sort", "uniq", "cut", "tr")

# The Pod's own DHCP client (as a real Pod or VM would run one): address, router and classless
# routes (option 121, how a direct connect's learned prefixes reach DHCP workloads).
UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
  deconfig) ip -4 addr flush dev "$interface" ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    if [ -n "$router" ]; then for r in $router; do ip route replace default via "$r" dev "$interface"; break; done; fi
    if [ -n "$staticroutes" ]; then
      set -- $staticroutes
      while [ $# -ge 2 ]; do ip route replace "$1" via "$2" dev "$interface"; shift 2; done
    fi ;;
esac
exit 0
"""

INIT = """#!/bin/sh
# l2vpc lab Pod: DHCP on every VPC interface that has no IPv4 address yet, then wait.
for path in /sys/class/net/net*; do
  [ -e "$path" ] || continue
  name=${path##*/}
  if ! ip -4 -o addr show dev "$name" | grep -q inet; then
    udhcpc -b -i "$name" -s /etc/udhcpc.script -p /run/udhcpc.$name.pid -O staticroutes -x hostname:pod >/dev/null 2>&1
  fi
done
exec sleep 2147483647
"""


class ImageError(RuntimeError):
    """The image cannot be built (package not fetched); the message says what to do."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "l2vpc" / "images"


def fetch_busybox(into: Path) -> Path:
    """The busybox-static .deb, downloaded into `into` once (apt-get download)."""
    into.mkdir(parents=True, exist_ok=True)
    found = sorted(into.glob(f"{PACKAGE}_*.deb"))
    if found:
        return found[-1]
    with tempfile.TemporaryDirectory(dir=into) as tmp:
        run = subprocess.run(["apt-get", "download", PACKAGE], cwd=tmp, capture_output=True, text=True, timeout=300)
        if run.returncode != 0 and os.geteuid() == 0:  # no package lists yet (a fresh machine)
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=300)
            run = subprocess.run(["apt-get", "download", PACKAGE], cwd=tmp, capture_output=True, text=True,
                                 timeout=300)
        debs = sorted(Path(tmp).glob(f"{PACKAGE}_*.deb"))
        if run.returncode != 0 or not debs:
            raise ImageError(f"apt-get download {PACKAGE} failed ({(run.stderr or run.stdout).strip()[-200:]}); "
                             "run `apt-get update` first, or put the .deb into " + str(into))
        target = into / debs[-1].name
        shutil.move(str(debs[-1]), target)
    return target


def _file(t: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    t.addfile(info, io.BytesIO(data))


def _layer(busybox: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "run", "var", "root"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            t.addfile(info)
        _file(t, "bin/busybox", busybox, 0o755)
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            t.addfile(info)
        _file(t, "etc/udhcpc.script", UDHCPC_SCRIPT.encode(), 0o755)
        _file(t, "etc/l2vpc-init", INIT.encode(), 0o755)
    return buf.getvalue()


def build_image(busybox: bytes, out: Path) -> None:
    """An OCI image layout tar of one layer, named IMAGE_NAME, written to `out`."""
    layer = _layer(busybox)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    blob = gzip.compress(layer, mtime=0)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/etc/l2vpc-init"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }, sort_keys=True).encode()

    def ref(media: str, data: bytes) -> dict[str, object]:
        return {"mediaType": media, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}

    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": ref("application/vnd.oci.image.config.v1+json", config),
        "layers": [ref("application/vnd.oci.image.layer.v1.tar+gzip", blob)],
    }, sort_keys=True).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        **ref("application/vnd.oci.image.manifest.v1+json", manifest),
        "annotations": {"org.opencontainers.image.ref.name": IMAGE_NAME},
    }]}, sort_keys=True).encode()
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, "w") as t:
        _file(t, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}', 0o644)
        _file(t, "index.json", index, 0o644)
        for data in (blob, config, manifest):
            _file(t, "blobs/sha256/" + hashlib.sha256(data).hexdigest(), data, 0o644)
    tmp.replace(out)


def busybox_image(cache: Path | None = None) -> Path:
    """The image tar (built once per busybox-static version and kept in the cache)."""
    cache = cache or cache_dir()
    deb = fetch_busybox(cache)
    out = cache / (deb.stem + ".oci.tar")
    if out.exists():
        return out
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True, capture_output=True)
        busybox = (Path(tmp) / "bin" / "busybox").read_bytes()
    build_image(busybox, out)
    return out
