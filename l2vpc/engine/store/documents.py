"""What both stores share about documents: strict JSON encoding, input checks, and the
StoredObject whose JSON is decoded only when `.data` is first read.

Both SQLite and PostgreSQL go through these, so they accept and refuse exactly the same input:
strict JSON without NUL characters (PostgreSQL's jsonb holds neither NaN nor "\\u0000"), keys
that are non-empty strings without NUL (PostgreSQL's text cannot hold it; a read by such a key
matches nothing). Every check runs before anything is sent: on PostgreSQL a failed statement
would abort the whole transaction, so the caller can go on after a ValidationError.
"""

from __future__ import annotations

import json
import re
from typing import Any

from l2vpc.engine.errors import ValidationError
from l2vpc.engine.store.base import KINDS, StoredObject

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


def check_key(field: str, value: object) -> None:
    """A key written to the store: a non-empty string without NUL."""
    check_text(field, value)
    if "\x00" in value:  # type: ignore[operator]  # a str after check_text
        raise ValidationError("must not contain NUL characters", path=field)


def lookup_key(field: str, value: object) -> bool:
    """For reads by key: a non-string is a caller bug (ValidationError); a string with NUL
    cannot be stored, so it matches nothing (False)."""
    if type(value) is not str:
        raise ValidationError(f"must be a string, got {type(value).__name__}", path=field)
    return "\x00" not in value


def check_generation(field: str, value: object, minimum: int = 1) -> None:
    if type(value) is not int or value < minimum:
        raise ValidationError(f"must be an integer >= {minimum}, got {value!r}", path=field)


# A NUL escape in encoded JSON: "\u0000" preceded by an even number of backslashes (an odd
# number means the backslash itself was escaped and the rest is plain text).
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def encode(kind: str, ident: str, data: object, field: str = "data") -> str:
    if not isinstance(data, dict):
        raise ValidationError(
            f"{kind} {ident!r}: must be a JSON object, got {type(data).__name__}", path=field
        )
    try:
        text = dumps(data)
    except (TypeError, ValueError) as exc:
        # Strict JSON (no NaN/Infinity) so PostgreSQL's jsonb accepts the same documents.
        raise ValidationError(f"{kind} {ident!r}: not storable as JSON: {exc}", path=field) from exc
    if "\\u0000" in text and _JSON_NUL.search(text):
        raise ValidationError(f"{kind} {ident!r}: not storable as JSON: contains a NUL character", path=field)
    return text
