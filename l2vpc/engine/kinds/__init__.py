"""The kinds of objects callers create, one module each, in one table: name → kind.

A kind (see base.py) holds its model, id prefix, computed fields, create/update/delete rules
and status from host reports. `context.py` is the write transaction they share. MODELS,
ID_PREFIX and COMPUTED are views of the table for callers that need only those
(controller/client.py, the docs tests); engine/api.py re-exports them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from l2vpc.engine.kinds.attachment import AttachmentKind
from l2vpc.engine.kinds.base import Kind
from l2vpc.engine.kinds.direct_connect import DirectConnectKind
from l2vpc.engine.kinds.vpc import VpcKind
from l2vpc.engine.kinds.vpn import VpnKind
from l2vpc.engine.model import Host

KINDS: dict[str, Kind[Any]] = {k.name: k for k in (VpcKind(), AttachmentKind(), DirectConnectKind(), VpnKind())}

# Hosts are read like the other kinds but written by register_host, not through a kind.
MODELS: dict[str, type[BaseModel]] = {"host": Host, **{name: k.model for name, k in KINDS.items()}}
ID_PREFIX: dict[str, str] = {name: k.id_prefix for name, k in KINDS.items()}
COMPUTED: dict[str, frozenset[str]] = {name: k.computed for name, k in KINDS.items()}
