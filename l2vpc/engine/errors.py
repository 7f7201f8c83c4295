"""Errors of the engine, by what the caller should do next.

    L2vpcError
    ├── UserError                 bad input: fix it and try again (one line, names the field)
    │   ├── ValidationError       a value or a cross-object rule is violated
    │   ├── NotFoundError         no such object (also: another tenant's object)
    │   ├── ConflictError         someone else changed the object first (stale generation,
    │   │                         duplicate name, value already allocated): re-read and retry
    │   └── AuthenticationError   the controller refused the caller's token: get a valid one
    ├── TemporaryError            retry after a delay (database busy, controller unreachable)
    ├── HostError                 a host could not be converged: carries the shared typed
    │                             l2vpc.hostconfig.failures.HostFailure (host, step, code,
    │                             retryable, detail); also a HostFailed, as agents raise it
    └── StoreError                the store is unusable (corrupt, too new a schema version)
"""

from __future__ import annotations

from l2vpc.hostconfig.failures import Code, HostFailed, HostFailure


class L2vpcError(Exception):
    """Base of every error the engine raises on purpose."""


class UserError(L2vpcError):
    """The request is wrong; retrying it unchanged will fail again."""


class AuthenticationError(UserError):
    """The controller refused the token (unknown, expired, revoked, or of the wrong role)."""


class Problem(tuple[str, str]):
    """A (path, message) pair that also names the rule it breaks: `rule` is one of
    validation.RULES ('' for a field's own format or range). Unpacks and compares as the pair,
    so callers that only read paths and messages see no difference; clients that must tell
    rules apart (the CNI plugin's error codes) read `rule` instead of parsing the message."""

    rule: str

    def __new__(cls, path: str, message: str, rule: str = "") -> Problem:
        self = super().__new__(cls, (path, message))
        self.rule = rule
        return self


class ValidationError(UserError):
    """One or more rules are violated. `problems` holds (path, message) pairs (Problem where
    the rule is named; `rule` names it for a single message)."""

    def __init__(self, problems: list[tuple[str, str]] | str, path: str = "", *, rule: str = "") -> None:
        if isinstance(problems, str):
            problems = [Problem(path, problems, rule)]
        self.problems = problems
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in problems))

    @property
    def first(self) -> tuple[str, str]:
        return self.problems[0]

    @property
    def rules(self) -> list[str]:
        """The rule of each problem, in order ('' where none is named)."""
        return [p.rule if isinstance(p, Problem) else "" for p in self.problems]


class NotFoundError(UserError):
    def __init__(self, kind: str, ident: str) -> None:
        self.kind, self.ident = kind, ident
        super().__init__(f"{kind} {ident!r} not found")


class ConflictError(UserError):
    """A concurrent change or an allocation clash; nothing was written."""


class TemporaryError(L2vpcError):
    """Try again later (with backoff)."""


class HostError(L2vpcError, HostFailed):
    """A host could not be converged. `failure` is the typed value; `host`, `step`, `reason`
    (the detail) and `retryable` read from it."""

    def __init__(self, host: str, step: str, reason: str, code: Code = "converge_failed") -> None:
        HostFailed.__init__(self, HostFailure(host, step, code, reason))

    @classmethod
    def of(cls, failure: HostFailure) -> HostError:
        return cls(failure.host, failure.step, failure.detail, failure.code)


class StoreError(L2vpcError):
    """The store cannot be used (damaged file, schema from a newer version, ...)."""
