"""Terraform values on the wire (MessagePack, JSON) and as plain Python values.

Terraform's type system (cty) is mirrored by a few small type objects (`STRING`, `NUMBER`,
`BOOL`, `DYNAMIC`, `ListType`, `SetType`, `MapType`, `ObjectType`, `TupleType`). Values cross
into Python as plain data, so resource code never sees msgpack or protobuf:

    null            -> None
    string          -> str
    number          -> int when whole, else float (very large numbers arrive as text and are
                       parsed; decimal.Decimal is accepted when encoding)
    bool            -> bool
    list, tuple     -> list
    set             -> list (wire order; compare with `values_equal`, never with ==)
    map, object     -> dict
    unknown         -> `Unknown` (optionally carrying refinements, see below)

Unknown values ("known after apply") come as MessagePack extension values. Code 0 is a plain
unknown; code 12 carries refinements (a msgpack map: 1 nullness, 2 string prefix, 3/4 number
bounds as [number, inclusive], 5/6 collection length bounds). Any other extension code is an
unknown whose payload we must ignore. When encoding, an unrefined unknown is always written as
code 0, never as code 12 with an empty map.

A value of type `DYNAMIC` travels with its type: msgpack [json type as bytes, value], JSON
{"type": ..., "value": ...}. When we encode a Python value into a dynamic slot we infer the
type (dict -> object, list -> tuple), as Terraform does for JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgpack

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
UNKNOWN = _PLAIN_UNKNOWN

# Extension codes: 0 = unknown (payload ignored), 12 = unknown with a refinement map.
_EXT_UNKNOWN = 0
_EXT_REFINED = 12
_REF_NULLNESS, _REF_PREFIX, _REF_NUM_LO, _REF_NUM_HI, _REF_LEN_LO, _REF_LEN_HI = 1, 2, 3, 4, 5, 6


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


def _unknown_from_ext(code: int, payload: bytes) -> Unknown:
    if code != _EXT_REFINED or not payload:
        return _PLAIN_UNKNOWN
    try:
        refinements = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception:
        return _PLAIN_UNKNOWN  # a malformed refinement only loses precision, never the value
    if not isinstance(refinements, dict):
        return _PLAIN_UNKNOWN

    def bound(raw: Any) -> tuple[int | float, bool] | None:
        if isinstance(raw, list) and len(raw) == 2:
            number = _number_from_wire(raw[0])
            if number is not None:
                return number, bool(raw[1])
        return None

    def length(raw: Any) -> int | None:
        return raw if isinstance(raw, int) and not isinstance(raw, bool) else None

    prefix = refinements.get(_REF_PREFIX)
    return Unknown(
        # True would mean "certainly null", which Terraform never sends (it sends a null).
        not_null=refinements.get(_REF_NULLNESS) is False,
        string_prefix=prefix if isinstance(prefix, str) and prefix else None,
        number_lower=bound(refinements.get(_REF_NUM_LO)),
        number_upper=bound(refinements.get(_REF_NUM_HI)),
        length_lower=length(refinements.get(_REF_LEN_LO)),
        length_upper=length(refinements.get(_REF_LEN_HI)),
    )


def _unknown_to_ext(value: Unknown) -> msgpack.ExtType:
    if not value.refined:
        return msgpack.ExtType(_EXT_UNKNOWN, b"\x00")
    refinements: dict[int, Any] = {}
    if value.not_null:
        refinements[_REF_NULLNESS] = False
    if value.string_prefix:
        refinements[_REF_PREFIX] = value.string_prefix
    if value.number_lower is not None:
        refinements[_REF_NUM_LO] = [_number_to_wire(value.number_lower[0]), value.number_lower[1]]
    if value.number_upper is not None:
        refinements[_REF_NUM_HI] = [_number_to_wire(value.number_upper[0]), value.number_upper[1]]
    if value.length_lower is not None:
        refinements[_REF_LEN_LO] = value.length_lower
    if value.length_upper is not None:
        refinements[_REF_LEN_HI] = value.length_upper
    return msgpack.ExtType(_EXT_REFINED, msgpack.packb(refinements))


# --------------------------------------------------------------------------------------------
# Numbers

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _number_from_wire(raw: Any) -> int | float | None:
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


def _number_to_wire(value: Any) -> int | float | str:
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


# --------------------------------------------------------------------------------------------
# Decoding


class CodecError(ValueError):
    """A wire value does not fit its type (Terraform would never send it: a protocol bug)."""


def _fail(path: str, message: str) -> CodecError:
    return CodecError(f"{path or 'value'}: {message}")


def _from_wire(raw: Any, t: CtyType, path: str) -> Any:
    """Convert a msgpack-decoded (or JSON-decoded) object to our Python value of type t."""
    if raw is None:
        return None
    if isinstance(raw, msgpack.ExtType):
        return _unknown_from_ext(raw.code, raw.data)
    if t is DYNAMIC:
        return _dynamic_from_wire(raw, path)
    if t is STRING:
        if not isinstance(raw, str):
            raise _fail(path, f"expected a string, got {type(raw).__name__}")
        return raw
    if t is NUMBER:
        number = _number_from_wire(raw)
        if number is None:
            raise _fail(path, f"expected a number, got {raw!r}")
        return number
    if t is BOOL:
        if not isinstance(raw, bool):
            raise _fail(path, f"expected a bool, got {type(raw).__name__}")
        return raw
    if isinstance(t, ListType | SetType):
        if not isinstance(raw, list):
            raise _fail(path, f"expected a list, got {type(raw).__name__}")
        return [_from_wire(v, t.element, f"{path}[{i}]") for i, v in enumerate(raw)]
    if isinstance(t, MapType):
        if not isinstance(raw, dict):
            raise _fail(path, f"expected a map, got {type(raw).__name__}")
        return {str(k): _from_wire(v, t.element, f"{path}[{k!r}]") for k, v in raw.items()}
    if isinstance(t, ObjectType):
        if not isinstance(raw, dict):
            raise _fail(path, f"expected an object, got {type(raw).__name__}")
        prefix = f"{path}." if path else ""
        return {name: _from_wire(raw.get(name), at, prefix + name) for name, at in t.attributes}
    if isinstance(t, TupleType):
        if not isinstance(raw, list) or len(raw) != len(t.elements):
            raise _fail(path, f"expected a tuple of {len(t.elements)}")
        return [
            _from_wire(v, et, f"{path}[{i}]") for i, (v, et) in enumerate(zip(raw, t.elements, strict=True))
        ]
    raise _fail(path, f"unsupported type {t}")


def _dynamic_from_wire(raw: Any, path: str) -> Any:
    if isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], bytes | str):
        type_json = raw[0].decode() if isinstance(raw[0], bytes) else raw[0]
        return _from_wire(raw[1], type_from_json(json.loads(type_json)), path)
    if isinstance(raw, dict) and set(raw) == {"type", "value"}:  # JSON form
        return _from_wire(raw["value"], type_from_json(raw["type"]), path)
    raise _fail(path, "malformed dynamic value")


def _ext_hook(code: int, data: bytes) -> msgpack.ExtType:
    return msgpack.ExtType(code, data)


def decode_msgpack(data: bytes, t: CtyType) -> Any:
    """Decode a DynamicValue.msgpack payload of type t. Empty data is a null value."""
    if not data:
        return None
    raw = msgpack.unpackb(data, raw=False, ext_hook=_ext_hook, strict_map_key=False)
    return _from_wire(raw, t, "")


def decode_json(data: bytes | str, t: CtyType) -> Any:
    """Decode JSON (DynamicValue.json or stored state); JSON has no unknowns."""
    if not data:
        return None
    return _from_wire(json.loads(data), t, "")


def from_json_value(raw: Any, t: CtyType) -> Any:
    """Convert already-parsed JSON (e.g. stored state) to our value of type t.

    Object attributes the type lacks are dropped, missing ones become None.
    """
    return _from_wire(raw, t, "")


# --------------------------------------------------------------------------------------------
# Encoding


def _to_wire(value: Any, t: CtyType, path: str) -> Any:
    if value is None:
        return None
    if isinstance(value, Unknown):
        return _unknown_to_ext(value)
    if t is DYNAMIC:
        actual = infer_type(value)
        return [type_to_json_bytes(actual), _to_wire(value, actual, path)]
    if t is STRING:
        if not isinstance(value, str):
            raise _fail(path, f"expected a string, got {type(value).__name__}")
        return value
    if t is NUMBER:
        try:
            return _number_to_wire(value)
        except (TypeError, ValueError) as e:
            raise _fail(path, str(e)) from None
    if t is BOOL:
        if not isinstance(value, bool):
            raise _fail(path, f"expected a bool, got {type(value).__name__}")
        return value
    if isinstance(t, ListType | SetType):
        if not isinstance(value, list | tuple):
            raise _fail(path, f"expected a list, got {type(value).__name__}")
        items = [_to_wire(v, t.element, f"{path}[{i}]") for i, v in enumerate(value)]
        if isinstance(t, SetType):
            items = _dedupe(items)
        return items
    if isinstance(t, MapType):
        if not isinstance(value, Mapping):
            raise _fail(path, f"expected a map, got {type(value).__name__}")
        return {str(k): _to_wire(v, t.element, f"{path}[{k!r}]") for k, v in value.items()}
    if isinstance(t, ObjectType):
        if not isinstance(value, Mapping):
            raise _fail(path, f"expected an object, got {type(value).__name__}")
        extra = set(value) - {name for name, _ in t.attributes}
        if extra:
            raise _fail(path, f"unexpected attributes {sorted(extra)}")
        prefix = f"{path}." if path else ""
        return {name: _to_wire(value.get(name), at, prefix + name) for name, at in t.attributes}
    if isinstance(t, TupleType):
        if not isinstance(value, list | tuple) or len(value) != len(t.elements):
            raise _fail(path, f"expected a tuple of {len(t.elements)}")
        return [
            _to_wire(v, et, f"{path}[{i}]") for i, (v, et) in enumerate(zip(value, t.elements, strict=True))
        ]
    raise _fail(path, f"unsupported type {t}")


def _dedupe(items: list[Any]) -> list[Any]:
    """Sets cannot hold duplicates; Terraform would collapse them and call the result inconsistent."""
    seen: set[bytes] = set()
    out = []
    for item in items:
        key = msgpack.packb(item, default=_pack_default)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _pack_default(obj: Any) -> Any:
    raise TypeError(f"cannot encode {type(obj).__name__}")


def encode_msgpack(value: Any, t: CtyType) -> bytes:
    """Encode a Python value of type t for DynamicValue.msgpack."""
    return msgpack.packb(_to_wire(value, t, ""), use_bin_type=True, default=_pack_default)


def encode_json(value: Any, t: CtyType) -> bytes:
    """Encode as JSON (no unknowns allowed); used for tests and state files."""
    if not is_wholly_known(value):
        raise CodecError("JSON cannot carry unknown values")
    return json.dumps(_to_json(value, t), separators=(",", ":"), sort_keys=True).encode()


def _to_json(value: Any, t: CtyType) -> Any:
    if value is None:
        return None
    if t is DYNAMIC:
        actual = infer_type(value)
        return {"type": actual.to_json(), "value": _to_json(value, actual)}
    if t is NUMBER:
        wire = _number_to_wire(value)
        return float(wire) if isinstance(wire, str) else wire
    if isinstance(t, ListType | SetType):
        return [_to_json(v, t.element) for v in value]
    if isinstance(t, MapType):
        return {k: _to_json(v, t.element) for k, v in value.items()}
    if isinstance(t, ObjectType):
        return {name: _to_json(value.get(name), at) for name, at in t.attributes}
    if isinstance(t, TupleType):
        return [_to_json(v, et) for v, et in zip(value, t.elements, strict=True)]
    return value


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
    if isinstance(a, Unknown) or isinstance(b, Unknown):
        return False
    if a is None or b is None:
        return a is None and b is None
    if t is DYNAMIC:
        return infer_type(a) == infer_type(b) and _equal_inferred(a, b)
    if t is NUMBER:
        return bool(_number_to_wire(a) == _number_to_wire(b))
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
