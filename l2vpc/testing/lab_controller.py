"""A controller for a lab of network namespaces: it runs (as a process) in the lab's underlay
switch namespace, on the management address the lab's agents dial over their uplinks, and
reaches PostgreSQL through its unix socket (the switch namespace has no route to the
database's TCP port). The test process reaches the controller's API through `Relay`: a TCP
relay from loopback here to the management address there.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from l2vpc.lab import netns


def socket_url(db: Any) -> str:
    """The `db` fixture's schema over the server's unix socket (local connections are trusted)."""
    server = db.server
    database = db.url.rsplit("/", 1)[1].split("?", 1)[0]
    return (f"postgresql://l2vpc@/{database}?host={server.socket_dir}&port={server.port}"
            f"&options=-csearch_path%3D{db.schema}")


class Controller:
    """`l2vpc controller run` inside namespace `ns`, stopped (SIGTERM) by stop()."""

    def __init__(self, ns: str, store: str, listen: str, pki: Path, directory: Path, *, controller_id: str,
                 heartbeat_interval: float, down_after: float, metrics_address: str | None = None) -> None:
        self.ready = directory / f"{controller_id}.ready"
        self.log = directory / f"{controller_id}.log"
        argv = ["nsenter", f"--net={netns.path(ns)}", "--", sys.executable, "-c",
                "import sys; from l2vpc.cli import main; sys.exit(main())", "controller", "run",
                "--store", store, "--listen", listen, "--pki", str(pki), "--id", controller_id,
                "--heartbeat-interval", str(heartbeat_interval), "--down-after", str(down_after),
                "--resync-interval", "300", "--ready-file", str(self.ready)]
        if metrics_address is not None:  # inside `ns`; reach it through a Relay
            argv += ["--metrics-address", metrics_address]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + 60
        while not self.ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"controller did not start: {self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Relay:
    """Listens on 127.0.0.1 here and relays every connection to `host:port` in namespace `ns`."""

    def __init__(self, ns: str, host: str, port: int) -> None:
        self.ns, self.target = ns, (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = netns.socket_in(self.ns, socket.AF_INET, socket.SOCK_STREAM)
                upstream.connect(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._stopped = True
        self._listener.close()
        with self._lock:
            for s in self._open:
                with contextlib.suppress(OSError):
                    s.close()
