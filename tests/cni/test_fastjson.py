"""fastjson (the plugin's JSON, without the json package's start-up cost) reads and writes what
json does, and refuses what json refuses; the plugin imports neither json nor re."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from l2vpc.cni import fastjson

DOCUMENTS: list[Any] = [
    {"cniVersion": "1.1.0", "name": "l2vpc-blue", "type": "l2vpc-cni", "vpc": "blue",
     "runtimeConfig": {"ips": ["10.0.0.5/24"]}, "prevResult": {"interfaces": [{"name": "net1", "mtu": 9000}]}},
    {"ok": False, "code": 102, "msg": "a workload attaches at most 10 VPCs: 'x' \"quoted\" \\ back\nline",
     "details": "rule vpcs_per_workload"},
    {"unicode": "é ü 漢字 \u2028 \U0001f600", "control": "\x00\x1f\x7f", "empty": {}, "list": [], "nested": [[[]]]},
    [1, -2, 0, 3.5, -0.25, 1e100, 1.5e-7, 12345678901234567890, True, False, None],
    "just a string", 42, 0.1, None, True,
]


@pytest.mark.parametrize("doc", DOCUMENTS)
def test_same_as_json(doc: Any) -> None:
    text = json.dumps(doc)
    assert fastjson.loads(text) == json.loads(text)
    assert fastjson.loads("  \n" + json.dumps(doc, indent=2) + "\r\n\t ") == doc
    assert fastjson.dumps(doc) == json.dumps(doc, separators=(",", ":"))
    assert json.loads(fastjson.dumps(doc)) == doc


def test_tuples_and_special_numbers() -> None:
    assert fastjson.dumps({"a": (1, 2)}) == '{"a":[1,2]}'
    assert fastjson.dumps([float("nan"), float("inf"), float("-inf")]) == "[NaN,Infinity,-Infinity]"
    loaded = fastjson.loads("[NaN, Infinity, -Infinity]")
    assert loaded[0] != loaded[0] and loaded[1:] == [float("inf"), float("-inf")]


@pytest.mark.parametrize("text", ["", "   ", "{oops", '{"a": 1} x', "[1, 2", '{"a" 1}', '"unterminated', "tru",
                                  '{"a": 1,}', "[1,]", "01", '"\\x"', "{'a': 1}"])
def test_refuses_what_json_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        fastjson.loads(text)


def test_refuses_what_json_cannot_write() -> None:
    for bad in ({1: "a"}, {"a": object()}, {"a": {1, 2}}):
        with pytest.raises(TypeError):
            fastjson.dumps(bad)


def run_alone(code: str) -> str:
    """`code` in a fresh interpreter with none of this process's imports."""
    return subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path[:0] = {sys.path!r}; {code}"],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_the_plugin_imports_no_json_package_nor_re() -> None:
    assert run_alone("import l2vpc.cni.plugin; print(sorted(m for m in ('json', 're', 'typing', 'dataclasses', "
                     "'socket') if m in sys.modules))") == "[]"


@pytest.mark.parametrize("text", ["{oops", '{"a": 1', '["x" 1]', '"\\x"', "[1,]"])
def test_malformed_input_without_the_json_package_imported(text: str) -> None:
    code = (f"from l2vpc.cni import fastjson\ntry:\n    fastjson.loads({text!r})\nexcept ValueError as e:\n"
            "    print('ValueError', type(e).__name__)")
    assert run_alone(code).startswith("ValueError")
