"""A TCP proxy on loopback that holds each new connection for a while before passing it on.

What a client sees of a busy server: the TCP connection is there at once (the kernel accepts
it), but the TLS handshake's answer comes late. Tests point a client at `proxy.address` to
check that a slow handshake is waited for, not taken for a certificate problem.

    with SlowProxy("127.0.0.1:50051", delay=0.5) as proxy:
        client(proxy.address) ...
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType


class SlowProxy:
    def __init__(self, target: str, delay: float) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.delay = delay
        self.connections = 0
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.1)
        self._stop = threading.Event()
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="slow-proxy", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._listener.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                continue
            self.connections += 1
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        time.sleep(self.delay)  # nothing passes either way until then
        try:
            upstream = socket.create_connection(self.target)
        except OSError:
            conn.close()
            return
        with self._lock:
            self._open += [conn, upstream]
        threading.Thread(target=_pump, args=(upstream, conn), daemon=True).start()
        _pump(conn, upstream)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._listener.close()
        with self._lock:
            for s in self._open:
                _shut(s)
                s.close()

    def __enter__(self) -> SlowProxy:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    _shut(sink)


def _shut(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
