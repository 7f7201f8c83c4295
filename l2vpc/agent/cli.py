"""`l2vpc agent run|fleet|health|teardown|ca`: run a host agent (or a fleet of simulated ones),
ask one how it is, manage its TLS.

    l2vpc agent run --host host1 --underlay-ip 10.0.0.1 --listen 0.0.0.0:7600 \\
        --state-dir /var/lib/l2vpc-agent --driver linux --ca ca.pem --cert host1.pem --key host1.key \\
        [--controller 10.0.0.254:7443 --controller-ca ctl-ca.pem --token-file /etc/l2vpc/agent.token \\
         --region us-east [--role edge --location nyc1 ...]]
    l2vpc agent fleet --hosts hosts.json --state-dir /var/tmp/fleet1 --listen 0.0.0.0:7601 \\
        --ca ca.pem --cert fleet1.pem --key fleet1.key [--controller ... --token-file tokens]
    l2vpc agent health --address 10.0.0.1:7600 --host host1 --ca ca.pem --cert engine.pem --key engine.key
    l2vpc agent ca /etc/l2vpc/pki --server host1 --ip 10.0.0.1     # creates the CA on first use
    l2vpc agent ca /etc/l2vpc/pki --fleet fleet1 --hosts hosts.json  # one certificate naming every host
    l2vpc agent teardown --host host1 --underlay-ip 10.0.0.1 --state-dir ... --driver linux

With `--controller`, the agent registers its host with the controller (retrying until it
answers) and heartbeats, and (with `--cni-socket`) creates Pods' on-demand attachments there at
CNI ADD, deleting them at DEL (pod_control.py); the token (role agent, bound to the host) comes
from `--token-file` (mode 0600) or $L2VPC_AGENT_TOKEN, never from an argument (`ps` shows
arguments to everyone).

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
from typing import Any

from l2vpc.agent.daemon import Agent, AgentError, run
from l2vpc.agent.drivers.base import Driver
from l2vpc.agent.heartbeat import (
    ControllerLink,
    ControllerSettings,
    HeartbeatError,
    HeartbeatScheduler,
    TokenSource,
)
from l2vpc.agent.overlay_probe import PROBE_PORT, OverlayProber
from l2vpc.agent.session_watch import SessionWatch
from l2vpc.cli import CliError
from l2vpc.observability.listener import Listener, ListenerError
from l2vpc.observability.logs import add_log_arguments
from l2vpc.observability.logs import configure as configure_logs
from l2vpc.pki import CertificateAuthority, PkiError, TlsFiles
from l2vpc.stop_signals import StopSignals

DRIVERS = ("linux", "memory")
# Seconds a heartbeat may reuse the last facts read (a converge reads them too). The Linux
# driver's facts come from cached netlink views, bgpd's vty socket and vici: about 1 ms for a
# host with 10 ports and a DHCP server, so once per heartbeat is cheap; the floor only bounds
# the cost should a controller ask for very frequent heartbeats.
DIGEST_MAX_AGE = {"memory": 0.0, "linux": 1.0}


# A user error: one line, exit 1 (the `l2vpc` entry point and main() below both print it so).
AgentCliError = CliError


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("agent", help="run or query a host agent")
    add_agent_subcommands(p.add_subparsers(dest="agent_command", metavar="ACTION", required=True))


def add_agent_subcommands(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("run", help="run the agent of one host (foreground; SIGTERM stops it, the dataplane stays)")
    _host_args(r)
    r.add_argument("--listen", required=True, action="append",
                   help="HOST:PORT or unix:/absolute/path (repeat to listen on several)")
    _tls_args(r, "the agent's server certificate")
    _controller_args(r)
    r.add_argument("--region", default=None, help="with --controller: the host's region")
    r.add_argument("--role", default="compute", choices=("compute", "edge"), help="with --controller (default compute)")
    r.add_argument("--location", default=None, help="with --controller, edge hosts: the on-ramp location served")
    r.add_argument("--handoff", default=None, help="edge hosts: the device facing the premises (default xc0)")
    r.add_argument("--outside", default=None, help="edge hosts: the device on the outside network (default out0)")
    r.add_argument("--public-cidr", default=None, help="edge hosts: public addresses VPN gateways get")
    r.add_argument("--public-gateway", default=None, help="edge hosts: next hop of the public addresses")
    r.add_argument("--agent-address", default=None,
                   help="with --controller: where the controller dials this agent (default: the first TCP "
                        "--listen address, with 0.0.0.0 replaced by the underlay address)")
    r.add_argument("--digest-max-age", type=float, default=None,
                   help="seconds a heartbeat may reuse the last facts read (default: 0 memory, 1 linux; "
                        "every converge reads them anyway)")
    r.add_argument("--virtual-servers", default="tap", choices=("tap", "netns"),
                   help="how virtual servers' ports are realised: tap (default: devices a hypervisor opens, "
                        "named l2t<id tail>) or netns (a namespace with net1..net10, as the lab runs them)")
    r.add_argument("--cni-socket", default=None, metavar="PATH",
                   help="answer the l2vpc-cni plugin's requests on this unix socket (Pods; the plugin's "
                        "default is /run/l2vpc/cni.sock)")
    r.add_argument("--metrics-address", default=None, metavar="HOST:PORT",
                   help="serve Prometheus /metrics, /healthz and /readyz over HTTP here (default: off)")
    add_log_arguments(r)
    r.add_argument("--probe-port", type=int, default=PROBE_PORT, metavar="PORT",
                   help=f"linux: probe the VXLAN peers' underlay paths (reachability, path MTU) over UDP on "
                        f"the underlay address at this port, and answer their probes (default {PROBE_PORT}; "
                        "0: off)")
    r.set_defaults(func=_run)

    f = sub.add_parser("fleet", help="run many simulated hosts (memory driver) behind one server, for scale tests")
    f.add_argument("--hosts", required=True,
                   help="JSON list of host documents (name, region, underlay_ip; role, location, ...)")
    f.add_argument("--state-dir", required=True, help="parent of the hosts' state dirs (one per host)")
    f.add_argument("--listen", required=True, action="append", help="HOST:PORT or unix:/absolute/path (repeatable)")
    _tls_args(f, "the fleet's server certificate, naming every host (`l2vpc agent ca DIR --fleet NAME --hosts FILE`)")
    _controller_args(f)
    f.add_argument("--agent-address", default=None,
                   help="with --controller: where the controller dials the fleet (default: the first TCP --listen)")
    f.add_argument("--workers", type=int, default=16, help="gRPC server threads (default 16)")
    add_log_arguments(f)
    f.set_defaults(func=_fleet)

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
    c.add_argument("--fleet", default=None, metavar="NAME",
                   help="issue a fleet's server certificate NAME naming every host of --hosts")
    c.add_argument("--hosts", default=None, help="with --fleet: the fleet's hosts file")
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


def _controller_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--controller", action="append", default=[], metavar="HOST:PORT",
                   help="register with this controller and heartbeat (repeat for several controllers)")
    p.add_argument("--controller-ca", default=None, help="CA certificate (PEM) of the controllers' TLS")
    p.add_argument("--controller-name", default=None,
                   help="name the controllers' certificate carries (default: the host part of the address)")
    p.add_argument("--token-file", default=None,
                   help="agent token(s), mode 0600: one TOKEN line, or HOST TOKEN lines (a fleet); "
                        "default $L2VPC_AGENT_TOKEN")


_CONTROLLER_ONLY = ("controller_ca", "controller_name", "token_file", "region", "location", "agent_address",
                    "handoff", "outside", "public_cidr", "public_gateway")


def controller_settings(args: argparse.Namespace) -> tuple[ControllerSettings, TokenSource] | None:
    """The controller flags, checked; None without --controller (then none may be given)."""
    if not args.controller:
        given = [f"--{k.replace('_', '-')}" for k in _CONTROLLER_ONLY if getattr(args, k, None)]
        if given:
            raise AgentCliError(f"{', '.join(given)}: only with --controller")
        return None
    if not args.controller_ca:
        raise AgentCliError("--controller-ca: required with --controller (the CA of the controllers' certificates)")
    addresses = tuple(a.strip() for item in args.controller for a in item.split(",") if a.strip())
    try:
        settings = ControllerSettings(addresses, Path(args.controller_ca), args.controller_name)
        settings.read_ca()
        tokens = TokenSource.from_file(Path(args.token_file)) if args.token_file else TokenSource.from_env()
    except HeartbeatError as e:
        raise AgentCliError(str(e)) from None
    if tokens is None:
        raise AgentCliError("--token-file: required with --controller (or set $L2VPC_AGENT_TOKEN)")
    return settings, tokens


def default_agent_address(listens: list[str], underlay_ip: str | None) -> str:
    """Where a controller dials us: the first TCP listen address (a wildcard one made concrete
    with the underlay address), else the first unix socket (a controller on this machine)."""
    for listen in listens:
        if listen.startswith("unix:"):
            continue
        host, _, port = listen.rpartition(":")
        if host in ("0.0.0.0", "", "[::]", "::"):
            if not underlay_ip:
                raise AgentCliError(f"--agent-address: required when listening on {listen} (which address do "
                                    "controllers dial?)")
            host = underlay_ip
        return f"{host}:{port}"
    return listens[0]


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


def build_prober(args: argparse.Namespace) -> OverlayProber | None:
    """The overlay prober of a Linux host (None with the memory driver or --probe-port 0, or when
    its port cannot be opened), its socket opened in the host's namespace."""
    if args.driver != "linux" or args.probe_port == 0:
        return None
    if not 0 < args.probe_port < 65536:
        raise AgentCliError(f"--probe-port: {args.probe_port} is outside 1..65535 (0: off)")
    import socket

    from l2vpc.agent.drivers.linux import netns

    try:
        return OverlayProber(args.underlay_ip, lambda: netns.socket_in(args.netns, socket.AF_INET, socket.SOCK_DGRAM),
                             port=args.probe_port)
    except OSError as e:
        # The dataplane does not depend on it: run without, and say so loudly.
        logging.getLogger("l2vpc.agent").warning("overlay probes are off: %s", e.strerror or e)
        return None


