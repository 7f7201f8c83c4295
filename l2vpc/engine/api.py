"""The one facade callers use: the provider, the CLI, the lab and the controller.

Every change is one store transaction: validate the object, check the rules against the
objects it touches (its VPC, the workload's other attachments, hosts), allocate, place, write.
Anything wrong raises ValidationError (paths relative to the object, e.g. `dhcp.range_start`)
and nothing is written. `converge()` then plans against what hosts report and drives agents.

The rules live elsewhere; this module opens transactions and dispatches:
    kinds/        one module per kind (vpc, attachment, direct_connect, vpn) in one table
    failover.py   host up/down verdicts, services moved off hosts that are down
    adoption.py   objects of a creator that crashed mid-create, and their confirmation
    pod_attachments.py   a Pod's on-demand attachments (AttachPod)
    overlay.py    VPCs degraded by failing overlay pairs, as hosts report them
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from l2vpc.engine import adoption, failover, overlay, pod_attachments
from l2vpc.engine.batch import Batch, NotUndone, each_or_error
from l2vpc.engine.errors import ConflictError, L2vpcError, NotFoundError
from l2vpc.engine.executor import Abandoned, AgentPool, ExecutionResult, Executor, NoAgents, Progress
from l2vpc.engine.gcpause import paused_gc
from l2vpc.engine.kinds import COMPUTED, ID_PREFIX, KINDS, MODELS
from l2vpc.engine.kinds.context import UNREADABLE, Context, dump, host_of, load_object
from l2vpc.engine.model import VPC, VPN, Attachment, DirectConnect, Host, parse
from l2vpc.engine.planner import Plan, plan
from l2vpc.engine.secrets import SECRET_FIELDS, SecretBox, redacted
from l2vpc.engine.store.base import HostReport, Store, StoredObject, Transaction
from l2vpc.engine.store.cached import CachedTransaction
from l2vpc.engine.topology import Topology, host_configs
from l2vpc.hostconfig import HostConfig, Observation, Port

__all__ = ["COMPUTED", "ID_PREFIX", "MODELS", "Engine"]  # the tables: views of kinds.KINDS


class _Rollback(Exception):
    """Ends a dry-run transaction without writing."""


class Engine:
    def __init__(self, store: Store, agents: AgentPool | None = None, *, tenant: str = "",
                 default_region: str | None = None, secrets: SecretBox | None = None) -> None:
        self.store = store
        self.agents: AgentPool = agents if agents is not None else NoAgents()
        self.tenant = tenant
        self.default_region = default_region
        self.stop = threading.Event()
        self.secrets = secrets or SecretBox.for_state(getattr(store, "path", None))

    def _context(self, tx: Transaction) -> Context:
        return Context(tx, self.secrets, self.tenant, self.default_region)

    @contextmanager
    def _transaction(self, fence: Callable[[Transaction], None] | None = None) -> Iterator[Context]:
        """A store transaction seen as a Context; `fence(tx)` runs first and raises to refuse it."""
        with self.store.transaction() as tx:
            if fence is not None:
                fence(tx)
            yield self._context(tx)

    def _load(self, kind: str, so: StoredObject) -> Any:
        """The object as reads return it: no secret (see secrets.redacted)."""
        return redacted(kind, load_object(self.secrets, kind, MODELS[kind], so.data))

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
                tx.create("host", h.name, dump(h))
            elif cur.data != dump(h):
                tx.update("host", h.name, dump(h), cur.generation)
        return h

    def deregister_host(self, name: str) -> None:
        with self.store.transaction() as tx:
            users = [a.id for a in self._context(tx).objects("attachment", Attachment) if a.host == name]
            if users:
                raise ConflictError(f"host {name} still carries attachments {', '.join(users[:5])}; delete them first")
            tx.delete("host", name)
            tx.delete_host_report(name)

    # ------------------------------------------------------------------ liveness (controllers)
    def set_host_status(self, name: str, status: str, *,
                        fence: Callable[[Transaction], None] | None = None) -> builtins.list[str]:
        """Mark a host up or down (a controller's verdict from heartbeats) and, in the same
        transaction, move services off every host that is down (see `evacuate`). Returns what
        moved, one line each. `fence(tx)` runs first in the transaction and raises to refuse
        the change (a leader that was deposed meanwhile)."""
        failover.check_verdict(status)  # before the fence: a bad verdict is the caller's error
        with self._transaction(fence) as cx:
            return failover.set_host_status(cx, name, status)

    def evacuate(self, *, fence: Callable[[Transaction], None] | None = None) -> builtins.list[str]:
        """Move services off hosts that are down (see engine/failover.py): DHCP servers, direct
        connects, VPNs. Idempotent; one transaction; `fence` as in `set_host_status`."""
        with self._transaction(fence) as cx:
            return failover.evacuate(cx)

    def hosts(self, region: str | None = None, role: str | None = None) -> builtins.list[Host]:
        with self.store.transaction() as tx:
            hosts = [host_of(o) for o in tx.list("host")]
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
            if confirm:
                adoption.confirm(tx, ident)
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
            k = KINDS.get(kind)
            if k is None:
                return objects
            if kind == "vpc":
                pairs = overlay.degraded_pairs(tx, overlay.index_for(self.store), objects)
                return [overlay.with_overlay_status(o, pairs.get(o.id, ())) for o in objects]
            hosts = {h for h in map(k.placed_on, objects) if h}
            reports = tx.host_reports(hosts) if hosts else {}
            return [self._with_status(kind, o, tx, reports) for o in objects]

    def vpc_by_name(self, name: str) -> VPC | None:
        return next((v for v in self.list("vpc") if v.name == name), None)

    def _with_status(self, kind: str, obj: Any, tx: Transaction,
                     reports: Mapping[str, HostReport] | None = None) -> Any:
        """Status as the hosts report it, so drift shows on read. `reports`: the hosts' reports
        read already (for many objects), else read here."""
        if kind == "vpc":
            pairs = overlay.degraded_pairs(tx, overlay.index_for(self.store), [obj]).get(obj.id, ())
            return overlay.with_overlay_status(obj, pairs)
        k = KINDS.get(kind)
        host = k.placed_on(obj) if k is not None else None
        if k is None or not host or obj.status == UNREADABLE:
            return obj
        report = reports.get(host) if reports is not None else tx.host_reports([host]).get(host)
        return k.with_status(obj, report)

    def observation(self, kind: str, ident: str) -> Observation | None:
        """What the host of a direct connect or VPN reports of it (state, reason code, the
        agent's words), None when nothing is reported. For a VPC: its failing overlay pairs in
        one observation (state degraded), None while it has none."""
        if kind == "vpc":
            return overlay.summary(self.overlay_degraded(ident))
        obj = self.get(kind, ident)
        if obj.status == UNREADABLE:
            return Observation(ident, UNREADABLE, detail=(
                "its stored secret cannot be decrypted with this key (wrong L2VPC_SECRET_KEY or key file?), so it "
                "is not pushed to any host; set the secret again or delete it"))
        report = self.actual_configs().get(KINDS[kind].placed_on(obj) or "")
        return report.observation(ident) if report else None

    def status_detail(self, kind: str, ident: str) -> str:
        """Why a direct connect or VPN has its status (the agent's words), '' when unknown."""
        seen = self.observation(kind, ident)
        return seen.detail if seen else ""

    def learned(self, kind: str, ident: str) -> tuple[str, ...]:
        """Prefixes a direct connect's session learned, as its edge host last reported them."""
        seen = self.observation(kind, ident)
        return tuple(sorted(seen.learned)) if seen else ()

    def status_reason(self, kind: str, ident: str) -> str:
        """Why it is not up, as a code of hostconfig.OBSERVATION_REASONS ('' when up or unknown)."""
        seen = self.observation(kind, ident)
        return seen.reason if seen else ""

    def overlay_degraded(self, vpc_id: str | None = None) -> builtins.list[overlay.DegradedPair]:
        """The failing overlay host pairs of the tenant's VPCs (of `vpc_id` only, when given), as
        the hosts last reported them: who sees which peer fail, and the measured path MTU."""
        with self.store.transaction() as tx:
            if vpc_id is None:
                vpcs = [self._load("vpc", o) for o in tx.list("vpc", tenant=self.tenant or None)]
            else:
                so = tx.get("vpc", vpc_id, tenant=self.tenant or None)
                if so is None:
                    raise NotFoundError("vpc", vpc_id)
                vpcs = [self._load("vpc", so)]
            pairs = overlay.degraded_pairs(tx, overlay.index_for(self.store), vpcs)
        return [p for v in vpcs for p in pairs.get(v.id, ())]

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
        k = KINDS[kind]
        cx = self._context(tx)
        clean = k.writable(data)
        if adopt:
            orphan = adoption.orphan(cx, k, clean, adopt)
            if orphan is not None:
                return redacted(kind, orphan)
        obj = k.create(cx, clean)
        if adopt:
            adoption.record(tx, obj.id, adopt)
        return redacted(kind, obj)

    @contextmanager
    def batch(self, *, dry_run: bool = False) -> Iterator[Batch]:
        """Many writes in one transaction, read once and written together (engine/batch.py);
        everything commits when the block ends, nothing if it raises. `dry_run`: nothing
        commits in any case (Batch.plan shows where the writes would lead)."""
        # Many small acyclic objects: the cyclic collector would scan the heap again and again.
        try:
            with paused_gc(), self.store.transaction() as stored:
                b = Batch(self, CachedTransaction(stored))
                yield b
                if dry_run:
                    raise _Rollback
                b.finish()
        except _Rollback:
            pass

    def create_many(self, kind: str, items: Sequence[Mapping[str, Any]]) -> builtins.list[Any]:
        """Create many objects of one kind in one transaction, in order. Per item: the object,
        or the UserError that refused it (it fails alone, as it would by itself; the others
        are written). Raises only what fails the whole transaction (the store)."""
        try:
            with self.batch() as b:
                return b.create_many(kind, items)
        except NotUndone:
            # A failed create had already sent some writes: everything was rolled back; one
            # transaction per create instead (rare: attachment and VPC creates never do).
            return each_or_error(lambda data: self.create(kind, data), items)

    def attach_pod(self, vpc: str, *, host: str, workload: str, interface_name: str | None, owner: str,
                   ip_address: str | None = None) -> tuple[Attachment, Port]:
        """A Pod's on-demand attachment (its host's agent asks at CNI ADD): to the VPC `vpc`
        names (an id, else a name that must be unique across tenants), created in that VPC's
        tenant, placed on `host`, as `interface_name` (None: the next free), owned by `owner`;
        static with `ip_address`, else dhcp when the VPC runs DHCP, else none. Every rule of a
        create applies (ValidationError naming the rule). Idempotent: the same owner's
        attachment of the workload to that VPC is returned as it is (a retried call). With it,
        the port as the host's next push will carry it (see pod_attachments.py)."""
        with self._transaction() as cx:
            return pod_attachments.attach(cx, vpc, host=host, workload=workload, interface_name=interface_name,
                                          owner=owner, ip_address=ip_address)

    def confirm(self, ident: str) -> None:
        """The creator has recorded the object (Terraform refreshed it): never adopt it again."""
        with self.store.transaction() as tx:
            adoption.confirm(tx, ident)

    def update(self, kind: str, ident: str, data: Mapping[str, Any]) -> Any:
        k = KINDS[kind]
        with self._transaction() as cx:
            so = cx.tx.get(kind, ident, tenant=self.tenant or None)
            if so is None:
                raise NotFoundError(kind, ident)
            return redacted(kind, k.update(cx, so, k.load(cx, so), k.merged(so.data, data)))

    def same_secrets(self, kind: str, ident: str, data: Mapping[str, Any]) -> bool:
        """Whether the stored object's secrets equal those in `data` (for callers that sync a
        desired state and must not rewrite unchanged keys: reads do not return them)."""
        with self.store.transaction() as tx:
            return self.same_secrets_in(tx, kind, ident, data)

    def same_secrets_in(self, tx: Transaction, kind: str, ident: str, data: Mapping[str, Any]) -> bool:
        """`same_secrets` inside the caller's transaction."""
        so = tx.get(kind, ident, tenant=self.tenant or None)
        if so is None:
            raise NotFoundError(kind, ident)
        stored, failed = self.secrets.open_tolerant(kind, so.data)
        if failed:
            return False
        return all(_at_path(stored, p) == _at_path(data, p) for p in SECRET_FIELDS.get(kind, ()))

    def delete(self, kind: str, ident: str) -> None:
        k = KINDS[kind]
        with self._transaction() as cx:
            so = cx.tx.get(kind, ident, tenant=self.tenant or None)
            if so is None:
                raise NotFoundError(kind, ident)
            k.delete(cx, so, k.load(cx, so))

    def check(self, kind: str, data: Mapping[str, Any], ident: str | None = None, *,
              replacing: Iterable[str] = (), adopt: bool | str = False) -> Any:
        """Validate a create (or, with `ident`, an update) exactly as it would run, write nothing.

        Used at plan time so that every rule, including cross-object ones (an address already
        taken, the 11th VPC of a workload), fails before apply. Returns the would-be object.
        `replacing`: ids of objects of this kind the create replaces (Terraform destroys them
        first), checked as if they were gone: their name and addresses are free. `adopt`: as
        for `create` (the object an earlier create left unconfirmed passes).
        """
        k = KINDS[kind]
        result: builtins.list[Any] = []
        try:
            with self._transaction() as cx:
                for old in replacing:
                    so = cx.tx.get(kind, old, tenant=self.tenant or None)
                    if so is not None:
                        k.forget(cx, so)
                if ident is None:
                    result.append(self.create_in(cx.tx, kind, data, adopt=adopt))
                else:
                    so = cx.tx.get(kind, ident, tenant=self.tenant or None)
                    if so is None:
                        raise NotFoundError(kind, ident)
                    result.append(redacted(kind, k.update(cx, so, k.load(cx, so), k.merged(so.data, data))))
                raise _Rollback
        except _Rollback:
            pass
        return result[0]

    def attached_workloads(self, vpc_id: str) -> builtins.list[str]:
        """Workloads with an interface on the VPC (they restart when its scope changes)."""
        with self._transaction() as cx:
            return sorted({a.workload for a in cx.members(vpc_id)})

    # ------------------------------------------------------------------ topology and convergence
    def topology(self) -> Topology:
        with self.store.transaction() as tx:
            cx = self._context(tx)
            return Topology(
                hosts=cx.hosts(),
                vpcs={v.id: v for v in cx.objects("vpc", VPC)},
                attachments={a.id: a for a in cx.objects("attachment", Attachment)},
                # An object whose secret cannot be opened is left out: it fails alone (its status
                # says why) while everything else converges.
                direct_connects={d.id: d for d in cx.objects("direct_connect", DirectConnect) if d.status != UNREADABLE},
                vpns={v.id: v for v in cx.objects("vpn", VPN) if v.status != UNREADABLE},
            )

    def actual_configs(self) -> dict[str, HostConfig]:
        with self.store.transaction() as tx:
            reports = tx.host_reports()
        return {h: HostConfig.from_dict(r.config) for h, r in reports.items()}

    def _learned_now(self) -> dict[str, tuple[str, ...]]:
        """`learned_prefixes(self.actual_configs())` from the reports' observations alone (a
        1,000-host converge would parse every report again to find none)."""
        with self.store.transaction() as tx:
            observations = tx.host_observations()
        return {str(o["id"]): tuple(sorted(str(x) for x in o["learned"]))
                for seen in observations.values() for o in seen if isinstance(o, dict) and o.get("learned")}

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
                 on_plan: Callable[[Plan], None] | None = None,
                 abandoned: Abandoned | None = None, topology: Topology | None = None,
                 actual: Mapping[str, HostConfig] | None = None) -> tuple[Plan, ExecutionResult]:
        """Plan against what hosts report and drive every changed host; returns both.
        `on_plan(plan)` is called with the first plan before anything is pushed; hosts added
        to `abandoned` meanwhile are not waited for (see executor.Abandoned).

        Routes to prefixes a direct connect learns over BGP are pushed to the VPC's workloads,
        so when a converge changes what is learned, a second round pushes the new routes.
        `topology`: the desired topology when the caller has it already (topology_file.sync_topology);
        `actual`: the hosts' reports to plan from, when the caller read them already."""
        topo = topology if topology is not None else self.topology()
        ex = Executor(self.agents, self.store, retries=retries, timeout=timeout, stop=self.stop, progress=progress,
                      abandoned=abandoned)
        actual = self.actual_configs() if actual is None else actual
        first = p = plan(self.desired_configs(topo, actual), actual)
        if on_plan is not None:
            on_plan(p)
        result = ex.execute(p, topo.hosts)
        for _ in range(2):
            if not result.ok or self._learned_now() == self.learned_prefixes(actual):
                break
            actual = self.actual_configs()
            p = plan(self.desired_configs(topo, actual), actual)
            more = ex.execute(p, topo.hosts)
            result.results.update(more.results)
            result.stopped = result.stopped or more.stopped
        return first, result


def _at_path(data: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = data
    for step in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(step)
    return value
