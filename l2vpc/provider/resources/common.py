"""What the four resources share: engine calls, plan-time checks, converging after a change.

Resource modules hold their schema and the mapping between Terraform values and engine
objects; everything that talks to the engine the same way for every resource lives here.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from l2vpc.provider.client import EngineClient, WaitInterrupted
from l2vpc.provider.cty import Unknown
from l2vpc.provider.diagnostics import Diagnostics, Path
from l2vpc.provider.framework import DataSource, Resource, ResourcePlan
from l2vpc.provider.planning import mark_computed_unknown
from l2vpc.provider.resources.checks import PlanMemory, check_plan
from l2vpc.provider.resources.recorded import Recorded
from l2vpc.provider.schema import Attribute
from l2vpc.provider.timeouts import Timeout, format_duration, timeout_of, timeouts_attribute

if TYPE_CHECKING:  # the host model costs ~10 ms to import, before the first schema of a cold start
    from l2vpc.hostconfig.failures import HostFailure

log = logging.getLogger("l2vpc.provider")


@functools.cache
def creator_key() -> str:
    """Who creates: Terraform runs providers in the configuration's directory, so a digest of
    it (and of the machine) tells one configuration's creates from another's. Adoption after a
    crash is limited to the same creator (Engine.create(adopt=key))."""
    where = f"{socket.gethostname()}:{os.path.realpath(os.getcwd())}"
    return "tf-" + hashlib.sha256(where.encode()).hexdigest()[:16]


def client_of(resource: Resource | DataSource) -> EngineClient:
    client = getattr(resource.provider, "client", None)
    if client is None:
        raise RuntimeError("the provider was used before ConfigureProvider; please report this bug")
    return client


def known(value: Any) -> bool:
    """Wholly known (no Unknown anywhere inside)."""
    if isinstance(value, Unknown):
        return False
    if isinstance(value, dict):
        return all(known(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(known(v) for v in value)
    return True


def drop_unset(data: dict[str, Any]) -> dict[str, Any]:
    """Engine input: nulls and unknowns left out (the engine applies its defaults)."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        if v is None or isinstance(v, Unknown):
            continue
        out[k] = drop_unset(v) if isinstance(v, dict) else v
    return out


def path_of(text: str) -> Path | None:
    try:
        return Path.parse(text) if text else None
    except ValueError:
        return None


def report_engine_error(exc: Exception, diags: Diagnostics, summary: str = "Invalid value") -> bool:
    """Engine errors → diagnostics with attribute paths. False when `exc` is not ours."""
    from l2vpc.engine.errors import (
        AuthenticationError,
        ConflictError,
        HostError,
        L2vpcError,
        NotFoundError,
        TemporaryError,
        ValidationError,
    )

    if isinstance(exc, ValidationError):
        for path, message in exc.problems:
            diags.error(summary, _detail(path, message), path_of(path))
    elif isinstance(exc, NotFoundError):
        diags.error("Not found", f"{exc}; it may have been deleted outside Terraform")
    elif isinstance(exc, AuthenticationError):
        diags.error("Authentication failed",
                    f"{exc}. Check the provider's token (token, or $L2VPC_TOKEN): an administrator creates one with "
                    "`l2vpc controller token create --role tenant --tenant NAME --ttl 30d`.")
    elif isinstance(exc, ConflictError):
        diags.error("Conflict", f"{exc}. Run terraform apply again to retry with fresh data.")
    elif isinstance(exc, TemporaryError):
        diags.error("Engine temporarily unavailable", f"{exc}. Retry the command in a moment.")
    elif isinstance(exc, HostError):
        diags.error(f"Host {exc.host} failed", f"{exc.step}: {exc.reason}")
    elif isinstance(exc, L2vpcError):
        diags.error("l2vpc error", str(exc))
    else:
        return False
    return True


def _detail(path: str, message: str) -> str:
    # Terraform cannot point at an attribute the configuration leaves out, so say its name.
    return f"{path}: {message}" if path else message


# --------------------------------------------------------------------------------------------
# Waiting for the hosts: bounded by the resource's `timeouts`, stopped by StopProvider

DEFAULT_TIMEOUT = "20m"
SETTLE_SECONDS = 20.0  # how long a direct connect or VPN is given to come up before a warning
PROGRESS_EVERY = 5.0  # seconds between progress lines of one resource
_PAUSE = 1.0  # between converges while a host is unreachable


def timeouts(note: str = "") -> Attribute:
    """The `timeouts` attribute of a resource (create, update, delete; DEFAULT_TIMEOUT each)."""
    return timeouts_attribute(DEFAULT_TIMEOUT, note=note)


