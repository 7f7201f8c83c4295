"""Secrets at rest: VPN pre-shared keys, BGP MD5 keys and Megaport service keys.

The store never holds them in clear: they are sealed (Fernet: AES-128-CBC + HMAC-SHA256) with
a key that lives outside the store, from env `L2VPC_SECRET_KEY` (controllers) or a key file
beside the state file (`<state>.key`, mode 0600, created on first use). Only the agent that
runs the daemon needing the secret gets it in clear, over mutual TLS.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from l2vpc.engine.errors import StoreError

SEALED_PREFIX = "sealed:v1:"
# Where secrets sit inside stored objects: (kind, path to the field).
SECRET_FIELDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "vpn": (("pre_shared_key",),),
    "direct_connect": (("service_key",), ("bgp", "md5_key")),
}


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)
        self._mac_key = hashlib.sha256(b"l2vpc digest\0" + key).digest()

    def digest(self, text: str) -> str:
        """A keyed digest: shows that a secret changed without revealing it (nor allowing an
        offline guess from the digest alone, unlike a plain hash of a short key)."""
        return hmac.new(self._mac_key, text.encode(), hashlib.sha256).hexdigest()[:24]

    @classmethod
    def for_state(cls, state_path: str | None) -> SecretBox:
        env = os.environ.get("L2VPC_SECRET_KEY")
        if env:
            return cls(env.encode())
        if not state_path:
            # A store without a file (tests, in-memory): a key for this process only.
            return cls(Fernet.generate_key())
        path = state_path + ".key"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(Fernet.generate_key())
        try:
            with open(path, "rb") as f:
                return cls(f.read().strip())
        except (OSError, ValueError) as e:
            raise StoreError(f"secret key file {path}: unusable ({e.__class__.__name__}); restore it or remove it "
                             "together with the objects holding secrets") from None

    def seal(self, value: str) -> str:
        return SEALED_PREFIX + self._fernet.encrypt(value.encode()).decode()

    def open(self, value: str) -> str:
        if not value.startswith(SEALED_PREFIX):
            return value
        try:
            return self._fernet.decrypt(value[len(SEALED_PREFIX):].encode()).decode()
        except InvalidToken:
            raise StoreError("a stored secret cannot be decrypted with this key (wrong L2VPC_SECRET_KEY "
                             "or key file?)") from None

    def _walk(self, kind: str, data: dict[str, Any], fn: Any) -> dict[str, Any]:
        out = dict(data)
        for path in SECRET_FIELDS.get(kind, ()):
            parent = out
            for step in path[:-1]:
                child = parent.get(step)
                if not isinstance(child, dict):
                    parent = {}
                    break
                parent[step] = child = dict(child)
                parent = child
            leaf = path[-1]
            if isinstance(parent.get(leaf), str):
                parent[leaf] = fn(parent[leaf])
        return out

    def seal_fields(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        return self._walk(kind, data, lambda v: v if v.startswith(SEALED_PREFIX) else self.seal(v))

    def open_fields(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        return self._walk(kind, data, self.open)
