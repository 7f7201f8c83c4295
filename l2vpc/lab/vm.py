"""Lab VMs: QEMU guests whose NICs are the taps the host's agent made for a virtual server.

    vm = boot(record, nics=[Nic("l2t...", "02:4c:...", 9000), ...])   # in the host's namespace
    out, rc = command(vm, "ip -4 addr show net1")                   # over the command channel
    stop(vm)

QEMU runs under software emulation (`-accel tcg`): these machines' KVM is a variant that hangs
standard guests, so TCG is chosen, never tried after KVM. It runs in the host's network
namespace (the taps live there), each NIC exactly as the documented line says:

    -netdev tap,id=nN,ifname=<tap>,script=no,downscript=no
    -device virtio-net-pci,netdev=nN,mac=<the attachment's MAC>,host_mtu=<the VPC's MTU>

The guest's console goes to a log file; its second serial port is a unix socket on which the
guest's init runs one shell command per line and answers with the output and an exit mark
(vm_image.py). A monitor process (vm_monitor.py) takes a NIC's link down when its tap goes.
"""

from __future__ import annotations

import contextlib
import re
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from l2vpc.lab import processes
from l2vpc.lab.vm_image import RC_MARK, UP_MARK, vm_boot_files

MEMORY_MB = 256
_RC = re.compile(re.escape(RC_MARK).encode() + rb" (\d+)\r?\n")  # what the guest's init prints
BOOT_TIMEOUT = 60.0


class VmError(RuntimeError):
    """A VM could not boot or answer; the message says why (the console's tail included)."""


@dataclass
class Nic:
    tap: str
    mac: str
    mtu: int


@dataclass
class VmRecord:
    workload: str
    host: str
    host_netns: str
    dir: str
    nics: list[dict[str, object]] = field(default_factory=list)
    pid: int | None = None
    monitor_pid: int | None = None

    @property
    def console(self) -> Path:
        return Path(self.dir) / "console.log"

    @property
    def channel(self) -> Path:
        return Path(self.dir) / "cmd.sock"

    @property
    def qmp(self) -> Path:
        return Path(self.dir) / "qmp.sock"

    @property
    def marker(self) -> str:
        return str(Path(self.dir) / "console.log")


def qemu_argv(rec: VmRecord, kernel: Path, initrd: Path) -> list[str]:
    macs = ",".join(str(n["mac"]) for n in rec.nics)
    argv = ["ip", "netns", "exec", rec.host_netns, "qemu-system-x86_64", "-accel", "tcg", "-m", str(MEMORY_MB),
            "-smp", "1", "-nodefaults", "-display", "none", "-no-reboot", "-name", rec.workload,
            "-kernel", str(kernel), "-initrd", str(initrd),
            "-append", f"console=ttyS0 quiet panic=-1 l2vpc.nics={macs}",
            "-serial", f"file:{rec.console}",
            "-chardev", f"socket,id=cmd,path={rec.channel},server=on,wait=off", "-serial", "chardev:cmd",
            "-qmp", f"unix:{rec.qmp},server=on,wait=off"]
    for i, nic in enumerate(rec.nics, start=1):
        argv += ["-netdev", f"tap,id=n{i},ifname={nic['tap']},script=no,downscript=no",
                 "-device", f"virtio-net-pci,netdev=n{i},mac={nic['mac']},host_mtu={nic['mtu']}"]
    return argv


def boot(rec: VmRecord, timeout: float = BOOT_TIMEOUT) -> None:
    """Start the VM and wait until its init says it is up (NICs named, DHCP clients started)."""
    kernel, initrd = vm_boot_files()
    Path(rec.dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    rec.console.write_text("")
    rec.pid = processes.start(qemu_argv(rec, kernel, initrd), Path(rec.dir) / "qemu.pid", Path(rec.dir) / "qemu.log")
    rec.monitor_pid = processes.start(
        ["ip", "netns", "exec", rec.host_netns, sys.executable, "-m", "l2vpc.lab.vm_monitor", str(rec.qmp),
         *(f"{n['tap']}=n{i}" for i, n in enumerate(rec.nics, start=1))],
        Path(rec.dir) / "monitor.pid", Path(rec.dir) / "monitor.log")
    deadline = time.monotonic() + timeout
    while UP_MARK not in rec.console.read_text(errors="replace"):
        if processes.exited(rec.pid):
            raise VmError(f"QEMU for {rec.workload} exited: {processes.log_tail(Path(rec.dir) / 'qemu.log')}")
        if time.monotonic() > deadline:
            stop(rec)
            raise VmError(f"VM {rec.workload} did not boot within {timeout:.0f}s: "
                          f"{rec.console.read_text(errors='replace')[-300:]}")
        time.sleep(0.1)


def command(rec: VmRecord, line: str, timeout: float = 30.0) -> tuple[str, int]:
    """Run one shell command in the guest; (output, exit status)."""
    if "\n" in line:
        raise VmError("one command per line")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(rec.channel))
        except OSError as e:
            raise VmError(f"VM {rec.workload}: its command channel does not answer ({e.strerror or e})") from None
        s.sendall(line.encode() + b"\n")
        data = b""
        deadline = time.monotonic() + timeout
        while (done := _RC.search(data)) is None:
            if time.monotonic() > deadline:
                raise VmError(f"VM {rec.workload}: no answer to {line!r} within {timeout:.0f}s")
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise VmError(f"VM {rec.workload}: the command channel closed")
            data += chunk
    return data[:done.start()].decode(errors="replace").replace("\r", ""), int(done.group(1))


def stop(rec: VmRecord) -> None:
    processes.stop(rec.pid, rec.marker, timeout=3.0)
    processes.stop(rec.monitor_pid, str(rec.qmp), timeout=3.0)
    with contextlib.suppress(FileNotFoundError):
        rec.channel.unlink()
