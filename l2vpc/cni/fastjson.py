"""JSON for the plugin's start-up: `loads` and `dumps` on CPython's C scanner (`_json`), without
importing the json package, whose regular expressions are compiled at import (with `re` itself,
about 10 ms of every plugin run on a busy host, a sixth of an ADD).

Same results as json.loads/json.dumps for what the plugin reads and writes (objects, arrays,
strings, numbers, true/false/null; tests/cni/test_fastjson.py holds them equal); malformed input
raises ValueError. (CPython's `_json` is what json itself runs on; other Pythons are not ours.)
"""

from __future__ import annotations

from _json import encode_basestring_ascii as _string
from _json import make_scanner

TYPE_CHECKING = False  # typing itself costs ms at start-up; mypy reads the name
if TYPE_CHECKING:
    from typing import Any

_WHITESPACE = " \t\n\r"


class _Context:
    """What the C scanner reads of a json.JSONDecoder: plain values, no hooks."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> float:
        return float(name)  # NaN, Infinity, -Infinity, as json.loads takes them


_make: Any = make_scanner  # typeshed's stub wants a decoder; any object with its attributes does
_scan = _make(_Context())


def loads(text: str) -> Any:
    """json.loads(text); ValueError (naming the position) when it is not one JSON value."""
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration as e:
        raise ValueError(f"Expecting value: char {e.value}") from None
    except SystemError:
        # The scanner words its errors with json.decoder's exception, looked up among the
        # imported modules only: malformed input is worth the json package's import.
        import json

        return json.loads(text)
    if text[end:].strip(_WHITESPACE):
        raise ValueError(f"Extra data: char {end}")
    return value


def dumps(value: Any) -> str:
    """json.dumps(value, separators=(",", ":")) for dicts, lists, tuples, strings, ints, floats,
    booleans and None (TypeError for anything else, as json.dumps)."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out)


def _encode(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(_string(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            out.append("NaN" if value != value else ("Infinity" if value > 0 else "-Infinity"))
        else:
            out.append(float.__repr__(value))
    elif isinstance(value, dict):
        out.append("{")
        first = True
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"keys must be str, not {type(k).__name__}")
            if not first:
                out.append(",")
            first = False
            out.append(_string(k))
            out.append(":")
            _encode(v, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, v in enumerate(value):
            if i:
                out.append(",")
            _encode(v, out)
        out.append("]")
    else:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