def _host_document(args: argparse.Namespace) -> dict[str, Any]:
    if not args.region:
        raise AgentCliError("--region: required with --controller (the region the host serves)")
    if args.role == "edge" and not args.location:
        raise AgentCliError("--location: an edge host needs the on-ramp location it serves, e.g. nyc1")
    if args.role == "compute" and (args.location or args.public_cidr):
        raise AgentCliError("--location, --public-cidr: only for --role edge")
    doc = {"name": args.host, "region": args.region, "role": args.role, "underlay_ip": args.underlay_ip,
           "agent_address": args.agent_address or default_agent_address(args.listen, args.underlay_ip),
           "location": args.location, "handoff": args.handoff, "outside": args.outside,
           "public_cidr": args.public_cidr, "public_gateway": args.public_gateway}
    return {k: v for k, v in doc.items() if v is not None}


def _logging(args: argparse.Namespace) -> None:
    configure_logs(args.log_level, args.log_format)


def _listener(address: str | None, agent: Agent, beats: HeartbeatScheduler | None,
              prober: OverlayProber | None) -> Listener | None:
    """The started metrics listener (`--metrics-address`), or None when it is off."""
    if address is None:
        return None
    from l2vpc.agent.metrics import AgentMetrics

    metrics = AgentMetrics(agent, beats, prober)
    try:
        listener = Listener(address, metrics.metrics, ready=metrics.ready)
        listener.start()
    except ListenerError as e:
        raise AgentCliError(f"--metrics-address: {e}") from None
    return listener


