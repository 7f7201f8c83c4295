"""Pods on VPCs through `l2vpc-cni` (issue 13): CNI latency on demand, Pod start to traffic, and
an agent with 200 pod ports. Needs root, containerd + runc, PostgreSQL and Debian's
containernetworking-plugins (the reference `bridge` plugin, /usr/lib/cni/bridge).

A lab of 2 hosts (Linux driver) whose agents register with a controller process on a private
PostgreSQL (durable: every commit flushed), the controller in the lab's underlay switch
namespace as in production. VPC `bench` (no DHCP) already runs on host1 (workload `anchor`), so
its bridge exists; every ADD below is ON DEMAND: nothing declares the Pods' attachments.

1. CNI ADD and DEL latency, `--calls` times each (default 100): wall time of
   `ip netns exec <host1 netns> l2vpc-cni` for a fresh Pod namespace: ADD creates the attachment
   through the controller (placed on host1, owned by the Pod) and waits for the push; DEL deletes
   it. Targets: ADD p95 <= 100 ms, DEL p95 <= 50 ms. In the same run the reference `bridge`
   plugin does the same veth work (a bridge in host1's namespace, no IPAM) for comparison, and
   `l2vpc-cni VERSION` (the plugin's own start-up, no agent call) gives the floor.
2. Pod start with 2 VPCs (static addresses from CNI_ARGS IP=) to the first ping answered from a
   workload on the other host, `--starts` times: namespace, two ADDs, `ctr run`, ping from the
   Pod's container until answered. Target <= 1.5 s.
3. `--pods` Pods (default 100) x 2 VPCs on host1: ADD all (their latency as the host fills up),
   then a no-op reconcile of host1's agent (the same config pushed again: its converge finds
   nothing to do), 10 times. Target <= 50 ms.

    sudo .venv/bin/python bench/bench_cni.py [--calls 100] [--starts 5] [--pods 100] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _controller_bench import Api, make_pki  # bench/ is on sys.path: these run as scripts

from l2vpc._proto import agent_pb2 as apb
from l2vpc.agentapi.channel import host_metadata, open_channel, stub
from l2vpc.cni import spec
from l2vpc.cni.plugin import call_agent
from l2vpc.controller.auth import create_token
from l2vpc.controller.enrollment import enroll_hosts
from l2vpc.engine.agent_client import engine_tls
from l2vpc.engine.store import open_store
from l2vpc.lab import lab_pods, netns, pods
from l2vpc.lab.lab import Lab, LabController
from l2vpc.lab.topology import MANAGEMENT_IP, LabTopology
from l2vpc.testing import postgres as pg_server
from l2vpc.testing.lab_controller import Controller, Relay, socket_url

PORT = 7720
ADD_P95_MS, DEL_P95_MS, START_S, NOOP_MS = 100.0, 50.0, 1.5, 50.0
BRIDGE = "/usr/lib/cni/bridge"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def summary(name: str, ms: list[float], target: float | None = None) -> str:
    """One figure line: `   NAME   p50 X ms   p95 Y ms   max Z ms   (n=N)[   target ...]`."""
    text = (f"   {name:<34} p50 {statistics.median(ms):7.1f} ms   p95 {pct(ms, 95):7.1f} ms   "
            f"max {max(ms):7.1f} ms   (n={len(ms)})")
    if target is not None:
        text += f"   target p95 <= {target:g} ms: {'ok' if pct(ms, 95) <= target else 'MISSED'}"
    return text


def timed(argv: list[str], env: dict[str, str], stdin: bytes) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    t = time.perf_counter()
    r = subprocess.run(argv, input=stdin, env=env, capture_output=True, timeout=120)
    return (time.perf_counter() - t) * 1000, r


@dataclass
class Bench:
    lab: Lab
    api: Api
    host_netns: str  # host1's
    socket: str  # host1's agent's CNI socket
    prefix: str

    plugin: str  # the l2vpc-cni executable

    def env(self, command: str, container: str, ns: str, ifname: str, extra_args: str = "") -> dict[str, str]:
        return {"CNI_COMMAND": command, "CNI_CONTAINERID": container, "CNI_NETNS": netns.path(ns) if ns else "",
                "CNI_IFNAME": ifname, "CNI_PATH": os.path.dirname(self.plugin),
                "CNI_ARGS": f"K8S_POD_NAMESPACE=bench;K8S_POD_NAME={container}{extra_args}"}

    def cni(self, command: str, container: str, ns: str, ifname: str, vpc: str,
            extra_args: str = "", plugin: str | None = None) -> tuple[float, dict[str, Any] | None]:
        """Run the plugin as a runtime does: its wall time and result."""
        conf = json.dumps(pods.netconf(vpc, self.socket)).encode()
        ms, r = timed(["ip", "netns", "exec", self.host_netns, plugin or self.plugin],
                      self.env(command, container, ns, ifname, extra_args), conf)
        if r.returncode != 0:
            raise SystemExit(f"CNI {command} {container} {ifname}: {r.stdout.decode()} {r.stderr.decode()[-500:]}")
        return ms, (json.loads(r.stdout) if r.stdout.strip() else None)

    def agent(self, command: str, container: str, ns: str, ifname: str, vpc: str) -> float:
        """The same request sent to the agent's socket from here: the agent's part of the time."""
        conf = json.dumps(pods.netconf(vpc, self.socket)).encode()
        req = spec.parse(self.env(command, container, ns, ifname), conf)
        t = time.perf_counter()
        answer = call_agent(self.socket, req.to_agent())
        ms = (time.perf_counter() - t) * 1000
        if not answer.get("ok"):
            raise SystemExit(f"agent {command} {container}: {answer}")
        return ms


CREATED: set[str] = set()  # Pod namespaces made here and not yet removed


def make_netns(name: str) -> str:
    CREATED.add(name)
    netns.create(name)
    return name


def drop_netns(name: str) -> None:
    netns.remove(name)
    CREATED.discard(name)


@contextmanager
def pod_netns(name: str) -> Iterator[str]:
    make_netns(name)
    try:
        yield name
    finally:
        drop_netns(name)


def add_del_latency(b: Bench, calls: int, plugin: str | None = None) -> dict[str, list[float]]:
    """ADD then DEL of a fresh Pod namespace, `calls` times: through the plugin (wall time), and
    (interleaved, so that both see the same load) straight to the agent's socket."""
    out: dict[str, list[float]] = {"ADD": [], "DEL": [], "agent ADD": [], "agent DEL": []}
    for i in range(calls):
        with pod_netns(f"{b.prefix}pod-lat") as ns:
            container = f"lat{i:04d}"
            out["ADD"].append(b.cni("ADD", container, ns, "net1", "bench", plugin=plugin)[0])
            out["DEL"].append(b.cni("DEL", container, ns, "net1", "bench", plugin=plugin)[0])
        if plugin is None:
            with pod_netns(f"{b.prefix}pod-lat") as ns:
                container = f"lat{i:04d}a"
                out["agent ADD"].append(b.agent("ADD", container, ns, "net1", "bench"))
                out["agent DEL"].append(b.agent("DEL", container, ns, "net1", "bench"))
    return out