def temporary(failure: HostFailure) -> bool:
    """A host that failed in a way that may pass (not reached, busy): worth waiting for, unlike a
    rejection. A host the controller has marked down (code "down") is not waited for: its
    services have moved, and it gets its config when it is back."""
    return failure.retryable


class ProgressLog:
    """Progress of one resource's wait as log lines (INFO, so `TF_LOG=INFO` shows them), at most
    one every PROGRESS_EVERY seconds: the newest event when the interval has passed."""

    def __init__(self, wait: Wait) -> None:
        self.wait = wait
        self._last = float("-inf")
        self._lock = threading.Lock()

    def _due(self) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._last < PROGRESS_EVERY:
                return False
            self._last = now
            return True

    def __call__(self, host: str, message: str) -> None:
        if self._due():
            # Progress without a host is the controller's own (waiting for a leader...).
            log.info("%s: waiting for %s (%s): %s", self.wait.label, f"host {host}" if host else "the controller",
                     self.wait.elapsed_text(), message)

    def note(self, message: str) -> None:
        if self._due():
            log.info("%s: %s (%s)", self.wait.label, message, self.wait.elapsed_text())


class Wait:
    """One create, update or delete waiting for the hosts: its deadline (from `timeouts`), its
    progress lines, and Terraform's stop request."""

    def __init__(self, resource: EngineResource, timeout: Timeout) -> None:
        self.resource = resource
        self.timeout = timeout
        self.started = time.monotonic()
        self.deadline = self.started + timeout.seconds
        self.label = resource.type_name
        self.hosts: set[str] = set()  # where the object itself runs, once known
        self.progress = ProgressLog(self)

    def about(self, obj: Any) -> None:
        name = getattr(obj, "name", None) or getattr(obj, "workload", None)
        self.label = f"{self.resource.type_name} {obj.id}" + (f" ({name})" if name else "")
        self.hosts = {h for h in (getattr(obj, f, None) for f in ("host", "edge_host", "vpn_host")) if h}

    @property
    def stopping(self) -> bool:
        return self.resource.provider.stopping

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def elapsed_text(self) -> str:
        return f"{format_duration(round(time.monotonic() - self.started))} of {self.timeout.text}"

    def pause(self, seconds: float = _PAUSE) -> bool:
        """Sleep up to `seconds` (never past the deadline); False when stopped or out of time."""
        self.resource.provider.stop_event.wait(max(min(seconds, self.remaining()), 0))
        return not self.stopping and self.remaining() > 0

    def interrupted(self, diags: Diagnostics, pending: Mapping[str, str], detail: str = "") -> None:
        """The error for a wait that ended early: what is still pending, and that the change is saved."""
        shown = "; ".join(f"{host}: {what}" for host, what in list(pending.items())[:5])
        if len(pending) > 5:
            shown += f" (and {len(pending) - 5} more)"
        still = f" Still pending: {shown}." if shown else ""
        said = f" ({detail.rstrip('.')})" if detail and detail not in shown else ""
        if self.stopping:
            diags.error(
                "Stopped waiting for the hosts",
                f"Terraform was interrupted while {self.label} was being applied to the hosts; stopped waiting "
                f"after {format_duration(round(time.monotonic() - self.started))}.{still}{said} The change is saved; "
                "run terraform apply again to finish it.",
            )
        else:
            diags.error(
                "Timed out waiting for the hosts",
                f"{self.label}: not done within {self.timeout.text} ({self.timeout.where}).{still}{said} "
                "The change is saved; a later terraform apply finishes it once the hosts are reachable "
                f"(or set a longer timeouts.{self.timeout.operation}).",
            )


def converge_after_change(resource: EngineResource, diags: Diagnostics, wait: Wait) -> bool:
    """Drive the hosts to the new desired state, until the deadline of `wait`.

    An unreachable host is waited for (converging again every second) until the deadline;
    then, or when Terraform asks us to stop, the apply fails naming what is pending (the
    change itself is committed: a later apply finishes it). A host that refuses the change
    becomes a warning: the object exists, its status says what is missing, and the next apply
    repairs it. False when the wait ended with an error."""
    from l2vpc.engine.errors import TemporaryError

    client = client_of(resource)
    pending: dict[str, str] = {}
    problem = ""
    while True:
        try:
            result = client.converge(wait.deadline, wait.progress)
        except WaitInterrupted as e:
            wait.interrupted(diags, e.pending or pending, e.detail or problem)
            return False
        except TemporaryError as e:  # the controller cannot be reached (restarting?) or is busy
            problem = str(e)
            wait.progress.note(f"retrying: {problem}")
            if not wait.pause():
                wait.interrupted(diags, pending, problem)
                return False
            continue
        if result.stopped:
            wait.interrupted(diags, pending)
            return False
        unreachable = [f for f in result.failures if temporary(f)]
        if unreachable:
            pending = {f.host: f"{f.step}: {f.detail}" for f in unreachable}
            if not wait.pause():
                wait.interrupted(diags, pending)
                return False
            continue
        for failure in result.failures:
            if failure.code == "down" and failure.host not in wait.hosts:
                continue  # another host the controller has marked down: not this change's concern
            diags.warning(
                f"Host {failure.host} did not converge",
                f"{failure.step}: {failure.detail}. The change is saved; run terraform apply again once the "
                "host is reachable to finish it.",
            )
        return True


