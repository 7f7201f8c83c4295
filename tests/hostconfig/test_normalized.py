"""HostConfig.normalized: a config already in canonical order is returned as it is, and that
shortcut gives exactly what building the canonical copy gives, for configs in any order."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from l2vpc.hostconfig import DhcpServer, HostConfig, Port, Route, Segment

from .test_diff_properties import host_config

ROUTES = (Route("10.8.0.0/16", "10.1.0.1"), Route("10.8.0.0/16", "10.1.0.2"), Route("10.9.0.0/16", "10.1.0.1"))


@st.composite
def canonical(draw: st.DrawFn) -> HostConfig:
    """A canonical config with something in every collection a perturbation below can upset."""
    cfg = draw(host_config())
    ports = tuple(dataclasses.replace(p, mac=p.mac.replace("02:00", "02:ab", 1), routes=ROUTES) for p in cfg.ports)
    dhcp = tuple(dataclasses.replace(d, clients=tuple(c.replace("02:00", "02:ab", 1) for c in d.clients),
                                     routes=ROUTES, dns_servers=("10.1.0.53",)) for d in cfg.dhcp_servers)
    return dataclasses.replace(cfg, ports=ports, dhcp_servers=dhcp)._normalized_copy()


def _first(items: tuple, change: Callable) -> tuple:
    return (change(items[0]), *items[1:]) if items else items


def _reversed(items: tuple) -> tuple:
    return tuple(reversed(items))


# One way each to leave the canonical form: normalized() must notice every one of them.
PERTURBATIONS: dict[str, Callable[[HostConfig], HostConfig]] = {
    "segments order": lambda c: dataclasses.replace(c, segments=_reversed(c.segments)),
    "segments list": lambda c: dataclasses.replace(c, segments=list(c.segments)),
    "remotes order": lambda c: dataclasses.replace(c, segments=_first(
        c.segments, lambda s: dataclasses.replace(s, remotes=_reversed(s.remotes)))),
    "remotes repeated": lambda c: dataclasses.replace(c, segments=_first(
        c.segments, lambda s: dataclasses.replace(s, remotes=s.remotes + s.remotes[-1:]))),
    "remotes list": lambda c: dataclasses.replace(c, segments=_first(
        c.segments, lambda s: dataclasses.replace(s, remotes=list(s.remotes)))),
    "ports order": lambda c: dataclasses.replace(c, ports=_reversed(c.ports)),
    "port mac case": lambda c: dataclasses.replace(c, ports=_first(
        c.ports, lambda p: dataclasses.replace(p, mac=p.mac.upper()))),
    "port routes order": lambda c: dataclasses.replace(c, ports=_first(
        c.ports, lambda p: dataclasses.replace(p, routes=_reversed(p.routes)))),
    "port routes list": lambda c: dataclasses.replace(c, ports=_first(
        c.ports, lambda p: dataclasses.replace(p, routes=list(p.routes)))),
    "dhcp order": lambda c: dataclasses.replace(c, dhcp_servers=_reversed(c.dhcp_servers)),
    "dhcp dns list": lambda c: dataclasses.replace(c, dhcp_servers=_first(
        c.dhcp_servers, lambda d: dataclasses.replace(d, dns_servers=list(d.dns_servers)))),
    "dhcp reservations order": lambda c: dataclasses.replace(c, dhcp_servers=_first(
        c.dhcp_servers, lambda d: dataclasses.replace(d, reservations=_reversed(d.reservations)))),
    "dhcp reservations list": lambda c: dataclasses.replace(c, dhcp_servers=_first(
        c.dhcp_servers, lambda d: dataclasses.replace(d, reservations=list(d.reservations)))),
    "dhcp routes order": lambda c: dataclasses.replace(c, dhcp_servers=_first(
        c.dhcp_servers, lambda d: dataclasses.replace(d, routes=_reversed(d.routes)))),
    "dhcp routes list": lambda c: dataclasses.replace(c, dhcp_servers=_first(
        c.dhcp_servers, lambda d: dataclasses.replace(d, routes=list(d.routes)))),
    "dhcp clients order": lambda c: dataclasses.replace(c, dhcp_servers=_first(
        c.dhcp_servers, lambda d: dataclasses.replace(d, clients=_reversed(d.clients)))),
    "dhcp clients case": lambda c: dataclasses.replace(c, dhcp_servers=_first(
        c.dhcp_servers, lambda d: dataclasses.replace(d, clients=tuple(m.upper() for m in d.clients)))),
    "dhcp clients repeated": lambda c: dataclasses.replace(c, dhcp_servers=_first(
        c.dhcp_servers, lambda d: dataclasses.replace(d, clients=d.clients + d.clients[-1:]))),
    "edge routers order": lambda c: dataclasses.replace(c, edge_routers=_reversed(c.edge_routers)),
    "edge routers list": lambda c: dataclasses.replace(c, edge_routers=list(c.edge_routers)),
}


@settings(max_examples=600, deadline=None)
@given(canonical(), st.sampled_from(sorted(PERTURBATIONS)))
def test_the_shortcut_gives_the_canonical_copy(cfg: HostConfig, how: str) -> None:
    assert cfg.normalized() is cfg  # the canonical form is recognised: the shortcut is taken
    messy = PERTURBATIONS[how](cfg)
    got = messy.normalized()
    # repr shows order, case and list-versus-tuple, which == on the dataclass also compares.
    assert repr(got) == repr(cfg) and got == cfg
    assert repr(got) == repr(messy._normalized_copy())


def test_every_perturbation_is_noticed() -> None:
    """Each perturbation above, on a config that has what it upsets, leaves the canonical form
    (the cases of the property are not vacuous)."""
    ports = tuple(Port(id=f"att-{i}", vni=4096, workload="w", interface_name=f"net{i}", mac=f"02:ab:00:00:00:0{i}",
                       mtu=1500, routes=ROUTES) for i in (1, 2))
    dhcp = tuple(DhcpServer(vni=v, server_ip="10.1.0.254/24", range_start="10.1.0.10", range_end="10.1.0.20",
                            dns_servers=("10.1.0.53",), routes=ROUTES, clients=("02:ab:00:00:01:01", "02:ab:00:00:01:02"),
                            reservations=()) for v in (4096, 4097))
    segments = tuple(Segment(vni=v, vpc_id=f"vpc-{v}", mtu=1500, remotes=("10.0.0.2", "10.0.0.3")) for v in (4096, 4097))
    cfg = HostConfig("h1", "10.0.0.1", segments=segments, ports=ports, dhcp_servers=dhcp)._normalized_copy()
    assert cfg.normalized() is cfg
    from l2vpc.hostconfig import EdgeRouter, Reservation

    edges = tuple(EdgeRouter(id=f"dx-{i}", vni=4096, mode="layer2", handoff=f"xc{i}", bandwidth_mbps=1000)
                  for i in (1, 2))
    cfg = dataclasses.replace(cfg, edge_routers=edges, dhcp_servers=_first(cfg.dhcp_servers, lambda d: dataclasses.replace(
        d, reservations=(Reservation("02:ab:00:00:00:01", "10.1.0.31"), Reservation("02:ab:00:00:00:02", "10.1.0.32")))))
    assert cfg.normalized() is cfg
    for how, perturb in PERTURBATIONS.items():
        messy = perturb(cfg)
        assert messy.normalized() is not messy, how
        assert messy.normalized() == cfg, how
