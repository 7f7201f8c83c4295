"""`l2vpc lab pod run|rm|exec|check|list`: real Pods on a lab's hosts (see pods.py for how).

A lab Pod is the Kubernetes Pod `default/<name>`, so its workload is `default-<name>`
(hostconfig.names.pod_workload). `run` attaches it to the VPCs asked for:
- on a lab without a controller, an attachment the configuration already declares for that
  workload (`workload_kind = "pod"`) is used as it is; for a VPC without one the lab declares
  one (as a user would in Terraform), placed with the Pod's other attachments;
- on a lab whose agents run with a controller, the lab declares nothing: an attachment the
  configuration declares is used where it is placed (its host, its interface; the lab's own
  controllers tell, with the admin token), and for a VPC without one each ADD creates the Pod's
  attachment on demand (net1, net2, ... in the order of --vpc; the host is --host, else the
  host of its other attachments, else the first compute host), and the DEL of `rm` deletes it.
The Pod's networks are then added by the CNI plugin, one ADD per VPC in interface order, and its
container started. Needs the linux driver (root).
"""

from __future__ import annotations

import dataclasses
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path

from l2vpc.embedded import open_engine
from l2vpc.engine.model import Attachment
from l2vpc.hostconfig.names import pod_workload
from l2vpc.lab import inspection, pods
from l2vpc.lab.pods import Containerd, ContainerdRecord, PodError, PodRecord
from l2vpc.lab.state import HostRecord, LabState

Progress = Callable[[str], None]
MAX_SOCKET_PATH = 100  # a unix socket's path has at most 104 bytes (with room to spare)


def runtime(st: LabState, lab_dir: Path) -> Containerd:
    """The lab's containerd, started on first use and recorded."""
    if st.containerd is not None:
        rt = Containerd(ContainerdRecord(**st.containerd))
        if rt.ctr("version", check=False).returncode == 0:
            return rt
        rt.stop()
    directory = lab_dir / "containerd"
    sockets = None
    if len(str(directory / "containerd.sock.ttrpc")) > MAX_SOCKET_PATH:
        sockets = Path(tempfile.mkdtemp(prefix=f"l2lab{st.id}-ctd-", dir="/tmp"))
    rt = Containerd.start(directory, sockets)
    st.containerd = dataclasses.asdict(rt.record)
    st.save()
    return rt


def records(st: LabState) -> list[PodRecord]:
    return [PodRecord(**p) for p in st.pods]


def find(st: LabState, name: str) -> PodRecord:
    pod = next((p for p in records(st) if p.name == name), None)
    if pod is None:
        known = ", ".join(p.name for p in records(st)) or "none"
        raise PodError(f"no lab Pod named {name!r} (lab Pods: {known})")
    return pod


def _save(st: LabState, pod: PodRecord | None, drop: str | None = None) -> None:
    kept = [p for p in st.pods if p["name"] not in {drop, pod.name if pod else None}]
    st.pods = [*kept, dataclasses.asdict(pod)] if pod is not None else kept
    st.save()


def declare(state_path: str, workload: str, vpcs: list[str], host: str | None,
            ip_mode: str | None) -> list[tuple[str, Attachment]]:
    """(VPC name, the Pod's attachment to it) for each VPC asked for, declared where missing, in
    the order of their interface names; the hosts converged so the agent holds them."""
    engine = open_engine(state_path)
    try:
        mine = {a.vpc_id: a for a in engine.list("attachment") if a.workload == workload}
        placed = host or next((a.host for a in mine.values() if a.host), None)
        out = []
        for name in vpcs:
            vpc = engine.vpc_by_name(name) or engine.find("vpc", name)
            if vpc is None:
                raise PodError(f"--vpc: no VPC named {name!r}")
            att = mine.get(vpc.id)
            if att is None:
                data = {"vpc_id": vpc.id, "workload": workload, "workload_kind": "pod",
                        "ip_mode": ip_mode or ("dhcp" if vpc.dhcp else "none")}
                if placed:
                    data["host"] = placed
                att = mine[vpc.id] = engine.create("attachment", data)
                placed = att.host
            out.append((vpc.name, att))
        _, result = engine.converge()
        if not result.ok:
            raise PodError("the hosts did not converge: " + "; ".join(str(f) for f in result.failures))
        return sorted(out, key=lambda pair: int((pair[1].interface_name or "net0")[3:]))
    finally:
        engine.agents.close()  # type: ignore[attr-defined]
        engine.store.close()


