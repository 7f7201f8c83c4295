"""`l2vpc controller ...`: run a controller, set up its TLS, manage API tokens, ask its status.

    l2vpc controller pki init /etc/l2vpc/pki --name ctl1.example.net --ip 10.0.0.5
    export L2VPC_SECRET_KEY=...        # the same Fernet key on every controller of a cluster
    l2vpc controller run --store postgresql://l2vpc@db/l2vpc --listen 0.0.0.0:7700 --pki /etc/l2vpc/pki
    l2vpc controller token create --store ... --role tenant --tenant acme --ttl 24h   # prints it once
    l2vpc controller host enroll host1 --store ... --region us-east --underlay-ip 10.0.0.11 \
        --token-output host1.token --no-expiry       # what host1 is, fixed here; and its agent token
    l2vpc controller host enroll --store ... --hosts hosts.json --token-output fleet.tokens --ttl 30d
    l2vpc controller token list --store ...
    l2vpc controller token revoke --store ... tok-0123456789ab
    l2vpc controller quota set --store ... --tenant acme vpc=50 vpn=10   # or --default
    l2vpc controller quota show --store ... --tenant acme
    l2vpc controller status --endpoint ctl1.example.net:7700 --token-file admin.token --ca ca.pem
    l2vpc controller status        # the local control plane `l2vpc lab up` runs

`--store` defaults to env L2VPC_STORE, so a URL with a password need not appear in `ps`
(libpq's PGPASSWORD and ~/.pgpass work too). Store URLs are never echoed with their password.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import stat
import sys
import time
from pathlib import Path
from typing import Any

from l2vpc.cli import CliError
from l2vpc.controller import auth
from l2vpc.controller.server import (
    DEFAULT_MAX_REQUEST_BYTES,
    SERVER_CERT_NAME,
    ControllerError,
    ControllerSettings,
    default_controller_id,
    run,
)
from l2vpc.engine import quotas
from l2vpc.engine.agent_client import CLIENT_NAME
from l2vpc.engine.errors import ValidationError
from l2vpc.engine.store import Store, open_store
from l2vpc.observability.logs import add_log_arguments
from l2vpc.observability.logs import configure as configure_logs
from l2vpc.pki import CertificateAuthority, PkiError, write_private

STORE_ENV = "L2VPC_STORE"
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """Seconds from `90`, `90s`, `30m`, `24h`, `7d`, `2w` or combinations like `1h30m`."""
    text = text.strip().lower()
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not text or pos != len(text):
        raise ValueError(f"{text!r} is not a duration like 90s, 30m, 24h, 7d or 1h30m")
    return total


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("controller", help="run a controller, manage its TLS and API tokens, ask its status")
    csub = p.add_subparsers(dest="controller_command", metavar="ACTION", required=True)

    r = csub.add_parser("run", help="run a controller (foreground; SIGTERM/SIGINT stop it gracefully)")
    _store_arg(r)
    r.add_argument("--listen", required=True, help="HOST:PORT (port 0: any free port) or unix:/absolute/path")
    r.add_argument("--pki", required=True, type=Path,
                   help=f"CA directory with ca.pem, {SERVER_CERT_NAME}.pem/.key and {CLIENT_NAME}.pem/.key")
    r.add_argument("--id", default=None, help="this controller's name in status and leadership "
                   "(default: <hostname>-<pid>)")
    r.add_argument("--heartbeat-interval", type=_duration, default=2.0, metavar="S",
                   help="how often agents heartbeat (default 2s)")
    r.add_argument("--down-after", type=_duration, default=10.0, metavar="S",
                   help="a host silent this long is marked down and its services move (default 10s)")
    r.add_argument("--max-heartbeat-rate", type=float, default=150.0, metavar="N",
                   help="heartbeats/s the cluster is paced to: with more hosts than interval × N, agents are "
                        "told a longer interval and --down-after stretches by the same factor (default 150)")
    r.add_argument("--resync-interval", type=_duration, default=60.0, metavar="S",
                   help="re-read every host at least this often (default 60s)")
    r.add_argument("--max-request-bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES, metavar="N",
                   help="larger requests fail with RESOURCE_EXHAUSTED (default 1 MiB)")
    r.add_argument("--workers", type=int, default=32, help="threads serving API calls (default 32)")
    r.add_argument("--converge-timeout", type=_duration, default=300.0, metavar="S",
                   help="how long Converge waits when the request names no timeout (default 300s)")
    r.add_argument("--ready-file", type=Path, default=None,
                   help="write the listen address here once serving (removed on stop)")
    r.add_argument("--metrics-address", default=None, metavar="HOST:PORT",
                   help="serve Prometheus /metrics, /healthz, /readyz and the status page (/status) over "
                        "HTTP here (default: off); the page answers loopback clients, others need an admin token")
    add_log_arguments(r)
    r.set_defaults(func=_run)

    k = csub.add_parser("pki", help="the controller's TLS material")
    ksub = k.add_subparsers(dest="pki_command", metavar="ACTION", required=True)
    i = ksub.add_parser("init", help="create the CA (if DIR has none), the controller's server certificate "
                        "and the client certificate it reaches agents with")
    i.add_argument("dir", type=Path, help="CA directory (created 0700)")
    i.add_argument("--name", action="append", default=[], metavar="HOST",
                   help="DNS name clients reach the controller by (repeat for more)")
    i.add_argument("--ip", action="append", default=[], help="IP address clients reach it by (repeat)")
    i.set_defaults(func=_pki_init)

    t = csub.add_parser("token", help="API tokens (stored as digests only)")
    tsub = t.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    tc = tsub.add_parser("create", help="create a token and print it once")
    _store_arg(tc)
    tc.add_argument("--role", required=True, choices=auth.ROLES)
    tc.add_argument("--tenant", default="", help="role tenant: the tenant it acts for")
    tc.add_argument("--host", default="", help="role agent: the host it registers and heartbeats for")
    _ttl_args(tc)
    tc.add_argument("--output", type=Path, default=None,
                    help="write the token to this file (mode 0600) instead of stdout")
    tc.set_defaults(func=_token_create)
    tl = tsub.add_parser("list", help="list tokens (never their secrets)")
    _store_arg(tl)
    tl.add_argument("--json", action="store_true", help="print JSON")
    tl.set_defaults(func=_token_list)
    tr = tsub.add_parser("revoke", help="revoke a token (takes effect within seconds)")
    _store_arg(tr)
    tr.add_argument("id", help="token id (tok-...)")
    tr.set_defaults(func=_token_revoke)

    q = csub.add_parser("quota", help="per-tenant quotas: objects of each kind a tenant may hold")
    qsub = q.add_subparsers(dest="quota_command", metavar="ACTION", required=True)
    qs = qsub.add_parser("set", help="set limits of a tenant (or, with --default, of every tenant)")
    _store_arg(qs)
    who = qs.add_mutually_exclusive_group(required=True)
    who.add_argument("--tenant", help="the tenant ('' for the embedded engine's state)")
    who.add_argument("--default", action="store_true", help="the limits of every tenant without its own")
    qs.add_argument("limits", nargs="+", metavar="KIND=N",
                    help=f"kinds: {', '.join(quotas.LIMITED)}; defaults "
                    + ", ".join(f"{k}={v}" for k, v in quotas.DEFAULT_QUOTAS.items()))
    qs.set_defaults(func=_quota_set)
    qg = qsub.add_parser("show", help="a tenant's objects and limits per kind")
    _store_arg(qg)
    qg.add_argument("--tenant", required=True)
    qg.add_argument("--json", action="store_true", help="print JSON")
    qg.set_defaults(func=_quota_show)

    h = csub.add_parser("host", help="enroll hosts: what a host is (role, region, location, addresses) is the "
                        "operator's word, never its agent's")
    hsub = h.add_subparsers(dest="host_command", metavar="ACTION", required=True)
    he = hsub.add_parser("enroll", help="record what a host is (create, or change as the operator); its agent may "
                         "then register, with exactly this identity")
    _store_arg(he)
    he.add_argument("name", nargs="?", default=None, help="the host's name (or --hosts)")
    he.add_argument("--hosts", type=Path, default=None,
                    help="JSON list of host documents (name, region, underlay_ip; role, location, public_cidr, ...), "
                         "as `agent fleet --hosts` and `lab hosts` take and print")
    he.add_argument("--region", default=None, help="the region the host serves")
    he.add_argument("--underlay-ip", default=None, help="its underlay (VXLAN source) address")
    he.add_argument("--role", default=None, choices=("compute", "edge"), help="default compute")
    he.add_argument("--location", default=None, help="edge hosts: the on-ramp location served, e.g. nyc1")
    he.add_argument("--public-cidr", default=None, help="edge hosts: the public block VPN gateways get addresses from")
    he.add_argument("--public-gateway", default=None, help="edge hosts: next hop of the public addresses")
    he.add_argument("--handoff", default=None, help="edge hosts: the device facing the premises (default xc0)")
    he.add_argument("--outside", default=None, help="edge hosts: the device on the outside network (default out0)")
    he.add_argument("--token-output", type=Path, default=None,
                    help="also create an agent token per host and write it here (mode 0600): the token for one "
                         "host, HOST TOKEN lines for --hosts (as `agent fleet` and `lab up --controller-tokens` read)")
    _ttl_args(he, "with --token-output: ")
    he.set_defaults(func=_host_enroll)

    s = csub.add_parser("status", help="leader, revisions, host liveness and recent reconciler events")
    s.add_argument("--endpoint", default=None, help="HOST:PORT of any controller, or a comma list of several "
                   "(tried in turn); default: the local control plane `l2vpc lab up` runs (its record beside "
                   "the state), with its admin token and CA")
    s.add_argument("--token-file", type=Path, default=None, help="file holding an admin token (with --endpoint)")
    s.add_argument("--ca", type=Path, default=None,
                   help="CA certificate (PEM) the controller's certificate is from (with --endpoint)")
    s.add_argument("--tls-name", default=None, help="name to expect in the controller's certificate "
                   "(default: the endpoint's host)")
    s.add_argument("--timeout", type=_duration, default=10.0)
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=_status)


def _ttl_args(p: argparse.ArgumentParser, prefix: str = "") -> None:
    p.add_argument("--ttl", type=_signed_duration, default=None,
                   help=f"{prefix}the token's lifetime, e.g. 24h or 30d (more than 0, at most 10 years)")
    p.add_argument("--no-expiry", action="store_true", help=f"{prefix}a token that never expires (instead of --ttl)")


def _signed_duration(text: str) -> float:
    """A duration, negative ones too (so `--ttl=-1h` is refused with the rule, not a parse error)."""
    text = text.strip()
    return -_duration(text[1:]) if text.startswith("-") else _duration(text)


def _token_ttl(args: argparse.Namespace) -> float | None:
    """The TTL the flags ask for (None: never expires); CliError naming --ttl otherwise."""
    if args.no_expiry:
        if args.ttl is not None:
            raise CliError("--ttl, --no-expiry: give one of them, not both")
        return None
    if args.ttl is None:
        raise CliError("--ttl: required: the token's lifetime, e.g. 24h or 30d (more than 0, at most 10 years); "
                       "for a token that never expires give --no-expiry")
    try:
        auth.check_ttl(args.ttl)
    except ValidationError:
        raise CliError(f"--ttl: {args.ttl:g} s is not allowed: give more than 0 and at most 10 years (e.g. 24h, "
                       "30d); for a token that never expires give --no-expiry") from None
    return float(args.ttl)


def _store_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", default=os.environ.get(STORE_ENV),
                   help=f"postgresql:// URL or SQLite path (default: env {STORE_ENV})")


def _store_url(args: argparse.Namespace) -> str:
    if not args.store:
        raise CliError(f"--store: give the state store (postgresql:// URL or SQLite path) or set {STORE_ENV}")
    return str(args.store)


# ---------------------------------------------------------------------- run
def _run(args: argparse.Namespace) -> int:
    configure_logs(args.log_level, args.log_format)
    settings = ControllerSettings(
        store=_store_url(args), listen=args.listen, pki_dir=args.pki,
        controller_id=args.id or default_controller_id(),
        heartbeat_interval=args.heartbeat_interval, down_after=args.down_after,
        resync_interval=args.resync_interval, max_heartbeat_rate=args.max_heartbeat_rate,
        max_request_bytes=args.max_request_bytes,
        workers=args.workers, converge_timeout=args.converge_timeout, ready_file=args.ready_file,
        metrics_address=args.metrics_address,
    )
    try:
        return run(settings)
    except (ControllerError, PkiError) as e:
        raise CliError(str(e)) from None


# ---------------------------------------------------------------------- pki
def _pki_init(args: argparse.Namespace) -> int:
    try:
        ca = CertificateAuthority.open(args.dir)
        server = ca.issue_server(SERVER_CERT_NAME, dns_names=args.name, ips=args.ip)
        print(f"controller certificate: {server.cert} {server.key}")
        client = ca.files(CLIENT_NAME)
        if not (client.cert.exists() and client.key.exists()):
            client = ca.issue_client(CLIENT_NAME)
        print(f"client certificate for agents: {client.cert} {client.key}")
    except (PkiError, ValueError) as e:
        raise CliError(str(e)) from None
    print(f"CA: {ca.ca_path}")
    return 0


# ---------------------------------------------------------------------- tokens
def _open(args: argparse.Namespace) -> Store:
    return open_store(_store_url(args))


def _token_create(args: argparse.Namespace) -> int:
    try:
        auth.validate_scope(args.role, args.tenant, args.host)
    except ValidationError as e:
        raise CliError(_options(e)) from None
    ttl = _token_ttl(args)
    store = _open(args)
    try:
        token_id, text = auth.create_token(store, args.role, tenant=args.tenant, host=args.host, ttl=ttl)
    except ValidationError as e:
        raise CliError(_options(e)) from None
    finally:
        store.close()
    scope = f" for tenant {args.tenant}" if args.tenant else f" for host {args.host}" if args.host else ""
    expiry = _expiry(ttl)
    if args.output is not None:
        write_private(args.output, (text + "\n").encode())
        print(f"token {token_id} ({args.role}{scope}, {expiry}) written to {args.output}", file=sys.stderr)
    else:
        print(f"token {token_id} ({args.role}{scope}, {expiry}); it is shown only this once", file=sys.stderr)
        print(text, flush=True)
    return 0


def _options(e: ValidationError) -> str:
    """A ValidationError's problems naming the command-line options, not the fields."""
    return "; ".join(f"--{p.replace('_', '-')}: {m}" if p else m for p, m in e.problems)


