"""Real VMs (QEMU under TCG) on VPCs through taps, on a lab of real agents (root).

One lab and one VM for the module (booting a guest under TCG takes seconds): `vm1` on host1 with
NICs on `blue` (MTU 9000, a static address, which is a DHCP reservation for a VM) and `green`
(DHCP); `web` on host2 (blue, static) and a Pod on host2 (blue); `vm2` alone on `red`. The
tests run in file order; the last one removes one of the VM's attachments.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from l2vpc.embedded import open_engine
from l2vpc.engine.errors import ValidationError
from l2vpc.hostconfig.names import tap_device_name
from l2vpc.lab import lab_pods, lab_vms, vm
from l2vpc.lab.lab import Lab
from l2vpc.lab.netns import ip
from l2vpc.testing.lab import leftovers, run, topology_file

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.skipif(
    shutil.which("qemu-system-x86_64") is None, reason="needs qemu-system-x86 (./dev installs it)")]

DOC = {
    "vpcs": [
        {"name": "blue", "region": "us-east", "mtu": 9000, "cidr": "10.41.0.0/24",
         "dhcp": {"range_start": "10.41.0.100", "range_end": "10.41.0.150"}},
        {"name": "green", "region": "us-east", "cidr": "10.42.0.0/24",
         "dhcp": {"range_start": "10.42.0.100", "range_end": "10.42.0.150"}},
        {"name": "red", "region": "us-east", "cidr": "10.43.0.0/24"},
    ],
    "attachments": [
        {"vpc": "blue", "workload": "vm1", "host": "host1", "ip_mode": "static", "ip_address": "10.41.0.11/24"},
        {"vpc": "green", "workload": "vm1", "host": "host1", "ip_mode": "dhcp"},
        {"vpc": "blue", "workload": "web", "host": "host2", "ip_mode": "static", "ip_address": "10.41.0.12/24"},
        {"vpc": "red", "workload": "vm2", "host": "host1", "ip_mode": "static", "ip_address": "10.43.0.11/24"},
    ],
}


class VmLab:
    def __init__(self, lab: Lab, state: str, tmp: Path) -> None:
        self.lab, self.state, self.tmp = lab, state, tmp

    def vm(self) -> vm.VmRecord:
        return lab_vms.find(self.lab.require(), "vm1")

    def sh(self, line: str, timeout: float = 30) -> tuple[str, int]:
        return vm.command(self.vm(), line, timeout=timeout)

    def address(self, ifname: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while True:
            out, _ = self.sh(f"ip -4 -o addr show dev {ifname}")
            if "inet " in out:
                return out.split("inet ")[1].split()[0]
            assert time.monotonic() < deadline, f"vm1: no address on {ifname}: {out}"
            time.sleep(0.3)

    def ping(self, workload: str, target: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.lab.workload_netns(workload), "ping", "-c", "1", "-W", "2",
                               *args, target], capture_output=True, text=True, timeout=30)

    def host_links(self, host: str) -> list[str]:
        rec = self.lab.require().host(host)
        return sorted(line.split(": ")[1].split("@")[0] for line in ip("-o", "link", "show", netns=rec.netns).splitlines())


@pytest.fixture(scope="module")
def vmlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VmLab]:
    tmp = tmp_path_factory.mktemp("vms")
    state = str(tmp / ".l2vpc" / "state.db")
    lab = Lab(state)
    try:
        assert run("lab", "up", "--embedded", "--hosts", "2", "--state", state) == 0
        st = lab.require()
        assert run("apply", "-f", str(topology_file(tmp / "topo.yaml", st, DOC)), "--state", state,
                   "--agents", "grpc") == 0
        lab_vms.up(lab.require(), lab.dir, lab.pki_dir, "vm1")
        yield VmLab(lab, state, tmp)
    finally:
        st = lab.load()
        lab.down()
        if st is not None:
            assert not leftovers(st, tmp)
        assert not [p for p in subprocess.run(["pgrep", "-af", "qemu-system"], capture_output=True, text=True)
                    .stdout.splitlines() if str(tmp) in p]


def test_the_vm_gets_both_leases_jumbo_frames_and_reaches_only_its_vpcs(vmlab: VmLab) -> None:
    st = vmlab.lab.require()
    host1 = st.host("host1")
    # Taps named after the attachments, on the VPCs' bridges, each with its own MAC (not the guest's).
    taps = [n["tap"] for n in vmlab.vm().nics]
    assert all(t in vmlab.host_links("host1") for t in taps)
    link = ip("-d", "link", "show", taps[0], netns=host1.netns)
    assert "mtu 9000" in link and "tun type tap" in link and "02:4c:32" not in link.split("link/ether")[1][:20]
    # The static address reached the guest as a DHCP reservation; green's from its range.
    assert vmlab.address("net1") == "10.41.0.11/24"
    green = vmlab.address("net2")
    assert green.startswith("10.42.0.1") and 100 <= int(green.split("/")[0].split(".")[-1]) <= 150
    out, rc = vmlab.sh("ip link show net1")
    assert rc == 0 and "mtu 9000" in out
    # A workload on the other host reaches the VM with a 9000-byte frame, don't-fragment.
    ping = vmlab.ping("web", "10.41.0.11", "-M", "do", "-s", "8972")
    assert ping.returncode == 0, ping.stdout
    # ... and a Pod on that host too; the VM reaches both.
    if shutil.which("containerd"):
        pod = lab_pods.run(st, vmlab.lab.dir, "cache", ["blue"], host="host2")
        try:
            out, _ = pods_address(vmlab, pod)
            _, rc = vmlab.sh(f"ping -c 1 -W 2 {out}")
            assert rc == 0
        finally:
            lab_pods.remove(vmlab.lab.require(), "cache")
    _, rc = vmlab.sh("ping -c 1 -W 2 10.41.0.12")
    assert rc == 0
    # red's workload (same host as the VM) is out of reach.
    _, rc = vmlab.sh("ping -c 1 -W 1 10.43.0.11")
    assert rc != 0


def pods_address(vmlab: VmLab, pod: Any) -> tuple[str, str]:
    from l2vpc.lab import pods

    rt = lab_pods.runtime(vmlab.lab.require(), vmlab.lab.dir)
    deadline = time.monotonic() + 20
    while True:
        out = pods.exec_pod(rt, pod, ["ip", "-4", "-o", "addr", "show", "dev", "net1"]).stdout
        if "inet " in out:
            return out.split("inet ")[1].split("/")[0], out
        assert time.monotonic() < deadline, "the Pod got no address"
        time.sleep(0.2)


def test_an_agent_restart_does_not_disturb_the_vm(vmlab: VmLab) -> None:
    stop = threading.Event()
    sent = received = 0

    def pinger() -> None:
        nonlocal sent, received
        while not stop.is_set():
            sent += 1
            received += vmlab.ping("web", "10.41.0.11").returncode == 0
            time.sleep(0.05)

    t = threading.Thread(target=pinger)
    t.start()
    try:
        time.sleep(0.5)
        vmlab.lab.restart_agent("host1", kill=True)
        time.sleep(1.0)
    finally:
        stop.set()
        t.join()
    assert sent >= 10 and received == sent, f"{received}/{sent} pings answered across the agent's restart"
    assert all(n["tap"] in vmlab.host_links("host1") for n in vmlab.vm().nics)


def test_bad_virtual_server_requests_are_refused_and_change_nothing(vmlab: VmLab) -> None:
    engine = open_engine(vmlab.state)
    try:
        before = {a.id for a in engine.list("attachment")}
        vpcs = {v.name: v.id for v in engine.list("vpc")}
        with pytest.raises(ValidationError) as err:
            engine.create("attachment", {"vpc_id": "vpc-000000000000", "workload": "vm1", "host": "host1"})
        assert err.value.first[0] == "vpc_id"
        # An 11th NIC: vm3 gets ten VPCs (blue, green, red and seven more), the eleventh is refused.
        extra = [engine.create("vpc", {"name": f"x{i}", "region": "us-east"}).id for i in range(8)]
        made = [engine.create("attachment", {"vpc_id": v, "workload": "vm3", "host": "host1"})
                for v in [vpcs["blue"], vpcs["green"], vpcs["red"], *extra[:7]]]
        with pytest.raises(ValidationError) as err:
            engine.create("attachment", {"vpc_id": extra[7], "workload": "vm3", "host": "host1"})
        assert "10" in str(err.value)
        for a in made:
            engine.delete("attachment", a.id)
        for v in extra:
            engine.delete("vpc", v)
        assert {a.id for a in engine.list("attachment")} == before
    finally:
        engine.agents.close()  # type: ignore[attr-defined]
        engine.store.close()
    assert len([t for t in vmlab.host_links("host1") if t.startswith("l2t")]) == 2


def test_destroying_an_attachment_takes_only_that_nic(vmlab: VmLab) -> None:
    engine = open_engine(vmlab.state)
    try:
        green = next(a for a in engine.list("attachment") if a.workload == "vm1" and a.interface_name == "net2")
        engine.delete("attachment", green.id)
        assert engine.converge()[1].ok
    finally:
        engine.agents.close()  # type: ignore[attr-defined]
        engine.store.close()
    assert tap_device_name(green.id) not in vmlab.host_links("host1")
    # The guest still has net2 but it lost its carrier; net1 carries on.
    deadline = time.monotonic() + 10
    while True:
        out, _ = vmlab.sh("cat /sys/class/net/net2/carrier /sys/class/net/net1/carrier")
        if out.split() == ["0", "1"]:
            break
        assert time.monotonic() < deadline, out
        time.sleep(0.2)
    assert vmlab.ping("web", "10.41.0.11").returncode == 0
