"""The one facade callers use: the provider, the CLI, the lab and the controller.

Every change is one store transaction: validate the object, check the rules against the
objects it touches (its VPC, the workload's other attachments, hosts), allocate, place, write.
Anything wrong raises ValidationError (paths relative to the object, e.g. `dhcp.range_start`)
and nothing is written. `converge()` then plans against what hosts report and drives agents.
"""

from __future__ import annotations

import builtins
import ipaddress
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

from l2vpc.engine import allocator as alloc
from l2vpc.engine.errors import ConflictError, L2vpcError, NotFoundError, ValidationError
from l2vpc.engine.executor import AgentPool, ExecutionResult, Executor, NoAgents, Progress
from l2vpc.engine.model import VPC, VPN, Attachment, DirectConnect, Host, parse
from l2vpc.engine.placement import pick_compute_host, pick_edge_host, pick_service_host
from l2vpc.engine.planner import Plan, plan
from l2vpc.engine.secrets import SecretBox
from l2vpc.engine.store.base import HostReport, Store, StoredObject, Transaction
from l2vpc.engine.topology import Topology, host_configs
from l2vpc.engine.validation import validate_topology
from l2vpc.hostconfig import HostConfig, Observation

M = TypeVar("M", bound=BaseModel)

MODELS: dict[str, type[BaseModel]] = {
    "host": Host,
    "vpc": VPC,
    "attachment": Attachment,
    "direct_connect": DirectConnect,
    "vpn": VPN,
}
ID_PREFIX = {"vpc": "vpc", "attachment": "att", "direct_connect": "dx", "vpn": "vpn"}
# Fields the engine computes; callers' values for them are ignored on create and update.
COMPUTED = {
    "vpc": {"id", "vni", "status", "scope_epoch", "dhcp_host"},
    "attachment": {"id", "status", "interface_name"},
    "direct_connect": {"id", "status", "edge_host"},
    "vpn": {"id", "status", "public_ip", "vpn_host"},
}
DEFAULT_PROVIDER_ASN = 64600


# Pool of objects created with `adopt` and not yet confirmed: value "<adopt key>/<id>" (plain
# "<id>" for adopt=True), owner = the object's id.
UNCONFIRMED = "unconfirmed"


def _unconfirmed_value(adopt: bool | str, ident: str) -> str:
    return f"{adopt}/{ident}" if isinstance(adopt, str) and adopt else ident


def _same_where_given(given: Mapping[str, Any], wanted: Mapping[str, Any], existing: Mapping[str, Any]) -> bool:
    """Equal on every field the caller gave (fields left to the engine may differ)."""
    for key, value in given.items():
        if isinstance(value, Mapping) and isinstance(wanted.get(key), Mapping) and isinstance(existing.get(key), Mapping):
            if not _same_where_given(value, wanted[key], existing[key]):
                return False
        elif wanted.get(key) != existing.get(key):
            return False
    return True


_HOSTS_SEEN: dict[str, Host] = {}  # stored host document text -> parsed Host
_HOSTS_SEEN_MAX = 20_000


def _host(so: StoredObject) -> Host:
    """The Host a stored document holds. Hosts change rarely and placement and the rules read
    all of them (1,000 hosts: ~30 ms of parsing per create), so parsed hosts are kept by the
    exact stored text: the same text is the same host, whichever transaction read it."""
    raw = getattr(so, "_raw", None)
    if not isinstance(raw, str):
        return Host.model_validate(so.data)
    host = _HOSTS_SEEN.get(raw)
    if host is None:
        if len(_HOSTS_SEEN) >= _HOSTS_SEEN_MAX:
            _HOSTS_SEEN.clear()
        host = _HOSTS_SEEN[raw] = Host.model_validate(so.data)
    return host


class _Rollback(Exception):
    """Ends a dry-run transaction without writing."""


def new_id(kind: str) -> str:
    return f"{ID_PREFIX[kind]}-{secrets.token_hex(6)}"


def _dump(obj: BaseModel) -> dict[str, Any]:
    return obj.model_dump(mode="json")


def _check(topo: Topology, focus: str) -> None:
    """Cross-object rules on a small topology; problems of `focus` get bare field paths."""
    problems = validate_topology(topo, labels={focus: ""})
    if problems:
        raise ValidationError(problems)


