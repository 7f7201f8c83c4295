"""Topology files (YAML or JSON) for the engine CLI: load, check whole, sync into an engine.

A file is the complete desired state: hosts, vpcs, attachments, direct_connects, vpns. Objects
refer to VPCs by name; attachments are identified by (workload, vpc). Everything is checked
before anything is written, and errors name the file path of the field
(`attachments[3].ip_address: ...`).

A Pod's on-demand attachments (those with an `owner`, created by its host's agent at CNI ADD)
are not the file's: `sync` neither deletes nor adopts them, and a file cannot set `owner`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from l2vpc.engine.api import Engine
from l2vpc.engine.batch import Batch
from l2vpc.engine.errors import ValidationError
from l2vpc.engine.gcpause import paused_gc
from l2vpc.engine.model import VPC, VPN, Attachment, DirectConnect, Host, copy_with, parse
from l2vpc.engine.planner import Plan
from l2vpc.engine.secrets import SECRET_FIELDS, redacted
from l2vpc.engine.topology import Topology
from l2vpc.engine.validation import validate_topology

MAX_FILE_BYTES = 32 * 1024 * 1024
LIMITS = {"hosts": 10_000, "vpcs": 100_000, "attachments": 1_000_000, "direct_connects": 10_000, "vpns": 10_000}
SECTIONS = tuple(LIMITS)


@dataclass
class TopologyFile:
    hosts: list[Host] = field(default_factory=list)
    vpcs: list[VPC] = field(default_factory=list)
    # (attachment, vpc name)
    attachments: list[tuple[Attachment, str]] = field(default_factory=list)
    direct_connects: list[tuple[DirectConnect, str]] = field(default_factory=list)
    vpns: list[tuple[VPN, str]] = field(default_factory=list)


def read_bytes(path: str) -> bytes:
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise ValidationError(f"{path}: cannot read: {e.strerror}") from None
    if size > MAX_FILE_BYTES:
        raise ValidationError(f"{path}: {size} bytes is larger than the {MAX_FILE_BYTES} bytes allowed")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise ValidationError(f"{path}: cannot read: {e.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ValidationError(f"{path}: {len(raw)} bytes is larger than the {MAX_FILE_BYTES} bytes allowed")
    return raw


def read_document(path: str, raw: bytes | None = None) -> dict[str, Any]:
    """The file's document; `raw`: its bytes when read already (read_bytes)."""
    if raw is None:
        raw = read_bytes(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValidationError(f"{path}: not UTF-8 text (byte {e.start})") from None
    doc = _plain_json(text)
    if doc is None:
        # Imported here: a generated file is plain JSON, and PyYAML costs ~10 ms to import.
        from l2vpc.engine.strict_yaml import load_yaml

        doc = load_yaml(path, text)
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ValidationError(f"{path}: the top level must be a mapping with {', '.join(SECTIONS)}")
    return doc


def _plain_json(text: str) -> Any | None:
    """The document, when it is plain JSON (a generated file): the json module reads it ~50x
    faster than the YAML parser. None otherwise, also for JSON with duplicate keys or NaN, so
    the YAML parser reads it and reports what is wrong with a line number."""
    if not text.lstrip().startswith("{"):
        return None
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_refuse)
    except (ValueError, RecursionError):
        return None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key")
    return out


def _refuse(name: str) -> Any:
    raise ValueError(name)


def parse_document(doc: dict[str, Any], registered: list[Host] | None = None) -> TopologyFile:
    """Check a whole document; `registered` are hosts the state already knows (e.g. a lab's),
    which attachments may use without the file listing them."""
    unknown = sorted(str(k) for k in doc if k not in SECTIONS)
    if unknown:
        raise ValidationError([(k, f"unknown section; allowed: {', '.join(SECTIONS)}") for k in unknown])
    for section in SECTIONS:
        items = doc.get(section) or []
        if not isinstance(items, list):
            raise ValidationError(f"must be a list, got {type(items).__name__}", path=section)
        if len(items) > LIMITS[section]:
            raise ValidationError(f"{len(items)} entries; at most {LIMITS[section]} are allowed", path=section)
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise ValidationError(f"must be a mapping, got {type(item).__name__}", path=f"{section}[{i}]")
    out = TopologyFile()
    problems: list[tuple[str, str]] = []

    def attempt(fn: Any) -> Any:
        try:
            return fn()
        except ValidationError as e:
            problems.extend(e.problems)
            return None

    for i, d in enumerate(doc.get("hosts") or []):
        h = attempt(lambda d=d, i=i: parse(Host, d, prefix=f"hosts[{i}]."))
        if h:
            out.hosts.append(h)
    for i, d in enumerate(doc.get("vpcs") or []):
        v = attempt(lambda d=d, i=i: parse(VPC, _no_computed(d, f"vpcs[{i}]", {"id", "vni", "status", "scope_epoch", "dhcp_host"}), prefix=f"vpcs[{i}]."))
        if v:
            out.vpcs.append(v)
    for section, model, target in (
        ("attachments", Attachment, out.attachments),
        ("direct_connects", DirectConnect, out.direct_connects),
        ("vpns", VPN, out.vpns),
    ):
        for i, d in enumerate(doc.get(section) or []):
            d = dict(d)
            vpc_name = d.pop("vpc", None)
            if not isinstance(vpc_name, str):
                problems.append((f"{section}[{i}].vpc", "required: the name of a VPC in this file"))
                continue
            if "owner" in d:
                problems.append((f"{section}[{i}].owner", "set by the agents of Pods only; remove it from the file"))
                continue
            obj = attempt(lambda d=d, i=i, section=section, model=model, vpc_name=vpc_name: parse(
                model, {**d, "vpc_id": vpc_name}, prefix=f"{section}[{i}]."))
            if obj is not None:
                target.append((obj, vpc_name))
    if problems:
        raise ValidationError(problems)
    _check_whole(out, registered or [])
    return out


