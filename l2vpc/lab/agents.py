"""The lab's agents as processes: their command lines (with or without a controller), their
environment, and starting them recorded in the lab's state (lab.py waits until they answer).

Every agent gets its host's TLS files, a state dir below the lab dir, a unix socket (in a short
directory below /tmp when the lab dir is too deep for a socket path) and, with a controller, a
0600 token file and its host document as flags; with the linux driver it runs on its host's
namespace, and with a controller it lives inside it (nsenter), listening on the underlay too.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import l2vpc
from l2vpc.agent.drivers.linux.driver import BANDWIDTH_SCALE_ENV
from l2vpc.lab import netns, processes
from l2vpc.lab.state import HostRecord, LabState
from l2vpc.lab.topology import AGENT_PORT, LabHost, LabTopology
from l2vpc.pki import files_in, write_private

_MAX_SOCKET_PATH = 100


@dataclass(frozen=True)
class LabController:
    """A controller the lab's agents register with (the lab does not run it).

    `address`: where agents dial it; with the linux driver they dial from their host's namespace
    over the underlay, so the controller listens on MANAGEMENT_IP in the lab's `switch_netns`;
    with the memory driver agents run here (e.g. 127.0.0.1:PORT). `ca`: the CA certificate of its
    TLS; `tokens`: each host's agent token; `server_name`: the name its certificate carries
    (default: the address's host)."""

    address: str
    ca: Path
    tokens: Mapping[str, str]
    server_name: str | None = None

    def __repr__(self) -> str:  # never the tokens
        return f"LabController(address={self.address!r}, ca={str(self.ca)!r}, {len(self.tokens)} tokens)"


def _socket_dir(st: LabState, lab_dir: Path) -> Path:
    run = lab_dir / "run"
    if len(str(run / "host999.sock")) <= _MAX_SOCKET_PATH:
        return run
    short = Path(tempfile.mkdtemp(prefix=f"l2lab{st.id}-", dir="/tmp"))
    st.dirs.append(str(short))
    return short


def start(st: LabState, topo: LabTopology, lab_dir: Path, pki_dir: Path, controller: LabController | None) -> None:
    """Start an agent per host of `topo`, each recorded in `st` before it starts."""
    sockets = _socket_dir(st, lab_dir)
    sockets.mkdir(mode=0o700, exist_ok=True)
    (lab_dir / "run").mkdir(mode=0o700, exist_ok=True)
    env = environment(st)
    for h in topo.hosts:
        agent_dir = lab_dir / "agents" / h.name
        tls = files_in(pki_dir, h.name)
        rec = HostRecord(
            name=h.name, region=h.region, role=h.role, underlay_ip=h.underlay_ip, location=h.location,
            netns=f"{st.prefix}{h.name}" if st.driver == "linux" else None,
            prefix=f"{st.prefix}{h.name}-", agent_dir=str(agent_dir),
            address=f"unix:{sockets / (h.name + '.sock')}",
            pidfile=str(lab_dir / "run" / f"{h.name}.pid"), log=str(lab_dir / "logs" / f"{h.name}.log"),
            public_cidr=h.public_cidr, cni_socket=str(sockets / f"{h.name}.cni.sock"),
        )
        argv = [sys.executable, "-m", "l2vpc.agent", "run", "--host", h.name, "--underlay-ip", h.underlay_ip,
                "--listen", rec.address, "--state-dir", rec.agent_dir, "--driver", st.driver,
                "--ca", str(tls.ca), "--cert", str(tls.cert), "--key", str(tls.key),
                "--cni-socket", str(rec.cni_socket), "--virtual-servers", "netns"]
        if rec.netns:
            argv += ["--netns", rec.netns, "--prefix", rec.prefix]
        st.hosts.append(rec)
        st.save()
        if controller is not None:
            argv = _controller_argv(rec, h, argv, controller, lab_dir)
            st.save()
        rec.argv = argv
        rec.pid = processes.start(argv, Path(rec.pidfile), Path(rec.log), env=env)
        st.save()


def environment(st: LabState) -> dict[str, str]:
    # The agents import this very l2vpc, installed or not.
    here = str(Path(l2vpc.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p),
           BANDWIDTH_SCALE_ENV: str(st.bandwidth_scale)}
    env.pop("L2VPC_AGENT_TOKEN", None)  # each agent gets its own host's token, from a file
    return env


def restart(st: LabState, rec: HostRecord, kill: bool = False) -> None:
    """Stop the host's agent (SIGKILL with `kill`: a crash) and start it again as it was started;
    the dataplane stays (the restarted agent re-converges its persisted config)."""
    if rec.argv is None:
        raise RuntimeError(f"no command line recorded for the agent of {rec.name} (lab from an older version)")
    if kill:
        processes.kill(rec.pid, rec.agent_dir)
    else:
        processes.stop(rec.pid, rec.agent_dir)
    rec.pid = processes.start(rec.argv, Path(rec.pidfile), Path(rec.log), env=environment(st))
    st.save()


def _controller_argv(rec: HostRecord, h: LabHost, argv: list[str], controller: LabController,
                     lab_dir: Path) -> list[str]:
    """The agent's command line with a controller: its token file, its host document as flags
    and, with the linux driver, a life inside its host's namespace (see lab.py's module doc)."""
    token = lab_dir / "run" / f"{h.name}.token"
    rec.token_file = str(token)
    write_private(token, f"{controller.tokens[h.name]}\n".encode())
    rec.agent_address = rec.address if rec.netns is None else f"{h.underlay_ip}:{AGENT_PORT}"
    reg = h.registration(rec.agent_address)
    argv = [*argv, "--controller", controller.address, "--controller-ca", str(controller.ca.absolute()),
            "--token-file", str(token), "--region", h.region, "--role", h.role,
            "--agent-address", rec.agent_address]
    if controller.server_name:
        argv += ["--controller-name", controller.server_name]
    for key in ("location", "handoff", "outside", "public_cidr", "public_gateway"):
        if reg.get(key):
            argv += [f"--{key.replace('_', '-')}", str(reg[key])]
    if rec.netns is None:
        return argv
    return ["nsenter", f"--net={netns.path(rec.netns)}", "--", *argv, "--listen", rec.agent_address]
