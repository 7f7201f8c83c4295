"""`l2vpc graph`: the topology as a picture (Graphviz): hosts with their workloads, VPCs, direct
connects and VPNs, each coloured by its status.

    l2vpc graph [--state PATH] [--vpc NAME] [--format svg|dot] [-o FILE]

`to_dot(snapshot)` is pure (a snapshot in, DOT text out); the command takes the snapshot from
the state every other command uses and runs `dot -Tsvg` for SVG. Colours: green for active /
up / established, orange for pending / provisioning / connecting, red for down, grey for a host
that is down. Secrets never appear (only names, addresses and states are drawn).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

GREEN, ORANGE, RED, GREY = "#2e7d32", "#ef6c00", "#c62828", "#9e9e9e"
_STATUS = {"active": GREEN, "up": GREEN, "established": GREEN, "pending": ORANGE, "provisioning": ORANGE,
           "connecting": ORANGE, "down": RED}


@dataclass
class Snapshot:
    """What the picture shows, as plain records (model_dump of the engine's objects)."""

    hosts: list[dict[str, Any]] = field(default_factory=list)
    vpcs: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    direct_connects: list[dict[str, Any]] = field(default_factory=list)
    vpns: list[dict[str, Any]] = field(default_factory=list)

    def only_vpc(self, name: str) -> Snapshot:
        """The VPC named `name` and what touches it (its members, their hosts, its services)."""
        vpc = next((v for v in self.vpcs if name in (v["name"], v["id"])), None)
        if vpc is None:
            raise ValueError(f"--vpc: no VPC named {name!r} (VPCs: {', '.join(sorted(v['name'] for v in self.vpcs))})")
        atts = [a for a in self.attachments if a["vpc_id"] == vpc["id"]]
        dxs = [d for d in self.direct_connects if d["vpc_id"] == vpc["id"]]
        vpns = [v for v in self.vpns if v["vpc_id"] == vpc["id"]]
        hosts = {a.get("host") for a in atts} | {d.get("edge_host") for d in dxs} | {v.get("vpn_host") for v in vpns}
        hosts.add(vpc.get("dhcp_host"))
        return Snapshot([h for h in self.hosts if h["name"] in hosts], [vpc], atts, dxs, vpns)


def _esc(text: object) -> str:
    return str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def _q(text: object) -> str:
    return f'"{_esc(text)}"'


def _label(*lines: object) -> str:
    """A label of several lines (DOT's `\\n` escape between them)."""
    return '"' + "\\n".join(_esc(x) for x in lines if x not in (None, "")) + '"'



def _attrs(**kw: object) -> str:
    return "[" + ", ".join(f"{k}={v}" for k, v in kw.items()) + "]"


def to_dot(snap: Snapshot) -> str:
    out = ["digraph l2vpc {", "  graph [rankdir=LR, fontname=Helvetica, fontsize=10, compound=true];",
           "  node [fontname=Helvetica, fontsize=10];", "  edge [fontname=Helvetica, fontsize=9, dir=none];"]
    by_host: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for a in snap.attachments:
        by_host[a.get("host") or "(unplaced)"][a["workload"]].append(a)
    hosts = {h["name"]: h for h in snap.hosts}
    for name in sorted(set(hosts) | set(by_host)):
        h = hosts.get(name, {})
        down = h.get("status") == "down"
        out.append(f"  subgraph {_q('cluster_' + name)} {{")
        out.append(f"    label={_label(name, ' '.join(x for x in (h.get('role'), h.get('region'), h.get('location')) if x))};")
        out.append(f"    style=rounded; color={_q(GREY if down else '#455a64')};")
        out.append(f"    {_q('host:' + name)} {_attrs(shape='point', style='invis')};")
        for workload, atts in sorted(by_host.get(name, {}).items()):
            kind = atts[0].get("workload_kind", "virtual_server")
            shape = "component" if kind == "pod" else "box3d"
            out.append(f"    {_q('w:' + workload)} {_attrs(label=_label(workload, 'pod' if kind == 'pod' else 'virtual server'), shape=shape)};")
        out.append("  }")
    for v in snap.vpcs:
        detail = f"vni {v.get('vni')}  mtu {v.get('mtu')}"
        out.append(f"  {_q('vpc:' + v['id'])} {_attrs(label=_label(v['name'], v.get('cidr'), detail), shape='ellipse', style='filled', fillcolor=_q('#e3f2fd'))};")
        if v.get("dhcp_host"):
            out.append(f"  {_q('vpc:' + v['id'])} -> {_q('host:' + v['dhcp_host'])} "
                       f"{_attrs(style='dashed', label=_q('dhcp'), lhead=_q('cluster_' + v['dhcp_host']), color=_q(GREY))};")
    for a in snap.attachments:
        addr = a.get("ip_address") or a.get("ip_mode")
        color = _STATUS.get(a.get("status", ""), GREY)
        out.append(f"  {_q('w:' + a['workload'])} -> {_q('vpc:' + a['vpc_id'])} "
                   f"{_attrs(label=_label(a.get('interface_name'), addr), color=_q(color), fontcolor=_q(color))};")
    for d in snap.direct_connects:
        color = _STATUS.get(d.get("status", ""), GREY)
        bgp = d.get("bgp") or {}
        out.append(f"  {_q('dx:' + d['id'])} {_attrs(label=_label(d['name'], 'direct connect ' + str(d.get('mode')), d.get('location'), str(d.get('bandwidth_mbps')) + ' Mbps', 'AS ' + str(bgp['customer_asn']) if bgp.get('customer_asn') else None, d.get('status')), shape='cds', color=_q(color), fontcolor=_q(color))};")
        out.append(f"  {_q('dx:' + d['id'])} -> {_q('vpc:' + d['vpc_id'])} {_attrs(label=_q(d.get('gateway_ip') or ''), color=_q(color))};")
        if d.get("edge_host"):
            out.append(f"  {_q('dx:' + d['id'])} -> {_q('host:' + d['edge_host'])} "
                       f"{_attrs(style='dotted', lhead=_q('cluster_' + d['edge_host']), color=_q(GREY))};")
    for v in snap.vpns:
        color = _STATUS.get(v.get("status", ""), GREY)
        out.append(f"  {_q('vpn:' + v['id'])} {_attrs(label=_label(v['name'], 'vpn to ' + str(v.get('peer_address')), v.get('public_ip'), v.get('status')), shape='hexagon', color=_q(color), fontcolor=_q(color))};")
        out.append(f"  {_q('vpn:' + v['id'])} -> {_q('vpc:' + v['vpc_id'])} {_attrs(label=_q(v.get('gateway_ip') or ''), color=_q(color))};")
        if v.get("vpn_host"):
            out.append(f"  {_q('vpn:' + v['id'])} -> {_q('host:' + v['vpn_host'])} "
                       f"{_attrs(style='dotted', lhead=_q('cluster_' + v['vpn_host']), color=_q(GREY))};")
    out.append("}")
    return "\n".join(out) + "\n"


def render_svg(dot: str) -> str:
    exe = shutil.which("dot")
    if exe is None:
        raise RuntimeError("Graphviz is not installed (`dot` not found): install the Debian package graphviz, or "
                           "use --format dot")
    run = subprocess.run([exe, "-Tsvg"], input=dot, capture_output=True, text=True, timeout=60)
    if run.returncode != 0:
        raise RuntimeError(f"dot failed: {run.stderr.strip()[-300:]}")
    return run.stdout


def snapshot_of(engine: Any) -> Snapshot:
    def dump(objects: Iterable[Any], secrets: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        out = []
        for o in objects:
            d = o.model_dump(mode="json")
            for s in secrets:
                d.pop(s, None)
            if isinstance(d.get("bgp"), dict):
                d["bgp"].pop("md5_key", None)
            out.append(d)
        return out

    return Snapshot(dump(engine.hosts()), dump(engine.list("vpc")), dump(engine.list("attachment")),
                    dump(engine.list("direct_connect"), ("service_key",)), dump(engine.list("vpn"), ("pre_shared_key",)))


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("graph", help="draw the topology (SVG by default): hosts, workloads, VPCs, direct connects, VPNs")
    p.add_argument("--state", default=None, help="the state file (default: $L2VPC_STATE_PATH, else state.db in $L2VPC_HOME: /var/lib/l2vpc as root, ~/.local/state/l2vpc otherwise)")
    p.add_argument("--vpc", default=None, help="only this VPC (name or id) and what touches it")
    p.add_argument("--format", choices=("svg", "dot"), default="svg")
    p.add_argument("-o", "--output", default=None, help="write here instead of stdout")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from l2vpc.cli import CliError
    from l2vpc.embedded import default_state_path, open_engine
    from l2vpc.embedded.cli import local_controllers

    state = args.state or default_state_path()
    remote = local_controllers(state)  # the controllers a lab runs for this state, if any
    if remote is not None:
        try:
            remote.refresh()
            snap = snapshot_of(remote)
        finally:
            remote.close()
    else:
        engine = open_engine(state)
        try:
            engine.refresh()  # statuses as the hosts report them now
            snap = snapshot_of(engine)
        finally:
            engine.agents.close()  # type: ignore[attr-defined]
            engine.store.close()
    try:
        if args.vpc:
            snap = snap.only_vpc(args.vpc)
        text = to_dot(snap) if args.format == "dot" else render_svg(to_dot(snap))
    except (ValueError, RuntimeError) as e:
        raise CliError(str(e)) from None
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0
