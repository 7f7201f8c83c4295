"""Pods with VPCs on demand (issue 13), for real: a lab of network namespaces whose agents run
the Linux driver and register with a controller process on PostgreSQL, Pods on containerd +
runc, networks added by `l2vpc-cni` as a runtime would. The Pods name VPCs nobody declared for
them: each ADD creates the attachment (on the Pod's host, owned by the Pod), each DEL deletes it.

One lab for the module (two hosts, VPCs blue/green with DHCP and red without, static workloads
vm1 on blue and vm2 on red, both on host1); every test removes its Pods and checks that nothing
of them is left, in the state or on the hosts.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from l2vpc._proto import controller_pb2 as cpb
from l2vpc.cni import spec
from l2vpc.controller.auth import create_token
from l2vpc.controller.enrollment import enroll_hosts
from l2vpc.engine.api import Engine
from l2vpc.engine.errors import ValidationError
from l2vpc.engine.store import open_store
from l2vpc.engine.topology_file import load, sync
from l2vpc.lab import lab_pods, pods
from l2vpc.lab.lab import Lab, LabController
from l2vpc.lab.netns import ip
from l2vpc.lab.topology import MANAGEMENT_IP, LabTopology
from l2vpc.testing.lab import leftovers, run, topology_file
from l2vpc.testing.lab_controller import Controller, Relay, socket_url
from l2vpc.testing.postgres import Schema

from ._api_helpers import Client, make_pki

pytestmark = [pytest.mark.root, pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("containerd") is None or shutil.which("runc") is None,
    reason="needs root, containerd and runc (./dev installs them)")]

PORT = 7710
VPCS = [
    {"name": "blue", "region": "us-east", "mtu": 9000, "cidr": "10.31.0.0/24",
     "dhcp": {"range_start": "10.31.0.100", "range_end": "10.31.0.150"}},
    {"name": "green", "region": "us-east", "cidr": "10.32.0.0/24",
     "dhcp": {"range_start": "10.32.0.100", "range_end": "10.32.0.150"}},
    {"name": "red", "region": "us-east", "cidr": "10.33.0.0/24"},
]
STATIC = [("blue", "vm1", "10.31.0.11/24"), ("red", "vm2", "10.33.0.11/24")]


def wait_for(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := pred()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.1)
    return value


@dataclass
class Site:
    lab: Lab
    client: Client
    tenant: str
    store_url: str
    vpcs: dict[str, dict[str, Any]]
    tmp: Path

    @property
    def st(self) -> Any:
        return self.lab.require()

    def converge(self) -> None:
        done = self.client.call("Converge", cpb.ConvergeRequest(timeout_seconds=60), self.tenant, timeout=70)[-1]
        assert done.done and not done.failures, [(f.host, f.step, f.error) for f in done.failures]

    def attachments(self, workload: str) -> dict[str, dict[str, Any]]:
        """The workload's attachments by VPC name, as the controller has them."""
        names = {v["id"]: n for n, v in self.vpcs.items()}
        return {names.get(a["vpc_id"], a["vpc_id"]): a for a in self.client.list(self.tenant, "attachment")
                if a["workload"] == workload}

    def dhcp_dir(self, vpc: str) -> Path:
        """The state directory of the VPC's DHCP server (dnsmasq) on its DHCP host."""
        v = next(x for x in self.client.list(self.tenant, "vpc") if x["name"] == vpc)
        return Path(self.st.host(v["dhcp_host"]).agent_dir) / "driver" / "dhcp" / str(v["vni"])

    def leases(self, vpc: str) -> dict[str, str]:
        """MAC -> address in the lease file of the VPC's DHCP server."""
        lines = (self.dhcp_dir(vpc) / "leases").read_text().splitlines()
        return {f[1].lower(): f[2] for line in lines if len(f := line.split()) >= 3}

    def dhcp_pid(self, vpc: str) -> str:
        return (self.dhcp_dir(vpc) / "pid").read_text().strip()

    def host_links(self, host: str) -> list[str]:
        rec = self.st.host(host)
        return sorted(line.split(": ")[1].split("@")[0] for line in ip("-o", "link", "show", netns=rec.netns).splitlines())

    def exec(self, pod: pods.PodRecord, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return pods.exec_pod(lab_pods.runtime(self.st, self.lab.dir), pod, list(argv), timeout=timeout)

    def address(self, pod: pods.PodRecord, ifname: str, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        while True:
            out = self.exec(pod, "ip", "-4", "-o", "addr", "show", "dev", ifname).stdout
            if "inet " in out:
                return out.split("inet ")[1].split()[0]
            assert time.monotonic() < deadline, f"{pod.name}: no address on {ifname}"
            time.sleep(0.2)

    def plugin(self, host: str, env: dict[str, str], conf: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        rec = self.st.host(host)
        r = subprocess.run(["ip", "netns", "exec", rec.netns, pods._plugin()], input=json.dumps(conf).encode(),
                           env=env, capture_output=True, timeout=60)
        return r.returncode, json.loads(r.stdout) if r.stdout.strip() else None


@pytest.fixture(scope="module")
def site(pg: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    from cryptography.fernet import Fernet

    tmp = tmp_path_factory.mktemp("ondemand")
    with pytest.MonkeyPatch.context() as env:  # the controller's key, for this module only
        env.setenv("L2VPC_SECRET_KEY", Fernet.generate_key().decode())
        yield from _site(pg, tmp)


def _site(pg: Any, tmp: Path) -> Iterator[Site]:
    schema = Schema(pg, "l2vpc_tests", f"ondemand{os.getpid()}")
    pki = make_pki(tmp / "pki")
    topo = LabTopology.build(hosts=2)
    store = open_store(schema.url)
    try:
        enroll_hosts(store, topo.host_documents())  # the operator says what each host is
        tokens = {h.name: create_token(store, "agent", host=h.name)[1] for h in topo.hosts}
        tenant = create_token(store, "tenant", tenant="acme")[1]
        admin = create_token(store, "admin")[1]
    finally:
        store.close()
    lab = Lab(str(tmp / "state.db"), pki_dir=pki)
    controller: Controller | None = None
    relay: Relay | None = None
    client: Client | None = None
    try:
        lab.up(topo, "linux", controller=LabController(f"{MANAGEMENT_IP}:{PORT}", pki / "ca.pem", tokens,
                                                       server_name="controller"))
        controller = Controller(lab.switch_netns, socket_url(schema), f"{MANAGEMENT_IP}:{PORT}", pki, tmp,
                                controller_id="c1", heartbeat_interval=0.5, down_after=5.0)
        relay = Relay(lab.switch_netns, MANAGEMENT_IP, PORT)
        client = Client(relay.address, pki / "ca.pem")
        wait_for(lambda: {h.name: h.status for h in client.call("Status", cpb.StatusRequest(), admin).hosts}
                 == {"host1": "up", "host2": "up"}, 60, "both agents registered")
        vpcs = {v["name"]: client.create(tenant, "vpc", v) for v in VPCS}
        for vpc, workload, address in STATIC:
            client.create(tenant, "attachment", {"vpc_id": vpcs[vpc]["id"], "workload": workload, "host": "host1",
                                                 "ip_mode": "static", "ip_address": address})
        s = Site(lab, client, tenant, schema.url, vpcs, tmp)
        s.converge()
        yield s
    finally:
        st = lab.load()
        if st is not None:  # the Pods' DELs need the controller: before it stops
            warnings = lab_pods.remove_all(st)
            assert not warnings, warnings
        if client is not None:
            client.close()
        if relay is not None:
            relay.close()
        if controller is not None:
            controller.stop()
        lab.down()
        schema.drop()
        if st is not None:
            assert not leftovers(st, tmp)
            assert not [line for line in ip("netns", "list").splitlines() if st.prefix in line]


@pytest.fixture
def clean(site: Site) -> Iterator[Site]:
    """After the test: its Pods gone, and with them every attachment they created; the hosts run
    what they ran before."""
    before = {h: site.host_links(h) for h in ("host1", "host2")}
    yield site
    for p in lab_pods.records(site.st):
        assert lab_pods.remove(site.st, p.name) == []
    leftover = [a for a in site.client.list(site.tenant, "attachment") if a["workload"] not in ("vm1", "vm2")]
    assert [a for a in leftover if a["owner"]] == [], "on-demand attachments left in the state"
    for a in leftover:  # declared by the test
        site.client.call("Delete", cpb.DeleteRequest(kind="attachment", id=a["id"]), site.tenant)
    site.converge()
    assert {h: site.host_links(h) for h in ("host1", "host2")} == before, "host devices left behind"


def test_a_pod_gets_two_vpcs_on_demand_and_its_del_removes_them(clean: Site) -> None:
    site = clean
    assert site.attachments("default-web") == {}
    pod = lab_pods.run(site.st, site.lab.dir, "web", ["blue", "green"], host="host2")
    atts = site.attachments("default-web")
    owner = f"pod:host2/{pod.container_id}"
    assert {n: (a["interface_name"], a["host"], a["workload_kind"], a["owner"], a["ip_mode"])
            for n, a in atts.items()} == {"blue": ("net1", "host2", "pod", owner, "dhcp"),
                                          "green": ("net2", "host2", "pod", owner, "dhcp")}
    assert [(n["ifname"], n["result"]["interfaces"][0]["mtu"]) for n in pod.networks] == [("net1", 9000),
                                                                                            ("net2", 1500)]
    first = pod.networks[0]["result"]["interfaces"][0]
    assert first["sandbox"] == f"/run/netns/{pod.netns}" and first["mac"] == atts["blue"]["mac_address"]
    wait_for(lambda: {n: a["status"] for n, a in site.attachments("default-web").items()}
             == {"blue": "active", "green": "active"}, 30, "the Pod's attachments active")
    # Traffic: the Pod's own DHCP client gets a lease; vm1 (host1) and the Pod (host2) talk,
    # jumbo frames with don't-fragment; red's vm2 is not reachable.
    blue = ipaddress.IPv4Interface(site.address(pod, "net1"))
    assert ipaddress.IPv4Address("10.31.0.100") <= blue.ip <= ipaddress.IPv4Address("10.31.0.150")
    assert site.exec(pod, "ping", "-c", "1", "-W", "2", "10.31.0.11").returncode == 0
    ping = subprocess.run(["ip", "netns", "exec", site.lab.workload_netns("vm1"), "ping", "-c", "2", "-W", "2",
                           "-M", "do", "-s", "8972", str(blue.ip)], capture_output=True, text=True, timeout=30)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert site.exec(pod, "ping", "-c", "1", "-W", "1", "10.33.0.11").returncode != 0
    assert pods.check_pod(pod, site.st.host("host2").netns) == []

    # DEL removes them from the state and releases the Pod's lease (its address back in the
    # pool at once), in place: another Pod's lease on the same server stays, dnsmasq runs on.
    # A second DEL (and one after the netns is gone) is fine.
    other = lab_pods.run(site.st, site.lab.dir, "db", ["blue"], host="host1")
    other_ip = ipaddress.IPv4Interface(site.address(other, "net1")).ip
    other_mac = site.attachments("default-db")["blue"]["mac_address"].lower()
    networks = list(pod.networks)
    blue_mac = atts["blue"]["mac_address"].lower()
    assert site.leases("blue").get(blue_mac) == str(blue.ip)
    dnsmasq_pid = site.dhcp_pid("blue")
    assert lab_pods.remove(site.st, "web") == []
    assert site.attachments("default-web") == {}
    wait_for(lambda: blue_mac not in site.leases("blue"), 10, "the Pod's lease released")
    assert site.leases("blue").get(other_mac) == str(other_ip) and site.dhcp_pid("blue") == dnsmasq_pid
    for net in networks:
        env = pods.plugin_env("DEL", pod, net["ifname"])
        assert site.plugin("host2", env, net["netconf"]) == (0, None)


def test_the_eleventh_vpc_declared_and_on_demand_together_is_refused(clean: Site) -> None:
    site = clean
    extra = {f"x{i}": site.client.create(site.tenant, "vpc", {"name": f"x{i}", "region": "us-east"})
             for i in range(1, 12)}
    site.vpcs.update(extra)
    try:
        for i in range(1, 5):  # four declared for the Pod, as Terraform would
            site.client.create(site.tenant, "attachment", {"vpc_id": extra[f"x{i}"]["id"], "workload": "default-many",
                                                           "workload_kind": "pod", "host": "host1"})
        site.converge()
        netns = f"{site.st.prefix}pod-many"
        ip("netns", "add", netns)
        try:
            rec = site.st.host("host1")
            env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "many0123456789", "CNI_NETNS": f"/run/netns/{netns}",
                   "CNI_IFNAME": "", "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=many"}
            before = site.host_links("host1")
            for i in range(1, 11):  # net1-net4 bind the declared ones, net5-net10 are made on demand
                rc, out = site.plugin("host1", {**env, "CNI_IFNAME": f"net{i}"}, pods.netconf(f"x{i}", rec.cni_socket))
                assert rc == 0 and out is not None and out["interfaces"][0]["name"] == f"net{i}", out
            atts = site.attachments("default-many")
            assert sorted(n for n, a in atts.items() if a["owner"]) == sorted(f"x{i}" for i in range(5, 11))
            assert sorted(n for n, a in atts.items() if not a["owner"]) == ["x1", "x2", "x3", "x4"]
            links = site.host_links("host1")
            rc, out = site.plugin("host1", {**env, "CNI_IFNAME": "net11"}, pods.netconf("x11", rec.cni_socket))
            assert rc == 1 and out is not None and out["code"] == spec.TOO_MANY_VPCS, out
            assert "10" in out["msg"] and "vpcs_per_workload" in out["details"]
            # Nothing of it left: no attachment, no device on the host or in the Pod.
            assert len(site.attachments("default-many")) == 10
            assert site.host_links("host1") == links
            assert "net11" not in ip("-o", "link", "show", netns=netns)
            for i in range(1, 12):  # DEL of every network, the refused one too
                assert site.plugin("host1", {**env, "CNI_COMMAND": "DEL", "CNI_IFNAME": f"net{i}"},
                                   pods.netconf(f"x{i}", rec.cni_socket)) == (0, None)
            left = site.attachments("default-many")
            assert sorted(left) == ["x1", "x2", "x3", "x4"] and all(a["status"] == "pending" for a in left.values())
            assert site.host_links("host1") == before
        finally:
            ip("netns", "del", netns)
    finally:
        for a in site.client.list(site.tenant, "attachment"):
            if a["workload"] == "default-many":
                site.client.call("Delete", cpb.DeleteRequest(kind="attachment", id=a["id"]), site.tenant)
        for name, v in extra.items():
            site.client.call("Delete", cpb.DeleteRequest(kind="vpc", id=v["id"]), site.tenant)
            site.vpcs.pop(name)


def test_errors_name_the_rule_and_leave_nothing_and_a_static_address_works(clean: Site) -> None:
    site = clean
    netns = f"{site.st.prefix}pod-raw"
    ip("netns", "add", netns)
    try:
        rec = site.st.host("host1")
        env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "raw0123456789", "CNI_NETNS": f"/run/netns/{netns}",
               "CNI_IFNAME": "net1", "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=raw"}
        before = site.host_links("host1")
        rc, out = site.plugin("host1", env, pods.netconf("no-such-vpc", rec.cni_socket))
        assert rc == 1 and out is not None and out["code"] == spec.UNKNOWN_VPC and "no-such-vpc" in out["msg"]
        for bad in ("10.99.0.5/24", "10.33.0.5"):
            rc, out = site.plugin("host1", {**env, "CNI_ARGS": env["CNI_ARGS"] + f";IP={bad}"},
                                  pods.netconf("red", rec.cni_socket))
            assert rc == 1 and out is not None and out["code"] == spec.RULE_VIOLATED, out
            assert out["msg"].startswith("ip_address:"), out
        assert site.attachments("default-raw") == {}
        assert site.host_links("host1") == before
        assert len(ip("-o", "link", "show", netns=netns).splitlines()) == 1  # loopback only
        # A good static address: set in the Pod, returned in the result, traffic to vm2 flows.
        rc, out = site.plugin("host1", {**env, "CNI_ARGS": env["CNI_ARGS"] + ";IP=10.33.0.20/24"},
                              pods.netconf("red", rec.cni_socket))
        assert rc == 0 and out is not None and out["ips"] == [{"address": "10.33.0.20/24", "interface": 0}], out
        assert site.attachments("default-raw")["red"]["ip_address"] == "10.33.0.20/24"
        ping = subprocess.run(["ip", "netns", "exec", netns, "ping", "-c", "1", "-W", "2", "10.33.0.11"],
                              capture_output=True, text=True, timeout=30)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        # DEL after the namespace is gone still deletes the attachment; twice is fine.
        ip("netns", "del", netns)
        for _ in range(2):
            assert site.plugin("host1", {**env, "CNI_COMMAND": "DEL", "CNI_NETNS": ""},
                               pods.netconf("red", rec.cni_socket)) == (0, None)
        assert site.attachments("default-raw") == {}
        assert site.host_links("host1") == before
    finally:
        if os.path.exists(f"/run/netns/{netns}"):
            ip("netns", "del", netns)


def test_apply_of_a_topology_file_leaves_the_pods_attachments_alone(clean: Site) -> None:
    site = clean
    assert run("lab", "pod", "run", "api", "--vpc", "blue", "--host", "host1", "--state",
               str(site.tmp / "state.db")) == 0  # the CLI: on demand on a controller lab
    pod = lab_pods.find(site.st, "api")
    att = site.attachments("default-api")["blue"]
    assert att["owner"] == f"pod:host1/{pod.container_id}"
    doc = {"vpcs": VPCS, "attachments": [{"vpc": vpc, "workload": w, "host": "host1", "ip_mode": "static",
                                          "ip_address": a} for vpc, w, a in STATIC]}
    path = topology_file(site.tmp / "topo.yaml", site.st, doc)
    store = open_store(site.store_url)
    try:
        engine = Engine(store)
        # Neither deleted (the file does not list it) nor adopted (the file declaring it fails).
        assert sync(engine, load(str(path), engine.hosts())) == {"created": 0, "updated": 0, "deleted": 0}
        doc["attachments"].append({"vpc": "blue", "workload": "default-api", "workload_kind": "pod"})
        with pytest.raises(ValidationError, match=r"attachments\[2\]\..*'default-api'"):
            sync(engine, load(str(topology_file(site.tmp / "topo2.yaml", site.st, doc)), engine.hosts()))
    finally:
        store.close()
    site.converge()
    assert site.attachments("default-api")["blue"]["id"] == att["id"]
    site.address(pod, "net1")  # the Pod's lease
    assert site.exec(pod, "ping", "-c", "1", "-W", "2", "10.31.0.11").returncode == 0
    assert run("lab", "pod", "rm", "api", "--state", str(site.tmp / "state.db")) == 0
    assert site.attachments("default-api") == {}