def _no_computed(d: dict[str, Any], where: str, computed: set[str]) -> dict[str, Any]:
    bad = sorted(set(d) & computed)
    if bad:
        raise ValidationError("computed by the engine; remove it from the file", path=f"{where}.{bad[0]}")
    return d


def _check_whole(tf: TopologyFile, registered: list[Host]) -> None:
    """The cross-object rules on the file (plus registered hosts), with file paths, before
    anything is written."""
    topo = Topology(hosts={h.name: h for h in registered})
    topo.hosts.update({h.name: h for h in tf.hosts})
    labels: dict[str, str] = {}
    problems: list[tuple[str, str]] = []
    seen_hosts: set[str] = set()
    for i, h in enumerate(tf.hosts):
        if h.name in seen_hosts:
            problems.append((f"hosts[{i}].name", f"duplicate host {h.name!r}"))
        seen_hosts.add(h.name)
        labels[h.name] = f"hosts[{i}]"
    by_name: dict[str, str] = {}
    for i, v in enumerate(tf.vpcs):
        ident = f"vpc-{i:08x}"
        by_name.setdefault(v.name, ident)  # duplicates are reported by validate_topology
        topo.vpcs[ident] = copy_with(v, {"id": ident})
        labels[ident] = f"vpcs[{i}]"
    sections: list[tuple[str, list[tuple[Any, str]], dict[str, Any]]] = [
        ("attachments", list(tf.attachments), topo.attachments),
        ("direct_connects", list(tf.direct_connects), topo.direct_connects),
        ("vpns", list(tf.vpns), topo.vpns),
    ]
    for section, items, store in sections:
        for i, (obj, vpc_name) in enumerate(items):
            ident = f"obj-{len(labels):08x}"
            if vpc_name not in by_name:
                problems.append((f"{section}[{i}].vpc", f"no VPC named {vpc_name!r} in this file"))
                continue
            store[ident] = copy_with(obj, {"id": ident, "vpc_id": by_name[vpc_name]})
            labels[ident] = f"{section}[{i}]"
    problems.extend(validate_topology(topo, labels))
    if problems:
        raise ValidationError(problems)


def load(path: str, registered: list[Host] | None = None, raw: bytes | None = None) -> TopologyFile:
    """`raw`: the file's bytes when read already (read_bytes)."""
    with paused_gc():  # tens of thousands of small acyclic objects: see gcpause.py
        return parse_document(read_document(path, raw), registered)


def _ident(kind: str, obj: Any) -> str:
    """How a file names an object within its VPC: attachments by workload, others by name."""
    return str(obj.workload if kind == "attachment" else obj.name)


_DEPENDANTS = ("attachment", "direct_connect", "vpn")
_VPC_COMPUTED = {"id", "vni", "status", "scope_epoch", "dhcp_host"}


def _at(label: str, fn: Any, *args: Any) -> Any:
    """Run an engine call for the object at `label` in the file; its errors get that path."""
    try:
        return fn(*args)
    except ValidationError as e:
        raise _labelled(label, e) from None


def _labelled(label: str, e: ValidationError) -> ValidationError:
    return ValidationError([(f"{label}.{p}" if p else label, m) for p, m in e.problems])


def _create_all(b: Batch, kind: str, section: str, items: list[tuple[int, dict[str, Any]]]) -> list[Any]:
    """Create `items` ((index in the file's section, data)) in the batch; the first refused
    one raises with its file path."""
    results = b.create_many(kind, [d for _, d in items])
    for (i, _), r in zip(items, results, strict=True):
        if isinstance(r, ValidationError):
            raise _labelled(f"{section}[{i}]", r)
        if isinstance(r, Exception):
            raise r
    return results


def sync(engine: Engine, tf: TopologyFile) -> dict[str, int]:
    """Make the engine's desired state equal the file, in one transaction (all of it or, on an
    error, nothing). Deletes first, then creates/updates."""
    with engine.batch() as b:
        return _sync(b, tf)


def sync_topology(engine: Engine, tf: TopologyFile) -> tuple[dict[str, int], Topology]:
    """`sync`, and the topology it leaves (what Engine.topology() reads after it) taken from
    the batch instead of read back: `apply` converges from it."""
    with engine.batch() as b:
        counts = _sync(b, tf)
        return counts, b.topology()


