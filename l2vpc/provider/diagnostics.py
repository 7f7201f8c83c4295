"""Diagnostics: what the provider tells Terraform went wrong (or deserves a warning).

Diagnostics are collected, not raised: every step appends to a `Diagnostics` and the RPC layer
sends them all, so a user sees every bad attribute of a resource at once. A diagnostic may
point at an attribute with a `Path`; Terraform then underlines that line of the configuration.

    diags.error("Invalid MTU", "mtu must be between 576 and 9000, got 9001.", Path("mtu"))
    diags.warning("Workloads will restart", "...", Path.parse("dhcp.range_start"))
    diags.bug("planned state is not an object")   # our own mistake: asks the user to report it

`DiagnosticError` exists for code deep in a call stack that cannot return diagnostics; the
framework turns it back into diagnostics at the RPC boundary.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

REPORT_HINT = (
    "This is a bug in the l2vpc provider; please report it at the project's issue tracker "
    "together with the Terraform version and the configuration that triggered it."
)


class Severity(enum.IntEnum):
    # Values are the protocol's numbers.
    ERROR = 1
    WARNING = 2


@dataclass(frozen=True, slots=True)
class Key:
    """A map key step in a path (distinct from an attribute name)."""

    key: str

    def __str__(self) -> str:
        return f'["{self.key}"]'


Step = str | int | Key

_STEP_RE = re.compile(r'\.?([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]')


class Path(tuple[Step, ...]):
    """A path into a value: attribute names (str), list indices (int), map keys (Key).

    Path("dhcp", "range_start"), Path("ports", 0, "name"), Path("tags", Key("env")).
    """

    def __new__(cls, *steps: Step) -> Path:
        _check_steps(steps)
        return super().__new__(cls, steps)

    @classmethod
    def parse(cls, text: str) -> Path:
        """Parse 'dhcp.range_start', 'ports[0].name' or 'tags["env"]'."""
        steps: list[Step] = []
        pos = 0
        while pos < len(text):
            m = _STEP_RE.match(text, pos)
            if not m or (m.start() == 0 and text.startswith(".")):
                raise ValueError(f"not an attribute path: {text!r}")
            name, index, key = m.groups()
            steps.append(name if name is not None else int(index) if index is not None else Key(key))
            pos = m.end()
        return cls(*steps)

    def child(self, *steps: Step) -> Path:
        # Planning walks build one per attribute per call: check only the new steps.
        _check_steps(steps)
        return tuple.__new__(Path, self + steps)

    def __str__(self) -> str:
        out = ""
        for s in self:
            if isinstance(s, str):
                out += f".{s}" if out else s
            elif isinstance(s, int):
                out += f"[{s}]"
            else:
                out += str(s)
        return out

    def __repr__(self) -> str:
        return f"Path({', '.join(repr(s) for s in self)})"


def _check_steps(steps: tuple[Any, ...]) -> None:
    for s in steps:
        if type(s) is not str and (not isinstance(s, str | int | Key) or isinstance(s, bool)):
            raise TypeError(f"path steps are str, int or Key, not {type(s).__name__}")


def as_path(value: Path | str | Iterable[Step] | None) -> Path | None:
    if value is None or isinstance(value, Path):
        return value
    if isinstance(value, str):
        return Path.parse(value) if value else None
    return Path(*value)


@dataclass(frozen=True, slots=True)
class Diagnostic:
    severity: Severity
    summary: str
    detail: str = ""
    path: Path | None = None

    def __str__(self) -> str:
        where = f" ({self.path})" if self.path else ""
        text = f"{self.severity.name.lower()}: {self.summary}{where}"
        return f"{text}: {self.detail}" if self.detail else text


class Diagnostics:
    """An ordered, de-duplicated collection of diagnostics."""

    __slots__ = ("_items", "_seen")

    def __init__(self, items: Iterable[Diagnostic] = ()) -> None:
        self._items: list[Diagnostic] = []
        self._seen: set[Diagnostic] = set()
        self.extend(items)

    def add(self, diagnostic: Diagnostic) -> None:
        # Nested attributes and several validators can report the same problem twice.
        if diagnostic not in self._seen:
            self._seen.add(diagnostic)
            self._items.append(diagnostic)

    def extend(self, diagnostics: Iterable[Diagnostic]) -> None:
        for d in diagnostics:
            self.add(d)

    def error(self, summary: str, detail: str = "", path: Path | str | Iterable[Step] | None = None) -> None:
        self.add(Diagnostic(Severity.ERROR, summary, detail, as_path(path)))

    def warning(
        self, summary: str, detail: str = "", path: Path | str | Iterable[Step] | None = None
    ) -> None:
        self.add(Diagnostic(Severity.WARNING, summary, detail, as_path(path)))

    def bug(self, summary: str, detail: str = "", path: Path | str | Iterable[Step] | None = None) -> None:
        """An error that is our fault, not the user's: says so and asks for a report."""
        text = f"{detail}\n\n{REPORT_HINT}" if detail else REPORT_HINT
        self.error(summary, text, path)

    @property
    def has_errors(self) -> bool:
        return any(d.severity is Severity.ERROR for d in self._items)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self._items if d.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self._items if d.severity is Severity.WARNING]

    def __iter__(self) -> Iterator[Diagnostic]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __repr__(self) -> str:
        return f"Diagnostics({self._items!r})"


class DiagnosticError(Exception):
    """Raise to abort with diagnostics when returning them is impractical."""

    def __init__(
        self, summary: str, detail: str = "", path: Path | str | Iterable[Step] | None = None
    ) -> None:
        super().__init__(f"{summary}: {detail}" if detail else summary)
        self.diagnostics = Diagnostics([Diagnostic(Severity.ERROR, summary, detail, as_path(path))])

    @classmethod
    def of(cls, diagnostics: Diagnostics) -> DiagnosticError:
        err = cls("; ".join(d.summary for d in diagnostics.errors) or "error")
        err.diagnostics = diagnostics
        return err


def to_proto(diagnostics: Iterable[Diagnostic], pb: Any) -> list[Any]:
    """Convert to tfplugin6 Diagnostic messages (pb is the generated tfplugin6_pb2 module)."""
    out = []
    for d in diagnostics:
        msg = pb.Diagnostic(severity=int(d.severity), summary=d.summary, detail=d.detail)
        if d.path:
            msg.attribute.CopyFrom(path_to_proto(d.path, pb))
        out.append(msg)
    return out


def path_to_proto(path: Path, pb: Any) -> Any:
    steps = []
    for s in path:
        if isinstance(s, str):
            steps.append(pb.AttributePath.Step(attribute_name=s))
        elif isinstance(s, int):
            steps.append(pb.AttributePath.Step(element_key_int=s))
        else:
            steps.append(pb.AttributePath.Step(element_key_string=s.key))
    return pb.AttributePath(steps=steps)
