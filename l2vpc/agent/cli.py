"""`l2vpc agent run|health|teardown|ca`: run a host agent, ask one how it is, manage its TLS.

    l2vpc agent run --host host1 --underlay-ip 10.0.0.1 --listen 0.0.0.0:7600 \\
        --state-dir /var/lib/l2vpc-agent --driver linux --ca ca.pem --cert host1.pem --key host1.key
    l2vpc agent health --address 10.0.0.1:7600 --host host1 --ca ca.pem --cert engine.pem --key engine.key
    l2vpc agent ca /etc/l2vpc/pki --server host1 --ip 10.0.0.1     # creates the CA on first use
    l2vpc agent teardown --host host1 --underlay-ip 10.0.0.1 --state-dir ... --driver linux

`python -m l2vpc.agent ...` runs the same commands without loading the rest of l2vpc (the
engine, the provider): an agent process needs only this package.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import sys
from pathlib import Path

from l2vpc.agent.daemon import Agent, AgentError, run
from l2vpc.agent.drivers.base import Driver
from l2vpc.cli import CliError
from l2vpc.pki import CertificateAuthority, PkiError, TlsFiles

DRIVERS = ("linux", "memory")


# A user error: one line, exit 1 (the `l2vpc` entry point and main() below both print it so).
AgentCliError = CliError


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("agent", help="run or query a host agent")
    add_agent_subcommands(p.add_subparsers(dest="agent_command", metavar="ACTION", required=True))


def add_agent_subcommands(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("run", help="run the agent of one host (foreground; SIGTERM stops it, the dataplane stays)")
    _host_args(r)
    r.add_argument("--listen", required=True, help="HOST:PORT or unix:/absolute/path")
    _tls_args(r, "the agent's server certificate")
    r.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    r.set_defaults(func=_run)

    t = sub.add_parser("teardown", help="remove everything the agent's driver created on this host (agent stopped)")
    _host_args(t)
    t.set_defaults(func=_teardown)

    h = sub.add_parser("health", help="ask an agent how it is (prints JSON)")
    h.add_argument("--address", required=True, help="HOST:PORT or unix:/absolute/path")
    h.add_argument("--host", required=True, help="host name the agent's certificate must carry")
    _tls_args(h, "a client certificate signed by the agents' CA")
    h.add_argument("--timeout", type=float, default=5.0)
    h.set_defaults(func=_health)

    c = sub.add_parser("ca", help="create a CA (if DIR has none) and issue agent or engine certificates")
    c.add_argument("dir", help="CA directory (created 0700)")
    c.add_argument("--server", action="append", default=[], metavar="HOST", help="issue an agent certificate")
    c.add_argument("--ip", action="append", default=[], help="extra IP address for the --server certificates")
    c.add_argument("--client", action="append", default=[], metavar="NAME", help="issue a client certificate")
    c.set_defaults(func=_ca)


def _host_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", required=True, help="this host's name, as registered with the engine")
    p.add_argument("--underlay-ip", required=True, help="this host's underlay (VXLAN source) address")
    p.add_argument("--state-dir", required=True, help="where the agent keeps its accepted config and driver state")
    p.add_argument("--driver", required=True, choices=DRIVERS,
                   help="linux: program the kernel (root); memory: simulate, for tests and non-root labs")
    p.add_argument("--netns", default=None, help="linux: the host's network namespace (default: our own)")
    p.add_argument("--prefix", default="", help="linux: prefix of every namespace the driver creates")


def _tls_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--ca", required=True, help="CA certificate (PEM) that signs the other side")
    p.add_argument("--cert", required=True, help=f"{what} (PEM)")
    p.add_argument("--key", required=True, help="its private key (PEM)")


def build_driver(args: argparse.Namespace) -> Driver:
    try:
        ipaddress.IPv4Address(args.underlay_ip)
    except ValueError:
        raise AgentCliError(f"--underlay-ip: {args.underlay_ip!r} is not an IPv4 address") from None
    if args.driver == "memory":
        from l2vpc.agent.drivers.memory import MemoryDriver

        return MemoryDriver(args.host, args.underlay_ip)
    from l2vpc.agent.drivers.linux import LinuxDriver

    try:
        return LinuxDriver(args.host, args.underlay_ip, netns=args.netns, prefix=args.prefix,
                           state_dir=Path(args.state_dir) / "driver")
    except ValueError as e:  # the driver names the bad argument (e.g. a missing namespace)
        raise AgentCliError(str(e)) from None
    except FileNotFoundError as e:
        if args.netns:
            raise AgentCliError(f"--netns: network namespace {args.netns!r} does not exist") from None
        raise AgentCliError(str(e)) from None
    except PermissionError as e:
        raise AgentCliError(f"the linux driver needs root (or CAP_NET_ADMIN): {e}") from None


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tls = TlsFiles(Path(args.ca), Path(args.cert), Path(args.key))
    try:
        tls.read()  # fail with a clear message before touching anything
        driver = build_driver(args)
        try:
            agent = Agent(driver, Path(args.state_dir), driver_name=args.driver)
        except BaseException:
            driver.close()
            raise
        try:
            return run(agent, args.listen, tls)
        except BaseException:
            agent.close()
            raise
    except (AgentError, PkiError) as e:
        raise AgentCliError(str(e)) from None


def _teardown(args: argparse.Namespace) -> int:
    driver = build_driver(args)
    try:
        driver.teardown()
    finally:
        driver.close()
    (Path(args.state_dir) / "desired.json").unlink(missing_ok=True)
    return 0


def _health(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf.json_format import MessageToDict

    from l2vpc._proto import agent_pb2 as pb
    from l2vpc.agent.channel import open_channel, stub

    try:
        channel = open_channel(args.address, args.host, TlsFiles(Path(args.ca), Path(args.cert), Path(args.key)))
    except PkiError as e:
        raise AgentCliError(str(e)) from None
    with channel:
        try:
            reply = stub(channel).Health(pb.HealthRequest(), timeout=args.timeout)
        except grpc.RpcError as e:
            raise AgentCliError(f"agent {args.host} at {args.address}: {e.code().name}: {e.details()}") from None
    print(json.dumps(MessageToDict(reply, always_print_fields_with_no_presence=True), indent=2, sort_keys=True))
    return 0


def _ca(args: argparse.Namespace) -> int:
    if not args.server and not args.client:
        raise AgentCliError("ca: name at least one --server HOST or --client NAME to issue")
    try:
        ca = CertificateAuthority.open(Path(args.dir))
        for name in args.server:
            files = ca.issue_server(name, ips=args.ip)
            print(f"server {name}: {files.cert} {files.key}")
        for name in args.client:
            files = ca.issue_client(name)
            print(f"client {name}: {files.cert} {files.key}")
    except (PkiError, ValueError) as e:
        raise AgentCliError(str(e)) from None
    print(f"CA: {ca.ca_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m l2vpc.agent`."""
    parser = argparse.ArgumentParser(prog="l2vpc agent", description="the l2vpc host agent")
    add_agent_subcommands(parser.add_subparsers(dest="agent_command", metavar="ACTION", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AgentCliError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
