"""Real Pods in the lab: containerd + runc, their networks added by `l2vpc-cni` as a runtime would.

    rt = Containerd.start(lab_dir / "containerd", record)    # own root, state, socket; no CRI
    pod = run_pod(rt, name="web", host=rec, networks=[...])  # netns, CNI ADD per VPC, ctr run
    exec_pod(rt, pod, ["ping", "-c1", "10.0.0.2"])
    remove_pod(rt, pod)                                      # ctr kill/delete, CNI DEL, netns

`ctr run --cni` only reads /etc/cni/net.d and names the interface eth0, so the lab does what
Multus does with its delegates: it makes the Pod's namespace, calls the plugin once per VPC with
CNI_IFNAME net1..net10 (in the host's namespace, with nothing but the CNI_* variables and the
network configuration), then starts the container in that namespace (`--with-ns network:`).
The image (images.py) runs its own DHCP client on interfaces that came without an address.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from l2vpc.lab import images, netns
from l2vpc.lab.processes import alive, exited, start, stop

CNI_VERSION = "1.1.0"
POD_NAMESPACE = "default"  # the Kubernetes namespace lab Pods pretend to live in


class PodError(RuntimeError):
    """A Pod could not be started or removed; the message says why (the CNI error included)."""


@dataclass
class ContainerdRecord:
    dir: str
    socket: str
    pid: int | None = None
    socket_dir: str | None = None  # a short directory for the sockets when `dir` is too deep

    @property
    def marker(self) -> str:
        return str(Path(self.dir) / "config.toml")


@dataclass
class PodRecord:
    name: str
    host: str
    netns: str  # the Pod's namespace under /run/netns (the lab names it)
    container_id: str
    workload: str
    networks: list[dict[str, Any]] = field(default_factory=list)  # {vpc, ifname, netconf, result}
    started: bool = False


class Containerd:
    """A containerd of the lab's own: root, state and socket below `dir`, CRI off."""

    def __init__(self, record: ContainerdRecord) -> None:
        self.record = record

    @classmethod
    def start(cls, directory: Path, socket_dir: Path | None = None) -> Containerd:
        """Start it below `directory`, its sockets in `socket_dir` (default: `directory`; unix
        socket paths are limited to 104 bytes)."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        sock = (socket_dir or directory) / "containerd.sock"
        config = directory / "config.toml"
        config.write_text(
            "version = 2\n"
            f'root = "{directory / "root"}"\n'
            f'state = "{directory / "state"}"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{sock}"\n'
            f'[ttrpc]\n  address = "{sock}.ttrpc"\n'
            f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{directory / "opt"}"\n'
        )
        rec = ContainerdRecord(str(directory), str(sock), socket_dir=str(socket_dir) if socket_dir else None)
        rec.pid = start(["containerd", "--config", str(config)], directory / "containerd.pid",
                        directory / "containerd.log")
        rt = cls(rec)
        deadline = time.monotonic() + 15
        while rt.ctr("version", check=False).returncode != 0:
            if exited(rec.pid) or time.monotonic() > deadline:
                log = (directory / "containerd.log").read_text(errors="replace")[-400:]
                stop(rec.pid, rec.marker)
                raise PodError(f"containerd did not start: {log.strip()}")
            time.sleep(0.05)
        return rt

    def ctr(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        run = subprocess.run(["ctr", "--address", self.record.socket, *args], capture_output=True, text=True,
                             timeout=timeout)
        if check and run.returncode != 0:
            raise PodError(f"ctr {' '.join(args[:3])}: {(run.stderr or run.stdout).strip()[-300:]}")
        return run

    def ensure_image(self) -> str:
        if images.IMAGE_NAME not in self.ctr("images", "ls", "-q").stdout.split():
            self.ctr("images", "import", str(images.busybox_image()), timeout=120)
        return images.IMAGE_NAME

    def stop(self) -> None:
        """Every container gone, containerd stopped, its directory removed (mounts first)."""
        rec = self.record
        if alive(rec.pid, rec.marker):
            for cid in self.ctr("containers", "ls", "-q", check=False).stdout.split():
                self.delete(cid)
            stop(rec.pid, rec.marker)
        _unmount_below(Path(rec.dir))
        shutil.rmtree(rec.dir, ignore_errors=True)
        if rec.socket_dir:
            shutil.rmtree(rec.socket_dir, ignore_errors=True)

    def delete(self, cid: str) -> None:
        """Container `cid` killed and deleted (gone already is fine)."""
        self.ctr("tasks", "kill", "-s", "SIGKILL", cid, check=False)
        deadline = time.monotonic() + 10
        while cid in self.ctr("tasks", "ls", "-q", check=False).stdout.split() and time.monotonic() < deadline:
            if self.ctr("tasks", "delete", cid, check=False).returncode == 0:
                break
            time.sleep(0.05)
        self.ctr("containers", "delete", cid, check=False)


def _unmount_below(directory: Path) -> None:
    prefix = str(directory.resolve()) + "/"
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f if line.split()[1].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def plugin_env(command: str, pod: PodRecord, ifname: str) -> dict[str, str]:
    """Exactly what a runtime gives the plugin (and nothing else)."""
    return {"CNI_COMMAND": command, "CNI_CONTAINERID": pod.container_id, "CNI_NETNS": netns.path(pod.netns),
            "CNI_IFNAME": ifname, "CNI_PATH": os.path.dirname(_plugin()),
            "CNI_ARGS": f"K8S_POD_NAMESPACE={POD_NAMESPACE};K8S_POD_NAME={pod.name}"}


def _plugin() -> str:
    found = shutil.which("l2vpc-cni") or str(Path(sys.executable).parent / "l2vpc-cni")
    if not os.path.exists(found):
        raise PodError("the l2vpc-cni plugin is not installed (pip install l2vpc puts it beside the l2vpc command)")
    return found


def call_plugin(host_netns: str | None, env: dict[str, str], netconf: dict[str, Any],
                timeout: float = 120) -> dict[str, Any] | None:
    """Run `l2vpc-cni` in the host's namespace as a runtime would; its result (None for DEL and
    CHECK), or PodError carrying the CNI error."""
    argv = [_plugin()]
    if host_netns:
        argv = ["ip", "netns", "exec", host_netns, *argv]
    run = subprocess.run(argv, input=json.dumps(netconf).encode(), env=env, capture_output=True, timeout=timeout)
    out = run.stdout.decode(errors="replace").strip()
    if run.returncode != 0:
        try:
            err = json.loads(out)
            raise PodError(f"CNI {env['CNI_COMMAND']} {env['CNI_IFNAME']}: error {err.get('code')}: {err.get('msg')}"
                           + (f" ({err['details']})" if err.get("details") else ""))
        except ValueError:
            raise PodError(f"CNI {env['CNI_COMMAND']}: {out or run.stderr.decode(errors='replace')[-300:]}") from None
    return json.loads(out) if out else None


def netconf(vpc: str, agent_socket: str) -> dict[str, Any]:
    return {"cniVersion": CNI_VERSION, "name": f"l2vpc-{vpc}", "type": "l2vpc-cni", "vpc": vpc,
            "agent_socket": agent_socket}


def start_pod(rt: Containerd, pod: PodRecord, host_netns: str | None, agent_socket: str,
              networks: list[tuple[str, str]]) -> None:
    """ADD each (VPC, interface name) in order into the Pod's namespace, then run its container.
    On any failure everything added so far is deleted again and the namespace removed."""
    netns.create(pod.netns)
    try:
        for vpc, ifname in networks:
            conf = netconf(vpc, agent_socket)
            result = call_plugin(host_netns, plugin_env("ADD", pod, ifname), conf)
            pod.networks.append({"vpc": vpc, "ifname": ifname, "netconf": conf, "result": result})
        image = rt.ensure_image()
        rt.ctr("run", "-d", "--with-ns", f"network:{netns.path(pod.netns)}", "--cap-add", "CAP_NET_ADMIN",
               "--cap-add", "CAP_NET_RAW", image, pod.container_id, "/etc/l2vpc-init")
        pod.started = True
    except BaseException:
        with contextlib.suppress(Exception):
            stop_pod(rt, pod, host_netns)
        raise


def stop_pod(rt: Containerd, pod: PodRecord, host_netns: str | None) -> list[str]:
    """The container stopped and deleted, each network DELeted (last first), the namespace gone.
    Returns warnings (what could not be removed)."""
    warnings: list[str] = []
    if pod.started or pod.container_id in rt.ctr("containers", "ls", "-q", check=False).stdout.split():
        rt.delete(pod.container_id)
        pod.started = False
    for net in reversed(pod.networks):
        try:
            conf = dict(net["netconf"])
            if net.get("result"):
                conf["prevResult"] = net["result"]
            call_plugin(host_netns, plugin_env("DEL", pod, net["ifname"]), conf)
        except (PodError, OSError, subprocess.TimeoutExpired) as e:
            warnings.append(f"pod {pod.name}: {e}")
    pod.networks = []
    netns.remove(pod.netns)
    return warnings


def check_pod(pod: PodRecord, host_netns: str | None) -> list[str]:
    """CNI CHECK of each network: the errors (empty when all is as ADD set it up)."""
    problems = []
    for net in pod.networks:
        conf = {**net["netconf"], "prevResult": net.get("result") or {"cniVersion": CNI_VERSION}}
        try:
            call_plugin(host_netns, plugin_env("CHECK", pod, net["ifname"]), conf)
        except PodError as e:
            problems.append(str(e))
    return problems


def exec_pod(rt: Containerd, pod: PodRecord, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    exec_id = f"x{os.getpid()}{time.monotonic_ns() % 10**9}"
    return rt.ctr("tasks", "exec", "--exec-id", exec_id, pod.container_id, *argv, check=False, timeout=timeout)
