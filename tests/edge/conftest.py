"""One lab with a premises site for every test here, and Terraform workspaces applied on it.

The lab is `l2vpc lab up --hosts 2 --edges 1 --premises --premises-psk demo.psk.2024`: the
premises router (AS 65010, 169.254.10.2/30 on edge1's cross-connect, LAN 192.168.50.0/24 with
premises-host .10, VPN gateway 203.0.113.10) and premises-l2 on the cross-connect. Each test
writes its own small configuration, runs it with `l2vpc tf` (the embedded Terraform and the
real provider) and destroys it before the next test, also when it fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from l2vpc.agent.drivers.linux import frr
from l2vpc.cli import main as cli
from l2vpc.embedded import STATE_PATH_ENV, open_engine
from l2vpc.engine.api import Engine
from l2vpc.lab.lab import Lab
from l2vpc.lab.premises import PremisesConfig
from l2vpc.lab.state import HostRecord, LabState
from l2vpc.lab.topology import LabTopology
from l2vpc.testing.leftovers import leftovers

PSK = "demo.psk.2024"
HEADER = """terraform {
  required_providers {
    l2vpc = { source = "l2vpc/l2vpc" }
  }
}

provider "l2vpc" {
  region = "us-east"
}
"""


@dataclass
class Result:
    rc: int
    output: str  # stdout and stderr of Terraform, as printed

    @property
    def text(self) -> str:
        """The output with whitespace collapsed (Terraform wraps long diagnostics)."""
        return " ".join(self.output.split())


@contextlib.contextmanager
def _terminal_to(path: Path) -> Iterator[None]:
    """`l2vpc tf` shares our terminal (fds 1 and 2) with Terraform: point both at `path`."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with open(path, "wb") as f:
            os.dup2(f.fileno(), 1)
            os.dup2(f.fileno(), 2)
        yield
    finally:
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)


class Workspace:
    """A Terraform directory holding one configuration, applied with `l2vpc tf`."""

    def __init__(self, root: Path) -> None:
        self.dir = root
        self.dir.mkdir(parents=True)
        self.vars: dict[str, str] = {}

    def write(self, hcl: str, **variables: str | int) -> None:
        (self.dir / "main.tf").write_text(HEADER + hcl)
        self.vars = {k: str(v) for k, v in variables.items()}

    def tf(self, *args: str) -> Result:
        argv = [*args, "-no-color", *(f"-var={k}={v}" for k, v in self.vars.items())]
        log = self.dir / "terraform.out"
        with _terminal_to(log):
            rc = cli(["tf", "-C", str(self.dir), *argv])
        return Result(rc, log.read_text(errors="replace"))

    def ok(self, *args: str) -> Result:
        result = self.tf(*args)
        assert result.rc == 0, f"terraform {' '.join(args)}: exit {result.rc}\n{result.output}"
        return result

    def apply(self, *args: str) -> Result:
        return self.ok("apply", "-input=false", "-auto-approve", *args)

    def destroy(self) -> Result:
        return self.ok("destroy", "-input=false", "-auto-approve")

    def resource(self, address: str) -> dict[str, Any]:
        """Attributes of `address` (type.name) in terraform.tfstate."""
        state = json.loads((self.dir / "terraform.tfstate").read_text())
        for r in state["resources"]:
            if r["mode"] == "managed" and f"{r['type']}.{r['name']}" == address:
                attributes: dict[str, Any] = r["instances"][0]["attributes"]
                return attributes
        raise KeyError(address)

    def has_resources(self) -> bool:
        path = self.dir / "terraform.tfstate"
        return path.exists() and bool(json.loads(path.read_text()).get("resources"))


