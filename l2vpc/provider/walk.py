"""Walking Terraform values along a schema: nested elements, write-only values, defaults.

Nested attributes hold a single object, a list, a set or a map of objects; `walk_nested`
visits each element together with its counterparts in other values of the same attribute
(configuration, prior state), matching list elements by index, map elements by key and set
elements by their configurable attributes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from l2vpc.provider.cty import Unknown, copy_value, values_equal
from l2vpc.provider.diagnostics import Key, Path
from l2vpc.provider.framework import Value
from l2vpc.provider.schema import Attribute, Nesting


def _elements(nesting: Nesting, value: Any, path: Path) -> Iterator[tuple[Path, Any, int | str]]:
    """(path, element, index or map key) for each element of a nested attribute's known value."""
    if nesting is Nesting.SINGLE:
        yield path, value, 0
    elif nesting is Nesting.MAP:
        for k, element in value.items():
            yield path.child(Key(k)), element, k
    else:
        for i, element in enumerate(value):
            # Sets have no stable index: paths stop at the set attribute.
            yield (path.child(i) if nesting is Nesting.LIST else path), element, i


def _counterpart(a: Attribute, nesting: Nesting, other: Any, index: int | str, element: Any) -> Any:
    """The element of `other` (config or prior value of the same attribute) matching `element`."""
    if isinstance(other, Unknown) or other is None:
        return None
    if nesting is Nesting.SINGLE:
        return other
    if nesting is Nesting.MAP:
        return other.get(index) if isinstance(other, dict) else None
    if not isinstance(other, list):
        return None
    if nesting is Nesting.LIST:
        return other[index] if isinstance(index, int) and index < len(other) else None
    # Sets: the element whose configurable attributes all match.
    assert a.nested is not None
    for candidate in other:
        if (
            isinstance(candidate, dict)
            and isinstance(element, dict)
            and _same_configured(a.nested.attributes, element, candidate)
        ):
            return candidate
    return None


def _same_configured(attributes: Mapping[str, Attribute], element: Value, candidate: Value) -> bool:
    for name, a in attributes.items():
        if a.computed and candidate.get(name) is None:
            continue
        if not values_equal(a.value_type, element.get(name), candidate.get(name)):
            return False
    return True


def walk_nested(
    a: Attribute,
    path: Path,
    value: Any,
    others: Sequence[Any],
    visit: Callable[[Mapping[str, Attribute], Path, Value, list[Any]], None],
) -> None:
    """Call visit(attributes, path, element, [matching elements of others]) for each element."""
    if a.nested is None or value is None or isinstance(value, Unknown):
        return
    nesting = a.nested.nesting
    for element_path, element, key in _elements(nesting, value, path):
        if not isinstance(element, dict):
            continue
        matches = [_counterpart(a, nesting, o, key, element) for o in others]
        visit(a.nested.attributes, element_path, element, matches)


_WRITE_ONLY: dict[int, tuple[Mapping[str, Attribute], bool]] = {}


def has_write_only(attributes: Mapping[str, Attribute]) -> bool:
    """Whether any attribute (nested ones included) is write-only; remembered per schema, so
    the walks below cost nothing for the (usual) schemas without any."""
    known = _WRITE_ONLY.get(id(attributes))
    if known is not None and known[0] is attributes:
        return known[1]
    found = any(a.write_only or (a.nested is not None and has_write_only(a.nested.attributes))
                for a in attributes.values())
    _WRITE_ONLY[id(attributes)] = (attributes, found)  # holds `attributes`: its id stays its own
    return found


def null_write_only(attributes: Mapping[str, Attribute], value: Value) -> None:
    if not has_write_only(attributes):
        return

    def visit(attrs: Mapping[str, Attribute], base: Path, v: Value, _: list[Any]) -> None:
        for name, a in attrs.items():
            if a.write_only:
                v[name] = None
            else:
                walk_nested(a, base.child(name), v.get(name), [], visit)

    visit(attributes, Path(), value, [])


def with_write_only(attributes: Mapping[str, Attribute], planned: Value, config: Value | None) -> Value:
    """The planned values plus the write-only ones from the configuration (for create/update)."""
    if not has_write_only(attributes):
        return planned

    def visit(attrs: Mapping[str, Attribute], base: Path, v: Value, matches: list[Any]) -> None:
        cfg = matches[0] if matches and isinstance(matches[0], dict) else {}
        for name, a in attrs.items():
            if a.write_only:
                v[name] = copy_value(cfg.get(name))
            else:
                walk_nested(a, base.child(name), v.get(name), [cfg.get(name)], visit)

    visit(attributes, Path(), planned, [config or {}])
    return planned


def with_defaults(attributes: Mapping[str, Attribute], value: Value) -> Value:
    for name, a in attributes.items():
        if value.get(name) is None and a.has_default:
            value[name] = copy_value(a.default)
    return value
