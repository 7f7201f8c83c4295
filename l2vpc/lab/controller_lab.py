"""The lab's own controllers: `l2vpc lab up --controllers N [--postgres [URL]]`.

    ctl = setup(st, topo, ControllerPlan(2, postgres=LAB_POSTGRES), lab_dir, pki_dir, progress)
    ...agents start with `ctl` (the addresses they dial, their tokens)...
    wait_registered(st, timeout)      # every agent registered, or why not
    publish(st)                       # the record `l2vpc.paths.local_control_plane()` reads
    teardown(st)                      # controllers, the lab's PostgreSQL, tokens, files

Where things run (linux driver): controllers live in the underlay switch's namespace and listen
on all its addresses at 7700, 7701, ...: agents dial MANAGEMENT_IP over their uplinks, and
this machine's root namespace reaches them through a management veth the lab names
(`<prefix>mg` here, `mg0` there) on a /30 of 100.127.0.0/16 (RFC 6598 space, picked so it
collides with no address or route here: several labs may be up at once). So Terraform,
`l2vpc controller status` and `l2vpc lab check` run from anywhere on this machine. The switch
routes everything else through that veth, so a PostgreSQL at one of this machine's addresses
is reachable (loopback is not: 127.0.0.1 in the switch's namespace is the switch itself).
With the memory driver everything runs here on 127.0.0.1.

Store: SQLite in the lab dir by default (controllers on one machine share it; leadership is a
file lock), a cluster the lab creates and deletes (`--postgres`, see postgres.py), or a URL.
The lab enrolls its hosts (it is their operator), writes an agent token per host (each agent's 0600 file), an admin token and a tenant
token (`controllers/admin.token`, `controllers/tenant.token`, 0600) and, for PostgreSQL, a
sealing key (`controllers/secret.key`) unless L2VPC_SECRET_KEY is set.

Once every agent registered, `publish` writes the record of this control plane beside the
lab's state (l2vpc.paths.control_plane_path: endpoints, CA, token file paths, the controllers'
pids; no secret, 0600 anyway), so Terraform's provider, `l2vpc show|graph` and the lab's own
commands find the controllers from any directory with no setting; `lab down` removes it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from l2vpc import paths
from l2vpc.lab import controllers, netns, processes
from l2vpc.lab import postgres as lab_postgres
from l2vpc.lab.agents import LabController
from l2vpc.lab.controllers import ControllerRecord, ControllerStartError
from l2vpc.lab.state import LabState
from l2vpc.lab.topology import MANAGEMENT_IP, LabTopology
from l2vpc.pki import CertificateAuthority, write_private

LAB_POSTGRES = "lab"  # --postgres without a URL: a cluster the lab owns
MANAGEMENT_BLOCK = "100.127.0.0/16"
MANAGEMENT_DEVICE = "mg0"  # the switch's end of the management veth
FIRST_PORT = 7700
MAX_CONTROLLERS = 9
TENANT = "lab"
REGISTER_TIMEOUT = 30.0
_REGISTERED = "registered with the controller"
_REGISTER_FAILED = re.compile(r"register failed: (.*?); retrying", re.S)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ControllerPlan:
    count: int
    postgres: str | None = None  # None: SQLite in the lab dir; LAB_POSTGRES; or a postgresql:// URL

    def check(self, driver: str) -> None:
        if not 1 <= self.count <= MAX_CONTROLLERS:
            raise ControllerStartError(f"--controllers: {self.count} is outside 1..{MAX_CONTROLLERS}")
        url = self.postgres
        if url in (None, LAB_POSTGRES):
            if url == LAB_POSTGRES and (reason := lab_postgres.missing_reason()):
                raise ControllerStartError(f"--postgres: cannot create a PostgreSQL cluster here: {reason}")
            return
        assert url is not None
        if not url.startswith(("postgresql://", "postgres://")):
            raise ControllerStartError("--postgres: give a postgresql:// URL, or no value for a cluster the lab "
                                       "creates and removes")
        host = re.match(r"^[a-z]+://(?:[^@/]*@)?(\[[^\]]*\]|[^:/?]*)", url)
        if driver == "linux" and host and host.group(1) in ("localhost", "127.0.0.1", "[::1]"):
            raise ControllerStartError(
                f"--postgres: {host.group(1)} is not this machine for the controllers, which run in the lab's "
                "switch namespace; use the server's unix socket (postgresql://USER@/DB?host=/var/run/postgresql) "
                "or an address of this machine, or --postgres without a URL for a cluster the lab owns")


def _state_dir(st: LabState) -> Path:
    return Path(st.dir) / "controllers"


def setup(st: LabState, topo: LabTopology, plan: ControllerPlan, pki_dir: Path, progress: Progress) -> LabController:
    """Store, tokens, TLS and N running controllers, each step recorded in `st` before it
    happens (so `down` cleans an interrupted `up`); returns what the agents need to register."""
    here = _state_dir(st)
    here.mkdir(mode=0o700, exist_ok=True)
    ports = [FIRST_PORT + i for i in range(plan.count)]
    switch_side = _management_link(st) if st.driver == "linux" else None
    store, secret_key = _store(st, plan, here, progress)
    ca = CertificateAuthority.open(pki_dir)
    ips = [ip for ip in (MANAGEMENT_IP, switch_side) if ip and st.driver == "linux"]
    st.files += [str(pki_dir / "controller.pem"), str(pki_dir / "controller.key")]
    st.save()
    ca.issue_server("controller", ips=ips)
    tokens = _tokens(st, topo, store, here)
    env = controllers.environment(store, secret_key)
    for i, port in enumerate(ports, start=1):
        listen = f"0.0.0.0:{port}" if st.driver == "linux" else "127.0.0.1:0"
        rec = ControllerRecord.new(f"c{i}", listen, Path(st.dir) / "run", Path(st.dir) / "logs",
                                   netns=st.switch if st.driver == "linux" else None)
        st.controllers.append(rec.as_dict())
        st.save()
        controllers.start(rec, controllers.command(rec, pki_dir), env)
        st.controllers[-1] = rec.as_dict()
        st.save()
    for i, rec in enumerate(_records(st)):
        address = controllers.wait_ready(rec)
        rec.endpoint = f"{switch_side}:{ports[i]}" if switch_side else address
        st.controllers[i] = rec.as_dict()
    st.endpoints = [r.endpoint for r in _records(st)]
    st.controller_ca = str(ca.ca_path)
    st.save()
    progress(f"{plan.count} controller{'s' if plan.count > 1 else ''} up ({_store_kind(plan)}): "
             f"{', '.join(st.endpoints)}")
    agents_dial = ",".join(f"{MANAGEMENT_IP}:{p}" for p in ports) if st.driver == "linux" else ",".join(st.endpoints)
    return LabController(agents_dial, ca.ca_path, tokens)


def _store_kind(plan: ControllerPlan) -> str:
    if plan.postgres is None:
        return "SQLite store"
    return "the lab's PostgreSQL" if plan.postgres == LAB_POSTGRES else "PostgreSQL"


def _records(st: LabState) -> list[ControllerRecord]:
    return [ControllerRecord(**c) for c in st.controllers]


def _management_link(st: LabState) -> str:
    """A veth from here into the switch's namespace on a free /30; returns the switch's address."""
    assert st.switch is not None
    name = f"{st.prefix}mg"
    taken = _networks_here()
    block = ipaddress.IPv4Network(MANAGEMENT_BLOCK)
    nets = list(block.subnets(new_prefix=30))
    first = int(st.id, 16) % len(nets)
    for k in range(len(nets)):
        net = nets[(first + k) % len(nets)]
        if not any(net.overlaps(t) for t in taken):
            break
    else:
        raise ControllerStartError(f"no free /30 in {MANAGEMENT_BLOCK} for the management link")
    here_ip, switch_ip = (str(a) for a in net.hosts())
    st.links.append(name)
    st.save()
    netns.ip("link", "add", name, "type", "veth", "peer", "name", MANAGEMENT_DEVICE, "netns", st.switch)
    netns.ip("addr", "add", f"{here_ip}/30", "dev", name)
    netns.ip("link", "set", name, "up")
    netns.ip("addr", "add", f"{switch_ip}/30", "dev", MANAGEMENT_DEVICE, netns=st.switch)
    netns.ip("link", "set", MANAGEMENT_DEVICE, "up", netns=st.switch)
    netns.ip("route", "add", "default", "via", here_ip, netns=st.switch)
    return switch_ip


def _networks_here() -> list[ipaddress.IPv4Network]:
    nets = []
    for route in json.loads(netns.ip("-j", "-4", "route", "show", "table", "all") or "[]"):
        dst = route.get("dst", "default")
        if dst != "default":  # a default route overlaps everything: what matters is more specific
            with contextlib.suppress(ValueError):
                nets.append(ipaddress.IPv4Network(dst, strict=False))
    for link in json.loads(netns.ip("-j", "-4", "addr") or "[]"):
        for a in link.get("addr_info", []):
            nets.append(ipaddress.IPv4Network(f"{a['local']}/{a['prefixlen']}", strict=False))
    return nets


def _store(st: LabState, plan: ControllerPlan, here: Path, progress: Progress) -> tuple[str, str | None]:
    """(the store URL or path, the sealing key for PostgreSQL)."""
    if plan.postgres is None:
        (here / "store").mkdir(mode=0o700, exist_ok=True)  # the state, its key and leader locks: all go
        path = here / "store" / "state.db"
        st.store = str(path)
        st.save()
        return str(path), None
    if plan.postgres == LAB_POSTGRES:
        st.postgres = {"dir": None}
        st.save()
        st.postgres = lab_postgres.start(prefix=f"l2lab{st.id}-pg-")
        st.store = st.postgres["url"]
        st.save()
        progress(f"PostgreSQL cluster in {st.postgres['dir']} (unix socket only)")
    else:
        st.store = plan.postgres
        st.save()
    key = os.environ.get("L2VPC_SECRET_KEY")
    if not key:
        from cryptography.fernet import Fernet

        key = Fernet.generate_key().decode()
        keyfile = here / "secret.key"
        st.files.append(str(keyfile))
        st.save()
        write_private(keyfile, f"{key}\n".encode())
    return str(st.store), key


def _tokens(st: LabState, topo: LabTopology, store_url: str, here: Path) -> dict[str, str]:
    from l2vpc.controller.auth import create_token
    from l2vpc.controller.enrollment import enroll_hosts
    from l2vpc.engine.errors import L2vpcError
    from l2vpc.engine.store import open_store

    try:
        store = open_store(store_url)
    except L2vpcError as e:
        raise ControllerStartError(f"controller store: {e}") from None
    try:
        enroll_hosts(store, topo.host_documents())  # the lab is the operator: it says what each host is
        agents = {h.name: create_token(store, "agent", host=h.name)[1] for h in topo.hosts}
        for role, tenant, path in (("admin", "", here / "admin.token"), ("tenant", TENANT, here / "tenant.token")):
            st.files.append(str(path))
            st.save()
            write_private(path, (create_token(store, role, tenant=tenant)[1] + "\n").encode())
        st.admin_token_file, st.tenant_token_file = str(here / "admin.token"), str(here / "tenant.token")
        st.save()
    except L2vpcError as e:
        raise ControllerStartError(f"controller store: {e}") from None
    finally:
        store.close()
    return agents


def probe(addresses: Iterable[str], ns: str | None, timeout: float = 3.0) -> list[str]:
    """Problems reaching each controller address from namespace `ns` (where the agents dial from)."""
    problems = []
    for address in addresses:
        host, _, port = address.rpartition(":")
        try:
            family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
            s = netns.socket_in(ns, family, socket.SOCK_STREAM) if ns else socket.socket(family, socket.SOCK_STREAM)
        except OSError as e:
            problems.append(f"{address}: {e.strerror or e}")
            continue
        try:
            s.settimeout(timeout)
            s.connect((host.strip("[]"), int(port)))
        except (OSError, ValueError) as e:
            reason = "no answer" if isinstance(e, TimeoutError) else (getattr(e, "strerror", None) or str(e))
            problems.append(f"{address}: {reason}")
        finally:
            s.close()
    return problems


def wait_registered(st: LabState, timeout: float = REGISTER_TIMEOUT) -> list[str]:
    """Wait until every agent says it registered; returns, per agent that did not, why (the
    controller's last refusal as its log has it)."""
    deadline = time.monotonic() + timeout
    pending = {rec.name: rec for rec in st.hosts}
    while pending:
        for name, rec in list(pending.items()):
            with contextlib.suppress(OSError):
                if _REGISTERED in Path(rec.log).read_text(errors="replace"):
                    del pending[name]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    problems = []
    for name, rec in pending.items():
        try:
            text = Path(rec.log).read_text(errors="replace")
        except OSError:
            text = ""
        failed = _REGISTER_FAILED.findall(text)
        why = failed[-1] if failed else (processes.log_tail(Path(rec.log), 2) or "no answer")
        problems.append(f"{name}: {why}")
    return problems


def publish(st: LabState) -> str:
    """Write the record of the lab's controllers beside its state; returns its path. Recorded in
    the lab's files first, so `down` removes it (also after an interrupted `up`)."""
    path = paths.control_plane_path(st.state_path)
    assert st.controller_ca and st.tenant_token_file and st.admin_token_file
    doc = {"format": paths.CONTROL_PLANE_FORMAT, "lab": st.id, "endpoints": st.endpoints,
           "ca_file": st.controller_ca, "token_file": st.tenant_token_file,
           "admin_token_file": st.admin_token_file,
           "processes": [{"pid": r.pid, "marker": r.ready_file} for r in _records(st)]}
    if path not in st.files:
        st.files.append(path)
        st.save()
    write_private(Path(path), json.dumps(doc, indent=2, sort_keys=True).encode())
    return path


def teardown(st: LabState, progress: Progress) -> list[str]:
    """Stop the controllers and the lab's PostgreSQL; the files go with the lab's other files."""
    warnings: list[str] = []
    for rec in _records(st):
        if controllers.stop(rec):
            progress(f"stopped controller {rec.id} (pid {rec.pid})")
        for path in (rec.pidfile, rec.ready_file, rec.log):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    if st.store and not st.postgres and st.store.startswith(str(_state_dir(st))):
        shutil.rmtree(_state_dir(st) / "store", ignore_errors=True)
    if st.postgres and st.postgres.get("dir"):
        try:
            lab_postgres.stop(st.postgres)
            progress(f"removed the lab's PostgreSQL ({st.postgres['dir']})")
        except OSError as e:
            warnings.append(f"PostgreSQL in {st.postgres['dir']}: {e}")
    for name in st.links:
        with contextlib.suppress(Exception):
            if json.loads(netns.ip("-j", "link", "show", "dev", name) or "[]"):
                netns.ip("link", "del", name)
    return warnings