def _session_watch(driver: object, beats: HeartbeatScheduler | None, host: str) -> SessionWatch | None:
    """With a controller and a driver that runs BGP sessions: heartbeat at once when one changes."""
    sessions = getattr(driver, "sessions", None)
    if beats is None or sessions is None:
        return None
    watch = SessionWatch(sessions, lambda: beats.nudge(host))
    watch.start()
    return watch


def _run(args: argparse.Namespace) -> int:
    _logging(args)
    tls = TlsFiles(Path(args.ca), Path(args.cert), Path(args.key))
    controller = controller_settings(args)
    doc = _host_document(args) if controller is not None else None
    try:
        tls.read()  # fail with a clear message before touching anything
        driver = build_driver(args)
        try:
            agent = Agent(driver, Path(args.state_dir), driver_name=args.driver,
                          virtual_servers=args.virtual_servers)
        except BaseException:
            driver.close()
            raise
        prober = None
        try:
            prober = build_prober(args)
            if prober is not None:
                agent.attach_overlay(prober)
                prober.start()
            beats = None
            pods = None
            if controller is not None and doc is not None:
                settings, tokens = controller
                tokens.require([args.host])
                max_age = args.digest_max_age if args.digest_max_age is not None else DIGEST_MAX_AGE[args.driver]
                if not 0 <= max_age <= 3600:
                    raise AgentCliError(f"--digest-max-age: {max_age} is outside 0..3600 seconds")
                beats = HeartbeatScheduler(settings, [ControllerLink(agent, doc, tokens, digest_max_age=max_age)])
                if args.cni_socket:  # Pods' on-demand attachments go through the controller
                    from l2vpc.agent.pod_control import PodControl

                    pods = PodControl(settings, tokens, args.host)
            listener = _listener(args.metrics_address, agent, beats, prober)
            watch = _session_watch(driver, beats, args.host)
            try:
                return run(agent, args.listen, tls, heartbeats=beats, cni_socket=args.cni_socket, pod_control=pods)
            finally:
                if watch is not None:
                    watch.close()
                if listener is not None:
                    listener.stop()
        except BaseException:
            agent.close()
            raise
        finally:
            if prober is not None:
                prober.close()
    except (AgentError, PkiError, HeartbeatError) as e:
        raise AgentCliError(str(e)) from None


