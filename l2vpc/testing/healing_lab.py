"""A lab that heals itself, for the self-healing tests and bench_heal.py (issue 14).

    with healing_lab(tmp / "lab", ControllerPlan(1)) as site:    # what `lab up --controllers 1` runs
        applied = site.apply({"w1": ("host1", "static"), "w2": ("host2", "dhcp")})
        site.configure_premises()                                  # the customer router, after the apply
        site.reach(applied, timeout=30)                            # every workload pings premises-host

The lab is `lab up --hosts 2 --edges 1 --premises --premises-peering none --controllers N
[--postgres]` through the same Lab API the CLI calls: the premises router runs BGP but holds no
peering address, so a direct connect applied to it stays down until `configure_premises`
(`l2vpc lab premises sync`). Objects are created through the controller's API as the tenant
(RemoteEngine, the provider's client); nothing applies them again afterwards: whatever changes
later is the controllers' doing.
"""

from __future__ import annotations

import contextlib
import ipaddress
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from l2vpc.agent.drivers.linux import frr
from l2vpc.agent.drivers.linux.netns import path as netns_path
from l2vpc.controller.client import RemoteEngine
from l2vpc.hostconfig.names import router_netns_name
from l2vpc.lab import netns, outside, premises
from l2vpc.lab.controller_lab import ControllerPlan
from l2vpc.lab.lab import Lab
from l2vpc.lab.netns import LabNetError
from l2vpc.lab.premises import PremisesConfig
from l2vpc.lab.probe import Endpoint, Report, reachability
from l2vpc.lab.state import HostRecord, LabState
from l2vpc.lab.topology import DEFAULT_LOCATION, LabTopology
from l2vpc.testing.scrape import wait_for

VPC_CIDR = "10.9.0.0/24"
PREMISES_LAN = "192.168.50.0/24"
PREMISES_HOST = "192.168.50.10"
PREMISES_ASN = 65010


@dataclass
class Applied:
    vpc: Any
    dx: Any
    attachments: dict[str, Any] = field(default_factory=dict)  # workload -> attachment


