"""Structured logs (l2vpc.observability.logs): JSON lines with the request id of the scope
they are written in, ids from outside checked before they reach a log, and the id carried
into threads the engine starts (its pushes run in a pool)."""

from __future__ import annotations

import contextvars
import io
import json
import logging
from concurrent.futures import ThreadPoolExecutor

import pytest

from l2vpc.observability.logs import (
    REQUEST_ID_METADATA,
    clean,
    configure,
    current_request_id,
    from_metadata,
    join_ids,
    outgoing_metadata,
    request_scope,
)


@pytest.fixture
def restore_logging() -> object:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def test_json_lines_carry_the_scope_request_id(restore_logging: object) -> None:
    out = io.StringIO()
    configure("info", "json", stream=out)
    log = logging.getLogger("l2vpc.test")
    log.info("outside")
    with request_scope("req-abc") as rid:
        log.info("inside %s", "x")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert "request_id" not in lines[0] and lines[0]["message"] == "outside" and lines[0]["level"] == "info"
    assert lines[1]["request_id"] == rid == "req-abc" and lines[1]["message"] == "inside x"
    assert lines[2]["request_id"] == "req-abc" and "ValueError: boom" in lines[2]["exception"]
    assert lines[0]["time"].endswith("Z") and lines[1]["logger"] == "l2vpc.test"
    assert current_request_id() == ""
    with pytest.raises(ValueError, match="allowed: text, json"):
        configure("info", "xml")


def test_ids_from_outside_are_checked() -> None:
    assert clean("req-0123abcd") == "req-0123abcd"
    assert clean("req-a,req-b") == "req-a,req-b"
    assert clean(b"req-a") == "req-a"
    for bad in ("", "req a", "req-a\n{\"level\":\"error\"}", "x" * 65, ",".join(["r"] * 9), "a,,b", None, 5):
        assert clean(bad) == "", bad
    assert from_metadata([("authorization", "Bearer x"), (REQUEST_ID_METADATA, "req-1")]) == "req-1"
    assert from_metadata([(REQUEST_ID_METADATA, "bad id")]) == ""
    assert join_ids(["req-a", "req-b,req-a", "", "req-c"]) == "req-a,req-b,req-c"
    assert len(join_ids([f"r{i}" for i in range(20)]).split(",")) == 8


def test_the_id_goes_into_pool_threads_and_out_as_metadata() -> None:
    assert outgoing_metadata() == ()
    with request_scope() as rid, ThreadPoolExecutor(2) as pool:
        assert rid.startswith("req-")
        # What the executor does for each push: run it in a copy of the caller's context.
        got = pool.submit(contextvars.copy_context().run, outgoing_metadata).result()
        plain = pool.submit(outgoing_metadata).result()
    assert got == ((REQUEST_ID_METADATA, rid),)
    assert plain == ()  # without the copy the id would be lost
