"""A Pod's on-demand attachments in the engine's state (no runtime needed): Engine.attach_pod
places them, owned, named as the runtime asked; `l2vpc plan|apply -f` neither deletes nor adopts
them, and a file cannot set `owner`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from l2vpc.engine.api import Engine
from l2vpc.engine.errors import NotFoundError, ValidationError
from l2vpc.engine.store import open_store
from l2vpc.engine.validation import INTERFACE_NAME_FREE, VPCS_PER_WORKLOAD
from l2vpc.testing.lab import run

HOST = {"name": "h1", "region": "r1", "underlay_ip": "10.255.0.1"}
EDGE = {"name": "e1", "region": "r1", "role": "edge", "location": "nyc1", "underlay_ip": "10.255.0.9",
        "public_cidr": "203.0.113.0/28", "public_gateway": "203.0.113.1"}
VPC = {"name": "blue", "region": "r1", "cidr": "10.1.0.0/24"}


def state(tmp_path: Path) -> tuple[str, str]:
    """A state with a host, VPC blue, vm1 declared on it and a Pod's on-demand attachment."""
    path = str(tmp_path / "state.db")
    store = open_store(path)
    try:
        engine = Engine(store)
        engine.register_host(HOST)
        vpc = engine.create("vpc", VPC)
        engine.create("attachment", {"vpc_id": vpc.id, "workload": "vm1", "host": "h1"})
        att, port = engine.attach_pod("blue", host="h1", workload="default-web", interface_name="net3",
                                      owner="pod:h1/c0ffee", ip_address="10.1.0.9/24")
        # The port as the host's push will carry it (the agent may set it up before that push).
        assert port in engine.desired_configs()["h1"].ports
        assert (att.owner, att.interface_name, att.ip_mode, att.workload_kind) == ("pod:h1/c0ffee", "net3",
                                                                                  "static", "pod")
        return path, att.id
    finally:
        store.close()


def attachments(path: str) -> dict[str, Any]:
    store = open_store(path)
    try:
        return {a.workload: a for a in Engine(store).list("attachment")}
    finally:
        store.close()


def write(tmp_path: Path, doc: dict[str, Any]) -> str:
    f = tmp_path / "topo.yaml"
    f.write_text(yaml.safe_dump({"hosts": [HOST], "vpcs": [VPC], **doc}))
    return str(f)


def test_apply_leaves_a_pods_attachments_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, ident = state(tmp_path)
    # The file no longer has vm1 and never had the Pod's: vm1 goes, the Pod's stays.
    f = write(tmp_path, {"attachments": [{"vpc": "blue", "workload": "vm2", "host": "h1"}]})
    capsys.readouterr()
    assert run("plan", "-f", f, "--state", path, "--json") == 0
    assert json.loads(capsys.readouterr().out)["objects"] == {"created": 1, "updated": 0, "deleted": 1}
    assert run("apply", "-f", f, "--state", path, "--agents", "memory") == 0
    atts = attachments(path)
    assert sorted(atts) == ["default-web", "vm2"] and atts["default-web"].id == ident
    assert atts["default-web"].owner == "pod:h1/c0ffee"
    # Declaring the Pod's attachment in a file does not adopt it: the file fails, naming the entry.
    f = write(tmp_path, {"attachments": [{"vpc": "blue", "workload": "vm2", "host": "h1"},
                                         {"vpc": "blue", "workload": "default-web", "workload_kind": "pod"}]})
    capsys.readouterr()
    assert run("apply", "-f", f, "--state", path, "--agents", "memory") == 1
    assert "error: attachments[1].vpc_id: workload 'default-web' is already attached" in capsys.readouterr().err
    # Nor can a file claim to be a Pod.
    f = write(tmp_path, {"attachments": [{"vpc": "blue", "workload": "vm3", "host": "h1", "owner": "pod:h1/x"}]})
    assert run("apply", "-f", f, "--state", path, "--agents", "memory") == 1
    assert "error: attachments[0].owner: set by the agents of Pods only" in capsys.readouterr().err
    assert sorted(attachments(path)) == ["default-web", "vm2"]


