"""The lab VM's boot files: the Debian kernel, unpacked and decompressed, and a busybox initramfs.

    kernel, initrd = vm_boot_files()   # cached in ~/.cache/l2vpc/vm/

The kernel comes from the Debian `linux-image-<version>-amd64` package the `linux-image-amd64`
metapackage depends on, fetched with `apt-get download` and unpacked (never installed). Its
bzImage holds the kernel xz-compressed; decompressed once into an ELF `vmlinux` it boots through
PVH, which spares the guest the decompression: under TCG that is seconds. The initramfs holds
busybox-static, the virtio modules the guest's NICs need (loaded in dependency order) and
`/init`: it names the NICs net1..net10 in the order of the MACs on the kernel command line
(`l2vpc.nics=mac1,mac2,...`), runs a DHCP client on each (address, routes, MTU from the VPC's
DHCP server), prints L2VPC-VM-UP on the console, and serves a command channel on the second
serial port (vm.py).
"""

from __future__ import annotations

import hashlib
import lzma
import os
import subprocess
import tempfile
from pathlib import Path

from l2vpc.lab import images

KERNEL_META = "linux-image-amd64"
# The modules the guest's NICs need (/init loads them in dependency order).
MODULES = (
    "drivers/virtio/virtio_ring.ko", "drivers/virtio/virtio.ko", "drivers/virtio/virtio_pci_legacy_dev.ko",
    "drivers/virtio/virtio_pci_modern_dev.ko", "drivers/virtio/virtio_pci.ko", "net/core/failover.ko",
    "drivers/net/net_failover.ko", "drivers/net/virtio_net.ko",
)
APPLETS = ("sh", "mount", "insmod", "ip", "udhcpc", "ping", "cat", "echo", "sleep", "ls", "grep", "sed", "tr",
           "cut", "wc", "head", "tail", "kill", "ps", "seq", "true", "false", "test", "[", "printf", "arping",
           "ifconfig", "route", "hostname", "dmesg", "uname", "mkdir", "stty", "read", "timeout", "nc")

UP_MARK = "L2VPC-VM-UP"
RC_MARK = "__L2VPC_RC__"

UDHCPC_SCRIPT = images.UDHCPC_SCRIPT.replace(
    '    ip addr add "$ip/${mask:-24}" dev "$interface"\n',
    '    ip addr add "$ip/${mask:-24}" dev "$interface"\n'
    '    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"\n')

INIT = f"""#!/bin/sh
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net; do
  insmod /lib/modules/$m.ko 2>/dev/null
done
ip link set lo up
nics=$(sed -n 's/.*l2vpc\\.nics=\\([^ ]*\\).*/\\1/p' /proc/cmdline | tr ',' ' ')
n=0
for mac in $nics; do
  n=$((n + 1))
  for path in /sys/class/net/*; do
    [ "$(cat $path/address 2>/dev/null)" = "$mac" ] || continue
    name=${{path##*/}}
    ip link set dev "$name" name "net$n"
    ip link set dev "net$n" up
    udhcpc -b -i "net$n" -s /etc/udhcpc.script -p /run/udhcpc.net$n.pid -O staticroutes -O mtu >/dev/null 2>&1
  done
done
echo {UP_MARK}
# The command channel: one command per line on the second serial port, its output there,
# then the mark and its exit status. The port stays open (fd 3): a tty closed between commands
# drops what arrives meanwhile.
(
  exec 3<>/dev/ttyS1
  stty -F /dev/ttyS1 raw -echo 2>/dev/null
  while read -r line <&3; do
    sh -c "$line" >&3 2>&1 </dev/null
    echo "{RC_MARK} $?" >&3
  done
) &
exec sh
"""


class VmImageError(RuntimeError):
    """The boot files cannot be made (a package not fetched); the message says what to do."""


def cache_dir() -> Path:
    return images.cache_dir().parent / "vm"


