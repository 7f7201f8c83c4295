"""Go durations of the `timeouts` attribute: parsing, the plan-time validator, defaults."""

from __future__ import annotations

import pytest

from l2vpc.provider.diagnostics import Diagnostics, Path
from l2vpc.provider.l2vpc_provider import build_provider
from l2vpc.provider.timeouts import format_duration, is_duration, parse_duration, timeout_of


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("10m", 600), ("1h", 3600), ("1h30m", 5400), ("1.5h", 5400), ("250ms", 0.25),
    ("2m0.5s", 120.5), (".5s", 0.5), ("0", 0), ("1h1m1s", 3661), ("100us", 1e-4), ("3µs", 3e-6),
])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "5 minutes", "-1m", "+1m", "1d", "m", "1.2.3s", "1h 30m", "1H"])
def test_not_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_validator_names_the_path_and_what_is_allowed() -> None:
    diags = Diagnostics()
    is_duration()("5 minutes", Path.parse("timeouts.create"), diags)
    is_duration()("0s", Path.parse("timeouts.delete"), diags)
    is_duration()("20m", Path.parse("timeouts.update"), diags)
    assert [(str(d.path), d.detail) for d in diags.errors] == [
        ("timeouts.create", 'timeouts.create must be a duration like 30s, 10m or 1h, got "5 minutes".'),
        ("timeouts.delete", 'timeouts.delete must be longer than 0s, got "0s".'),
    ]


def test_timeout_of_uses_the_entry_or_the_default() -> None:
    assert timeout_of({"timeouts": {"create": "90s", "update": None}}, "create", "20m").seconds == 90
    update = timeout_of({"timeouts": {"create": "90s", "update": None}}, "update", "20m")
    assert (update.seconds, update.text, update.where) == (1200, "20m", 'timeouts.update = "20m"')
    assert timeout_of({"timeouts": None}, "delete", "20m").seconds == 1200
    assert timeout_of(None, "delete", "20m").seconds == 1200
    assert timeout_of({"timeouts": {"delete": "nonsense"}}, "delete", "5m").seconds == 300  # state edited by hand


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0, 0.5, 3, 59, 60, 90, 3600, 3725)] == \
        ["0s", "0.5s", "3s", "59s", "1m", "1m30s", "1h", "1h2m5s"]


def test_every_resource_has_timeouts_and_data_sources_do_not() -> None:
    provider = build_provider()
    for resource in provider.resources.values():
        attr = resource.schema.attributes["timeouts"]
        assert attr.optional and not attr.computed and attr.nested is not None
        assert set(attr.nested.attributes) == {"create", "update", "delete"}
    for data_source in provider.data_sources.values():
        assert "timeouts" not in data_source.schema.attributes
