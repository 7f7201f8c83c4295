"""Diff properties: for random host configs A and B, replaying diff(A, B) (or its steps) on A
gives B, diff(B, B) is empty, every step runs after what it depends on, and every intermediate
state of the steps is a valid host (items sit on existing segments)."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from l2vpc.hostconfig import BgpPeer, DhcpServer, EdgeRouter, HostConfig, Port, Reservation, Segment
from l2vpc.hostconfig.diff import apply_changes, diff, steps

VNIS = [4096, 4097, 4098, 4099]
REMOTES = ["10.0.0.2", "10.0.0.3", "10.0.0.4"]


@st.composite
def host_config(draw: st.DrawFn) -> HostConfig:
    vnis = draw(st.lists(st.sampled_from(VNIS), unique=True, max_size=4))
    segments = tuple(
        Segment(
            vni=v,
            vpc_id=f"vpc-{v:x}",
            mtu=draw(st.sampled_from([1500, 9000])),
            remotes=tuple(sorted(draw(st.sets(st.sampled_from(REMOTES))))),
        )
        for v in sorted(vnis)
    )
    ports = []
    if vnis:
        for i in draw(st.lists(st.integers(0, 7), unique=True, max_size=6)):
            ports.append(
                Port(
                    id=f"att-{i:04x}",
                    vni=draw(st.sampled_from(vnis)),
                    workload=f"w{i % 3}",
                    interface_name=f"net{i // 3 + 1}",
                    mac=f"02:00:00:00:00:{i:02x}",
                    mtu=draw(st.sampled_from([1500, 9000])),
                    ip_mode=draw(st.sampled_from(["none", "dhcp"])),
                    restart_epoch=draw(st.integers(0, 1)),
                )
            )
    dhcp = tuple(
        DhcpServer(
            vni=v,
            server_ip="10.1.0.254/24",
            range_start="10.1.0.10",
            range_end="10.1.0.20",
            lease_time=draw(st.sampled_from([3600, 7200])),
            reservations=tuple(
                Reservation(f"02:00:00:00:00:{j:02x}", f"10.1.0.{j + 30}")
                for j in draw(st.sets(st.integers(0, 3)))
            ),
            clients=tuple(f"02:00:00:00:01:{j:02x}" for j in sorted(draw(st.sets(st.integers(0, 3))))),
        )
        for v in vnis
        if draw(st.booleans())
    )
    edges = []
    if vnis:
        for i in draw(st.lists(st.integers(0, 2), unique=True, max_size=2)):
            layer3 = draw(st.booleans())
            edges.append(EdgeRouter(
                id=f"dx-{i}", vni=draw(st.sampled_from(vnis)), mode="layer3" if layer3 else "layer2",
                handoff=f"xc{i}", bandwidth_mbps=draw(st.sampled_from([1000, 2000])),
                gateway_ip="10.1.0.1/24" if layer3 else None,
                bgp=BgpPeer(64600, draw(st.sampled_from([65010, 65020])), "169.254.0.0/31", "169.254.0.1")
                if layer3 else None,
            ))
    return HostConfig(
        host="h1",
        underlay_ip="10.0.0.1",
        segments=segments,
        ports=tuple(sorted(ports, key=lambda p: p.id)),
        dhcp_servers=dhcp,
        edge_routers=tuple(edges),
    )


def _strip(c: HostConfig) -> HostConfig:
    return dataclasses.replace(c.normalized(), generation=0, labels={})


@settings(max_examples=300, deadline=None)
@given(host_config(), host_config())
def test_replaying_the_diff_reaches_the_desired_config(a: HostConfig, b: HostConfig) -> None:
    changes = diff(a, b)
    assert _strip(apply_changes(a, changes)) == _strip(b)
    assert _strip(apply_changes(a, steps(changes))) == _strip(b)
    assert diff(b, b) == ()
    # One change per item; dependencies name paths of this diff only, and the steps' order
    # satisfies them.
    paths = [c.path for c in changes]
    assert len(paths) == len(set(paths))
    ordered = [s.path for s in steps(changes)]
    for pos, step in enumerate(steps(changes)):
        for dep in step.depends_on:
            assert dep in ordered[:pos], f"{step.path} runs before {dep}"


@settings(max_examples=200, deadline=None)
@given(host_config(), host_config())
def test_a_segment_is_never_missing_under_its_ports(a: HostConfig, b: HostConfig) -> None:
    """Replaying step by step, every intermediate config is valid: items sit on existing segments."""
    state = a
    for step in steps(diff(a, b)):
        state = apply_changes(state, [dataclasses.replace(step, depends_on=())])
        vnis = {s.vni for s in state.segments}
        assert all(p.vni in vnis for p in state.ports), f"after {step.verb} {step.path}"
        assert all(d.vni in vnis for d in state.dhcp_servers), f"after {step.verb} {step.path}"
        assert all(e.vni in vnis for e in state.edge_routers), f"after {step.verb} {step.path}"


def test_host_leaving_removes_everything_in_order() -> None:
    seg = Segment(4096, "vpc-1", 1500, ("10.0.0.2",))
    port = Port("att-1", 4096, "w1", "net1", "02:00:00:00:00:01", 1500)
    cfg = HostConfig("h1", "10.0.0.1", segments=(seg,), ports=(port,))
    order = steps(diff(cfg, None))
    assert [(s.action, s.kind) for s in order] == [("delete", "port"), ("delete", "segment")]
    assert order[1].depends_on == ("ports[id=att-1]",)
    assert order[0].disruptive


def test_port_changes_split_into_update_and_disruptive_replace() -> None:
    seg = Segment(4096, "vpc-1", 9000)
    port = Port("att-1", 4096, "w1", "net1", "02:00:00:00:00:01", 1500)
    base = HostConfig("h1", "10.0.0.1", segments=(seg,), ports=(port,))
    mtu = dataclasses.replace(base, ports=(dataclasses.replace(port, mtu=9000),))
    (c,) = diff(base, mtu)
    assert (c.action, c.how, c.disruptive, c.detail) == ("update", "live", False, "mtu 1500 -> 9000")
    epoch = dataclasses.replace(base, ports=(dataclasses.replace(port, restart_epoch=1),))
    (c,) = diff(base, epoch)
    assert (c.action, c.disruptive) == ("replace", True)
    assert "scope" in c.detail


