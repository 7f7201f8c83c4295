"""The provider framework: what resource modules subclass (the generic logic behind it lives in
planning.py and applying.py, values are walked along schemas by walk.py).

Resource code sees plain Python values (dict, list, str, int, float, bool, None and
`Unknown`), never protobuf or msgpack; see `cty` for the mapping. Problems are reported
through the `Diagnostics` passed in (or by raising `DiagnosticError`); exceptions the provider
recognises (`Provider.error_diagnostics`) become user errors, any other exception becomes an
error that asks the user to report a bug.

A resource
----------

    class Thing(Resource):
        type_name = "l2vpc_thing"                    # must start with the provider's name + "_"
        schema = Schema(description=..., attributes={...})     # see schema.py
        config_validators = (exactly_one_of("a", "b"),)        # optional, see validators.py

        def validate(self, config, diags): ...       # extra checks; values may be Unknown
        def modify_plan(self, plan, diags): ...      # see ResourcePlan; optional
        def create(self, plan, diags) -> dict | None: ...
        def read(self, state, diags) -> dict | None: ...       # None: it is gone
        def update(self, prior, plan, diags) -> dict | None: ...
        def delete(self, state, diags) -> None: ...
        def import_state(self, import_id, diags) -> dict | None: ...  # default {"id": import_id}
        def upgrade_state(self, version, state, diags) -> dict | None: ...  # old schema versions

`create` and `update` get the planned values with write-only attributes filled in from the
configuration, and return the new state: attributes left out keep their planned value, every
value left unknown in the plan must be set. Write-only values are dropped before state is
stored. Returning None (with an error) from `create` means nothing was created; from `update`
or `delete` it keeps the prior state. `read` returns the object as it is now (drift shows in
the next plan; attributes left out keep their current values) or None when it no longer
exists. `import_state` returns enough for `read` to find the object. Methods run
concurrently on one instance (Terraform plans and applies resources in parallel): keep them
thread-safe. `self.provider` is the configured Provider;
long operations should give up when `self.provider.stopping` is set (Terraform was
interrupted).

What the framework does for every resource, so a second plan after apply is empty:
- ValidateResourceConfig, PlanResourceChange: planning.py;
- ApplyResourceChange, ReadResource, ImportResourceState, UpgradeResourceState,
  ReadDataSource: applying.py, as described above.

A data source
-------------

    class Hosts(DataSource):
        type_name = "l2vpc_hosts"
        schema = Schema(attributes={"region": string(optional=True), "hosts": list_nested(..., computed=True)})
        def read(self, config, diags) -> dict | None: ...   # attributes left out keep config values

A provider
----------

    class L2vpc(Provider):
        type_name = "l2vpc"
        version = "0.1.0"
        schema = Schema(attributes={"endpoint": string(optional=True), ...})
        def configure(self, config, diags): self.client = ...
        def error_diagnostics(self, exc): ...         # map your own exception types
        def close(self): ...                          # process is about to exit

    provider = L2vpc()
    provider.add_resource(Thing())
    provider.add_data_source(Hosts())
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from l2vpc.provider.cty import ListType, MapType, ObjectType, SetType, TupleType, get_path, values_equal
from l2vpc.provider.diagnostics import DiagnosticError, Diagnostics, Key, Path
from l2vpc.provider.schema import Schema, SchemaError
from l2vpc.provider.validators import ConfigValidator

log = logging.getLogger("l2vpc.provider")

Value = dict[str, Any]


# --------------------------------------------------------------------------------------------
# What resource code subclasses


class Provider:
    """The provider: its own configuration block plus the registry of resources and data sources."""

    type_name: ClassVar[str] = ""
    version: ClassVar[str] = "0.0.0"
    schema: ClassVar[Schema] = Schema(attributes={})
    config_validators: ClassVar[Sequence[ConfigValidator]] = ()

    def __init__(self) -> None:
        if not self.type_name:
            raise SchemaError(f"{type(self).__name__} needs a type_name")
        self.resources: dict[str, Resource] = {}
        self.data_sources: dict[str, DataSource] = {}
        self.stop_event = threading.Event()
        self.terraform_version = ""

    def add_resource(self, resource: Resource) -> None:
        self._check_name(resource.type_name, self.resources)
        resource.provider = self
        self.resources[resource.type_name] = resource

    def add_data_source(self, data_source: DataSource) -> None:
        self._check_name(data_source.type_name, self.data_sources)
        data_source.provider = self
        self.data_sources[data_source.type_name] = data_source

    def _check_name(self, name: str, registry: Mapping[str, object]) -> None:
        if not name.startswith(f"{self.type_name}_"):
            raise SchemaError(f"type name {name!r} must start with {self.type_name + '_'!r}")
        if name in registry:
            raise SchemaError(f"{name!r} is registered twice")

    @property
    def stopping(self) -> bool:
        """Terraform asked us to stop (the user interrupted it): finish up quickly."""
        return self.stop_event.is_set()

    def validate_config(self, config: Value, diags: Diagnostics) -> None:
        """Extra checks of the provider block (values may be Unknown)."""

    def configure(self, config: Value, diags: Diagnostics) -> None:
        """Called once per process before any resource operation; values may be Unknown."""

    def error_diagnostics(self, exc: Exception) -> Diagnostics | None:
        """Turn an exception resource code let escape into diagnostics; None: it is a bug."""
        return None

    def close(self) -> None:
        """Release resources; the process exits right after."""


class Resource:
    type_name: ClassVar[str]
    schema: ClassVar[Schema]
    config_validators: ClassVar[Sequence[ConfigValidator]] = ()
    provider: Provider

    def validate(self, config: Value, diags: Diagnostics) -> None:
        """Extra configuration checks; values may be Unknown. Runs at validate and plan time."""

    def modify_plan(self, plan: ResourcePlan, diags: Diagnostics) -> None:
        """Adjust the plan (values computed from others, replacements, warnings)."""

    def create(self, plan: Value, diags: Diagnostics) -> Value | None:
        raise NotImplementedError(f"{self.type_name} cannot be created")

    def read(self, state: Value, diags: Diagnostics) -> Value | None:
        return state

    def update(self, prior: Value, plan: Value, diags: Diagnostics) -> Value | None:
        raise NotImplementedError(f"{self.type_name} cannot be updated in place")

    def delete(self, state: Value, diags: Diagnostics) -> None:
        raise NotImplementedError(f"{self.type_name} cannot be deleted")

    def import_state(self, import_id: str, diags: Diagnostics) -> Value | None:
        if "id" not in self.schema.attributes:
            diags.error("Import not supported", f"{self.type_name} cannot be imported.")
            return None
        return {"id": import_id}

    def upgrade_state(self, version: int, state: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        """Convert state (parsed JSON) written with schema `version` to the current schema."""
        diags.error(
            "Cannot upgrade state",
            f"{self.type_name} state was written with schema version {version}; this provider only "
            f"reads version {self.schema.version}.",
        )
        return None


class DataSource:
    type_name: ClassVar[str]
    schema: ClassVar[Schema]
    config_validators: ClassVar[Sequence[ConfigValidator]] = ()
    provider: Provider

    def validate(self, config: Value, diags: Diagnostics) -> None:
        """Extra configuration checks; values may be Unknown."""

    def read(self, config: Value, diags: Diagnostics) -> Value | None:
        raise NotImplementedError(f"{self.type_name} cannot be read")


@dataclass
class ResourcePlan:
    """What `Resource.modify_plan` sees and may change.

    `planned` is None when the resource is being destroyed (Terraform plans destruction too,
    so a resource can warn about it). Edit `planned` in place; only computed attributes may
    differ from the configuration.
    """

    prior: Value | None
    config: Value | None
    planned: Value | None
    requires_replace: set[Path] = field(default_factory=set)
    schema: Schema | None = None

    @property
    def creating(self) -> bool:
        return self.prior is None

    @property
    def destroying(self) -> bool:
        return self.planned is None

    def replace(self, path: Path | str) -> None:
        """Changing this attribute needs a new object."""
        self.requires_replace.add(Path.parse(path) if isinstance(path, str) else path)

    def changed(self, path: Path | str) -> bool:
        """The attribute's planned value differs from the prior one (false when creating/destroying)."""
        if self.prior is None or self.planned is None:
            return False
        p = Path.parse(path) if isinstance(path, str) else path
        steps = _plain_steps(p)
        t = _type_at(self.schema, p) if self.schema else None
        a, b = get_path(self.planned, steps), get_path(self.prior, steps)
        return not values_equal(t, a, b) if t is not None else a != b


