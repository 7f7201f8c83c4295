"""Secrets never leave through an output path (issue 15, item 4).

One topology sets a BGP MD5 key, a Megaport service key and a VPN pre-shared key; every `l2vpc`
command that reads or changes it runs in text and JSON, and a controller serves the same
objects. Every stdout, stderr and log record of the run (engine, agents, controller, at DEBUG)
and every file the run wrote outside the state and the configuration is searched for them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from l2vpc.cli import main

MD5 = "Sweep.Md5-Key.4711"
SERVICE_KEY = "Sweep-Service-Key-0815"
PSK = "Sweep.Psk_Key_42"
SECRETS = (MD5, SERVICE_KEY, PSK)

TOPOLOGY: dict[str, Any] = {
    "hosts": [
        {"name": "c1", "region": "us-east", "underlay_ip": "10.200.0.1"},
        {"name": "edge1", "region": "us-east", "role": "edge", "location": "nyc1", "underlay_ip": "10.200.0.9",
         "public_cidr": "203.0.113.32/28"},
    ],
    "vpcs": [{"name": "net", "region": "us-east", "cidr": "10.1.0.0/24"}],
    "attachments": [{"vpc": "net", "workload": "vm1", "host": "c1", "ip_mode": "static",
                     "ip_address": "10.1.0.5/24"}],
    "direct_connects": [
        {"vpc": "net", "name": "routed", "location": "nyc1", "bandwidth_mbps": 1000,
         "bgp": {"customer_asn": 65001, "md5_key": MD5}},
        {"vpc": "net", "name": "mp", "location": "nyc1", "bandwidth_mbps": 1000, "partner": "megaport",
         "service_key": SERVICE_KEY, "mode": "layer2"},
    ],
    "vpns": [{"vpc": "net", "name": "v", "peer_address": "198.51.100.1", "pre_shared_key": PSK,
              "remote_cidrs": ["192.168.0.0/24"]}],
}


def leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert rc == 0, (argv, out, err)
    return out + err


def test_no_command_output_nor_log_holds_a_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   caplog: pytest.LogCaptureFixture,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("L2VPC_HOME", str(tmp_path / "home"))
    state = tmp_path / "state.db"
    topo = tmp_path / "topology.yaml"
    topo.write_text(yaml.safe_dump(TOPOLOGY))
    common = ("--state", str(state))
    outputs: dict[str, str] = {}
    for argv in (("plan", "-f", str(topo), *common), ("plan", "--json", "-f", str(topo), *common),
                 ("apply", "-f", str(topo), "--agents", "memory", *common),
                 ("apply", "--json", "-f", str(topo), "--agents", "memory", *common),
                 ("show", *common), ("show", "--json", *common),
                 ("graph", "--format", "dot", *common), ("graph", "--format", "dot", "--vpc", "net", *common)):
        outputs[" ".join(argv[:2])] = run(capsys, *argv)
    # The commands did their work: the objects are there, the JSON forms parse.
    shown = json.loads(run(capsys, "show", "--json", *common))
    assert {d["name"] for d in shown["direct_connect"]} == {"routed", "mp"} and len(shown["vpn"]) == 1
    json.loads(outputs["apply --json"])
    # A second apply after a changed key re-keys: its plan (text and JSON) says so without the key.
    rekeyed = json.loads(json.dumps(TOPOLOGY).replace(MD5, MD5 + "x"))
    topo.write_text(yaml.safe_dump(rekeyed))
    outputs["plan rekey"] = run(capsys, "plan", "-f", str(topo), *common)
    outputs["plan --json rekey"] = run(capsys, "plan", "--json", "-f", str(topo), *common)
    assert "secret_digest changed" in outputs["plan rekey"]

    for name, text in outputs.items():
        assert leaks(text) == [], f"`l2vpc {name}` printed a secret"
    logged = "\n".join(f"{r.name}: {r.getMessage()}" for r in caplog.records)
    assert leaks(logged) == [], "a log record holds a secret"
    # Files the run wrote (besides the configuration and the sealed state itself).
    for path in tmp_path.rglob("*"):
        if path.is_file() and path != topo and not path.name.startswith("state.db"):
            assert leaks(path.read_bytes().decode(errors="replace")) == [], path
    for path in tmp_path.glob("state.db*"):
        assert leaks(path.read_bytes().decode(errors="replace")) == [], path  # sealed at rest
