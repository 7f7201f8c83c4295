"""The `timeouts` attribute: how long create, update and delete may wait, as Go durations.

    schema = Schema(attributes={..., "timeouts": timeouts_attribute(default="20m")})
    seconds = timeout_seconds(plan, "create", default="20m")

Like terraform-plugin-framework-timeouts' nested-attribute form (`timeouts = { create = "30m" }`):
an optional object of optional strings, not stored anywhere but Terraform's state, each a
duration in Go's syntax (`30s`, `10m`, `1h30m`, `1.5h`), checked at plan time with its path.
A missing entry means the default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from l2vpc.provider.schema import Attribute, single_nested, string
from l2vpc.provider.validators import ValueValidator

OPERATIONS = ("create", "update", "delete")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_WHOLE = re.compile(r"^(?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+$")
USAGE = "must be a duration like 30s, 10m or 1h"


def parse_duration(text: str) -> float:
    """Seconds in a Go duration string ("1h30m", "45s", "1.5m"); ValueError if it is not one.
    Signs are not accepted: a timeout is never negative."""
    value = text.strip()
    if value == "0":
        return 0.0
    if not _WHOLE.match(value):
        raise ValueError(f"{text!r} is not a duration")
    return sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(value))


def format_duration(seconds: float) -> str:
    """A short Go-style duration for messages: 90 → "1m30s", 0.5 → "0.5s"."""
    if seconds < 60:
        return f"{seconds:g}s" if seconds != int(seconds) else f"{int(seconds)}s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs else "")


@dataclass(frozen=True)
class is_duration(ValueValidator):
    """A positive Go duration string."""

    description = "a duration like `30s`, `10m` or `1h`"

    def check(self, value: Any) -> str | None:
        try:
            seconds = parse_duration(value)
        except ValueError:
            return f'{USAGE}, got "{value}"'
        return None if seconds > 0 else f'must be longer than 0s, got "{value}"'


def timeouts_attribute(default: str, operations: tuple[str, ...] = OPERATIONS, note: str = "") -> Attribute:
    """`timeouts = { create = "30m", ... }`; every entry optional, `default` when left out.
    `note`: a sentence on what else the operations wait for."""
    parse_duration(default)  # a bad default is a bug: fail at import
    waits = {"create": "the hosts to run the new object", "update": "the hosts to run the change",
             "delete": "the hosts to remove the object"}
    return single_nested(
        {
            op: string(optional=True, validators=[is_duration()],
                       description=f"How long {op} waits for {waits.get(op, 'the hosts')} (default `{default}`).")
            for op in operations
        },
        optional=True,
        description=f"How long each operation may wait for the hosts, as durations like `30s`, `10m` or `1h` "
        f"(default `{default}` each). When one passes, the apply fails saying what is still pending; the "
        "change itself is saved and a later apply finishes it." + (f" {note}" if note else ""),
    )


@dataclass(frozen=True)
class Timeout:
    """One operation's time limit: seconds, and how the configuration spelled it (for messages)."""

    operation: str
    seconds: float
    text: str

    @property
    def where(self) -> str:
        return f"timeouts.{self.operation} = \"{self.text}\""


def timeout_of(values: dict[str, Any] | None, operation: str, default: str) -> Timeout:
    """The limit for `operation` from a resource's values (plan, or prior state for delete)."""
    block = (values or {}).get("timeouts")
    text = block.get(operation) if isinstance(block, dict) else None
    if isinstance(text, str):
        try:
            seconds = parse_duration(text)
        except ValueError:  # validated at plan time; state written by hand is all that is left
            seconds = -1.0
        if seconds > 0:
            return Timeout(operation, seconds, text)
    return Timeout(operation, parse_duration(default), default)
