"""Topology files written as YAML: safe, strict reading (topology_file.read_document).

Kept apart so that `plan -f` of a plain JSON file (generated, the large ones) does not import
PyYAML. Aliases and duplicate keys are refused; errors name the file and the line.
"""

from __future__ import annotations

from typing import Any

import yaml

from l2vpc.engine.errors import ValidationError


class _FileError(Exception):
    """A problem found while reading the file; `load_yaml` adds the file name."""


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML without aliases (a few bytes could expand into gigabytes: billion laughs) and
    without duplicate keys (YAML would silently keep the last one)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _FileError(f"line {event.start_mark.line + 1}: YAML aliases (*name) are not allowed")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise _FileError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
            if isinstance(key, str | int | float | bool):
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def load_yaml(path: str, text: str) -> Any:
    """The document `text` (read from `path`) holds; ValidationError naming the file and line."""
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except _FileError as e:
        raise ValidationError(f"{path}: {e}") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ValidationError(f"{path}: {where}not valid YAML: {_one_line(e.problem or '')}") from None
    except yaml.YAMLError as e:
        raise ValidationError(f"{path}: not valid YAML: {_one_line(str(e))}") from None
    except RecursionError:
        raise ValidationError(f"{path}: nested too deeply") from None
