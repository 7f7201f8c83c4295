"""Secrets at rest: VPN pre-shared keys, BGP MD5 keys and Megaport service keys.

The store never holds them in clear: they are sealed (Fernet: AES-128-CBC + HMAC-SHA256) with
a key that lives outside the store, from env `L2VPC_SECRET_KEY` (controllers) or a key file
beside the state file (`<state>.key`, mode 0600, created on first use). Only the agent that
runs the daemon needing the secret gets it in clear, over mutual TLS. Reads never return
them (`redacted`). A stored secret that cannot be opened fails its own object only
(`open_tolerant`, kinds/context.py): the others still reconcile.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable
from typing import Any, TypeVar

from cryptography.fernet import Fernet, InvalidToken
from pydantic import BaseModel

from l2vpc.engine.errors import StoreError

M = TypeVar("M", bound=BaseModel)

# Sealed values are marked out of band: the stored document holds an object
# {"$sealed": "v1", "token": <Fernet token>} where the model has a string, which no caller can
# send (secret fields are strings; the models refuse objects there). Up to schema version 2 a
# prefix marked them, which a user could type ("sealed:v1:bogus" was kept as if sealed and
# then failed every reconcile); migration 3 turns prefixed strings into this form, and the
# models refuse keys with the prefix (model.SEALED_INPUT_PREFIX).
SEALED_TAG = "$sealed"
SEALED_VERSION = "v1"
# Where secrets sit inside stored objects: (kind, path to the field).
SECRET_FIELDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "vpn": (("pre_shared_key",),),
    "direct_connect": (("service_key",), ("bgp", "md5_key")),
}


class SecretUnreadable(StoreError):
    """A stored secret that this key cannot open (another key, or a value that was never
    sealed by us). Only the object holding it fails: see `SecretBox.open_tolerant`."""

    def __init__(self, field: str) -> None:
        super().__init__(f"{field}: the stored secret cannot be decrypted with this key (wrong L2VPC_SECRET_KEY "
                         "or key file?); set it again or delete the object")
        self.field = field


def is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SEALED_TAG) == SEALED_VERSION and isinstance(value.get("token"), str)


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

    def seal(self, value: str) -> dict[str, str]:
        return {SEALED_TAG: SEALED_VERSION, "token": self._fernet.encrypt(value.encode()).decode()}

    def open(self, value: Any, field: str = "secret") -> str | None:
        """The clear text of a stored secret field (a sealed value, or None)."""
        if value is None:
            return None
        if not is_sealed(value):
            # Only ever sealed values are written; anything else is not ours to trust.
            raise SecretUnreadable(field)
        try:
            return self._fernet.decrypt(value["token"].encode()).decode()
        except InvalidToken:
            raise SecretUnreadable(field) from None

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
            if parent.get(leaf) is not None:
                parent[leaf] = fn(".".join(path), parent[leaf])
        return out

    def seal_fields(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        return self._walk(kind, data, lambda _field, v: v if is_sealed(v) else self.seal(v))

    def open_fields(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        """`data` with its secrets in clear; SecretUnreadable naming the first that cannot be opened."""
        return self._walk(kind, data, lambda field, v: self.open(v, field))

    def open_tolerant(self, kind: str, data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """`data` with its secrets in clear, those that cannot be opened left out (None), and
        the paths of those. One object with a bad secret must not stop the others."""
        failed: list[str] = []

        def open_one(field: str, value: Any) -> str | None:
            try:
                return self.open(value, field)
            except SecretUnreadable:
                failed.append(field)
                return None

        return self._walk(kind, data, open_one), failed


def redacted(kind: str, obj: M, only: Iterable[str] | None = None) -> M:
    """`obj` as reads return it: every secret field empty (reads never return a secret; the
    write-only forms are the way to set them, and the engine pushes them only to agents).
    `only`: just these fields (dotted paths)."""
    update: dict[str, Any] = {}
    wanted = None if only is None else set(only)
    for path in SECRET_FIELDS.get(kind, ()):
        if wanted is not None and ".".join(path) not in wanted:
            continue
        if len(path) == 1:
            if getattr(obj, path[0], None) is not None:
                update[path[0]] = None
        else:
            parent = getattr(obj, path[0], None)
            if parent is not None and getattr(parent, path[1], None) is not None:
                update[path[0]] = parent.model_copy(update={path[1]: None})
    return obj.model_copy(update=update) if update else obj
