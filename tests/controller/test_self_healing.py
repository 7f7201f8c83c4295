"""Issue 14: the lab's default mode (one controller on SQLite, `l2vpc lab up --controllers 1`)
heals what changes after the apply, within seconds and with no apply:

- the customer configures the premises router after the direct connect was applied: once the
  BGP session comes up, every workload (static and DHCP) pings premises-host; when the router
  drops the session again, the route leaves every workload;
- a device deleted by hand (the VPC's VXLAN, its bridge, a workload's veth) comes back and
  traffic resumes;
- the agent of the host running the VPC's DHCP server is SIGKILLed (not restarted): the server
  moves to another host, whose server then leases to a workload there.

Real everything: namespaces, the controller and agents as processes, FRR, dnsmasq, udhcpc (see
l2vpc/testing/healing_lab.py). One lab serves the module; the tests run in file order and the
last one leaves an agent dead. Bounds are generous for a loaded 2-core machine (the heal
itself takes 1-5 s there; bench/bench_heal.py measures it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from l2vpc.hostconfig import port_device_name
from l2vpc.hostconfig.names import bridge_name, vxlan_name
from l2vpc.lab import netns
from l2vpc.lab.controller_lab import ControllerPlan
from l2vpc.testing.healing_lab import PREMISES_LAN, Applied, HealingLab, healing_lab
from l2vpc.testing.scrape import wait_for

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")]

HEAL_BOUND = 30.0  # s: a heal that works takes a few; one that does not never comes
WORKLOADS = {"w1": ("host1", "static"), "w2": ("host2", "dhcp"), "w3": ("host1", "dhcp")}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HealingLab, Applied]]:
    with healing_lab(tmp_path_factory.mktemp("heal"), ControllerPlan(1)) as lab:
        applied = lab.apply(WORKLOADS)
        yield lab, applied


def reaches_premises(lab: HealingLab, applied: Applied, timeout: float) -> list[str]:
    """What does not answer (empty: every workload and premises-host ping each other)."""
    return [f"{a.label} -> {b.label}" for a, b in lab.reach(applied, timeout).unreachable]


def assert_reached(lab: HealingLab, applied: Applied, timeout: float = HEAL_BOUND) -> None:
    """Every workload and premises-host ping each other within `timeout`; if not, what the
    session, the controller, the workloads and host2's bridge showed."""
    missing = reaches_premises(lab, applied, timeout)
    if not missing:
        return
    host2 = lab.host("host2").netns
    seen = {w: (lab.premises_route(w), netns.ip("-4", "-o", "addr", "show", netns=lab.lab.workload_netns(w)))
            for w in WORKLOADS}
    raise AssertionError(
        f"no answer: {', '.join(missing)}; session {lab.edge_session(applied).state}, learned "
        f"{lab.engine.learned('direct_connect', applied.dx.id)}; workloads (route, addresses) {seen}; host2 links "
        f"{netns.ip('-o', 'link', 'show', netns=host2) if host2 else ''}")


def test_premises_configured_after_the_apply_is_reached_without_an_apply(
        site: tuple[HealingLab, Applied]) -> None:
    lab, applied = site
    session = lab.edge_session(applied)
    assert not session.established, session  # the router holds no peering address yet
    assert all(not lab.premises_route(w) for w in WORKLOADS)
    # The workloads reach each other already; not the premises.
    assert set(reaches_premises(lab, applied, timeout=1)) >= {f"{w} -> premises-host" for w in WORKLOADS}

    lab.configure_premises()
    configured = time.monotonic()
    wait_for(lambda: lab.edge_session(applied).established, HEAL_BOUND, "the BGP session")
    assert_reached(lab, applied)
    took = time.monotonic() - configured
    assert lab.engine.learned("direct_connect", applied.dx.id) == (PREMISES_LAN,)
    print(f"every workload pings premises-host {took:.2f} s after the router was configured")
    gateway = applied.dx.gateway_ip.split("/")[0]
    for w in WORKLOADS:  # static ports by the agent, DHCP ones by a renewal with the new option
        assert lab.premises_route(w).startswith(f"{PREMISES_LAN} via {gateway} "), (w, lab.premises_route(w))


