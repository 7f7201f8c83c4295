"""What both stores share about documents: strict JSON encoding, input checks, and the
StoredObject whose JSON is decoded only when `.data` is first read.

Both SQLite and PostgreSQL go through these, so they accept and refuse exactly the same input.
"""

from __future__ import annotations

import json
import math
from typing import Any

from l2vpc.engine.errors import ValidationError
from l2vpc.engine.store.base import KINDS, Event, Heartbeat, StoredObject

dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode
loads = json.JSONDecoder().decode


_DATA_SLOT = StoredObject.__dict__["data"]  # the slot behind StoredObject.data


class LazyObject(StoredObject):
    """The StoredObject both stores return: its JSON document is decoded on first access of
    `.data`.

    For list(), decoding costs several times the query itself (bench/bench_store.py prints both)
    and callers that filter by id, tenant or generation never need most documents; create() and
    update() hand back a copy of what was stored that most callers never read. The text is read
    inside the transaction, so the snapshot is the same as with eager decoding. Compares equal to
    a plain StoredObject with the same fields. Two threads reading `.data` of the same object at
    once may both decode it; each gets an equal dict.
    """

    __slots__ = ("_raw",)

    @classmethod
    def from_row(cls, kind: str, ident: str, generation: int, raw: str, tenant: str) -> LazyObject:
        # Slot setters directly: StoredObject.__init__ (kept for dataclasses.replace) would
        # go through the property and needs a decoded dict.
        obj = object.__new__(cls)
        _KIND_SLOT.__set__(obj, kind)
        _ID_SLOT.__set__(obj, ident)
        _GENERATION_SLOT.__set__(obj, generation)
        _TENANT_SLOT.__set__(obj, tenant)
        _RAW_SLOT.__set__(obj, raw)
        return obj

    @property
    def data(self) -> dict[str, Any]:
        try:
            return _DATA_SLOT.__get__(self, StoredObject)
        except AttributeError:
            value: dict[str, Any] = loads(_RAW_SLOT.__get__(self, LazyObject))
            _DATA_SLOT.__set__(self, value)
            return value

    @data.setter
    def data(self, value: dict[str, Any]) -> None:
        # Reached only via object.__setattr__ (dataclasses.replace, unpickling), as in StoredObject.
        _DATA_SLOT.__set__(self, value)

    def __eq__(self, other: object) -> bool:
        # The dataclass __eq__ only compares objects of exactly the same class.
        if not isinstance(other, StoredObject):
            return NotImplemented
        return (self.kind, self.id, self.generation, self.tenant, self.data) == (
            other.kind,
            other.id,
            other.generation,
            other.tenant,
            other.data,
        )

    __hash__ = None  # type: ignore[assignment]  # like StoredObject's: its dict is unhashable

    def __repr__(self) -> str:
        return (
            f"StoredObject(kind={self.kind!r}, id={self.id!r}, generation={self.generation!r}, "
            f"data={self.data!r}, tenant={self.tenant!r})"
        )


_KIND_SLOT = StoredObject.__dict__["kind"]
_ID_SLOT = StoredObject.__dict__["id"]
_GENERATION_SLOT = StoredObject.__dict__["generation"]
_TENANT_SLOT = StoredObject.__dict__["tenant"]
_RAW_SLOT = LazyObject.__dict__["_raw"]


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValidationError(f"unknown object kind {kind!r}; allowed: {', '.join(KINDS)}", path="kind")


def check_text(field: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValidationError(f"must be a non-empty string, got {value!r}", path=field)


def encode(kind: str, ident: str, data: object, field: str = "data") -> str:
    if not isinstance(data, dict):
        raise ValidationError(
            f"{kind} {ident!r}: must be a JSON object, got {type(data).__name__}", path=field
        )
    try:
        return dumps(data)
    except (TypeError, ValueError) as exc:
        # Strict JSON (no NaN/Infinity) so PostgreSQL's jsonb accepts the same documents.
        raise ValidationError(f"{kind} {ident!r}: not storable as JSON: {exc}", path=field) from exc


def check_heartbeats(beats: object) -> None:
    """A batch for put_heartbeats: heartbeats, at most one per host (one upsert per row)."""
    if not isinstance(beats, list | tuple):
        raise ValidationError(f"must be a list of heartbeats, got {type(beats).__name__}", path="beats")
    seen: set[str] = set()
    for i, b in enumerate(beats):
        check_heartbeat(f"beats[{i}]", b)
        if b.host in seen:
            raise ValidationError(f"host {b.host!r} appears twice in one batch", path=f"beats[{i}].host")
        seen.add(b.host)


def check_heartbeat(field: str, beat: object) -> None:
    """Types of a heartbeat going into the store (the control plane validated the values)."""
    if not isinstance(beat, Heartbeat):
        raise ValidationError(f"must be a Heartbeat, got {type(beat).__name__}", path=field)
    check_text(f"{field}.host", beat.host)
    if not _finite(beat.last_seen):
        raise ValidationError(f"must be a finite number, got {beat.last_seen!r}", path=f"{field}.last_seen")
    for name in ("accepted_generation", "converged_generation"):
        value = getattr(beat, name)
        if type(value) is not int or not 0 <= value < 2**63:
            raise ValidationError(f"must be an integer from 0 to 2^63-1, got {value!r}", path=f"{field}.{name}")
    if type(beat.converging) is not bool:
        raise ValidationError(f"must be true or false, got {beat.converging!r}", path=f"{field}.converging")
    for name in ("digest", "controller"):
        if not isinstance(getattr(beat, name), str):
            raise ValidationError("must be a string", path=f"{field}.{name}")


def check_event(field: str, event: object) -> None:
    if not isinstance(event, Event):
        raise ValidationError(f"must be an Event, got {type(event).__name__}", path=field)
    if not _finite(event.time):
        raise ValidationError(f"must be a finite number, got {event.time!r}", path=f"{field}.time")
    if not isinstance(event.host, str) or not isinstance(event.what, str):
        raise ValidationError("host and what must be strings", path=field)


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