def _expiry(ttl: float | None) -> str:
    return f"expires {auth.format_time(time.time() + ttl)}" if ttl is not None else "never expires"


# ---------------------------------------------------------------------- hosts
_HOST_FLAGS = ("region", "underlay_ip", "role", "location", "public_cidr", "public_gateway", "handoff", "outside")


def _host_documents(args: argparse.Namespace) -> list[dict[str, Any]]:
    flags = {k: getattr(args, k) for k in _HOST_FLAGS if getattr(args, k) is not None}
    if args.hosts is not None:
        given = [f"--{k.replace('_', '-')}" for k in flags] + (["NAME"] if args.name else [])
        if given:
            raise CliError(f"{', '.join(given)}: not with --hosts (the file holds every host's document)")
        try:
            docs = json.loads(args.hosts.read_text())
        except OSError as e:
            raise CliError(f"--hosts: cannot read {args.hosts}: {e.strerror}") from None
        except ValueError as e:
            raise CliError(f"--hosts: {args.hosts} is not JSON ({e})") from None
        if not isinstance(docs, list) or not docs:
            raise CliError(f"--hosts: {args.hosts} must hold a non-empty JSON list of host documents")
        # Where a host's agent listens is the agent's to say (lab and fleet files may carry it).
        return [{k: v for k, v in d.items() if k != "agent_address"} if isinstance(d, dict) else d for d in docs]
    if not args.name:
        raise CliError("NAME: give the host's name (or --hosts FILE)")
    missing = [f"--{k.replace('_', '-')}" for k in ("region", "underlay_ip") if k not in flags]
    if missing:
        raise CliError(f"{', '.join(missing)}: required to enroll a host")
    return [{"name": args.name, **flags}]