def _plain_steps(path: Path) -> list[str | int]:
    return [s.key if isinstance(s, Key) else s for s in path]


def _type_at(schema: Schema | None, path: Path) -> Any:
    t: Any = schema.type if schema else None
    for step in path:
        if isinstance(t, ObjectType) and isinstance(step, str):
            t = t.attribute_types.get(step)
        elif isinstance(t, ListType | SetType | MapType):
            t = t.element
        elif isinstance(t, TupleType) and isinstance(step, int):
            t = t.elements[step]
        else:
            return None
    return t


# --------------------------------------------------------------------------------------------
# Results the RPC layer encodes


@dataclass
class PlanResult:
    planned: Value | None
    requires_replace: list[Path]
    diags: Diagnostics
    unchanged: bool  # planned == prior: send the prior bytes back untouched


@dataclass
class StateResult:
    state: Value | None
    diags: Diagnostics
    unchanged: bool = False


# --------------------------------------------------------------------------------------------
# Guarding calls into resource code


class guard:  # used as a function: `with guard(provider, diags, what):`
    """Run resource code: its DiagnosticError and the exceptions the provider maps become
    diagnostics; anything else is a provider bug the user is asked to report.

    A class rather than a generator context manager: planning enters one per attribute with
    plan modifiers, on every PlanResourceChange."""

    __slots__ = ("diags", "provider", "what")

    def __init__(self, provider: Provider, diags: Diagnostics, what: object) -> None:
        # `what` is put into words only when something went wrong (any object with a str()).
        self.provider = provider
        self.diags = diags
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False  # nothing raised, or KeyboardInterrupt/SystemExit: let it through
        if isinstance(exc, DiagnosticError):
            self.diags.extend(exc.diagnostics)
            return True
        mapped = self.provider.error_diagnostics(exc)
        if mapped is not None:
            self.diags.extend(mapped)
            return True
        log.error("unexpected error in %s", self.what, exc_info=(type(exc), exc, exc.__traceback__))
        self.diags.bug(f"Unexpected error in {self.what}", f"{type(exc).__name__}: {exc}")
        return True
