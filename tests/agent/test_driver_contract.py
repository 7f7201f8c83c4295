"""The Driver contract, run against the memory driver and the Linux driver alike."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from l2vpc.agent.drivers import Driver, MemoryDriver
from l2vpc.agent.drivers.linux import LinuxDriver
from l2vpc.hostconfig import DhcpServer, HostConfig, Port, Reservation, Route, Segment

HOST, UNDERLAY = "h1", "10.99.0.1"
# The Pod's namespace the pod port lives in (its runtime made it; make_driver sets it up).
POD_SANDBOX = "/run/netns/memory-driver-pod"


def base_config(generation: int = 1) -> HostConfig:
    return HostConfig(
        host=HOST,
        underlay_ip=UNDERLAY,
        generation=generation,
        segments=(
            Segment(vni=100, vpc_id="vpc-a", mtu=9000, remotes=("10.99.0.2", "10.99.0.3")),
            Segment(vni=200, vpc_id="vpc-b", mtu=1500, remotes=("10.99.0.2",)),
        ),
        ports=(
            Port(id="att-a1", vni=100, workload="web1", interface_name="net1", mac="02:00:00:00:01:01",
                 mtu=9000, ip_mode="static", ip_address="10.10.0.1/24",
                 routes=(Route("192.168.0.0/16", "10.10.0.254"),)),
            Port(id="att-b1", vni=200, workload="web1", interface_name="net2", mac="02:00:00:00:02:01",
                 mtu=1500, ip_mode="none"),
            Port(id="att-b2", vni=200, workload="db1", interface_name="net1", mac="02:00:00:00:02:02",
                 mtu=1500, workload_kind="pod", ip_mode="static", ip_address="10.20.0.2/24", sandbox=POD_SANDBOX),
        ),
        dhcp_servers=(
            DhcpServer(vni=200, server_ip="10.20.0.254/24", range_start="10.20.0.100",
                       range_end="10.20.0.150", gateway="10.20.0.1",
                       reservations=(Reservation("02:00:00:00:02:09", "10.20.0.9"),)),
        ),
    )


@pytest.fixture(params=["memory", "linux"])
def make_driver(request: pytest.FixtureRequest) -> Iterator[Callable[[], Driver]]:
    if request.param == "memory":
        shared = MemoryDriver(HOST, UNDERLAY)
        yield lambda: shared
        return
    lab = request.getfixturevalue("lab")
    host = lab.add_host()
    assert host.underlay_ip == UNDERLAY
    global POD_SANDBOX
    default, POD_SANDBOX = POD_SANDBOX, lab.pod_sandbox("db1")
    try:
        yield host.driver
    finally:
        POD_SANDBOX = default


def host_devices(driver: Driver) -> list[str]:
    if isinstance(driver, MemoryDriver):
        return driver.devices()
    assert isinstance(driver, LinuxDriver)
    from l2vpc.hostconfig.names import owned_device

    return sorted(lk.name for lk in driver._nl.links() if owned_device(lk.name))


def test_converge_then_facts_match_and_second_run_is_a_no_op(make_driver: Callable[[], Driver]) -> None:
    d = make_driver()
    desired = base_config()
    first = d.converge(desired)
    assert first.ok, first.failures
    assert {str(a) for a in first.actions} >= {"create segments[vni=100]", "create ports[id=att-a1]",
                                                "create dhcp_servers[vni=200]"}
    assert first.actual.same_dataplane(desired), (first.actual, desired)
    assert d.facts().same_dataplane(desired)
    assert d.facts().generation == 1

    second = d.converge(replace(desired, generation=2))
    assert second.ok and second.actions == (), second.actions
    assert d.facts().generation == 2


def _fewer_ports(c: HostConfig) -> HostConfig:
    # Drop a port too, so an agent that applied part of a rejected config would show it.
    return replace(c, generation=2, ports=c.ports[1:])


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda c: replace(c, ports=(*c.ports, replace(c.ports[0], id="att-x", vni=999,
                                                         mac="02:00:00:00:09:09", interface_name="net3"))),
         "ports[2].vni"),
        (lambda c: replace(c, segments=(replace(c.segments[0], mtu=20000), c.segments[1])), "segments[0].mtu"),
        (lambda c: replace(c, ports=(*c.ports, replace(c.ports[1], id="att-y", mac="02:00:00:00:09:0a"))),
         "ports[2].interface_name"),
        (lambda c: replace(c, underlay_ip="10.99.0.9"), "underlay_ip"),
    ],
    ids=["unknown-vni", "mtu-20000", "duplicate-interface", "other-underlay"],
)
def test_invalid_config_is_rejected_and_changes_nothing(
    make_driver: Callable[[], Driver], mutate: Callable[[HostConfig], HostConfig], path: str
) -> None:
    d = make_driver()
    first = d.converge(base_config())
    assert first.ok, first.failures
    before, devices = d.facts(), host_devices(d)

    result = d.converge(mutate(_fewer_ports(base_config())))

    assert result.rejected and not result.ok and result.actions == ()
    assert path in [f.path for f in result.failures], result.failures
    assert all(f.reason for f in result.failures)
    assert d.facts() == before and host_devices(d) == devices


def test_removing_a_port_and_a_segment(make_driver: Callable[[], Driver]) -> None:
    d = make_driver()
    cfg = base_config()
    assert d.converge(cfg).ok

    no_b1 = replace(cfg, ports=tuple(p for p in cfg.ports if p.id != "att-b1"))
    r = d.converge(no_b1)
    assert r.ok and [str(a) for a in r.actions][:1] == ["delete ports[id=att-b1]"], r.actions
    assert r.actual.same_dataplane(no_b1)

    only_a = replace(no_b1, segments=cfg.segments[:1], dhcp_servers=(),
                     ports=tuple(p for p in no_b1.ports if p.vni == 100))
    r = d.converge(only_a)
    assert r.ok, r.failures
    verbs = [str(a) for a in r.actions]
    assert verbs.index("delete ports[id=att-b2]") < verbs.index("delete segments[vni=200]")
    assert verbs.index("delete dhcp_servers[vni=200]") < verbs.index("delete segments[vni=200]")
    assert r.actual.same_dataplane(only_a)
    assert not [n for n in host_devices(d) if n.endswith("200")]
    assert d.converge(only_a).actions == ()


def test_live_changes_update_and_identity_changes_replace(make_driver: Callable[[], Driver]) -> None:
    d = make_driver()
    cfg = base_config()
    assert d.converge(cfg).ok
    a1, b1, b2 = cfg.ports
    seg_a = cfg.segments[0]

    changed = replace(
        cfg,
        segments=(replace(seg_a, mtu=1500, remotes=("10.99.0.3",)), cfg.segments[1]),
        ports=(replace(a1, mtu=1500, ip_address="10.10.0.5/24", routes=()),
               replace(b1, restart_epoch=1), b2),
        dhcp_servers=(replace(cfg.dhcp_servers[0], reservations=(Reservation("02:00:00:00:02:09", "10.20.0.19"),)),),
    )
    r = d.converge(changed)
    assert r.ok, r.failures
    got = {(a.verb, a.path) for a in r.actions}
    assert got == {
        ("update", "segments[vni=100]"),
        ("update", "ports[id=att-a1]"),
        ("delete", "ports[id=att-b1]"),
        ("create", "ports[id=att-b1]"),
        ("reload", "dhcp_servers[vni=200]"),
    }, got
    assert r.actual.same_dataplane(changed)
    assert d.converge(changed).actions == ()

    # Anything but reservations restarts the DHCP server.
    longer = replace(changed, dhcp_servers=(replace(changed.dhcp_servers[0], lease_time=600),))
    r = d.converge(longer)
    assert r.ok and [(a.verb, a.path) for a in r.actions] == [("restart", "dhcp_servers[vni=200]")]
    assert r.actual.same_dataplane(longer)


def test_port_security_toggles_in_place_and_a_second_run_is_a_no_op(make_driver: Callable[[], Driver]) -> None:
    d = make_driver()
    cfg = base_config()
    assert d.converge(cfg).ok
    a1, b1, b2 = cfg.ports
    secured = replace(cfg, ports=(
        replace(a1, port_security=True, allowed_addresses=("10.10.0.1/32", "172.16.0.0/12")),
        replace(b1, port_security=True),  # no address: its MAC, DHCP client traffic, no IPv4
        replace(b2, port_security=True, allowed_addresses=("10.20.0.2/32",)),  # a Pod's
    ))
    r = d.converge(secured)
    assert r.ok, r.failures
    assert sorted((a.verb, a.path) for a in r.actions) == [
        ("update", "ports[id=att-a1]"), ("update", "ports[id=att-b1]"), ("update", "ports[id=att-b2]")]
    assert r.actual.same_dataplane(secured), r.actual.ports
    assert d.converge(secured).actions == ()

    narrowed = replace(secured, ports=(replace(secured.ports[0], allowed_addresses=("10.10.0.1/32",)),
                                       *secured.ports[1:]))
    r = d.converge(narrowed)
    assert r.ok and [(a.verb, a.path) for a in r.actions] == [("update", "ports[id=att-a1]")]
    assert r.actual.same_dataplane(narrowed)

    r = d.converge(cfg)  # off again: flat L2, each port updated in place
    assert r.ok and sorted(a.verb for a in r.actions) == ["update"] * 3, r.actions
    assert r.actual.same_dataplane(cfg)
    assert d.converge(cfg).actions == ()


def test_port_security_addresses_must_be_canonical(make_driver: Callable[[], Driver]) -> None:
    d = make_driver()
    cfg = base_config()
    a1 = cfg.ports[0]
    for addresses, secured in ((("10.10.0.1/24",), True), (("10.10.0.1/32",), False),
                               (("10.0.0.0/24", "10.0.1.0/24"), True)):
        bad = replace(cfg, ports=(replace(a1, port_security=secured, allowed_addresses=addresses), *cfg.ports[1:]))
        r = d.converge(bad)
        assert r.rejected and [f.path for f in r.failures] == ["ports[0].allowed_addresses"], r.failures
    assert d.facts().ports == ()


def test_teardown_leaves_nothing(make_driver: Callable[[], Driver]) -> None:
    d = make_driver()
    first = d.converge(base_config())
    assert first.ok, first.failures
    d.teardown()
    empty = d.facts()
    assert (empty.segments, empty.ports, empty.dhcp_servers, empty.generation) == ((), (), (), 0)
    assert host_devices(d) == []
    if isinstance(d, LinuxDriver):
        assert d.created_namespaces() == []
    d.teardown()  # nothing left to remove is fine
    # And it converges again from scratch afterwards.
    assert d.converge(base_config()).actual.same_dataplane(base_config())


def test_memory_driver_failure_is_reported_and_dependents_skipped() -> None:
    d = MemoryDriver(HOST, UNDERLAY)
    d.fail("segments[vni=200]", "bridge refused")
    r = d.converge(base_config())
    assert not r.ok and not r.rejected
    reasons = {f.path: f.reason for f in r.failures}
    assert reasons["segments[vni=200]"] == "bridge refused"
    assert reasons["ports[id=att-b2]"] == "not attempted: segments[vni=200] failed"
    assert reasons["dhcp_servers[vni=200]"].startswith("not attempted")
    assert r.actual.generation == 0  # not fully converged: generation not advanced
    assert [p.id for p in r.actual.ports] == ["att-a1"]
    d.heal("segments[vni=200]")
    r = d.converge(base_config())
    assert r.ok and r.actual.same_dataplane(base_config()) and r.actual.generation == 1


def test_port_device_name_clash_is_rejected() -> None:
    d = MemoryDriver(HOST, UNDERLAY)
    cfg = base_config()
    clash = replace(cfg.ports[1], id="xyz" + cfg.ports[0].id[-10:], interface_name="net5", mac="02:00:00:00:09:0b")
    cfg = replace(cfg, ports=(*cfg.ports, clash))
    # "att-a1" is shorter than 10 characters: use ids whose 10-character tails collide.
    long_a = replace(cfg.ports[0], id="aaaa-0123456789")
    long_b = replace(clash, id="bbbb-0123456789")
    cfg = replace(cfg, ports=(long_a, *cfg.ports[1:3], long_b))
    r = d.converge(cfg)
    assert r.rejected
    assert [f.path for f in r.failures] == ["ports[3].id"]
