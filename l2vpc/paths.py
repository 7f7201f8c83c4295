"""Where l2vpc keeps its state: one place for every command, from any directory.

    home()                 $L2VPC_HOME, else /var/lib/l2vpc as root, else $XDG_STATE_HOME/l2vpc
                           (~/.local/state/l2vpc)
    default_state_path()   $L2VPC_STATE_PATH, else home()/state.db
    local_control_plane()  the controller `l2vpc lab up` runs, from its record beside the default
                           state (control-plane.json), or None; ControlPlaneError when stale

The lab, `l2vpc plan|apply|show|graph`, the demo and the provider (Terraform) use them when they
are not told otherwise, so two commands agree without naming a file. Beside the state live its
sealing key (state.db.key), the lab's CA (pki/), the lab (lab/) and the record of the local
control plane the lab runs. The record holds where the controllers listen, the CA file and the
paths of the token files (0600), never a token. Imports nothing of l2vpc: the provider and the
CNI plugin may use it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

HOME_ENV = "L2VPC_HOME"
STATE_PATH_ENV = "L2VPC_STATE_PATH"
STATE_FILE = "state.db"


def home() -> str:
    explicit = os.environ.get(HOME_ENV)
    if explicit:
        return os.path.abspath(explicit)
    if os.geteuid() == 0:
        return "/var/lib/l2vpc"
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "l2vpc")


def default_state_path() -> str:
    return os.path.abspath(os.environ.get(STATE_PATH_ENV) or os.path.join(home(), STATE_FILE))


def describe_default() -> str:
    """The default as documentation states it."""
    return (f"`${STATE_PATH_ENV}`, else `state.db` in `${HOME_ENV}` (default `/var/lib/l2vpc` as root, "
            "`~/.local/state/l2vpc` otherwise)")


CONTROL_PLANE_FILE = "control-plane.json"
CONTROL_PLANE_FORMAT = 1


class ControlPlaneError(Exception):
    """The record of a local control plane is there but unusable: its controllers are gone, or
    it cannot be read. The message names the record and what to run."""


@dataclass(frozen=True)
class ControlPlane:
    """The local controllers a lab runs, as its record says (see `local_control_plane`)."""

    record: str  # the record's path, for messages
    endpoints: tuple[str, ...]
    ca_file: str
    token_file: str  # the tenant's token (what Terraform uses)
    admin_token_file: str  # an admin's (every tenant's objects: `l2vpc show`, `lab check`)

    @property
    def endpoint(self) -> str:
        return ",".join(self.endpoints)

    def token(self, admin: bool = False) -> str:
        path = self.admin_token_file if admin else self.token_file
        try:
            with open(path, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as e:
            raise ControlPlaneError(f"{self.record}: cannot read its token file {path} ({e.strerror or e}); "
                                    f"{_REMEDY}") from None
        if not token:
            raise ControlPlaneError(f"{self.record}: its token file {path} is empty; {_REMEDY}")
        return token


_REMEDY = "run `l2vpc lab down` to remove it, then `l2vpc lab up` for a new one"


def control_plane_path(state_path: str | None = None) -> str:
    """Where the record of the control plane of `state_path` (default: the default state) lives."""
    return os.path.join(os.path.dirname(os.path.abspath(state_path or default_state_path())), CONTROL_PLANE_FILE)


def local_control_plane(state_path: str | None = None) -> ControlPlane | None:
    """The controllers the lab runs for this state, or None when no lab runs any (no record).

    Raises ControlPlaneError when the record is unreadable or none of its controllers runs any
    more (a lab whose processes are gone): callers say so at once instead of retrying a dead
    address."""
    path = control_plane_path(state_path)
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ControlPlaneError(f"{path}: unreadable record of the local control plane ({e}); {_REMEDY}") from None
    try:
        if doc.get("format") != CONTROL_PLANE_FORMAT:
            raise ValueError(f"format {doc.get('format')!r}, expected {CONTROL_PLANE_FORMAT}")
        plane = ControlPlane(record=path, endpoints=tuple(str(e) for e in doc["endpoints"]),
                             ca_file=str(doc["ca_file"]), token_file=str(doc["token_file"]),
                             admin_token_file=str(doc["admin_token_file"]))
        processes = [(int(p["pid"]), str(p["marker"])) for p in doc["processes"]]
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise ControlPlaneError(f"{path}: not a record of a local control plane ({e}); {_REMEDY}") from None
    if not plane.endpoints or not any(process_running(pid, marker) for pid, marker in processes):
        pids = ", ".join(str(pid) for pid, _ in processes) or "none"
        raise ControlPlaneError(f"{path}: the local control plane it names is gone (controller pid {pids} not "
                                f"running, endpoints {plane.endpoint or 'none'}); {_REMEDY}")
    return plane


def process_running(pid: int, marker: str) -> bool:
    """pid runs (not a zombie) and its command line still names marker: a recycled pid is not it.
    (Here, not in the agent's process helpers, so the provider can ask without importing them.)"""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return False
    return stat.rsplit(b")", 1)[-1].split()[0] != b"Z" and marker.encode() in cmdline