def sync_snapshot(engine: Engine, tf: TopologyFile) -> tuple[dict[str, int], Topology, list[tuple[str, str, str, int, str]]]:
    """`sync_topology`, and every object row as its transaction commits them (Batch.stored_rows)."""
    with engine.batch() as b:
        counts = _sync(b, tf)
        topo = b.topology()
        return counts, topo, b.stored_rows()


def plan_sync(engine: Engine, tf: TopologyFile) -> tuple[Plan, dict[str, int], dict[str, str]]:
    """What `sync` would change (counts), the plan it leads to and the VPCs' names by id;
    nothing is written (a dry-run batch: its writes are kept in memory, never sent)."""
    with engine.batch(dry_run=True) as b:
        counts = _sync(b, tf)
        p, topo = b.plan()
        return p, counts, {v.id: v.name for v in topo.vpcs.values()}


def _json_field(obj: Any, name: str) -> Any:
    """Field `name` of `obj` as model_dump(mode="json") shows a plain value (a tuple as a list).
    A nested model stays a model, unequal to its dump: the caller then compares the dumps."""
    value = getattr(obj, name, None)
    return list(value) if type(value) is tuple else value


def _sync(b: Batch, tf: TopologyFile) -> dict[str, int]:
    counts = {"created": 0, "updated": 0, "deleted": 0}
    registered = b.hosts()
    for i, h in enumerate(tf.hosts):
        cur = registered.get(h.name)
        if cur is not None and cur.agent_address and not h.agent_address:
            # The file describes the host; the lab (or an operator) said where its agent listens.
            h = h.model_copy(update={"agent_address": cur.agent_address})
        _at(f"hosts[{i}]", b.register_host, h)
    items: dict[str, list[tuple[Any, str]]] = {
        "attachment": list(tf.attachments), "direct_connect": list(tf.direct_connects), "vpn": list(tf.vpns),
    }
    existing_vpcs = {v.name: v for v in b.objects("vpc")}
    vpc_ids = {n: v.id for n, v in existing_vpcs.items()}

    names = {i: n for n, i in vpc_ids.items()}
    # The file's kinds of objects in the state (not the Pods' own attachments), read once: the
    # deletes below only remove keys the file does not name, so the creates look up the rest.
    have = {kind: {(_ident(kind, o), names.get(o.vpc_id, "")): o for o in b.objects(kind)
                   if getattr(o, "owner", None) is None} for kind in _DEPENDANTS}

    # Remove what the file no longer has: dependants before their VPCs.
    for kind in _DEPENDANTS:
        wanted = {(_ident(kind, o), n) for o, n in items[kind]}
        for key, obj in have[kind].items():
            if key not in wanted:
                b.delete(kind, obj.id)
                counts["deleted"] += 1
    want_vpcs = {v.name for v in tf.vpcs}
    for name, v in existing_vpcs.items():
        if name not in want_vpcs:
            b.delete("vpc", v.id)
            counts["deleted"] += 1
    new_vpcs: list[tuple[int, dict[str, Any]]] = []
    for i, v in enumerate(tf.vpcs):
        data = v.model_dump(mode="json", exclude=_VPC_COMPUTED)
        cur = existing_vpcs.get(v.name)
        if cur is None:
            new_vpcs.append((i, data))
        elif cur.model_dump(mode="json", exclude=_VPC_COMPUTED) != data:
            _at(f"vpcs[{i}]", b.update, "vpc", cur.id, data)
            counts["updated"] += 1
    for (i, _), vpc in zip(new_vpcs, _create_all(b, "vpc", "vpcs", new_vpcs), strict=True):
        vpc_ids[tf.vpcs[i].name] = vpc.id
        counts["created"] += 1
    for kind, section in zip(_DEPENDANTS, ("attachments", "direct_connects", "vpns"), strict=True):
        new: list[tuple[int, dict[str, Any]]] = []
        for i, (obj, vpc_name) in enumerate(items[kind]):
            label = f"{section}[{i}]"
            data = obj.model_dump(mode="json", exclude_none=True, exclude={"id", "status"})
            data["vpc_id"] = vpc_ids[vpc_name]
            cur = have[kind].get((_ident(kind, obj), vpc_name))
            if cur is None:
                new.append((i, data))
                continue
            secret = kind in SECRET_FIELDS
            if not secret and all(_json_field(cur, f) == val for f, val in data.items()):
                continue  # the file's fields as stored (a no-op re-plan: 10,000 attachments)
            cur_data = cur.model_dump(mode="json", exclude_none=True, exclude={"id", "status"})
            # Reads return no secret: the others are compared here, the secrets by the engine
            # (a kind without secrets, 10,000 attachments: `data` is already what reads show).
            public = {**redacted(kind, obj).model_dump(mode="json", exclude_none=True, exclude={"id", "status"}),
                      "vpc_id": data["vpc_id"]} if secret else data
            if any(cur_data.get(f) != val for f, val in public.items()) or (
                    secret and not b.same_secrets(kind, cur.id, data)):
                _at(label, b.update, kind, cur.id, {**cur_data, **data})
                counts["updated"] += 1
        counts["created"] += len(_create_all(b, kind, section, new))
    return counts