def run(st: LabState, lab_dir: Path, name: str, vpcs: list[str], host: str | None = None,
        ip_mode: str | None = None, progress: Progress = lambda _m: None) -> PodRecord:
    if st.driver != "linux":
        raise PodError("Pods need the lab's linux driver (run the lab as root)")
    if any(p["name"] == name for p in st.pods):
        raise PodError(f"a lab Pod named {name!r} exists already (l2vpc lab pod rm {name})")
    workload = pod_workload(pods.POD_NAMESPACE, name)
    if st.controller is not None:  # on demand: the agents' controller creates the attachments
        if ip_mode is not None:
            raise PodError("--ip-mode: only for attachments the lab declares (a lab without a controller); on "
                           "demand, a Pod's VPC with DHCP gets dhcp")
        declared = _declared(st, workload)
        placed = next((a.host for a in declared.values() if a.host), None)
        rec = _host(st, host or placed or next((h.name for h in st.hosts if h.role == "compute"), ""))
        taken: set[str] = {str(a.interface_name) for a in declared.values()}
        free = iter([f"net{i}" for i in range(1, 11) if f"net{i}" not in taken])
        networks: list[tuple[str, str]] = []
        for vpc in vpcs:
            att = declared.get(vpc)
            networks.append((vpc, str(att.interface_name) if att and att.interface_name else next(free, "")))
    else:
        attachments = declare(st.state_path, workload, vpcs, host, ip_mode)
        rec = _host(st, attachments[0][1].host or "")
        networks = [(vpc, att.interface_name or "") for vpc, att in attachments]
    rt = runtime(st, lab_dir)
    pod = PodRecord(name=name, host=rec.name, netns=f"{st.prefix}pod-{name}", container_id=f"l2pod-{name}-"
                    f"{secrets.token_hex(4)}", workload=workload)
    _save(st, pod)  # recorded before anything exists: `lab down` removes what a crash leaves
    st.namespaces.append(pod.netns)
    st.save()
    try:
        pods.start_pod(rt, pod, rec.netns, rec.cni_socket or "", networks)
    except BaseException:
        _save(st, None, drop=name)
        st.namespaces.remove(pod.netns)
        st.save()
        raise
    _save(st, pod)
    progress(f"pod {name} ({workload}) on {rec.name}: " + ", ".join(f"{n['ifname']} on {n['vpc']}" for n in pod.networks))
    return pod


def remove(st: LabState, name: str) -> list[str]:
    pod = find(st, name)
    rec = st.host(pod.host)
    rt = runtime(st, Path(st.dir))
    warnings = pods.stop_pod(rt, pod, rec.netns if rec else None)
    _save(st, None, drop=name)
    if pod.netns in st.namespaces:
        st.namespaces.remove(pod.netns)
        st.save()
    return warnings


def remove_all(st: LabState) -> list[str]:
    """Every Pod and the containerd gone (lab down)."""
    warnings: list[str] = []
    for pod in records(st):
        try:
            warnings += remove(st, pod.name)
        except Exception as e:  # the rest of `down` must still happen
            warnings.append(f"pod {pod.name}: {e}")
    if st.containerd is not None:
        Containerd(ContainerdRecord(**st.containerd)).stop()
        st.containerd = None
        st.save()
    return warnings


def _declared(st: LabState, workload: str) -> dict[str, Attachment]:
    """The workload's attachments by VPC name, as the lab's own controllers hold them (none when
    the lab has no admin token for its controller: then every ADD creates its attachment)."""
    remote = inspection.remote_engine(st)
    if remote is None:
        return {}
    try:
        names = {v.id: v.name for v in remote.list("vpc")}
        return {names.get(a.vpc_id, a.vpc_id): a for a in remote.list("attachment") if a.workload == workload}
    finally:
        remote.close()


def _host(st: LabState, name: str) -> HostRecord:
    rec = st.host(name)
    if rec is None or not rec.cni_socket:
        raise PodError(f"host {name!r} is not a lab host with a CNI socket (lab from an older version?)")
    return rec
