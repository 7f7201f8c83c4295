"""Where an agent finds its controllers and how it proves who it is: the controllers' addresses
and CA (ControllerSettings), and agent tokens by host (TokenSource).

Tokens (role agent, bound to the host) come from a file readable only by its owner (lines of
`TOKEN` or `HOST TOKEN`), or from $L2VPC_AGENT_TOKEN; never from the command line, which any
user can read in the process list. A token file is re-read when it changes, so an operator may
replace it without a restart.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("l2vpc.agent.heartbeat")  # token messages stay where operators look for them

TOKEN_ENV = "L2VPC_AGENT_TOKEN"
# How long one connection to a controller (TCP and TLS handshake) may take; gRPC reads it from
# grpc.min_reconnect_backoff_ms. A busy controller's handshake needs more than the 200 ms that
# option once gave; a controller that drops packets is passed over after this.
CONNECT_TIMEOUT_MS = 5000


class HeartbeatError(Exception):
    """Controller settings or tokens are unusable (a file missing, readable by others, a host
    without a token); the message names the file or the host."""


@dataclass(frozen=True)
class ControllerSettings:
    """Where the controllers are and how to check them: `addresses` (`host:port`, tried in turn
    when one is unreachable), the CA certificate that signed their server certificates, and the
    name their certificate must carry (default: the host part of each address)."""

    addresses: tuple[str, ...]
    ca: Path
    server_name: str | None = None

    def __post_init__(self) -> None:
        if not self.addresses:
            raise HeartbeatError("--controller: give at least one controller address (HOST:PORT)")
        for a in self.addresses:
            if ":" not in a or not a.rsplit(":", 1)[1].isdigit():
                raise HeartbeatError(f"--controller: {a!r} is not HOST:PORT")

    def read_ca(self) -> bytes:
        try:
            return self.ca.read_bytes()
        except OSError as e:
            raise HeartbeatError(f"--controller-ca: cannot read {self.ca}: {e.strerror}") from None


def _check_private(path: Path, st: os.stat_result) -> None:
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise HeartbeatError(f"token file {path} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); "
                             f"`chmod 600 {path}`")


def parse_tokens(text: str, where: str) -> dict[str, str]:
    """Lines of `TOKEN` (one token for whichever host asks) or `HOST TOKEN`; `#` comments."""
    tokens: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) == 1:
            tokens[""] = parts[0]
        elif len(parts) == 2:
            tokens[parts[0]] = parts[1]
        else:
            raise HeartbeatError(f"{where} line {n}: expected TOKEN or HOST TOKEN")
    if not tokens:
        raise HeartbeatError(f"{where}: no token in it")
    return tokens


class TokenSource:
    """Agent tokens by host: from a file (re-read when it changes) or fixed values."""

    _RECHECK = 1.0  # seconds between looks at the file's mtime

    def __init__(self, tokens: Mapping[str, str], path: Path | None = None) -> None:
        self._tokens = dict(tokens)
        self._path = path
        self._mtime = path.stat().st_mtime_ns if path is not None else 0
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: Path) -> TokenSource:
        return cls(cls._read(path), path)

    @classmethod
    def from_env(cls) -> TokenSource | None:
        value = os.environ.get(TOKEN_ENV, "").strip()
        return cls({"": value}) if value else None

    @staticmethod
    def _read(path: Path) -> dict[str, str]:
        try:
            with open(path, encoding="utf-8") as f:
                _check_private(path, os.fstat(f.fileno()))
                return parse_tokens(f.read(), str(path))
        except OSError as e:
            raise HeartbeatError(f"token file {path}: {e.strerror}") from None

    def reload(self) -> None:
        """Read the file again if it changed (a bad new file keeps the old tokens, and says so)."""
        if self._path is None:
            return
        with self._lock:
            try:
                mtime = self._path.stat().st_mtime_ns
                if mtime == self._mtime:
                    return
                self._tokens, self._mtime = self._read(self._path), mtime
                log.info("re-read token file %s", self._path)
            except (OSError, HeartbeatError) as e:
                log.error("token file %s: keeping the previous tokens: %s", self._path, e)

    def get(self, host: str) -> str | None:
        if self._path is not None and time.monotonic() - self._checked > self._RECHECK:
            self._checked = time.monotonic()
            self.reload()
        return self._tokens.get(host) or self._tokens.get("")

    def by_host(self) -> dict[str, str]:
        """The tokens named after a host (a lone TOKEN line is under "")."""
        with self._lock:
            return dict(self._tokens)

    def require(self, hosts: Iterable[str]) -> None:
        missing = [h for h in hosts if not self.get(h)]
        if missing:
            where = f"token file {self._path}" if self._path else "the tokens given"
            raise HeartbeatError(f"{where} has no token for {', '.join(missing[:5])}"
                                 + (f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""))
