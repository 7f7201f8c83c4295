"""Helpers of the remote-mode tests: a controller process on the test's PostgreSQL, agent
processes (memory driver) that register with it, and Terraform working directories whose
provider talks to the controller (`endpoint`, `token`, `ca_file`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from l2vpc.controller import auth
from l2vpc.controller.enrollment import enroll_hosts
from l2vpc.engine.store import open_store
from l2vpc.pki import CertificateAuthority, TlsFiles, write_private
from l2vpc.provider import launcher
from l2vpc.testing.daemons import AgentProcess
from l2vpc.testing.ports import free_port
from l2vpc.testing.terraform import TerraformDir, dev_override

PYTHON_L2VPC = [sys.executable, "-c", "import sys; from l2vpc.cli import main; sys.exit(main())"]
TENANT_OBJECTS = "('vpc', 'attachment', 'direct_connect', 'vpn')"


def make_pki(directory: Path) -> CertificateAuthority:
    ca = CertificateAuthority.create(directory)
    ca.issue_server("controller")
    ca.issue_client("engine")
    return ca


def tokens(url: str, role: str, **scope: str) -> str:
    store = open_store(url)
    try:
        return auth.create_token(store, role, **scope)[1]
    finally:
        store.close()


class ControllerProcess:
    """`l2vpc controller run` on a fixed port, so a restarted one is found at the same endpoint."""

    def __init__(self, url: str, pki: Path, root: Path, name: str = "c1") -> None:
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.ready = root / f"{name}.ready"
        self.log = root / f"{name}.log"
        self.argv = [*PYTHON_L2VPC, "controller", "run", "--store", url, "--listen", self.endpoint,
                     "--pki", str(pki), "--id", name, "--heartbeat-interval", "0.5", "--down-after", "30",
                     "--ready-file", str(self.ready)]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> None:
        self.ready.unlink(missing_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not self.ready.exists():
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, f"controller not ready: {self.log.read_text()}"
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


class RegisteredAgent(AgentProcess):
    """`l2vpc agent run --driver memory --controller ...`: registers its host, then heartbeats."""

    def __init__(self, name: str, underlay_ip: str, ca: CertificateAuthority, controller: ControllerProcess,
                 url: str, root: Path, sock: Path) -> None:
        token_file = root / f"{name}.token"
        store = open_store(url)
        try:  # the operator enrolls the host, then hands its agent a token
            enroll_hosts(store, [{"name": name, "region": "us-east", "underlay_ip": underlay_ip}])
        finally:
            store.close()
        write_private(token_file, (tokens(url, "agent", host=name) + "\n").encode())
        super().__init__(name, underlay_ip, ca, root / name, sock,
                         extra=("--controller", controller.endpoint, "--controller-ca", str(ca.ca_path),
                                "--token-file", str(token_file), "--region", "us-east"))

    def wait_ready(self, engine_tls: TlsFiles, timeout: float = 20, idle: bool = False) -> None:
        super().wait_ready(engine_tls, timeout, idle)


class RemoteWorkspace(TerraformDir):
    """A Terraform working directory whose provider calls the controller at `endpoint`."""

    def __init__(self, root: Path, endpoint: str, token: str, ca_file: Path) -> None:
        super().__init__(root)
        self.dir.mkdir(parents=True)
        self.endpoint, self.token, self.ca_file = endpoint, token, ca_file

    def header(self) -> str:
        return (
            'terraform {\n  required_providers {\n    l2vpc = { source = "l2vpc/l2vpc" }\n  }\n}\n\n'
            f'provider "l2vpc" {{\n  endpoint = "{self.endpoint}"\n  token    = "{self.token}"\n'
            f'  ca_file  = "{self.ca_file}"\n  region   = "us-east"\n}}\n'
        )

    def write(self, hcl: str, header: str | None = None) -> None:
        (self.dir / "main.tf").write_text((self.header() if header is None else header) + hcl)


def terraform_env(root: Path) -> dict[str, str]:
    """Environment for Terraform runs: the provider through dev_overrides (as tests/terraform)."""
    launcher.precompile()
    return {**dev_override(root), "TMPDIR": str(root)}


def use_terraform_env(root: Path, monkeypatch: Any) -> None:
    """Terraform runs as terraform_env says, with no L2VPC_* connection of the caller's."""
    for key, value in terraform_env(root).items():
        monkeypatch.setenv(key, value)
    for key in ("L2VPC_ENDPOINT", "L2VPC_TOKEN", "L2VPC_CA_FILE", "L2VPC_STATE_PATH"):
        monkeypatch.delenv(key, raising=False)


def tenant_objects(db: Any) -> list[tuple[str, str, str]]:
    """(kind, tenant, name or workload) of every tenant object, behind the controllers' backs."""
    rows = db.raw(f"SELECT kind, tenant, data::text FROM objects WHERE kind IN {TENANT_OBJECTS} ORDER BY kind, id")
    return [(k, t, json.loads(d).get("name") or json.loads(d).get("workload")) for k, t, d in rows]


def environ_without_l2vpc() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("L2VPC_") or k == "L2VPC_SECRET_KEY"}
