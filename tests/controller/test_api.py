"""The controller's API against a real controller (served in-process over TLS) on a real,
throwaway PostgreSQL: tenants' object calls and their isolation, tokens (bad, revoked,
expired, wrong role), and requests that must be refused without writing anything (oversized,
malformed, unknown kinds and fields). Each refusal is checked against the database itself."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from l2vpc._proto import controller_pb2 as pb
from l2vpc.controller import auth
from l2vpc.controller.enrollment import enroll_hosts
from l2vpc.controller.errors import from_rpc
from l2vpc.controller.leader import ELECTION
from l2vpc.controller.planestore import open_plane
from l2vpc.controller.server import ControllerError, ControllerHandle, ControllerSettings, serve
from l2vpc.engine.api import Engine
from l2vpc.engine.errors import NotFoundError, TemporaryError, ValidationError
from l2vpc.engine.store import open_store

from ._api_helpers import Client, make_pki, rejected, running_controller, snapshot

VPC = {"name": "web", "region": "r1", "cidr": "10.1.0.0/24"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki") / "pki")


@pytest.fixture
def ctl(db: Any, secret_key: str, pki: Path) -> Iterator[ControllerHandle]:
    with running_controller(db.url, pki) as handle:
        Engine(handle.store, handle.agents, secrets=handle.service.secrets).register_host(
            {"name": "h1", "region": "r1", "underlay_ip": "10.255.0.1"})
        yield handle


@pytest.fixture
def client(ctl: ControllerHandle, pki: Path) -> Iterator[Client]:
    c = Client(ctl.address, pki / "ca.pem")
    try:
        yield c
    finally:
        c.close()


def token(ctl: ControllerHandle, role: str = "tenant", **scope: Any) -> str:
    if role == "tenant":
        scope.setdefault("tenant", "acme")
    return auth.create_token(ctl.store, role, **scope)[1]


def problems(e: grpc.RpcError) -> list[tuple[str, str]]:
    """The (path, message) pairs of an INVALID_ARGUMENT, rebuilt from the trailer as a client does."""
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (e.code(), e.details())
    err = from_rpc(e)
    assert isinstance(err, ValidationError), err
    return err.problems


def test_tenant_crud(ctl: ControllerHandle, client: Client) -> None:
    t = token(ctl)
    vpc = client.create(t, "vpc", {**VPC, "description": "front"})
    assert vpc["id"].startswith("vpc-") and vpc["vni"] and vpc["description"] == "front"
    assert client.get(t, "vpc", vpc["id"]) == vpc
    # Check writes nothing, for a create and for an update.
    checked = client.call("Check", pb.CheckRequest(kind="vpc", data_json=json.dumps({**VPC, "name": "db"})), t)
    assert json.loads(checked.data_json)["name"] == "db"
    client.call("Check", pb.CheckRequest(kind="vpc", id=vpc["id"], data_json=json.dumps({**VPC, "mtu": 9000})), t)
    assert [v["name"] for v in client.list(t, "vpc")] == ["web"]

    updated = client.update(t, "vpc", vpc["id"], {**VPC, "description": "public front"})
    assert updated["description"] == "public front" and updated["vni"] == vpc["vni"]
    att = client.create(t, "attachment", {"vpc_id": vpc["id"], "workload": "vm1", "host": "h1",
                                          "ip_mode": "static", "ip_address": "10.1.0.5/24"})
    assert att["interface_name"] == "net1" and att["status"] == "pending"
    workloads = client.call("AttachedWorkloads", pb.AttachedWorkloadsRequest(vpc_id=vpc["id"]), t)
    assert list(workloads.workloads) == ["vm1"]
    hosts = client.call("ListHosts", pb.ListHostsRequest(region="r1"), t)
    assert [json.loads(h)["name"] for h in hosts.hosts_json] == ["h1"]

    # Still used: a conflict, and the VPC stays.
    e = rejected(client.call, "Delete", pb.DeleteRequest(kind="vpc", id=vpc["id"]), t)
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and att["id"] in e.details()
    client.call("Delete", pb.DeleteRequest(kind="attachment", id=att["id"]), t)
    client.call("Delete", pb.DeleteRequest(kind="vpc", id=vpc["id"]), t)
    e = rejected(client.get, t, "vpc", vpc["id"])
    assert e.code() == grpc.StatusCode.NOT_FOUND
    assert isinstance(from_rpc(e), NotFoundError)
    assert client.list(t, "vpc") == []


def test_tenants_see_only_their_own_objects(ctl: ControllerHandle, client: Client, db: Any) -> None:
    acme, globex = token(ctl, tenant="acme"), token(ctl, tenant="globex")
    mine = client.create(acme, "vpc", VPC)
    theirs = client.create(globex, "vpc", VPC)  # the same name in another tenant is fine
    assert mine["id"] != theirs["id"] and mine["vni"] != theirs["vni"]
    assert [v["id"] for v in client.list(acme, "vpc")] == [mine["id"]]
    assert [v["id"] for v in client.list(globex, "vpc")] == [theirs["id"]]

    before = snapshot(db)
    ident = mine["id"]
    calls = [
        ("Get", pb.GetRequest(kind="vpc", id=ident)),
        ("Update", pb.UpdateRequest(kind="vpc", id=ident, data_json=json.dumps({**VPC, "description": "x"}))),
        ("Delete", pb.DeleteRequest(kind="vpc", id=ident)),
        ("Check", pb.CheckRequest(kind="vpc", id=ident, data_json=json.dumps(VPC))),
        ("AttachedWorkloads", pb.AttachedWorkloadsRequest(vpc_id=ident)),
    ]
    for method, request in calls:
        e = rejected(client.call, method, request, globex)
        assert e.code() == grpc.StatusCode.NOT_FOUND, (method, e.code(), e.details())
        assert ident in e.details()
    # Another tenant's VPC cannot be attached to either: it does not exist for globex.
    e = rejected(client.create, globex, "attachment", {"vpc_id": ident, "workload": "vm9", "host": "h1"})
    assert ("vpc_id", f"no VPC with id {ident!r}") in problems(e)
    assert snapshot(db) == before
    assert client.get(acme, "vpc", ident)["description"] == ""


def test_admin_acts_for_a_tenant(ctl: ControllerHandle, client: Client) -> None:
    acme, admin = token(ctl, tenant="acme"), token(ctl, "admin")
    vpc = client.create(acme, "vpc", VPC)
    assert client.get(admin, "vpc", vpc["id"], tenant="acme") == vpc
    assert [v["id"] for v in client.list(admin, "vpc")] == [vpc["id"]]  # no tenant named: all tenants
    e = rejected(client.get, admin, "vpc", vpc["id"], tenant="globex")
    assert e.code() == grpc.StatusCode.NOT_FOUND
    # A tenant token cannot borrow another tenant through the metadata.
    e = rejected(client.get, acme, "vpc", vpc["id"], tenant="globex")
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    e = rejected(client.get, admin, "vpc", vpc["id"], tenant="Not A Name")
    assert problems(e)[0][0] == "l2vpc-tenant"


def test_bad_tokens_are_unauthenticated(ctl: ControllerHandle, client: Client, db: Any) -> None:
    good = token(ctl)
    token_id, _, secret = good[len("l2vpc_"):].partition("_")
    revoked = token(ctl)
    auth.revoke_token(ctl.store, auth.parse_token(revoked)[0])  # type: ignore[index]
    short = auth.create_token(ctl.store, "tenant", tenant="acme", ttl=3)[1]
    client.create(short, "vpc", {**VPC, "name": "early"})  # valid until it expires
    before = snapshot(db)
    time.sleep(3.05)  # `short` expires; the revoke has reached the controller's token cache
    request = pb.CreateRequest(kind="vpc", data_json=json.dumps(VPC))
    cases: list[tuple[str | None, tuple[tuple[str, str], ...], str]] = [
        (None, (), "authorization: Bearer"),
        (None, (("authorization", good),), "Bearer <token>"),  # no scheme
        (None, (("authorization", f"Basic {good}"),), "Bearer <token>"),
        ("", (), "invalid token"),
        ("garbage", (), "invalid token"),
        (f"l2vpc_tok-000000000000_{secret}", (), "invalid token"),  # unknown id
        (f"l2vpc_{token_id}_{secret[:-1]}{'B' if secret.endswith('A') else 'A'}", (), "invalid token"),
        (revoked, (), "was revoked at"),  # what happened and what to do, as for an expired one
        (revoked[:-1] + ("B" if revoked.endswith("A") else "A"), (), "invalid token"),  # only to its holder
    ]
    for bearer, metadata, words in cases:
        e = rejected(client.call, "Create", request, bearer, metadata=metadata)
        assert e.code() == grpc.StatusCode.UNAUTHENTICATED, (bearer, e.code())
        assert words in e.details()
    e = rejected(client.call, "Create", request, revoked)
    assert e.details().endswith("; create a new one") and "invalid" not in e.details()
    e = rejected(client.call, "Create", request, short)
    assert e.code() == grpc.StatusCode.UNAUTHENTICATED
    info = next(t for t in auth.list_tokens(ctl.store) if short.startswith(f"l2vpc_{t.id}_"))
    assert f"expired at {auth.format_time(info.expires)}" in e.details()
    assert snapshot(db) == before
    assert client.create(good, "vpc", VPC)["name"] == "web"


def test_revoke_takes_effect_while_cached(ctl: ControllerHandle, client: Client) -> None:
    t = token(ctl)
    client.list(t, "vpc")  # verified and cached
    auth.revoke_token(ctl.store, auth.parse_token(t)[0])  # type: ignore[index]
    deadline = time.monotonic() + 5
    while True:
        try:
            client.list(t, "vpc")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNAUTHENTICATED
            break
        assert time.monotonic() < deadline, "a revoked token kept working"
        time.sleep(0.05)


def test_wrong_role_is_permission_denied(ctl: ControllerHandle, client: Client, db: Any) -> None:
    tenant, agent = token(ctl), token(ctl, "agent", host="h1")
    before = snapshot(db)
    host_json = json.dumps({"name": "h1", "region": "r1", "underlay_ip": "10.255.0.1"})
    cases: list[tuple[str, Any, str]] = [
        ("Create", pb.CreateRequest(kind="vpc", data_json=json.dumps(VPC)), agent),
        ("List", pb.ListRequest(kind="vpc"), agent),
        ("Converge", pb.ConvergeRequest(timeout_seconds=1), agent),
        ("Register", pb.RegisterRequest(host_json=host_json), tenant),
        ("Heartbeat", pb.HeartbeatRequest(host="h1"), tenant),
        ("Status", pb.StatusRequest(), tenant),
        ("Status", pb.StatusRequest(), agent),
        # An agent token speaks for its own host only.
        ("Register", pb.RegisterRequest(host_json=host_json.replace('"h1"', '"h2"')), agent),
        ("Heartbeat", pb.HeartbeatRequest(host="h2"), agent),
    ]
    for method, request, bearer in cases:
        e = rejected(client.call, method, request, bearer)
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED, (method, e.code(), e.details())
    assert snapshot(db) == before
    assert db.raw("SELECT id FROM objects WHERE kind = 'host'") == [("h1",)]


def test_oversized_requests_are_refused(ctl: ControllerHandle, client: Client, db: Any) -> None:
    t = token(ctl)
    before = snapshot(db)
    huge = json.dumps({**VPC, "description": "x" * (2 << 20)})
    e = rejected(client.call, "Create", pb.CreateRequest(kind="vpc", data_json=huge), t)
    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Under the message limit but over the per-document one.
    big = json.dumps({**VPC, "description": "x" * (300 << 10)})
    e = rejected(client.call, "Create", pb.CreateRequest(kind="vpc", data_json=big), t)
    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and e.details().startswith("data_json:")
    assert snapshot(db) == before


BAD_DOCUMENTS: list[tuple[str, str, str]] = [
    # (kind, data_json, path of the problem)
    ("vpc", '{"name": "web", ', "data_json"),
    ("vpc", "", "data_json"),
    ("vpc", "[1, 2]", "data_json"),
    ("vpc", '"web"', "data_json"),
    ("vpc", "null", "data_json"),
    ("vpc", '{"name": "web", "name": "db", "region": "r1"}', "data_json"),  # duplicate key
    ("vpc", '{"name": "web", "region": "r1", "mtu": NaN}', "data_json"),
    ("vpc", "[" * 100_000 + "]" * 100_000, "data_json"),
    ("host", json.dumps({"name": "h9", "region": "r1", "underlay_ip": "10.255.0.9"}), "kind"),
    ("token", "{}", "kind"),
    ("", json.dumps(VPC), "kind"),
    ("vpc", json.dumps({**VPC, "colour": "blue"}), "colour"),
    ("vpc", json.dumps({**VPC, "cidr": "10.1.0.0/33"}), "cidr"),
    ("vpc", json.dumps({**VPC, "mtu": "big"}), "mtu"),
    ("vpc", json.dumps({**VPC, "dhcp": {"range_start": "10.1.0.10", "range_end": "10.9.0.20"}}), "dhcp.range_end"),
    ("attachment", json.dumps({"vpc_id": "vpc-000000000000", "workload": "vm1"}), "vpc_id"),
]


def test_malformed_documents_are_invalid_argument(ctl: ControllerHandle, client: Client, db: Any) -> None:
    t = token(ctl)
    before = snapshot(db)
    for kind, document, path in BAD_DOCUMENTS:
        for method, request in [("Create", pb.CreateRequest(kind=kind, data_json=document)),
                                ("Check", pb.CheckRequest(kind=kind, data_json=document))]:
            e = rejected(client.call, method, request, t)
            found = problems(e)
            assert path in [p for p, _ in found], (method, kind, document[:80], found)
    assert snapshot(db) == before


def test_malformed_messages_are_invalid_argument(ctl: ControllerHandle, client: Client, db: Any) -> None:
    t = token(ctl)
    before = snapshot(db)
    for data in (b"\xff\xff\xff\xff", b"\x12\x02\xff\xfe"):  # a broken tag; data_json not UTF-8
        with pytest.raises(grpc.RpcError) as info:
            client.raw("Create", data, t)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
        assert "malformed CreateRequest" in info.value.details()
    # ... but only for callers with a valid token.
    with pytest.raises(grpc.RpcError) as info:
        client.raw("Create", b"\xff\xff", "l2vpc_nope")
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert snapshot(db) == before


def test_secrets_of_tokens_are_not_stored_nor_logged(ctl: ControllerHandle, client: Client, db: Any,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    texts = [token(ctl), token(ctl, "agent", host="h1"), token(ctl, "admin")]
    secrets = [t.split("_", 2)[2] for t in texts]
    client.create(texts[0], "vpc", VPC)
    rejected(client.call, "Status", pb.StatusRequest(), texts[0])
    rejected(client.call, "List", pb.ListRequest(kind="vpc"), texts[0][:-2] + "xx")
    rejected(client.call, "List", pb.ListRequest(kind="vpc"), texts[1])
    stored = " ".join(row[0] for row in db.raw("SELECT data::text FROM objects WHERE kind = 'token'"))
    assert len(db.raw("SELECT 1 FROM objects WHERE kind = 'token'")) == 3
    for text, secret in zip(texts, secrets, strict=True):
        assert secret not in stored and text not in caplog.text and secret not in caplog.text
    assert "refused" in caplog.text  # the log does say what happened


def test_token_scopes_are_validated(db: Any) -> None:
    cases = [
        (("tenant",), {}, "tenant"),
        (("tenant",), {"tenant": "Acme Corp"}, "tenant"),
        (("tenant",), {"tenant": "acme", "host": "h1"}, "host"),
        (("agent",), {}, "host"),
        (("admin",), {"tenant": "acme"}, "tenant"),
        (("root",), {}, "role"),
        (("tenant",), {"tenant": "acme", "ttl": -1}, "ttl"),
        (("tenant",), {"tenant": "acme", "ttl": float("inf")}, "ttl"),
    ]
    store = open_store(db.url)
    try:
        for args, kw, path in cases:
            with pytest.raises(ValidationError) as info:
                auth.create_token(store, *args, **kw)
            assert path in [p for p, _ in info.value.problems], (args, kw, info.value)
        assert auth.list_tokens(store) == []
    finally:
        store.close()


def test_postgres_controller_needs_the_secret_key(db: Any, pki: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("L2VPC_SECRET_KEY", raising=False)
    with pytest.raises(ControllerError, match="L2VPC_SECRET_KEY"):
        serve(ControllerSettings(store=db.url, listen="127.0.0.1:0", pki_dir=pki))
    monkeypatch.setenv("L2VPC_SECRET_KEY", "not-a-key")
    with pytest.raises(ControllerError, match="L2VPC_SECRET_KEY is not a Fernet key"):
        serve(ControllerSettings(store=db.url, listen="127.0.0.1:0", pki_dir=pki))


def hosts_table(db: Any) -> list[Any]:
    return db.raw("SELECT id, generation, data::text FROM objects WHERE kind = 'host' ORDER BY id")


def test_agents_register_and_heartbeat(ctl: ControllerHandle, client: Client, db: Any) -> None:
    agent, tenant = token(ctl, "agent", host="h2"), token(ctl)
    doc = {"name": "h2", "region": "r1", "underlay_ip": "10.255.0.2", "agent_address": "10.255.0.2:7600"}
    e = rejected(client.call, "Register", pb.RegisterRequest(host_json=json.dumps(doc)), agent)
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED and "not enrolled" in e.details()
    enroll_hosts(ctl.store, [{k: v for k, v in doc.items() if k != "agent_address"}])
    reply = client.call("Register", pb.RegisterRequest(host_json=json.dumps(doc)), agent)
    assert reply.heartbeat_interval_seconds == 1.0
    listed = client.call("ListHosts", pb.ListHostsRequest(), tenant)
    assert [json.loads(h)["name"] for h in listed.hosts_json] == ["h1", "h2"]
    beat = pb.HeartbeatRequest(host="h2", accepted_generation=0, converged_generation=0, actual_digest="")
    assert client.call("Heartbeat", beat, agent).heartbeat_interval_seconds == 1.0

    before = hosts_table(db)
    bad = [
        ({**doc, "underlay_ip": "10.255.0.300"}, "underlay_ip"),
        ({**doc, "role": "router"}, "role"),
        ({**doc, "rack": "a1"}, "rack"),
        ([doc], "host_json"),
    ]
    for document, path in bad:
        e = rejected(client.call, "Register", pb.RegisterRequest(host_json=json.dumps(document)), agent)
        assert path in [p for p, _ in problems(e)], (document, e.details())
    e = rejected(client.call, "Register", pb.RegisterRequest(host_json="{"), agent)
    assert problems(e)[0][0] == "host_json"
    # An agent that never registered is not known.
    stranger = token(ctl, "agent", host="h3")
    e = rejected(client.call, "Heartbeat", pb.HeartbeatRequest(host="h3"), stranger)
    assert e.code() == grpc.StatusCode.NOT_FOUND
    assert hosts_table(db) == before


def test_converge_streams_progress_then_the_outcome(ctl: ControllerHandle, client: Client) -> None:
    t = token(ctl)
    vpc = client.create(t, "vpc", VPC)
    client.create(t, "attachment", {"vpc_id": vpc["id"], "workload": "vm1", "host": "h1"})
    events = client.call("Converge", pb.ConvergeRequest(timeout_seconds=20), t, timeout=30)
    *progress, last = events
    assert last.done and last.revision >= 1 and not any(e.done for e in progress)
    assert any(e.host == "h1" and e.message for e in progress), progress
    # h1 has no agent: the outcome says so, per host and step.
    assert [(f.host, f.step) for f in last.failures] == [("h1", "connect")]
    assert "no agent address" in last.failures[0].error
    again = client.call("Converge", pb.ConvergeRequest(timeout_seconds=20), t, timeout=30)
    assert again[-1].done and again[-1].revision > last.revision


def test_converge_without_a_leader_is_deadline_exceeded(db: Any, secret_key: str, pki: Path) -> None:
    # Someone else holds the leadership (as a controller partitioned from us would): nobody
    # converges for this controller.
    other = open_store(db.url)
    lease = open_plane(other).try_leadership(ELECTION)
    assert lease is not None
    try:
        with running_controller(db.url, pki) as ctl:
            c = Client(ctl.address, pki / "ca.pem")
            try:
                started = time.monotonic()
                e = rejected(c.call, "Converge", pb.ConvergeRequest(timeout_seconds=1), token(ctl), timeout=10)
                assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e.details()
                assert "no controller is leading" in e.details() and time.monotonic() - started < 5
                assert isinstance(from_rpc(e), TemporaryError)
                # A client deadline shorter than the requested wait still gets the plane's answer.
                e = rejected(c.call, "Converge", pb.ConvergeRequest(timeout_seconds=60), token(ctl), timeout=2)
                assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "no controller is leading" in e.details()
            finally:
                c.close()
    finally:
        lease.release()
        other.close()


def test_status_is_for_admins(ctl: ControllerHandle, client: Client) -> None:
    admin = token(ctl, "admin")
    deadline = time.monotonic() + 10
    while True:
        status = client.call("Status", pb.StatusRequest(), admin)
        if status.leader or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert status.controller == "api-test" and status.leader == "api-test" and status.term >= 1
    assert [(h.name, h.status) for h in status.hosts] == [("h1", "up")]


def test_reads_return_no_secret(ctl: ControllerHandle, client: Client, db: Any,
                                caplog: pytest.LogCaptureFixture) -> None:
    # Issue 15 item 5: Get/List (and every reply carrying the object) return no secret; what the
    # engine needs it opens from the store, where it is sealed.
    caplog.set_level(logging.DEBUG)
    Engine(ctl.store, ctl.agents, secrets=ctl.service.secrets).register_host(
        {"name": "e1", "region": "r1", "role": "edge", "location": "nyc1", "underlay_ip": "10.255.0.9",
         "public_cidr": "203.0.113.32/28"})
    t = token(ctl)
    psk, md5, service = "Vpn.Secret_4711", "md5-Secret-0815", "mp-Service-Key-42"
    vpc = client.create(t, "vpc", VPC)
    vpn_data = {"name": "v", "vpc_id": vpc["id"], "peer_address": "198.51.100.1", "pre_shared_key": psk,
                "remote_cidrs": ["192.168.0.0/24"]}
    dx_data = {"name": "d", "vpc_id": vpc["id"], "location": "nyc1", "bandwidth_mbps": 1000, "partner": "megaport",
               "service_key": service, "bgp": {"customer_asn": 65001, "md5_key": md5}}
    replies = [client.create(t, "vpn", vpn_data), client.create(t, "direct_connect", dx_data)]
    vpn, dx = replies
    replies += [client.get(t, "vpn", vpn["id"]), client.get(t, "direct_connect", dx["id"]),
                *client.list(t, "vpn"), *client.list(t, "direct_connect"),
                client.update(t, "vpn", vpn["id"], {**vpn_data, "peer_id": "peer"}),
                client.update(t, "direct_connect", dx["id"], {**dx_data, "bandwidth_mbps": 2000})]
    for kind, data, ident in (("vpn", vpn_data, None), ("direct_connect", dx_data, dx["id"])):
        request = pb.CheckRequest(kind=kind, data_json=json.dumps({**data, "name": "other"} if ident is None else data),
                                  id=ident or "")
        replies.append(json.loads(client.call("Check", request, t).data_json))
    text = json.dumps(replies)
    for secret in (psk, md5, service):
        assert secret not in text and secret not in caplog.text
    assert [r.get("pre_shared_key") for r in replies if r["id"].startswith("vpn-") or "peer_address" in r] \
        == [None] * 5
    dxs = [r for r in replies if "bandwidth_mbps" in r]
    assert len(dxs) == 5 and all(r["service_key"] is None and r["bgp"]["md5_key"] is None for r in dxs)
    stored = " ".join(row[0] for row in db.raw("SELECT data::text FROM objects WHERE kind IN ('vpn', 'direct_connect')"))
    assert psk not in stored and md5 not in stored and service not in stored and '"$sealed": "v1"' in stored
    # The engine still has them, to push to the edge.
    topo = Engine(ctl.store, ctl.agents, secrets=ctl.service.secrets).topology()
    assert topo.vpns[vpn["id"]].pre_shared_key == psk and topo.direct_connects[dx["id"]].service_key == service