def version_latency(b: Bench, calls: int, plugin: str) -> list[float]:
    env = {"CNI_COMMAND": "VERSION"}
    return [timed(["ip", "netns", "exec", b.host_netns, plugin], env, b'{"cniVersion":"1.1.0"}')[0]
            for _ in range(calls)]


def regular_install(work: Path) -> str | None:
    """l2vpc installed as a runtime host would have it (a wheel, not this editable checkout,
    whose import finder costs every process ~15 ms of start-up): a venv of its own, no deps
    (the plugin imports none). None when it cannot be built (no network to PyPI)."""
    venv = work / "cni-venv"
    root = Path(__file__).resolve().parents[1]
    try:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
        subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                        "--no-deps", str(root)], check=True, capture_output=True, timeout=300)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        print(f"(no regular install to compare: {e})")
        return None
    return str(venv / "bin" / "l2vpc-cni")


def bridge_latency(b: Bench, calls: int, work: Path) -> tuple[list[float], list[float], str]:
    """The reference bridge plugin, same veth work: bridge `l2ref0` in host1's namespace, no IPAM
    (host-local IPAM if this version requires one)."""
    conf: dict[str, Any] = {"cniVersion": "1.0.0", "name": "l2ref", "type": "bridge", "bridge": "l2ref0",
                            "mtu": 1500}
    ipam = "none"
    adds, dels = [], []
    try:
        for i in range(calls):
            with pod_netns(f"{b.prefix}pod-ref") as ns:
                env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": f"ref{i:04d}", "CNI_NETNS": netns.path(ns),
                       "CNI_IFNAME": "net1", "CNI_PATH": os.path.dirname(BRIDGE)}
                ms, r = timed(["ip", "netns", "exec", b.host_netns, BRIDGE], env, json.dumps(conf).encode())
                if r.returncode != 0 and i == 0 and ipam == "none":
                    ipam = "host-local"
                    conf["ipam"] = {"type": "host-local", "subnet": "10.250.0.0/16", "dataDir": str(work / "ipam")}
                    ms, r = timed(["ip", "netns", "exec", b.host_netns, BRIDGE], env, json.dumps(conf).encode())
                if r.returncode != 0:
                    raise SystemExit(f"bridge ADD: {r.stdout.decode()} {r.stderr.decode()}")
                adds.append(ms)
                ms, r = timed(["ip", "netns", "exec", b.host_netns, BRIDGE], {**env, "CNI_COMMAND": "DEL"},
                              json.dumps(conf).encode())
                if r.returncode != 0:
                    raise SystemExit(f"bridge DEL: {r.stdout.decode()} {r.stderr.decode()}")
                dels.append(ms)
    finally:
        subprocess.run(["ip", "-n", b.host_netns, "link", "del", "l2ref0"], capture_output=True)
    return adds, dels, ipam