def _host_enroll(args: argparse.Namespace) -> int:
    from l2vpc.controller.enrollment import enroll_hosts

    docs = _host_documents(args)
    ttl = _token_ttl(args) if args.token_output is not None else None
    if args.token_output is None and (args.ttl is not None or args.no_expiry):
        raise CliError("--ttl, --no-expiry: only with --token-output (they are the agent tokens' lifetime)")
    store = _open(args)
    try:
        try:
            hosts = enroll_hosts(store, docs)
        except ValidationError as e:
            # One host from flags: name the options; from a file: the documents' paths.
            if args.hosts is None:
                raise CliError(_options(ValidationError([(p.removeprefix("hosts[0]."), m)
                                                          for p, m in e.problems]))) from None
            raise CliError(f"--hosts: {e}") from None
        tokens = [(h.name, auth.create_token(store, "agent", host=h.name, ttl=ttl)[1]) for h in hosts] \
            if args.token_output is not None else []
    finally:
        store.close()
    for h in hosts:
        edge = f" at {h.location}" + (f", public {h.public_cidr}" if h.public_cidr else "") if h.role == "edge" else ""
        print(f"enrolled {h.name}: {h.role} in {h.region}{edge}, underlay {h.underlay_ip}", file=sys.stderr)
    if tokens:
        text = tokens[0][1] + "\n" if args.name else "".join(f"{n} {t}\n" for n, t in tokens)
        write_private(args.token_output, text.encode())
        print(f"{len(tokens)} agent token{'s' if len(tokens) > 1 else ''} ({_expiry(ttl)}) written to "
              f"{args.token_output}", file=sys.stderr)
    return 0


