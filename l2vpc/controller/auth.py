"""API tokens of the controller: who may call what.

A token is `l2vpc_<id>_<secret>`: the id names the record in the plane store (planestore.py)
that keeps its role, scope and expiry; the secret (32 random bytes, url-safe base64) is shown
once, when the token is created, and only its SHA-256 digest is kept. A plain hash is enough
here (no salt, no slow KDF): the secret has 256 bits of entropy, so there is nothing to guess
offline.

Roles:
    tenant   bound to one tenant name: object calls for that tenant only
    agent    bound to one host name: Register and Heartbeat for that host only
    admin    everything (object calls of any tenant, Status, token management)

    token_id, text = create_token(store, "tenant", tenant="acme", ttl=86400)   # ttl=None: never expires
    auth = Authenticator(store)
    principal = auth.authenticate(context.invocation_metadata())   # or raises AuthError

`Authenticator` keeps a snapshot of every live token's digest, reloaded from the store every
`cache_seconds` in one transaction: heartbeats of a thousand agents do not read the database on
every call, and a revoke takes effect within `cache_seconds`. A token created since the last
reload is read on its own, at a bounded rate; past that rate (a flood of made-up ids) callers
wait for one shared reload instead, so a good new token still works at once and the flood
costs at most one store read at a time. Refusals say "expired" or "revoked" (with what to do)
only to the holder of the token's secret; anything else is "invalid token". Nothing here
logs or stores a token's secret.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc

from l2vpc.controller.planestore import TOKEN, PlaneStore, open_plane
from l2vpc.engine.errors import ConflictError, NotFoundError, ValidationError
from l2vpc.engine.store.base import Store, StoredObject

KIND = TOKEN
ROLES = ("tenant", "agent", "admin")
TOKEN_PREFIX = "l2vpc_"
SECRET_BYTES = 32
DEFAULT_CACHE_SECONDS = 5.0
# A tenant or host name, as the engine's models spell them.
_NAME_RE = re.compile(r"^[a-z0-9-]{1,63}$")
_ID_RE = re.compile(r"^tok-[0-9a-f]{12}$")
# url-safe base64 of SECRET_BYTES bytes, unpadded (token_urlsafe): 43 characters.
_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")
_MAX_TTL = 10 * 365 * 86400.0
# Store reads for token ids not in the snapshot: at most this many per second (burst: MISS_BURST);
# past that, at most this many shared reloads of the snapshot per second.
MISS_RATE = 20.0
MISS_BURST = 50


class AuthError(Exception):
    """A call is refused: `code` is UNAUTHENTICATED or PERMISSION_DENIED, the message says why
    (never with the token's text)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the verified token's id, role and scope."""

    token_id: str
    role: str
    tenant: str = ""
    host: str = ""
    expires: float = 0.0  # unix time, 0: never


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token as `list_tokens` shows it: everything but the digest."""

    id: str
    role: str
    tenant: str
    host: str
    created: float
    expires: float  # 0: never
    revoked: float  # when it was revoked; 0: live

    def state(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        if self.revoked:
            return "revoked"
        if self.expires and now >= self.expires:
            return "expired"
        return "active"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def format_time(unix: float) -> str:
    return dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def validate_scope(role: str, tenant: str, host: str) -> None:
    """The role exists and carries exactly the scope it needs (ValidationError naming the field)."""
    if role not in ROLES:
        raise ValidationError(f"unknown role {role!r}; allowed: {', '.join(ROLES)}", path="role")
    problems: list[tuple[str, str]] = []
    if role == "tenant":
        if not tenant:
            problems.append(("tenant", "required for role tenant"))
        elif not _NAME_RE.fullmatch(tenant):
            problems.append(("tenant", f"{tenant!r} must be 1-63 lowercase letters, digits or '-'"))
    elif tenant:
        problems.append(("tenant", f"only tokens of role tenant have a tenant (role is {role})"))
    if role == "agent":
        if not host:
            problems.append(("host", "required for role agent"))
        elif not _NAME_RE.fullmatch(host):
            problems.append(("host", f"{host!r} must be 1-63 lowercase letters, digits or '-'"))
    elif host:
        problems.append(("host", f"only tokens of role agent have a host (role is {role})"))
    if problems:
        raise ValidationError(problems)


def check_ttl(ttl: float | None) -> None:
    """`ttl` is None (never expires) or more than 0 and at most 10 years (ValidationError on `ttl`).
    0 is refused: it reads like "expires at once", and a token that never expires must be asked
    for explicitly."""
    if ttl is None:
        return
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl) or not 0 < ttl <= _MAX_TTL:
        shown = f"{ttl:g}" if isinstance(ttl, int | float) and not isinstance(ttl, bool) else repr(ttl)
        raise ValidationError(f"must be more than 0 seconds and at most 10 years ({_MAX_TTL:.0f} s), got {shown}; "
                              "a token that never expires is asked for explicitly (no ttl)", path="ttl")


def create_token(store: Store | PlaneStore, role: str, *, tenant: str = "", host: str = "",
                 ttl: float | None = None) -> tuple[str, str]:
    """A new token: returns (id, text). `ttl` seconds until it expires (> 0), None for never.
    The text is the only copy of the secret: hand it to its user, do not keep it."""
    problems: list[tuple[str, str]] = []
    for check in (lambda: validate_scope(role, tenant, host), lambda: check_ttl(ttl)):
        try:
            check()
        except ValidationError as e:
            problems += e.problems
    if problems:
        raise ValidationError(problems)
    token_id = f"tok-{secrets.token_hex(6)}"
    secret = secrets.token_urlsafe(SECRET_BYTES)
    now = time.time()
    data = {
        "role": role,
        "tenant": tenant,
        "host": host,
        "digest": _digest(secret),
        "created": now,
        "expires": now + ttl if ttl is not None else 0,
        "revoked": 0,
    }
    with open_plane(store).transaction() as p:
        p.create_token(token_id, data)
    return token_id, f"{TOKEN_PREFIX}{token_id}_{secret}"


def revoke_token(store: Store | PlaneStore, token_id: str) -> None:
    """Revoke a token (kept, marked revoked, so `list` still shows it); NotFoundError if unknown."""
    with open_plane(store).transaction() as p:
        so = p.get_token(token_id)
        if so is None:
            raise NotFoundError(KIND, token_id)
        if not so.data.get("revoked") and not p.update_token(token_id, {**so.data, "revoked": time.time()},
                                                                so.generation):
            raise ConflictError(f"token {token_id} was changed concurrently; retry")


def _info(so: StoredObject) -> TokenInfo:
    d = so.data
    return TokenInfo(so.id, str(d.get("role", "")), str(d.get("tenant", "")), str(d.get("host", "")),
                     float(d.get("created", 0)), float(d.get("expires", 0)), float(d.get("revoked", 0)))


def list_tokens(store: Store | PlaneStore) -> list[TokenInfo]:
    """Every token (revoked and expired ones too), by id; never the secret nor its digest."""
    with open_plane(store).transaction() as p:
        return [_info(so) for so in p.tokens()]


def parse_token(text: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed token text, else None."""
    if not text.startswith(TOKEN_PREFIX):
        return None
    token_id, sep, secret = text[len(TOKEN_PREFIX):].partition("_")
    if not sep or not _ID_RE.fullmatch(token_id) or not _SECRET_RE.fullmatch(secret):
        return None
    return token_id, secret


@dataclass(frozen=True, slots=True)
class _Entry:
    digest: str
    principal: Principal
    revoked: float  # when it was revoked (unix time); 0: live


def _entry(so: StoredObject) -> _Entry:
    d = so.data
    principal = Principal(so.id, str(d.get("role", "")), str(d.get("tenant", "")), str(d.get("host", "")),
                          float(d.get("expires", 0)))
    return _Entry(str(d.get("digest", "")), principal, float(d.get("revoked") or 0))


INVALID = "invalid token"


class Authenticator:
    """Verifies bearer tokens against the store; see the module docstring for the caching."""

    def __init__(self, store: Store | PlaneStore, *, cache_seconds: float = DEFAULT_CACHE_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self.plane = open_plane(store)
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()  # guards the snapshot's dict and set
        self._reload = threading.Lock()  # held by the thread reloading the snapshot
        self._entries: dict[str, _Entry] = {}
        # Ids looked up individually since the last reload and not found: asked once per reload.
        self._missing: set[str] = set()
        self._loaded_at = -math.inf
        self._budget, self._budget_at = float(MISS_BURST), time.monotonic()

    def _fresh_entries(self) -> tuple[dict[str, _Entry], set[str]]:
        age = time.monotonic() - self._loaded_at
        if age < self.cache_seconds:
            return self._entries, self._missing
        # One thread reloads; the others keep using the snapshot meanwhile unless it is far
        # too old (so a slow database does not stall every call behind the reload).
        if not self._reload.acquire(blocking=age >= 3 * self.cache_seconds):
            return self._entries, self._missing
        try:
            if time.monotonic() - self._loaded_at < self.cache_seconds:
                return self._entries, self._missing  # another thread just did it
            return self._load()
        finally:
            self._reload.release()

    def _load(self) -> tuple[dict[str, _Entry], set[str]]:
        """Read every token into a new snapshot (the caller holds `_reload`)."""
        started = time.monotonic()
        with self.plane.transaction() as p:
            objs = p.tokens()
        entries = {so.id: _entry(so) for so in objs}
        with self._lock:
            self._entries, self._missing, self._loaded_at = entries, set(), started
            return self._entries, self._missing

    def _snapshot_since(self, asked: float) -> dict[str, _Entry]:
        """A snapshot read after monotonic time `asked`: waits for (or runs) one reload. Threads
        waiting together share one: however many made-up ids arrive, at most one reload runs at
        a time, and a token created before the call is in it."""
        with self._reload:
            if self._loaded_at >= asked:
                return self._entries  # a reload that started after `asked` finished meanwhile
            # At most MISS_RATE reloads a second: the ids waiting meanwhile share the next one.
            time.sleep(max(0.0, self._loaded_at + 1 / MISS_RATE - time.monotonic()))
            return self._load()[0]

    def _lookup(self, token_id: str) -> _Entry | None:
        asked = time.monotonic()
        entries, missing = self._fresh_entries()
        found = entries.get(token_id)
        if found is not None or token_id in missing:
            return found
        # Created since the last reload (a client using a brand-new token): read just this one
        # while the budget lasts; past it (a flood of made-up ids) wait for the next shared
        # reload instead of queueing a transaction per id, so a new token still works at once.
        if not self._take_miss_budget():
            return self._snapshot_since(asked).get(token_id)
        with self.plane.transaction() as p:
            so = p.get_token(token_id)
        with self._lock:
            if so is None:
                if entries is self._entries and len(missing) < 100_000:
                    missing.add(token_id)
                return None
            entry = _entry(so)
            if entries is self._entries:
                entries[token_id] = entry
            return entry

    def _take_miss_budget(self) -> bool:
        now = time.monotonic()
        with self._lock:
            self._budget = min(MISS_BURST, self._budget + (now - self._budget_at) * MISS_RATE)
            self._budget_at = now
            if self._budget < 1:
                return False
            self._budget -= 1
            return True

    def verify(self, text: str) -> Principal:
        """The principal of a token text; AuthError (UNAUTHENTICATED) if it is not valid now."""
        parsed = parse_token(text)
        if parsed is None:
            raise AuthError(grpc.StatusCode.UNAUTHENTICATED, INVALID)
        token_id, secret = parsed
        entry = self._lookup(token_id)
        if entry is None or not hmac.compare_digest(entry.digest, _digest(secret)):
            raise AuthError(grpc.StatusCode.UNAUTHENTICATED, INVALID)
        if entry.revoked:  # said only to the holder of the secret
            raise AuthError(grpc.StatusCode.UNAUTHENTICATED,
                            f"token {token_id} was revoked at {format_time(entry.revoked)}; "
                            "create a new one")
        expires = entry.principal.expires
        if expires and self._clock() >= expires:
            raise AuthError(grpc.StatusCode.UNAUTHENTICATED,
                            f"token {token_id} expired at {format_time(expires)}; create a new one")
        return entry.principal

    def authenticate(self, metadata: Iterable[tuple[str, Any]] | None) -> Principal:
        """The caller of a gRPC call from its invocation metadata (`authorization: Bearer ...`)."""
        header = None
        for key, value in metadata or ():
            if key == "authorization":
                header = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
                break
        if header is None:
            raise AuthError(grpc.StatusCode.UNAUTHENTICATED,
                            f"{INVALID}: send metadata 'authorization: Bearer <token>'")
        scheme, _, text = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise AuthError(grpc.StatusCode.UNAUTHENTICATED,
                            f"{INVALID}: metadata authorization must be 'Bearer <token>'")
        return self.verify(text.strip())
