"""Looking at a running lab: each agent's health and what it reports, the engine's attachments
on lab hosts, and a traffic check between them (probe.py), or with the memory driver a check
that every agent reports its attachments.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from l2vpc._proto import agent_pb2 as pb
from l2vpc.agentapi import wire
from l2vpc.agentapi.channel import host_metadata, open_channel, stub
from l2vpc.engine.agent_client import engine_tls
from l2vpc.engine.api import Engine
from l2vpc.engine.model import Attachment
from l2vpc.engine.store import open_store
from l2vpc.hostconfig.names import tap_device_name, workload_netns_name
from l2vpc.lab import probe, processes
from l2vpc.lab.errors import LabError
from l2vpc.lab.state import LabState


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
    netns: str | None = None  # the host's namespace under /run/netns (linux driver)
    agent_socket: str | None = None  # where the agent answers l2vpc-cni (`agent_socket` in a netconf)
    ports: list[str] = field(default_factory=list)  # attachment ids the agent reports
    taps: list[dict[str, str]] = field(default_factory=list)  # {"name", "attachment"}: a VM's NICs
    # Direct connects and VPN gateways the agent reports: {"id", "kind", "state", "detail", "learned"}.
    items: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class CheckResult:
    ok: bool
    lines: list[str]
    report: probe.Report | None = None


def host_statuses(st: LabState, pki_dir: Path) -> list[HostStatus]:
    """Each agent's health, ports and observations, asked over its socket."""
    out: list[HostStatus] = []
    for rec in st.hosts:
        hs = HostStatus(rec.name, rec.role, rec.region, rec.underlay_ip, rec.location, rec.address, rec.pid,
                        processes.alive(rec.pid, rec.agent_dir), netns=rec.netns, agent_socket=rec.cni_socket)
        try:
            with open_channel(rec.address, rec.name, engine_tls(pki_dir)) as channel:
                s = stub(channel)
                md = host_metadata(rec.name)
                h = s.Health(pb.HealthRequest(), timeout=3, metadata=md)
                state = s.GetState(pb.GetStateRequest(), timeout=10, metadata=md)
            hs.health = {"accepted_generation": h.accepted_generation, "ok": h.last_converge_ok,
                         "failures": [f"{f.path}: {f.reason}" for f in h.last_failures],
                         "converging": h.converging}
            actual = wire.config_from_pb(state.actual)
            hs.ports = [p.id for p in actual.ports if p.workload_kind != "pod" or p.sandbox]  # a Pod's: once bound
            hs.taps = [{"name": tap_device_name(p.id), "attachment": p.id, "workload": p.workload}
                       for p in actual.ports if p.tap]
            kinds = {e.id: f"direct connect ({e.mode})" for e in actual.edge_routers}
            kinds |= {v.id: "vpn" for v in actual.vpn_gateways}
            hs.items = [{"id": o.id, "kind": kinds.get(o.id, "not in place"), "state": o.state,
                         "detail": o.detail, "learned": list(o.learned)} for o in actual.observations]
        except grpc.RpcError as e:
            hs.error = f"{e.code().name.lower()}: {e.details()}" if isinstance(e, grpc.Call) else str(e)
        out.append(hs)
    return out


def remote_engine(st: LabState) -> Any:
    """The lab's controllers as an admin sees them (every tenant's objects), or None when the lab
    has no admin token for them (no controllers, or one it does not run)."""
    if not (st.endpoints and st.admin_token_file):
        return None
    if st.controllers and not any(processes.alive(c["pid"], c["ready_file"]) for c in st.controllers):
        raise LabError(f"none of the lab's controllers runs any more ({', '.join(st.endpoints)}; lab record "
                       f"{st.path}): `l2vpc lab down`, then `l2vpc lab up`")
    from l2vpc.controller.client import RemoteEngine

    token = Path(st.admin_token_file).read_text().strip()
    return RemoteEngine(",".join(st.endpoints), token, ca_file=st.controller_ca, retry_seconds=5.0)


