"""Build, inspect and remove a lab: simulated hosts running real agents (mininet's `Mininet`).

    lab = Lab(".l2vpc/state.db")
    lab.up(LabTopology.build(hosts=3, edges=1), premises=PremisesConfig())  # + a customer site
    lab.check()                           # ping within VPCs, no frame across them
    lab.sync_premises()                   # customer side of the direct connects the edges run
    lab.down()                            # removes exactly what up recorded

Layout beside the engine's state file (so the engine finds the lab's agents and TLS material):

    .l2vpc/state.db        the engine's state; hosts are registered here
    .l2vpc/pki/            CA, agents' server certs, the engine's client cert
    .l2vpc/lab/lab.json    what this lab created (see state.py)
    .l2vpc/lab/agents/<host>/   each agent's state dir;  lab/logs/<host>.log;  lab/run/*.pid *.sock

With root, hosts are network namespaces on an underlay bridge (MTU 9100, in a namespace of
its own), each agent runs the Linux driver on its host's namespace, and workloads are the
namespaces the agents create. Without root, agents run the memory driver: the control path is
the same (processes, TLS, gRPC, registration), the dataplane is simulated.

With a controller (`up(..., controller=LabController(...))`), the lab neither registers its
hosts nor converges them: each agent registers its own host with the controller and heartbeats
(role-agent token per host, in a 0600 file), and the controller converges. The lab's CA is then
the controller's (`Lab(state, pki_dir=...)`), so agents accept the controller's client
certificate. With the linux driver every agent process lives in its host's namespace: it
listens on the underlay (`<underlay_ip>:7600`, the address the controller dials) besides its
unix socket (the lab's own tools), and reaches the controller over the underlay at
`MANAGEMENT_IP`, an address of the underlay switch, where such a controller listens (run it in
`switch_netns`). `set_uplink(host, up=False)` is then a real partition: dataplane, heartbeats
and the controller's pushes all stop, and resume when the link comes back.

Edge hosts get a hand-off `xc0` (a cross-connect switch per edge) and an outside device `out0`
on the lab's internet (see premises.py); `premises=` adds the customer site: premises-router
(BGP, the premises VPN gateway at 203.0.113.10), premises-host, premises-l2. Agents shape
direct connects at `bandwidth_scale` times their bandwidth (default 0.1: 1000 Mbps is a
100 Mbit/s shaper, which iperf3 between namespaces can measure).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

import l2vpc
from l2vpc._proto import agent_pb2 as pb
from l2vpc.agent.drivers.linux.driver import BANDWIDTH_SCALE_ENV
from l2vpc.agentapi import wire
from l2vpc.agentapi.channel import host_metadata, open_channel, stub
from l2vpc.embedded import open_engine
from l2vpc.engine.agent_client import CLIENT_NAME, PKI_DIR, engine_tls
from l2vpc.engine.api import Engine
from l2vpc.engine.errors import ConflictError
from l2vpc.engine.model import Attachment
from l2vpc.engine.store import open_store
from l2vpc.hostconfig import HostConfig
from l2vpc.lab import netns, premises, premises_vpn, probe, processes
from l2vpc.lab.premises import Premises, PremisesConfig
from l2vpc.lab.state import HostRecord, LabState
from l2vpc.lab.topology import AGENT_PORT, HANDOFF, MANAGEMENT_IP, LabHost, LabTopology
from l2vpc.pki import CertificateAuthority, files_in, write_private

LAB_DIR = "lab"
AGENT_READY_TIMEOUT = 30.0
_MAX_SOCKET_PATH = 100
DEFAULT_BANDWIDTH_SCALE = 0.1

Progress = Callable[[str], None]


class LabError(Exception):
    """The lab cannot do what was asked; the message says why and what to do."""


def _quiet(_: str) -> None:
    pass


def state_file_path(state: str) -> str:
    """The file behind a state argument (a path or sqlite:// URL), absolute."""
    if state.startswith("sqlite://"):
        state = state[len("sqlite://"):]
    elif "://" in state:
        raise LabError(f"the lab needs a local state file (SQLite), not {state.split('://', 1)[0]}://")
    return os.path.abspath(state)


@dataclass(frozen=True)
class LabController:
    """A controller the lab's agents register with (the lab does not run it).

    `address`: where agents dial it; with the linux driver they dial from their host's namespace
    over the underlay, so the controller listens on MANAGEMENT_IP in the lab's `switch_netns`;
    with the memory driver agents run here (e.g. 127.0.0.1:PORT). `ca`: the CA certificate of its
    TLS; `tokens`: each host's agent token; `server_name`: the name its certificate carries
    (default: the address's host)."""

    address: str
    ca: Path
    tokens: Mapping[str, str]
    server_name: str | None = None

    def __repr__(self) -> str:  # never the tokens
        return f"LabController(address={self.address!r}, ca={str(self.ca)!r}, {len(self.tokens)} tokens)"


@dataclass
class HostStatus:
    name: str
    role: str
    region: str
    underlay_ip: str
    location: str | None
    address: str
    pid: int | None
    running: bool
    health: dict[str, Any] | None = None
    error: str = ""
    ports: list[str] = field(default_factory=list)  # attachment ids the agent reports
    # Direct connects and VPN gateways the agent reports: {"id", "kind", "state", "detail", "learned"}.
    items: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class CheckResult:
    ok: bool
    lines: list[str]
    report: probe.Report | None = None


class Lab:
    def __init__(self, state_path: str, pki_dir: Path | None = None) -> None:
        self.state_path = state_file_path(state_path)
        base = Path(os.path.dirname(self.state_path))
        self.dir = base / LAB_DIR
        if pki_dir is None:  # a lab brought up with another CA recorded which
            st = self.load()
            pki_dir = Path(st.pki_dir) if st is not None and st.pki_dir else base / PKI_DIR
        self.pki_dir = pki_dir.absolute()

    @property
    def switch_netns(self) -> str:
        """The underlay switch's namespace (linux driver), where a lab's controller listens."""
        st = self.require()
        if st.switch is None:
            raise LabError("this lab has no underlay namespaces (memory driver)")
        return st.switch

    # ------------------------------------------------------------------ records

    def load(self) -> LabState | None:
        return LabState.load(self.dir)

    def require(self) -> LabState:
        st = self.load()
        if st is None:
            raise LabError(f"no lab is up for state {self.state_path} (nothing in {self.dir}); run `l2vpc lab up`")
        return st

    # ------------------------------------------------------------------ up

    def up(self, topo: LabTopology, driver: str = "auto", progress: Progress = _quiet, *,
           premises: PremisesConfig | None = None, premises_psk: str | None = None,
           bandwidth_scale: float = DEFAULT_BANDWIDTH_SCALE, controller: LabController | None = None) -> LabState:
        if driver == "auto":
            driver = "linux" if os.geteuid() == 0 else "memory"
        if driver == "linux" and os.geteuid() != 0:
            raise LabError("--driver linux needs root (network namespaces); use --driver memory to simulate hosts")
        if premises is not None:
            if driver != "linux":
                raise LabError("--premises needs the linux driver (root): the premises site is namespaces and daemons")
            try:
                premises.check()
            except ValueError as e:
                raise LabError(str(e)) from None
        elif premises_psk is not None:
            raise LabError("--premises-psk: only with --premises")
        if not 0 < bandwidth_scale <= 1000:
            raise LabError(f"--bandwidth-scale: {bandwidth_scale} must be above 0 and at most 1000")
        if self.load() is not None:
            raise LabError(f"a lab is already up here ({self.dir / 'lab.json'}); run `l2vpc lab down` first")
        if controller is not None:
            missing = [h.name for h in topo.hosts if not controller.tokens.get(h.name)]
            if missing:
                raise LabError(f"controller tokens: none for {', '.join(missing)} (one agent token per host)")
            if not controller.ca.is_file():
                raise LabError(f"controller CA {controller.ca}: no such file")
        lab_id = secrets.token_hex(3)
        # The state's directory stays (the state file lands there); removed at down only if empty.
        created = [str(self.dir.parent)] if not self.dir.parent.exists() else []
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = LabState(id=lab_id, driver=driver, state_path=self.state_path, dir=str(self.dir),
                      prefix=f"l2lab{lab_id}-", underlay_cidr=topo.underlay_cidr, underlay_mtu=topo.underlay_mtu,
                      dirs=created, bandwidth_scale=bandwidth_scale,
                      controller=controller.address if controller else None, pki_dir=str(self.pki_dir))
        st.save()
        try:
            self._pki(st, topo)
            if driver == "linux":
                self._network(st, topo, progress)
                self._edges_and_premises(st, topo, premises, premises_psk, progress)
            self._agents(st, topo, progress, controller)
            if controller is None:
                self._register(st, topo, progress)
                self._converge(progress)
            else:
                progress(f"agents register with the controller at {controller.address}")
        except BaseException:
            progress("lab up failed; removing what it created")
            with contextlib.suppress(Exception):
                self.down(progress)
            raise
        return st

    def _pki(self, st: LabState, topo: LabTopology) -> None:
        def record(*paths: Path) -> None:
            st.files += [str(p) for p in paths]
            st.save()

        for h in topo.hosts:  # refuse before creating anything: these names are someone else's
            if (self.pki_dir / f"{h.name}.pem").exists():
                raise LabError(f"{self.pki_dir / (h.name + '.pem')} already exists (another lab or deployment "
                               f"uses this CA for {h.name}); use another state directory")
        if not self.pki_dir.exists():
            st.dirs.append(str(self.pki_dir))
        existed = (self.pki_dir / "ca.key").exists()
        ca = CertificateAuthority.open(self.pki_dir, common_name=f"l2vpc lab {st.id} CA")
        if not existed:
            record(ca.ca_path, self.pki_dir / "ca.key")
        client = engine_tls(self.pki_dir)
        if not client.cert.exists():
            ca.issue_client(CLIENT_NAME)
            record(client.cert, client.key)
        for h in topo.hosts:
            files = ca.issue_server(h.name, ips=[h.underlay_ip])
            record(files.cert, files.key)

    def _network(self, st: LabState, topo: LabTopology, progress: Progress) -> None:
        switch = f"{st.prefix}ul"
        st.namespaces.append(switch)
        st.switch = switch
        st.save()  # recorded before it exists: down tolerates "already gone"
        netns.make_switch(switch, topo.underlay_mtu)
        if st.controller is not None:  # where the agents reach their controller
            netns.ip("addr", "add", f"{MANAGEMENT_IP}/{topo.prefixlen}", "dev", netns.UNDERLAY_BRIDGE, netns=switch)
        for h in topo.hosts:
            name = f"{st.prefix}{h.name}"
            st.namespaces.append(name)
            st.save()
            netns.create(name)
            netns.plug_host(switch, h.name, name, h.underlay_ip, topo.prefixlen, topo.underlay_mtu)
        progress(f"underlay {topo.underlay_cidr} (MTU {topo.underlay_mtu}) with {len(topo.hosts)} hosts")

    def _record_netns(self, st: LabState) -> Callable[[str], None]:
        def record(name: str) -> None:
            st.namespaces.append(name)
            st.save()  # recorded before it exists: down tolerates "already gone"
        return record

    def _site(self, st: LabState) -> Premises:
        assert st.premises is not None
        cfg = PremisesConfig(str(st.premises["lan"]), int(st.premises["asn"]))
        return Premises(st.prefix, self.dir / "premises", cfg)

    def _edges_and_premises(self, st: LabState, topo: LabTopology, config: PremisesConfig | None,
                            psk: str | None, progress: Progress) -> None:
        """Cross-connects and the internet for the edges; the premises site if asked for."""
        edges = [h for h in topo.hosts if h.role == "edge"]
        record = self._record_netns(st)
        site: Premises | None = None
        if config is not None:
            st.premises = {"lan": config.lan, "asn": config.asn, "vpn": psk is not None}
            st.save()
            site = Premises(st.prefix, self.dir / "premises", config)
            site.build(record)
        for h in edges:
            premises.cross_connect(f"{st.prefix}xc{h.edge_index}", h.edge_index, f"{st.prefix}{h.name}", site, record)
        if site is not None and site.config.peering and any(h.edge_index == 1 for h in edges):
            site.set_peering(1, [site.config.peering])
        if edges or site is not None:
            premises.internet(f"{st.prefix}inet", [(h.edge_index, f"{st.prefix}{h.name}") for h in edges], site,
                              record)
        if site is not None:
            if psk is not None:
                try:
                    premises_vpn.setup(site.netns(premises.ROUTER), f"{premises.PREMISES_PUBLIC_IP}/24",
                                       site.config.lan, psk=psk, state_dir=self.dir / "premises-vpn")
                except ValueError as e:
                    raise LabError(f"premises VPN gateway: {e}") from None
            vpn = f", VPN gateway {premises.PREMISES_PUBLIC_IP}" if psk is not None else ""
            progress(f"premises: {site.netns(premises.ROUTER)} (AS {site.config.asn}, LAN {site.config.lan}{vpn}), "
                     f"{site.netns(premises.HOST)}, {site.netns(premises.L2)}")
        if edges:
            progress(f"{len(edges)} edges with hand-off {HANDOFF} (cross-connect) and out0 on 203.0.113.0/24")

    def _socket_dir(self, st: LabState) -> Path:
        run = self.dir / "run"
        if len(str(run / "host999.sock")) <= _MAX_SOCKET_PATH:
            return run
        short = Path(tempfile.mkdtemp(prefix=f"l2lab{st.id}-", dir="/tmp"))
        st.dirs.append(str(short))
        return short

    def _agents(self, st: LabState, topo: LabTopology, progress: Progress,
                controller: LabController | None = None) -> None:
        sockets = self._socket_dir(st)
        sockets.mkdir(mode=0o700, exist_ok=True)
        (self.dir / "run").mkdir(mode=0o700, exist_ok=True)
        # The agents import this very l2vpc, installed or not.
        here = str(Path(l2vpc.__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p),
               BANDWIDTH_SCALE_ENV: str(st.bandwidth_scale)}
        env.pop("L2VPC_AGENT_TOKEN", None)  # each agent gets its own host's token, from a file
        for h in topo.hosts:
            agent_dir = self.dir / "agents" / h.name
            tls = files_in(self.pki_dir, h.name)
            rec = HostRecord(
                name=h.name, region=h.region, role=h.role, underlay_ip=h.underlay_ip, location=h.location,
                netns=f"{st.prefix}{h.name}" if st.driver == "linux" else None,
                prefix=f"{st.prefix}{h.name}-", agent_dir=str(agent_dir),
                address=f"unix:{sockets / (h.name + '.sock')}",
                pidfile=str(self.dir / "run" / f"{h.name}.pid"), log=str(self.dir / "logs" / f"{h.name}.log"),
                public_cidr=h.public_cidr,
            )
            argv = [sys.executable, "-m", "l2vpc.agent", "run", "--host", h.name, "--underlay-ip", h.underlay_ip,
                    "--listen", rec.address, "--state-dir", rec.agent_dir, "--driver", st.driver,
                    "--ca", str(tls.ca), "--cert", str(tls.cert), "--key", str(tls.key)]
            if rec.netns:
                argv += ["--netns", rec.netns, "--prefix", rec.prefix]
            st.hosts.append(rec)
            st.save()
            if controller is not None:
                argv = self._controller_argv(rec, h, argv, controller)
                st.save()
            rec.pid = processes.start(argv, Path(rec.pidfile), Path(rec.log), env=env)
            st.save()
        deadline = time.monotonic() + AGENT_READY_TIMEOUT
        for rec in st.hosts:
            self._wait_ready(rec, deadline)
        progress(f"{len(st.hosts)} agents up ({st.driver} driver), logs in {self.dir / 'logs'}")

    def _controller_argv(self, rec: HostRecord, h: LabHost, argv: list[str], controller: LabController) -> list[str]:
        """The agent's command line with a controller: its token file, its host document as
        flags and, with the linux driver, a life inside its host's namespace (see the module doc)."""
        token = self.dir / "run" / f"{h.name}.token"
        rec.token_file = str(token)
        write_private(token, f"{controller.tokens[h.name]}\n".encode())
        rec.agent_address = rec.address if rec.netns is None else f"{h.underlay_ip}:{AGENT_PORT}"
        reg = h.registration(rec.agent_address)
        argv = [*argv, "--controller", controller.address, "--controller-ca", str(controller.ca.absolute()),
                "--token-file", str(token), "--region", h.region, "--role", h.role,
                "--agent-address", rec.agent_address]
        if controller.server_name:
            argv += ["--controller-name", controller.server_name]
        for key in ("location", "handoff", "outside", "public_cidr", "public_gateway"):
            if reg.get(key):
                argv += [f"--{key.replace('_', '-')}", str(reg[key])]
        if rec.netns is None:
            return argv
        return ["nsenter", f"--net={netns.path(rec.netns)}", "--", *argv, "--listen", rec.agent_address]

    def _health(self, rec: HostRecord, timeout: float) -> pb.HealthResponse:
        with open_channel(rec.address, rec.name, engine_tls(self.pki_dir)) as channel:
            reply: pb.HealthResponse = stub(channel).Health(pb.HealthRequest(), timeout=timeout,
                                                            metadata=host_metadata(rec.name))
            return reply

    def _wait_ready(self, rec: HostRecord, deadline: float) -> None:
        while True:
            try:
                self._health(rec, timeout=1.0)
                return
            except grpc.RpcError:
                pass
            if not processes.alive(rec.pid, rec.agent_dir):
                raise LabError(f"agent of {rec.name} exited: {processes.log_tail(Path(rec.log))}")
            if time.monotonic() > deadline:
                raise LabError(f"agent of {rec.name} did not answer within {AGENT_READY_TIMEOUT:.0f}s: "
                               f"{processes.log_tail(Path(rec.log))}")
            time.sleep(0.05)

    def _register(self, st: LabState, topo: LabTopology, progress: Progress) -> None:
        store = open_store(self.state_path)
        try:
            engine = Engine(store)
            for h in topo.hosts:
                rec = st.host(h.name)
                assert rec is not None
                engine.register_host(h.registration(rec.address))
                st.registered.append(h.name)
                st.save()
                # A fresh agent runs nothing: say so, or plans would trust an older lab's report.
                with store.transaction() as tx:
                    tx.put_host_report(h.name, 0, HostConfig(h.name, h.underlay_ip).to_dict())
        finally:
            store.close()
        progress(f"registered {', '.join(h.name for h in topo.hosts)} in {self.state_path}")

    def _converge(self, progress: Progress) -> None:
        """Realize what the state already places on these hosts (a lab re-created under old state)."""
        engine = open_engine(self.state_path)
        try:
            if engine.plan().is_empty:
                return
            progress("converging what the state already holds")
            _, result = engine.converge(progress=lambda host, msg: progress(f"  {host}: {msg}"))
            for r in result.failures:
                progress(f"  warning: {r.host} failed at {r.step}: {r.detail}")
        finally:
            close = getattr(engine.agents, "close", None)
            if close is not None:
                close()
            engine.store.close()

    # ------------------------------------------------------------------ down

    def down(self, progress: Progress = _quiet) -> list[str]:
        """Remove everything the lab recorded; returns warnings (things left, and why)."""
        st = self.load()
        if st is None:
            return [f"no lab is up for state {self.state_path}"]
        warnings: list[str] = []
        for rec in st.hosts:
            if processes.stop(rec.pid, rec.agent_dir):
                progress(f"stopped agent of {rec.name} (pid {rec.pid})")
        if st.driver == "linux":
            for rec in st.hosts:
                if rec.netns and netns.exists(rec.netns):
                    warnings += self._teardown_host(rec)
        if st.premises is not None:
            try:
                premises_vpn.teardown(self.dir / "premises-vpn")
                self._site(st).teardown()
            except Exception as e:  # the namespaces (and what runs in them) still go below
                warnings.append(f"premises: {e}")
        for name in reversed(st.namespaces):
            try:
                netns.remove(name)
            except OSError as e:
                warnings.append(f"namespace {name}: {e}")
        if st.namespaces:
            progress(f"removed {len(st.namespaces)} namespaces")
        try:
            warnings += self._unregister(st, progress)
        except Exception as e:  # the rest of the cleanup must still happen
            warnings.append(f"could not unregister {', '.join(st.registered) or 'hosts'} from {self.state_path}: {e}")
        for rec in st.hosts:
            for path in (rec.pidfile, rec.log, rec.address[len("unix:"):], rec.token_file):
                if path is None:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            shutil.rmtree(rec.agent_dir, ignore_errors=True)
        for f in st.files:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f)
        st.remove_file()
        leftover_dirs: list[Path] = [*(self.dir / sub for sub in ("agents", "logs", "run")), self.dir,
                                     *(Path(d) for d in reversed(st.dirs))]
        for d in leftover_dirs:
            with contextlib.suppress(FileNotFoundError, OSError):
                os.rmdir(d)  # only if empty: anything else in it is not ours
        progress("lab removed")
        return warnings

    def _teardown_host(self, rec: HostRecord) -> list[str]:
        from l2vpc.agent.drivers.linux import LinuxDriver

        try:
            driver = LinuxDriver(rec.name, rec.underlay_ip, netns=rec.netns, prefix=rec.prefix,
                                 state_dir=Path(rec.agent_dir) / "driver", bandwidth_scale=1.0)
        except (OSError, ValueError) as e:
            return [f"{rec.name}: cannot open its dataplane for teardown: {e}"]
        try:
            driver.teardown()
        except Exception as e:
            return [f"{rec.name}: teardown incomplete: {e}"]
        finally:
            driver.close()
        return []

    def _unregister(self, st: LabState, progress: Progress) -> list[str]:
        if not st.registered:
            return []
        warnings: list[str] = []
        removed = 0
        store = open_store(self.state_path)
        try:
            engine = Engine(store)
            for name in st.registered:
                try:
                    engine.deregister_host(name)
                    removed += 1
                except ConflictError:
                    # Its attachments are the user's (Terraform's) to delete; the host stays, and
                    # its report goes: nothing runs there any more.
                    with store.transaction() as tx:
                        tx.delete_host_report(name)
                    warnings.append(f"{name} stays registered: it still carries attachments (delete them, or "
                                    "bring the lab up again to run them)")
        finally:
            store.close()
        progress(f"unregistered {removed} of {len(st.registered)} hosts")
        return warnings

    # ------------------------------------------------------------------ faults

    def set_uplink(self, host: str, up: bool) -> None:
        """Take `host`'s underlay uplink down (a partition: VXLAN traffic stops and, with a
        controller, heartbeats and pushes too) or bring it back up."""
        st = self.require()
        rec = st.host(host)
        if rec is None:
            raise LabError(f"host {host!r} is not in this lab ({', '.join(h.name for h in st.hosts)})")
        if rec.netns is None:
            raise LabError("this lab runs the memory driver: hosts have no uplink to take down")
        netns.ip("link", "set", netns.HOST_UPLINK, "up" if up else "down", netns=rec.netns)

    # ------------------------------------------------------------------ status

    def status(self) -> tuple[LabState, list[HostStatus], list[Attachment], dict[str, str]]:
        """The lab record, each agent's health and ports, and the engine's attachments on lab hosts."""
        st = self.require()
        out: list[HostStatus] = []
        for rec in st.hosts:
            hs = HostStatus(rec.name, rec.role, rec.region, rec.underlay_ip, rec.location, rec.address, rec.pid,
                            processes.alive(rec.pid, rec.agent_dir))
            try:
                with open_channel(rec.address, rec.name, engine_tls(self.pki_dir)) as channel:
                    s = stub(channel)
                    md = host_metadata(rec.name)
                    h = s.Health(pb.HealthRequest(), timeout=3, metadata=md)
                    state = s.GetState(pb.GetStateRequest(), timeout=10, metadata=md)
                hs.health = {"accepted_generation": h.accepted_generation, "ok": h.last_converge_ok,
                             "failures": [f"{f.path}: {f.reason}" for f in h.last_failures],
                             "converging": h.converging}
                actual = wire.config_from_pb(state.actual)
                hs.ports = [p.id for p in actual.ports]
                kinds = {e.id: f"direct connect ({e.mode})" for e in actual.edge_routers}
                kinds |= {v.id: "vpn" for v in actual.vpn_gateways}
                hs.items = [{"id": o.id, "kind": kinds.get(o.id, "not in place"), "state": o.state,
                             "detail": o.detail, "learned": list(o.learned)} for o in actual.observations]
            except grpc.RpcError as e:
                hs.error = f"{e.code().name.lower()}: {e.details()}" if isinstance(e, grpc.Call) else str(e)
            out.append(hs)
        attachments, vpc_names = self._attachments(st)
        return st, out, attachments, vpc_names

    def _attachments(self, st: LabState) -> tuple[list[Attachment], dict[str, str]]:
        if not os.path.exists(self.state_path):
            return [], {}
        store = open_store(self.state_path)
        try:
            topo = Engine(store).topology()
        finally:
            store.close()
        names = {h.name for h in st.hosts}
        atts = sorted((a for a in topo.attachments.values() if a.host in names),
                      key=lambda a: (a.workload, a.interface_name or ""))
        return atts, {v.id: v.name for v in topo.vpcs.values()}

    # ------------------------------------------------------------------ exec

    def workload_netns(self, workload: str) -> str:
        """The namespace to run commands in: a workload's, or a premises machine's
        (`premises-router`, `premises-host`, `premises-l2`) when the lab has a premises site."""
        st = self.require()
        if st.premises is not None and workload in premises.NAMES:
            return self._site(st).netns(workload)
        if st.driver != "linux":
            raise LabError("this lab runs the memory driver: workloads have no namespaces to run commands in "
                           "(bring the lab up as root for a real dataplane)")
        from l2vpc.agent.drivers.linux import workload_netns_name

        for rec in st.hosts:
            ns = workload_netns_name(rec.prefix, workload)
            if netns.exists(ns):
                return ns
        raise LabError(f"workload {workload!r} runs on no host of this lab (is it attached and applied? "
                       "see `l2vpc lab status`)")

    def exec_argv(self, workload: str, command: list[str]) -> list[str]:
        if not command:
            raise LabError("exec: give a command after --, e.g. `l2vpc lab exec web1 -- ip addr`")
        return ["ip", "netns", "exec", self.workload_netns(workload), *command]

    # ------------------------------------------------------------------ premises

    def _require_site(self) -> tuple[LabState, Premises]:
        st = self.require()
        if st.premises is None:
            raise LabError("this lab has no premises site; bring it up with `l2vpc lab up --edges 1 --premises`")
        return st, self._site(st)

    def sync_premises(self) -> list[str]:
        """Configure the premises router for the layer-3 direct connects the edges run: the
        customer address of each on that edge's cross-connect (BGP accepts any peer in
        169.254.0.0/16 already). Reads what the edge agents were told to run; returns a line
        per edge."""
        st, site = self._require_site()
        lines = []
        for rec in st.hosts:
            if rec.role != "edge":
                continue
            index = int(rec.name[4:])
            try:
                with open_channel(rec.address, rec.name, engine_tls(self.pki_dir)) as channel:
                    state = stub(channel).GetState(pb.GetStateRequest(), timeout=10,
                                                   metadata=host_metadata(rec.name))
            except grpc.RpcError as e:
                lines.append(f"{rec.name}: agent unavailable ({e.code().name.lower() if isinstance(e, grpc.Call) else e})")
                continue
            desired = wire.config_from_pb(state.desired) if state.HasField("desired") else None
            addresses = sorted({
                f"{e.bgp.peer_ip}/{e.bgp.local_ip.split('/')[1]}"
                for e in (desired.edge_routers if desired else ()) if e.bgp is not None and e.handoff == HANDOFF
            })
            changes = site.set_peering(index, addresses)
            what = ", ".join(addresses) or "none"
            lines.append(f"{rec.name}: xc{index} peering {what}" + (f" ({' '.join(changes)})" if changes else ""))
        return lines

    def premises_vlan(self, vid: int | None) -> None:
        """premises-l2 tags its frames with `vid` (None: untagged), as a customer's switch port."""
        _, site = self._require_site()
        site.set_l2_vlan(vid)

    def premises_md5(self, key: str | None) -> None:
        """The premises router's BGP MD5 password (None: none); its bgpd restarts."""
        _, site = self._require_site()
        try:
            site.set_md5(key)
        except ValueError as e:
            raise LabError(str(e)) from None

    # ------------------------------------------------------------------ check

    def check(self, timeout: float = 10.0) -> CheckResult:
        st = self.require()
        attachments, vpc_names = self._attachments(st)
        if not attachments:
            return CheckResult(True, ["no attachments on lab hosts: nothing to check"])
        if st.driver != "linux":
            return self._check_reports(st, attachments)
        from l2vpc.agent.drivers.linux import workload_netns_name

        prefixes = {rec.name: rec.prefix for rec in st.hosts}
        endpoints = []
        for a in attachments:
            if not a.interface_name or not a.host:
                continue
            endpoints.append(probe.Endpoint(
                label=f"{a.workload}.{a.interface_name}", vpc=vpc_names.get(a.vpc_id, a.vpc_id),
                netns=workload_netns_name(prefixes[a.host], a.workload), ifname=a.interface_name,
                ip=a.ip_address.split("/")[0] if a.ip_address and a.ip_mode == "static" else None,
            ))
        dhcp = {f"{a.workload}.{a.interface_name}" for a in attachments if a.ip_mode == "dhcp"}
        resolved, report = probe.check(endpoints, timeout=timeout, dhcp=dhcp)
        lines: list[str] = []
        missing = [e for e in resolved if not e.mac]
        for e in missing:
            lines.append(f"FAIL {e.label} ({e.vpc}): interface missing; the attachment is not realized")
        for e in resolved:
            if e.mac and not e.ip and e.label in dhcp:
                lines.append(f"FAIL {e.label} ({e.vpc}): no DHCP lease within {timeout:.0f}s")
        for vpc in sorted({e.vpc for e in resolved}):
            members = [e for e in resolved if e.vpc == vpc]
            answered = sum(1 for src, _ in report.reachable if src.vpc == vpc)
            bad = [(src, dst) for src, dst in report.unreachable if src.vpc == vpc]
            addressed = sum(1 for e in members if e.ip)
            lines.append(f"vpc {vpc}: {len(members)} interfaces ({addressed} addressed), "
                         f"{answered}/{answered + len(bad)} pairs answer ping")
            for src, dst in bad:
                lines.append(f"FAIL {src.label} ({src.ip}) -> {dst.label} ({dst.ip}): no reply in vpc {vpc}")
        for sender, at, kind in report.leaks:
            lines.append(f"FAIL isolation: {kind} from {sender.label} (vpc {sender.vpc}) reached "
                         f"{at.label} (vpc {at.vpc})")
        vpcs = len({e.vpc for e in resolved if e.mac})
        if vpcs > 1:
            lines.append(f"isolation: {report.isolation_probes} probes between {vpcs} VPCs, "
                         f"{len(report.leaks)} crossed")
        ok = report.ok and not missing and not any(line.startswith("FAIL") for line in lines)
        lines.append(f"check {'passed' if ok else 'FAILED'} in {report.seconds:.2f}s")
        return CheckResult(ok, lines, report)

    def _check_reports(self, st: LabState, attachments: list[Attachment]) -> CheckResult:
        lines = ["memory driver: no dataplane to send traffic through; checking that every agent "
                 "reports its attachments"]
        _, hosts, _, _ = self.status()
        ports = {h.name: set(h.ports) for h in hosts}
        errors = {h.name: h.error for h in hosts if h.error}
        ok = True
        for a in attachments:
            assert a.host is not None
            if a.host in errors:
                ok = False
                lines.append(f"FAIL {a.workload}.{a.interface_name}: agent of {a.host}: {errors[a.host]}")
            elif a.id not in ports.get(a.host, set()):
                ok = False
                lines.append(f"FAIL {a.workload}.{a.interface_name}: not reported by {a.host} (run `l2vpc apply`)")
        lines.append(f"check {'passed' if ok else 'FAILED'}: {len(attachments)} attachments")
        return CheckResult(ok, lines)