def test_a_route_the_premises_withdraws_leaves_every_workload(site: tuple[HealingLab, Applied]) -> None:
    """DHCP clients used to keep a classless route the new offer no longer has: traffic to the
    premises kept going to a gateway without a route."""
    lab, applied = site
    assert all(lab.premises_route(w) for w in WORKLOADS)
    lab.unconfigure_premises()
    wait_for(lambda: not lab.edge_session(applied).established, HEAL_BOUND, "the session down")
    wait_for(lambda: not any(lab.premises_route(w) for w in WORKLOADS), HEAL_BOUND,
             "the premises route gone from every workload")
    # Configured again, the route comes back to all of them.
    lab.configure_premises()
    assert_reached(lab, applied)
    # Within the same bound: a DHCP client may still be renewing when the pings answer.
    wait_for(lambda: all(lab.premises_route(w) for w in WORKLOADS), HEAL_BOUND,
             "the premises route back on every workload")


@pytest.mark.parametrize("device", ["vxlan", "bridge", "veth"])
def test_a_device_deleted_by_hand_comes_back(site: tuple[HealingLab, Applied], device: str) -> None:
    lab, applied = site
    host = lab.host("host2")
    assert host.netns is not None
    vni = int(applied.vpc.vni)
    name = {"vxlan": vxlan_name(vni), "bridge": bridge_name(vni),
            "veth": port_device_name(applied.attachments["w2"].id)}[device]
    lab.configure_premises()  # as the tests before leave it (a no-op then)
    assert_reached(lab, applied)
    interface = workload_interface(lab, applied, "w2")
    netns.ip("link", "del", name, netns=host.netns)  # an operator's mistake
    deleted = time.monotonic()
    assert netns.ip("-o", "link", "show", netns=host.netns).count(f" {name}") == 0
    wait_for(lambda: f" {name}" in netns.ip("-o", "link", "show", netns=host.netns), HEAL_BOUND,
             f"{name} recreated on host2")
    # host2's workload talks to the others and to the premises again.
    assert_reached(lab, applied)
    if device != "veth":  # only the bridge or the VXLAN went: the workload keeps its interface (and lease)
        assert workload_interface(lab, applied, "w2") == interface
    print(f"{device} {name}: traffic back {time.monotonic() - deleted:.2f} s after it was deleted")


def workload_interface(lab: HealingLab, applied: Applied, workload: str) -> str:
    """`ip -o link` of the workload's interface: its index, name and MAC."""
    name = applied.attachments[workload].interface_name
    line = netns.ip("-o", "link", "show", name, netns=lab.lab.workload_netns(workload)).strip()
    return " ".join(line.split()[:2]) + " " + line.split("link/ether", 1)[-1].split()[0]


def udhcpc(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    return done.stdout + done.stderr


def test_the_dhcp_host_s_agent_killed_dhcp_moves(site: tuple[HealingLab, Applied]) -> None:
    lab, applied = site
    vpc = lab.engine.get("vpc", applied.vpc.id)
    before = vpc.dhcp_host
    assert before in ("host1", "host2")
    other = "host2" if before == "host1" else "host1"
    workload = next(w for w, (h, mode) in WORKLOADS.items() if h == other and mode == "dhcp")
    mac = applied.attachments[workload].mac_address
    leases = Path(lab.host(other).agent_dir) / "driver" / "dhcp" / str(vpc.vni) / "leases"
    assert not leases.exists()
    pid = lab.host(before).pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()

    wait_for(lambda: lab.engine.get("vpc", vpc.id).dhcp_host == other, HEAL_BOUND, f"the DHCP server moved to {other}")
    wait_for(leases.exists, HEAL_BOUND, f"dnsmasq running on {other}")
    moved = time.monotonic() - killed
    # A client on that host asks now (its own client would at half its lease; -s: leave the
    # interface to it) and the moved server leases to it.
    ns = lab.lab.workload_netns(workload)
    argv = ["ip", "netns", "exec", ns, "busybox", "udhcpc", "-i", "net1", "-n", "-q", "-t", "5", "-T", "1",
            "-s", "/bin/true"]
    out = wait_for(lambda: "obtained" in (text := udhcpc(argv)) and text, HEAL_BOUND, "a lease")
    wait_for(lambda: mac in leases.read_text(), 5, f"{workload}'s lease recorded by the server on {other}")
    print(f"DHCP on {other} {moved:.2f} s after {before}'s agent was killed; {out.strip().splitlines()[-1]}")
