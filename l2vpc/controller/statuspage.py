"""The controller's read-only status page (`/status` on the metrics listener): plain HTML and
CSS, no script, so any browser (or `curl`) shows it.

Sections: the control plane (leader, term, revisions), hosts, VPCs, services and their
placement (DHCP servers, direct connects, VPNs), overlay health, recent events. Everything is
read when the page is asked for: one store transaction for the plane's records, one for the
topology. Nothing secret is shown (the page names fields one by one; keys never reach it).

Who may see it (`guard`): clients on loopback, and others presenting an admin token of this
controller (`Authorization: Bearer l2vpc_...`), as `l2vpc controller status` does.

Overlay health: the failing host pairs the agents report (engine/overlay.py), read with the
plane's status (`PlaneStatus.overlay`): per VPC the host, its peer, the measured path MTU and the
MTU the VPC needs on the underlay; a VPC with such a pair is `degraded` in its table too.
`StatusPage.overlay`, when set, is a callable returning `PairHealth` rows used instead.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from l2vpc.controller.auth import Authenticator, AuthError, format_time
from l2vpc.controller.contract import OverlayPair, PlaneStatus
from l2vpc.engine.topology import Topology
from l2vpc.observability.listener import Request, Response

HTML = "text/html; charset=utf-8"
MAX_EVENTS = 50


@dataclass(frozen=True)
class PairHealth:
    """One probed overlay path: between two hosts sharing VPC `vpc` (id)."""

    vpc: str
    host_a: str
    host_b: str
    state: str  # healthy | degraded (path MTU) | unreachable | unknown
    path_mtu: int | None = None  # measured, bytes
    detail: str = ""
    needed_mtu: int | None = None  # what the VPC's frames need on the underlay (its MTU + 50)


def pair_health(pair: OverlayPair) -> PairHealth:
    """A failing pair as the agents report it, as a row of the page."""
    return PairHealth(pair.vpc_id, pair.host, pair.peer_host or pair.peer_ip,
                      "degraded" if pair.reason == "path_mtu" else "unreachable",
                      pair.path_mtu or None, pair.detail, pair.needed_mtu or None)


OverlayHealth = Callable[[], Sequence[PairHealth]]


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _status(value: str) -> str:
    """A status word in a span whose class colours it."""
    good = {"up", "available", "active", "established", "healthy", "ok", "converged"}
    bad = {"down", "failed", "degraded", "unreachable", "error"}
    kind = "good" if value in good else "bad" if value in bad else "warn"
    return f'<span class="st {kind}">{_e(value)}</span>'


def _table(ident: str, headers: Sequence[str], rows: Sequence[str], empty: str) -> str:
    if not rows:
        return f'<p class="empty" id="{ident}-empty">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return f'<table id="{ident}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .3em} h2{font-size:1.1em;margin:1.6em 0 .4em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;background:#fff;min-width:40%} th,td{padding:.25em .7em;border:1px solid #ddd;
text-align:left;vertical-align:top} th{background:#eee} .st{font-weight:600;padding:0 .3em;border-radius:3px}
.good{color:#155724;background:#d4edda} .bad{color:#721c24;background:#f8d7da} .warn{color:#856404;background:#fff3cd}
.summary td:first-child{font-weight:600} .empty{color:#666;font-style:italic} code{font-size:.95em}
"""