def test_attach_pod_rules(tmp_path: Path) -> None:
    path, ident = state(tmp_path)
    store = open_store(path)
    try:
        engine = Engine(store)
        # A retry by the same Pod gets the same attachment; another Pod of that workload is refused.
        assert engine.attach_pod("blue", host="h1", workload="default-web", interface_name="net3",
                                 owner="pod:h1/c0ffee", ip_address="10.1.0.9/24")[0].id == ident
        with pytest.raises(ValidationError, match="already attached"):
            engine.attach_pod("blue", host="h1", workload="default-web", interface_name="net1", owner="pod:h1/other")
        with pytest.raises(NotFoundError):
            engine.attach_pod("nope", host="h1", workload="default-web", interface_name="net1", owner="pod:h1/c0ffee")
        for i in range(2, 11):
            engine.create("vpc", {"name": f"v{i}", "region": "r1"})
        with pytest.raises(ValidationError) as info:
            engine.attach_pod("v2", host="h1", workload="default-web", interface_name="net3", owner="pod:h1/c0ffee")
        assert info.value.rules == [INTERFACE_NAME_FREE]
        free = [n for n in (f"net{i}" for i in range(1, 11)) if n != "net3"]
        for i, name in zip(range(2, 11), free, strict=True):
            engine.attach_pod(f"v{i}", host="h1", workload="default-web", interface_name=name, owner="pod:h1/c0ffee")
        engine.create("vpc", {"name": "v11", "region": "r1"})
        with pytest.raises(ValidationError) as info:
            engine.attach_pod("v11", host="h1", workload="default-web", interface_name="net2", owner="pod:h1/c0ffee")
        assert info.value.rules == [VPCS_PER_WORKLOAD] and "at most 10" in str(info.value)
        # A static port gets the routes of the VPC's VPN as the push would carry them.
        engine.register_host(EDGE)
        engine.create("vpn", {"name": "site", "vpc_id": engine.vpc_by_name("blue").id,  # type: ignore[union-attr]
                              "peer_address": "198.51.100.7", "pre_shared_key": "secret.key1",
                              "remote_cidrs": ["192.168.50.0/24"]})
        _, port = engine.attach_pod("blue", host="h1", workload="default-r", interface_name="net1",
                                    owner="pod:h1/r", ip_address="10.1.0.20/24")
        assert [r.prefix for r in port.routes] == ["192.168.50.0/24"] and port in engine.desired_configs()["h1"].ports
        # A DHCP port carries the digest of its VPC's offer (the VPN's route included), as pushed.
        dh = engine.create("vpc", {"name": "dh", "region": "r1", "cidr": "10.2.0.0/24",
                                   "dhcp": {"range_start": "10.2.0.100", "range_end": "10.2.0.150"}})
        engine.create("vpn", {"name": "site2", "vpc_id": dh.id, "peer_address": "198.51.100.8",
                              "pre_shared_key": "secret.key2", "remote_cidrs": ["192.168.60.0/24"]})
        att, port = engine.attach_pod("dh", host="h1", workload="default-d", interface_name="net1", owner="pod:h1/d")
        assert att.ip_mode == "dhcp" and port.dhcp_options and port in engine.desired_configs()["h1"].ports
        pushed = next(p for p in engine.desired_configs()["h1"].ports if p.id == port.id)
        assert pushed.dhcp_options == port.dhcp_options
        # Updates keep the owner (it is not a caller's to change).
        kept = engine.update("attachment", ident, {"vpc_id": engine.get("attachment", ident).vpc_id,
                                                   "workload": "default-web", "workload_kind": "pod",
                                                   "ip_mode": "static", "ip_address": "10.1.0.10/24",
                                                   "owner": None})
        assert kept.owner == "pod:h1/c0ffee" and kept.ip_address == "10.1.0.10/24"
    finally:
        store.close()
