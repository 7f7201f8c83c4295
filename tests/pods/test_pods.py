"""Real Pods (containerd + runc) on VPCs through l2vpc-cni, on a lab of real agents (root).

One lab for the module (two hosts, three VPCs, a static workload `vm1` on host1); every test
starts its own Pods and removes them, and checks that nothing of them is left.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from l2vpc.cni import spec
from l2vpc.embedded import open_engine
from l2vpc.lab import lab_pods, pods
from l2vpc.lab.lab import Lab
from l2vpc.lab.netns import ip
from l2vpc.lab.pods import PodError
from l2vpc.testing.lab import leftovers, run, topology_file

pytestmark = [pytest.mark.root, pytest.mark.skipif(
    shutil.which("containerd") is None or shutil.which("runc") is None,
    reason="needs containerd and runc (./dev installs them)")]

DOC = {
    "vpcs": [
        {"name": "blue", "region": "us-east", "mtu": 9000, "cidr": "10.31.0.0/24",
         "dhcp": {"range_start": "10.31.0.100", "range_end": "10.31.0.150"}},
        {"name": "green", "region": "us-east", "cidr": "10.32.0.0/24",
         "dhcp": {"range_start": "10.32.0.100", "range_end": "10.32.0.150"}},
        {"name": "red", "region": "us-east", "cidr": "10.33.0.0/24"},
    ],
    "attachments": [
        {"vpc": "blue", "workload": "vm1", "host": "host1", "ip_mode": "static", "ip_address": "10.31.0.11/24"},
        {"vpc": "red", "workload": "vm2", "host": "host1", "ip_mode": "static", "ip_address": "10.33.0.11/24"},
    ],
}


class PodLab:
    def __init__(self, lab: Lab, state: str) -> None:
        self.lab, self.state = lab, state

    @property
    def st(self) -> Any:
        return self.lab.require()

    def pod(self, name: str, vpcs: list[str], host: str | None = None) -> pods.PodRecord:
        return lab_pods.run(self.lab.require(), self.lab.dir, name, vpcs, host)

    def rm(self, name: str) -> list[str]:
        return lab_pods.remove(self.lab.require(), name)

    def exec(self, pod: pods.PodRecord, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return pods.exec_pod(lab_pods.runtime(self.lab.require(), self.lab.dir), pod, list(argv), timeout=timeout)

    def address(self, pod: pods.PodRecord, ifname: str, timeout: float = 15) -> str:
        """The Pod's IPv4 address on `ifname` (its own DHCP client may take a moment)."""
        deadline = time.monotonic() + timeout
        while True:
            out = self.exec(pod, "ip", "-4", "-o", "addr", "show", "dev", ifname).stdout
            if "inet " in out:
                return out.split("inet ")[1].split()[0]
            assert time.monotonic() < deadline, f"{pod.name}: no address on {ifname}"
            time.sleep(0.2)

    def attachments(self, workload: str) -> dict[str, Any]:
        """The workload's attachments by VPC name, status as the hosts report it now."""
        engine = open_engine(self.state)
        try:
            engine.refresh()
            vpcs = {v.id: v.name for v in engine.list("vpc")}
            return {vpcs[a.vpc_id]: a for a in engine.list("attachment") if a.workload == workload}
        finally:
            engine.agents.close()  # type: ignore[attr-defined]
            engine.store.close()

    def host_links(self, host: str) -> list[str]:
        rec = self.st.host(host)
        return sorted(line.split(": ")[1].split("@")[0] for line in ip("-o", "link", "show", netns=rec.netns).splitlines())


@pytest.fixture(scope="module")
def podlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodLab]:
    tmp = tmp_path_factory.mktemp("pods")
    state = str(tmp / ".l2vpc" / "state.db")
    lab = Lab(state)
    try:
        assert run("lab", "up", "--embedded", "--hosts", "2", "--state", state) == 0
        st = lab.require()
        topo = topology_file(tmp / "topo.yaml", st, DOC)
        assert run("apply", "-f", str(topo), "--state", state, "--agents", "grpc") == 0
        yield PodLab(lab, state)
    finally:
        st = lab.load()
        lab.down()
        if st is not None:
            assert not leftovers(st, tmp)
            assert not [line for line in ip("netns", "list").splitlines() if "pod-" in line and st.prefix in line]