def render(status: PlaneStatus, topo: Topology, overlay: Sequence[PairHealth] | None, now: float) -> str:
    """The page for what was read (pure: tested without a controller)."""
    up = sum(1 for h in status.hosts if h.status == "up")
    seen = {h.name: h for h in status.hosts}
    summary = "".join(f"<tr><td>{_e(k)}</td><td>{v}</td></tr>" for k, v in (
        ("controller", _e(status.controller)),
        ("leader", _e(status.leader or "(none)") + f' <span id="term">term {status.term}</span>'),
        ("revisions", f'desired <span id="desired">{status.desired_revision}</span>, converged '
                      f'<span id="converged">{status.converged_revision}</span>'),
        ("hosts", f'<span id="hosts-up">{up}</span> up, <span id="hosts-down">{len(status.hosts) - up}</span> down'),
        ("VPCs", f'<span id="vpc-count">{len(topo.vpcs)}</span>'),
    ))

    host_rows = []
    for name in sorted(set(topo.hosts) | set(seen)):
        h = topo.hosts.get(name)
        live = seen.get(name)
        state = live.status if live else (h.status if h else "unknown")
        last = f"{max(0.0, now - live.last_seen_unix):.0f} s ago" if live and live.last_seen_unix else "never"
        host_rows.append(
            f'<tr data-host="{_e(name)}" data-status="{_e(state)}"><td>{_e(name)}</td>'
            f"<td>{_e(h.region if h else '')}</td><td>{_e(h.role if h else '')}</td>"
            f"<td>{_e(h.location if h else '') or ''}</td><td>{_e(h.underlay_ip if h else '')}</td>"
            f"<td>{_status(state)}</td><td>{_e(last)}</td></tr>")

    carried: dict[str, set[str]] = {}
    ports: dict[str, int] = {}
    for a in topo.attachments.values():
        ports[a.vpc_id] = ports.get(a.vpc_id, 0) + 1
        if a.host:
            carried.setdefault(a.vpc_id, set()).add(a.host)
    failing = {p.vpc for p in overlay or () if p.state not in ("healthy", "unknown")}
    vpc_rows = []
    for v in sorted(topo.vpcs.values(), key=lambda v: (v.name, v.id)):
        if v.id in failing and v.status != "degraded":  # the stored status does not know the overlay
            v = v.model_copy(update={"status": "degraded"})
        where = v.region if v.scope == "single_region" else "multi-region"
        hosts = sorted(carried.get(v.id, ()))
        shown = ", ".join(hosts[:8]) + (f" and {len(hosts) - 8} more" if len(hosts) > 8 else "")
        vpc_rows.append(
            f'<tr data-vpc="{_e(v.name)}" data-status="{_e(v.status)}"><td>{_e(v.name)}</td><td><code>{_e(v.id)}</code>'
            f"</td><td>{_e(v.vni)}</td><td>{_e(where)}</td><td>{_e(v.cidr or '')}</td><td>{v.mtu}</td>"
            f"<td>{ports.get(v.id, 0)}</td><td>{_e(shown)}</td><td>{_status(v.status)}</td></tr>")

    names = {v.id: v.name for v in topo.vpcs.values()}
    service_rows = []
    for v in sorted(topo.vpcs.values(), key=lambda v: v.name):
        if v.dhcp is not None:
            service_rows.append(_service("DHCP server", v.name, v.name, v.dhcp_host, "serving" if v.dhcp_host else
                                         "not placed"))
    for d in sorted(topo.direct_connects.values(), key=lambda d: d.name):
        service_rows.append(_service(f"direct connect ({d.mode}, {d.location})", d.name, names.get(d.vpc_id, d.vpc_id),
                                     d.edge_host, d.status))
    for n in sorted(topo.vpns.values(), key=lambda n: n.name):
        service_rows.append(_service(f"VPN to {n.peer_address}", n.name, names.get(n.vpc_id, n.vpc_id), n.vpn_host,
                                     n.status))

    if overlay is None:
        overlay_html = ('<p class="empty" id="overlay-empty">No overlay probe results: agents do not report '
                        "overlay health yet.</p>")
    else:
        rows = [f'<tr data-pair="{_e(p.host_a)}|{_e(p.host_b)}" data-status="{_e(p.state)}" '
                f'data-overlay-vpc="{_e(names.get(p.vpc, p.vpc))}"><td>'
                f"{_e(names.get(p.vpc, p.vpc))}</td><td>{_e(p.host_a)}</td><td>{_e(p.host_b)}</td>"
                f"<td>{_status(p.state)}</td><td>{_e(p.path_mtu if p.path_mtu is not None else '')}</td>"
                f"<td>{_e(p.needed_mtu if p.needed_mtu is not None else '')}</td>"
                f"<td>{_e(p.detail)}</td></tr>" for p in overlay]
        overlay_html = _table("overlay", ("VPC", "host", "peer", "state", "path MTU", "needed MTU", "detail"), rows,
                              "Every probed pair is healthy; no pairs to show.")
    degraded = [v.name for v in topo.vpcs.values() if v.status == "degraded" or v.id in failing]
    if degraded:
        overlay_html += f'<p id="overlay-degraded">Degraded VPCs: {_e(", ".join(sorted(degraded)))}</p>'

    events = [f'<tr><td>{_e(format_time(ev.time_unix))}</td><td>{_e(ev.host)}</td><td>{_e(ev.what)}</td></tr>'
              for ev in reversed(status.recent[-MAX_EVENTS:])]

    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>l2vpc controller {_e(status.controller)}</title><style>{_CSS}</style></head><body>"
        f"<h1>l2vpc controller <code>{_e(status.controller)}</code></h1>"
        f'<p class="empty">read {_e(format_time(now))}; read-only; reload to refresh</p>'
        f'<table class="summary" id="summary"><tbody>{summary}</tbody></table>'
        f'<h2 id="hosts-title">Hosts</h2>'
        + _table("hosts", ("host", "region", "role", "location", "underlay", "status", "last heartbeat"), host_rows,
                 "No hosts registered.")
        + '<h2 id="vpcs-title">VPCs</h2>'
        + _table("vpcs", ("name", "id", "VNI", "region", "CIDR", "MTU", "attachments", "hosts", "status"), vpc_rows,
                 "No VPCs.")
        + '<h2 id="services-title">Services and placement</h2>'
        + _table("services", ("service", "name", "VPC", "host", "status"), service_rows,
                 "No DHCP servers, direct connects or VPNs.")
        + f'<h2 id="overlay-title">Overlay health</h2>{overlay_html}'
        + '<h2 id="events-title">Recent events</h2>'
        + _table("events", ("time", "host", "what"), events, "No events recorded.")
        + "</body></html>\n"
    )