def _download(package: str, into: Path) -> Path:
    found = sorted(into.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    with tempfile.TemporaryDirectory(dir=into) as tmp:
        run = subprocess.run(["apt-get", "download", package], cwd=tmp, capture_output=True, text=True, timeout=600)
        debs = sorted(Path(tmp).glob(f"{package}_*.deb"))
        if run.returncode != 0 or not debs:
            raise VmImageError(f"apt-get download {package} failed ({(run.stderr or run.stdout).strip()[-200:]}); "
                               "run `apt-get update` first")
        target = into / debs[-1].name
        os.replace(debs[-1], target)
    return target


def kernel_package() -> str:
    """The versioned kernel package the metapackage stands for (e.g. linux-image-6.1.0-57-amd64)."""
    run = subprocess.run(["apt-cache", "depends", KERNEL_META], capture_output=True, text=True, timeout=60)
    for line in run.stdout.splitlines():
        name = line.strip().removeprefix("Depends:").strip()
        if name.startswith("linux-image-") and name != KERNEL_META:
            return name
    raise VmImageError(f"apt-cache depends {KERNEL_META} names no kernel package; run `apt-get update` first")


def decompress_bzimage(data: bytes) -> bytes:
    """The ELF kernel inside an xz-compressed bzImage."""
    start = data.find(b"\xfd7zXZ\x00")
    if start < 0:
        raise VmImageError("the kernel image is not xz-compressed (unexpected for Debian's amd64 kernels)")
    elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[start:])
    if elf[:4] != b"\x7fELF":
        raise VmImageError("the kernel image's payload is not an ELF kernel")
    return elf


def _cpio(entries: list[tuple[str, bytes, int]]) -> bytes:
    """A newc cpio archive of (name, data, mode) entries (the initramfs format)."""
    out = bytearray()

    def header(ino: int, name: str, mode: int, size: int) -> bytes:
        fields = (ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, len(name) + 1, 0)
        return ("070701" + "".join(f"{f:08x}" for f in fields)).encode() + name.encode() + b"\0"

    def pad(n: int) -> bytes:
        return b"\0" * (-n % 4)

    for ino, (name, data, mode) in enumerate(entries, start=1):
        head = header(ino, name, mode, len(data))
        out += head + pad(len(head)) + data + pad(len(data))
    trailer = header(0, "TRAILER!!!", 0, 0)
    out += trailer + pad(len(trailer))
    return bytes(out)


def build_initramfs(busybox: bytes, modules: dict[str, bytes]) -> bytes:
    entries: list[tuple[str, bytes, int]] = [
        (d, b"", 0o40755) for d in ("bin", "dev", "proc", "sys", "tmp", "run", "etc", "lib", "lib/modules", "root")]
    entries.append(("bin/busybox", busybox, 0o100755))
    entries += [(f"bin/{a}", b"busybox", 0o120777) for a in APPLETS]
    entries.append(("etc/udhcpc.script", UDHCPC_SCRIPT.encode(), 0o100755))
    entries.append(("init", INIT.encode(), 0o100755))
    entries += [(f"lib/modules/{name}", data, 0o100644) for name, data in sorted(modules.items())]
    return _cpio(entries)


def vm_boot_files(cache: Path | None = None) -> tuple[Path, Path]:
    """(vmlinux, initramfs), built once per kernel and busybox version and kept in the cache."""
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    package = kernel_package()
    # The initramfs is named by what goes into it besides the packages: a change of /init or
    # the DHCP script builds a new one.
    recipe = hashlib.sha256((INIT + UDHCPC_SCRIPT + " ".join(MODULES) + " ".join(APPLETS)).encode()).hexdigest()[:12]
    kernel, initrd = cache / f"{package}.vmlinux", cache / f"{package}-{recipe}.initrd"
    if kernel.exists() and initrd.exists():
        return kernel, initrd
    deb = _download(package, cache)
    busybox_deb = images.fetch_busybox(images.cache_dir())
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        root = Path(tmp)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root / "k")], check=True, capture_output=True)
        subprocess.run(["dpkg-deb", "-x", str(busybox_deb), str(root / "bb")], check=True, capture_output=True)
        vmlinuz = next((root / "k" / "boot").glob("vmlinuz-*"))
        module_root = next((root / "k" / "lib" / "modules").iterdir()) / "kernel"
        modules = {}
        for rel in MODULES:
            path = module_root / rel
            if not path.exists():
                raise VmImageError(f"{package} has no {rel}")
            modules[path.name] = path.read_bytes()
        tmp_kernel, tmp_initrd = kernel.with_suffix(".tmp1"), initrd.with_suffix(".tmp2")
        tmp_kernel.write_bytes(decompress_bzimage(vmlinuz.read_bytes()))
        tmp_initrd.write_bytes(build_initramfs((root / "bb" / "bin" / "busybox").read_bytes(), modules))
        tmp_kernel.replace(kernel)
        tmp_initrd.replace(initrd)
    return kernel, initrd