@pytest.fixture
def clean(podlab: PodLab) -> Iterator[PodLab]:
    """After the test: its Pods removed, then their declared attachments, and the hosts run what
    they ran before (nothing of the Pods left on them)."""
    before = {h: podlab.host_links(h) for h in ("host1", "host2")}
    yield podlab
    for p in lab_pods.records(podlab.lab.require()):
        podlab.rm(p.name)
    engine = open_engine(podlab.state)
    try:
        for a in engine.list("attachment"):
            if a.workload.startswith("default-"):
                engine.delete("attachment", a.id)
        assert engine.converge()[1].ok
    finally:
        engine.agents.close()  # type: ignore[attr-defined]
        engine.store.close()
    assert {h: podlab.host_links(h) for h in ("host1", "host2")} == before, "host devices left behind"


def test_a_pod_on_two_vpcs_gets_leases_jumbo_frames_and_nothing_else(clean: PodLab) -> None:
    lab = clean
    declared = lab.attachments("default-web")
    assert declared == {}
    pod = lab.pod("web", ["blue", "green"], host="host2")
    atts = lab.attachments("default-web")
    assert {n: a.interface_name for n, a in atts.items()} == {"blue": "net1", "green": "net2"}
    assert [(n["ifname"], n["result"]["interfaces"][0]["mtu"]) for n in pod.networks] == [("net1", 9000),
                                                                                            ("net2", 1500)]
    # The result names the sandbox and the attachment's MAC; DHCP ports carry no address.
    first = pod.networks[0]["result"]
    assert first["interfaces"][0]["sandbox"] == f"/run/netns/{pod.netns}"
    assert first["interfaces"][0]["mac"] == atts["blue"].mac_address and "ips" not in first
    # The Pod's own DHCP client gets a lease from each VPC's DHCP server, in range.
    blue = ipaddress.IPv4Interface(lab.address(pod, "net1"))
    green = ipaddress.IPv4Interface(lab.address(pod, "net2"))
    assert ipaddress.IPv4Address("10.31.0.100") <= blue.ip <= ipaddress.IPv4Address("10.31.0.150")
    assert ipaddress.IPv4Address("10.32.0.100") <= green.ip <= ipaddress.IPv4Address("10.32.0.150")
    assert "mtu 9000" in lab.exec(pod, "ip", "link", "show", "net1").stdout
    assert {n: a.status for n, a in lab.attachments("default-web").items()} == {"blue": "active", "green": "active"}
    # Jumbo frames with don't-fragment across hosts (vm1 on host1, the Pod on host2).
    ping = subprocess.run(["ip", "netns", "exec", lab.lab.workload_netns("vm1"), "ping", "-c", "2", "-W", "2",
                           "-M", "do", "-s", "8972", str(blue.ip)], capture_output=True, text=True, timeout=30)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert lab.exec(pod, "ping", "-c", "1", "-W", "2", "10.31.0.11").returncode == 0
    # Isolation: red's workload (vm2, same host as vm1) is not reachable from the Pod.
    assert lab.exec(pod, "ping", "-c", "1", "-W", "1", "10.33.0.11").returncode != 0
    assert pods.check_pod(pod, lab.st.host("host2").netns) == []
    assert lab.rm("web") == []
    # The declared attachments stay, waiting for the Pod again.
    assert {n: a.status for n, a in lab.attachments("default-web").items()} == {"blue": "pending", "green": "pending"}


def test_check_reports_drift_inside_the_pod_and_the_agent_does_not_touch_it(clean: PodLab) -> None:
    lab = clean
    pod = lab.pod("drifty", ["green"], host="host1")
    host_netns = lab.st.host("host1").netns
    assert pods.check_pod(pod, host_netns) == []
    ip("link", "set", "net1", "mtu", "1400", netns=pod.netns)
    problems = pods.check_pod(pod, host_netns)
    assert len(problems) == 1 and f"error {spec.DRIFT}" in problems[0] and "MTU 1400" in problems[0]
    # A converge of the host (the engine's next push) leaves the Pod's namespace alone.
    lab.lab.restart_agent("host1")
    assert "mtu 1400" in ip("link", "show", "net1", netns=pod.netns)
    ip("link", "del", "net1", netns=pod.netns)
    problems = pods.check_pod(pod, host_netns)
    assert problems and "missing" in problems[0]


def test_agent_restart_keeps_the_pods_traffic(clean: PodLab) -> None:
    lab = clean
    pod = lab.pod("steady", ["blue"], host="host2")
    address = ipaddress.IPv4Interface(lab.address(pod, "net1")).ip
    stop = threading.Event()
    sent = received = 0

    def pinger() -> None:
        nonlocal sent, received
        while not stop.is_set():
            r = subprocess.run(["ip", "netns", "exec", lab.lab.workload_netns("vm1"), "ping", "-c", "1", "-W", "1",
                                str(address)], capture_output=True)
            sent += 1
            received += r.returncode == 0
            time.sleep(0.05)

    t = threading.Thread(target=pinger)
    t.start()
    try:
        time.sleep(0.5)
        lab.lab.restart_agent("host2", kill=True)
        time.sleep(1.0)
    finally:
        stop.set()
        t.join()
    assert sent >= 10 and received == sent, f"{received}/{sent} pings answered across the agent's restart"
    assert pods.check_pod(pod, lab.st.host("host2").netns) == []
    assert lab.attachments("default-steady")["blue"].status == "active"


