"""Why a host did not converge, as one typed value shared by agents, executor, controller, provider.

    HostFailure(host, step, code, detail)   .retryable   str() -> "host h1: push: <detail>"
    HostFailed(failure)                     the exception carrying one (engine HostError is one)

`code` says what happened in a word the code can act on; `detail` says it in words for people.
Nobody parses `detail`: whether to retry is `retryable` (derived from the code), what to show is
`detail`. Codes:

    unreachable      the agent cannot be reached (refused, no route, no address)    retryable
    timeout          the call ran out of time                                          retryable
    busy             the agent or its transport is overloaded                          retryable
    down             the controller marked the host down (missed heartbeats)
    not_registered   no such host is registered
    tls              the agent's certificate or ours does not fit
    rejected         the agent refused the config as invalid (nothing was changed)
    stale            the agent holds a newer generation (re-plan and push again)
    converge_failed  some items could not be applied (see detail and the host's report)
    stopped          the caller stopped waiting
    internal         a bug; please report it
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Code = Literal["unreachable", "timeout", "busy", "down", "not_registered", "tls", "rejected", "stale",
               "converge_failed", "stopped", "internal"]
CODES: tuple[Code, ...] = ("unreachable", "timeout", "busy", "down", "not_registered", "tls", "rejected", "stale",
                           "converge_failed", "stopped", "internal")
RETRYABLE: frozenset[str] = frozenset({"unreachable", "timeout", "busy"})
MAX_LISTED = 5  # item failures named in a detail before "(and N more)"


@dataclass(frozen=True, slots=True)
class HostFailure:
    host: str
    step: str  # what we were doing: connect | push | report | validate | converge | lookup | down | stopped
    code: Code
    detail: str

    @property
    def retryable(self) -> bool:
        """Trying again after a pause may succeed (the host was not reached, or was busy)."""
        return self.code in RETRYABLE

    def __str__(self) -> str:
        return f"host {self.host}: {self.step}: {self.detail}"

    def to_dict(self) -> dict[str, str]:
        return {"host": self.host, "step": self.step, "code": self.code, "detail": self.detail}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> HostFailure:
        """From `to_dict` output (stored by a controller; unknown codes read as internal)."""
        code = str(data.get("code", ""))
        return HostFailure(str(data.get("host", "")), str(data.get("step", "")),
                           code_of(code),
                           str(data.get("detail", data.get("error", ""))))


def code_of(text: str, default: Code = "internal") -> Code:
    """`text` as a Code (from a store or the wire), `default` when it is none we know."""
    for code in CODES:
        if code == text:
            return code
    return default


class HostFailed(Exception):
    """A call to a host's agent failed; `failure` says how."""

    def __init__(self, failure: HostFailure) -> None:
        self.failure = failure
        super().__init__(str(failure))

    @property
    def host(self) -> str:
        return self.failure.host

    @property
    def step(self) -> str:
        return self.failure.step

    @property
    def reason(self) -> str:
        return self.failure.detail

    @property
    def retryable(self) -> bool:
        return self.failure.retryable


@dataclass(frozen=True, slots=True)
class Failure:
    """Why one item of the desired config is not in place (an agent's words). `path` is a field
    path, e.g. `ports[id=a1]` or `ports[2].mtu`."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def split_reason(reason: str) -> Failure:
    """'ports[2].mtu: 20000 is outside ...' → Failure('ports[2].mtu', '20000 is outside ...')."""
    path, sep, rest = reason.partition(": ")
    return Failure(path, rest) if sep else Failure("", reason)


def summarize(items: Iterable[tuple[str, str]]) -> str:
    """Item failures (path, reason) as one line: the first few, then how many more."""
    listed = list(items)
    text = "; ".join(f"{path}: {reason}" if path else reason for path, reason in listed[:MAX_LISTED])
    more = len(listed) - MAX_LISTED
    return text + (f" (and {more} more)" if more > 0 else "")


def push_failure(host: str, status: str, items: Iterable[tuple[str, str]]) -> HostFailure | None:
    """What an agent's answer to a push means (status as the agent API names it:
    converged | rejected | stale | failed): None when it converged."""
    if status == "converged":
        return None
    detail = summarize(items)
    if status == "rejected":
        return HostFailure(host, "validate", "rejected", "agent rejected the config: " + detail)
    if status == "stale":
        return HostFailure(host, "stale", "stale", detail)
    if status == "failed":
        return HostFailure(host, "converge", "converge_failed", detail)
    return HostFailure(host, "push", "internal", f"agent answered with unknown status {status!r}")
