"""The CNI protocol as `l2vpc-cni` speaks it (CNI spec 1.0.0 and 1.1.0): parsing and results.

Pure and import-light (fastjson only: no json package, re, dataclasses or typing at run time,
which together cost more than the rest of the plugin's start): the plugin starts once per VPC
of every Pod, so its start-up time is its latency. The agent does the work; this module turns the runtime's environment and
stdin into a request and the agent's answer into a spec result or a spec error.

    req = parse(os.environ, stdin_bytes)      # raises CniError with the spec's code
    print(result_json(req.cni_version, body)) # or error_json(version, err)

Error codes are the spec's (1 incompatible version, 2 unsupported field, 3 container unknown,
4 invalid environment variables, 5 I/O failure, 6 failed to decode content, 7 invalid network
config, 11 try again later) and ours from 100 up (see ERRORS below). Every message names the
variable, key or rule at fault.
"""

from __future__ import annotations

from l2vpc.cni import fastjson

TYPE_CHECKING = False  # typing itself costs ms at start-up; mypy reads the name
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

SUPPORTED_VERSIONS = ("1.0.0", "1.1.0")
# Every version VERSION lists: the ones we run, as runtimes compare against them.
COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC")
DEFAULT_AGENT_SOCKET = "/run/l2vpc/cni.sock"

# The spec's well-known codes.
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
PLUGIN_NOT_AVAILABLE = 50  # STATUS (1.1)
# Ours (>= 100), each a rule of the product a runtime may want to tell apart.
NOT_PLACED_HERE = 100      # the declared attachment is placed on another host
INTERFACE_MISMATCH = 101   # CNI_IFNAME differs from the attachment's interface_name
TOO_MANY_VPCS = 102        # a workload attaches at most 10 VPCs
UNKNOWN_VPC = 103          # no VPC of that name or id
RULE_VIOLATED = 104        # another rule of the attachment (address, MAC, ...): the message names it
DRIFT = 105                # CHECK: the Pod's interface differs from what was set up
ERRORS = {
    NOT_PLACED_HERE: "the attachment is placed on another host",
    INTERFACE_MISMATCH: "CNI_IFNAME differs from the attachment's interface name",
    TOO_MANY_VPCS: "a workload attaches at most 10 VPCs",
    UNKNOWN_VPC: "no such VPC",
    RULE_VIOLATED: "the attachment breaks a rule",
    DRIFT: "the interface is not as it was set up",
}

_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_CONTAINER_ID_CHARS = _ALNUM | frozenset("_.-")
_ARG_CHARS = _ALNUM | frozenset("_")


def _container_id_ok(value: str) -> bool:
    """A letter or digit, then letters, digits, '_', '.' and '-' (as the spec's runtimes use)."""
    return bool(value) and value[0] in _ALNUM and _CONTAINER_ID_CHARS.issuperset(value)


def _ifname_ok(value: str) -> bool:
    return (0 < len(value) <= 15 and value not in (".", "..")
            and not any(c in "/:" or c.isspace() for c in value))


class CniError(Exception):
    def __init__(self, code: int, msg: str, details: str = "") -> None:
        self.code, self.msg, self.details = code, msg, details
        super().__init__(f"{msg}: {details}" if details else msg)


class Request:
    """One invocation: the command, the CNI_* variables and the network configuration."""

    __slots__ = ("args", "cni_version", "command", "config", "container_id", "ifname", "netns")

    def __init__(self, command: str, cni_version: str, container_id: str = "", netns: str = "", ifname: str = "",
                 args: dict[str, str] | None = None, config: dict[str, Any] | None = None) -> None:
        self.command, self.cni_version, self.container_id = command, cni_version, container_id
        self.netns, self.ifname = netns, ifname
        self.args: dict[str, str] = args if args is not None else {}
        self.config: dict[str, Any] = config if config is not None else {}

    @property
    def agent_socket(self) -> str:
        return str(self.config.get("agent_socket") or DEFAULT_AGENT_SOCKET)

    @property
    def vpc(self) -> str:
        return str(self.config.get("vpc") or self.args.get("VPC", ""))

    def to_agent(self) -> dict[str, Any]:
        """What the agent gets: everything it needs to act, nothing of the environment else."""
        return {
            "command": self.command, "cni_version": self.cni_version, "container_id": self.container_id,
            "netns": self.netns, "ifname": self.ifname, "args": self.args, "config": self.config,
        }


def parse_args(text: str) -> dict[str, str]:
    """CNI_ARGS ("K8S_POD_NAME=a;IP=10.0.0.5/24") as a dict; raises CniError(4) when malformed."""
    out: dict[str, str] = {}
    for part in filter(None, text.split(";")):
        key, sep, value = part.partition("=")
        if not sep or not key or not _ARG_CHARS.issuperset(key):
            raise CniError(INVALID_ENVIRONMENT, "CNI_ARGS: each item must be KEY=VALUE, separated by ';'",
                           f"got {part[:80]!r}")
        out[key] = value
    return out


