"""What the four resources share: engine calls, plan-time checks, converging after a change.

Resource modules hold their schema and the mapping between Terraform values and engine
objects; everything that talks to the engine the same way for every resource lives here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from l2vpc.provider.codec import Unknown
from l2vpc.provider.diagnostics import Diagnostics, Path
from l2vpc.provider.framework import DataSource, Resource

if TYPE_CHECKING:
    from l2vpc.provider.client import EngineClient


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


def check_fields(model_name: str, data: dict[str, Any], diags: Diagnostics, unknown: set[str]) -> None:
    """Plan-time: the engine's single-object rules on the known values.

    Unknown values are left out; a problem inside an unknown value (or its path a prefix of
    one) is dropped: it is checked again at apply, when the value is known.
    """
    from l2vpc.engine import model
    from l2vpc.engine.errors import ValidationError

    cls = getattr(model, model_name)
    try:
        model.parse(cls, drop_unset(data))
    except ValidationError as e:
        for path, message in e.problems:
            if any(_within(path, u) or _within(u, path) for u in unknown):
                continue
            diags.error("Invalid value", _detail(path, message), path_of(path))


def _within(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith((prefix + ".", prefix + "["))


def unknown_fields(data: Any, prefix: str = "") -> set[str]:
    """Dotted paths of every unknown value inside `data`."""
    if isinstance(data, Unknown):
        return {prefix}
    out: set[str] = set()
    if isinstance(data, dict):
        for k, v in data.items():
            out |= unknown_fields(v, f"{prefix}.{k}" if prefix else k)
    elif isinstance(data, list | tuple):
        for i, v in enumerate(data):
            out |= unknown_fields(v, f"{prefix}[{i}]")
    return out


def converge_after_change(resource: Resource, diags: Diagnostics) -> None:
    """Drive the hosts to the new desired state; a host that fails becomes a warning: the
    object exists, its status says what is missing, and the next apply repairs it."""
    result = client_of(resource).converge()
    for failure in result.failures:
        diags.warning(
            f"Host {failure.host} did not converge",
            f"{failure.step}: {failure.error}. The change is saved; run terraform apply again once the "
            "host is reachable to finish it.",
        )


class EngineResource(Resource):
    """CRUD of one engine object kind; subclasses give the schema and the value mapping.

    Every change converges the hosts before returning, so what Terraform records is what runs.
    """

    kind: str = ""  # engine kind: vpc, attachment, direct_connect, vpn
    model_name: str = ""  # class in l2vpc.engine.model, for plan-time checks

    def touches_hosts(self, obj_id: str) -> bool:
        """Whether a change of this object can change what a host runs (else no converge)."""
        return True

    def settle(self, obj_id: str, diags: Diagnostics) -> None:
        """After a converge: wait until the object works (sessions, tunnels); default: no wait."""

    def engine_data(self, values: dict[str, Any]) -> dict[str, Any]:
        """Terraform values → engine input."""
        raise NotImplementedError

    def to_state(self, obj: Any, values: dict[str, Any] | None) -> dict[str, Any]:
        """Engine object → Terraform state; `values` are the planned/prior values (or None)."""
        raise NotImplementedError

    def check_plan(self, planned: dict[str, Any], diags: Diagnostics) -> None:
        check_fields(self.model_name, self.engine_data(planned), diags, unknown_fields(planned))

    def _after_change(self, obj_id: str, plan: dict[str, Any], diags: Diagnostics) -> dict[str, Any]:
        """Converge the hosts (when they can be affected), wait for the object to work, and
        return its new state."""
        if self.touches_hosts(obj_id):
            converge_after_change(self, diags)
            self.settle(obj_id, diags)
        return self.to_state(client_of(self).engine.get(self.kind, obj_id), plan)

    def create(self, plan: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        try:
            # adopt: an identical object this provider created but Terraform never recorded
            # (the provider was killed mid-apply) is taken over instead of failing as a duplicate.
            obj = client_of(self).engine.create(self.kind, self.engine_data(plan), adopt=True)
        except Exception as e:
            if report_engine_error(e, diags):
                return None
            raise
        return self._after_change(obj.id, plan, diags)

    def read(self, state: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        # Terraform has recorded the object: it may never be adopted by a later create.
        obj = client_of(self).engine.find(self.kind, state["id"], confirm=True)
        return None if obj is None else self.to_state(obj, state)

    def update(self, prior: dict[str, Any], plan: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        try:
            obj = client_of(self).engine.update(self.kind, prior["id"], self.engine_data(plan))
        except Exception as e:
            if report_engine_error(e, diags):
                return None
            raise
        return self._after_change(obj.id, plan, diags)

    def delete(self, state: dict[str, Any], diags: Diagnostics) -> None:
        from l2vpc.engine.errors import NotFoundError

        touches = self.touches_hosts(state["id"])
        try:
            client_of(self).engine.delete(self.kind, state["id"])
        except NotFoundError:
            return  # already gone: the goal of a delete
        except Exception as e:
            if report_engine_error(e, diags):
                return
            raise
        if touches:
            converge_after_change(self, diags)


class EdgeServiceResource(EngineResource):
    """Direct connects and VPNs: stateful services on edge hosts whose status the agents see.

    Reads ask the edge host's agent first, so `status` is live. Creating or changing one waits
    (up to `settle_seconds`) for the session or tunnel to come up, and warns with the agent's
    reason when it does not.
    """

    host_field = ""
    up_states: tuple[str, ...] = ()
    settle_seconds = 20.0
    learn_seconds = 8.0

    def given_up(self, obj_id: str, status: str) -> bool:
        """A definite failure (e.g. the peer rejected our key): no point in waiting longer."""
        return False

    def wait_learned(self, obj_id: str, deadline: float) -> None:
        """Once up: wait (until `deadline`) for what the session learns, before pushing routes."""

    def _refresh(self, obj_id: str) -> Any:
        engine = client_of(self).engine
        obj = engine.find(self.kind, obj_id)
        if obj is not None and getattr(obj, self.host_field):
            engine.refresh([getattr(obj, self.host_field)])
        return obj

    def read(self, state: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        self._refresh(state["id"])
        return super().read(state, diags)

    def settle(self, obj_id: str, diags: Diagnostics) -> None:
        import time

        engine = client_of(self).engine
        deadline = time.monotonic() + self.settle_seconds
        status = ""
        while True:
            self._refresh(obj_id)
            status = engine.get(self.kind, obj_id).status
            if status in self.up_states or time.monotonic() > deadline or self.provider.stopping:
                break
            if self.given_up(obj_id, status):
                break
            time.sleep(0.2)
        if status in self.up_states:
            self.wait_learned(obj_id, min(deadline, time.monotonic() + self.learn_seconds))
        if status in self.up_states:
            # Now that the session is up, what it learned (routes for the VPC's workloads)
            # is in the edge's report: push it.
            converge_after_change(self, diags)
        else:
            detail = engine.status_detail(self.kind, obj_id)
            diags.warning(
                f"{self.type_name} is {status}",
                (detail + ". " if detail else "") + "The configuration is in place; the status updates on the next "
                "refresh once the peer answers.",
            )
