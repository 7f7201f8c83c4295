"""auth.Authenticator on a real (SQLite) store: token parsing, the snapshot cache (a revoke
lands within cache_seconds, a brand-new token works at once), expiry, and the bounded rate of
store reads for made-up token ids."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from l2vpc.controller import auth
from l2vpc.engine.store import Store, open_store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(str(tmp_path / "state.db"))
    try:
        yield s
    finally:
        s.close()


def refused(a: auth.Authenticator, text: str) -> auth.AuthError:
    with pytest.raises(auth.AuthError) as info:
        a.verify(text)
    return info.value


def test_token_text_shape(store: Store) -> None:
    token_id, text = auth.create_token(store, "agent", host="h1")
    assert auth.parse_token(text) == (token_id, text.split("_", 2)[2])
    secret = text.split("_", 2)[2]
    assert len(secret) == 43  # 32 random bytes
    for bad in ("", "l2vpc_", f"l2vpc_{token_id}", f"l2vpc_{token_id}_", f"x{text}", f"{text}x",
                f"l2vpc_TOK-000000000000_{secret}", text.replace("l2vpc_", "l2vpc-")):
        assert auth.parse_token(bad) is None, bad


def test_metadata_and_roles(store: Store) -> None:
    a = auth.Authenticator(store)
    _, text = auth.create_token(store, "tenant", tenant="acme")
    p = a.authenticate((("user-agent", "x"), ("authorization", f"Bearer {text}")))
    assert (p.role, p.tenant, p.host) == ("tenant", "acme", "")
    assert a.authenticate([("authorization", f"bearer  {text} ")]).tenant == "acme"
    for metadata in ((), (("authorization", text),), (("authorization", f"Token {text}"),)):
        with pytest.raises(auth.AuthError) as info:
            a.authenticate(metadata)
        assert info.value.code == grpc.StatusCode.UNAUTHENTICATED and text not in str(info.value)


def test_revoke_lands_within_the_cache_time(store: Store) -> None:
    a = auth.Authenticator(store, cache_seconds=0.3)
    token_id, text = auth.create_token(store, "tenant", tenant="acme")
    a.verify(text)
    auth.revoke_token(store, token_id)
    a.verify(text)  # cached: still accepted for up to cache_seconds
    time.sleep(0.35)
    e = refused(a, text)  # says so, and what to do, to the holder of the secret only
    assert e.code == grpc.StatusCode.UNAUTHENTICATED
    assert str(e).startswith(f"token {token_id} was revoked at ") and str(e).endswith("; create a new one")
    assert str(refused(a, text[:-1] + ("B" if text.endswith("A") else "A"))) == auth.INVALID
    assert [t.state() for t in auth.list_tokens(store)] == ["revoked"]


def test_new_tokens_work_at_once_and_expire(store: Store) -> None:
    now = [1000.0]
    a = auth.Authenticator(store, cache_seconds=60, clock=lambda: now[0])
    a.verify(auth.create_token(store, "admin")[1])  # loads the snapshot
    _, text = auth.create_token(store, "tenant", tenant="acme", ttl=30)
    expires = a.verify(text).expires  # not in the snapshot: read on its own
    now[0] = expires - 0.001
    a.verify(text)
    now[0] = expires
    e = refused(a, text)
    assert e.code == grpc.StatusCode.UNAUTHENTICATED and f"expired at {auth.format_time(expires)}" in str(e)


def test_made_up_ids_read_the_store_at_a_bounded_rate(store: Store) -> None:
    """A flood of made-up ids costs a bounded number of store reads, and a token created in the
    middle of it works at once (the flood does not lock good new tokens out)."""
    a = auth.Authenticator(store, cache_seconds=60)
    a.verify(auth.create_token(store, "admin")[1])  # loads the snapshot
    reads = [0]
    transaction = a.plane.transaction

    def counted() -> Any:
        reads[0] += 1
        return transaction()

    a.plane.transaction = counted  # type: ignore[method-assign]
    secret = "A" * 43
    stop = threading.Event()
    flooded = [0]

    def flood(k: int) -> None:
        i = 0
        while not stop.is_set():
            refused(a, f"l2vpc_tok-{k:04x}{i:08x}_{secret}")
            flooded[0] += 1
            i += 1

    started = time.monotonic()
    threads = [threading.Thread(target=flood, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)  # the read budget is long spent
        assert flooded[0] > auth.MISS_BURST
        for _ in range(3):
            _, text = auth.create_token(store, "tenant", tenant="acme")
            assert a.verify(text).tenant == "acme"  # at once, mid-flood
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    elapsed = time.monotonic() - started
    # The burst, then at most MISS_RATE reads a second (the per-id reads and the shared reloads).
    assert reads[0] <= auth.MISS_BURST + 2 * auth.MISS_RATE * elapsed + 5, (reads[0], flooded[0], elapsed)
    assert flooded[0] > reads[0]
