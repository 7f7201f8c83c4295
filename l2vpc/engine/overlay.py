"""Overlay health as the hosts report it: which VPCs are degraded, by which host pair, at what
path MTU.

An agent reports a failing overlay pair as observation `overlay:<peer underlay address>`
(agent/overlay_probe.py): the peer does not answer (`peer_not_responding`) or the underlay
path to it drops frames of the size its VPCs need (`path_mtu`, with the measured path MTU).
A VPC is degraded while a host carrying its segment reports such a pair towards a remote of
that segment, unless the measured path MTU still carries the VPC's frames (MTU + 50).

Reading every host's report on each VPC read would decode one JSON document per host;
`OverlayIndex` keeps, per store, what each report says of the overlay and re-reads only the
reports whose stamp changed (the stamps are one cheap query), so a steady VPC read costs that
query alone.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from l2vpc.engine.model import VPC
from l2vpc.engine.store.base import Transaction
from l2vpc.hostconfig import VXLAN_OVERHEAD, Observation, overlay_peer

DEGRADED = "degraded"


@dataclass(frozen=True, slots=True)
class DegradedPair:
    """One failing host pair of one VPC, as `host` sees its path towards `peer_host`."""

    vpc_id: str
    vpc_name: str
    host: str
    peer_host: str  # the peer's name ('' when no host has that underlay address)
    peer_ip: str
    reason: str  # path_mtu | peer_not_responding
    path_mtu: int  # measured (0: not measured, e.g. no answer)
    needed_mtu: int  # what the VPC's frames need on the underlay: its MTU + 50

    def describe(self) -> str:
        pair = f"{self.host} -> {self.peer_host or self.peer_ip}"
        if self.reason == "path_mtu":
            return f"{pair}: underlay path MTU {self.path_mtu} < {self.needed_mtu} needed"
        return f"{pair}: no answer to overlay probes"

    def to_dict(self) -> dict[str, Any]:
        return {"vpc_id": self.vpc_id, "vpc": self.vpc_name, "host": self.host, "peer_host": self.peer_host,
                "peer_ip": self.peer_ip, "reason": self.reason, "path_mtu": self.path_mtu,
                "needed_mtu": self.needed_mtu, "detail": self.describe()}


@dataclass(frozen=True, slots=True)
class _HostOverlay:
    """What one host's report says of the overlay: its failing pairs and, only when there are
    some, the remotes of each of its segments (vni -> remotes)."""

    issues: tuple[Observation, ...] = ()
    remotes: Mapping[int, frozenset[str]] | None = None


_NONE = _HostOverlay()


def _host_overlay(config: Mapping[str, Any]) -> _HostOverlay:
    issues = tuple(
        Observation(str(o["id"]), str(o.get("state", "")), str(o.get("detail", "")), (),
                    str(o.get("reason", "")), int(o.get("path_mtu", 0)))
        for o in config.get("observations", ()) if overlay_peer(str(o.get("id", ""))) is not None
    )
    if not issues:
        return _NONE
    remotes = {int(s["vni"]): frozenset(str(r) for r in s.get("remotes", ())) for s in config.get("segments", ())}
    return _HostOverlay(issues, remotes)


class OverlayIndex:
    """Per store: host -> (report stamp, what the report says of the overlay). See the module
    docstring; `index_for(store)` gives the store's one instance."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hosts: dict[str, tuple[tuple[int, float], _HostOverlay]] = {}

    def failing(self, tx: Transaction) -> dict[str, _HostOverlay]:
        """Hosts whose last report has failing overlay pairs."""
        stamps = tx.host_report_stamps()
        with self._lock:
            known = dict(self._hosts)
        changed = [h for h, st in stamps.items() if h not in known or known[h][0] != st]
        fresh = {h: ((r.generation, r.updated_at), _host_overlay(r.config))
                 for h, r in (tx.host_reports(changed) if changed else {}).items()}
        with self._lock:
            for h in set(self._hosts) - set(stamps):
                del self._hosts[h]
            self._hosts.update(fresh)
            return {h: o for h, (_, o) in self._hosts.items() if o.issues and h in stamps}


_INDEXES: weakref.WeakKeyDictionary[object, OverlayIndex] = weakref.WeakKeyDictionary()
_INDEXES_LOCK = threading.Lock()


def index_for(store: object) -> OverlayIndex:
    with _INDEXES_LOCK:
        index = _INDEXES.get(store)
        if index is None:
            index = _INDEXES[store] = OverlayIndex()
        return index


def degraded_pairs(tx: Transaction, index: OverlayIndex, vpcs: Iterable[VPC]) -> dict[str, list[DegradedPair]]:
    """vpc id -> its failing host pairs (only degraded VPCs appear), sorted."""
    failing = index.failing(tx)
    if not failing:
        return {}
    by_vni = {v.vni: v for v in vpcs if v.vni is not None}
    names = {str(o.data.get("underlay_ip", "")): o.id for o in tx.list("host")}
    out: dict[str, list[DegradedPair]] = {}
    for host, seen in sorted(failing.items()):
        for obs in seen.issues:
            peer = overlay_peer(obs.id) or ""
            for vni, remotes in sorted((seen.remotes or {}).items()):
                vpc = by_vni.get(vni)
                if vpc is None or peer not in remotes:
                    continue
                needed = vpc.mtu + VXLAN_OVERHEAD
                if obs.reason == "path_mtu" and obs.path_mtu >= needed:
                    continue  # this VPC's frames still fit
                out.setdefault(vpc.id, []).append(DegradedPair(
                    vpc.id, vpc.name, host, names.get(peer, ""), peer, obs.reason or DEGRADED, obs.path_mtu, needed))
    return out


def with_overlay_status(vpc: VPC, pairs: Iterable[DegradedPair]) -> VPC:
    """The VPC with status `degraded` while it has failing pairs."""
    return vpc.model_copy(update={"status": DEGRADED}) if any(True for _ in pairs) else vpc


def summary(pairs: Iterable[DegradedPair]) -> Observation | None:
    """A degraded VPC's status explained like an edge's observation: reason code and words."""
    pairs = list(pairs)
    if not pairs:
        return None
    reason = "path_mtu" if any(p.reason == "path_mtu" for p in pairs) else pairs[0].reason
    return Observation(pairs[0].vpc_id, DEGRADED, "overlay degraded: " + "; ".join(p.describe() for p in pairs),
                       (), reason, min((p.path_mtu for p in pairs if p.path_mtu), default=0))
