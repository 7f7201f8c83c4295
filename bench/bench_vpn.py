"""Site-to-site VPN: time from VpnManager.ensure() to an `up` tunnel (target <= 3 s).

    .venv/bin/python bench/bench_vpn.py [--runs 5] [--many 10]

Needs root. Builds its own namespaces (prefix `l2bv<hex>-`): an edge host with a VPC bridge and
an outside device wired to a premises gateway (premises_vpn, charon as responder) with a LAN
host behind it, and a workload on the VPC. Per run: create a gateway and wait for `up`, ping the
LAN host through the tunnel, re-key it in place (new proposal and selectors), remove it. Then
`--many` gateways on the same edge, created one after the other, until all are `up`.
Everything is removed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from l2vpc.agent.drivers.linux import netns as nsmod
from l2vpc.agent.drivers.linux.vpn import VpnManager
from l2vpc.hostconfig import VpnGateway, bridge_name
from l2vpc.lab import premises_vpn

VNI = 100
PSK = "bench." + secrets.token_hex(8)


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=20)


def build(prefix: str) -> tuple[str, str, str, str]:
    edge, work, prem, lan = (prefix + n for n in ("edge", "w1", "prem", "lan"))
    for n in (edge, work, prem, lan):
        nsmod.create(n)
        sh("ip", "netns", "exec", n, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        sh("ip", "-n", n, "link", "set", "lo", "up")

    def veth(a_ns: str, a: str, b_ns: str, b: str) -> None:
        sh("ip", "-n", a_ns, "link", "add", a, "type", "veth", "peer", "name", b, "netns", b_ns)
        sh("ip", "-n", a_ns, "link", "set", a, "up")
        sh("ip", "-n", b_ns, "link", "set", b, "up")

    sh("ip", "-n", edge, "link", "add", bridge_name(VNI), "type", "bridge")
    sh("ip", "-n", edge, "link", "set", bridge_name(VNI), "up")
    veth(edge, "w1p", work, "eth0")
    sh("ip", "-n", edge, "link", "set", "w1p", "master", bridge_name(VNI))
    sh("ip", "-n", work, "addr", "add", "10.0.0.10/24", "dev", "eth0")
    sh("ip", "-n", work, "route", "add", "192.168.50.0/24", "via", "10.0.0.1")
    veth(edge, "out0", prem, "wan0")
    sh("ip", "-n", prem, "addr", "add", "203.0.113.10/24", "dev", "wan0")
    veth(prem, "lan0", lan, "eth0")
    sh("ip", "-n", prem, "addr", "add", "192.168.50.1/24", "dev", "lan0")
    sh("ip", "-n", lan, "addr", "add", "192.168.50.10/24", "dev", "eth0")
    sh("ip", "-n", lan, "route", "add", "default", "via", "192.168.50.1")
    return edge, work, prem, lan


def gateway(i: int = 0) -> VpnGateway:
    return VpnGateway(
        id=f"vpn-bench{i:07d}", vni=VNI, gateway_ip=f"10.{i}.0.1/24", outside_ip=f"203.0.113.{33 + i}/24",
        outside="out0", peer_address="203.0.113.10", local_cidrs=(f"10.{i}.0.0/24",),
        remote_cidrs=("192.168.50.0/24",), ike_proposal="aes256-sha256-modp2048",
        esp_proposal="aes256-sha256-modp2048", psk=PSK, secret_digest="b",
    )


def wait_up(vpns: VpnManager, ids: list[str], timeout: float = 10.0) -> float:
    t0 = time.monotonic()
    pending = set(ids)
    while pending:
        pending = {i for i in pending if vpns.observe(i).state != "up"}
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"not up after {timeout} s: {[vpns.observe(i) for i in sorted(pending)]}")
        if pending:
            time.sleep(0.002)
    return time.monotonic() - t0


def ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--many", type=int, default=10)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    prefix = f"l2bv{secrets.token_hex(3)}-"
    tmp = Path(tempfile.mkdtemp(prefix="l2bv-", dir="/tmp"))
    vpns: VpnManager | None = None
    try:
        edge, work, prem, _ = build(prefix)
        premises_vpn.setup(prem, psk=PSK, state_dir=tmp / "prem")
        vpns = VpnManager(edge, prefix, tmp / "vpn")
        up, ensure, first_ping, rekey, remove, noop, facts = [], [], [], [], [], [], []
        for _ in range(args.runs):
            gw = gateway()
            t0 = time.monotonic()
            vpns.ensure(gw, bridge_name(VNI))
            ensure.append(time.monotonic() - t0)
            wait_up(vpns, [gw.id])
            up.append(time.monotonic() - t0)
            t0 = time.monotonic()
            if vpns.ensure(gw, bridge_name(VNI)):
                raise RuntimeError("a second ensure() changed something")
            noop.append(time.monotonic() - t0)
            t0 = time.monotonic()
            vpns.observe(gw.id)
            vpns.running()
            facts.append(time.monotonic() - t0)
            t0 = time.monotonic()
            ping = sh("ip", "netns", "exec", work, "ping", "-c1", "-W2", "192.168.50.10", check=False)
            if ping.returncode != 0:
                raise RuntimeError("no ping through the tunnel")
            first_ping.append(time.monotonic() - t0)
            changed = dataclasses.replace(gw, ike_proposal="aes128gcm16-prfsha256-ecp256",
                                          esp_proposal="aes128gcm16-ecp256", remote_cidrs=("192.168.50.0/25",))
            t0 = time.monotonic()
            vpns.ensure(changed, bridge_name(VNI))
            wait_up(vpns, [gw.id])
            rekey.append(time.monotonic() - t0)
            t0 = time.monotonic()
            vpns.remove(gw.id)
            remove.append(time.monotonic() - t0)
        print(f"ensure() -> up (new gateway, {args.runs} runs): {ms(up)}  [target <= 3000 ms]")
        print(f"  of which ensure() itself: {ms(ensure)}")
        print(f"no-op ensure(): {ms(noop)}; observe() + running(): {ms(facts)}")
        print(f"first ping through the tunnel (ping process included): {ms(first_ping)}")
        print(f"re-key in place (proposal + selectors) -> up: {ms(rekey)}")
        print(f"remove(): {ms(remove)}")

        many = [gateway(i) for i in range(1, args.many + 1)]
        t0 = time.monotonic()
        for gw in many:
            vpns.ensure(gw, bridge_name(VNI))
        created = time.monotonic() - t0
        wait_up(vpns, [gw.id for gw in many])
        total = time.monotonic() - t0
        print(f"{args.many} gateways on one edge: all created in {created * 1000:.0f} ms, "
              f"all up after {total * 1000:.0f} ms")
        t0 = time.monotonic()
        vpns.teardown_all()
        print(f"teardown_all() of {args.many} gateways: {(time.monotonic() - t0) * 1000:.0f} ms")
        vpns = None
        return 0
    finally:
        if vpns is not None:
            vpns.teardown_all()
        premises_vpn.teardown(tmp / "prem")
        for name in nsmod.list_names():
            if name.startswith(prefix):
                nsmod.remove(name)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