class Engine:
    def __init__(self, store: Store, agents: AgentPool | None = None, *, tenant: str = "",
                 default_region: str | None = None, secrets: SecretBox | None = None) -> None:
        self.store = store
        self.agents: AgentPool = agents if agents is not None else NoAgents()
        self.tenant = tenant
        self.default_region = default_region
        self.stop = threading.Event()
        self.secrets = secrets or SecretBox.for_state(getattr(store, "path", None))

    def _load(self, kind: str, so: StoredObject) -> Any:
        return MODELS[kind].model_validate(self.secrets.open_fields(kind, so.data))

    def _data(self, kind: str, obj: BaseModel) -> dict[str, Any]:
        """What goes into the store: the object with its secrets sealed."""
        return self.secrets.seal_fields(kind, _dump(obj))

    # ------------------------------------------------------------------ hosts
    def register_host(self, host: Host | Mapping[str, Any], *, keep_status: bool = False) -> Host:
        """Create or update a host. `keep_status`: an existing host keeps its recorded status
        (under a controller, up/down is the leader's verdict from heartbeats, not the agent's)."""
        h = host if isinstance(host, Host) else parse(Host, dict(host))
        with self.store.transaction() as tx:
            cur = tx.get("host", h.name)
            if cur is not None and keep_status and cur.data.get("status") in ("up", "down"):
                h = h.model_copy(update={"status": cur.data["status"]})
            if cur is None:
                tx.create("host", h.name, _dump(h))
            elif cur.data != _dump(h):
                tx.update("host", h.name, _dump(h), cur.generation)
        return h

    def deregister_host(self, name: str) -> None:
        with self.store.transaction() as tx:
            users = [a.id for a in self._attachments(tx) if a.host == name]
            if users:
                raise ConflictError(f"host {name} still carries attachments {', '.join(users[:5])}; delete them first")
            tx.delete("host", name)
            tx.delete_host_report(name)
            tx.delete_heartbeat(name)

    # ------------------------------------------------------------------ liveness (controllers)
    def set_host_status(self, name: str, status: str, *,
                        fence: Callable[[Transaction], None] | None = None) -> builtins.list[str]:
        """Mark a host up or down (a controller's verdict from heartbeats) and, in the same
        transaction, move services off every host that is down (see `evacuate`). Returns what
        moved, one line each. `fence(tx)` runs first in the transaction and raises to refuse
        the change (a leader that was deposed meanwhile)."""
        if status not in ("up", "down"):
            raise ValidationError(f"must be 'up' or 'down', got {status!r}", path="status")
        with self.store.transaction() as tx:
            if fence is not None:
                fence(tx)
            so = tx.get("host", name)
            if so is None:
                raise NotFoundError("host", name)
            if so.data.get("status", "up") != status:
                tx.update("host", name, {**so.data, "status": status}, so.generation)
            return self._evacuate(tx)

    def evacuate(self, *, fence: Callable[[Transaction], None] | None = None) -> builtins.list[str]:
        """Move services off hosts that are down: a VPC's DHCP server to another up host
        carrying the VPC, a direct connect to another up edge host at its location, a VPN to
        another up edge host with public addresses (with a public address from that host's
        block). A service with nowhere to go stays and says so; a VPC whose DHCP server had
        nowhere to go gets one again when a carrier is up. Placements are sticky: a host coming
        back gets nothing back. Idempotent (level-triggered); one transaction."""
        with self.store.transaction() as tx:
            if fence is not None:
                fence(tx)
            return self._evacuate(tx)

    def _evacuate(self, tx: Transaction) -> builtins.list[str]:
        hosts = self._hosts(tx)
        down = {n for n, h in hosts.items() if h.status == "down"}
        out: builtins.list[str] = []
        for so in tx.list("vpc"):
            current = so.data.get("dhcp_host")
            if not so.data.get("dhcp") or (current and current not in down):
                continue
            vpc = VPC.model_validate(so.data)
            placed = self._place_dhcp(tx, vpc, self._members(tx, vpc.id), hosts)
            if placed.dhcp_host == current:
                continue
            tx.update("vpc", vpc.id, _dump(placed), so.generation)
            if placed.dhcp_host is None:
                out.append(f"dhcp server of {vpc.id} stopped on {current} (down): no other up host carries the VPC")
            elif current is None:
                out.append(f"dhcp server of {vpc.id} placed on {placed.dhcp_host}")
            else:
                out.append(f"dhcp server of {vpc.id} moved from {current} to {placed.dhcp_host}")
        if not down:
            return out
        dxs = tx.list("direct_connect")
        load = Counter(str(d.data.get("edge_host")) for d in dxs if d.data.get("edge_host"))
        for so in dxs:
            old = so.data.get("edge_host")
            if old not in down:
                continue
            try:
                edge = pick_edge_host(hosts.values(), so.data.get("location"), load, None)
            except ValidationError as e:
                out.append(f"direct connect {so.id} stays on {old} (down): {e.first[1]}")
                continue
            tx.update("direct_connect", so.id, {**so.data, "edge_host": edge.name}, so.generation)
            load[edge.name] += 1
            load[str(old)] -= 1
            out.append(f"direct connect {so.id} moved from {old} to {edge.name}")
        vpns = tx.list("vpn")
        load = Counter(str(v.data.get("vpn_host")) for v in vpns if v.data.get("vpn_host"))
        for so in vpns:
            old = so.data.get("vpn_host")
            if old not in down:
                continue
            try:
                edge = pick_edge_host(hosts.values(), None, load, None, public=True)
                assert edge.public_cidr  # pick_edge_host(public=True)
                avoid = {edge.public_gateway} if edge.public_gateway else set()
                public = alloc.allocate_address(tx, f"public:{edge.name}", edge.public_cidr, so.id, avoid)
            except ValidationError as e:
                out.append(f"vpn {so.id} stays on {old} (down): {e.first[1]}")
                continue
            tx.release_owner(so.id, pool=alloc.pool_ip(f"public:{old}"))
            tx.update("vpn", so.id, {**so.data, "vpn_host": edge.name, "public_ip": public}, so.generation)
            load[edge.name] += 1
            load[str(old)] -= 1
            out.append(f"vpn {so.id} moved from {old} to {edge.name} (public ip {so.data.get('public_ip')} -> {public})")
        return out

    def hosts(self, region: str | None = None, role: str | None = None) -> builtins.list[Host]:
        with self.store.transaction() as tx:
            hosts = [_host(o) for o in tx.list("host")]
        return sorted(
            (h for h in hosts if (region is None or h.region == region) and (role is None or h.role == role)),
            key=lambda h: h.name,
        )

    # ------------------------------------------------------------------ reads
    def get(self, kind: str, ident: str, *, confirm: bool = False) -> Any:
        """The object (with status as hosts report it); `confirm`: see `confirm()`."""
        with self.store.transaction() as tx:
            so = tx.get(kind, ident, tenant=self.tenant or None)
            if so is None:
                raise NotFoundError(kind, ident)
            if confirm and ident in tx.allocations(UNCONFIRMED).values():
                tx.release_owner(ident, pool=UNCONFIRMED)
            return self._with_status(kind, self._load(kind, so), tx)

    def find(self, kind: str, ident: str, *, confirm: bool = False) -> Any | None:
        try:
            return self.get(kind, ident, confirm=confirm)
        except NotFoundError:
            return None

    def list(self, kind: str) -> builtins.list[Any]:
        """Every object of a kind (the tenant's), with status as `get` gives it."""
        with self.store.transaction() as tx:
            objects = [self._load(kind, o) for o in tx.list(kind, tenant=self.tenant or None)]
            if kind not in ("attachment", "direct_connect", "vpn"):
                return objects
            hosts = {h for o in objects for h in (getattr(o, f, None) for f in ("host", "edge_host", "vpn_host")) if h}
            reports = tx.host_reports(hosts) if hosts else {}
            return [self._with_status(kind, o, tx, reports) for o in objects]

    def vpc_by_name(self, name: str) -> VPC | None:
        return next((v for v in self.list("vpc") if v.name == name), None)

    def _with_status(self, kind: str, obj: Any, tx: Transaction,
                     reports: Mapping[str, HostReport] | None = None) -> Any:
        """Status as the hosts report it, so drift shows on read. `reports`: the hosts' reports
        read already (for many objects), else read here."""

        def report_of(host: str) -> HostReport | None:
            return reports.get(host) if reports is not None else tx.host_reports([host]).get(host)

        if kind == "attachment" and obj.host:
            report = report_of(obj.host)
            ports = {p["id"] for p in report.config.get("ports", ())} if report else set()
            return obj.model_copy(update={"status": "active" if obj.id in ports else "pending"})
        host = obj.edge_host if kind == "direct_connect" else obj.vpn_host if kind == "vpn" else None
        if not host:
            return obj
        report = report_of(host)
        seen = next((o for o in (report.config.get("observations", ()) if report else ()) if o.get("id") == obj.id),
                    None)
        if kind == "direct_connect":
            state = seen.get("state") if seen else None
            status = "active" if state in ("established", "up") else "down" if state else "provisioning"
        else:
            status = str(seen.get("state")) if seen else "connecting"
        return obj.model_copy(update={"status": status})

    def observation(self, kind: str, ident: str) -> Observation | None:
        """What the host of a direct connect or VPN reports of it (state, reason code, the
        agent's words), None when nothing is reported."""
        obj = self.get(kind, ident)
        host = obj.edge_host if kind == "direct_connect" else obj.vpn_host
        report = self.actual_configs().get(host or "")
        return report.observation(ident) if report else None

    def status_detail(self, kind: str, ident: str) -> str:
        """Why a direct connect or VPN has its status (the agent's words), '' when unknown."""
        seen = self.observation(kind, ident)
        return seen.detail if seen else ""

    def status_reason(self, kind: str, ident: str) -> str:
        """Why it is not up, as a code of hostconfig.OBSERVATION_REASONS ('' when up or unknown)."""
        seen = self.observation(kind, ident)
        return seen.reason if seen else ""

    def refresh(self, hosts: Iterable[str] | None = None, timeout: float = 10.0) -> None:
        """Ask agents what they run now (sessions, tunnels) and record it; unreachable hosts
        keep their last report."""
        known = {h.name: h for h in self.hosts()}
        for name in sorted(hosts if hosts is not None else known):
            host = known.get(name)
            if host is None:
                continue
            try:
                actual = self.agents.client(host).report(timeout)
            except L2vpcError:
                continue
            with self.store.transaction() as tx:
                tx.put_host_report(name, actual.generation, actual.to_dict())

    # ------------------------------------------------------------------ writes
    def create(self, kind: str, data: Mapping[str, Any], *, adopt: bool | str = False) -> Any:
        """Create an object. With `adopt`, a caller that may have crashed after an earlier
        create (a Terraform provider killed mid-apply) gets that object back instead of a
        conflict, when it is identical and nobody has confirmed it since (see `confirm`).
        A string `adopt` is the creator's key (e.g. its working directory's digest): only a
        create with the same key adopts, so two configurations applying the same values at
        once never share one object."""
        with self.store.transaction() as tx:
            return self.create_in(tx, kind, data, adopt=adopt)

    def create_in(self, tx: Transaction, kind: str, data: Mapping[str, Any], *, adopt: bool | str = False) -> Any:
        """`create` inside the caller's transaction (several creates committed together, see
        l2vpc/controller/batching.py). Raises like `create`; the caller then rolls back."""
        data = {k: v for k, v in data.items() if k not in COMPUTED[kind]}
        if adopt:
            orphan = self._orphan(tx, kind, data, adopt)
            if orphan is not None:
                return orphan
        obj = getattr(self, f"_create_{kind}")(tx, data)
        if adopt:
            tx.claim(UNCONFIRMED, _unconfirmed_value(adopt, obj.id), obj.id)
        return obj

    def confirm(self, ident: str) -> None:
        """The creator has recorded the object (Terraform refreshed it): never adopt it again."""
        with self.store.transaction() as tx:
            if ident in tx.allocations(UNCONFIRMED).values():
                tx.release_owner(ident, pool=UNCONFIRMED)

    def _orphan(self, tx: Transaction, kind: str, data: dict[str, Any], adopt: bool | str) -> Any | None:
        unconfirmed = tx.allocations(UNCONFIRMED)
        if not unconfirmed:
            return None
        if kind == "attachment":
            candidates = [a.id for a in self._workload_attachments(tx, str(data.get("workload")))
                          if a.vpc_id == data.get("vpc_id")]
        else:
            holder = tx.allocations(self._name_pool(kind)).get(str(data.get("name")))
            candidates = [holder] if holder else []
        for ident in candidates:
            if unconfirmed.get(_unconfirmed_value(adopt, ident)) != ident:
                continue
            so = tx.get(kind, ident, tenant=self.tenant or None)
            if so is None:
                continue
            existing = self._load(kind, so)
            wanted = parse(MODELS[kind], {**data, "id": ident}).model_dump(mode="json")
            if _same_where_given(data, wanted, existing.model_dump(mode="json")):
                return existing
        return None

    def update(self, kind: str, ident: str, data: Mapping[str, Any]) -> Any:
        with self.store.transaction() as tx:
            so = tx.get(kind, ident, tenant=self.tenant or None)
            if so is None:
                raise NotFoundError(kind, ident)
            current = self._load(kind, so)
            merged = {**{k: v for k, v in so.data.items() if k in COMPUTED[kind]},
                      **{k: v for k, v in data.items() if k not in COMPUTED[kind]}}
            return getattr(self, f"_update_{kind}")(tx, so, current, merged)

    def delete(self, kind: str, ident: str) -> None:
        with self.store.transaction() as tx:
            so = tx.get(kind, ident, tenant=self.tenant or None)
            if so is None:
                raise NotFoundError(kind, ident)
            getattr(self, f"_delete_{kind}")(tx, so, self._load(kind, so))

    def check(self, kind: str, data: Mapping[str, Any], ident: str | None = None) -> Any:
        """Validate a create (or, with `ident`, an update) exactly as it would run, write nothing.

        Used at plan time so that every rule, including cross-object ones (an address already
        taken, the 11th VPC of a workload), fails before apply. Returns the would-be object.
        """
        result: list[Any] = []
        try:
            with self.store.transaction() as tx:
                if ident is None:
                    clean = {k: v for k, v in data.items() if k not in COMPUTED[kind]}
                    result.append(getattr(self, f"_create_{kind}")(tx, clean))
                else:
                    so = tx.get(kind, ident, tenant=self.tenant or None)
                    if so is None:
                        raise NotFoundError(kind, ident)
                    merged = {**{k: v for k, v in so.data.items() if k in COMPUTED[kind]},
                              **{k: v for k, v in data.items() if k not in COMPUTED[kind]}}
                    result.append(getattr(self, f"_update_{kind}")(tx, so, self._load(kind, so), merged))
                raise _Rollback
        except _Rollback:
            pass
        return result[0]

    def attached_workloads(self, vpc_id: str) -> builtins.list[str]:
        """Workloads with an interface on the VPC (they restart when its scope changes)."""
        with self.store.transaction() as tx:
            return sorted({a.workload for a in self._members(tx, vpc_id)})

    # --- VPC
    def _create_vpc(self, tx: Transaction, data: dict[str, Any]) -> VPC:
        ident = new_id("vpc")
        vpc = parse(VPC, {**data, "id": ident})
        self._claim_name(tx, "vpc", vpc.name, ident)
        vpc = vpc.model_copy(update={"vni": alloc.allocate_vni(tx, ident)})
        _check(Topology(hosts=self._hosts(tx), vpcs={ident: vpc}), ident)
        tx.create_new("vpc", ident, self._data("vpc", vpc), tenant=self.tenant)
        return vpc

    def _update_vpc(self, tx: Transaction, so: StoredObject, cur: VPC, data: dict[str, Any]) -> VPC:
        new = parse(VPC, data)
        if cur.scope == new.scope == "single_region" and cur.region != new.region:
            raise ValidationError(
                f"changing the region of a single_region VPC ({cur.region} → {new.region}) needs a new VPC",
                path="region",
            )
        if new.name != cur.name:
            tx.release_owner(cur.id, pool=self._name_pool("vpc"))
            self._claim_name(tx, "vpc", new.name, cur.id)
        if new.scope != cur.scope:
            new = new.model_copy(update={"scope_epoch": cur.scope_epoch + 1})
        members = self._members(tx, cur.id)
        hosts = self._hosts(tx)
        refs = tx.allocations(alloc.pool_refs(cur.id))
        topo = Topology(hosts=hosts, vpcs={cur.id: new}, attachments={a.id: a for a in members},
                        direct_connects={d.id: d for d in self._list(tx, "direct_connect", DirectConnect) if d.id in refs},
                        vpns={v.id: v for v in self._list(tx, "vpn", VPN) if v.id in refs})
        if new.scope == "single_region" and cur.scope == "multi_region":
            away = sorted(f"{a.workload} on {a.host} ({hosts[a.host].region})" for a in members
                          if a.host in hosts and hosts[a.host].region != new.region)
            if away:
                raise ValidationError(
                    f"cannot become single_region in {new.region!r}: attachments on hosts of other regions: "
                    + ", ".join(away), path="scope")
        if new.cidr != cur.cidr:
            # Reserved addresses belong to the old cidr: re-claim them inside the new one.
            for a in members:
                if a.ip_address:
                    tx.release_owner(a.id, pool=alloc.pool_ip(cur.id))
        _check(topo, cur.id)
        if new.cidr != cur.cidr:
            for a in members:
                if a.ip_address:
                    alloc.reserve_ip(tx, cur.id, a.ip_address.split("/")[0], a.id)
        new = self._place_dhcp(tx, new, members, hosts)
        tx.update("vpc", cur.id, self._data("vpc", new), so.generation)
        return new

    def _delete_vpc(self, tx: Transaction, so: StoredObject, vpc: VPC) -> None:
        users = sorted(tx.allocations(alloc.pool_members(vpc.id))) + sorted(tx.allocations(alloc.pool_refs(vpc.id)))
        if users:
            raise ConflictError(f"VPC {vpc.name!r} is still used by {', '.join(users[:10])}; delete those first")
        tx.delete("vpc", vpc.id, so.generation)
        tx.release_owner(vpc.id)

    # --- attachments
    def _create_attachment(self, tx: Transaction, data: dict[str, Any]) -> Attachment:
        ident = new_id("attachment")
        att = parse(Attachment, {**data, "id": ident})
        vpc = self._vpc(tx, att.vpc_id)
        siblings = self._workload_attachments(tx, att.workload)
        if any(s.vpc_id == vpc.id for s in siblings):
            other = next(s.id for s in siblings if s.vpc_id == vpc.id)
            raise ValidationError(
                f"workload {att.workload!r} is already attached to VPC {vpc.name!r} by attachment {other}",
                path="vpc_id")
        host = att.host or next((s.host for s in siblings if s.host), None)
        if host is None:
            hosts = self._hosts(tx)  # placement looks at every host
            sizes = tx.pool_sizes(alloc.pool_on_host(h) for h in hosts)
            load = Counter({h: sizes.get(alloc.pool_on_host(h), 0) for h in hosts})
            host = pick_compute_host(hosts.values(), vpc, load, self.default_region).name
        else:
            # The rules only need the hosts this workload touches: read those, not all of them.
            hosts = self._hosts_named(tx, {host, *(s.host for s in siblings if s.host)})
        att = att.model_copy(update={"host": host})
        topo = Topology(hosts=hosts, vpcs={vpc.id: vpc, **{s.vpc_id: self._vpc(tx, s.vpc_id) for s in siblings}},
                        attachments={ident: att, **{s.id: s for s in siblings}})
        _check(topo, ident)
        ifname = alloc.allocate_interface_name(tx, att.workload, ident)
        if att.mac_address:
            alloc.reserve_mac(tx, vpc.id, att.mac_address, ident)
            mac = att.mac_address
        else:
            mac = alloc.allocate_mac(tx, vpc.id, ident)
        if att.ip_address:
            alloc.reserve_ip(tx, vpc.id, att.ip_address.split("/")[0], ident)
        tx.claim(alloc.pool_members(vpc.id), ident, ident)  # a new id: free by construction
        tx.claim(alloc.pool_on_host(host), ident, ident)
        att = att.model_copy(update={"interface_name": ifname, "mac_address": mac})
        tx.create_new("attachment", ident, self._data("attachment", att), tenant=self.tenant)
        self._replace_dhcp(tx, vpc, hosts)
        return att

    def _update_attachment(self, tx: Transaction, so: StoredObject, cur: Attachment, data: dict[str, Any]) -> Attachment:
        new = parse(Attachment, data)
        for f in ("vpc_id", "workload", "workload_kind"):
            if getattr(new, f) != getattr(cur, f):
                raise ValidationError(f"changing {f} needs a new attachment", path=f)
        if new.mac_address is None:
            new = new.model_copy(update={"mac_address": cur.mac_address})
        if new.host is None:
            new = new.model_copy(update={"host": cur.host})
        vpc = self._vpc(tx, cur.vpc_id)
        hosts = self._hosts(tx)
        siblings = [s for s in self._workload_attachments(tx, cur.workload) if s.id != cur.id]
        if new.host != cur.host and siblings:
            raise ValidationError(
                f"workload {cur.workload!r} has other attachments on {cur.host}; a workload lives on one host",
                path="host")
        topo = Topology(hosts=hosts, vpcs={vpc.id: vpc, **{s.vpc_id: self._vpc(tx, s.vpc_id) for s in siblings}},
                        attachments={cur.id: new, **{s.id: s for s in siblings}})
        _check(topo, cur.id)
        if new.mac_address != cur.mac_address:
            assert new.mac_address
            tx.release_owner(cur.id, pool=alloc.pool_mac(vpc.id))
            alloc.reserve_mac(tx, vpc.id, new.mac_address, cur.id)
        if new.ip_address != cur.ip_address:
            tx.release_owner(cur.id, pool=alloc.pool_ip(vpc.id))
            if new.ip_address:
                alloc.reserve_ip(tx, vpc.id, new.ip_address.split("/")[0], cur.id)
        if new.host != cur.host:
            if cur.host:
                tx.release_owner(cur.id, pool=alloc.pool_on_host(cur.host))
            if new.host:
                tx.reserve(alloc.pool_on_host(new.host), cur.id, cur.id)
        tx.update("attachment", cur.id, self._data("attachment", new), so.generation)
        self._replace_dhcp(tx, vpc, hosts)
        return new

    def _delete_attachment(self, tx: Transaction, so: StoredObject, att: Attachment) -> None:
        tx.delete("attachment", att.id, so.generation)
        tx.release_owner(att.id)
        vpc = self._find_vpc(tx, att.vpc_id)
        if vpc is not None:
            self._replace_dhcp(tx, vpc, self._hosts(tx))

    # --- direct connects
    def _create_direct_connect(self, tx: Transaction, data: dict[str, Any]) -> DirectConnect:
        ident = new_id("direct_connect")
        dx = parse(DirectConnect, {**data, "id": ident})
        self._claim_name(tx, "direct_connect", dx.name, ident)
        dx = self._complete_dx(tx, dx, None)
        tx.create_new("direct_connect", ident, self._data("direct_connect", dx), tenant=self.tenant)
        return dx

    def _update_direct_connect(self, tx: Transaction, so: StoredObject, cur: DirectConnect,
                               data: dict[str, Any]) -> DirectConnect:
        new = parse(DirectConnect, data)
        for f in ("vpc_id", "location", "partner", "service_key", "mode"):
            if getattr(new, f) != getattr(cur, f):
                raise ValidationError(f"changing {f} needs a new direct connect", path=f)
        tx.release_owner(cur.id)
        self._claim_name(tx, "direct_connect", new.name, cur.id)
        new = self._complete_dx(tx, new, cur)
        tx.update("direct_connect", cur.id, self._data("direct_connect", new), so.generation)
        return new

    def _complete_dx(self, tx: Transaction, dx: DirectConnect, cur: DirectConnect | None) -> DirectConnect:
        vpc = self._vpc(tx, dx.vpc_id)
        hosts = self._hosts(tx)
        _check(Topology(hosts=hosts, vpcs={vpc.id: vpc}, direct_connects={dx.id: dx}), dx.id)
        load = Counter(d.edge_host for d in self._list(tx, "direct_connect", DirectConnect) if d.edge_host)
        edge = pick_edge_host(hosts.values(), dx.location, load, cur.edge_host if cur else None)
        update: dict[str, Any] = {"edge_host": edge.name}
        tx.reserve(alloc.pool_refs(vpc.id), dx.id, dx.id)
        if dx.mode == "layer3":
            assert dx.bgp is not None and vpc.cidr
            gw = dx.gateway_ip or alloc.allocate_address(tx, vpc.id, vpc.cidr, dx.id, self._vpc_reserved(vpc))
            if dx.gateway_ip:
                alloc.reserve_ip(tx, vpc.id, gw, dx.id, field="gateway_ip")
            bgp = dx.bgp
            peering = bgp.peering_cidr
            if peering is None:
                peering = alloc.allocate_peering(tx, dx.id)
            else:
                holder = tx.allocations("peering").get(peering)
                if holder not in (None, dx.id):
                    raise ValidationError(f"{peering} is already used by {holder}", path="bgp.peering_cidr")
                tx.reserve("peering", peering, dx.id)
            net = ipaddress.IPv4Network(peering)
            usable = [str(a) for a in (net if net.prefixlen == 31 else net.hosts())]
            provider_ip = bgp.provider_ip or next(a for a in usable if a != bgp.customer_ip)
            customer_ip = bgp.customer_ip or next(a for a in usable if a != provider_ip)
            update["gateway_ip"] = gw
            update["bgp"] = bgp.model_copy(update={
                "peering_cidr": peering, "provider_ip": provider_ip, "customer_ip": customer_ip,
                "provider_asn": bgp.provider_asn or DEFAULT_PROVIDER_ASN,
                "advertised_prefixes": bgp.advertised_prefixes or (vpc.cidr,),
            })
        return dx.model_copy(update=update)

    def _delete_direct_connect(self, tx: Transaction, so: StoredObject, dx: DirectConnect) -> None:
        tx.delete("direct_connect", dx.id, so.generation)
        tx.release_owner(dx.id)

    # --- VPNs
    def _create_vpn(self, tx: Transaction, data: dict[str, Any]) -> VPN:
        ident = new_id("vpn")
        vpn = parse(VPN, {**data, "id": ident})
        self._claim_name(tx, "vpn", vpn.name, ident)
        vpn = self._complete_vpn(tx, vpn, None)
        tx.create_new("vpn", ident, self._data("vpn", vpn), tenant=self.tenant)
        return vpn

    def _update_vpn(self, tx: Transaction, so: StoredObject, cur: VPN, data: dict[str, Any]) -> VPN:
        if not data.get("pre_shared_key"):  # a write-only key is only sent when it changes
            data = {**data, "pre_shared_key": cur.pre_shared_key}
        new = parse(VPN, data)
        if new.vpc_id != cur.vpc_id:
            raise ValidationError("changing vpc_id needs a new VPN", path="vpc_id")
        tx.release_owner(cur.id)
        self._claim_name(tx, "vpn", new.name, cur.id)
        new = self._complete_vpn(tx, new, cur)
        tx.update("vpn", cur.id, self._data("vpn", new), so.generation)
        return new

    def _complete_vpn(self, tx: Transaction, vpn: VPN, cur: VPN | None) -> VPN:
        vpc = self._vpc(tx, vpn.vpc_id)
        hosts = self._hosts(tx)
        _check(Topology(hosts=hosts, vpcs={vpc.id: vpc}, vpns={vpn.id: vpn}), vpn.id)
        assert vpc.cidr
        load = Counter(v.vpn_host for v in self._list(tx, "vpn", VPN) if v.vpn_host)
        edge = pick_edge_host(hosts.values(), None, load, cur.vpn_host if cur else None, public=True)
        tx.reserve(alloc.pool_refs(vpc.id), vpn.id, vpn.id)
        if vpn.gateway_ip:
            alloc.reserve_ip(tx, vpc.id, vpn.gateway_ip, vpn.id, field="gateway_ip")
            gw = vpn.gateway_ip
        else:
            gw = alloc.allocate_address(tx, vpc.id, vpc.cidr, vpn.id, self._vpc_reserved(vpc))
        assert edge.public_cidr  # pick_edge_host(public=True)
        avoid = {edge.public_gateway} if edge.public_gateway else set()
        public = alloc.allocate_address(tx, f"public:{edge.name}", edge.public_cidr, vpn.id, avoid)
        return vpn.model_copy(update={
            "gateway_ip": gw, "vpn_host": edge.name, "public_ip": public,
            "local_cidrs": vpn.local_cidrs or (vpc.cidr,),
        })

    def _delete_vpn(self, tx: Transaction, so: StoredObject, vpn: VPN) -> None:
        tx.delete("vpn", vpn.id, so.generation)
        tx.release_owner(vpn.id)

    # ------------------------------------------------------------------ helpers
    def _name_pool(self, kind: str) -> str:
        # Names are unique within a tenant: another tenant's "web" neither blocks nor shows.
        return f"name:{kind}:{self.tenant}" if self.tenant else f"name:{kind}"

    def _claim_name(self, tx: Transaction, kind: str, name: str, owner: str) -> None:
        pool = self._name_pool(kind)
        holder = tx.allocations(pool).get(name)
        if holder is not None and holder != owner:
            raise ValidationError(f"a {kind} named {name!r} already exists ({holder})", path="name")
        tx.reserve(pool, name, owner)

    def _hosts_named(self, tx: Transaction, names: Iterable[str]) -> dict[str, Host]:
        return {o.id: _host(o) for o in tx.get_many("host", names)}

    def _hosts(self, tx: Transaction) -> dict[str, Host]:
        return {o.id: _host(o) for o in tx.list("host")}

    def _list(self, tx: Transaction, kind: str, model: type[M]) -> builtins.list[M]:
        return [model.model_validate(self.secrets.open_fields(kind, o.data)) for o in tx.list(kind)]

    def _attachments(self, tx: Transaction) -> builtins.list[Attachment]:
        return self._list(tx, "attachment", Attachment)

    def _find_vpc(self, tx: Transaction, ident: str) -> VPC | None:
        so = tx.get("vpc", ident, tenant=self.tenant or None)
        return VPC.model_validate(so.data) if so else None

    def _vpc(self, tx: Transaction, ident: str) -> VPC:
        vpc = self._find_vpc(tx, ident)
        if vpc is None:
            raise ValidationError(f"no VPC with id {ident!r}", path="vpc_id")
        return vpc

    def _objects(self, tx: Transaction, ids: Iterable[str]) -> builtins.list[Attachment]:
        return [Attachment.model_validate(so.data) for so in tx.get_many("attachment", ids)]

    def _members(self, tx: Transaction, vpc_id: str) -> builtins.list[Attachment]:
        return self._objects(tx, tx.allocations(alloc.pool_members(vpc_id)))

    def _workload_attachments(self, tx: Transaction, workload: str) -> builtins.list[Attachment]:
        stored = tx.get_many("attachment", tx.allocations(alloc.pool_ifname(workload)).values())
        if any(so.tenant != self.tenant for so in stored):
            # Workload names come from the compute service and are global; a workload's NICs
            # all belong to the tenant that attached it first.
            raise ValidationError(f"workload {workload!r} is not available to this tenant", path="workload")
        return [Attachment.model_validate(so.data) for so in stored]

    @staticmethod
    def _vpc_reserved(vpc: VPC) -> set[str]:
        out = {vpc.dhcp_server_ip} if vpc.dhcp_server_ip else set()
        if vpc.dhcp and vpc.dhcp.gateway:
            out.add(vpc.dhcp.gateway)
        if vpc.dhcp:
            lo = ipaddress.IPv4Address(vpc.dhcp.range_start)
            hi = ipaddress.IPv4Address(vpc.dhcp.range_end)
            out.update(str(ipaddress.IPv4Address(i)) for i in range(int(lo), int(hi) + 1))
        return {x for x in out if x}

    def _place_dhcp(self, tx: Transaction, vpc: VPC, members: builtins.list[Attachment], hosts: Mapping[str, Host]) -> VPC:
        if vpc.dhcp is None:
            return vpc.model_copy(update={"dhcp_host": None}) if vpc.dhcp_host else vpc
        up = {h.name for h in hosts.values() if h.status == "up"}
        chosen = pick_service_host(vpc.dhcp_host, (a.host for a in members if a.host), up)
        return vpc.model_copy(update={"dhcp_host": chosen}) if chosen != vpc.dhcp_host else vpc

    def _replace_dhcp(self, tx: Transaction, vpc: VPC, hosts: Mapping[str, Host]) -> None:
        """`vpc` as read in this transaction (so current: writers hold the store's lock)."""
        if vpc.dhcp is None and vpc.dhcp_host is None:
            return  # no DHCP server to place
        so = tx.get("vpc", vpc.id)
        assert so is not None
        current = VPC.model_validate(so.data)
        if current.dhcp is None and current.dhcp_host is None:
            return  # no DHCP server to place
        members = self._members(tx, vpc.id)
        member_hosts = {a.host for a in members if a.host}
        if not member_hosts <= set(hosts):
            hosts = {**hosts, **self._hosts_named(tx, member_hosts - set(hosts))}
        placed = self._place_dhcp(tx, current, members, hosts)
        if placed.dhcp_host != current.dhcp_host:
            tx.update("vpc", vpc.id, _dump(placed), so.generation)

    # ------------------------------------------------------------------ topology and convergence
    def topology(self) -> Topology:
        with self.store.transaction() as tx:
            return Topology(
                hosts=self._hosts(tx),
                vpcs={v.id: v for v in self._list(tx, "vpc", VPC)},
                attachments={a.id: a for a in self._attachments(tx)},
                direct_connects={d.id: d for d in self._list(tx, "direct_connect", DirectConnect)},
                vpns={v.id: v for v in self._list(tx, "vpn", VPN)},
            )

    def actual_configs(self) -> dict[str, HostConfig]:
        with self.store.transaction() as tx:
            reports = tx.host_reports()
        return {h: HostConfig.from_dict(r.config) for h, r in reports.items()}

    @staticmethod
    def learned_prefixes(actual: Mapping[str, HostConfig]) -> dict[str, tuple[str, ...]]:
        """Prefixes each direct connect learned over BGP, as its edge host reports them."""
        return {o.id: tuple(sorted(o.learned)) for cfg in actual.values() for o in cfg.observations if o.learned}

    def desired_configs(self, topo: Topology | None = None,
                        actual: Mapping[str, HostConfig] | None = None) -> dict[str, HostConfig]:
        actual = self.actual_configs() if actual is None else actual
        return host_configs(topo or self.topology(), self.learned_prefixes(actual), self.secrets.digest)

    def plan(self) -> Plan:
        actual = self.actual_configs()
        return plan(self.desired_configs(actual=actual), actual)

    def converge(self, *, progress: Progress | None = None, retries: int = 3, timeout: float = 60.0,
                 on_plan: Callable[[Plan], None] | None = None) -> tuple[Plan, ExecutionResult]:
        """Plan against what hosts report and drive every changed host; returns both.
        `on_plan(plan)` is called with the first plan before anything is pushed.

        Routes to prefixes a direct connect learns over BGP are pushed to the VPC's workloads,
        so when a converge changes what is learned, a second round pushes the new routes."""
        topo = self.topology()
        ex = Executor(self.agents, self.store, retries=retries, timeout=timeout, stop=self.stop, progress=progress)
        actual = self.actual_configs()
        first = p = plan(self.desired_configs(topo, actual), actual)
        if on_plan is not None:
            on_plan(p)
        result = ex.execute(p, topo.hosts)
        for _ in range(2):
            after = self.actual_configs()
            if not result.ok or self.learned_prefixes(after) == self.learned_prefixes(actual):
                break
            actual = after
            p = plan(self.desired_configs(topo, actual), actual)
            more = ex.execute(p, topo.hosts)
            result.results.update(more.results)
            result.stopped = result.stopped or more.stopped
        return first, result


ProgressFn = Callable[[str, str], None]
