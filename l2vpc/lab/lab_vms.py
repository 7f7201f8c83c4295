"""`l2vpc lab vm up|down|exec|list`: a lab workload as a real VM (QEMU) on taps (see vm.py).

`up WORKLOAD` asks the agent of the workload's host to realise it as taps from now on (its
namespace goes, a tap per attachment comes, named l2t<id tail>, on the VPC's bridge), then
boots a VM in that host's namespace with one NIC per tap, in interface order (net1, net2, ...),
each with the attachment's MAC and the VPC's MTU. The guest names its NICs by those MACs and
asks the VPCs' DHCP servers for its addresses. `down` stops the VM and gives the workload its
namespace back.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from l2vpc._proto import agent_pb2 as pb
from l2vpc.agentapi import wire
from l2vpc.agentapi.channel import host_metadata, open_channel, stub
from l2vpc.embedded import open_engine
from l2vpc.engine.agent_client import engine_tls
from l2vpc.engine.model import Attachment
from l2vpc.hostconfig import HostConfig
from l2vpc.hostconfig.names import tap_device_name
from l2vpc.lab import inspection, vm
from l2vpc.lab.state import HostRecord, LabState
from l2vpc.lab.vm import Nic, VmError, VmRecord


def records(st: LabState) -> list[VmRecord]:
    return [VmRecord(**v) for v in st.vms]


def find(st: LabState, workload: str) -> VmRecord:
    rec = next((v for v in records(st) if v.workload == workload), None)
    if rec is None:
        raise VmError(f"no lab VM runs workload {workload!r} (lab VMs: "
                      f"{', '.join(v.workload for v in records(st)) or 'none'})")
    return rec


def _save(st: LabState, rec: VmRecord | None, drop: str | None = None) -> None:
    kept = [v for v in st.vms if v["workload"] not in {drop, rec.workload if rec else None}]
    st.vms = [*kept, dataclasses.asdict(rec)] if rec is not None else kept
    st.save()


def attachments(st: LabState, workload: str) -> list[tuple[Attachment, int]]:
    """The workload's attachments in interface order (net1, net2, ...), as placed, each with its
    VPC's MTU: as the lab's controllers hold them, else as its state does."""
    remote = inspection.remote_engine(st)
    engine = remote if remote is not None else open_engine(st.state_path)
    try:
        mtus = {v.id: v.mtu for v in engine.list("vpc")}
        atts = [(a, mtus.get(a.vpc_id, 1500)) for a in engine.list("attachment") if a.workload == workload]
    finally:
        if remote is not None:
            remote.close()
        else:
            engine.agents.close()  # type: ignore[union-attr]
            engine.store.close()
    return sorted(atts, key=lambda pair: int((pair[0].interface_name or "net0")[3:]))


def realize(host: HostRecord, pki_dir: Path, workload: str, mode: str) -> HostConfig:
    """Ask the host's agent to realise `workload` as `mode`; what the host runs afterwards."""
    with open_channel(host.address, host.name, engine_tls(pki_dir)) as channel:
        reply: pb.RealizeResponse = stub(channel).Realize(pb.RealizeRequest(workload=workload, mode=mode),
                                                          timeout=60, metadata=host_metadata(host.name))
    if reply.failures:
        raise VmError(f"the agent of {host.name} could not realise {workload} as {mode}: "
                      + "; ".join(f"{f.path}: {f.reason}" for f in reply.failures))
    return wire.config_from_pb(reply.actual)


def up(st: LabState, lab_dir: Path, pki_dir: Path, workload: str) -> VmRecord:
    if st.driver != "linux":
        raise VmError("VMs need the lab's linux driver (run the lab as root)")
    if any(v["workload"] == workload for v in st.vms):
        raise VmError(f"a lab VM already runs workload {workload!r}")
    pairs = attachments(st, workload)
    atts = [a for a, _mtu in pairs]
    if not atts:
        raise VmError(f"workload {workload!r} has no attachments: attach it first")
    if any(a.workload_kind != "virtual_server" for a in atts):
        raise VmError(f"workload {workload!r} is a Pod's (workload_kind pod): Pods run with `lab pod run`")
    hosts = {a.host for a in atts}
    host = st.host(next(iter(hosts)) or "")
    if host is None or host.netns is None or len(hosts) != 1:
        raise VmError(f"workload {workload!r} is not placed on one lab host ({', '.join(map(str, hosts))})")
    actual = realize(host, pki_dir, workload, "tap")
    taps = {p.id for p in actual.ports if p.tap}
    missing = [a.id for a in atts if a.id not in taps]
    if missing:
        raise VmError(f"the agent of {host.name} made no tap for {', '.join(missing)}")
    rec = VmRecord(workload=workload, host=host.name, host_netns=host.netns, dir=str(lab_dir / "vms" / workload),
                   nics=[dataclasses.asdict(Nic(tap_device_name(a.id), str(a.mac_address), mtu)) for a, mtu in pairs])
    _save(st, rec)  # recorded before it runs: `lab down` stops what a crash leaves
    try:
        vm.boot(rec)
    except BaseException:
        _save(st, None, drop=workload)
        realize(host, pki_dir, workload, "netns")
        raise
    _save(st, rec)
    return rec


def down(st: LabState, pki_dir: Path, workload: str) -> None:
    rec = find(st, workload)
    vm.stop(rec)
    _save(st, None, drop=workload)
    host = st.host(rec.host)
    if host is not None:
        realize(host, pki_dir, workload, "netns")


def remove_all(st: LabState) -> list[str]:
    """Every VM stopped (lab down: the agents and their devices go right after)."""
    warnings = []
    for rec in records(st):
        try:
            vm.stop(rec)
        except Exception as e:  # the rest of `down` must still happen
            warnings.append(f"vm {rec.workload}: {e}")
    st.vms = []
    st.save()
    return warnings