def _fleet(args: argparse.Namespace) -> int:
    from l2vpc.agent.fleet import Fleet, FleetError, load_hosts, serve_fleet

    _logging(args)
    log = logging.getLogger("l2vpc.agent.fleet")
    tls = TlsFiles(Path(args.ca), Path(args.cert), Path(args.key))
    controller = controller_settings(args)
    if not 1 <= args.workers <= 256:
        raise AgentCliError(f"--workers: {args.workers} is outside 1..256")
    try:
        hosts = load_hosts(Path(args.hosts))
        tls.read()
        if controller is not None:
            controller[1].require([h["name"] for h in hosts])
        stop = StopSignals(log)
        fleet = Fleet.open(hosts, Path(args.state_dir))
    except (FleetError, PkiError, HeartbeatError, AgentError) as e:
        raise AgentCliError(str(e)) from None
    beats = None
    server = None
    try:
        server, addresses = serve_fleet(fleet, args.listen, tls, workers=args.workers)
        fleet.start()
        if controller is not None:
            settings, tokens = controller
            address = args.agent_address or default_agent_address(addresses, None)
            links = [ControllerLink(fleet.agents[h["name"]], {**h, "agent_address": address}, tokens)
                     for h in hosts]
            beats = HeartbeatScheduler(settings, links, per_host_logs=False)
            beats.start()
        log.info("fleet of %d hosts listening on %s", len(hosts), ", ".join(addresses))
        stop.wait()
    except AgentError as e:
        raise AgentCliError(str(e)) from None
    finally:
        if beats is not None:
            beats.stop()
        if server is not None:
            server.stop(grace=2).wait()
        fleet.close()
    return 0


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
    from l2vpc.agentapi.channel import host_metadata, open_channel, stub

    try:
        channel = open_channel(args.address, args.host, TlsFiles(Path(args.ca), Path(args.cert), Path(args.key)))
    except PkiError as e:
        raise AgentCliError(str(e)) from None
    with channel:
        try:
            reply = stub(channel).Health(pb.HealthRequest(), timeout=args.timeout, metadata=host_metadata(args.host))
        except grpc.RpcError as e:
            raise AgentCliError(f"agent {args.host} at {args.address}: {e.code().name}: {e.details()}") from None
    print(json.dumps(MessageToDict(reply, always_print_fields_with_no_presence=True), indent=2, sort_keys=True))
    return 0


def _ca(args: argparse.Namespace) -> int:
    from l2vpc.agent.fleet import FleetError, issue_fleet_certificate, load_hosts

    if not args.server and not args.client and not args.fleet:
        raise AgentCliError("ca: name at least one --server HOST, --client NAME or --fleet NAME to issue")
    if bool(args.fleet) != bool(args.hosts):
        raise AgentCliError("--fleet and --hosts go together: the certificate names every host of the file")
    try:
        hosts = load_hosts(Path(args.hosts)) if args.hosts else []
        ca = CertificateAuthority.open(Path(args.dir))
        for name in args.server:
            files = ca.issue_server(name, ips=args.ip)
            print(f"server {name}: {files.cert} {files.key}")
        for name in args.client:
            files = ca.issue_client(name)
            print(f"client {name}: {files.cert} {files.key}")
        if args.fleet:
            files = issue_fleet_certificate(ca, args.fleet, [h["name"] for h in hosts], ips=args.ip)
            print(f"fleet {args.fleet} ({len(hosts)} hosts): {files.cert} {files.key}")
    except (PkiError, ValueError, FleetError) as e:
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
