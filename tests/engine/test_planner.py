"""Planner properties: for random host configs A and B, replaying plan(A→B) on A gives B,
plan(B→B) is empty, and every operation runs after the operations it depends on."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from l2vpc.engine.model import VPC, Attachment, Dhcp, Host
from l2vpc.engine.planner import apply_operations, diff_host, plan
from l2vpc.engine.topology import Topology, host_configs
from l2vpc.hostconfig import DhcpServer, HostConfig, Port, Reservation, Segment

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
        )
        for v in vnis
        if draw(st.booleans())
    )
    return HostConfig(
        host="h1",
        underlay_ip="10.0.0.1",
        segments=segments,
        ports=tuple(sorted(ports, key=lambda p: p.id)),
        dhcp_servers=dhcp,
    )


def _strip(c: HostConfig) -> HostConfig:
    return dataclasses.replace(c.normalized(), generation=0, labels={})


@settings(max_examples=300, deadline=None)
@given(host_config(), host_config())
def test_replaying_the_plan_reaches_the_desired_config(a: HostConfig, b: HostConfig) -> None:
    ops = diff_host("h1", b, a)
    assert _strip(apply_operations(a, ops)) == _strip(b)
    assert diff_host("h1", b, b) == ()
    # Dependencies are satisfied by the order, and name operations of this plan only.
    ids = [op.id for op in ops]
    assert len(ids) == len(set(ids))
    for pos, op in enumerate(ops):
        for dep in op.depends_on:
            assert dep in ids[:pos], f"{op.id} runs before {dep}"


@settings(max_examples=200, deadline=None)
@given(host_config(), host_config())
def test_a_segment_is_never_missing_under_its_ports(a: HostConfig, b: HostConfig) -> None:
    """Replaying step by step, every intermediate config is valid: ports sit on existing segments."""
    ops = diff_host("h1", b, a)
    state = a
    for op in ops:
        state = apply_operations(state, [dataclasses.replace(op, depends_on=())])
        vnis = {s.vni for s in state.segments}
        assert all(p.vni in vnis for p in state.ports), f"after {op.id}"
        assert all(d.vni in vnis for d in state.dhcp_servers), f"after {op.id}"


def test_host_leaving_removes_everything_in_order() -> None:
    seg = Segment(4096, "vpc-1", 1500, ("10.0.0.2",))
    port = Port("att-1", 4096, "w1", "net1", "02:00:00:00:00:01", 1500)
    cfg = HostConfig("h1", "10.0.0.1", segments=(seg,), ports=(port,))
    ops = diff_host("h1", None, cfg)
    assert [(o.action, o.kind) for o in ops] == [("delete", "port"), ("delete", "segment")]
    assert ops[1].depends_on == ("h1/port/att-1",)
    assert ops[0].disruptive


def test_port_changes_split_into_update_and_disruptive_replace() -> None:
    seg = Segment(4096, "vpc-1", 9000)
    port = Port("att-1", 4096, "w1", "net1", "02:00:00:00:00:01", 1500)
    base = HostConfig("h1", "10.0.0.1", segments=(seg,), ports=(port,))
    mtu = dataclasses.replace(base, ports=(dataclasses.replace(port, mtu=9000),))
    (op,) = diff_host("h1", mtu, base)
    assert (op.action, op.disruptive, op.reason) == ("update", False, "changed: mtu")
    epoch = dataclasses.replace(base, ports=(dataclasses.replace(port, restart_epoch=1),))
    (op,) = diff_host("h1", epoch, base)
    assert (op.action, op.disruptive) == ("replace", True)
    assert "scope" in op.reason


def _topology(n_hosts: int, placements: list[tuple[int, int]]) -> Topology:
    topo = Topology()
    for i in range(n_hosts):
        topo.hosts[f"h{i}"] = Host(name=f"h{i}", region="r1", underlay_ip=f"10.0.0.{i + 1}")
    for v in range(3):
        vpc = VPC(
            id=f"vpc-{v:04x}",
            name=f"v{v}",
            region="r1",
            cidr=f"10.{v}.0.0/24",
            vni=5000 + v,
            dhcp=Dhcp(range_start=f"10.{v}.0.10", range_end=f"10.{v}.0.20") if v == 0 else None,
        )
        topo.vpcs[vpc.id] = vpc
    for n, (vpc_idx, host_idx) in enumerate(placements):
        a = Attachment(
            id=f"att-{n:04x}",
            vpc_id=f"vpc-{vpc_idx:04x}",
            workload=f"w{n}",
            host=f"h{host_idx}",
            mac_address=f"02:00:00:00:01:{n:02x}",
            interface_name="net1",
        )
        topo.attachments[a.id] = a
    first0 = next((a.host for a in topo.attachments.values() if a.vpc_id == "vpc-0000"), None)
    topo.vpcs["vpc-0000"] = topo.vpcs["vpc-0000"].model_copy(update={"dhcp_host": first0})
    return topo


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 3)), max_size=12),
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 3)), max_size=12),
)
def test_topology_projection_and_plans(pa: list[tuple[int, int]], pb: list[tuple[int, int]]) -> None:
    a, b = host_configs(_topology(4, pa)), host_configs(_topology(4, pb))
    # Head-end replication is symmetric: each carrier lists every other carrier.
    by_ip = {c.underlay_ip: c for c in b.values()}
    for cfg in b.values():
        for seg in cfg.segments:
            for r in seg.remotes:
                peer = next(s for s in by_ip[r].segments if s.vni == seg.vni)
                assert cfg.underlay_ip in peer.remotes
    p = plan(b, a)
    for name, hp in p.hosts.items():
        assert _strip(apply_operations(a.get(name), hp.operations, name, b[name].underlay_ip)) == _strip(
            b[name]
        )
    assert plan(b, b).is_empty
