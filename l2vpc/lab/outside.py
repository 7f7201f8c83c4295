"""The world outside a lab's hosts: cross-connects and the internet for its edges, the customer's
premises site (premises.py, premises_vpn.py), and keeping the premises router in step with the
direct connects the edge agents run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc

from l2vpc._proto import agent_pb2 as pb
from l2vpc.agentapi import wire
from l2vpc.agentapi.channel import host_metadata, open_channel, stub
from l2vpc.engine.agent_client import engine_tls
from l2vpc.lab import premises, premises_vpn
from l2vpc.lab.premises import Premises, PremisesConfig
from l2vpc.lab.state import LabState
from l2vpc.lab.topology import HANDOFF, LabTopology

SITE_DIR = "premises"
VPN_DIR = "premises-vpn"


def site(st: LabState, lab_dir: Path) -> Premises:
    """The premises site a lab recorded."""
    assert st.premises is not None
    cfg = PremisesConfig(str(st.premises["lan"]), int(st.premises["asn"]))
    return Premises(st.prefix, lab_dir / SITE_DIR, cfg)


def build(st: LabState, topo: LabTopology, config: PremisesConfig | None, psk: str | None, lab_dir: Path,
          record: Callable[[str], None], progress: Callable[[str], None]) -> None:
    """Cross-connects and the internet for the edges; the premises site if asked for (with a VPN
    gateway when `psk` is given: a bad setting raises ValueError naming it)."""
    edges = [h for h in topo.hosts if h.role == "edge"]
    the_site: Premises | None = None
    if config is not None:
        st.premises = {"lan": config.lan, "asn": config.asn, "vpn": psk is not None}
        st.save()
        the_site = Premises(st.prefix, lab_dir / SITE_DIR, config)
        the_site.build(record)
    for h in edges:
        premises.cross_connect(f"{st.prefix}xc{h.edge_index}", h.edge_index, f"{st.prefix}{h.name}", the_site,
                               record)
    if the_site is not None and the_site.config.peering and any(h.edge_index == 1 for h in edges):
        the_site.set_peering(1, [the_site.config.peering])
    if edges or the_site is not None:
        premises.internet(f"{st.prefix}inet", [(h.edge_index, f"{st.prefix}{h.name}") for h in edges], the_site,
                          record)
    if the_site is not None:
        if psk is not None:
            try:
                premises_vpn.setup(the_site.netns(premises.ROUTER), f"{premises.PREMISES_PUBLIC_IP}/24",
                                   the_site.config.lan, psk=psk, state_dir=lab_dir / VPN_DIR)
            except ValueError as e:
                raise ValueError(f"premises VPN gateway: {e}") from None
        vpn = f", VPN gateway {premises.PREMISES_PUBLIC_IP}" if psk is not None else ""
        progress(f"premises: {the_site.netns(premises.ROUTER)} (AS {the_site.config.asn}, "
                 f"LAN {the_site.config.lan}{vpn}), {the_site.netns(premises.HOST)}, {the_site.netns(premises.L2)}")
    if edges:
        progress(f"{len(edges)} edges with hand-off {HANDOFF} (cross-connect) and out0 on 203.0.113.0/24")


def teardown(st: LabState, lab_dir: Path) -> None:
    """Stop the premises site's daemons and remove its files (the namespaces are the lab's)."""
    premises_vpn.teardown(lab_dir / VPN_DIR)
    site(st, lab_dir).teardown()


def sync_peering(st: LabState, the_site: Premises, pki_dir: Path) -> list[str]:
    """Configure the premises router for the layer-3 direct connects the edges run: the customer
    address of each on that edge's cross-connect (BGP accepts any peer in 169.254.0.0/16
    already). Reads what the edge agents were told to run; returns a line per edge."""
    lines = []
    for rec in st.hosts:
        if rec.role != "edge":
            continue
        index = int(rec.name[4:])
        try:
            with open_channel(rec.address, rec.name, engine_tls(pki_dir)) as channel:
                state = stub(channel).GetState(pb.GetStateRequest(), timeout=10, metadata=host_metadata(rec.name))
        except grpc.RpcError as e:
            lines.append(f"{rec.name}: agent unavailable ({e.code().name.lower() if isinstance(e, grpc.Call) else e})")
            continue
        desired = wire.config_from_pb(state.desired) if state.HasField("desired") else None
        addresses = sorted({
            f"{e.bgp.peer_ip}/{e.bgp.local_ip.split('/')[1]}"
            for e in (desired.edge_routers if desired else ()) if e.bgp is not None and e.handoff == HANDOFF
        })
        changes = the_site.set_peering(index, addresses)
        what = ", ".join(addresses) or "none"
        lines.append(f"{rec.name}: xc{index} peering {what}" + (f" ({' '.join(changes)})" if changes else ""))
    return lines
