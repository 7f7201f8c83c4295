"""A tcpdump capture in a namespace for tests: traffic is sent only once tcpdump listens."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import tempfile
import time


class Capture:
    """tcpdump on `ifname` in namespace `ns` while the block runs; `lines` afterwards.

    -e prints the link-level header, so 802.1Q tags show as `vlan <vid>`. --immediate-mode:
    tcpdump otherwise hands packets over in blocks (up to a second late) and drops the last
    block on SIGINT.
    """

    def __init__(self, ns: str, ifname: str, bpf: str = "") -> None:
        self.argv = ["ip", "netns", "exec", ns, "tcpdump", "-i", ifname, "-e", "-nn", "-l",
                     "--immediate-mode",
                     *bpf.split()]
        self.lines: list[str] = []
        self._out = tempfile.TemporaryFile()
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Capture:
        self._proc = subprocess.Popen(self.argv, stdout=self._out, stderr=subprocess.PIPE)
        assert self._proc.stderr is not None
        deadline = time.monotonic() + 5
        said = b""
        # tcpdump says "listening on ..." once its socket is bound: only then send traffic.
        while b"listening on" not in said:
            ready, _, _ = select.select([self._proc.stderr], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(self._proc.stderr.fileno(), 4096) if ready else b""
            if not chunk:
                self._stop()
                raise AssertionError(f"tcpdump did not start: {' '.join(self.argv)}: {said.decode()}")
            said += chunk
        return self

    def _stop(self) -> None:
        assert self._proc is not None
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)  # tcpdump flushes what it has
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stderr is not None:
            self._proc.stderr.close()

    def __exit__(self, *exc: object) -> None:
        self._stop()
        self._out.seek(0)
        self.lines = [line for line in self._out.read().decode(errors="replace").splitlines() if line.strip()]
        self._out.close()