def _token_list(args: argparse.Namespace) -> int:
    store = _open(args)
    try:
        tokens = auth.list_tokens(store)
    finally:
        store.close()
    now = time.time()
    if args.json:
        print(json.dumps([{"id": t.id, "role": t.role, "tenant": t.tenant, "host": t.host, "created": t.created,
                           "expires": t.expires, "revoked": t.revoked, "state": t.state(now)} for t in tokens],
                         indent=2))
        return 0
    print(f"{'ID':<17} {'ROLE':<7} {'SCOPE':<24} {'STATE':<8} {'CREATED':<21} EXPIRES")
    for t in tokens:
        scope = f"tenant {t.tenant}" if t.tenant else f"host {t.host}" if t.host else "-"
        expires = auth.format_time(t.expires) if t.expires else "never"
        print(f"{t.id:<17} {t.role:<7} {scope:<24} {t.state(now):<8} {auth.format_time(t.created):<21} {expires}")
    return 0


def _quota_set(args: argparse.Namespace) -> int:
    values: dict[str, int] = {}
    for item in args.limits:
        kind, sep, number = item.partition("=")
        if not sep or not number.strip().isdigit():
            raise CliError(f"{item!r}: write KIND=N, e.g. vpc=100 (kinds: {', '.join(quotas.LIMITED)})")
        values[kind.strip()] = int(number)
    store = _open(args)
    try:
        limits = quotas.set_limits(store, None if args.default else args.tenant, values)
    finally:
        store.close()
    target = "every tenant (default)" if args.default else f"tenant {args.tenant!r}"
    print(f"quota of {target}: " + ", ".join(f"{k}={v}" for k, v in sorted(limits.items())))
    return 0