def plugin(lab: PodLab, host: str, env: dict[str, str], conf: Any) -> tuple[int, dict[str, Any] | None]:
    rec = lab.st.host(host)
    data = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
    r = subprocess.run(["ip", "netns", "exec", rec.netns, pods._plugin()], input=data, env=env,
                       capture_output=True, timeout=60)
    return r.returncode, json.loads(r.stdout) if r.stdout.strip() else None


def test_bad_requests_get_spec_errors_and_leave_nothing(clean: PodLab, tmp_path: Path) -> None:
    lab = clean
    rec = lab.st.host("host1")
    netns = f"{lab.st.prefix}pod-raw"
    ip("netns", "add", netns)
    try:
        env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "raw0123456789", "CNI_NETNS": f"/run/netns/{netns}",
               "CNI_IFNAME": "net1", "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=raw"}
        conf = pods.netconf("blue", rec.cni_socket)
        before = lab.host_links("host1")
        cases = [
            (env, b"{oops", spec.DECODE_FAILURE),
            (env, {**conf, "vpc": "no-such-vpc"}, spec.NOT_PLACED_HERE),
            ({**env, "CNI_NETNS": "/run/netns/does-not-exist"}, conf, spec.UNKNOWN_CONTAINER),
        ]
        for e, c, code in cases:
            rc, out = plugin(lab, "host1", e, c)
            assert rc == 1 and out is not None and out["code"] == code, out
        # Declared on host1 as net1: asked as net2 the ADD names both interface names.
        lab_pods.declare(lab.state, "default-raw", ["blue"], "host1", None)
        rc, out = plugin(lab, "host1", {**env, "CNI_IFNAME": "net2"}, conf)
        assert rc == 1 and out is not None and out["code"] == spec.INTERFACE_MISMATCH
        assert "net2" in out["msg"] and "net1" in out["msg"]
        # On the wrong host: not placed there.
        rc, out = plugin(lab, "host2", env, pods.netconf("blue", lab.st.host("host2").cni_socket))
        assert rc == 1 and out is not None and out["code"] == spec.NOT_PLACED_HERE and "host2" in out["msg"]
        assert lab.host_links("host1") == before
        assert len(ip("-o", "link", "show", netns=netns).splitlines()) == 1  # loopback only
        # ADD, then DEL twice (and after the namespace is gone): all succeed.
        rc, out = plugin(lab, "host1", env, conf)
        assert rc == 0 and out is not None and out["interfaces"][0]["name"] == "net1"
        assert lab.attachments("default-raw")["blue"].status == "active"
        for _ in range(2):
            assert plugin(lab, "host1", {**env, "CNI_COMMAND": "DEL"}, conf) == (0, None)
        assert lab.host_links("host1") == before
        ip("netns", "del", netns)
        assert plugin(lab, "host1", {**env, "CNI_COMMAND": "DEL", "CNI_NETNS": ""}, conf) == (0, None)
    finally:
        if os.path.exists(f"/run/netns/{netns}"):
            ip("netns", "del", netns)


def test_a_pod_that_cannot_start_leaves_nothing(clean: PodLab) -> None:
    lab = clean
    with pytest.raises(PodError, match="no VPC named"):
        lab.pod("ghost", ["blue", "nope"], host="host1")
    assert not lab_pods.records(lab.lab.require())
    assert not [n for n in ip("netns", "list").splitlines() if "pod-ghost" in n]


def test_without_a_controller_a_vpc_nobody_declared_says_how_to_get_it_on_demand(clean: PodLab) -> None:
    lab = clean
    rec = lab.st.host("host1")
    netns = f"{lab.st.prefix}pod-undeclared"
    ip("netns", "add", netns)
    try:
        env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "und0123456789", "CNI_NETNS": f"/run/netns/{netns}",
               "CNI_IFNAME": "net1", "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=undeclared"}
        rc, out = plugin(lab, "host1", env, pods.netconf("green", rec.cni_socket))
        assert rc == 1 and out is not None and out["code"] == spec.NOT_PLACED_HERE, out
        assert "on-demand attachments need the agent to run with a controller" in out["details"]
        assert lab.attachments("default-undeclared") == {}
    finally:
        ip("netns", "del", netns)