def pod_start(b: Bench, rt: pods.Containerd, n: int, target: str) -> dict[str, float]:
    """One Pod with 2 VPCs (static) from nothing to its first ping answered across hosts."""
    phases: dict[str, float] = {}
    ns = f"{b.prefix}pod-start"
    cid = f"start{n:03d}"
    t0 = time.perf_counter()
    make_netns(ns)
    try:
        _, r1 = b.cni("ADD", cid, ns, "net1", "bench", f";IP=10.40.1.{10 + n}/16")
        _, r2 = b.cni("ADD", cid, ns, "net2", "bench2", f";IP=10.41.1.{10 + n}/16")
        assert r1 and r2 and r1["ips"] and r2["ips"]
        phases["2 ADDs"] = time.perf_counter() - t0
        rt.ctr("run", "-d", "--with-ns", f"network:{netns.path(ns)}", "--cap-add", "CAP_NET_RAW", rt.ensure_image(),
               cid, "sleep", "3600")
        phases["ctr run"] = time.perf_counter() - t0
        while True:
            r = rt.ctr("tasks", "exec", "--exec-id", f"p{time.monotonic_ns()}", cid, "ping", "-c", "1", "-W", "1",
                       target, check=False)
            if r.returncode == 0:
                break
            if time.perf_counter() - t0 > 30:
                raise SystemExit(f"pod {cid}: no ping answered within 30 s: {r.stdout} {r.stderr}")
        phases["first ping"] = time.perf_counter() - t0
    finally:
        rt.delete(cid)
        for ifname, vpc in (("net1", "bench"), ("net2", "bench2")):
            b.cni("DEL", cid, ns, ifname, vpc)
        drop_netns(ns)
    return phases


