"""What a host is, fixed by the operator at enrollment; what its agent may still say.

An operator enrolls a host (`l2vpc controller host enroll`, `enroll_hosts`): its region, role,
location, underlay address, public block and edge devices are recorded in the store, and only
an operator changes them. Its agent, proving who it is with a token bound to the host name,
registers and heartbeats: that refreshes liveness and where the controller dials it
(`agent_address`), nothing else. A registration for a host nobody enrolled, or one whose
document claims another identity than the enrolled one (a compute host restarted with
`--role edge --public-cidr ...`, which would then receive tenants' VPN keys), is refused
whole (`Refused`, PERMISSION_DENIED at the API) and changes nothing.

    hosts = enroll_hosts(store, [{"name": "host1", "region": "us-east", "underlay_ip": "10.0.0.11"}])
    host = admit(enrolled, parse(Host, doc), doc.keys())   # the record to keep, or Refused
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from l2vpc.engine.errors import L2vpcError, ValidationError
from l2vpc.engine.kinds.context import dump, host_of
from l2vpc.engine.model import Host, parse
from l2vpc.engine.store.base import Store

# Fields only an operator sets. The agent may send them (they must then match) or leave them out.
IDENTITY = ("region", "role", "location", "underlay_ip", "public_cidr", "public_gateway", "handoff", "outside")
# Fields the agent owns: where the controller dials it. (Liveness travels in heartbeats.)
OBSERVED = ("agent_address",)


class Refused(L2vpcError):
    """An agent's registration is refused (the API answers PERMISSION_DENIED)."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(message)
        self.host = host


def enroll_hosts(store: Store, documents: Sequence[Mapping[str, Any]]) -> list[Host]:
    """Create or update the records of hosts (the operator's word), in one transaction.

    A new host starts `down` (nothing heard from it) and turns up at its agent's first
    registration; an existing one keeps its status and agent address. ValidationError naming
    `hosts[i].field` for a bad document, a duplicate name, or an underlay address or public
    block another host has."""
    if not documents:
        raise ValidationError("give at least one host", path="hosts")
    hosts: list[Host] = []
    for i, doc in enumerate(documents):
        if not isinstance(doc, Mapping):
            raise ValidationError("must be a host document (an object)", path=f"hosts[{i}]")
        extra = sorted(k for k in doc if k in ("status", *OBSERVED))
        if extra:
            raise ValidationError(f"{', '.join(extra)}: set by the host's agent, not at enrollment",
                                  path=f"hosts[{i}]")
        hosts.append(parse(Host, {**doc, "status": "down"}, prefix=f"hosts[{i}]."))
    names = [h.name for h in hosts]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValidationError(f"host {dupes[0]} is listed twice", path="hosts")
    with store.transaction() as tx:
        current = {o.id: o for o in tx.list("host")}
        others = [host_of(o) for n, o in current.items() if n not in names]
        _check_unique(hosts, others)
        out: list[Host] = []
        for h in hosts:
            cur = current.get(h.name)
            if cur is None:
                tx.create("host", h.name, dump(h))
                out.append(h)
                continue
            old = host_of(cur)
            kept = h.model_copy(update={"status": old.status, "agent_address": old.agent_address})
            if dump(kept) != cur.data:
                tx.update("host", h.name, dump(kept), cur.generation)
            out.append(kept)
    return out


def _check_unique(hosts: Sequence[Host], others: Sequence[Host]) -> None:
    """No two hosts share an underlay address or overlapping public blocks (paths `hosts[i].…`)."""
    seen: list[tuple[Host, str]] = [(h, f"host {h.name}") for h in others]
    for i, h in enumerate(hosts):
        for other, what in seen:
            if h.underlay_ip == other.underlay_ip:
                raise ValidationError(f"{h.underlay_ip} is already the underlay address of {what}",
                                      path=f"hosts[{i}].underlay_ip")
            if h.public_cidr and other.public_cidr and \
                    ipaddress.IPv4Network(h.public_cidr).overlaps(ipaddress.IPv4Network(other.public_cidr)):
                raise ValidationError(f"{h.public_cidr} overlaps {other.public_cidr}, the public block of {what}",
                                      path=f"hosts[{i}].public_cidr")
        seen.append((h, f"host {h.name}"))


def admit(enrolled: Host | None, claimed: Host, given: Iterable[str]) -> Host:
    """The host record after its agent's registration: the enrolled record with the agent's
    observations (OBSERVED) from `claimed` applied. `claimed` is the agent's document (parsed),
    `given` the fields it spelled out. Refused when the host is not enrolled or a given identity
    field differs from the enrolled one (each named, with both values)."""
    name = claimed.name
    if enrolled is None:
        raise Refused(name, f"host {name} is not enrolled: an operator enrolls it first "
                            f"(l2vpc controller host enroll {name} --region ... --underlay-ip ...)")
    wrong = [k for k in IDENTITY if k in given and getattr(claimed, k) != getattr(enrolled, k)]
    if wrong:
        said = ", ".join(f"{k} {getattr(claimed, k)!r} (enrolled: {getattr(enrolled, k)!r})" for k in wrong)
        raise Refused(name, f"host {name} is enrolled with another identity; its agent claimed {said}. "
                            "Only an operator changes what a host is (l2vpc controller host enroll)")
    return enrolled.model_copy(update={k: getattr(claimed, k) for k in OBSERVED if k in given})