def _quota_show(args: argparse.Namespace) -> int:
    store = _open(args)
    try:
        use = quotas.usage(store, args.tenant)
    finally:
        store.close()
    if args.json:
        print(json.dumps({k: {"objects": n, "limit": lim} for k, (n, lim) in use.items()}, indent=2))
        return 0
    print(f"{'KIND':<15} {'OBJECTS':>8} {'LIMIT':>8}")
    for kind, (n, lim) in use.items():
        print(f"{kind:<15} {n:>8} {lim:>8}")
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    store = _open(args)
    try:
        auth.revoke_token(store, args.id)
    finally:
        store.close()
    print(f"token {args.id} revoked", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------- status
def read_token_file(path: Path) -> str:
    try:
        st = path.stat()
        text = path.read_text().strip()
    except OSError as e:
        raise CliError(f"--token-file: cannot read {path}: {e.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(f"warning: {path} is readable by others; chmod 600 it", file=sys.stderr)
    if not text:
        raise CliError(f"--token-file: {path} is empty")
    return text


def _status_target(args: argparse.Namespace) -> None:
    """Fill endpoint, admin token and CA from the local control plane's record when none is given."""
    given = [f"--{n.replace('_', '-')}" for n in ("endpoint", "token_file", "ca") if getattr(args, n) is not None]
    if given and len(given) < 3:
        missing = sorted({"--endpoint", "--token-file", "--ca"} - set(given))
        raise CliError(f"{', '.join(given)} given without {', '.join(missing)}: give all three, or none to ask "
                       "the local control plane")
    if given:
        return
    from l2vpc.paths import ControlPlaneError, local_control_plane

    try:
        plane = local_control_plane()
    except ControlPlaneError as e:
        raise CliError(str(e)) from None
    if plane is None:
        raise CliError("no local control plane runs (`l2vpc lab up` starts one): give --endpoint, --token-file "
                       "and --ca of a controller")
    args.endpoint, args.token_file, args.ca = plane.endpoint, Path(plane.admin_token_file), Path(plane.ca_file)


def _status(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf.json_format import MessageToDict

    from l2vpc._proto import controller_pb2 as pb
    from l2vpc._proto import controller_pb2_grpc as pb_grpc

    _status_target(args)
    token = read_token_file(args.token_file)
    try:
        ca = args.ca.read_bytes()
    except OSError as e:
        raise CliError(f"--ca: cannot read {args.ca}: {e.strerror}") from None
    options = [("grpc.ssl_target_name_override", args.tls_name)] if args.tls_name else []
    endpoints = [e.strip() for e in args.endpoint.split(",") if e.strip()]
    failed: list[str] = []
    for endpoint in endpoints:  # any controller answers; an unreachable one hands over to the next
        with grpc.secure_channel(endpoint, grpc.ssl_channel_credentials(root_certificates=ca),
                                 options=options) as channel:
            try:
                reply = pb_grpc.ControllerStub(channel).Status(
                    pb.StatusRequest(), timeout=args.timeout, metadata=(("authorization", f"Bearer {token}"),))
                break
            except grpc.RpcError as e:
                code = e.code().name if isinstance(e, grpc.Call) else "ERROR"
                details = e.details() if isinstance(e, grpc.Call) else str(e)
                if code == "UNAUTHENTICATED":
                    raise CliError(f"authentication failed at {endpoint}: {details}; give an admin token "
                                   "(`l2vpc controller token create --role admin --ttl 7d`)") from None
                if code != "UNAVAILABLE":
                    raise CliError(f"controller at {endpoint}: {code}: {details}") from None
                failed.append(f"{endpoint}: {details}")
    else:
        raise CliError(f"no controller answered ({'; '.join(failed)})")
    if args.json:
        print(json.dumps(MessageToDict(reply, always_print_fields_with_no_presence=True,
                                       preserving_proto_field_name=True), indent=2, sort_keys=True))
        return 0
    now = time.time()
    up = sum(1 for h in reply.hosts if h.status == "up")
    print(f"controller {reply.controller}; leader {reply.leader or '(none)'}, term {reply.term}")
    print(f"revisions: desired {reply.desired_revision}, converged {reply.converged_revision}")
    print(f"hosts: {up} up, {len(reply.hosts) - up} down")
    for h in reply.hosts:
        seen = f"last seen {now - h.last_seen_unix:.0f}s ago" if h.last_seen_unix else "never seen"
        print(f"  {h.name:<24} {h.status:<5} {seen}")
    degraded = sorted({o.vpc for o in reply.overlay})
    print(f"overlay: {'degraded: ' + ', '.join(degraded) if degraded else 'healthy'}")
    for o in reply.overlay:
        print(f"  vpc {o.vpc} degraded: {o.detail}")
    if reply.recent:
        print("recent:")
        for ev in reply.recent:
            where = f"{ev.host}: " if ev.host else ""
            print(f"  {auth.format_time(ev.time_unix)} {where}{ev.what}")
    return 0