def parse(env: Mapping[str, str], stdin: bytes) -> Request:
    command = env.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        raise CniError(INVALID_ENVIRONMENT, "CNI_COMMAND must be one of " + ", ".join(COMMANDS),
                       f"got {command[:40]!r}")
    if command == "VERSION":
        return Request(command, _version_of(stdin))
    try:
        config = fastjson.loads(stdin.decode("utf-8")) if stdin.strip() else None
    except (UnicodeDecodeError, ValueError) as e:
        raise CniError(DECODE_FAILURE, "the network configuration on stdin is not JSON", str(e)[:200]) from None
    if not isinstance(config, dict):
        raise CniError(DECODE_FAILURE, "the network configuration on stdin must be a JSON object")
    version = str(config.get("cniVersion", ""))
    if version not in SUPPORTED_VERSIONS:
        raise CniError(INCOMPATIBLE_VERSION, f"cniVersion {version!r} is not supported",
                       "supported: " + ", ".join(SUPPORTED_VERSIONS))
    if command in ("STATUS", "GC"):
        if version == "1.0.0":
            raise CniError(INCOMPATIBLE_VERSION, f"{command} needs cniVersion 1.1.0")
        return Request(command, version, config=config)
    _check_config(config)
    container = env.get("CNI_CONTAINERID", "")
    if not _container_id_ok(container):
        raise CniError(INVALID_ENVIRONMENT, "CNI_CONTAINERID must start with a letter or digit and hold only "
                       "letters, digits, '_', '.' and '-'", f"got {container[:80]!r}")
    ifname = env.get("CNI_IFNAME", "")
    if not _ifname_ok(ifname):
        raise CniError(INVALID_ENVIRONMENT, "CNI_IFNAME must be an interface name (1-15 characters, no '/', ':' "
                       "or spaces)", f"got {ifname[:40]!r}")
    netns = env.get("CNI_NETNS", "")
    if command in ("ADD", "CHECK") and not netns:
        raise CniError(INVALID_ENVIRONMENT, f"CNI_NETNS is required for {command}")
    if command == "CHECK" and not isinstance(config.get("prevResult"), dict):
        raise CniError(INVALID_CONFIG, "prevResult: CHECK needs the result of the ADD")
    args = parse_args(env.get("CNI_ARGS", ""))
    if not config.get("vpc") and not args.get("VPC"):
        raise CniError(INVALID_CONFIG, "vpc: the network configuration (or CNI_ARGS VPC=...) must name a VPC, "
                       "by name or id")
    return Request(command, version, container, netns, ifname, args, config)


def _check_config(config: dict[str, Any]) -> None:
    for key in ("name", "type"):
        if not isinstance(config.get(key), str) or not config[key]:
            raise CniError(INVALID_CONFIG, f"{key}: the network configuration needs a {key}")
    for key in ("vpc", "agent_socket", "workload"):
        if key in config and not (isinstance(config[key], str) and config[key]):
            raise CniError(INVALID_CONFIG, f"{key}: must be a non-empty string")


def _version_of(stdin: bytes) -> str:
    try:
        config = fastjson.loads(stdin.decode("utf-8")) if stdin.strip() else {}
    except (UnicodeDecodeError, ValueError):
        config = {}
    version = config.get("cniVersion") if isinstance(config, dict) else None
    return version if version in SUPPORTED_VERSIONS else SUPPORTED_VERSIONS[-1]


def version_result(cni_version: str) -> dict[str, Any]:
    return {"cniVersion": cni_version, "supportedVersions": list(SUPPORTED_VERSIONS)}


def result(cni_version: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """A spec result from the agent's answer (interfaces, ips, routes): `mtu` on interfaces only
    for 1.1.0, which defines it."""
    interfaces = [dict(i) for i in body.get("interfaces", ())]
    if cni_version == "1.0.0":
        for i in interfaces:
            i.pop("mtu", None)
    out: dict[str, Any] = {"cniVersion": cni_version, "interfaces": interfaces}
    if body.get("ips"):
        out["ips"] = [dict(ip) for ip in body["ips"]]
    if body.get("routes"):
        out["routes"] = [dict(r) for r in body["routes"]]
    out["dns"] = dict(body.get("dns") or {})
    return out


def error(cni_version: str, err: CniError) -> dict[str, Any]:
    out: dict[str, Any] = {"cniVersion": cni_version, "code": err.code, "msg": err.msg}
    if err.details:
        out["details"] = err.details
    return out
