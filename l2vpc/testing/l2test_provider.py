"""A provider for tests only: `l2test_thing` objects kept in a JSON file.

It exercises what the real resources need from the framework: nested single and list
attributes, sensitive and write-only values, requires_replace, a computed id kept stable,
computed values that change on update, defaults, validators, import, and a data source. The
store file doubles as the "real world" tests inspect (and tamper with, to see drift).

Served by `python -m l2vpc.provider --provider l2vpc.testing.l2test_provider:build_provider`
(FACTORY). L2TEST_OBSERVE, when set, names a file where plan-time configuration
values are recorded (repr of each), so tests can see what reached resource code.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from l2vpc.provider.cty import STRING, Unknown
from l2vpc.provider.diagnostics import Diagnostics
from l2vpc.provider.framework import DataSource, Provider, Resource, ResourcePlan
from l2vpc.provider.modifiers import requires_replace, use_state_for_unknown
from l2vpc.provider.schema import (
    Schema,
    integer,
    list_nested,
    list_of,
    map_of,
    number,
    set_of,
    single_nested,
    string,
)
from l2vpc.provider.validators import between, length_between, matches, one_of, required_with

FACTORY = "l2vpc.testing.l2test_provider:build_provider"
STORE_ENV = "L2TEST_STORE"
OBSERVE_ENV = "L2TEST_OBSERVE"
_lock = threading.Lock()


class Store:
    """A JSON file of objects by id, safe across threads and processes."""

    def __init__(self, path: str) -> None:
        self.path = path

    @contextmanager
    def open(self) -> Iterator[dict[str, Any]]:
        with _lock, open(self.path + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with open(self.path) as f:
                    data = json.load(f)
            except FileNotFoundError:
                data = {"next": 1, "objects": {}}
            yield data
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)


# What the store keeps beyond the state: proof that write-only values reached us.
_STORE_ONLY = ("password_seen",)


class Thing(Resource):
    type_name = "l2test_thing"
    schema = Schema(
        description="A thing in a JSON file.",
        attributes={
            "id": string(computed=True, plan_modifiers=[use_state_for_unknown()], description="Identifier."),
            "name": string(
                required=True,
                validators=[length_between(1, 20), matches(r"[a-z0-9-]+", "lowercase letters, digits and -")],
                plan_modifiers=[requires_replace()],
            ),
            "description": string(optional=True),
            "size": integer(optional=True, default=1, validators=[between(1, 100)]),
            "weight": number(optional=True),
            "zone": string(optional=True, computed=True, plan_modifiers=[use_state_for_unknown()]),
            "secret": string(optional=True, sensitive=True),
            "password_wo": string(optional=True, write_only=True, sensitive=True),
            "password_wo_version": integer(optional=True),
            "tags": set_of(STRING, optional=True),
            "labels": map_of(STRING, optional=True),
            "aliases": list_of(STRING, computed=True),
            "revision": integer(computed=True),
            "settings": single_nested(
                {
                    "mode": string(optional=True, default="fast", validators=[one_of("fast", "safe")]),
                    "level": integer(optional=True, validators=[between(0, 9)]),
                    "token": string(computed=True),
                },
                optional=True,
            ),
            "ports": list_nested(
                {
                    "number": integer(required=True, validators=[between(1, 65535)]),
                    "protocol": string(optional=True, default="tcp", validators=[one_of("tcp", "udp")]),
                },
                optional=True,
            ),
        },
    )
    config_validators = (required_with("password_wo", "password_wo_version"),)

    @property
    def store(self) -> Store:
        provider = self.provider
        assert isinstance(provider, L2test)
        return provider.store

    def modify_plan(self, plan: ResourcePlan, diags: Diagnostics) -> None:
        path = os.environ.get(OBSERVE_ENV)
        if path and plan.config is not None:
            seen = {k: repr(v) for k, v in plan.config.items() if isinstance(v, Unknown)}
            if seen:
                with _lock, open(path, "a") as f:
                    f.write(json.dumps({"name": repr(plan.config.get("name")), "unknown": seen}) + "\n")
        if plan.planned is not None and plan.planned.get("size") == 100:
            diags.warning("Large thing", "size 100 is the maximum.", "size")

    def create(self, plan: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        with self.store.open() as data:
            ident = f"thing-{data['next']}"
            data["next"] += 1
            state = self._derive(dict(plan, id=ident), revision=1)
            data["objects"][ident] = dict(state, password_seen=plan.get("password_wo"))
        return state

    def read(self, state: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        with self.store.open() as data:
            stored = data["objects"].get(state["id"])
        if stored is None:
            return None
        return {k: v for k, v in stored.items() if k not in _STORE_ONLY}

    def update(
        self, prior: dict[str, Any], plan: dict[str, Any], diags: Diagnostics
    ) -> dict[str, Any] | None:
        with self.store.open() as data:
            if prior["id"] not in data["objects"]:
                diags.error("Thing vanished", f"{prior['id']} no longer exists.", "id")
                return None
            state = self._derive(plan, revision=prior["revision"] + 1)
            seen = plan.get("password_wo") or data["objects"][prior["id"]].get("password_seen")
            data["objects"][prior["id"]] = dict(state, password_seen=seen)
        return state

    def delete(self, state: dict[str, Any], diags: Diagnostics) -> None:
        with self.store.open() as data:
            data["objects"].pop(state["id"], None)

    @staticmethod
    def _derive(plan: dict[str, Any], revision: int) -> dict[str, Any]:
        state = dict(plan)
        state.pop("password_wo", None)
        if isinstance(state.get("zone"), Unknown) or state.get("zone") is None:
            state["zone"] = "zone-a"
        state["aliases"] = [f"{state['name']}.alias", f"{state['name']}.other"]
        state["revision"] = revision
        if isinstance(state.get("settings"), dict):
            state["settings"] = dict(state["settings"], token=f"tok-{state['name']}")
        return state


class Lookup(DataSource):
    type_name = "l2test_lookup"
    schema = Schema(
        attributes={
            "name": string(required=True),
            "id": string(computed=True),
            "zone": string(computed=True),
        }
    )

    def read(self, config: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        provider = self.provider
        assert isinstance(provider, L2test)
        with provider.store.open() as data:
            for obj in data["objects"].values():
                if obj["name"] == config["name"]:
                    return {"id": obj["id"], "zone": obj["zone"]}
        diags.error("Not found", f"No thing is named {config['name']!r}.", "name")
        return None


class L2test(Provider):
    type_name = "l2test"
    version = "0.0.1"
    schema = Schema(attributes={"store": string(optional=True, description="The JSON file.")})

    def __init__(self) -> None:
        super().__init__()
        self.store = Store(os.environ.get(STORE_ENV, "l2test-store.json"))

    def configure(self, config: dict[str, Any], diags: Diagnostics) -> None:
        if isinstance(config.get("store"), str):
            self.store = Store(config["store"])


def build_provider() -> L2test:
    provider = L2test()
    provider.add_resource(Thing())
    provider.add_data_source(Lookup())
    return provider
