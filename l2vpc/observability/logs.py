"""Logs as text or JSON lines, and the request id that lets a reader follow one change.

    configure("info", "json")                 # `--log-level`, `--log-format` of the daemons
    with request_scope(incoming or None):      # a fresh id when the caller sent none
        log.info("...")                        # JSON lines carry {"request_id": ...}
    metadata = outgoing_metadata()             # (("l2vpc-request-id", id),) for the next hop

How an id travels: the CLI or the provider opens a scope per command or Terraform call; the
controller client sends the id as gRPC metadata `l2vpc-request-id`; the controller's API opens
a scope with it for the call, and a Converge hands the ids it waits for to the leader, which
converges under them (a comma-separated list when one converge covers several requests); the
engine's pushes carry them to the agent in the same metadata, and the agent logs its converge
under them. So `grep req-...` over every component's JSON logs shows the change end to end.

Ids from outside are checked (`clean`): a bounded list of short tokens, so a caller cannot
write arbitrary text into logs.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import secrets
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

REQUEST_ID_METADATA = "l2vpc-request-id"
LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MAX_IDS = 8  # ids a converge carries at most (one converge may cover many requests)
_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("l2vpc_request_id", default="")


def new_request_id() -> str:
    return f"req-{secrets.token_hex(8)}"


def current_request_id() -> str:
    """The id of the request being served ('' outside any)."""
    return _request_id.get()


def clean(value: object) -> str:
    """A request id (or comma-separated ids) from outside, or '' when it is not one."""
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if not isinstance(value, str) or not value or len(value) > MAX_IDS * 65:
        return ""
    ids = value.split(",")
    if len(ids) > MAX_IDS or not all(_ID_RE.fullmatch(i) for i in ids):
        return ""
    return value


def join_ids(ids: Iterable[str]) -> str:
    """Several requests' ids as one value (deduplicated, order kept, at most MAX_IDS)."""
    seen: list[str] = []
    for value in ids:
        for i in value.split(","):
            if i and i not in seen:
                seen.append(i)
    return ",".join(seen[:MAX_IDS])


@contextlib.contextmanager
def request_scope(request_id: str | None = None) -> Iterator[str]:
    """Log under `request_id` (a fresh one when None or '') until the block ends."""
    rid = request_id or new_request_id()
    token = _request_id.set(rid)
    try:
        yield rid
    finally:
        _request_id.reset(token)


def from_metadata(metadata: Iterable[tuple[str, Any]] | None) -> str:
    """The checked request id a gRPC call carries ('' when none or not one)."""
    for key, value in metadata or ():
        if key == REQUEST_ID_METADATA:
            return clean(value)
    return ""


def outgoing_metadata(request_id: str | None = None) -> tuple[tuple[str, str], ...]:
    """Metadata passing the current (or given) request id on; empty outside any request."""
    rid = request_id if request_id is not None else current_request_id()
    return ((REQUEST_ID_METADATA, rid),) if rid else ()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (RFC 3339, UTC), level, logger, message, request_id
    (when set), and the exception text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", "") or current_request_id()
        if rid:
            entry["request_id"] = rid
        for key in ("host", "method", "code"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, separators=(",", ":"))


def configure(level: str = "info", fmt: str = "text", stream: Any = None) -> None:
    """Set up the root logger of a daemon: `fmt` text (the classic line) or json (JSON lines)."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format {fmt!r}: allowed: {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def add_log_arguments(parser: Any, levels: Sequence[str] = ("debug", "info", "warning", "error")) -> None:
    """`--log-level` and `--log-format` for a daemon's argparse parser."""
    parser.add_argument("--log-level", default="info", choices=tuple(levels))
    parser.add_argument("--log-format", default="text", choices=LOG_FORMATS,
                        help="text (default) or json: one JSON object per line, with the request id "
                             "that follows a change from the caller to the host")