@dataclass
class HealingLab:
    lab: Lab
    engine: RemoteEngine  # the lab's tenant, through every controller's endpoint

    @property
    def st(self) -> LabState:
        return self.lab.require()

    def host(self, name: str) -> HostRecord:
        rec = self.st.host(name)
        assert rec is not None, name
        return rec

    def apply(self, workloads: dict[str, tuple[str, str]], name: str = "heal") -> Applied:
        """A VPC with DHCP, the workloads {name: (host, ip_mode)} and a layer-3 direct connect
        at edge1 peering with the premises router; converged once (the only apply)."""
        e = self.engine
        vpc = e.create("vpc", {"name": name, "region": "us-east", "cidr": VPC_CIDR,
                               "dhcp": {"range_start": "10.9.0.100", "range_end": "10.9.0.200"}})
        out = Applied(vpc, None)
        for i, (workload, (host, mode)) in enumerate(sorted(workloads.items()), start=11):
            data = {"vpc_id": vpc.id, "workload": workload, "host": host, "ip_mode": mode}
            if mode == "static":
                data["ip_address"] = f"10.9.0.{i}/24"
            out.attachments[workload] = e.create("attachment", data)
        out.dx = e.create("direct_connect", {"name": name, "vpc_id": vpc.id, "location": DEFAULT_LOCATION,
                                              "bandwidth_mbps": 1000, "bgp": {"customer_asn": PREMISES_ASN}})
        _, result = e.converge(timeout=120)
        assert result.ok, result
        return out

    # ------------------------------------------------------------------ the premises
    def configure_premises(self) -> list[str]:
        """The customer configures the router: `l2vpc lab premises sync`."""
        return self.lab.sync_premises()

    def unconfigure_premises(self) -> None:
        """The customer takes the router's peering address away again. The session drops at
        once: a wrong MD5 password first (bgpd restarts, telling the edge; the edge cannot
        connect again), then the address goes, then the password (no address: no session)."""
        self.lab.premises_md5("heal.unconfigured")
        outside.site(self.st, self.lab.dir).set_peering(1, [])
        self.lab.premises_md5(None)

    def premises_route(self, workload: str) -> str:
        """The workload's route to the premises LAN ('' when it has none)."""
        try:
            return netns.ip("-4", "route", "show", PREMISES_LAN, netns=self.lab.workload_netns(workload)).strip()
        except LabNetError:  # its namespace is being recreated
            return ""

    def edge_session(self, applied: Applied) -> frr.Session:
        """The direct connect's BGP session as the edge's FRR sees it."""
        ns = router_netns_name(self.host(applied.dx.edge_host).prefix, applied.dx.id)
        router = frr.Router(ns, Path(), netns_path(ns))
        return router.session(applied.dx.bgp.customer_ip)

    # ------------------------------------------------------------------ traffic
    def endpoints(self, applied: Applied) -> list[Endpoint]:
        """Every workload of the VPC with its current address (None: no lease yet), and premises-host."""
        out = []
        for workload, att in sorted(applied.attachments.items()):
            ns = self.lab.workload_netns(workload)
            out.append(Endpoint(workload, "heal", ns, att.interface_name, address_of(ns, att.interface_name)))
        site_ns = outside.site(self.st, self.lab.dir).netns(premises.HOST)
        out.append(Endpoint(premises.HOST, "heal", site_ns, premises.HOST_IF, PREMISES_HOST))
        return out

    def reach(self, applied: Applied, timeout: float, interval: float = 0.05) -> Report:
        """Ping premises-host from every workload and back (and the workloads each other) until
        all answer or `timeout`; the report lists what did not answer."""
        deadline = time.monotonic() + timeout

        def addressed() -> list[Endpoint] | None:
            ends = self.endpoints(applied)
            return ends if all(e.ip for e in ends) else None

        ends = wait_for(addressed, timeout, "an address on every workload")
        report = Report()
        reachability(ends, deadline, report, interval=interval)
        return report


def address_of(ns: str, ifname: str) -> str | None:
    """The interface's IPv4 address (None: none, or no such interface: it is being recreated)."""
    try:
        lines = netns.ip("-4", "-o", "addr", "show", "dev", ifname, netns=ns).splitlines()
    except LabNetError:
        return None
    for line in lines:
        parts = line.split()
        if "inet" in parts:
            return str(ipaddress.IPv4Interface(parts[parts.index("inet") + 1]).ip)
    return None


class FirstSeen:
    """When `pred` first held, polled every `interval` s on a thread (`at`: monotonic, or None)."""

    def __init__(self, pred: Callable[[], bool], interval: float = 0.02) -> None:
        self.at: float | None = None
        self._stop = threading.Event()

        def watch() -> None:
            while not self._stop.is_set():
                if pred():
                    self.at = time.monotonic()
                    return
                self._stop.wait(interval)

        self._thread = threading.Thread(target=watch, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@contextlib.contextmanager
def healing_lab(directory: Path, plan: ControllerPlan, hosts: int = 2,
                progress: Callable[[str], None] = lambda _: None) -> Iterator[HealingLab]:
    """The lab (see the module's docstring), removed on exit also on failure."""
    lab = Lab(str(directory / "state.db"))
    engine: RemoteEngine | None = None
    try:
        lab.up(LabTopology.build(hosts=hosts, edges=1), "linux", progress,
               premises=PremisesConfig(peering=None), controllers=plan)
        st = lab.require()
        assert st.tenant_token_file and st.controller_ca
        token = Path(st.tenant_token_file).read_text().strip()
        engine = RemoteEngine(",".join(st.endpoints), token, ca_file=st.controller_ca)
        yield HealingLab(lab, engine)
    finally:
        if engine is not None:
            engine.close()
        if lab.load() is not None:
            warnings = lab.down()
            assert not warnings, warnings
