"""`l2vpc-cni`: the CNI plugin a runtime (containerd, CRI-O, Multus) runs once per VPC of a Pod.

    CNI_COMMAND=ADD CNI_CONTAINERID=… CNI_NETNS=/var/run/netns/… CNI_IFNAME=net1 l2vpc-cni < netconf.json

A thin client of the host's agent: it checks the invocation (spec.py), sends it over the agent's
local socket (`agent_socket` in the network configuration, default /run/l2vpc/cni.sock) as one
JSON line, and prints the agent's answer as a spec result or a spec error. VERSION is answered
here. It needs nothing but its network configuration and the CNI_* variables, and imports
nothing heavy (the C `_socket`, not `socket`, which pulls in enum and selectors; fastjson, not
json): its start-up is most of a Pod's ADD latency.

The agent's socket protocol: one request line `{"command", "cni_version", "container_id",
"netns", "ifname", "args", "config"}`, one answer line `{"ok": true, "result": {...}}` or
`{"ok": false, "code": N, "msg": "...", "details": "..."}`.
"""

from __future__ import annotations

import os
import sys
from _socket import AF_UNIX, SHUT_WR, SOCK_STREAM, socket

from l2vpc.cni import fastjson, spec

TYPE_CHECKING = False  # typing itself costs ms at start-up; mypy reads the name
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, BinaryIO, TextIO

# ADD may wait for the agent to converge the VPC's segment onto this host; runtimes give a
# plugin minutes, the agent answers 11 (try again later) well before this.
TIMEOUT = 120.0
MAX_ANSWER = 1 << 20


def call_agent(path: str, request: Mapping[str, Any], timeout: float = TIMEOUT) -> dict[str, Any]:
    """Send one request to the agent at `path`; its answer (raises CniError when unreachable)."""
    try:
        s = socket(AF_UNIX, SOCK_STREAM)
        try:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(fastjson.dumps(request).encode() + b"\n")
            s.shutdown(SHUT_WR)
            chunks = []
            size = 0
            while chunk := s.recv(65536):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_ANSWER:
                    raise spec.CniError(spec.IO_FAILURE, "the agent's answer is too long")
        finally:
            s.close()
    except FileNotFoundError:
        raise spec.CniError(spec.TRY_AGAIN_LATER, f"agent_socket: no agent listens at {path}",
                            "is the l2vpc agent running on this host?") from None
    except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError) as e:
        raise spec.CniError(spec.TRY_AGAIN_LATER, f"agent_socket: the agent at {path} does not answer",
                            e.strerror or str(e)) from None
    except TimeoutError:
        raise spec.CniError(spec.TRY_AGAIN_LATER, f"the agent at {path} did not answer within {timeout:.0f} s") from None
    except OSError as e:
        raise spec.CniError(spec.IO_FAILURE, f"agent_socket {path}: {e.strerror or e}") from None
    try:
        answer = fastjson.loads(b"".join(chunks).decode())
    except (UnicodeDecodeError, ValueError):
        raise spec.CniError(spec.IO_FAILURE, "the agent's answer is not JSON") from None
    if not isinstance(answer, dict):
        raise spec.CniError(spec.IO_FAILURE, "the agent's answer is not a JSON object")
    return answer


def run(env: Mapping[str, str], stdin: bytes) -> tuple[int, dict[str, Any] | None]:
    """(exit status, what to print) for one invocation; pure but for the agent call."""
    version = spec.SUPPORTED_VERSIONS[-1]
    try:
        req = spec.parse(env, stdin)
        version = req.cni_version
        if req.command == "VERSION":
            return 0, spec.version_result(version)
        answer = call_agent(req.agent_socket, req.to_agent())
        if not answer.get("ok"):
            raise spec.CniError(int(answer.get("code") or spec.IO_FAILURE), str(answer.get("msg", "agent error")),
                                str(answer.get("details", "")))
        if req.command == "ADD":
            return 0, spec.result(version, answer.get("result") or {})
        return 0, None  # DEL, CHECK, STATUS, GC: nothing on success
    except spec.CniError as e:
        return 1, spec.error(version, e)


def main(env: Mapping[str, str] | None = None, stdin: BinaryIO | None = None, stdout: TextIO | None = None) -> int:
    env = os.environ if env is None else env
    data = (stdin or sys.stdin.buffer).read()
    status, out = run(env, data)
    if out is not None:
        (stdout or sys.stdout).write(fastjson.dumps(out) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
