"""Build, inspect and remove a lab: simulated hosts running real agents (mininet's `Mininet`).

    lab = Lab(".l2vpc/state.db")
    lab.up(LabTopology.build(hosts=3, edges=1), premises=PremisesConfig())  # + a customer site
    lab.check()                           # ping within VPCs, no frame across them
    lab.sync_premises()                   # customer side of the direct connects the edges run
    lab.down()                            # removes exactly what up recorded

This module builds and removes; looking at a running lab is inspection.py, acting on one
(faults, commands in workloads, the premises' knobs) controls.py, the edges' outside world
(cross-connects, internet, premises) outside.py.

Layout beside the engine's state file (so the engine finds the lab's agents and TLS material):

    .l2vpc/state.db        the engine's state; hosts are registered here
    .l2vpc/pki/            CA, agents' server certs, the engine's client cert
    .l2vpc/lab/lab.json    what this lab created (see state.py)
    .l2vpc/lab/agents/<host>/   each agent's state dir;  lab/logs/<host>.log;  lab/run/*.pid *.sock

With root, hosts are network namespaces on an underlay bridge (MTU 9100, in a namespace of
its own), each agent runs the Linux driver on its host's namespace, and workloads are the
namespaces the agents create. Without root, agents run the memory driver: the control path is
the same (processes, TLS, gRPC, registration), the dataplane is simulated.

`up()` without `controllers=` is the embedded mode (the library's default, and what the
dataplane tests use): hosts registered in the state, converged by whoever applies. The CLI's
default is `controllers=ControllerPlan(1)`: the lab's own controller (controller_lab.py), whose
record beside the state (`l2vpc.paths.local_control_plane`) Terraform and `l2vpc` find; `down`
removes it, also a stale one whose lab is gone.

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
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from l2vpc import paths
from l2vpc._proto import agent_pb2 as pb
from l2vpc.agentapi.channel import host_metadata, open_channel, stub
from l2vpc.embedded import open_engine
from l2vpc.engine.agent_client import CLIENT_NAME, PKI_DIR, engine_tls
from l2vpc.engine.api import Engine
from l2vpc.engine.errors import ConflictError
from l2vpc.engine.model import Attachment
from l2vpc.engine.store import open_store
from l2vpc.hostconfig import HostConfig
from l2vpc.lab import agents, controller_lab, inspection, netns, outside, processes
from l2vpc.lab.agents import LabController
from l2vpc.lab.controller_lab import ControllerPlan
from l2vpc.lab.controllers import ControllerStartError
from l2vpc.lab.controls import LabControls
from l2vpc.lab.errors import LabError
from l2vpc.lab.inspection import CheckResult, HostStatus
from l2vpc.lab.premises import PremisesConfig
from l2vpc.lab.state import HostRecord, LabState
from l2vpc.lab.topology import MANAGEMENT_IP, LabTopology
from l2vpc.pki import CertificateAuthority

LAB_DIR = "lab"
AGENT_READY_TIMEOUT = 30.0
_MAX_SOCKET_PATH = 100
DEFAULT_BANDWIDTH_SCALE = 0.1

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def state_file_path(state: str) -> str:
    """The file behind a state argument (a path or sqlite:// URL), absolute."""
    if state.startswith("sqlite://"):
        state = state[len("sqlite://"):]
    elif "://" in state:
        raise LabError(f"the lab needs a local state file (SQLite), not {state.split('://', 1)[0]}://")
    return os.path.abspath(state)


def _addresses(joined: str) -> list[str]:
    return [a.strip() for a in joined.split(",") if a.strip()]


class Lab(LabControls):
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
           bandwidth_scale: float = DEFAULT_BANDWIDTH_SCALE, controller: LabController | None = None,
           controllers: ControllerPlan | None = None) -> LabState:
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
        # No lab here, so a record of controllers beside the state is a dead lab's: it would send
        # Terraform to them.
        Path(paths.control_plane_path(self.state_path)).unlink(missing_ok=True)
        if controllers is not None:
            if controller is not None:
                raise LabError("--controllers N runs the lab's own controllers; --controller names one it does "
                               "not run: give one of the two")
            try:
                controllers.check(driver)
            except ControllerStartError as e:
                raise LabError(str(e)) from None
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
        if controller is not None:
            st.endpoints, st.controller_ca = _addresses(controller.address), str(controller.ca.absolute())
        st.save()
        try:
            self._pki(st, topo)
            if driver == "linux":
                self._network(st, topo, progress, management=controller is not None or controllers is not None)
                try:
                    outside.build(st, topo, premises, premises_psk, self.dir, self._record_netns(st), progress)
                except ValueError as e:
                    raise LabError(str(e)) from None
            if controllers is not None:
                try:
                    controller = controller_lab.setup(st, topo, controllers, self.pki_dir, progress)
                except ControllerStartError as e:
                    raise LabError(str(e)) from None
                st.controller = controller.address
                st.save()
            elif controller is not None and not self._in_switch(st, controller):
                self._reachable(st, topo, controller)
            self._agents(st, topo, progress, controller)
            if controller is None:
                self._register(st, topo, progress)
                self._converge(progress)
            elif controllers is None and self._in_switch(st, controller):
                progress(f"agents register once a controller listens at {controller.address} in namespace "
                         f"{st.switch} (`nsenter --net={netns.path(st.switch or '')} l2vpc controller run ...`)")
            else:
                problems = controller_lab.wait_registered(st)
                if problems:
                    raise LabError(f"agents could not register with the controller at {controller.address}: "
                                   + "; ".join(problems))
                progress(f"{len(st.hosts)} agents registered with the controller at {controller.address}")
                if controllers is not None:
                    progress(f"local control plane recorded in {controller_lab.publish(st)}")
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

    @staticmethod
    def _in_switch(st: LabState, controller: LabController) -> bool:
        """The controller is to listen in the lab's own switch namespace, which `up` has just made:
        nobody could have started it there yet, so there is nothing to reach or wait for."""
        return st.driver == "linux" and all(a.rpartition(":")[0] == MANAGEMENT_IP
                                            for a in _addresses(controller.address))

    def _reachable(self, st: LabState, topo: LabTopology, controller: LabController) -> None:
        """A controller the lab does not run must answer where the agents dial it from."""
        first = f"{st.prefix}{topo.hosts[0].name}" if st.driver == "linux" else None
        problems = controller_lab.probe(_addresses(controller.address), first)
        if not problems:
            return
        where = ("from the hosts' namespaces, where the agents dial it over the lab's underlay: a controller for "
                 f"a lab of namespaces listens at {MANAGEMENT_IP} in the lab's switch namespace"
                 if first else "from this machine")
        raise LabError(f"--controller: cannot reach {'; '.join(problems)} ({where}); or let the lab run its own "
                       "controllers: `l2vpc lab up --controllers 2`")

    def _network(self, st: LabState, topo: LabTopology, progress: Progress, management: bool = False) -> None:
        switch = f"{st.prefix}ul"
        st.namespaces.append(switch)
        st.switch = switch
        st.save()  # recorded before it exists: down tolerates "already gone"
        netns.make_switch(switch, topo.underlay_mtu)
        if management:  # where the agents reach their controller
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

    def _agents(self, st: LabState, topo: LabTopology, progress: Progress,
                controller: LabController | None = None) -> None:
        agents.start(st, topo, self.dir, self.pki_dir, controller)
        deadline = time.monotonic() + AGENT_READY_TIMEOUT
        for rec in st.hosts:
            self._wait_ready(rec, deadline)
        progress(f"{len(st.hosts)} agents up ({st.driver} driver), logs in {self.dir / 'logs'}")

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
            if rec.pid is None or processes.exited(rec.pid):
                raise LabError(f"agent of {rec.name} exited: {processes.log_tail(Path(rec.log))}")
            if time.monotonic() > deadline:
                raise LabError(f"agent of {rec.name} did not answer within {AGENT_READY_TIMEOUT:.0f}s: "
                               f"{processes.log_tail(Path(rec.log))}")
            time.sleep(0.05)

    def restart_agent(self, host: str, kill: bool = False) -> None:
        """Restart the agent of `host` (SIGKILL first with `kill`) and wait until it answers."""
        st = self.require()
        rec = st.host(host)
        if rec is None:
            raise LabError(f"no lab host {host!r}")
        agents.restart(st, rec, kill=kill)
        self._wait_ready(rec, time.monotonic() + AGENT_READY_TIMEOUT)

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
            record = Path(paths.control_plane_path(self.state_path))
            if record.exists():  # a lab that went without its down left its record: stale
                record.unlink()
                progress(f"removed {record} (a record of controllers no lab runs)")
                return []
            return [f"no lab is up for state {self.state_path}"]
        warnings: list[str] = []
        if st.vms:
            from l2vpc.lab import lab_vms

            warnings += lab_vms.remove_all(st)
            progress("stopped the lab's VMs")
        if st.pods or st.containerd:  # while the agents still answer the Pods' CNI DELs
            from l2vpc.lab import lab_pods

            warnings += lab_pods.remove_all(st)
            progress("removed the lab's Pods")
        for rec in st.hosts:
            if processes.stop(rec.pid, rec.agent_dir):
                progress(f"stopped agent of {rec.name} (pid {rec.pid})")
        if st.controllers or st.postgres or st.links:
            warnings += controller_lab.teardown(st, progress)
        if st.driver == "linux":
            for rec in st.hosts:
                if rec.netns and netns.exists(rec.netns):
                    warnings += self._teardown_host(rec)
        if st.premises is not None:
            try:
                outside.teardown(st, self.dir)
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
            for path in (rec.pidfile, rec.log, rec.address[len("unix:"):], rec.token_file, rec.cni_socket):
                if path is None:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            shutil.rmtree(rec.agent_dir, ignore_errors=True)
        for f in st.files:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f)
        st.remove_file()
        leftover_dirs: list[Path] = [*(self.dir / sub for sub in ("agents", "logs", "run", "controllers")), self.dir,
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

    # ------------------------------------------------------------------ status

    def status(self) -> tuple[LabState, list[HostStatus], list[Attachment], dict[str, str]]:
        """The lab record, each agent's health and ports, and the engine's attachments on lab hosts."""
        st = self.require()
        hosts = inspection.host_statuses(st, self.pki_dir)
        try:
            attachments, vpc_names = self._attachments(st)
        except LabError:  # the lab's controllers are gone: the status says so, per controller
            attachments, vpc_names = [], {}
        return st, hosts, attachments, vpc_names

    def _attachments(self, st: LabState) -> tuple[list[Attachment], dict[str, str]]:
        return inspection.attachments(st, self.state_path, self.pki_dir)

    # ------------------------------------------------------------------ check

    def check(self, timeout: float = 10.0) -> CheckResult:
        """Traffic within and isolation across the VPCs on lab hosts (see inspection.check)."""
        return inspection.check(self.require(), self.pki_dir, self.state_path, timeout)
