"""PodBindings for on-demand ports (no runtime needed): a port announced by AttachPod is set up
as soon as its VPC's segment runs on the host, the controller's push confirms it, a Pod that
died without a DEL leaves its binding orphaned (nothing realised) for the DEL to finish, and all
of it survives an agent restart."""

from __future__ import annotations

import json
from pathlib import Path

from l2vpc.agent.pods import Binding, PodBindings, port_from_dict
from l2vpc.hostconfig import HostConfig, Port, Route, Segment

SEGMENT = Segment(vni=4100, vpc_id="vpc-1", mtu=1500, vpc_name="blue")
PORT = Port(id="att-0001", vni=4100, workload="default-web", interface_name="net1", mac="02:4c:32:00:00:01",
            mtu=1500, workload_kind="pod", ip_mode="static", ip_address="10.1.0.5/24",
            routes=(Route("192.168.50.0/24", "10.1.0.254"),))


def config(*, segments: tuple[Segment, ...] = (), ports: tuple[Port, ...] = ()) -> HostConfig:
    return HostConfig("h1", "10.255.0.1", generation=1, segments=segments, ports=ports)


def test_a_provisional_port_is_set_up_with_its_segment_then_confirmed(tmp_path: Path) -> None:
    sandbox = tmp_path / "netns-web"
    sandbox.touch()
    pods = PodBindings(tmp_path)
    pods.bind(Binding(PORT.id, str(sandbox), "c1", "net1", "l2vpc-blue", on_demand=True, provisional=PORT))
    assert pods.apply(config()).ports == ()  # no segment for it here yet: nothing to set up
    early = pods.apply(config(segments=(SEGMENT,))).ports
    assert early == (PORT,) and early[0].sandbox == str(sandbox)
    # The binding (with its port) is kept across a restart.
    again = PodBindings(tmp_path)
    kept = again.of_port(PORT.id)
    assert kept is not None and kept.provisional == PORT and kept.provisional.routes == PORT.routes
    # The push brings the port: its copy wins and the provisional one is dropped, for good.
    pushed = config(segments=(SEGMENT,), ports=(PORT,))
    assert again.apply(pushed).ports == (PORT,)
    assert again.of_port(PORT.id).provisional is None  # type: ignore[union-attr]
    saved = json.loads((tmp_path / "pods.json").read_text())["bindings"][0]
    assert saved["provisional"] is None and saved["on_demand"] is True
    assert again.apply(config(segments=(SEGMENT,))).ports == ()  # removed by a later push: gone


def test_a_pod_gone_without_del_orphans_its_on_demand_port(tmp_path: Path) -> None:
    sandbox = tmp_path / "netns-web"
    sandbox.touch()
    pods = PodBindings(tmp_path)
    pods.bind(Binding(PORT.id, str(sandbox), "c1", "net1", "l2vpc-blue", on_demand=True, provisional=PORT))
    declared = Port(id="att-0002", vni=4100, workload="default-db", interface_name="net1", mac="02:4c:32:00:00:02",
                    mtu=1500, workload_kind="pod")
    pods.bind(Binding(declared.id, str(sandbox), "c2", "net1", "l2vpc-blue"))
    sandbox.unlink()  # the runtime lost the Pod without a DEL
    assert pods.apply(config(segments=(SEGMENT,), ports=(declared,))).ports == ()
    # The declared one is simply unbound; the on-demand one stays for its DEL (or GC) to delete.
    assert pods.of_port(declared.id) is None
    assert pods.of_port(PORT.id) is None and pods.of_port(PORT.id, orphans=True) is not None
    found = pods.find("l2vpc-blue", "c1", "net1")
    assert found is not None and found.orphaned and found.on_demand


def test_port_from_dict_reads_what_asdict_wrote() -> None:
    import dataclasses

    assert port_from_dict(json.loads(json.dumps(dataclasses.asdict(PORT)))) == PORT
