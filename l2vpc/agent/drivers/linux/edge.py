"""Direct connects on an edge host: the EdgeRouters of a HostConfig, on Linux.

Every edge router has a short tag (8 hex digits of a hash of its id) that names what it owns
(the names are derived in l2vpc.hostconfig.names):

    host devices   l2eb<tag>  a bridge joining the hand-off device (e.g. xc0) and l2eh<tag>
                   l2eh<tag>  the hand-off side of a veth pair
                   l2ev<tag>  the VPC side: a veth on the VPC's bridge l2b<vni>
    layer3         namespace <prefix>l2e-<tag> (the router), holding the peers of both veths:
                   `dx0` (bgp.local_ip, the peering address) and `vpc0` (gateway_ip), IPv6 off,
                   IP forwarding on, strict reverse-path filtering and an nftables table that
                   forwards only between the two for the VPC's prefixes and lets in from dx0
                   only BGP with the peer (gateway_filter.py); FRR (zebra + bgpd, listening on
                   the peering address only) talking BGP to the customer (frr.py)
    layer2         l2eh<tag> and l2ev<tag> are the two ends of one veth pair: the VPC bridged
                   to the hand-off; with a `vlan`, a tc-BPF program on l2eh<tag> tags frames
                   towards the premises and accepts only that tag back (vlantag.py)
    state          <state>/edges/<tag>/edge.json: the EdgeRouter it runs, secrets included
                   (0600: the circuit key is the circuit's identity, the MD5 key FRR's)

Bandwidth: a token bucket (tc tbf) on the egress of both ends of the hand-off side's veth,
one per direction (layer3: l2eh<tag> towards the router, dx0 towards the premises; layer2:
l2eh<tag> towards the VPC, l2ev<tag> towards the premises), at `bandwidth_mbps` times the
driver's `bandwidth_scale`; a change replaces the rate in place and leaves BGP alone.

Observations: layer3 `established` (with the prefixes learned from the peer) or `down` with
the BGP state or what is broken; layer2 `up` or `down` from the hand-off's carrier.

Facts report an edge router only when all its parts are in place (else the planner creates it
again, which first removes the remains); a shaper or VLAN filter that differs shows as
bandwidth_mbps 0 or vlan 0, which the planner repairs with an in-place update.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from l2vpc.agent.drivers.base import Action, DataplaneError
from l2vpc.agent.drivers.linux import frr, gateway_filter, netlink, netns, nftables, rtnl, tc, vlantag
from l2vpc.agent.drivers.linux.marks import OWN_GROUP
from l2vpc.agent.drivers.linux.namespaces import Namespaces
from l2vpc.hostconfig import EdgeRouter, HostConfig, Observation
from l2vpc.hostconfig.diff import edge_path
from l2vpc.hostconfig.names import (
    EDGE_DEVICE_RE,
    ROUTER_HANDOFF_IF,
    ROUTER_VPC_IF,
    bridge_name,
    edge_tag,
    edge_vpc_veth,
    handoff_bridge,
    handoff_veth,
    router_netns,
)
from l2vpc.pki import write_private

IFF_LOWER_UP = 0x10000
RECORD = "edge.json"


def _mac(edge_id: str, role: str) -> str:
    # Stable across recreations, so neighbours' ARP caches stay right; locally administered.
    raw = hashlib.sha256(f"{role}:{edge_id}".encode()).digest()[:5]
    return "02:" + raw.hex(":")


def _spec(e: EdgeRouter, hostname: str) -> frr.BgpSpec:
    assert e.bgp is not None
    return frr.BgpSpec(
        hostname=hostname, local_asn=e.bgp.local_asn, peer_asn=e.bgp.peer_asn,
        router_id=e.bgp.local_ip.split("/")[0], peer_ip=e.bgp.peer_ip, advertised=e.bgp.advertised,
        md5_key=e.bgp.md5_key,
    )


def _listen(e: EdgeRouter) -> str:
    assert e.bgp is not None
    return e.bgp.local_ip.split("/")[0]


def _redact(text: str, e: EdgeRouter) -> str:
    """Daemon output may quote a config line; no secret leaves the driver."""
    for secret in (e.circuit_key, e.bgp.md5_key if e.bgp else None):
        if secret:
            text = text.replace(secret, "***")
    return text


@dataclass(frozen=True, slots=True)
class _Health:
    edge: EdgeRouter | None  # None: not in place (reason says why)
    observation: Observation


class EdgeManager:
    """The edge routers of one LinuxDriver (it lends its netlink socket and namespaces)."""

    def __init__(self, *, nl: rtnl.Rtnl, spaces: Namespaces, host_netns: str | None, prefix: str, state: Path,
                 bandwidth_scale: float, frr_run_base: Path = frr.RUN_BASE) -> None:
        self.nl = nl
        self.spaces = spaces
        self.host_netns = host_netns
        self.prefix = prefix
        self.dir = state / "edges"
        self.bpf_cache = state / "bpf"
        self.scale = bandwidth_scale
        self.frr_run_base = frr_run_base
        self.dir.mkdir(mode=0o700, exist_ok=True)

    # -- names -----------------------------------------------------------------------------

    def router_netns(self, tag: str) -> str:
        return router_netns(self.prefix, tag)

    def _router(self, tag: str) -> frr.Router:
        ns = self.router_netns(tag)
        return frr.Router(ns, self.dir / tag, netns.path(ns), self.frr_run_base)

    def rate_bits(self, bandwidth_mbps: int) -> int:
        return max(1000, round(bandwidth_mbps * 1_000_000 * self.scale))

    def namespaces(self, desired: HostConfig) -> set[str]:
        """Router namespaces `desired` needs (the driver's garbage collection keeps them)."""
        return {self.router_netns(edge_tag(e.id)) for e in desired.edge_routers if e.mode == "layer3"}

    # -- records ---------------------------------------------------------------------------

    def _load(self, tag: str) -> EdgeRouter | None:
        try:
            data = json.loads((self.dir / tag / RECORD).read_text())
            return HostConfig.from_dict({"host": "", "underlay_ip": "", "edge_routers": [data]}).edge_routers[0]
        except (OSError, ValueError, IndexError):
            return None

    def _save(self, e: EdgeRouter) -> None:
        data = HostConfig(host="", underlay_ip="", edge_routers=(e,)).to_dict(secrets=True)["edge_routers"][0]
        write_private(self.dir / edge_tag(e.id) / RECORD, json.dumps(data, sort_keys=True).encode())

    def tags(self) -> list[str]:
        return sorted(p.name for p in self.dir.iterdir() if p.is_dir())

    # -- facts -----------------------------------------------------------------------------

    def facts(self, links: dict[str, rtnl.Link]) -> tuple[list[EdgeRouter], list[Observation]]:
        """The edge routers in place, and an observation for every edge router recorded."""
        edges: list[EdgeRouter] = []
        observations: list[Observation] = []
        host_rates: dict[str, int] | None = None
        for tag in self.tags():
            e = self._load(tag)
            if e is None or edge_tag(e.id) != tag:
                continue  # a remnant of an interrupted create: garbage collection removes it
            if host_rates is None:
                host_rates = self._rates(self.host_netns)
            health = self._health(tag, e, links, host_rates)
            observations.append(health.observation)
            if health.edge is not None:
                edges.append(health.edge)
        return edges, observations

    def sessions(self) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
        """(edge id, FRR's session state, learned prefixes) of each layer-3 router: vty calls
        only, cheap enough to poll (agent/session_watch.py)."""
        out = []
        for tag in self.tags():
            e = self._load(tag)
            if e is not None and e.bgp is not None and edge_tag(e.id) == tag:
                session = self._router(tag).session(e.bgp.peer_ip)
                out.append((e.id, session.state, session.learned))
        return tuple(out)

    def _rates(self, ns: str | None) -> dict[str, int]:
        try:
            return tc.shaped(ns)
        except (tc.TcError, ValueError):
            return {}

    def _health(self, tag: str, e: EdgeRouter, links: dict[str, rtnl.Link], host_rates: dict[str, int]) -> _Health:
        def broken(reason: str) -> _Health:
            return _Health(None, Observation(e.id, "down", f"not in place: {reason}", reason="not_in_place"))

        hb, ho = links.get(handoff_bridge(tag)), links.get(e.handoff)
        eh, ev, vb = links.get(handoff_veth(tag)), links.get(edge_vpc_veth(tag)), links.get(bridge_name(e.vni))
        if ho is None:
            return broken(f"hand-off device {e.handoff} is missing")
        if hb is None or not hb.up or ho.master != hb.index:
            return broken(f"hand-off {e.handoff} is not on bridge {handoff_bridge(tag)}")
        if eh is None or not eh.up or eh.master != hb.index:
            return broken(f"{handoff_veth(tag)} is not on bridge {handoff_bridge(tag)}")
        if vb is None or ev is None or not ev.up or ev.master != vb.index:
            return broken(f"{edge_vpc_veth(tag)} is not on the VPC bridge {bridge_name(e.vni)}")
        if ev.mtu != e.mtu or eh.mtu != e.mtu:
            return broken(f"MTU of {edge_vpc_veth(tag)}/{handoff_veth(tag)} is not {e.mtu}")
        want = self.rate_bits(e.bandwidth_mbps)
        carrier = bool(ho.flags & IFF_LOWER_UP) and ho.up
        no_carrier = f"hand-off {e.handoff} has no carrier"
        if e.mode == "layer2":
            if eh.netnsid >= 0 or eh.link != ev.index or ev.link != eh.index:
                return broken(f"{handoff_veth(tag)} and {edge_vpc_veth(tag)} are not a veth pair")
            shaped = all(tc.rate_matches(host_rates.get(d), want) for d in (handoff_veth(tag), edge_vpc_veth(tag)))
            vlan = self._vlan(tag, e)
            actual = replace(e, bandwidth_mbps=e.bandwidth_mbps if shaped else 0, vlan=vlan)
            return _Health(actual, Observation(e.id, "up" if carrier else "down", "" if carrier else no_carrier,
                                                   reason="" if carrier else "no_carrier"))

        assert e.bgp is not None and e.gateway_ip is not None
        ns = self.router_netns(tag)
        view = self.spaces.read(ns, addrs=True, routes=False)
        if view is None:
            return broken(f"router namespace {ns} is missing")
        by_name = {lk.name: lk for lk in view.links.values()}
        for ifname, address in ((ROUTER_HANDOFF_IF, e.bgp.local_ip), (ROUTER_VPC_IF, e.gateway_ip)):
            lk = by_name.get(ifname)
            have = {f"{a.address}/{a.prefixlen}" for a in view.addrs.get(lk.index, [])} if lk else set()
            if lk is None or not lk.up or address not in have:
                return broken(f"{ifname} in {ns} is missing, down or lacks {address}")
        if gateway_filter.in_place(ns) != gateway_filter.edge_router(e).digest:
            return broken(f"the filter of {ns} (nftables table, strict rp_filter) is not the one wanted")
        router = self._router(tag)
        if not router.running():
            return broken("FRR (zebra, bgpd) is not running")
        shaped = (tc.rate_matches(host_rates.get(handoff_veth(tag)), want)
                  and tc.rate_matches(self._rates(ns).get(ROUTER_HANDOFF_IF), want))
        actual = replace(e, bandwidth_mbps=e.bandwidth_mbps if shaped else 0)
        if not carrier:
            return _Health(actual, Observation(e.id, "down", no_carrier, reason="no_carrier"))
        session = router.session(e.bgp.peer_ip)
        if session.established:
            return _Health(actual, Observation(e.id, "established", learned=session.learned))
        return _Health(actual, Observation(e.id, "down", session_down(e, session.seen()), reason="session_down"))

    def _vlan(self, tag: str, e: EdgeRouter) -> int | None:
        try:
            have = vlantag.attached(self.host_netns, handoff_veth(tag))
        except tc.TcError:
            have = -1
        return e.vlan if have == e.vlan else 0  # 0: differs (no valid tag), an update repairs it

    # -- operations ------------------------------------------------------------------------

    def create(self, e: EdgeRouter) -> None:
        path = edge_path(e.id)
        tag = edge_tag(e.id)
        other = self._load(tag)
        if other is not None and other.id != e.id:
            raise DataplaneError(path + ".id", f"its device tag {tag} collides with direct connect {other.id}")
        self.remove_tag(tag)
        try:
            self._create(path, tag, e)
        except DataplaneError as err:
            raise DataplaneError(err.path, _redact(err.reason, e)) from None
        except (frr.FrrError, tc.TcError, vlantag.VlanTagError, nftables.NftError) as err:
            raise DataplaneError(path, _redact(str(err), e)) from None

    def _create(self, path: str, tag: str, e: EdgeRouter) -> None:
        if e.bgp is not None and e.bgp.md5_key and (why := frr.check_password(e.bgp.md5_key)):
            raise DataplaneError(path + ".bgp.md5_key", why)
        handoff = self.nl.link(e.handoff)
        if handoff is None:
            raise DataplaneError(path + ".handoff", f"device {e.handoff} does not exist on this host")
        if handoff.master:
            owner = next((lk.name for lk in self.nl.links() if lk.index == handoff.master), str(handoff.master))
            m = EDGE_DEVICE_RE.match(owner)
            user = self._load(m.group(1)) if m else None
            used_by = f"direct connect {user.id}" if user else f"bridge {owner}"
            raise DataplaneError(path + ".handoff", f"device {e.handoff} is already in use by {used_by}")
        vpc_br = self.nl.link(bridge_name(e.vni))
        if vpc_br is None:
            raise DataplaneError(path, f"no bridge for VNI {e.vni}")
        (self.dir / tag).mkdir(mode=0o700, exist_ok=True)

        hb_name = handoff_bridge(tag)
        netlink.apply(self.nl, path, [rtnl.new_bridge(hb_name, e.mtu, OWN_GROUP), *netlink.bring_up(hb_name)])
        hb = self._must(hb_name, path)
        netlink.apply(self.nl, path, [rtnl.set_link(handoff.index, master=hb.index, up=True)])

        if e.mode == "layer3":
            self._create_router(path, tag, e, hb.index, vpc_br.index)
        else:
            self._create_extension(path, tag, e, hb.index, vpc_br.index)
        self._save(e)

    def _create_router(self, path: str, tag: str, e: EdgeRouter, hb: int, vpc_br: int) -> None:
        assert e.bgp is not None and e.gateway_ip is not None
        ns = self.router_netns(tag)
        rnl = self.spaces.socket(ns, create=True)
        assert rnl is not None
        # Before any device is in the namespace: none gets an IPv6 address, none is unfiltered.
        netns.sysctl(ns, {"net/ipv6/conf/all/disable_ipv6": "1", "net/ipv6/conf/default/disable_ipv6": "1"})
        gateway_filter.install(ns, gateway_filter.edge_router(e), fresh=True)
        with netns.opened(ns) as fd:
            netlink.apply(self.nl, path, [
                rtnl.new_veth(handoff_veth(tag), e.mtu, hb, ROUTER_HANDOFF_IF, _mac(e.id, "dx"), fd, OWN_GROUP),
                *netlink.bring_up(handoff_veth(tag)),
                rtnl.new_veth(edge_vpc_veth(tag), e.mtu, vpc_br, ROUTER_VPC_IF, _mac(e.id, "gw"), fd, OWN_GROUP),
                *netlink.bring_up(edge_vpc_veth(tag)),
            ])
        pairs = ((ROUTER_HANDOFF_IF, e.bgp.local_ip), (ROUTER_VPC_IF, e.gateway_ip))
        netlink.apply(rnl, path, [r for ifname, _ in pairs for r in netlink.bring_up(ifname)])
        reqs: list[rtnl.Request] = []
        for ifname, address in pairs:
            lk = rnl.link(ifname)
            if lk is None:
                raise DataplaneError(path, f"{ifname} did not appear in namespace {ns}")
            ip = ipaddress.IPv4Interface(address)
            reqs.append(rtnl.new_addr(lk.index, str(ip.ip), ip.network.prefixlen))
        netlink.apply(rnl, path, reqs)
        netns.sysctl(ns, {"net/ipv4/ip_forward": "1"})
        rate = self.rate_bits(e.bandwidth_mbps)
        tc.shape(self.host_netns, handoff_veth(tag), rate)
        tc.shape(ns, ROUTER_HANDOFF_IF, rate)
        self._router(tag).start(frr.render_bgpd(_spec(e, ns)), ns, listen=_listen(e))

    def _create_extension(self, path: str, tag: str, e: EdgeRouter, hb: int, vpc_br: int) -> None:
        eh, ev = handoff_veth(tag), edge_vpc_veth(tag)
        with netns.opened(self.host_netns) as fd:
            netlink.apply(self.nl, path, [rtnl.new_veth(eh, e.mtu, hb, ev, _mac(e.id, "l2"), fd, OWN_GROUP)])
        netlink.apply(self.nl, path, [
            rtnl.set_link(name=ev, master=vpc_br, group=OWN_GROUP, no_ipv6=True), rtnl.set_link(name=ev, up=True),
            *netlink.bring_up(eh),
        ])
        rate = self.rate_bits(e.bandwidth_mbps)
        tc.shape(self.host_netns, eh, rate)
        tc.shape(self.host_netns, ev, rate)
        if e.vlan is not None:
            vlantag.attach(self.host_netns, eh, e.vlan, self.bpf_cache)

    def update(self, old: EdgeRouter, new: EdgeRouter) -> None:
        """Live changes: the shapers' rate, a layer-2 VLAN filter. BGP is not touched."""
        path = edge_path(new.id)
        tag = edge_tag(new.id)
        try:
            self._update(tag, old, new)
        except (tc.TcError, vlantag.VlanTagError) as err:
            raise DataplaneError(path, _redact(str(err), new)) from None
        self._save(new)

    def _update(self, tag: str, old: EdgeRouter, new: EdgeRouter) -> None:
        if old.bandwidth_mbps != new.bandwidth_mbps:
            rate = self.rate_bits(new.bandwidth_mbps)
            tc.shape(self.host_netns, handoff_veth(tag), rate)
            if new.mode == "layer3":
                tc.shape(self.router_netns(tag), ROUTER_HANDOFF_IF, rate)
            else:
                tc.shape(self.host_netns, edge_vpc_veth(tag), rate)
        if new.mode == "layer2" and old.vlan != new.vlan:
            if new.vlan is None:
                vlantag.detach(self.host_netns, handoff_veth(tag))
            else:
                vlantag.attach(self.host_netns, handoff_veth(tag), new.vlan, self.bpf_cache)

    def reconfigure(self, old: EdgeRouter, new: EdgeRouter) -> None:
        """A new BGP configuration (bgpd restarts) or new secrets; live changes as in update."""
        path = edge_path(new.id)
        tag = edge_tag(new.id)
        try:
            if new.mode == "layer3":
                if new.bgp is not None and new.bgp.md5_key and (why := frr.check_password(new.bgp.md5_key)):
                    raise DataplaneError(path + ".bgp.md5_key", why)
                # Peer or advertised prefixes may have changed: the filter first, then BGP.
                gateway_filter.install(self.router_netns(tag), gateway_filter.edge_router(new))
                self._router(tag).reconfigure(frr.render_bgpd(_spec(new, self.router_netns(tag))), listen=_listen(new))
            self._update(tag, old, new)
        except (frr.FrrError, tc.TcError, vlantag.VlanTagError, nftables.NftError) as err:
            raise DataplaneError(path, _redact(str(err), new)) from None
        self._save(new)

    def remove(self, e: EdgeRouter) -> None:
        self.remove_tag(edge_tag(e.id))

    def remove_tag(self, tag: str) -> None:
        """Remove everything of edge router `tag`; whatever is already gone is fine."""
        self._router(tag).stop()  # before its namespace goes
        # Deleting one end of a veth deletes the other; deleting the bridge frees the hand-off.
        names = [edge_vpc_veth(tag), handoff_veth(tag), handoff_bridge(tag)]
        netlink.apply(self.nl, "edge_routers", [rtnl.del_link(name=n) for n in names])
        self.spaces.drop(self.router_netns(tag))
        shutil.rmtree(self.dir / tag, ignore_errors=True)

    # -- garbage and teardown --------------------------------------------------------------

    def collect_garbage(self, desired: HostConfig, links: dict[str, rtnl.Link]) -> list[Action]:
        wanted = {edge_tag(e.id) for e in desired.edge_routers}
        actions: list[Action] = []
        for tag in self.tags():
            if tag not in wanted:
                self.remove_tag(tag)
                actions.append(Action("delete", f"edge router {tag}", "orphan"))
        # `links` is the driver's last read, possibly older than this converge's operations:
        # confirm each candidate before calling it an orphan.
        stray = [n for n in links if (m := EDGE_DEVICE_RE.match(n)) and m.group(1) not in wanted
                 and self.nl.link(n) is not None]
        if stray:
            netlink.apply(self.nl, "edge_routers", [rtnl.del_link(name=n) for n in stray])
            actions += [Action("delete", f"device {n}", "orphan") for n in stray]
        return actions

    def teardown(self) -> None:
        for tag in self.tags():
            self.remove_tag(tag)
        stray = [lk.name for lk in self.nl.links() if EDGE_DEVICE_RE.match(lk.name)]
        netlink.apply(self.nl, "edge_routers", [rtnl.del_link(name=n) for n in stray])
        shutil.rmtree(self.bpf_cache, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------

    def _must(self, name: str, path: str) -> rtnl.Link:
        lk = self.nl.link(name)
        if lk is None:
            raise DataplaneError(path, f"{name} vanished after creation")
        return lk


def stray_devices(links: list[rtnl.Link]) -> list[str]:
    """Names of edge-router devices among `links` (for tests and teardown checks)."""
    return sorted(lk.name for lk in links if EDGE_DEVICE_RE.match(lk.name))


def session_down(e: EdgeRouter, seen: str) -> str:
    """Why a direct connect's BGP session is not up: what was seen, and what the customer's router
    must have for it to come up (the usual culprits: peer address, AS number, MD5 password)."""
    assert e.bgp is not None
    password = ("the same MD5 password as bgp.md5_key" if e.bgp.md5_key
                else "no MD5 password (bgp.md5_key is unset)")
    return (f"BGP session with {e.bgp.peer_ip} is not up: {seen}. Likely causes: the customer router must have "
            f"address {e.bgp.peer_ip} on the cross-connect and peer with {e.bgp.local_ip.split('/')[0]} "
            f"(AS {e.bgp.local_asn}) as AS {e.bgp.peer_asn} (bgp.customer_asn), with {password}")
