"""AttachPod and DetachPod (a Pod's on-demand attachments) against a real controller on a real,
throwaway PostgreSQL: who may call them, where the attachment lands (the VPC's tenant, the
calling host, owned by the Pod, the interface the runtime named), every rule of a create with
its rule id in the error trailer, idempotent retries, and the agent's side (PodControl) turning
the controller's refusals into CNI codes by rule. Refusals are checked against the database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from l2vpc._proto import controller_pb2 as pb
from l2vpc.agent.credentials import ControllerSettings, TokenSource
from l2vpc.agent.pod_control import RULE_CODES, PodControl, static_address
from l2vpc.cni import spec
from l2vpc.cni.spec import CniError
from l2vpc.controller import auth
from l2vpc.controller.errors import from_rpc
from l2vpc.controller.server import ControllerHandle
from l2vpc.engine import validation
from l2vpc.engine.api import Engine
from l2vpc.engine.errors import ValidationError
from l2vpc.testing.slow_proxy import SlowProxy

from ._api_helpers import Client, make_pki, rejected, running_controller, snapshot

HOSTS = [{"name": "h1", "region": "r1", "underlay_ip": "10.255.0.1"},
         {"name": "h2", "region": "r1", "underlay_ip": "10.255.0.2"},
         {"name": "h3", "region": "r2", "underlay_ip": "10.255.0.3"}]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki") / "pki")


@pytest.fixture
def ctl(db: Any, secret_key: str, pki: Path) -> Iterator[ControllerHandle]:
    with running_controller(db.url, pki) as handle:
        engine = Engine(handle.store, handle.agents, secrets=handle.service.secrets)
        for h in HOSTS:
            engine.register_host(h)
        yield handle


@pytest.fixture
def client(ctl: ControllerHandle, pki: Path) -> Iterator[Client]:
    c = Client(ctl.address, pki / "ca.pem")
    try:
        yield c
    finally:
        c.close()


def token(ctl: ControllerHandle, role: str, **scope: Any) -> str:
    return auth.create_token(ctl.store, role, **scope)[1]


def attach(client: Client, tok: str, host: str, vpc: str, workload: str = "default-web", ifname: str = "net1",
           container: str = "c0ffee", ip: str = "") -> dict[str, Any]:
    reply = client.call("AttachPod", pb.AttachPodRequest(host=host, vpc=vpc, workload=workload, interface_name=ifname,
                                                         container_id=container, ip_address=ip), tok)
    assert reply.revision > 0
    return dict(json.loads(reply.attachment_json))


def refusal(client: Client, tok: str, **request: Any) -> tuple[grpc.RpcError, ValidationError]:
    e = rejected(client.call, "AttachPod", pb.AttachPodRequest(**request), tok)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (e.code(), e.details())
    err = from_rpc(e)
    assert isinstance(err, ValidationError)
    return e, err


def test_attach_and_detach_a_pods_vpcs(ctl: ControllerHandle, client: Client, db: Any) -> None:
    acme, other = token(ctl, "tenant", tenant="acme"), token(ctl, "tenant", tenant="other")
    agent1, agent2 = token(ctl, "agent", host="h1"), token(ctl, "agent", host="h2")
    blue = client.create(acme, "vpc", {"name": "blue", "region": "r1", "cidr": "10.1.0.0/24",
                                       "dhcp": {"range_start": "10.1.0.100", "range_end": "10.1.0.150"}})
    red = client.create(other, "vpc", {"name": "red", "region": "r1", "cidr": "10.2.0.0/24"})
    # By name, across tenants: in the VPC's tenant, on the calling host, owned by the Pod, named
    # as the runtime asked (net2 before net1), dhcp where the VPC runs DHCP.
    a = attach(client, agent1, "h1", "blue", ifname="net2")
    assert (a["host"], a["workload_kind"], a["owner"], a["interface_name"], a["ip_mode"]) == (
        "h1", "pod", "pod:h1/c0ffee", "net2", "dhcp")
    assert client.get(acme, "attachment", a["id"])["owner"] == "pod:h1/c0ffee"
    # A retry (the answer was lost) gets the same attachment.
    assert attach(client, agent1, "h1", "blue", ifname="net2")["id"] == a["id"]
    # By id, with a static address; in the other tenant, but the workload's NICs are one tenant's.
    e, err = refusal(client, agent1, host="h1", vpc=red["id"], workload="default-web", interface_name="net1",
                     container_id="c0ffee", ip_address="10.2.0.5/24")
    assert err.problems == [("workload", "workload 'default-web' is not available to this tenant")]
    r = attach(client, agent1, "h1", red["id"], workload="default-db", container="d00d", ip="10.2.0.5/24")
    assert (r["ip_mode"], r["ip_address"], r["interface_name"]) == ("static", "10.2.0.5/24", "net1")
    assert [x["id"] for x in client.list(other, "attachment")] == [r["id"]]

    # Only the host's own agent (or an admin) may call; another host's Pod attachment is not ours.
    assert rejected(client.call, "AttachPod", pb.AttachPodRequest(host="h2", vpc="blue", workload="x",
                    container_id="c"), agent1).code() == grpc.StatusCode.PERMISSION_DENIED
    assert rejected(client.call, "AttachPod", pb.AttachPodRequest(host="h1", vpc="blue", workload="x",
                    container_id="c"), acme).code() == grpc.StatusCode.PERMISSION_DENIED
    assert rejected(client.call, "DetachPod", pb.DetachPodRequest(host="h2", attachment_id=a["id"]),
                    agent2).code() == grpc.StatusCode.PERMISSION_DENIED
    declared = client.create(acme, "attachment", {"vpc_id": blue["id"], "workload": "vm1", "host": "h1",
                                                  "owner": "pod:h1/forged"})
    assert declared["owner"] is None  # computed: a tenant cannot make its attachment a Pod's
    e = rejected(client.call, "DetachPod", pb.DetachPodRequest(host="h1", attachment_id=declared["id"]), agent1)
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED and "not an on-demand attachment" in e.details()

    reply = client.call("DetachPod", pb.DetachPodRequest(host="h1", attachment_id=a["id"]), agent1)
    assert reply.deleted and reply.revision > 0
    assert not client.call("DetachPod", pb.DetachPodRequest(host="h1", attachment_id=a["id"]), agent1).deleted
    assert {x["workload"] for x in client.list(acme, "attachment")} == {"vm1"}
    # An admin may act for any host.
    admin = token(ctl, "admin")
    b = attach(client, admin, "h2", "blue", workload="default-api", container="abc")
    assert b["host"] == "h2"
    assert client.call("DetachPod", pb.DetachPodRequest(host="h2", attachment_id=b["id"]), admin).deleted


def test_every_rule_applies_and_names_itself(ctl: ControllerHandle, client: Client, db: Any) -> None:
    acme = token(ctl, "tenant", tenant="acme")
    agent = token(ctl, "agent", host="h1")
    vpcs = [client.create(acme, "vpc", {"name": f"v{i}", "region": "r1", "cidr": f"10.{i}.0.0/24"})
            for i in range(1, 12)]
    # Four declared for the Pod (as Terraform would), six on demand: ten.
    for i in range(4):
        client.create(acme, "attachment", {"vpc_id": vpcs[i]["id"], "workload": "default-many", "host": "h1",
                                           "workload_kind": "pod"})
    for i in range(4, 10):
        attach(client, agent, "h1", f"v{i + 1}", workload="default-many", ifname=f"net{i + 1}")
    before = snapshot(db)
    cases: list[tuple[dict[str, Any], str, str, str]] = [
        # (request, path, rule, words)
        ({"vpc": "v11", "interface_name": "net11"}, "workload", validation.VPCS_PER_WORKLOAD, "at most 10"),
        ({"vpc": "v1", "interface_name": "net1"}, "vpc_id", validation.ONE_ATTACHMENT_PER_VPC, "already attached"),
    ]
    for request, path, rule, words in cases:
        _, err = refusal(client, agent, host="h1", workload="default-many", container_id="c1", **request)
        assert err.first[0] == path and words in err.first[1] and err.rules[0] == rule, (err.problems, err.rules)
    fields = [
        ({"vpc": "v1", "ip_address": "10.9.9.9/24"}, "ip_address", validation.IP_IN_CIDR, "outside VPC cidr"),
        ({"vpc": "v1", "ip_address": "banana/24"}, "ip_address", "", "not an IPv4 address"),
        ({"vpc": "v1", "interface_name": "eth1"}, "interface_name", "", "not an interface name"),
    ]
    for request, path, rule, words in fields:
        _, err = refusal(client, agent, host="h1", workload="default-y", container_id="c2",
                         **{"interface_name": "net1", **request})
        assert err.first[0] == path and words in err.first[1] and err.rules[0] == rule, (err.problems, err.rules)
    # On a host of another region than the single-region VPC: the placement rule.
    agent3 = token(ctl, "agent", host="h3")
    _, err = refusal(client, agent3, host="h3", vpc="v1", workload="default-z", interface_name="net1",
                     container_id="c3")
    assert err.first[0] == "host" and err.rules == [validation.HOST_PLACEMENT]
    assert snapshot(db) == before  # every refusal wrote nothing
    # An interface name the workload has already.
    attach(client, agent, "h1", "v1", workload="default-y", ifname="net3", container="c2")
    _, err = refusal(client, agent, host="h1", vpc="v2", workload="default-y", interface_name="net3",
                     container_id="c2")
    assert err.first[0] == "interface_name" and err.rules == [validation.INTERFACE_NAME_FREE]
    # A VPC nobody has: NOT_FOUND naming the VPC; a name two tenants use: ambiguous.
    e = rejected(client.call, "AttachPod", pb.AttachPodRequest(host="h1", vpc="nope", workload="default-y",
                 interface_name="net4", container_id="c2"), agent)
    assert e.code() == grpc.StatusCode.NOT_FOUND
    client.create(token(ctl, "tenant", tenant="other"), "vpc", {"name": "v1", "region": "r1"})
    _, err = refusal(client, agent, host="h1", vpc="v1", workload="default-q", interface_name="net1",
                     container_id="c4")
    assert err.first[0] == "vpc" and "name it by its id" in err.first[1]
    assert attach(client, agent, "h1", vpcs[0]["id"], workload="default-q", container="c4")["vpc_id"] == vpcs[0]["id"]
    assert len(snapshot(db)[0]) == len(before[0]) + 3  # default-y's, the other tenant's v1, default-q's


def test_the_agent_maps_rules_to_cni_codes(ctl: ControllerHandle, client: Client, pki: Path) -> None:
    """PodControl, as the agent runs it, against the controller: a CNI code per rule."""
    assert set(RULE_CODES) <= validation.RULES
    acme = token(ctl, "tenant", tenant="acme")
    for i in range(1, 12):
        client.create(acme, "vpc", {"name": f"v{i}", "region": "r1", "cidr": f"10.{i}.0.0/24"})
    # Through a controller slow to answer the TLS handshake (a busy one): waited for, once.
    proxy = SlowProxy(ctl.address, delay=0.5)
    control = PodControl(ControllerSettings((proxy.address,), pki / "ca.pem"),
                         TokenSource({"h1": token(ctl, "agent", host="h1")}), "h1")
    try:
        atts = [control.attach(f"v{i}", workload="default-p", interface_name=f"net{i}", container_id="cid")
                for i in range(1, 11)]
        assert [a.interface_name for a in atts] == [f"net{i}" for i in range(1, 11)]
        assert atts[0].mac_address and atts[0].revision > 0
        # With it, the port as the host's push will carry it (the agent sets it up before that push).
        port = atts[0].port
        assert port is not None and (port.id, port.interface_name, port.mac, port.workload_kind, port.ip_mode) == (
            atts[0].id, "net1", atts[0].mac_address, "pod", "none")

        def code(**kw: Any) -> CniError:
            with pytest.raises(CniError) as info:
                control.attach(**{"workload": "default-p", "interface_name": "net11", "container_id": "cid", **kw})
            return info.value

        e = code(vpc="v11")
        assert e.code == spec.TOO_MANY_VPCS and "10" in e.msg and "vpcs_per_workload" in e.details
        e = code(vpc="no-such-vpc")
        assert e.code == spec.UNKNOWN_VPC and "no-such-vpc" in e.msg
        e = code(vpc="v1", workload="default-s", interface_name="net1", ip_address="10.1.0.5")
        assert e.code == spec.RULE_VIOLATED and e.msg.startswith("ip_address:")
        e = code(vpc="v2", workload="default-s", interface_name="net1", ip_address="10.1.0.5/24")
        assert e.code == spec.RULE_VIOLATED and e.msg.startswith("ip_address:") and "ip_in_cidr" in e.details
        assert control.detach(atts[0].id) and not control.detach(atts[0].id)
        assert proxy.connections == 1
    finally:
        control.close()
        proxy.close()
    # A controller that does not answer: try again later.
    dead = PodControl(ControllerSettings(("127.0.0.1:1",), pki / "ca.pem"), TokenSource({"": "x"}), "h1",
                      timeout=2.0)
    try:
        with pytest.raises(CniError) as info:
            dead.attach("v1", workload="default-p", interface_name="net1", container_id="cid")
        assert info.value.code == spec.TRY_AGAIN_LATER and "controller" in info.value.msg
    finally:
        dead.close()


def test_static_address_from_the_runtime() -> None:
    assert static_address({"IP": "10.0.0.5/24"}, {"runtimeConfig": {"ips": ["10.0.0.6/24"]}}) == "10.0.0.5/24"
    assert static_address({}, {"runtimeConfig": {"ips": ["10.0.0.6/24"]}}) == "10.0.0.6/24"
    assert static_address({}, {"runtimeConfig": {"ips": []}}) is None
    assert static_address({"K8S_POD_NAME": "x"}, {}) is None