class EdgeLab:
    """The running lab and what the tests need to look at it from outside."""

    def __init__(self, lab: Lab, st: LabState) -> None:
        self.lab = lab
        self.st = st
        edge = st.host("edge1")
        assert edge is not None and edge.netns is not None
        self.edge: HostRecord = edge
        self.edge_netns: str = edge.netns

    @property
    def driver_dir(self) -> Path:
        """edge1's Linux driver state (edges/<tag>/, vpn/gw/<short>/)."""
        return Path(self.edge.agent_dir) / "driver"

    def netns(self, name: str) -> str:
        """Namespace of a premises machine or workload (as `l2vpc lab exec` resolves it)."""
        return self.lab.workload_netns(name)

    def exec(self, name: str, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.lab.exec_argv(name, list(argv)), capture_output=True, text=True,
                              timeout=timeout)

    def ping(self, name: str, address: str, tries: int = 1) -> bool:
        return any(self.exec(name, "ping", "-c1", "-W1", address).returncode == 0 for _ in range(tries))

    @contextlib.contextmanager
    def engine(self) -> Iterator[Engine]:
        """The engine on the lab's state, having asked edge1's agent what it runs now."""
        engine = open_engine(self.st.state_path)
        try:
            engine.refresh(["edge1"])
            yield engine
        finally:
            close = getattr(engine.agents, "close", None)
            if close is not None:
                close()
            engine.store.close()

    def status(self, kind: str, ident: str) -> tuple[str, str]:
        """The engine's view of a direct connect or VPN: (status, detail)."""
        with self.engine() as engine:
            return engine.get(kind, ident).status, engine.status_detail(kind, ident)

    def learned(self, dx_id: str) -> tuple[str, ...]:
        """Prefixes edge1 reports the direct connect learned over BGP."""
        with self.engine() as engine:
            seen = engine.actual_configs()["edge1"].observation(dx_id)
            return seen.learned if seen else ()

    def wait_status(self, kind: str, ident: str, want: str, timeout: float) -> list[tuple[float, str, str]]:
        """Poll until the status is `want`; returns every (seconds, status, detail) seen in between."""
        start = time.monotonic()
        seen: list[tuple[float, str, str]] = []
        while True:
            status, detail = self.status(kind, ident)
            if not seen or seen[-1][1:] != (status, detail):
                seen.append((round(time.monotonic() - start, 2), status, detail))
            if status == want or time.monotonic() - start > timeout:
                return seen
            time.sleep(0.2)


def iperf_mbps(lab: EdgeLab, client: str, server: str, address: str, *, reverse: bool = False,
               seconds: float = 2.0) -> float:
    """TCP throughput from `client` to `server` (`reverse`: the other way) as the receiver counts it."""
    port = "5201"
    proc = subprocess.Popen(lab.lab.exec_argv(server, ["iperf3", "-s", "-1", "-p", port]),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while port not in lab.exec(server, "ss", "-Hltn", f"sport = :{port}").stdout:
            assert proc.poll() is None and time.monotonic() < deadline, "iperf3 server did not start"
            time.sleep(0.02)
        # -O: leave out the first half second (slow start, the token bucket's initial burst).
        out = lab.exec(client, "iperf3", "-c", address, "-p", port, "-t", str(seconds), "-O", "0.5", "-J",
                       *(["-R"] if reverse else []), timeout=seconds + 15)
        assert out.returncode == 0, out.stdout + out.stderr
        bps: float = json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"]
        return bps / 1e6
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def lab_leftovers(st: LabState) -> list[str]:
    """Namespaces, processes and FRR run dirs of the lab still there."""
    out = leftovers(st.prefix, st.prefix, st.dir)
    out += [f"FRR run dir {p}" for p in frr.RUN_BASE.glob(f"{st.prefix}*")]
    return out


@pytest.fixture(scope="package")
def edge_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeLab]:
    base = tmp_path_factory.mktemp("edge")
    state = str(base / ".l2vpc" / "state.db")
    lab = Lab(state)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(STATE_PATH_ENV, state)  # what `l2vpc tf`'s provider opens
        try:
            st = lab.up(LabTopology.build(2, ["us-east"], 1, ["nyc1"]), driver="linux",
                        premises=PremisesConfig(), premises_psk=PSK)
            yield EdgeLab(lab, st)
        finally:
            st_left = lab.load()
            warnings = lab.down()
            if st_left is not None:
                left = lab_leftovers(st_left)
                assert not left and not warnings, f"lab down left {left}; warnings {warnings}"


MakeWorkspace = Callable[[str], Workspace]


@pytest.fixture
def workspace(edge_lab: EdgeLab, tmp_path: Path) -> Iterator[MakeWorkspace]:
    """Workspaces on the lab; whatever a test leaves applied is destroyed after it."""
    made: list[Workspace] = []

    def make(name: str) -> Workspace:
        ws = Workspace(tmp_path / name)
        made.append(ws)
        return ws

    yield make
    for ws in made:
        if ws.has_resources():
            ws.tf("destroy", "-input=false", "-auto-approve")
        shutil.rmtree(ws.dir / ".terraform", ignore_errors=True)
