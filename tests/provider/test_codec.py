"""Values on the wire: msgpack/JSON round trips, unknowns (ext 0 and refined ext 12), dynamic values."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l2vpc.provider.codec import (
    CodecError,
    decode_json,
    decode_msgpack,
    encode_json,
    encode_msgpack,
    from_json_value,
)
from l2vpc.provider.cty import (
    BOOL,
    DYNAMIC,
    NUMBER,
    STRING,
    UNKNOWN,
    ListType,
    MapType,
    ObjectType,
    SetType,
    TupleType,
    Unknown,
    is_wholly_known,
    type_from_json,
    values_equal,
)

THING = ObjectType.of(
    {
        "name": STRING,
        "size": NUMBER,
        "on": BOOL,
        "tags": SetType(STRING),
        "ports": ListType(ObjectType.of({"number": NUMBER, "protocol": STRING})),
        "labels": MapType(STRING),
        "pair": TupleType((STRING, NUMBER)),
        "extra": DYNAMIC,
    }
)


def test_object_round_trip_fills_absent_attributes_with_null() -> None:
    value = {
        "name": "alpha",
        "size": 3,
        "on": True,
        "tags": ["x", "y"],
        "ports": [{"number": 80, "protocol": "tcp"}],
        "labels": {"env": "dev"},
        "pair": ["a", 1.5],
        "extra": {"k": [1, "two"]},
    }
    assert decode_msgpack(encode_msgpack(value, THING), THING) == value
    partial = decode_msgpack(encode_msgpack({"name": "b"}, THING), THING)
    assert partial == dict.fromkeys(value, None) | {"name": "b"}


def test_encoding_matches_what_terraform_reads() -> None:
    # Plain msgpack with sorted object keys; a dynamic value carries its JSON type as bytes.
    t = ObjectType.of({"a": STRING, "d": DYNAMIC})
    raw = msgpack.unpackb(encode_msgpack({"a": "x", "d": 5}, t), raw=False)
    assert raw == {"a": "x", "d": [b'"number"', 5]}
    assert encode_msgpack(None, t) == b"\xc0"


def test_plain_unknown_is_ext_zero_both_ways() -> None:
    assert encode_msgpack(UNKNOWN, STRING) == b"\xd4\x00\x00"  # fixext1, code 0: what cty writes
    assert decode_msgpack(b"\xd4\x00\x00", STRING) == Unknown()
    # Any extension code is an unknown whose payload we ignore (protocol rule).
    assert decode_msgpack(msgpack.packb(msgpack.ExtType(7, b"junk")), NUMBER) == Unknown()


def test_refined_unknown_ext_12_is_decoded_and_reencoded() -> None:
    refinements = {1: False, 2: "x-", 3: [1000, True], 4: [2000.5, False], 5: 1, 6: 9, 99: "future key"}
    wire = msgpack.packb({"v": msgpack.ExtType(12, msgpack.packb(refinements))})
    value = decode_msgpack(wire, ObjectType.of({"v": STRING}))["v"]
    assert value == Unknown(
        not_null=True,
        string_prefix="x-",
        number_lower=(1000, True),
        number_upper=(2000.5, False),
        length_lower=1,
        length_upper=9,
    )
    again = msgpack.unpackb(encode_msgpack(value, STRING), raw=False, strict_map_key=False)
    assert again.code == 12
    # Known keys survive, the unknown future key is dropped (the protocol says to ignore it).
    assert msgpack.unpackb(again.data, strict_map_key=False) == {
        k: v for k, v in refinements.items() if k != 99
    }


def test_unknowns_nested_in_collections() -> None:
    t = ObjectType.of({"l": ListType(STRING), "m": MapType(NUMBER), "o": ObjectType.of({"x": BOOL})})
    value = {"l": ["a", Unknown()], "m": Unknown(length_lower=2), "o": {"x": Unknown(not_null=True)}}
    back = decode_msgpack(encode_msgpack(value, t), t)
    assert back == value
    assert not is_wholly_known(back)
    assert is_wholly_known({"l": ["a"], "m": {}, "o": None})


def test_dynamic_values_keep_their_inner_type() -> None:
    t = ObjectType.of({"d": DYNAMIC})
    # As Terraform sends them: [json type, value]; unknown of unknown type is a bare extension.
    wire = msgpack.packb({"d": [b'["list","number"]', [1, "2"]]}, use_bin_type=True)
    assert decode_msgpack(wire, t) == {"d": [1, 2]}
    assert decode_msgpack(msgpack.packb({"d": msgpack.ExtType(0, b"\x00")}), t) == {"d": Unknown()}
    assert decode_json(b'{"d": {"type": "string", "value": "s"}}', t) == {"d": "s"}


def test_numbers_large_and_fractional() -> None:
    big = 2**70 + 1
    assert msgpack.unpackb(encode_msgpack(big, NUMBER)) == str(big)  # beyond int64: decimal text
    assert decode_msgpack(encode_msgpack(big, NUMBER), NUMBER) == big
    assert decode_msgpack(msgpack.packb("12345678901234567890.5"), NUMBER) == pytest.approx(
        1.2345678901234567e19
    )
    assert decode_msgpack(msgpack.packb(3.0), NUMBER) == 3 and isinstance(
        decode_msgpack(msgpack.packb(3.0), NUMBER), int
    )
    assert decode_msgpack(encode_msgpack(Decimal("0.1"), NUMBER), NUMBER) == 0.1
    with pytest.raises(CodecError, match="expected a number"):
        encode_msgpack(True, NUMBER)
    with pytest.raises(CodecError, match="finite"):
        encode_msgpack(float("nan"), NUMBER)


def test_type_mismatches_name_the_attribute() -> None:
    with pytest.raises(CodecError, match=r"ports\[0\]\.number: expected a number"):
        encode_msgpack({"ports": [{"number": "80"}]}, THING)
    with pytest.raises(CodecError, match="unexpected attributes"):
        encode_msgpack({"nope": 1}, THING)
    with pytest.raises(CodecError, match="name: expected a string"):
        decode_msgpack(msgpack.packb({"name": 5}), THING)


def test_sets_are_deduplicated_and_compared_without_order() -> None:
    t = SetType(ObjectType.of({"a": NUMBER}))
    assert msgpack.unpackb(encode_msgpack([{"a": 1}, {"a": 1}, {"a": 2}], t)) == [{"a": 1}, {"a": 2}]
    assert values_equal(t, [{"a": 1}, {"a": 2}], [{"a": 2}, {"a": 1}])
    assert not values_equal(t, [{"a": 1}], [{"a": 2}])
    assert not values_equal(ListType(NUMBER), [1, 2], [2, 1])
    assert values_equal(NUMBER, 1, 1.0)
    assert not values_equal(STRING, Unknown(), Unknown())  # an unknown is never "unchanged"


def test_json_state_upgrade_drops_removed_attributes() -> None:
    stored = json.loads('{"name": "a", "size": 2, "gone": true, "tags": ["x"]}')
    value = from_json_value(stored, THING)
    assert value["name"] == "a" and value["tags"] == ["x"] and "gone" not in value and value["ports"] is None
    assert json.loads(encode_json(value, THING))["size"] == 2
    with pytest.raises(CodecError):
        encode_json({"name": Unknown()}, THING)


def test_type_json_round_trip() -> None:
    for spec in (
        "string",
        ["list", "number"],
        ["object", {"a": ["set", "bool"], "b": "dynamic"}],
        ["tuple", ["string"]],
    ):
        assert json.loads(str(type_from_json(spec))) == spec
    with pytest.raises(ValueError, match="not a Terraform type"):
        type_from_json(["frob", "x"])


_leaf = st.one_of(
    st.none(),
    st.text(max_size=8),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.builds(
        Unknown, not_null=st.booleans(), string_prefix=st.one_of(st.none(), st.text(min_size=1, max_size=4))
    ),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["a", "b", "c"]), st.lists(_leaf, max_size=4), max_size=3))
def test_round_trip_property(value: dict[str, list[object]]) -> None:
    t = MapType(ListType(DYNAMIC))
    back = decode_msgpack(encode_msgpack(value, t), t)
    for key, items in value.items():
        for original, decoded in zip(items, back[key], strict=True):
            if isinstance(original, float) and not isinstance(decoded, Unknown):
                assert decoded == pytest.approx(original)
            else:
                assert decoded == original


# The fast paths (one function per type, no path names; values_equal by ==) must give what the
# checked paths give, for values that fit and for values that do not.
_typed_leaf = st.one_of(st.none(), st.builds(Unknown, not_null=st.booleans()))
_raw_thing = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(_typed_leaf, st.text(max_size=4), st.integers(0, 3)),
        "size": st.one_of(_typed_leaf, st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False),
                          st.sampled_from(["12", "1e400", "x", True])),
        "on": st.one_of(_typed_leaf, st.booleans(), st.just(1)),
        "tags": st.one_of(_typed_leaf, st.lists(st.sampled_from(["a", "b", "a"]), max_size=3)),
        "ports": st.one_of(_typed_leaf, st.lists(st.fixed_dictionaries(
            {"number": st.one_of(_typed_leaf, st.integers(0, 9), st.floats(0, 9)),
             "protocol": st.one_of(_typed_leaf, st.sampled_from(["tcp", "udp"]))}), max_size=2)),
        "labels": st.one_of(_typed_leaf, st.dictionaries(st.sampled_from(["k", "l"]), st.one_of(_typed_leaf, st.text(max_size=2)))),
        "pair": st.one_of(_typed_leaf, st.tuples(st.text(max_size=2), st.integers(0, 9)).map(list)),
        "extra": st.one_of(_typed_leaf, st.integers(0, 3), st.booleans(), st.text(max_size=2)),
        "stray": st.integers(0, 3),
    },
)


def _outcome(f: Any, *args: Any) -> Any:
    try:
        return ("ok", f(*args))
    except (CodecError, TypeError, ValueError) as e:
        return ("error", type(e), str(e))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_raw_thing)
def test_fast_paths_agree_with_the_checked_ones(raw: dict[str, Any]) -> None:
    from l2vpc.provider import codec
    from l2vpc.provider.cty import _values_equal

    wire = {k: (codec._unknown_to_ext(v) if isinstance(v, Unknown) else v) for k, v in raw.items()}
    decoded = _outcome(codec._from_wire_fast, wire, THING)
    assert decoded == _outcome(codec._from_wire, wire, THING, "")
    value = {k: v for k, v in raw.items() if k != "stray"}
    encoded = _outcome(encode_msgpack, value, THING)
    assert encoded == _outcome(lambda v, t: msgpack.packb(codec._to_wire(v, t, ""), use_bin_type=True), value, THING)
    if encoded[0] == "ok":
        again = decode_msgpack(encoded[1], THING)
        for other in (again, {**again, "on": not again.get("on")}, {**again, "extra": True}, dict(value)):
            assert values_equal(THING, again, other) == _values_equal(THING, again, other)


def test_equal_python_values_that_terraform_tells_apart() -> None:
    assert not values_equal(DYNAMIC, True, 1)  # True == 1 in Python; a bool is not a number
    assert not values_equal(ObjectType.of({"extra": DYNAMIC}), {"extra": 1}, {"extra": True})
    assert not values_equal(MapType(STRING), {"a": UNKNOWN}, {"a": UNKNOWN})
    assert values_equal(ObjectType.of({"a": STRING, "b": NUMBER}), {"a": "x", "b": 1}, {"a": "x", "b": 1.0})
