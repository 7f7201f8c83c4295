"""Lab tests' shared pieces: topology files for a lab, the `l2vpc` CLI in-process, leftovers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from l2vpc.cli import main as cli
from l2vpc.lab.state import LabState
from l2vpc.lab.topology import public_gateway
from l2vpc.testing.leftovers import leftovers as testing_leftovers


def topology_file(path: Path, st: LabState, doc: dict[str, Any]) -> Path:
    """A topology file for `doc`'s VPCs and attachments on the lab's hosts (with their agents)."""
    hosts = [{"name": h.name, "region": h.region, "role": h.role, "underlay_ip": h.underlay_ip,
              "agent_address": h.address, **({"location": h.location} if h.location else {}),
              **({"public_cidr": h.public_cidr, "public_gateway": public_gateway(h.public_cidr)}
                 if h.public_cidr else {})} for h in st.hosts]
    path.write_text(yaml.safe_dump({"hosts": hosts, **doc}))
    return path


def run(*argv: str) -> int:
    return cli(list(argv))


def leftovers(st: LabState, root: Path) -> list[str]:
    """Namespaces with the lab's prefix and live processes started for files under `root`."""
    return testing_leftovers(st.prefix, str(root))


def status_json(capsys: Any, state: str) -> dict[str, Any]:
    capsys.readouterr()
    assert run("lab", "status", "--state", state, "--json") == 0
    return json.loads(capsys.readouterr().out)