class EngineResource(Resource):
    """CRUD of one engine object kind; subclasses give the schema and the value mapping.

    Every change converges the hosts before returning, so what Terraform records is what runs;
    how long that may take is the resource's `timeouts` (see converge_after_change).
    """

    kind: str = ""  # engine kind: vpc, attachment, direct_connect, vpn
    model_name: str = ""  # class in l2vpc.engine.model, for plan-time checks

    def __init__(self) -> None:
        self.memory = PlanMemory()  # what this process's plans learned (see checks.py)
        self.recorded = Recorded()  # what Terraform has recorded (see recorded.py)

    def touches_hosts(self, obj_id: str) -> bool:
        """Whether a change of this object can change what a host runs (else no converge)."""
        return True

    def settle(self, obj_id: str, diags: Diagnostics, wait: Wait) -> bool:
        """After a converge: wait until the object works (sessions, tunnels); default: no wait.
        False when the wait ended with an error."""
        return True

    def engine_data(self, values: dict[str, Any]) -> dict[str, Any]:
        """Terraform values → engine input."""
        raise NotImplementedError

    def to_state(self, obj: Any, values: dict[str, Any] | None) -> dict[str, Any]:
        """Engine object → Terraform state; `values` are the planned/prior values (or None)."""
        raise NotImplementedError

    def adjust_plan(self, plan: ResourcePlan, diags: Diagnostics) -> None:
        """The resource's own plan changes (defaults from elsewhere, replacements, warnings)."""

    def modify_plan(self, plan: ResourcePlan, diags: Diagnostics) -> None:
        """`adjust_plan`, then the engine's rules on the result (checks.py)."""
        if plan.planned is None or plan.config is None:
            return
        if plan.prior is not None and not self._confirm(plan.prior["id"], diags):
            return
        replacing = bool(plan.requires_replace)
        self.adjust_plan(plan, diags)
        if plan.requires_replace and not replacing and not plan.creating:
            mark_computed_unknown(self.schema.attributes, plan.planned, plan.config)
        if not diags.has_errors:
            check_plan(self, plan, diags)

    def vpc_changes(self, vpc_id: str) -> bool:
        """Whether this process has planned an in-place change of the VPC (see checks.py)."""
        vpcs = self.provider.resources.get("l2vpc_vpc")
        return isinstance(vpcs, EngineResource) and vpcs.memory.changes(vpc_id)

    def _wait(self, values: dict[str, Any] | None, operation: str) -> Wait:
        return Wait(self, timeout_of(values, operation, DEFAULT_TIMEOUT))

    def _confirm(self, obj_id: str, diags: Diagnostics) -> bool:
        """Terraform has the object in its state: it may never be adopted by a create again
        (recorded.py). One call per object and process: the refresh's Read usually did it, and
        in Terraform's apply walk the plan walk before it has."""
        if client_of(self).applying or not self.recorded.shown(obj_id):
            return True
        try:
            client_of(self).engine.find(self.kind, obj_id, confirm=True)
        except Exception as e:
            if report_engine_error(e, diags):
                return False
            raise
        return True

    def _after_change(self, obj_id: str, plan: dict[str, Any], diags: Diagnostics, wait: Wait) -> dict[str, Any] | None:
        """Converge the hosts (when they can be affected), wait for the object to work, and
        return its new state; None when the wait ended with an error.

        On a create, None means Terraform records nothing: the next apply's create adopts the
        object (Engine.create(adopt=True)) and finishes the job, without a duplicate and without
        the replacement a tainted resource would get. A created object is confirmed only when
        Terraform shows it back (Read, or a plan with it as prior state; see recorded.py): an
        answer can be lost with the provider, and the object must stay adoptable until then."""
        if self.touches_hosts(obj_id):
            if not converge_after_change(self, diags, wait) or not self.settle(obj_id, diags, wait):
                return None
        return self.to_state(client_of(self).engine.get(self.kind, obj_id), plan)

    def create(self, plan: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        wait = self._wait(plan, "create")
        client_of(self).applying = True
        try:
            # adopt: an identical object this provider created but Terraform never recorded
            # (the provider was killed mid-apply, or a wait timed out) is taken over instead of
            # failing as a duplicate.
            obj = client_of(self).engine.create(self.kind, self.engine_data(plan), adopt=creator_key())
        except Exception as e:
            if report_engine_error(e, diags):
                return None
            raise
        if not self.recorded.created(obj.id):
            diags.error("Duplicate object",
                        f"another resource of this configuration has just created {self.kind.replace('_', ' ')} "
                        f"{obj.id} with the same values; two resources cannot manage one object: change the "
                        "name (or workload) of one of them")
            return None
        wait.about(obj)
        return self._after_change(obj.id, plan, diags, wait)

    def read(self, state: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        # Terraform has recorded the object: it may never be adopted by a later create.
        self.recorded.shown(state["id"])
        obj = client_of(self).engine.find(self.kind, state["id"], confirm=True)
        return None if obj is None else self.to_state(obj, state)

    def update(self, prior: dict[str, Any], plan: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        wait = self._wait(plan, "update")
        client_of(self).applying = True
        try:
            obj = client_of(self).engine.update(self.kind, prior["id"], self.engine_data(plan))
        except Exception as e:
            if report_engine_error(e, diags):
                return None
            raise
        wait.about(obj)
        return self._after_change(obj.id, plan, diags, wait)

    def delete(self, state: dict[str, Any], diags: Diagnostics) -> None:
        from l2vpc.engine.errors import NotFoundError

        wait = self._wait(state, "delete")
        client_of(self).applying = True
        wait.label = f"{self.type_name} {state['id']}"
        touches = self.touches_hosts(state["id"])
        try:
            client_of(self).engine.delete(self.kind, state["id"])
        except NotFoundError:
            # Already gone, the goal of a delete; but an earlier delete may have stopped waiting
            # before the hosts caught up (timeout, Ctrl-C): make sure they have.
            touches = True
        except Exception as e:
            if report_engine_error(e, diags):
                return
            raise
        if touches:
            converge_after_change(self, diags, wait)


class EdgeServiceResource(EngineResource):
    """Direct connects and VPNs: stateful services on edge hosts whose status the agents see.

    Reads ask the edge host's agent first, so `status` is live. Creating or changing one waits
    (up to `settle_seconds`, and never past the operation's timeout) for the session or tunnel
    to come up, and warns with the agent's reason when it does not.
    """

    host_field = ""
    up_states: tuple[str, ...] = ()
    settle_seconds = SETTLE_SECONDS
    learn_seconds = 8.0

    def given_up(self, obj_id: str, status: str) -> bool:
        """A definite failure (e.g. the peer rejected our key): no point in waiting longer."""
        return False

    def wait_learned(self, obj_id: str, deadline: float) -> None:
        """Once up: wait (until `deadline`) for what the session learns, before pushing routes."""

    def _refresh(self, obj_id: str, timeout: float = 10.0) -> Any:
        engine = client_of(self).engine
        obj = engine.find(self.kind, obj_id)
        if obj is not None and getattr(obj, self.host_field):
            engine.refresh([getattr(obj, self.host_field)], timeout=max(timeout, 0.5))
        return obj

    def read(self, state: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        self._refresh(state["id"])
        return super().read(state, diags)

    def settle(self, obj_id: str, diags: Diagnostics, wait: Wait) -> bool:
        engine = client_of(self).engine
        cap = time.monotonic() + self.settle_seconds
        status, host = "", ""
        while True:
            # Short: a hung edge agent must not keep a stop request waiting.
            obj = self._refresh(obj_id, timeout=min(2.0, wait.remaining()))
            host = getattr(obj, self.host_field, None) or ""
            status = engine.get(self.kind, obj_id).status
            if status in self.up_states or self.given_up(obj_id, status):
                break
            if wait.stopping or wait.remaining() <= 0:
                detail = engine.status_detail(self.kind, obj_id)
                wait.interrupted(diags, {host or "edge": f"{self.type_name} is {status}" + (f" ({detail})" if detail else "")})
                return False
            if time.monotonic() >= cap:
                break
            wait.progress.note(f"waiting for it to come up on {host}: {status}")
            wait.pause(0.2)
        if status in self.up_states:
            self.wait_learned(obj_id, min(wait.deadline, time.monotonic() + self.learn_seconds))
            # Now that the session is up, what it learned (routes for the VPC's workloads)
            # is in the edge's report: push it.
            return converge_after_change(self, diags, wait)
        detail = engine.status_detail(self.kind, obj_id)
        diags.warning(
            f"{self.type_name} is {status}",
            (detail + ". " if detail else "") + "The configuration is in place; the status updates on the next "
            "refresh once the peer answers.",
        )
        return True
