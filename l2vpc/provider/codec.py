"""Terraform values on the wire: MessagePack (DynamicValue.msgpack) and JSON.

Values cross into Python as cty.py describes. Unknown values ("known after apply") come as
MessagePack extension values. Code 0 is a plain unknown; code 12 carries refinements (a msgpack
map: 1 nullness, 2 string prefix, 3/4 number bounds as [number, inclusive], 5/6 collection
length bounds). Any other extension code is an unknown whose payload we must ignore. When
encoding, an unrefined unknown is always written as code 0, never as code 12 with an empty map.

A value of type `DYNAMIC` travels with its type: msgpack [json type as bytes, value], JSON
{"type": ..., "value": ...}. When we encode a Python value into a dynamic slot we infer the
type (dict -> object, list -> tuple), as Terraform does for JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import msgpack

from l2vpc.provider.cty import (
    BOOL,
    DYNAMIC,
    NUMBER,
    STRING,
    UNKNOWN,
    CtyType,
    ListType,
    MapType,
    ObjectType,
    SetType,
    TupleType,
    Unknown,
    by_identity,
    infer_type,
    is_wholly_known,
    number_from_wire,
    number_to_wire,
    type_from_json,
    type_to_json_bytes,
)

# Extension codes: 0 = unknown (payload ignored), 12 = unknown with a refinement map.
_EXT_UNKNOWN = 0
_EXT_REFINED = 12
_REF_NULLNESS, _REF_PREFIX, _REF_NUM_LO, _REF_NUM_HI, _REF_LEN_LO, _REF_LEN_HI = 1, 2, 3, 4, 5, 6


def _unknown_from_ext(code: int, payload: bytes) -> Unknown:
    if code != _EXT_REFINED or not payload:
        return UNKNOWN
    try:
        refinements = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception:
        return UNKNOWN  # a malformed refinement only loses precision, never the value
    if not isinstance(refinements, dict):
        return UNKNOWN

    def bound(raw: Any) -> tuple[int | float, bool] | None:
        if isinstance(raw, list) and len(raw) == 2:
            number = number_from_wire(raw[0])
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


_PLAIN_UNKNOWN_EXT = msgpack.ExtType(_EXT_UNKNOWN, b"\x00")  # a tuple: one serves every plain unknown


def _unknown_to_ext(value: Unknown) -> msgpack.ExtType:
    if value is UNKNOWN or not value.refined:
        return _PLAIN_UNKNOWN_EXT
    refinements: dict[int, Any] = {}
    if value.not_null:
        refinements[_REF_NULLNESS] = False
    if value.string_prefix:
        refinements[_REF_PREFIX] = value.string_prefix
    if value.number_lower is not None:
        refinements[_REF_NUM_LO] = [number_to_wire(value.number_lower[0]), value.number_lower[1]]
    if value.number_upper is not None:
        refinements[_REF_NUM_HI] = [number_to_wire(value.number_upper[0]), value.number_upper[1]]
    if value.length_lower is not None:
        refinements[_REF_LEN_LO] = value.length_lower
    if value.length_upper is not None:
        refinements[_REF_LEN_HI] = value.length_upper
    return msgpack.ExtType(_EXT_REFINED, msgpack.packb(refinements))


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
        number = number_from_wire(raw)
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
    return _from_wire_fast(raw, t)


def decode_json(data: bytes | str, t: CtyType) -> Any:
    """Decode JSON (DynamicValue.json or stored state); JSON has no unknowns."""
    if not data:
        return None
    return _from_wire_fast(json.loads(data), t)


def from_json_value(raw: Any, t: CtyType) -> Any:
    """Convert already-parsed JSON (e.g. stored state) to our value of type t.

    Object attributes the type lacks are dropped, missing ones become None.
    """
    return _from_wire_fast(raw, t)


# Fast paths: one function per type, built once, that neither checks nor names the path of
# every value (Terraform sends values that fit, several per RPC, every RPC). Anything
# unexpected goes to _from_wire / _to_wire, which give the same result or the error naming
# the path.


class _Mismatch(Exception):
    """The fast path met something it does not handle: take the checked path."""


def _from_wire_fast(raw: Any, t: CtyType) -> Any:
    try:
        return _decoder(t)(raw)
    except (_Mismatch, CodecError):
        return _from_wire(raw, t, "")


Convert = Callable[[Any], Any]


def _primitive(kind: type, odd: Convert) -> Convert:
    """str or bool as they are; None stays None; anything else goes to `odd`."""

    def primitive(value: Any) -> Any:
        return value if value is None or value.__class__ is kind else odd(value)

    return primitive


def _sequence(element: Convert, odd: Convert) -> Convert:
    def sequence(value: Any) -> Any:
        if value.__class__ is list:
            return [element(v) for v in value]
        return None if value is None else odd(value)

    return sequence


def _mapping(value_of: Convert, odd: Convert) -> Convert:
    def mapping(value: Any) -> Any:
        if value.__class__ is dict:
            return {str(k): value_of(v) for k, v in value.items()}
        return None if value is None else odd(value)

    return mapping


def _decode_unknown_or_fail(raw: Any) -> Any:
    if raw.__class__ is msgpack.ExtType:
        return _unknown_from_ext(raw.code, raw.data)
    raise _Mismatch


@by_identity
def _decoder(t: CtyType) -> Convert:
    odd = _decode_unknown_or_fail
    if t is STRING or t is BOOL:
        return _primitive(str if t is STRING else bool, odd)
    if t is NUMBER:

        def number(raw: Any) -> Any:
            if raw.__class__ is int or raw is None:
                return raw
            if raw.__class__ is msgpack.ExtType:
                return _unknown_from_ext(raw.code, raw.data)
            value = number_from_wire(raw)
            if value is None:
                raise _Mismatch
            return value

        return number
    if isinstance(t, ListType | SetType):
        return _sequence(_decoder(t.element), odd)
    if isinstance(t, MapType):
        return _mapping(_decoder(t.element), odd)
    if isinstance(t, ObjectType):
        attributes = tuple((name, _decoder(at)) for name, at in t.attributes)

        def obj(raw: Any) -> Any:
            if raw.__class__ is dict:
                get = raw.get
                return {name: decode(get(name)) for name, decode in attributes}
            return None if raw is None else odd(raw)

        return obj

    def checked(raw: Any) -> Any:  # dynamic and tuples: rare, the checked path
        return _from_wire(raw, t, "")

    return checked


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
            return number_to_wire(value)
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
    try:
        wire = _encoder(t)(value)
    except (_Mismatch, CodecError, TypeError, ValueError):
        wire = _to_wire(value, t, "")
    return msgpack.packb(wire, use_bin_type=True, default=_pack_default)


def _encode_unknown_or_fail(value: Any) -> Any:
    if value.__class__ is Unknown:
        return _unknown_to_ext(value)
    raise _Mismatch


@by_identity
def _encoder(t: CtyType) -> Convert:
    odd = _encode_unknown_or_fail
    if t is STRING or t is BOOL:
        return _primitive(str if t is STRING else bool, odd)
    if t is NUMBER:

        def number(value: Any) -> Any:
            if value is None:
                return None
            if value.__class__ is Unknown:
                return _unknown_to_ext(value)
            return number_to_wire(value)

        return number
    if isinstance(t, ListType):
        return _sequence(_encoder(t.element), odd)
    if isinstance(t, MapType):
        return _mapping(_encoder(t.element), odd)
    if isinstance(t, ObjectType):
        attributes = tuple((name, _encoder(at)) for name, at in t.attributes)
        names = frozenset(name for name, _ in t.attributes)

        def obj(value: Any) -> Any:
            if value.__class__ is dict and names.issuperset(value):
                get = value.get
                return {name: encode(get(name)) for name, encode in attributes}
            return None if value is None else odd(value)

        return obj

    def checked(value: Any) -> Any:  # sets (deduplicated), dynamic and tuples: the checked path
        return _to_wire(value, t, "")

    return checked


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
        wire = number_to_wire(value)
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
