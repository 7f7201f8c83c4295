"""Adoption: a creator that crashed after a create gets that object back when it retries.

A Terraform provider killed mid-apply never recorded the id of what it created; its next apply
creates the same object again and would fail on the name (or the workload's VPC). A create
with `adopt` records the new object as unconfirmed; a later create with the same `adopt` and
the same values (where given) returns it instead of failing, until the creator confirms it
(reads it back: Terraform's refresh). A string `adopt` is the creator's key, so two
configurations applying the same values at once never share an object.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

from l2vpc.engine.kinds.base import Kind
from l2vpc.engine.kinds.context import Context
from l2vpc.engine.model import parse
from l2vpc.engine.store.base import Transaction

M = TypeVar("M", bound=BaseModel)

# Pool of objects created with `adopt` and not yet confirmed: value "<adopt key>/<id>" (plain
# "<id>" for adopt=True), owner = the object's id.
UNCONFIRMED = "unconfirmed"


def _unconfirmed_value(adopt: bool | str, ident: str) -> str:
    return f"{adopt}/{ident}" if isinstance(adopt, str) and adopt else ident


def _same_where_given(given: Mapping[str, Any], wanted: Mapping[str, Any], existing: Mapping[str, Any]) -> bool:
    """Equal on every field the caller gave (fields left to the engine may differ)."""
    for key, value in given.items():
        if isinstance(value, Mapping) and isinstance(wanted.get(key), Mapping) and isinstance(existing.get(key), Mapping):
            if not _same_where_given(value, wanted[key], existing[key]):
                return False
        elif wanted.get(key) != existing.get(key):
            return False
    return True


def orphan(cx: Context, kind: Kind[M], data: dict[str, Any], adopt: bool | str) -> M | None:
    """The unconfirmed object an earlier create of `data` with the same `adopt` made, if any."""
    # Point lookups: both pools grow with the state, and every create (and plan check) asks.
    for ident in kind.same_objects(cx, data):
        if cx.tx.holder(UNCONFIRMED, _unconfirmed_value(adopt, ident)) != ident:
            continue
        so = cx.tx.get(kind.name, ident, tenant=cx.tenant or None)
        if so is None:
            continue
        existing = kind.load(cx, so)
        wanted = parse(kind.model, {**data, "id": ident}).model_dump(mode="json")
        if _same_where_given(data, wanted, existing.model_dump(mode="json")):
            return existing
    return None


def record(tx: Transaction, ident: str, adopt: bool | str) -> None:
    """Mark a new object as adoptable by its creator until confirmed."""
    tx.claim(UNCONFIRMED, _unconfirmed_value(adopt, ident), ident)


def confirm(tx: Transaction, ident: str) -> None:
    """The creator has recorded the object: never adopt it again."""
    if tx.holds(ident, UNCONFIRMED):  # only then a write: reads stay reads
        tx.release_owner(ident, pool=UNCONFIRMED)
