"""Terraform's type system (cty) and its values as plain Python values.

A few small type objects mirror cty (`STRING`, `NUMBER`, `BOOL`, `DYNAMIC`, `ListType`,
`SetType`, `MapType`, `ObjectType`, `TupleType`). Values are plain data, so resource code never
sees msgpack or protobuf (codec.py converts them on the wire):

    null            -> None
    string          -> str
    number          -> int when whole, else float (very large numbers arrive as text and are
                       parsed; decimal.Decimal is accepted when encoding)
    bool            -> bool
    list, tuple     -> list
    set             -> list (wire order; compare with `values_equal`, never with ==)
    map, object     -> dict
    unknown         -> `Unknown` (optionally carrying refinements)

Also here: Terraform's equality (`values_equal`), the type it infers for a plain value
(`infer_type`, for dynamic attributes) and the canonical form of numbers both use.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

_T = TypeVar("_T")

# --------------------------------------------------------------------------------------------
# Types


class CtyType:
    """Base of Terraform types; instances are immutable and comparable."""

    def to_json(self) -> Any:
        raise NotImplementedError

    def __str__(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class PrimitiveType(CtyType):
    name: str  # "string" | "number" | "bool" | "dynamic"

    def to_json(self) -> Any:
        return self.name


STRING = PrimitiveType("string")
NUMBER = PrimitiveType("number")
BOOL = PrimitiveType("bool")
DYNAMIC = PrimitiveType("dynamic")


@dataclass(frozen=True, slots=True)
class ListType(CtyType):
    element: CtyType

    def to_json(self) -> Any:
        return ["list", self.element.to_json()]


@dataclass(frozen=True, slots=True)
class SetType(CtyType):
    element: CtyType

    def to_json(self) -> Any:
        return ["set", self.element.to_json()]


@dataclass(frozen=True, slots=True)
class MapType(CtyType):
    element: CtyType

    def to_json(self) -> Any:
        return ["map", self.element.to_json()]


@dataclass(frozen=True, slots=True)
class ObjectType(CtyType):
    # A tuple of pairs (not a dict) keeps the type hashable; order is irrelevant on the wire.
    attributes: tuple[tuple[str, CtyType], ...]

    @classmethod
    def of(cls, attributes: Mapping[str, CtyType]) -> ObjectType:
        return cls(tuple(sorted(attributes.items())))

    @property
    def attribute_types(self) -> dict[str, CtyType]:
        return dict(self.attributes)

    def to_json(self) -> Any:
        return ["object", {name: t.to_json() for name, t in self.attributes}]


@dataclass(frozen=True, slots=True)
class TupleType(CtyType):
    elements: tuple[CtyType, ...]

    def to_json(self) -> Any:
        return ["tuple", [t.to_json() for t in self.elements]]


_PRIMITIVES = {t.name: t for t in (STRING, NUMBER, BOOL, DYNAMIC)}
_COLLECTIONS: dict[str, type[ListType] | type[SetType] | type[MapType]] = {
    "list": ListType,
    "set": SetType,
    "map": MapType,
}


def type_from_json(spec: Any) -> CtyType:
    """Parse Terraform's JSON type notation ("string", ["list","number"], ...)."""
    if isinstance(spec, str):
        if spec in _PRIMITIVES:
            return _PRIMITIVES[spec]
    elif isinstance(spec, list) and len(spec) >= 2 and isinstance(spec[0], str):
        kind, arg = spec[0], spec[1]
        if kind in _COLLECTIONS:
            return _COLLECTIONS[kind](type_from_json(arg))
        if kind == "object" and isinstance(arg, dict):
            # A third element lists optional attributes of a type constraint; values ignore it.
            return ObjectType.of({k: type_from_json(v) for k, v in arg.items()})
        if kind == "tuple" and isinstance(arg, list):
            return TupleType(tuple(type_from_json(v) for v in arg))
    raise ValueError(f"not a Terraform type: {spec!r}")


def type_to_json_bytes(t: CtyType) -> bytes:
    return json.dumps(t.to_json(), separators=(",", ":")).encode()


# --------------------------------------------------------------------------------------------
# Unknown values


@dataclass(frozen=True, slots=True)
class Unknown:
    """A value Terraform will only know during apply, with what is already known about it.

    `not_null`: the final value is certainly not null. `string_prefix`: the final string starts
    with this. `number_lower`/`number_upper`: (bound, inclusive). `length_lower`/`length_upper`:
    inclusive bounds on a collection's length. A provider that plans a refined unknown must
    honour the refinement in the applied state.
    """

    not_null: bool = False
    string_prefix: str | None = None
    number_lower: tuple[int | float, bool] | None = None
    number_upper: tuple[int | float, bool] | None = None
    length_lower: int | None = None
    length_upper: int | None = None

    @property
    def refined(self) -> bool:
        return self != _PLAIN_UNKNOWN

    def __repr__(self) -> str:
        parts = [f"{k}={getattr(self, k)!r}" for k in self.__slots__ if getattr(self, k) not in (None, False)]
        return f"Unknown({', '.join(parts)})"


_PLAIN_UNKNOWN = Unknown()


def copy_value(value: Any) -> Any:
    """A deep copy of a Terraform value (what copy.deepcopy gives, several times faster): objects,
    maps, lists and sets are dicts and lists; strings, numbers, bools, None and Unknown (frozen)
    are shared. Anything else goes through copy.deepcopy. Planning copies every value it hands
    to resource code several times per resource, so this runs thousands of times per plan."""
    t = type(value)
    if t is dict:
        return {k: copy_value(v) for k, v in value.items()}
    if t is list:
        return [copy_value(v) for v in value]
    if value is None or t in _IMMUTABLE:
        return value
    return copy.deepcopy(value)


