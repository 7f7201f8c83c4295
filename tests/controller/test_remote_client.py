"""RemoteEngine (l2vpc/controller/client.py) against a real controller (served in-process over
TLS) on a real, throwaway PostgreSQL: the engine's calls and errors as the provider sees them,
tenants kept apart, retries while the controller restarts, converge progress, timeout and stop."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from l2vpc.controller import auth
from l2vpc.controller.client import RemoteEngine
from l2vpc.controller.server import ControllerHandle, ControllerSettings, serve
from l2vpc.engine.api import Engine
from l2vpc.engine.errors import ConflictError, NotFoundError, TemporaryError, UserError, ValidationError
from l2vpc.engine.model import VPC, Attachment, Host
from l2vpc.pki import CertificateAuthority
from l2vpc.testing.ports import free_port
from l2vpc.testing.slow_proxy import SlowProxy

from ._api_helpers import make_pki, running_controller, snapshot

NET = {"name": "web", "region": "r1", "cidr": "10.1.0.0/24"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki") / "pki")


@pytest.fixture
def ctl(db: Any, secret_key: str, pki: Path) -> Iterator[ControllerHandle]:
    with running_controller(db.url, pki) as handle:
        Engine(handle.store, handle.agents, secrets=handle.service.secrets).register_host(
            {"name": "h1", "region": "r1", "underlay_ip": "10.255.0.1"})
        yield handle


def tenant_token(ctl: ControllerHandle, tenant: str = "acme") -> str:
    return auth.create_token(ctl.store, "tenant", tenant=tenant)[1]


@pytest.fixture
def remote(ctl: ControllerHandle, pki: Path) -> Iterator[RemoteEngine]:
    engine = RemoteEngine(ctl.address, tenant_token(ctl), ca_file=str(pki / "ca.pem"))
    try:
        yield engine
    finally:
        engine.close()


def test_engine_calls_return_engine_objects(remote: RemoteEngine, ctl: ControllerHandle, db: Any) -> None:
    vpc = remote.create("vpc", NET, adopt=True)
    assert isinstance(vpc, VPC) and vpc.id.startswith("vpc-") and vpc.vni
    assert remote.get("vpc", vpc.id, confirm=True) == vpc
    assert remote.find("vpc", "vpc-000000000000") is None
    assert remote.vpc_by_name("web") == vpc and remote.vpc_by_name("nope") is None
    assert [v.id for v in remote.list("vpc")] == [vpc.id]

    before = snapshot(db)
    checked = remote.check("vpc", {**NET, "name": "db"})
    assert isinstance(checked, VPC) and checked.name == "db"
    assert snapshot(db) == before  # Check writes nothing

    updated = remote.update("vpc", vpc.id, {**NET, "mtu": 9000})
    assert updated.mtu == 9000 and updated.vni == vpc.vni
    att = remote.create("attachment", {"vpc_id": vpc.id, "workload": "vm1", "host": "h1"}, adopt=True)
    assert isinstance(att, Attachment) and att.interface_name == "net1" and att.status == "pending"
    assert remote.attached_workloads(vpc.id) == ["vm1"]
    hosts = remote.hosts(region="r1", role="compute")
    assert [h.name for h in hosts] == ["h1"] and isinstance(hosts[0], Host)
    assert remote.hosts(region="elsewhere") == []
    remote.refresh(["h1"], timeout=1)  # no agent address: nothing to ask, and no error

    # An identical create that was never confirmed is adopted, not duplicated.
    again = remote.create("attachment", {"vpc_id": vpc.id, "workload": "vm1", "host": "h1"}, adopt=True)
    assert again.id == att.id

    remote.delete("attachment", att.id)
    remote.delete("vpc", vpc.id)
    assert remote.list("vpc") == []
    assert "token" not in repr(remote) and "l2vpc_" not in repr(remote)


def test_errors_come_back_as_the_engines(remote: RemoteEngine, ctl: ControllerHandle, pki: Path) -> None:
    vpc = remote.create("vpc", NET)
    with pytest.raises(ValidationError) as bad:
        remote.create("vpc", {**NET, "name": "other", "mtu": 100})
    assert [p for p, _ in bad.value.problems] == ["mtu"]
    with pytest.raises(ValidationError, match="already exists") as taken:
        remote.create("vpc", NET)
    assert taken.value.problems[0][0] == "name"
    remote.create("attachment", {"vpc_id": vpc.id, "workload": "vm1", "host": "h1"})
    with pytest.raises(ConflictError):
        remote.delete("vpc", vpc.id)  # still has an attachment

    # Another tenant: the id does not exist for it, whatever the call.
    other = RemoteEngine(ctl.address, tenant_token(ctl, "globex"), ca_file=str(pki / "ca.pem"))
    try:
        with pytest.raises(NotFoundError):
            other.get("vpc", vpc.id)
        assert other.find("vpc", vpc.id) is None
        with pytest.raises(NotFoundError):
            other.update("vpc", vpc.id, NET)
        with pytest.raises(NotFoundError):
            other.delete("vpc", vpc.id)
        assert other.list("vpc") == [] and other.vpc_by_name("web") is None
    finally:
        other.close()
    assert remote.get("vpc", vpc.id).name == "web"


def test_bad_token_and_foreign_ca_fail_at_once_with_clear_errors(ctl: ControllerHandle, pki: Path,
                                                                   tmp_path: Path) -> None:
    wrong = RemoteEngine(ctl.address, "l2vpc_tok-000000000000_nope", ca_file=str(pki / "ca.pem"))
    try:
        with pytest.raises(UserError, match="controller refused the token") as err:
            wrong.list("vpc")
    finally:
        wrong.close()
    # Terraform shows it under a heading that says what happened.
    from l2vpc.provider.diagnostics import Diagnostics
    from l2vpc.provider.resources.common import report_engine_error

    diags = Diagnostics()
    assert report_engine_error(err.value, diags)
    assert [d.summary for d in diags.errors] == ["Authentication failed"]
    assert "l2vpc controller token create" in diags.errors[0].detail

    foreign = CertificateAuthority.create(tmp_path / "other-ca")
    started = time.monotonic()
    engine = RemoteEngine(ctl.address, tenant_token(ctl), ca_file=str(foreign.ca_path))
    try:
        with pytest.raises(UserError, match=r"TLS connection to the controller .* failed.*ca_file"):
            engine.list("vpc")
    finally:
        engine.close()
    assert time.monotonic() - started < 5  # not retried as if the controller were restarting

    with pytest.raises(UserError, match="No such file"):
        RemoteEngine(ctl.address, "x", ca_file=str(tmp_path / "missing.pem"))
    (tmp_path / "junk.pem").write_text("hello")
    with pytest.raises(UserError, match="not a PEM certificate"):
        RemoteEngine(ctl.address, "x", ca_file=str(tmp_path / "junk.pem"))


def test_reads_wait_for_a_restarting_controller_and_writes_that_cannot_repeat_do_not(
        db: Any, secret_key: str, pki: Path) -> None:
    port = free_port()
    settings = ControllerSettings(store=db.url, listen=f"127.0.0.1:{port}", pki_dir=pki, controller_id="restart",
                                  stop_grace=0.1, token_cache_seconds=0.2)
    _, first = serve(settings)
    token = auth.create_token(first.store, "tenant", tenant="acme")[1]
    engine = RemoteEngine(f"127.0.0.1:{port}", token, ca_file=str(pki / "ca.pem"), retry_seconds=10)
    second: list[ControllerHandle] = []
    try:
        vpc = engine.create("vpc", NET)
        first.stop(0)

        started = time.monotonic()
        with pytest.raises(TemporaryError, match="unavailable"):
            engine.create("vpc", {**NET, "name": "other"})  # adopt=False: not repeated
        assert time.monotonic() - started < 2

        restart = threading.Timer(1.0, lambda: second.append(serve(settings)[1]))
        restart.start()
        try:
            started = time.monotonic()
            assert engine.get("vpc", vpc.id) == vpc  # retried until the new controller answered
            assert 0.8 < time.monotonic() - started < 8
        finally:
            restart.join()
        # A stop ends the retrying at once.
        second[0].stop(0)
        engine.stop.set()
        started = time.monotonic()
        with pytest.raises(TemporaryError):
            engine.get("vpc", vpc.id)
        assert time.monotonic() - started < 1
    finally:
        engine.close()
        for handle in second:
            handle.stop(0)


def test_converge_progress_failures_timeout_and_stop(remote: RemoteEngine, ctl: ControllerHandle) -> None:
    engine = Engine(ctl.store, ctl.agents, secrets=ctl.service.secrets)
    # h2's agent address refuses connections: the push fails as "unavailable".
    engine.register_host({"name": "h2", "region": "r1", "underlay_ip": "10.255.0.2",
                          "agent_address": f"127.0.0.1:{free_port()}"})
    vpc = remote.create("vpc", NET)
    remote.create("attachment", {"vpc_id": vpc.id, "workload": "vm2", "host": "h2"})
    seen: list[tuple[str, str]] = []
    _, result = remote.converge(progress=lambda h, m: seen.append((h, m)), timeout=20)
    assert [(f.host, f.step, f.code) for f in result.failures] == [("h2", "push", "unreachable")]
    assert result.failures[0].retryable  # the code crossed the API: nothing parses the words
    assert "unavailable" in result.failures[0].detail and not result.ok and result.revision >= 1
    assert any(h == "h2" and "pushing generation" in m for h, m in seen), seen

    # An agent that accepts connections and never answers: the leader's push hangs.
    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(8)
        engine.register_host({"name": "h3", "region": "r1", "underlay_ip": "10.255.0.3",
                              "agent_address": f"127.0.0.1:{blackhole.getsockname()[1]}"})
        remote.create("attachment", {"vpc_id": vpc.id, "workload": "vm3", "host": "h3"})
        started = time.monotonic()
        with pytest.raises(TemporaryError, match="h3"):
            remote.converge(timeout=1.5)  # the controller's own account names the host
        assert 1.4 < time.monotonic() - started < 4

        threading.Timer(0.5, remote.stop.set).start()
        started = time.monotonic()
        _, stopped = remote.converge(timeout=60)
        assert stopped.stopped and not stopped.ok
        assert time.monotonic() - started < 1.5  # the stream was cancelled, not waited out


def test_learned_prefixes_come_through_the_api(remote: RemoteEngine, ctl: ControllerHandle) -> None:
    """A remote apply of a direct connect waits for what its session learns, as the embedded
    mode does: the edge's report reaches the provider through StatusDetail (it used to carry
    only the detail and the reason, so the provider could not wait)."""
    from l2vpc.hostconfig import HostConfig, Observation

    engine = Engine(ctl.store, ctl.agents, secrets=ctl.service.secrets)
    engine.register_host({"name": "e1", "region": "r1", "role": "edge", "location": "nyc1",
                          "underlay_ip": "10.255.1.1", "handoff": "xc0"})
    vpc = remote.create("vpc", NET)
    dx = remote.create("direct_connect", {"name": "dx", "vpc_id": vpc.id, "location": "nyc1",
                                          "bandwidth_mbps": 1000, "bgp": {"customer_asn": 65010}})
    assert dx.edge_host == "e1" and remote.learned("direct_connect", dx.id) == ()
    report = HostConfig("e1", "10.255.1.1", observations=(
        Observation(dx.id, "established", learned=("192.168.50.0/24", "10.99.0.0/16")),))
    with ctl.store.transaction() as tx:
        tx.put_host_report("e1", 1, report.to_dict())
    assert remote.learned("direct_connect", dx.id) == ("10.99.0.0/16", "192.168.50.0/24")
    assert engine.learned("direct_connect", dx.id) == remote.learned("direct_connect", dx.id)


def test_a_controller_that_dies_during_the_handshake_is_passed_over(ctl: ControllerHandle, pki: Path) -> None:
    """A peer that resets the connection in the middle of the TLS handshake (a controller killed
    a moment ago) is an unavailable endpoint, not a certificate problem: the next one answers."""
    dying = socket.socket()
    dying.bind(("127.0.0.1", 0))
    dying.listen(16)
    stop = threading.Event()

    def reset_every_connection() -> None:
        dying.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = dying.accept()
            except OSError:
                continue
            conn.recv(1)  # the client's hello has started
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            conn.close()  # linger 0: a reset

    thread = threading.Thread(target=reset_every_connection, daemon=True)
    thread.start()
    first = f"127.0.0.1:{dying.getsockname()[1]}"
    engine = RemoteEngine(f"{first},{ctl.address}", tenant_token(ctl), ca_file=str(pki / "ca.pem"))
    try:
        assert engine.list("vpc") == []
        assert engine.endpoint == ctl.address
    finally:
        engine.close()
        stop.set()
        thread.join()
        dying.close()


def test_a_controller_slow_to_answer_the_handshake_is_waited_for(ctl: ControllerHandle, pki: Path) -> None:
    """A busy controller (or machine) answers the TLS handshake late: the client waits for it.
    gRPC once cut such a connection off after 100 ms (its minimum connect time, taken from a
    reconnect option), and the client reported a certificate problem."""
    with SlowProxy(ctl.address, delay=0.5) as proxy:
        engine = RemoteEngine(proxy.address, tenant_token(ctl), ca_file=str(pki / "ca.pem"))
        try:
            assert engine.list("vpc") == []
            assert proxy.connections == 1  # one connection, waited for, not retried
        finally:
            engine.close()


def test_a_controller_that_drops_connections_is_passed_over(ctl: ControllerHandle, pki: Path) -> None:
    """A controller whose host drops packets (its TCP connect never completes) is given up after
    the connect time, well within the call's timeout, and the next one answers."""
    with socket.socket() as dropping, socket.socket() as filler:
        dropping.bind(("127.0.0.1", 0))
        dropping.listen(0)
        filler.connect(dropping.getsockname())  # the accept queue is full: the next SYNs are dropped
        first = f"127.0.0.1:{dropping.getsockname()[1]}"
        engine = RemoteEngine(f"{first},{ctl.address}", tenant_token(ctl), ca_file=str(pki / "ca.pem"), timeout=15)
        try:
            assert engine.list("vpc") == []
            assert engine.endpoint == ctl.address
        finally:
            engine.close()
