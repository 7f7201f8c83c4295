"""The shared diff (actual x desired -> changes -> an agent's steps) and the drift report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from l2vpc.agent.facts import drift
from l2vpc.hostconfig import DhcpServer, HostConfig, Port, Reservation, Route, Segment
from l2vpc.hostconfig.diff import Change, diff, steps

SEG_A = Segment(100, "vpc-a", 1500, ("10.0.0.2",))
SEG_B = Segment(200, "vpc-b", 9000, ())
P1 = Port("p1", 100, "w1", "net1", "02:00:00:00:00:01", 1500, ip_mode="static", ip_address="10.1.0.1/24")
P2 = Port("p2", 200, "w1", "net2", "02:00:00:00:00:02", 9000)
DHCP = DhcpServer(100, "10.1.0.254/24", "10.1.0.100", "10.1.0.150")


def cfg(segments: Sequence[Segment] = (), ports: Sequence[Port] = (), dhcp: Sequence[DhcpServer] = ()) -> HostConfig:
    return HostConfig("h1", "10.0.0.1", 1, tuple(segments), tuple(ports), tuple(dhcp))


def plan(actual: HostConfig, desired: HostConfig) -> list[Change]:
    """What an agent carries out: the steps of the diff of the normalized configs."""
    return steps(diff(actual.normalized(), desired.normalized()))


def names(actual: HostConfig, desired: HostConfig) -> list[str]:
    return [f"{op.verb} {op.path}" for op in plan(actual, desired)]


def test_same_config_in_any_order_plans_nothing() -> None:
    a = cfg([SEG_A, SEG_B], [P1, P2], [DHCP])
    b = cfg([SEG_B, replace(SEG_A, remotes=("10.0.0.2", "10.0.0.2"))], [P2, P1], [DHCP])
    assert plan(a, b) == []
    assert drift(b, a) == []


def test_create_order_and_dependencies() -> None:
    ops = plan(cfg(), cfg([SEG_A, SEG_B], [P1, P2], [DHCP]))
    assert [f"{o.verb} {o.path}" for o in ops] == [
        "create segments[vni=100]", "create segments[vni=200]", "create dhcp_servers[vni=100]",
        "create ports[id=p1]", "create ports[id=p2]",
    ]
    assert ops[3].depends_on == ("segments[vni=100]",)


def test_removal_order_ports_then_dhcp_then_segments() -> None:
    assert names(cfg([SEG_A, SEG_B], [P1, P2], [DHCP]), cfg()) == [
        "delete ports[id=p1]", "delete ports[id=p2]", "delete dhcp_servers[vni=100]",
        "delete segments[vni=100]", "delete segments[vni=200]",
    ]


def test_live_fields_update_identity_fields_recreate() -> None:
    base = cfg([SEG_A, SEG_B], [P1, P2])
    live = cfg([SEG_A, SEG_B], [replace(P1, mtu=1400, ip_address="10.1.0.9/24", routes=(Route("10.9.0.0/16", "10.1.0.1"),)), P2])
    assert names(base, live) == ["update ports[id=p1]"]
    changes: list[dict[str, Any]] = [{"restart_epoch": 1}, {"mac": "02:00:00:00:00:09"}, {"interface_name": "net3"},
                   {"workload": "w2"}, {"vni": 200}, {"workload_kind": "pod"}]
    for change in changes:
        new = cfg([SEG_A, SEG_B], [replace(P1, **change), P2])
        assert names(base, new) == ["delete ports[id=p1]", "create ports[id=p1]"], change


def test_dhcp_reservations_reload_everything_else_restarts() -> None:
    base = cfg([SEG_A], [], [DHCP])
    reserved = cfg([SEG_A], [], [replace(DHCP, reservations=(Reservation("02:00:00:00:00:05", "10.1.0.5"),))])
    assert names(base, reserved) == ["reload dhcp_servers[vni=100]"]
    assert names(base, cfg([SEG_A], [], [replace(DHCP, lease_time=600)])) == ["restart dhcp_servers[vni=100]"]


def test_dhcp_clients_that_leave_are_released_in_place() -> None:
    two = replace(DHCP, clients=("02:00:00:00:00:01", "02:00:00:00:00:02"))
    ops = plan(cfg([SEG_A], [], [two]), cfg([SEG_A], [], [replace(two, clients=("02:00:00:00:00:02",))]))
    assert [(o.action, o.how, o.detail, o.disruptive) for o in ops] == [
        ("update", "live", "clients 2 -> 1, 1 lease(s) released", False)]
    grown = plan(cfg([SEG_A], [], [DHCP]), cfg([SEG_A], [], [two]))
    assert [(o.how, o.detail) for o in grown] == [("live", "clients 0 -> 2")]


def test_segment_changes_are_one_update_with_a_readable_detail() -> None:
    ops = plan(cfg([SEG_A]), cfg([replace(SEG_A, mtu=9000, remotes=("10.0.0.3",))]))
    assert [(o.verb, o.path) for o in ops] == [("update", "segments[vni=100]")]
    assert ops[0].detail == "mtu 1500 -> 9000; remotes +10.0.0.3 -10.0.0.2"


def test_drift_names_fields_and_missing_objects() -> None:
    want = cfg([SEG_A, SEG_B], [P1])
    have = cfg([replace(SEG_A, mtu=1400)], [P1, P2])
    assert [str(d) for d in drift(want, have)] == [
        "segments[vni=100].mtu: want 1500, have 1400",
        "segments[vni=200]: missing",
        "ports[id=p2]: not wanted",
    ]