def noop_reconcile(st: Any, lab: Lab, host: str, times: int) -> list[float]:
    """The agent's converge of the config it holds, pushed again (nothing to do): its own timing."""
    rec = st.host(host)
    out: list[float] = []
    with open_channel(rec.address, host, engine_tls(lab.pki_dir)) as channel:
        agent = stub(channel)
        deadline = time.monotonic() + 30
        while len(out) < times:
            # The config it holds now (the controller's last push may still arrive: then again).
            state: apb.GetStateResponse = agent.GetState(apb.GetStateRequest(), timeout=30,
                                                         metadata=host_metadata(host))
            reply = agent.Push(apb.PushRequest(config=state.desired), timeout=60, metadata=host_metadata(host))
            if reply.status == apb.PushResponse.STALE and time.monotonic() < deadline:
                out.clear()
                time.sleep(0.2)
                continue
            if reply.status != apb.PushResponse.CONVERGED or reply.actions:
                raise SystemExit(f"no-op push: {apb.PushResponse.Status.Name(reply.status)}, "
                                 f"{len(reply.actions)} actions")
            out.append(reply.seconds * 1000)
    return out


def fill(b: Bench, count: int) -> tuple[list[float], list[str]]:
    adds, made = [], []
    for i in range(count):
        ns = make_netns(f"{b.prefix}p{i}")
        made.append(ns)
        for ifname, vpc in (("net1", "bench"), ("net2", "bench2")):
            ms, _ = b.cni("ADD", f"fill{i:04d}", ns, ifname, vpc)
            adds.append(ms)
    return adds, made


