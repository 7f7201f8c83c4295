"""The lab VM's hypervisor side of NIC removal: a tap that goes takes its NIC's link down.

    python -m l2vpc.lab.vm_monitor QMP_SOCKET TAP=NETDEV [TAP=NETDEV ...]   (in the host's namespace)

QEMU does not notice when the tap under a NIC is deleted (its file descriptor just stops
carrying frames), so the guest would keep a NIC with carrier and nothing behind it. A VM
manager (libvirt, say) tells QEMU instead; in the lab this small process does: it watches the
host's taps and, when one disappears, sets its NIC's link down over QMP, so the guest sees the
carrier loss on that NIC only. It exits with the VM (its QMP socket closes).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

POLL = 0.1


class Qmp:
    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.file = self.sock.makefile("rwb")
        self._read()  # the greeting
        self.execute("qmp_capabilities")

    def _read(self) -> dict[str, object]:
        while True:
            line = self.file.readline()
            if not line:
                raise EOFError("QMP closed")
            msg = json.loads(line)
            if "event" not in msg:
                return dict(msg)

    def execute(self, command: str, **arguments: object) -> dict[str, object]:
        self.file.write(json.dumps({"execute": command, "arguments": arguments}).encode() + b"\n")
        self.file.flush()
        return self._read()


def main(argv: list[str]) -> int:
    qmp_path, pairs = argv[0], [a.split("=", 1) for a in argv[1:]]
    for _ in range(100):  # QEMU creates the socket as it starts
        try:
            qmp = Qmp(qmp_path)
            break
        except (FileNotFoundError, ConnectionRefusedError):
            time.sleep(0.1)
    else:
        return 1
    present = {tap: True for tap, _ in pairs}
    try:
        while True:
            for tap, netdev in pairs:
                there = os.path.exists(f"/sys/class/net/{tap}")
                if present[tap] and not there:
                    qmp.execute("set_link", name=netdev, up=False)
                present[tap] = there
            time.sleep(POLL)
    except (EOFError, OSError):
        return 0  # the VM is gone


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
