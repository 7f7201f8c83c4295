"""Fixtures for agent tests: simulated hosts as network namespaces on one underlay bridge.

Everything a test creates carries a prefix unique to this test (`l2t<pid><hex>-`), and is
removed afterwards, also when the test fails; the fixture then asserts nothing is left
(namespaces, processes, files).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from l2vpc.agent.drivers.linux import LinuxDriver
from l2vpc.agent.drivers.linux import netns as nsmod
from l2vpc.hostconfig.names import owned_device, workload_netns_name
from l2vpc.testing.leftovers import leftovers

UNDERLAY_MTU = 9100
IS_ROOT = os.geteuid() == 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if IS_ROOT:
        return
    skip = pytest.mark.skip(reason="needs root (network namespaces)")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


def sh(*args: str, check: bool = True, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=timeout)


@dataclass
class Host:
    name: str
    netns: str
    underlay_ip: str
    prefix: str
    state_dir: Path
    drivers: list[LinuxDriver] = field(default_factory=list)

    def driver(self) -> LinuxDriver:
        """A new driver object for this host (a second call simulates an agent restart)."""
        d = LinuxDriver(self.name, self.underlay_ip, netns=self.netns, prefix=self.prefix,
                        state_dir=self.state_dir)
        self.drivers.append(d)
        return d

    def ip(self, *args: str) -> str:
        return sh("ip", "-n", self.netns, *args).stdout

    def links(self) -> list[str]:
        out = sh("ip", "-n", self.netns, "-o", "link", "show").stdout
        return sorted(line.split(": ")[1].split("@")[0] for line in out.splitlines())

    def workload(self, name: str) -> str:
        return workload_netns_name(self.prefix, name)

    def run(self, workload: str, *cmd: str, check: bool = False, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.workload(workload), *cmd, check=check, timeout=timeout)


class Lab:
    """An underlay namespace with a bridge, and hosts attached to it by veths (MTU 9100)."""

    def __init__(self, prefix: str, tmp: Path) -> None:
        self.prefix = prefix
        self.tmp = tmp
        self.underlay = f"{prefix}u"
        self.hosts: list[Host] = []
        self.pods: list[str] = []
        nsmod.create(self.underlay)
        sh("ip", "-n", self.underlay, "link", "add", "br0", "mtu", str(UNDERLAY_MTU), "type", "bridge")
        sh("ip", "-n", self.underlay, "link", "set", "br0", "up")

    def add_host(self) -> Host:
        i = len(self.hosts) + 1
        name = f"h{i}"
        ns = f"{self.prefix}{name}"
        nsmod.create(ns)
        ip = f"10.99.0.{i}"
        sh("ip", "-n", self.underlay, "link", "add", f"u{i}", "mtu", str(UNDERLAY_MTU), "type", "veth",
           "peer", "name", "u0", "netns", ns, "mtu", str(UNDERLAY_MTU))
        sh("ip", "-n", self.underlay, "link", "set", f"u{i}", "master", "br0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "link", "set", "u0", "up")
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "u0")
        host = Host(name, ns, ip, f"{ns}-", self.tmp / name)
        self.hosts.append(host)
        return host

    def pod_sandbox(self, name: str) -> str:
        """A namespace as a container runtime makes one for a Pod (not the driver's): its path."""
        ns = f"{self.prefix}pod-{name}"
        nsmod.create(ns)
        self.pods.append(ns)
        return nsmod.path(ns)

    def teardown(self) -> None:
        errors: list[str] = []
        for host in self.hosts:
            for d in host.drivers:
                d.close()
            if not host.drivers:
                continue
            # A fresh driver object on the same state dir: teardown must not need memory.
            d = host.driver()
            try:
                d.teardown()
                left = [n for n in host.links() if owned_device(n)]
                if left:
                    errors.append(f"{host.name}: devices left after teardown: {left}")
            except Exception as e:  # keep cleaning; report at the end
                errors.append(f"{host.name}: {e}")
            finally:
                d.close()
        for host in self.hosts:
            nsmod.remove(host.netns)
        for ns in self.pods:
            nsmod.remove(ns)
        nsmod.remove(self.underlay)
        if errors:
            raise AssertionError("teardown failed: " + "; ".join(errors))


@pytest.fixture
def prefix() -> str:
    return f"l2t{os.getpid() % 100000}{secrets.token_hex(2)}-"


@pytest.fixture
def lab(prefix: str, tmp_path: Path) -> Iterator[Lab]:
    if not IS_ROOT:
        pytest.skip("needs root (network namespaces)")
    the_lab = Lab(prefix, tmp_path)
    try:
        yield the_lab
    finally:
        the_lab.teardown()
        deadline = time.monotonic() + 2
        while leftovers(prefix, str(tmp_path)) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = leftovers(prefix, str(tmp_path))
        assert not left, f"left behind: {left}"


@pytest.fixture
def wait_for() -> Callable[..., bool]:
    def wait(pred: Callable[[], bool], timeout: float = 3.0, interval: float = 0.02) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return True
            time.sleep(interval)
        return pred()

    return wait
