"""Site-to-site IKEv2 VPN gateways: one network namespace and one strongSwan charon per VPN.

What one VPN gateway is on an edge host (`short` = the last 12 characters of the VPN id):

- namespace `<prefix>l2v-<short>`, IPv6 off, ip_forward on, strict reverse-path filtering and
  an nftables table that forwards only between `vpc0` and the tunnel and lets in only IKE from
  the peer on `ext0` (gateway_filter.py), holding
  - `vpc0`: veth peer of host device `l2v<short>` on the VPC bridge; holds `gateway_ip`, the
    next hop of workloads towards `remote_cidrs`;
  - `ext0`: a macvlan (bridge mode) on the host's outside device; holds `outside_ip`, default
    route via `outside_gateway`. A macvlan leaves the outside device as it is (its own address
    keeps working, nothing is enslaved) and disappears with the namespace;
  - `ipsec0`: charon's TUN device. The kernel here has no ESP, so the `kernel-libipsec` plugin
    does ESP in userspace, always encapsulated in UDP 4500; charon routes the remote networks
    into it from table 220;
  - `unreachable` routes for `remote_cidrs` in the main table: while no tunnel (or no charon)
    routes them, traffic for the premises is dropped instead of leaking in clear to the
    outside default route.
- `charon-systemd` inside the namespace (charon.py), configured over its vici socket: IKEv2,
  PSK, `start_action = trap|start`, `close_action = restart`, `dpd_action = restart`,
  `keyingtries = 0`, so the tunnel comes up by itself and comes back after the peer restarts;
  the last retransmit gives up `dpd_timeout` seconds after the first try.

Files (state dir 0700, every file 0600): `<state>/gw/<short>/` holds `gateway.json` (the
VpnGateway it runs, with its PSK, so `running()` can report it after an agent restart),
`strongswan.conf`, `charon.log`, `charon.pid` and `vici.sock` (under /run/l2vpc-vici/<hash>/
when the state dir is too deep for a unix socket path). The PSK reaches charon only
over vici (`load-shared`, from memory); it is never in strongswan.conf, the log (level 1 never
prints keys) or any other file. `<state>/netns/` records the namespaces this manager created.

`observe()` reads the IKE and CHILD SAs over vici and, for the reason of a failure, charon's log
since the last (re)configuration (vpn_failures.py). Names of devices and namespaces come from
l2vpc.hostconfig.names.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import vici

from l2vpc.agent.drivers.base import DataplaneError
from l2vpc.agent.drivers.linux import gateway_filter, netlink, netns, nftables, rtnl
from l2vpc.agent.drivers.linux.charon import Charon, retransmit_schedule, sa_summary, unsupported
from l2vpc.agent.drivers.linux.marks import OWN_GROUP, RTPROT_L2VPC
from l2vpc.agent.drivers.linux.namespaces import Namespaces
from l2vpc.agent.drivers.linux.vpn_failures import failure_reason
from l2vpc.hostconfig import HostConfig, Observation, VpnGateway
from l2vpc.hostconfig.diff import vpn_path
from l2vpc.hostconfig.names import (
    VPN_OUTSIDE_IFNAME,
    VPN_VPC_IFNAME,
    vpn_device_name,
    vpn_netns_name,
    vpn_short_id,
)
from l2vpc.pki import write_private

UNREACHABLE_METRIC = 4242  # only matters against other main-table routes for the same prefix
MAC_RELEASE_TIMEOUT = 2.0


def _mac(vpn_id: str, role: str) -> str:
    """A stable locally administered MAC: a re-created gateway keeps it, so neither workloads
    nor the outside router need to re-learn it."""
    digest = hashlib.sha256(f"{role}\0{vpn_id}".encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in digest[:5])


@dataclass(frozen=True, slots=True)
class _Record:
    """What gateway.json holds: the gateway as configured, where it sits, and from which byte
    of charon.log on failures count (older ones belong to an earlier configuration)."""

    gw: VpnGateway
    bridge: str
    since: int = 0


def _gw_to_dict(gw: VpnGateway) -> dict[str, Any]:
    return HostConfig(host="", underlay_ip="", vpn_gateways=(gw,)).to_dict(secrets=True)["vpn_gateways"][0]


def _gw_from_dict(data: dict[str, Any]) -> VpnGateway:
    return HostConfig.from_dict({"host": "", "underlay_ip": "", "vpn_gateways": [data]}).vpn_gateways[0]


def _placement(gw: VpnGateway, bridge: str) -> tuple[Any, ...]:
    """What the namespace and its devices are built from; a change rebuilds them."""
    return (gw.vni, bridge, gw.gateway_ip, gw.outside_ip, gw.outside, gw.outside_gateway, gw.mtu)


class VpnManager:
    """The VPN gateways of one host (namespace `host_netns`, None: the current one).

        vpns = VpnManager(host_netns, prefix, state_dir)
        changes = vpns.ensure(gw, bridge_name(gw.vni))  # idempotent; [] when nothing changed
        vpns.observe(gw.id)                             # Observation: up | connecting | down
        vpns.running()                                  # the VpnGateways that run (with PSKs)
        vpns.remove(gw.id); vpns.teardown_all(); vpns.close()

    `ensure` raises DataplaneError (path `vpn_gateways[id=...]`, with the field where one is to
    blame) when the host cannot run the gateway; a failed first build leaves nothing behind.
    Changes of proposals, lifetimes, DPD, peer, traffic selectors or PSK re-key in place (vici
    unload + load, tens of ms); placement changes (VNI/bridge, addresses, outside device,
    outside gateway, MTU) rebuild the namespace. Methods are serialised by a lock.
    """

    def __init__(self, host_netns: str | None, prefix: str, state_dir: str | os.PathLike[str]) -> None:
        if host_netns is not None and not netns.exists(host_netns):
            raise ValueError(f"host_netns: namespace {host_netns!r} does not exist")
        self.host_netns = host_netns
        self.prefix = prefix
        self.state = Path(state_dir)
        self._lock = threading.RLock()
        self._nl: rtnl.Rtnl | None = None
        self._spaces: Namespaces | None = None

    # -- names and plumbing ----------------------------------------------------------------

    def netns_name(self, vpn_id: str) -> str:
        return vpn_netns_name(self.prefix, vpn_id)

    def _dir(self, vpn_id: str) -> Path:
        return self.state / "gw" / vpn_short_id(vpn_id)

    def _charon(self, vpn_id: str) -> Charon:
        return Charon(self._dir(vpn_id), netns.path(self.netns_name(vpn_id)))

    def _host(self) -> rtnl.Rtnl:
        if self._nl is None:
            self._nl = rtnl.Rtnl(netns.netlink_socket(self.host_netns))
        return self._nl

    def _ns(self) -> Namespaces:
        if self._spaces is None:
            for d in (self.state, self.state / "gw", self.state / "netns"):
                d.mkdir(mode=0o700, parents=True, exist_ok=True)
                d.chmod(0o700)
            self._spaces = Namespaces(self.state / "netns")
        return self._spaces

    def close(self) -> None:
        """Release sockets; the gateways keep running."""
        with self._lock:
            if self._spaces is not None:
                self._spaces.close()
                self._spaces = None
            if self._nl is not None:
                self._nl.close()
                self._nl = None

    def _record(self, vpn_id: str) -> _Record | None:
        return self._record_at(self._dir(vpn_id))

    def _save(self, rec: _Record) -> None:
        data = {"gateway": _gw_to_dict(rec.gw), "bridge": rec.bridge, "since": rec.since}
        write_private(self._dir(rec.gw.id) / "gateway.json", json.dumps(data, sort_keys=True).encode(),
                      durable=False)

    def configured(self) -> list[str]:
        """Ids of every gateway this manager holds state for, running or not (for garbage
        collection: a broken gateway is not in running() but still has to be removed)."""
        out = []
        with contextlib.suppress(FileNotFoundError):
            for d in sorted((self.state / "gw").iterdir()):
                rec = self._record_at(d)
                if rec is not None:
                    out.append(rec.gw.id)
        return out

    def _record_at(self, d: Path) -> _Record | None:
        try:
            data = json.loads((d / "gateway.json").read_text())
            return _Record(_gw_from_dict(data["gateway"]), str(data["bridge"]), int(data.get("since", 0)))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    # -- ensure ----------------------------------------------------------------------------

    def ensure(self, gw: VpnGateway, bridge: str) -> list[str]:
        """Make the gateway run as `gw` on VPC bridge `bridge`; returns what was changed."""
        with self._lock:
            path = vpn_path(gw.id)
            self._ns()  # the state dirs, 0700
            rec = self._record(gw.id)
            if rec is not None and rec.gw.id != gw.id:
                raise DataplaneError(f"{path}.id", f"{gw.id!r} and {rec.gw.id!r} share their last 12 characters "
                                                   "(the name of their namespace and host device)")
            changes: list[str] = []
            built = False
            try:
                if rec is None or _placement(rec.gw, rec.bridge) != _placement(gw, bridge) \
                        or not self._dataplane_ok(gw, bridge):
                    if rec is not None or netns.exists(self.netns_name(gw.id)):
                        self._remove(gw.id)
                        changes.append(f"remove {self.netns_name(gw.id)} (rebuild)")
                        rec = None
                    built = True
                    self._build(gw, bridge)
                    changes.append(f"create {self.netns_name(gw.id)} ({VPN_VPC_IFNAME} {gw.gateway_ip} on {bridge}, "
                                   f"{VPN_OUTSIDE_IFNAME} {gw.outside_ip} on {gw.outside})")
                else:
                    if rec.gw.remote_cidrs != gw.remote_cidrs:
                        self._set_unreachable(gw, old=rec.gw.remote_cidrs)
                    if not self._filtered(gw):  # the peer changed, or the rules were lost
                        gateway_filter.install(self.netns_name(gw.id), gateway_filter.vpn_gateway(gw))
                        changes.append(f"filter {self.netns_name(gw.id)}")
                charon = self._charon(gw.id)
                conf_changed = charon.configure(retransmit_schedule(gw.dpd_timeout))
                loaded = rec is not None
                if not charon.alive():
                    charon.start()
                    changes.append("start charon")
                    loaded = False
                elif conf_changed:
                    with charon.session() as s:
                        s.reload_settings()
                    changes.append("reload charon settings (retransmit schedule)")
                loaded = loaded and self._loaded(charon, gw.id)
                if not loaded or rec is None or rec.gw != gw or rec.gw.psk != gw.psk:
                    since = charon.log_size()
                    self._load(charon, gw)
                    changes.append("re-key (IKE config changed)" if loaded else "load IKE config")
                    self._save(_Record(gw, bridge, since))
            except BaseException as e:
                if built:  # a half-built gateway would only confuse the next run
                    with contextlib.suppress(Exception):
                        self._remove(gw.id)
                if isinstance(e, rtnl.NetlinkError):
                    raise netlink.refused(path, e) from e
                if isinstance(e, nftables.NftError):
                    raise DataplaneError(path, str(e)) from e
                if isinstance(e, OSError | vici.exception.SessionException):
                    raise DataplaneError(path, f"{e.strerror or e}" if isinstance(e, OSError) else str(e)) from e
                raise
            return changes

    def _dataplane_ok(self, gw: VpnGateway, bridge: str) -> bool:
        ns = self.netns_name(gw.id)
        if not netns.exists(ns):
            return False
        nl = self._host()
        hl, br, out = nl.link(vpn_device_name(gw.id)), nl.link(bridge), nl.link(gw.outside)
        if hl is None or br is None or out is None or hl.master != br.index or not hl.up:
            return False
        view = self._ns().read(ns, addrs=True, routes=True)
        if view is None:
            return False
        by_name = {lk.name: lk for lk in view.links.values()}
        vpc, ext = by_name.get(VPN_VPC_IFNAME), by_name.get(VPN_OUTSIDE_IFNAME)
        if vpc is None or ext is None or not (vpc.up and ext.up) or ext.kind != "macvlan" or ext.link != out.index:
            return False
        if vpc.link != hl.index or vpc.mtu != gw.mtu:
            return False

        def has(link: rtnl.Link, cidr: str) -> bool:
            return cidr in {f"{a.address}/{a.prefixlen}" for a in view.addrs.get(link.index, [])}

        if not (has(vpc, gw.gateway_ip) and has(ext, gw.outside_ip)):
            return False
        if gw.outside_gateway:
            routes = view.routes.get(ext.index, [])
            if not any(r.prefix == "0.0.0.0/0" and r.via == gw.outside_gateway for r in routes):
                return False
        return True

    def _filtered(self, gw: VpnGateway) -> bool:
        """The namespace holds the filter for `gw` (its digest) and filters reverse paths."""
        return gateway_filter.in_place(self.netns_name(gw.id)) == gateway_filter.vpn_gateway(gw).digest

    def _build(self, gw: VpnGateway, bridge: str) -> None:
        path = vpn_path(gw.id)
        nl = self._host()
        br = nl.link(bridge)
        if br is None or br.kind != "bridge":
            raise DataplaneError(f"{path}.vni", f"no bridge {bridge} for VNI {gw.vni} on this host")
        out = nl.link(gw.outside)
        if out is None:
            raise DataplaneError(f"{path}.outside", f"outside device {gw.outside!r} not found on this host")
        ns = self.netns_name(gw.id)
        spaces = self._ns()
        nsl = spaces.socket(ns, create=True)
        assert nsl is not None
        # Before any device exists, so none of them ever gets an IPv6 address on the VPC or
        # the outside network, and none is ever without the filter.
        netns.sysctl(ns, {"net/ipv6/conf/all/disable_ipv6": "1", "net/ipv6/conf/default/disable_ipv6": "1"})
        gateway_filter.install(ns, gateway_filter.vpn_gateway(gw), fresh=True)
        netns.sysctl(ns, {"net/ipv4/ip_forward": "1"})
        hname = vpn_device_name(gw.id)
        netlink.apply(nl, path, [rtnl.del_link(name=hname)])
        with netns.opened(ns) as fd:
            netlink.apply(nl, path, [
                rtnl.new_veth(hname, gw.mtu, br.index, VPN_VPC_IFNAME, _mac(gw.id, "vpc"), fd, OWN_GROUP),
                *netlink.bring_up(hname),  # the host itself has no presence on the VPC
                rtnl.new_macvlan(VPN_OUTSIDE_IFNAME, out.index, _mac(gw.id, "outside"), fd),
            ])
        vpc, ext = nsl.link(VPN_VPC_IFNAME), nsl.link(VPN_OUTSIDE_IFNAME)
        if vpc is None or ext is None:
            raise DataplaneError(path, f"{VPN_VPC_IFNAME}/{VPN_OUTSIDE_IFNAME} did not appear in namespace {ns}")
        gip, gplen = gw.gateway_ip.split("/")
        oip, oplen = gw.outside_ip.split("/")
        reqs = [rtnl.set_link(vpc.index, up=True), rtnl.new_addr(vpc.index, gip, int(gplen)),
                rtnl.set_link(ext.index, up=True), rtnl.new_addr(ext.index, oip, int(oplen))]
        if gw.outside_gateway:
            reqs.append(rtnl.new_route("0.0.0.0/0", gw.outside_gateway, ext.index, RTPROT_L2VPC))
        # A gateway of this id removed a moment ago may still hold the outside MAC: the kernel
        # destroys a removed namespace's devices in the background, and until then ext0 cannot
        # go up (EADDRINUSE). Deleting ext0 at removal instead would cost ~30 ms per gateway.
        deadline = time.monotonic() + MAC_RELEASE_TIMEOUT
        while True:
            try:
                netlink.apply(nsl, path, reqs)
                break
            except netlink.KernelRefused as e:
                if e.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    raise
                time.sleep(0.005)
        self._set_unreachable(gw, old=())

    def _set_unreachable(self, gw: VpnGateway, old: tuple[str, ...]) -> None:
        nsl = self._ns().socket(self.netns_name(gw.id), create=False)
        if nsl is None:
            return
        gone = [c for c in old if c not in gw.remote_cidrs]
        reqs = [rtnl.unreachable_route(c, RTPROT_L2VPC, UNREACHABLE_METRIC, delete=True) for c in gone]
        reqs += [rtnl.unreachable_route(c, RTPROT_L2VPC, UNREACHABLE_METRIC) for c in gw.remote_cidrs]
        netlink.apply(nsl, f"{vpn_path(gw.id)}.remote_cidrs", reqs)

    def _loaded(self, charon: Charon, name: str) -> bool:
        with charon.session() as s:
            return any(name in entry for entry in s.list_conns({"ike": name}))

    def _load(self, charon: Charon, gw: VpnGateway) -> None:
        path = vpn_path(gw.id)
        with charon.session() as s:
            algorithms = charon.algorithms(s)
            for field in ("ike_proposal", "esp_proposal"):
                missing = unsupported(getattr(gw, field), algorithms)
                if missing:
                    raise DataplaneError(f"{path}.{field}", f"{', '.join(missing)} not available in this strongSwan "
                                         "(needs the openssl and gcm plugins: libstrongswan-standard-plugins)")
            try:
                # unload terminates the SAs of the old config; load starts the new one at once
                # (start_action start), so a change re-keys within one round trip.
                with contextlib.suppress(vici.exception.CommandException):
                    s.unload_conn({"name": gw.id})
                s.load_shared({"id": gw.id, "type": "IKE", "data": gw.psk,
                               "owners": [gw.peer_id or gw.peer_address]})
                s.load_conn({gw.id: _conn(gw)})
            except vici.exception.CommandException as e:
                # charon's message names the offending setting, never the key.
                raise DataplaneError(path, f"strongSwan refused the configuration: {e}") from None

    # -- remove ----------------------------------------------------------------------------

    def remove(self, vpn_id: str) -> None:
        """Stop the gateway and delete its namespace, host device and files; gone is fine."""
        with self._lock:
            self._remove(vpn_id)

    def _remove(self, vpn_id: str) -> None:
        self._charon(vpn_id).stop()
        self._ns().drop(self.netns_name(vpn_id))
        if self._host().link(vpn_device_name(vpn_id)) is not None:
            netlink.apply(self._host(), vpn_path(vpn_id), [rtnl.del_link(name=vpn_device_name(vpn_id))])
        shutil.rmtree(self._dir(vpn_id), ignore_errors=True)

    def teardown_all(self) -> None:
        """Remove every gateway, namespace and file this manager (or an earlier one on the same
        state dir) created, the state dir included."""
        with self._lock:
            with contextlib.suppress(FileNotFoundError):
                for d in sorted((self.state / "gw").iterdir()):
                    Charon(d, None).stop()
                    rec = self._record_at(d)
                    if rec is not None:
                        self._remove(rec.gw.id)
                    shutil.rmtree(d, ignore_errors=True)
            if self.state.exists():
                for name in self._ns().created():
                    self._ns().drop(name)
            self.close()
            shutil.rmtree(self.state, ignore_errors=True)

    # -- facts -----------------------------------------------------------------------------

    def running(self) -> list[VpnGateway]:
        """Gateways whose charon runs on an intact namespace, as configured (PSK included)."""
        with self._lock:
            out = []
            for vpn_id in self.configured():
                rec = self._record(vpn_id)
                if rec is not None and self._charon(vpn_id).alive() and self._dataplane_ok(rec.gw, rec.bridge) \
                        and self._filtered(rec.gw):
                    out.append(rec.gw)
            return out

    def observations(self) -> list[Observation]:
        with self._lock:
            return [self.observe(vpn_id) for vpn_id in self.configured()]

    def observe(self, vpn_id: str) -> Observation:
        """`up` (IKE and CHILD SA established), `connecting`, or `down` with the reason."""
        with self._lock:
            rec = self._record(vpn_id)
            if rec is None:
                return Observation(vpn_id, "down", "not configured on this host", reason="not_configured")
            charon = self._charon(vpn_id)
            if not charon.alive():
                return Observation(vpn_id, "down", f"IKE daemon not running ({charon.log_tail(1) or 'no log'})",
                                   reason="daemon_down")
            if charon.trim_log():
                rec = replace(rec, since=0)
                self._save(rec)
            try:
                with charon.session() as s:
                    state, detail = sa_summary(s, vpn_id)
            except (OSError, vici.exception.SessionException) as e:
                return Observation(vpn_id, "down", f"IKE daemon not answering: {e}", reason="daemon_down")
            if state == "up":
                return Observation(vpn_id, "up", detail)
            gw = rec.gw
            fields = {"ike": gw.ike_proposal, "esp": gw.esp_proposal, "peer": gw.peer_address,
                      "local": ",".join(gw.local_cidrs), "remote": ",".join(gw.remote_cidrs)}
            code, words = failure_reason(charon.read_log(rec.since), fields)
            if code:
                # A negotiating IKE_SA after a failure is charon trying again (keyingtries 0).
                return Observation(vpn_id, "down", words + ("; retrying" if state == "connecting" else ""),
                                   reason=code)
            if state in ("connecting", "ike"):
                return Observation(vpn_id, "connecting", detail)
            return Observation(vpn_id, "down", "no IKE_SA; traffic to the remote networks starts one", reason="no_sa")


def _conn(gw: VpnGateway) -> dict[str, Any]:
    """The vici connection of a gateway (the initiator)."""
    local = gw.outside_ip.split("/")[0]
    ike_rekey = gw.ike_lifetime * 9 // 10
    esp_rekey = gw.esp_lifetime * 9 // 10
    return {
        "version": "2",
        "local_addrs": [local],
        "remote_addrs": [gw.peer_address],
        # kernel-libipsec can only do ESP in UDP; forcing it also gets through NATs.
        "encap": "yes",
        "mobike": "no",
        "proposals": [gw.ike_proposal],
        "rekey_time": f"{ike_rekey}s",
        "over_time": f"{gw.ike_lifetime - ike_rekey}s",
        "dpd_delay": f"{gw.dpd_interval}s",
        "dpd_timeout": f"{gw.dpd_timeout}s",  # IKEv1 only; IKEv2 uses the retransmit schedule
        "keyingtries": "0",
        "unique": "replace",
        "local": {"auth": "psk", "id": local},
        "remote": {"auth": "psk", "id": gw.peer_id or gw.peer_address},
        "children": {
            gw.id: {
                "mode": "tunnel",
                "local_ts": list(gw.local_cidrs),
                "remote_ts": list(gw.remote_cidrs),
                "esp_proposals": [gw.esp_proposal],
                "rekey_time": f"{esp_rekey}s",
                "life_time": f"{gw.esp_lifetime}s",
                "start_action": "trap|start",
                "dpd_action": "restart",
                "close_action": "restart",
            }
        },
    }