def attachments(st: LabState, state_path: str, pki_dir: Path | None = None) -> tuple[list[Attachment], dict[str, str]]:
    """The attachments on the lab's hosts (by workload, interface) and VPC names by id: the
    engine's, the lab's controllers', or (a controller the lab does not run) what agents report."""
    names = {h.name for h in st.hosts}
    remote = remote_engine(st)
    if remote is not None:
        try:
            found, vpcs = remote.list("attachment"), {v.id: v.name for v in remote.list("vpc")}
        finally:
            remote.close()
    elif st.controller and pki_dir is not None:
        found, vpcs = _reported(st, pki_dir), {}
    elif os.path.exists(state_path):
        store = open_store(state_path)
        try:
            topo = Engine(store).topology()
        finally:
            store.close()
        found, vpcs = list(topo.attachments.values()), {v.id: v.name for v in topo.vpcs.values()}
    else:
        return [], {}
    atts = sorted((a for a in found if a.host in names), key=lambda a: (a.workload, a.interface_name or ""))
    return atts, vpcs


def _reported(st: LabState, pki_dir: Path) -> list[Attachment]:
    """Attachments as the agents run them (their VPCs by VNI): all a lab knows of a controller
    it has no token for."""
    out = []
    for rec in st.hosts:
        try:
            with open_channel(rec.address, rec.name, engine_tls(pki_dir)) as channel:
                state = stub(channel).GetState(pb.GetStateRequest(), timeout=10, metadata=host_metadata(rec.name))
        except grpc.RpcError:
            continue
        for p in wire.config_from_pb(state.actual).ports:
            fields: dict[str, Any] = {
                "id": p.id, "vpc_id": f"vni-{p.vni}", "workload": p.workload, "workload_kind": p.workload_kind,
                "host": rec.name, "ip_mode": p.ip_mode, "ip_address": p.ip_address,
                "interface_name": p.interface_name, "mac_address": p.mac}
            out.append(Attachment.model_construct(**fields))
    return out


def check(st: LabState, pki_dir: Path, state_path: str, timeout: float = 10.0) -> CheckResult:
    """Ping every pair inside each VPC and probe isolation across VPCs (linux driver)."""
    found, vpc_names = attachments(st, state_path, pki_dir)
    if not found:
        return CheckResult(True, ["no attachments on lab hosts: nothing to check"])
    if st.driver != "linux":
        return _check_reports(st, pki_dir, found)
    prefixes = {rec.name: rec.prefix for rec in st.hosts}
    pods = {p["workload"]: p["netns"] for p in st.pods}  # lab Pods (lab_pods.py) by workload
    vms = {v["workload"] for v in st.vms}  # lab VMs (lab_vms.py)
    endpoints = []
    lines: list[str] = []
    for a in found:
        if not a.interface_name or not a.host:
            continue
        if a.workload in vms:
            lines.append(f"vm {a.workload}.{a.interface_name} ({vpc_names.get(a.vpc_id, a.vpc_id)}): a VM on taps "
                         "(`l2vpc lab vm exec` runs commands in it)")
            continue
        if a.workload_kind == "pod" and a.workload not in pods:
            lines.append(f"pending {a.workload}.{a.interface_name} ({vpc_names.get(a.vpc_id, a.vpc_id)}): waits for "
                         "its Pod (no lab Pod runs it; `l2vpc lab pod run` starts one)")
            continue
        endpoints.append(probe.Endpoint(
            label=f"{a.workload}.{a.interface_name}", vpc=vpc_names.get(a.vpc_id, a.vpc_id),
            netns=pods[a.workload] if a.workload_kind == "pod" else workload_netns_name(prefixes[a.host], a.workload),
            ifname=a.interface_name,
            ip=a.ip_address.split("/")[0] if a.ip_address and a.ip_mode == "static" else None,
        ))
    dhcp = {f"{a.workload}.{a.interface_name}" for a in found if a.ip_mode == "dhcp"}
    resolved, report = probe.check(endpoints, timeout=timeout, dhcp=dhcp)
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


def _check_reports(st: LabState, pki_dir: Path, found: list[Attachment]) -> CheckResult:
    lines = ["memory driver: no dataplane to send traffic through; checking that every agent "
             "reports its attachments"]
    hosts = host_statuses(st, pki_dir)
    ports = {h.name: set(h.ports) for h in hosts}
    errors = {h.name: h.error for h in hosts if h.error}
    ok = True
    for a in found:
        assert a.host is not None
        if a.host in errors:
            ok = False
            lines.append(f"FAIL {a.workload}.{a.interface_name}: agent of {a.host}: {errors[a.host]}")
        elif a.id not in ports.get(a.host, set()):
            ok = False
            lines.append(f"FAIL {a.workload}.{a.interface_name}: not reported by {a.host} (run `l2vpc apply`)")
    lines.append(f"check {'passed' if ok else 'FAILED'}: {len(found)} attachments")
    return CheckResult(ok, lines)