def empty(b: Bench, made: list[str]) -> list[float]:
    dels = []
    for i, ns in enumerate(made):
        for ifname, vpc in (("net1", "bench"), ("net2", "bench2")):
            ms, _ = b.cni("DEL", f"fill{i:04d}", ns, ifname, vpc)
            dels.append(ms)
        drop_netns(ns)
    return dels


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--starts", type=int, default=5)
    ap.add_argument("--pods", type=int, default=100)
    ap.add_argument("--dir", default=None, help="work dir (default: a temporary one)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_cni needs root (network namespaces, containerd)", file=sys.stderr)
        return 2
    for tool, why in (("containerd", "containerd"), ("runc", "runc")):
        if shutil.which(tool) is None:
            print(f"bench_cni needs {why}", file=sys.stderr)
            return 2
    if not os.path.exists(BRIDGE):
        print(f"bench_cni needs {BRIDGE} (apt-get install containernetworking-plugins)", file=sys.stderr)
        return 2
    from cryptography.fernet import Fernet

    os.environ["L2VPC_SECRET_KEY"] = Fernet.generate_key().decode()
    with tempfile.TemporaryDirectory(prefix="l2bench-cni-", dir=args.dir) as tmp_name, \
            pg_server.running_server(durable=True) as pg:
        tmp = Path(tmp_name)
        pg.create_database("bench")
        schema = pg_server.Schema(pg, "bench", "cni")
        pki = tmp / "pki"
        make_pki(pki)
        topo = LabTopology.build(hosts=2)
        store = open_store(schema.url)
        try:
            enroll_hosts(store, topo.host_documents())  # the operator says what each host is
            tokens = {h.name: create_token(store, "agent", host=h.name)[1] for h in topo.hosts}
            tenant = create_token(store, "tenant", tenant="bench")[1]
            admin = create_token(store, "admin")[1]
        finally:
            store.close()
        lab = Lab(str(tmp / "state.db"), pki_dir=pki)
        controller = relay = api = None
        try:
            t = time.monotonic()
            lab.up(topo, "linux", controller=LabController(f"{MANAGEMENT_IP}:{PORT}", pki / "ca.pem", tokens,
                                                           server_name="controller"))
            controller = Controller(lab.switch_netns, socket_url(schema), f"{MANAGEMENT_IP}:{PORT}", pki, tmp,
                                    controller_id="c1", heartbeat_interval=1.0, down_after=10.0)
            relay = Relay(lab.switch_netns, MANAGEMENT_IP, PORT)
            api = Api(relay.address, pki / "ca.pem", tenant)
            admin_api = Api(relay.address, pki / "ca.pem", admin)
            _wait(lambda: {h.name: h.status for h in admin_api.status().hosts} == {"host1": "up", "host2": "up"},
                  60, "agents registered")
            admin_api.close()
            vpcs = [api.create("vpc", {"name": n, "region": "us-east", "cidr": c})
                    for n, c in (("bench", "10.40.0.0/16"), ("bench2", "10.41.0.0/16"))]
            for vpc, ip4, host in ((vpcs[0], "10.40.0.1/16", "host1"), (vpcs[1], "10.41.0.1/16", "host1"),
                                   (vpcs[0], "10.40.0.2/16", "host2")):
                api.create("attachment", {"vpc_id": vpc["id"], "workload": f"anchor-{host}-{ip4[3:5]}",
                                          "host": host, "ip_mode": "static", "ip_address": ip4})
            api.converge(60)
            st = lab.require()
            rec = st.host("host1")
            b = Bench(lab, api, rec.netns, rec.cni_socket, st.prefix, pods._plugin())
            print(f"setup: lab of 2 hosts + controller on PostgreSQL in {time.monotonic() - t:.1f} s; "
                  f"VPCs bench, bench2 on host1 (bridges up)")

            regular = regular_install(tmp)
            dev = add_del_latency(b, args.calls)
            versions = version_latency(b, args.calls, b.plugin)
            reg = add_del_latency(b, args.calls, regular) if regular else None
            reg_versions = version_latency(b, args.calls, regular) if regular else None
            ref_adds, ref_dels, ipam = bridge_latency(b, args.calls, tmp)
            print()
            print("1. CNI latency: wall time of `ip netns exec <host1> PLUGIN`, a fresh Pod namespace each call")
            if reg is not None and reg_versions is not None:
                print("l2vpc-cni, regular install (as on a runtime host):")
                print(summary("ADD on demand", reg["ADD"], ADD_P95_MS))
                print(summary("DEL on demand", reg["DEL"], DEL_P95_MS))
                print(summary("VERSION (start-up only)", reg_versions))
            print("l2vpc-cni, editable install (this checkout; its import finder costs every start):")
            print(summary("ADD on demand", dev["ADD"], ADD_P95_MS))
            print(summary("DEL on demand", dev["DEL"], DEL_P95_MS))
            print(summary("VERSION (start-up only)", versions))
            print("the agent's part (the same requests sent to its socket from the bench):")
            print(summary("ADD on demand", dev["agent ADD"]))
            print(summary("DEL on demand", dev["agent DEL"]))
            print(f"reference bridge plugin (Go, same veth work, IPAM {ipam}):")
            print(summary("ADD", ref_adds))
            print(summary("DEL", ref_dels))

            rt = lab_pods.runtime(st, lab.dir)
            rt.ensure_image()
            starts = [pod_start(b, rt, n, "10.40.0.2") for n in range(args.starts)]
            print()
            print("2. Pod start (2 VPCs, static) -> first ping answered from host2's workload, seconds from start")
            for s in starts:
                print("   " + ", ".join(f"{k} {v:.3f}" for k, v in s.items()))
            first = [s["first ping"] for s in starts]
            print(f"pod start -> first ping: median {statistics.median(first):.3f} s, max {max(first):.3f} s   "
                  f"target <= {START_S} s: {'ok' if statistics.median(first) <= START_S else 'MISSED'}")

            t = time.monotonic()
            fill_adds, made = fill(b, args.pods)
            seconds = time.monotonic() - t
            noop = noop_reconcile(st, lab, "host1", 10)
            print()
            print(f"3. {args.pods} Pods x 2 VPCs on host1: {len(fill_adds)} ADDs in {seconds:.1f} s")
            print("host1 filling up:")
            print(summary("ADD while filling", fill_adds))
            print(summary("ADD, last 20", fill_adds[-20:]))
            print(summary("no-op reconcile (agent converge)", noop, NOOP_MS))
            dels = empty(b, made)
            print(summary("DEL while emptying", dels))
        finally:
            st2 = lab.load()
            if st2 is not None:
                lab_pods.remove_all(st2)
            for ns in list(CREATED):  # a bench that failed half-way
                netns.remove(ns)
            if api is not None:
                api.close()
            if relay is not None:
                relay.close()
            if controller is not None:
                controller.stop()
            lab.down()
    return 0


def _wait(pred: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
