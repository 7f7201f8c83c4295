"""Validators: small named checks on attribute values and across attributes.

Attribute validators run on values that are known and not null (a value Terraform does not
know yet is checked when it is, during apply); each reports an error naming the attribute
and what is allowed:

    string(required=True, validators=[one_of("single_region", "multi_region")])
    integer(optional=True, default=1500, validators=[between(576, 9000)])
    list_of(STRING, optional=True, validators=[each(is_ipv4_address())])

Config validators look at the whole configuration of a resource (unknown values count as
"set but not yet known"):

    class Vpn(Resource):
        config_validators = (exactly_one_of("pre_shared_key", "pre_shared_key_wo"),)

Write your own by subclassing `ValueValidator` (return an error text or None) or by passing
any callable with the `Validator` signature.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from l2vpc.provider.cty import Unknown, get_path
from l2vpc.provider.diagnostics import Diagnostics, Key, Path


class Validator(Protocol):
    @property
    def description(self) -> str: ...

    def __call__(self, value: Any, path: Path, diags: Diagnostics) -> None: ...


class ConfigValidator(Protocol):
    @property
    def description(self) -> str: ...

    def __call__(self, config: Mapping[str, Any], diags: Diagnostics) -> None: ...


class ValueValidator:
    """Base for validators that either accept a value or explain what is allowed."""

    description = ""

    def check(self, value: Any) -> str | None:
        """Return None when valid, else what is wrong, e.g. 'must be at most 10, got 11'."""
        raise NotImplementedError

    def __call__(self, value: Any, path: Path, diags: Diagnostics) -> None:
        problem = self.check(value)
        if problem:
            diags.error("Invalid attribute value", f"{path} {problem}.", path)


def _show(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


# Validators are classes named like functions: they read as rules in schema definitions.
@dataclass(frozen=True)
class one_of(ValueValidator):
    allowed: tuple[Any, ...]

    def __init__(self, *allowed: Any) -> None:
        object.__setattr__(self, "allowed", allowed)

    @property
    def description(self) -> str:  # type: ignore[override]
        return "one of " + ", ".join(f"`{_show(a)}`" for a in self.allowed)

    def check(self, value: Any) -> str | None:
        if value in self.allowed:
            return None
        return f"must be one of {', '.join(_show(a) for a in self.allowed)}; got {_show(value)}"


@dataclass(frozen=True)
class between(ValueValidator):
    low: int | float
    high: int | float

    @property
    def description(self) -> str:  # type: ignore[override]
        return f"between {self.low} and {self.high}"

    def check(self, value: Any) -> str | None:
        if self.low <= value <= self.high:
            return None
        return f"must be between {self.low} and {self.high}, got {_show(value)}"


@dataclass(frozen=True)
class at_least(ValueValidator):
    low: int | float

    @property
    def description(self) -> str:  # type: ignore[override]
        return f"at least {self.low}"

    def check(self, value: Any) -> str | None:
        return None if value >= self.low else f"must be at least {self.low}, got {_show(value)}"


@dataclass(frozen=True)
class multiple_of(ValueValidator):
    step: int

    @property
    def description(self) -> str:  # type: ignore[override]
        return f"a multiple of {self.step}"

    def check(self, value: Any) -> str | None:
        return None if value % self.step == 0 else f"must be a multiple of {self.step}, got {_show(value)}"


@dataclass(frozen=True)
class whole_number(ValueValidator):
    description = ""  # implied by the attribute being an integer

    def check(self, value: Any) -> str | None:
        if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
            return None
        return f"must be a whole number, got {_show(value)}"


@dataclass(frozen=True)
class length_between(ValueValidator):
    """Length of a string (in characters) or of a list, set or map."""

    low: int
    high: int

    @property
    def description(self) -> str:  # type: ignore[override]
        return f"{self.low} to {self.high} long"

    def check(self, value: Any) -> str | None:
        n = len(value)
        if self.low <= n <= self.high:
            return None
        unit = "characters" if isinstance(value, str) else "elements"
        return f"must have {self.low} to {self.high} {unit}, got {n}"


@dataclass(frozen=True)
class matches(ValueValidator):
    pattern: str
    explanation: str  # what the pattern allows, in words, e.g. "lowercase letters, digits and -"

    @property
    def description(self) -> str:  # type: ignore[override]
        return self.explanation

    def check(self, value: Any) -> str | None:
        if re.fullmatch(self.pattern, value):
            return None
        return f"may contain only {self.explanation}; got {_show(value)}"


@dataclass(frozen=True)
class is_ipv4_address(ValueValidator):
    description = "an IPv4 address"

    def check(self, value: Any) -> str | None:
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            return f"must be an IPv4 address such as 192.0.2.10, got {_show(value)}"
        return None


@dataclass(frozen=True)
class is_ipv4_cidr(ValueValidator):
    """A network in CIDR form (host bits zero), e.g. 10.0.0.0/24."""

    description = "an IPv4 network in CIDR form"

    def check(self, value: Any) -> str | None:
        try:
            ipaddress.IPv4Network(value, strict=True)
        except ValueError:
            return f"must be an IPv4 network in CIDR form such as 10.0.0.0/24, got {_show(value)}"
        return None


@dataclass(frozen=True)
class is_ipv4_address_or_cidr(ValueValidator):
    """An address (10.0.0.5) or a network in CIDR form, host bits zero (10.1.0.0/16)."""

    description = "an IPv4 address or network in CIDR form"

    def check(self, value: Any) -> str | None:
        try:
            ipaddress.IPv4Network(value, strict=True)
        except ValueError:
            return f"must be an IPv4 address such as 10.0.0.5 or a network such as 10.1.0.0/16, got {_show(value)}"
        return None


@dataclass(frozen=True)
class is_ipv4_interface(ValueValidator):
    """An address with its prefix length, e.g. 10.0.0.5/24."""

    description = "an IPv4 address with prefix length"

    def check(self, value: Any) -> str | None:
        try:
            if "/" not in value:
                raise ValueError
            ipaddress.IPv4Interface(value)
        except ValueError:
            return f"must be an IPv4 address with prefix length such as 10.0.0.5/24, got {_show(value)}"
        return None


@dataclass(frozen=True)
class each(ValueValidator):
    """Apply a validator to every element of a list or set (or every value of a map)."""

    inner: Validator

    @property
    def description(self) -> str:  # type: ignore[override]
        inner = getattr(self.inner, "description", "")
        return f"each element {inner}" if inner else ""

    def __call__(self, value: Any, path: Path, diags: Diagnostics) -> None:
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for k, v in items:
            if v is not None and not isinstance(v, Unknown):
                self.inner(v, path.child(Key(k) if isinstance(k, str) else k), diags)


# --------------------------------------------------------------------------------------------
# Across attributes


def _state(config: Mapping[str, Any], path: Path) -> str:
    value = get_path(config, [s for s in path if isinstance(s, str | int)])
    if isinstance(value, Unknown):
        return "unknown"
    return "unset" if value is None else "set"


@dataclass(frozen=True)
class exactly_one_of:
    paths: tuple[Path, ...]

    def __init__(self, *paths: str) -> None:
        object.__setattr__(self, "paths", tuple(Path.parse(p) for p in paths))

    @property
    def description(self) -> str:
        return "exactly one of " + ", ".join(f"`{p}`" for p in self.paths)

    def __call__(self, config: Mapping[str, Any], diags: Diagnostics) -> None:
        states = [_state(config, p) for p in self.paths]
        names = " or ".join(str(p) for p in self.paths)
        if states.count("set") > 1:
            chosen = [str(p) for p, s in zip(self.paths, states, strict=True) if s == "set"]
            diags.error(
                "Conflicting attributes",
                f"Set only one of {names}; {' and '.join(chosen)} are both set.",
                self.paths[states.index("set")],
            )
        elif "unknown" not in states and "set" not in states:
            diags.error("Missing attribute", f"Set exactly one of {names}.", self.paths[0])


@dataclass(frozen=True)
class conflicts_with:
    """At most one of the paths may be set."""

    paths: tuple[Path, ...]

    def __init__(self, *paths: str) -> None:
        object.__setattr__(self, "paths", tuple(Path.parse(p) for p in paths))

    @property
    def description(self) -> str:
        return "at most one of " + ", ".join(f"`{p}`" for p in self.paths)

    def __call__(self, config: Mapping[str, Any], diags: Diagnostics) -> None:
        chosen = [p for p in self.paths if _state(config, p) == "set"]
        if len(chosen) > 1:
            diags.error(
                "Conflicting attributes",
                f"{' and '.join(str(p) for p in chosen)} cannot be set together.",
                chosen[1],
            )


@dataclass(frozen=True)
class required_with:
    """When `path` is set, every one of `others` must be set too."""

    path: Path
    others: tuple[Path, ...]

    def __init__(self, path: str, *others: str) -> None:
        object.__setattr__(self, "path", Path.parse(path))
        object.__setattr__(self, "others", tuple(Path.parse(p) for p in others))

    @property
    def description(self) -> str:
        return f"`{self.path}` requires " + ", ".join(f"`{p}`" for p in self.others)

    def __call__(self, config: Mapping[str, Any], diags: Diagnostics) -> None:
        if _state(config, self.path) != "set":
            return
        for other in self.others:
            if _state(config, other) == "unset":
                diags.error("Missing attribute", f"{other} is required when {self.path} is set.", other)
