"""The agent's side of `l2vpc-cni`: CNI requests over a local unix socket, answered by binding
pod ports to the Pods' namespaces and converging.

    server = CniServer(CniService(agent, host="h1"), "/run/l2vpc/cni.sock")
    server.start() ... server.stop()

One request line in, one answer line out (see l2vpc/cni/plugin.py). What each command does:

- ADD: the attachment of this Pod's workload to the VPC the network configuration names is
  either declared (an `l2vpc_attachment` with `workload_kind = "pod"` the engine placed on this
  host) or, when none is and the agent runs with a controller, created on demand (PodControl:
  placed here, owned by the Pod, named CNI_IFNAME, static with CNI_ARGS `IP=` or the `ips`
  capability). It is bound to CNI_NETNS, the agent converges (an on-demand one once the
  controller's push brings it, at most `wait` seconds), and the result carries the interface
  (MAC, MTU, sandbox) and, for a static address, the address and routes. The workload is
  `workload` from the configuration, else `<K8S_POD_NAMESPACE>-<K8S_POD_NAME>` from CNI_ARGS,
  else `ctr-` + the container id's first 12 digits (hostconfig.names). A failed ADD leaves
  nothing: no binding, no device, no on-demand attachment.
- DEL: unbinds (the host side goes, and with it the Pod's end) and deletes an on-demand
  attachment from the state; twice, or for an unknown container, or after the namespace is
  gone, it succeeds (an unreachable controller: try again later, the binding kept for it).
- CHECK: reads the Pod's end (never changes it) and reports any difference from what ADD set up.
- STATUS: ready when the agent holds a config (or can reach its controller); GC: unbinds (and
  detaches) what the runtime no longer lists.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from l2vpc.agent.core import Agent
from l2vpc.agent.pod_control import PodControl, static_address
from l2vpc.agent.pods import Binding
from l2vpc.cni import spec
from l2vpc.cni.spec import CniError
from l2vpc.hostconfig import HostConfig, Port, Segment
from l2vpc.hostconfig.diff import port_path
from l2vpc.hostconfig.names import container_workload, pod_workload
from l2vpc.hostconfig.validate import workload_name_problem

log = logging.getLogger("l2vpc.agent.cni")

MAX_REQUEST = 1 << 20
ON_DEMAND_WAIT = 30.0  # seconds an on-demand ADD waits for the controller's push


class CniService:
    """Answers CNI requests for one agent (thread-safe: the agent serialises converges).
    `pods`: the controller link for on-demand attachments (None: declared ones only)."""

    def __init__(self, agent: Agent, host: str, pods: PodControl | None = None, *,
                 wait: float = ON_DEMAND_WAIT) -> None:
        self.agent = agent
        self.host = host
        self.pods = pods
        self.wait = wait
        self._calls = ThreadPoolExecutor(max_workers=4, thread_name_prefix="cni-controller")

    def handle(self, request: Mapping[str, Any]) -> dict[str, Any]:
        command = str(request.get("command", ""))
        try:
            if command == "ADD":
                return {"ok": True, "result": self._add(request)}
            if command == "DEL":
                self._del(request)
            elif command == "CHECK":
                self._check(request)
            elif command == "GC":
                self._gc(request)
            elif command == "STATUS":
                if self.agent.desired is None and self.pods is None:
                    raise CniError(spec.PLUGIN_NOT_AVAILABLE, f"the agent of {self.host} has no config yet")
            else:
                raise CniError(spec.INVALID_ENVIRONMENT, f"CNI_COMMAND {command[:20]!r} is not handled by the agent")
            return {"ok": True}
        except CniError as e:
            log.info("%s %s: refused (%d): %s", command, request.get("container_id", ""), e.code, e)
            return {"ok": False, "code": e.code, "msg": e.msg, "details": e.details}

    # -- ADD ----------------------------------------------------------------------------------

    def _add(self, req: Mapping[str, Any]) -> dict[str, Any]:
        config = _config(req)
        netns = str(req.get("netns", ""))
        if not os.path.exists(netns):
            raise CniError(spec.UNKNOWN_CONTAINER, f"CNI_NETNS {netns!r} does not exist")
        ifname = str(req.get("ifname", ""))
        workload = self._workload(req, config)
        vpc = str(config.get("vpc") or _args(req).get("VPC", ""))
        wanted_ip = static_address(_args(req), config)
        held = self.agent.pods.find(str(config.get("name", "")), str(req["container_id"]), ifname)
        if held is not None and held.on_demand:  # the runtime retries an ADD
            if held.sandbox != netns or held.orphaned:
                held = dataclasses.replace(held, sandbox=netns, orphaned=False)
                self.agent.pods.bind(held)
            return self._realise(held, time.monotonic() + self.wait)
        desired = self.agent.desired
        port = self._declared(desired, workload, vpc) if desired is not None else None
        if port is None:
            if self.pods is not None:
                return self._on_demand(req, config, workload, vpc, wanted_ip)
            if desired is None:
                raise CniError(spec.TRY_AGAIN_LATER, f"the agent of {self.host} has no config from the engine yet",
                               "on-demand attachments need the agent to run with a controller (--controller)")
            raise CniError(spec.NOT_PLACED_HERE, f"no attachment of workload {workload!r} to VPC {vpc!r} is placed "
                           f"on host {self.host}",
                           "declare an l2vpc_attachment with workload_kind = \"pod\" for it on this host (on-demand "
                           "attachments need the agent to run with a controller: --controller)")
        if port.workload_kind != "pod":
            raise CniError(spec.RULE_VIOLATED, f"attachment {port.id} of workload {workload!r} is a "
                           f"{port.workload_kind} attachment, not a Pod's (workload_kind must be \"pod\")")
        if port.interface_name != ifname:
            raise CniError(spec.INTERFACE_MISMATCH, f"CNI_IFNAME {ifname} differs from the interface_name "
                           f"{port.interface_name} of attachment {port.id}",
                           "call the plugin for this VPC with CNI_IFNAME=" + port.interface_name)
        if wanted_ip and wanted_ip != (port.ip_address or ""):
            raise CniError(spec.RULE_VIOLATED, f"ip_address: CNI_ARGS IP={wanted_ip} differs from attachment "
                           f"{port.id}'s address {port.ip_address or '(' + port.ip_mode + ')'}")
        held = self.agent.pods.of_port(port.id, orphans=True)
        if held is not None and held.container_id != req["container_id"] and os.path.exists(held.sandbox):
            raise CniError(spec.RULE_VIOLATED, f"attachment {port.id} is already bound to container "
                           f"{held.container_id} ({held.sandbox})")
        # An on-demand attachment whose Pod died without a DEL stays the Pod's (its DEL deletes it).
        binding = Binding(port.id, netns, str(req["container_id"]), ifname, str(config.get("name", "")),
                          on_demand=held is not None and held.on_demand)
        self.agent.pods.bind(binding)
        outcome = self.agent.reconverge()
        actual = outcome.actual if outcome is not None and outcome.actual is not None else None
        realized = actual is not None and any(p.id == port.id and p.sandbox == netns for p in actual.ports)
        if not realized:
            self.agent.pods.unbind(port.id)
            self.agent.reconverge()  # whatever half of it exists goes
            why = "; ".join(str(f) for f in (outcome.failures if outcome else ()) if f.path.startswith(port_path(port.id)))
            raise CniError(spec.IO_FAILURE, f"could not set up {ifname} for attachment {port.id}",
                           why or "the agent did not converge")
        return _result(dataclasses.replace(port, sandbox=netns))

    def _on_demand(self, req: Mapping[str, Any], config: Mapping[str, Any], workload: str, vpc: str,
                   ip_address: str | None) -> dict[str, Any]:
        """Create the attachment through the controller, bind it, and realise it once pushed."""
        assert self.pods is not None
        deadline = time.monotonic() + self.wait
        att = self.pods.attach(vpc, workload=workload, interface_name=str(req["ifname"]),
                               container_id=str(req["container_id"]), ip_address=ip_address)
        binding = Binding(att.id, str(req["netns"]), str(req["container_id"]), str(req["ifname"]),
                          str(config.get("name", "")), on_demand=True, provisional=att.port)
        self.agent.pods.bind(binding)
        return self._realise(binding, deadline)

    def _realise(self, binding: Binding, deadline: float) -> dict[str, Any]:
        """Converge once the port can be set up: the accepted config holds it (the controller's
        push), or holds its VPC's segment and the port came with the attachment (provisional);
        answer with it. A failure removes what this ADD made (an on-demand attachment too)."""
        delay = 0.001
        while True:
            desired = self.agent.desired
            port = next((p for p in desired.ports if p.id == binding.port_id), None) if desired else None
            if port is not None:
                break
            early = binding.provisional
            if early is not None and desired is not None and any(s.vni == early.vni for s in desired.segments):
                port = early
                break
            if time.monotonic() >= deadline:
                self._undo(binding)
                raise CniError(spec.TRY_AGAIN_LATER, f"attachment {binding.port_id} was created, but the controller "
                               f"did not bring it to host {self.host} within {self.wait:.0f} s",
                               "is a controller leading and converging? the ADD may be retried")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.02)
        outcome = self.agent.reconverge()
        actual = outcome.actual if outcome is not None else None
        if actual is None or not any(p.id == port.id and p.sandbox == binding.sandbox for p in actual.ports):
            self._undo(binding)
            why = "; ".join(str(f) for f in (outcome.failures if outcome else ()) if f.path.startswith(port_path(port.id)))
            raise CniError(spec.IO_FAILURE, f"could not set up {binding.ifname} for attachment {port.id}",
                           why or "the agent did not converge")
        return _result(dataclasses.replace(port, sandbox=binding.sandbox))

    def _undo(self, binding: Binding) -> None:
        """Remove what an ADD made: the on-demand attachment (kept bound, for the runtime's DEL,
        when the controller cannot be reached), the binding, the devices."""
        if binding.on_demand and self.pods is not None:
            try:
                self.pods.detach(binding.port_id)
            except CniError as e:
                log.warning("ADD of %s failed and its attachment %s stays until DEL: %s", binding.container_id,
                            binding.port_id, e)
                return
        self.agent.pods.unbind(binding.port_id)
        self.agent.reconverge()

    def _workload(self, req: Mapping[str, Any], config: Mapping[str, Any]) -> str:
        given = config.get("workload")
        if given:
            problem = workload_name_problem(str(given))
            if problem:
                raise CniError(spec.INVALID_CONFIG, f"workload: {problem}")
            return str(given)
        args = _args(req)
        if args.get("K8S_POD_NAMESPACE") and args.get("K8S_POD_NAME"):
            return pod_workload(args["K8S_POD_NAMESPACE"], args["K8S_POD_NAME"])
        return container_workload(str(req.get("container_id", "")))

    @staticmethod
    def _declared(desired: HostConfig, workload: str, vpc: str) -> Port | None:
        seg = _segment(desired, vpc)
        if seg is None:
            return None
        return next((p for p in desired.ports if p.workload == workload and p.vni == seg.vni), None)

    # -- DEL, CHECK, GC -----------------------------------------------------------------------

    def _binding(self, req: Mapping[str, Any]) -> Binding | None:
        return self.agent.pods.find(str(_config(req).get("name", "")), str(req.get("container_id", "")),
                                    str(req.get("ifname", "")))

    def _del(self, req: Mapping[str, Any]) -> None:
        binding = self._binding(req)
        if binding is None:
            return  # never added, or deleted already: DEL is idempotent
        if not binding.on_demand:
            self.agent.pods.unbind(binding.port_id)
            self.agent.reconverge()
            return
        # The devices go while the controller deletes the attachment (a DEL's time is the
        # longer of the two, not their sum); the binding stays, orphaned (nothing of it
        # realised), until the controller confirms, so a DEL retried after a refusal or an
        # unreachable controller still deletes the attachment.
        pods = self._pods_for(binding)
        self.agent.pods.bind(dataclasses.replace(binding, orphaned=True))
        detached = self._calls.submit(pods.detach, binding.port_id)
        self.agent.reconverge()
        detached.result()  # raises the controller's refusal as a CNI error
        self.agent.pods.unbind(binding.port_id)

    def _pods_for(self, binding: Binding) -> PodControl:
        if self.pods is None:
            raise CniError(spec.TRY_AGAIN_LATER, f"attachment {binding.port_id} was created on demand; deleting it "
                           "needs the agent to run with its controller (--controller)")
        return self.pods

    def _check(self, req: Mapping[str, Any]) -> None:
        binding = self._binding(req)
        if binding is None:
            raise CniError(spec.DRIFT, f"no interface {req.get('ifname')} of container {req.get('container_id')} "
                           "was set up by an ADD on this host")
        desired = self.agent.desired
        port = next((p for p in desired.ports if p.id == binding.port_id), None) if desired else None
        if port is None:
            raise CniError(spec.DRIFT, f"attachment {binding.port_id} is no longer placed on host {self.host}")
        with self.agent.exclusive():
            problems = self.agent.driver.sandbox_drift(dataclasses.replace(port, sandbox=binding.sandbox))
        if problems:
            raise CniError(spec.DRIFT, f"{binding.ifname} of attachment {port.id} is not as it was set up",
                           "; ".join(problems))

    def _gc(self, req: Mapping[str, Any]) -> None:
        config = _config(req)
        valid = {(str(a.get("containerID", "")), str(a.get("ifname", "")))
                 for a in config.get("cni.dev/valid-attachments", ()) if isinstance(a, dict)}
        gone = [b for b in self.agent.pods.all()
                if b.network == config.get("name") and (b.container_id, b.ifname) not in valid]
        for b in gone:  # devices first, attachments after (as DEL)
            self.agent.pods.bind(dataclasses.replace(b, orphaned=True))
        if gone:
            self.agent.reconverge()
        for b in gone:
            try:
                if b.on_demand:
                    self._pods_for(b).detach(b.port_id)
            except CniError as e:  # kept (orphaned) for the next GC or DEL
                log.warning("GC: attachment %s of container %s stays: %s", b.port_id, b.container_id, e)
                continue
            self.agent.pods.unbind(b.port_id)


def _config(req: Mapping[str, Any]) -> Mapping[str, Any]:
    config = req.get("config")
    return config if isinstance(config, dict) else {}


def _args(req: Mapping[str, Any]) -> dict[str, str]:
    args = req.get("args")
    return {str(k): str(v) for k, v in args.items()} if isinstance(args, dict) else {}


def _segment(desired: HostConfig, vpc: str) -> Segment | None:
    return next((s for s in desired.segments if vpc in (s.vpc_name, s.vpc_id)), None)


def _result(port: Port) -> dict[str, Any]:
    out: dict[str, Any] = {"interfaces": [{"name": port.interface_name, "mac": port.mac, "sandbox": port.sandbox,
                                           "mtu": port.mtu}]}
    if port.ip_mode == "static" and port.ip_address:
        out["ips"] = [{"address": port.ip_address, "interface": 0}]
        out["routes"] = [{"dst": r.prefix, "gw": r.via} for r in port.routes]
    return out


class CniServer:
    """The unix socket (0600) the plugin talks to; a thread per request."""

    def __init__(self, service: CniService, path: str | os.PathLike[str]) -> None:
        self.service = service
        self.path = Path(path)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if self.path.is_socket():
                self.path.unlink()  # a previous run's (it would block the bind)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        sock.listen(64)
        self._sock = sock
        self._thread = threading.Thread(target=self._accept, name="cni", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        assert self._sock is not None
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed by stop()
            threading.Thread(target=self._serve, args=(conn,), name="cni-request", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            try:
                while len(data) <= MAX_REQUEST and (chunk := conn.recv(65536)):
                    data += chunk
                request = json.loads(data.decode())
                if not isinstance(request, dict):
                    raise ValueError("not an object")
            except (OSError, UnicodeDecodeError, ValueError) as e:
                answer: dict[str, Any] = {"ok": False, "code": spec.DECODE_FAILURE, "msg": f"bad request: {e}"}
            else:
                try:
                    answer = self.service.handle(request)
                except Exception as e:  # a bug must not leave the runtime waiting
                    log.exception("CNI request failed")
                    answer = {"ok": False, "code": spec.IO_FAILURE, "msg": f"internal error in the agent: {e}"}
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps(answer).encode() + b"\n")

    def stop(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
            self._sock = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