def _service(what: str, name: str, vpc: str, host: str | None, status: str) -> str:
    return (f'<tr data-service="{_e(name)}"><td>{_e(what)}</td><td>{_e(name)}</td><td>{_e(vpc)}</td>'
            f"<td>{_e(host or '(not placed)')}</td><td>{_status(status)}</td></tr>")


class StatusPage:
    """The `/status` route: guard, read, render."""

    def __init__(self, read_status: Callable[[], PlaneStatus], read_topology: Callable[[], Topology],
                 auth: Authenticator) -> None:
        self.read_status = read_status
        self.read_topology = read_topology
        self.auth = auth
        self.overlay: OverlayHealth | None = None

    def guard(self, request: Request) -> Response | None:
        """None when the client may see the page, else the refusal."""
        if request.from_loopback:
            return None
        token = request.bearer()
        if not token:
            return Response(401, b"the status page needs an admin token from other hosts than this one: "
                                 b"send 'Authorization: Bearer <token>'\n", headers={"WWW-Authenticate": "Bearer"})
        try:
            principal = self.auth.verify(token)
        except AuthError as e:
            return Response(401, f"{e}\n".encode(), headers={"WWW-Authenticate": "Bearer"})
        if principal.role != "admin":
            return Response(403, f"the status page needs an admin token; token {principal.token_id} has role "
                                 f"{principal.role}\n".encode())
        return None

    def __call__(self, request: Request) -> Response:
        refused = self.guard(request)
        if refused is not None:
            return refused
        status = self.read_status()
        overlay = self.overlay() if self.overlay is not None else [pair_health(p) for p in status.overlay]
        page = render(status, self.read_topology(), overlay, time.time())
        return Response(200, page.encode(), HTML)
