"""What every kind of object gives the engine: its model, id prefix and computed fields, its
create/update/delete rules, and its status as hosts report it.

One subclass per kind (vpc.py, attachment.py, direct_connect.py, vpn.py), one instance of each
in the table of `kinds/__init__.py`; the facade (engine/api.py) finds operations there, so
mypy checks that every kind has all of them with the right types.
"""

from __future__ import annotations

import abc
import secrets
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from l2vpc.engine import quotas
from l2vpc.engine.kinds.context import Context
from l2vpc.engine.secrets import SECRET_FIELDS
from l2vpc.engine.store.base import HostReport, StoredObject
from l2vpc.engine.store.cached import CachedTransaction

M = TypeVar("M", bound=BaseModel)


def observed(report: HostReport | None, ident: str) -> Mapping[str, Any] | None:
    """What a host reports of a service it runs for object `ident` (a BGP session, a tunnel)."""
    observations = report.config.get("observations", ()) if report else ()
    return next((o for o in observations if o.get("id") == ident), None)


class Kind(abc.ABC, Generic[M]):
    name: str
    model: type[M]
    id_prefix: str
    # Fields the engine computes; callers' values for them are ignored on create and update.
    computed: frozenset[str]

    def new_id(self) -> str:
        return f"{self.id_prefix}-{secrets.token_hex(6)}"

    def writable(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """The caller's fields, without the computed ones."""
        return {k: v for k, v in data.items() if k not in self.computed}

    def merged(self, stored: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
        """An update's input: the computed fields as stored, every other field as given."""
        return {**{k: v for k, v in stored.items() if k in self.computed}, **self.writable(data)}

    def load(self, cx: Context, so: StoredObject) -> M:
        return cx.load(self.name, self.model, so)

    def insert(self, cx: Context, obj: M, ident: str) -> None:
        """Write a new object (its id just generated: free by construction)."""
        quotas.admit(cx.tx, self.name, cx.tenant, ident)
        so = cx.tx.create_new(self.name, ident, cx.seal(self.name, obj), tenant=cx.tenant)
        if isinstance(cx.tx, CachedTransaction) and self.name not in SECRET_FIELDS:
            # What a read of it in this batch parses to (Context.parsed, Batch.topology).
            cx.tx.parsed[(self.name, ident)] = (so, obj)

    def write(self, cx: Context, so: StoredObject, obj: M) -> None:
        """Replace the object read as `so` (a concurrent change raises ConflictError)."""
        cx.tx.update(self.name, so.id, cx.seal(self.name, obj), so.generation)
        quotas.keep(cx.tx, self.name, so.tenant, so.id)

    # ------------------------------------------------------------------ rules
    @abc.abstractmethod
    def create(self, cx: Context, data: dict[str, Any]) -> M:
        """Validate, check the rules against the objects it touches, allocate, place, write.
        `data` holds no computed field."""

    @abc.abstractmethod
    def update(self, cx: Context, so: StoredObject, cur: M, data: dict[str, Any]) -> M:
        """`cur`: the object as read in `so`; `data`: see `merged`."""

    def delete(self, cx: Context, so: StoredObject, cur: M) -> None:
        """Remove the object and free everything it holds (addresses, names, indexes)."""
        self.forget(cx, so)

    def forget(self, cx: Context, so: StoredObject) -> None:
        """Remove the object and free what it holds, without the rules of `delete` (a VPC still
        in use): for a dry run of its replacement, whose dependents are replaced too."""
        cx.tx.delete(self.name, so.id, so.generation)
        cx.tx.release_owner(so.id)

    # ------------------------------------------------------------------ status
    def placed_on(self, obj: M) -> str | None:
        """The host whose report gives the object's status; None: the status as stored."""
        return None

    def with_status(self, obj: M, report: HostReport | None) -> M:
        """`obj` with its status as `report` (of `placed_on(obj)`, None: no report yet) shows it."""
        return obj

    # ------------------------------------------------------------------ adoption
    def same_objects(self, cx: Context, data: Mapping[str, Any]) -> list[str]:
        """Ids of existing objects that an earlier create of `data` may have made (adoption,
        see adoption.py): by default the holder of its name."""
        holder = cx.tx.holder(cx.name_pool(self.name), str(data.get("name")))
        return [holder] if holder else []