_IMMUTABLE = frozenset({str, int, float, bool, Decimal, Unknown})
UNKNOWN = _PLAIN_UNKNOWN


def is_unknown(value: Any) -> bool:
    return isinstance(value, Unknown)


def is_wholly_known(value: Any) -> bool:
    """True when neither the value nor anything nested in it is unknown."""
    if isinstance(value, Unknown):
        return False
    if isinstance(value, dict):
        return all(is_wholly_known(v) for v in value.values())
    if isinstance(value, list):
        return all(is_wholly_known(v) for v in value)
    return True


# --------------------------------------------------------------------------------------------
# Numbers: canonical forms (int where whole, text beyond int64 / float64 precision)

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def number_from_wire(raw: Any) -> int | float | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float):
        return int(raw) if raw.is_integer() and abs(raw) < 2**53 else raw
    if isinstance(raw, str):
        # Numbers beyond float64 precision arrive as decimal text.
        try:
            return int(raw)
        except ValueError:
            pass
        try:
            d = Decimal(raw)
        except ArithmeticError:
            return None
        if not d.is_finite():
            return None
        return int(d) if d == d.to_integral_value() else float(d)
    return None


def number_to_wire(value: Any) -> int | float | str:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("numbers must be finite")
        if value == value.to_integral_value():
            value = int(value)
        elif Decimal(float(value)) == value:
            return float(value)
        else:
            return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("numbers must be finite")
        if value.is_integer() and abs(value) < 2**53:
            return int(value)
        return value
    return value if _INT64_MIN <= value <= _INT64_MAX else str(value)


def infer_type(value: Any) -> CtyType:
    """The type Terraform would give a plain Python value (for dynamic attributes)."""
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int | float | Decimal):
        return NUMBER
    if isinstance(value, str):
        return STRING
    if isinstance(value, Mapping):
        return ObjectType.of({str(k): infer_type(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return TupleType(tuple(infer_type(v) for v in value))
    if value is None or isinstance(value, Unknown):
        return DYNAMIC
    raise TypeError(f"no Terraform type for {type(value).__name__}")


# --------------------------------------------------------------------------------------------
# Comparison


def values_equal(t: CtyType, a: Any, b: Any) -> bool:
    """Terraform's equality for known values of type t: sets ignore order, 1 == 1.0.

    Unknown values are equal to nothing (not even another unknown): a plan that holds one
    is a change.
    """
    if a == b and _plain_equality(t) and is_wholly_known(a):
        # Python's == agrees with Terraform's when the values are equal and known, unless a
        # dynamic type could hold True where the other holds 1. Reads and plans of unchanged
        # objects compare equal values (every attribute, every call): this is their path.
        return True
    return _values_equal(t, a, b)


def by_identity(build: Callable[[CtyType], _T]) -> Callable[[CtyType], _T]:
    """Cache `build(t)` per type object. Not functools.cache: hashing a type hashes all of its
    nested types again (a schema's type holds dozens), on every call."""
    cache: dict[int, tuple[CtyType, _T]] = {}

    def cached(t: CtyType) -> _T:
        entry = cache.get(id(t))
        if entry is None or entry[0] is not t:
            entry = cache[id(t)] = (t, build(t))  # holding t: its id is not reused
        return entry[1]

    return cached


@by_identity
def _plain_equality(t: CtyType) -> bool:
    """No dynamic type anywhere in t: equal Python values of type t are equal Terraform values."""
    if t is DYNAMIC:
        return False
    if isinstance(t, ListType | SetType | MapType):
        return _plain_equality(t.element)
    if isinstance(t, ObjectType):
        return all(_plain_equality(at) for _, at in t.attributes)
    if isinstance(t, TupleType):
        return all(_plain_equality(et) for et in t.elements)
    return True


def _values_equal(t: CtyType, a: Any, b: Any) -> bool:
    if isinstance(a, Unknown) or isinstance(b, Unknown):
        return False
    if a is None or b is None:
        return a is None and b is None
    if t is DYNAMIC:
        return infer_type(a) == infer_type(b) and _equal_inferred(a, b)
    if t is NUMBER:
        return bool(number_to_wire(a) == number_to_wire(b))
    if isinstance(t, ListType):
        return len(a) == len(b) and all(values_equal(t.element, x, y) for x, y in zip(a, b, strict=True))
    if isinstance(t, SetType):
        if len(a) != len(b):
            return False
        remaining = list(b)
        for x in a:
            for i, y in enumerate(remaining):
                if values_equal(t.element, x, y):
                    del remaining[i]
                    break
            else:
                return False
        return True
    if isinstance(t, MapType):
        return a.keys() == b.keys() and all(values_equal(t.element, a[k], b[k]) for k in a)
    if isinstance(t, ObjectType):
        return all(values_equal(at, a.get(name), b.get(name)) for name, at in t.attributes)
    if isinstance(t, TupleType):
        return len(a) == len(b) == len(t.elements) and all(
            values_equal(et, x, y) for et, x, y in zip(t.elements, a, b, strict=True)
        )
    return bool(a == b)


def _equal_inferred(a: Any, b: Any) -> bool:
    return values_equal(infer_type(a), a, b)


def get_path(value: Any, steps: Sequence[str | int]) -> Any:
    """Follow attribute names / map keys (str) and indices (int); None when absent."""
    for step in steps:
        if isinstance(value, dict) and isinstance(step, str):
            value = value.get(step)
        elif isinstance(value, list) and isinstance(step, int) and 0 <= step < len(value):
            value = value[step]
        else:
            return None
    return value
