"""Warm starts through the zygote (l2vpc/provider/warm/), with real processes started as Terraform starts them.

Every test has its own runtime directory (L2VPC_PROVIDER_RUNTIME_DIR), so its zygotes are its
own; teardown stops them and checks that no process of the test is left. The provider served is
a probe: the fixture provider, built by a factory that first writes down what its process looks
like (pid, parent, cwd, environment, umask, stdin), so a test can tell a warm child (parent: the
zygote) from a cold start (the launched process itself) and see what reached it.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from l2vpc._proto import grpc_controller_pb2, grpc_controller_pb2_grpc, tfplugin6_pb2_grpc
from l2vpc._proto import tfplugin6_pb2 as pb
from l2vpc.provider import launcher
from l2vpc.provider.server import MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE
from l2vpc.provider.warm.control import alive, ask, running_zygotes, stop_zygotes
from l2vpc.provider.warm.runtime_dir import RUNTIME_DIR_ENV
from l2vpc.provider.warm.wire import PROTOCOL
from l2vpc.testing import l2test_provider
from l2vpc.testing.provider_process import UNUSED_CLIENT_CERT, Handshake

PROBE = """
import json, os, sys


def build_provider():
    mask = os.umask(0)
    os.umask(mask)
    st = os.fstat(0)
    facts = {
        "pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd(), "umask": mask,
        "value": os.environ.get("WARM_PROBE_VALUE"),
        "state": os.path.abspath(os.environ.get("L2VPC_STATE_PATH", "-")),
        "stdin": [st.st_dev, st.st_ino], "path0": sys.path[0], "argv": sys.argv[1:],
    }
    out = os.environ["WARM_PROBE_OUT"]
    with open(out + ".tmp", "w") as f:
        json.dump(facts, f)
    os.rename(out + ".tmp", out)
    if os.environ.get("WARM_PROBE_EXIT"):
        os._exit(int(os.environ["WARM_PROBE_EXIT"]))
    if os.environ.get("WARM_PROBE_SIGNAL"):
        os.kill(os.getpid(), int(os.environ["WARM_PROBE_SIGNAL"]))
    from l2vpc.testing.l2test_provider import build_provider as build

    return build()
"""


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def gone(pid: int) -> bool:
    return not alive(pid)


def processes_with(runtime: Path) -> list[int]:
    """Processes whose environment names this runtime directory: zygotes, clients, children."""
    marker = f"{RUNTIME_DIR_ENV}={runtime}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0") and alive(int(entry.name)):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@dataclass
class Started:
    proc: subprocess.Popen[bytes]
    parts: list[str]
    facts_path: Path

    @property
    def socket_dir(self) -> Path:
        return Path(self.parts[3]).parent

    def facts(self) -> dict[str, Any]:
        wait_for("the probe's facts", self.facts_path.exists)
        return dict(json.loads(self.facts_path.read_text()))

    def channel(self) -> grpc.Channel:
        channel: grpc.Channel = Handshake(self.parts).channel()
        return channel

    def shutdown(self) -> int:
        with self.channel() as channel:
            grpc_controller_pb2_grpc.GRPCControllerStub(channel).Shutdown(
                grpc_controller_pb2.Empty(), timeout=10
            )
        return self.proc.wait(timeout=10)


class Rig:
    """A runtime directory, a launcher serving the probe, and the environment Terraform gives.

    The launcher runs a private copy of the l2vpc package (the fixture provider included): other
    work in this checkout changes its files' mtimes, which would make the zygote stale midway.
    """

    def __init__(self, root: Path, runtime: Path) -> None:
        import l2vpc

        self.root = root
        self.runtime = runtime
        self.package = root / "pkg"
        if not self.package.exists():
            shutil.copytree(Path(l2vpc.__file__).parent, self.package / "l2vpc")
            (self.package / "warm_probe.py").write_text(PROBE)
        self.launcher = self.write_launcher("terraform-provider-l2test", "warm_probe:build_provider")
        self.sockets = root / "sockets"
        self.sockets.mkdir(exist_ok=True)
        self.count = 0
        self.started: list[Started] = []

    def write_launcher(self, name: str, factory: str) -> Path:
        site = [p for p in launcher.python_path() if "-packages" in p]
        text = launcher.launcher_script(args=["--provider", factory]).replace(
            "PYTHONPATH=" + shlex.quote(":".join(launcher.python_path())),
            "PYTHONPATH=" + shlex.quote(":".join([str(self.package), *site])),
        )
        assert str(self.package) in text
        return launcher.write_launcher(self.root / "bin" / name, text)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("L2VPC_", "WARM_PROBE_"))}
        env.update(
            {
                MAGIC_COOKIE_KEY: MAGIC_COOKIE_VALUE,
                "PLUGIN_PROTOCOL_VERSIONS": "5,6",
                "PLUGIN_CLIENT_CERT": UNUSED_CLIENT_CERT,
                "TMPDIR": str(self.sockets),
                l2test_provider.STORE_ENV: str(self.root / "store.json"),
                RUNTIME_DIR_ENV: str(self.runtime),
            }
        )
        env.update(extra)
        return env

    def spawn(
        self, cwd: Path | None = None, stdin: Any = subprocess.DEVNULL, umask: int = -1, **env: str
    ) -> Started:
        """Start the launcher as Terraform does; `handshake` then reads its first line."""
        self.count += 1
        facts = self.root / f"facts-{self.count}.json"
        proc = subprocess.Popen(
            [str(self.launcher)],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            umask=umask,
            env=self.env(WARM_PROBE_OUT=str(facts), **env),
        )
        started = Started(proc, [], facts)
        self.started.append(started)
        return started

    def start(
        self, cwd: Path | None = None, stdin: Any = subprocess.DEVNULL, umask: int = -1, **env: str
    ) -> Started:
        return handshake(self.spawn(cwd, stdin, umask, **env))

    def zygote(self) -> int:
        """The pid of the (one) running zygote, once it is up."""
        zygotes = wait_for("a zygote", lambda: running_zygotes(str(self.runtime)))
        assert len(zygotes) == 1, zygotes
        return int(next(iter(zygotes.values())))

    def close(self) -> None:
        for s in self.started:
            if s.proc.poll() is None:
                s.proc.kill()
            s.proc.wait(timeout=10)
            for stream in (s.proc.stdout, s.proc.stderr):
                if stream is not None:
                    stream.close()

        # A zygote still loading does not answer yet: ask again until all are gone.
        def stopped() -> bool:
            stop_zygotes(str(self.runtime))
            return not processes_with(self.runtime)

        try:
            wait_for("the test's processes to end", stopped, timeout=20)
        finally:
            leftovers = processes_with(self.runtime)
            for pid in leftovers:
                os.kill(pid, signal.SIGKILL)
        assert leftovers == [], f"processes left behind: {leftovers}"


def handshake(started: Started) -> Started:
    proc = started.proc
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline().decode()
    assert line.startswith("1|6|unix|"), f"no handshake: {line!r} {proc.stderr.read().decode()}"
    started.parts = line.rstrip("\n").split("|")
    return started


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    launcher.precompile()
    rigs: list[Rig] = []
    # Short, under /tmp: the zygote's socket path must fit in 107 bytes.
    runtime = Path(tempfile.mkdtemp(prefix="l2w-", dir="/tmp"))

    def make() -> Rig:
        rig = Rig(tmp_path, runtime)
        rigs.append(rig)
        return rig

    try:
        yield make
    finally:
        try:
            for rig in rigs:
                rig.close()
        finally:
            shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture
def rig(make_rig: Callable[..., Rig]) -> Rig:
    return make_rig()


def certificate(started: Started) -> x509.Certificate:
    part = started.parts[5]
    return x509.load_der_x509_certificate(base64.b64decode(part + "=" * (-len(part) % 4)))


def test_warm_starts_serve_over_tls_each_with_a_new_certificate(rig: Rig) -> None:
    cold = rig.start()
    assert cold.facts()["pid"] == cold.proc.pid  # no zygote yet: served in-process
    assert cold.shutdown() == 0
    zygote = rig.zygote()

    certificates = [certificate(cold)]
    for _ in range(2):
        started = rig.start()
        facts = started.facts()
        assert facts["pid"] != started.proc.pid and facts["ppid"] == zygote  # a child of the zygote
        cert = certificate(started)
        key = cert.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
        assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName
        ) == ["localhost"]
        certificates.append(cert)
        mode = started.socket_dir.stat()
        assert stat.S_IMODE(mode.st_mode) == 0o700 and mode.st_uid == os.getuid()
        with started.channel() as channel:
            schema = tfplugin6_pb2_grpc.ProviderStub(channel).GetProviderSchema(
                pb.GetProviderSchema.Request(), timeout=30
            )
        assert "l2test_thing" in schema.resource_schemas
        assert started.shutdown() == 0
        assert not started.socket_dir.exists()
        # The client exits on the status the child reports just before its own exit.
        wait_for(f"warm child {facts['pid']} to exit", functools.partial(gone, facts["pid"]), 10)
    keys = {
        c.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo) for c in certificates
    }
    assert len(keys) == 3 and len({c.serial_number for c in certificates}) == 3


def test_the_callers_environment_cwd_umask_and_stdin_reach_the_child(rig: Rig, tmp_path: Path) -> None:
    cold = rig.start()
    cold_facts = cold.facts()
    assert cold.shutdown() == 0
    zygote = rig.zygote()
    work = tmp_path / "work"
    work.mkdir()
    stdin_file = tmp_path / "stdin"
    stdin_file.write_text("")
    mask = os.umask(0)
    os.umask(mask)
    with stdin_file.open() as stdin:
        started = rig.start(cwd=work, stdin=stdin, WARM_PROBE_VALUE="été-42", L2VPC_STATE_PATH="rel/state.db")
        facts = started.facts()
        assert started.shutdown() == 0
    st = stdin_file.stat()
    assert facts["ppid"] == zygote
    assert facts["cwd"] == str(work)
    assert facts["path0"] == cold_facts["path0"] == str(rig.package)  # -P: never the cwd
    assert facts["value"] == "été-42"
    assert facts["state"] == str(work / "rel" / "state.db")
    assert facts["stdin"] == [st.st_dev, st.st_ino]
    assert facts["argv"] == ["--provider", "warm_probe:build_provider"]
    assert facts["umask"] == mask

    other = 0o027 if mask != 0o027 else 0o077
    started = rig.start(umask=other)
    assert started.facts()["umask"] == other and started.facts()["ppid"] == zygote
    assert started.shutdown() == 0


def test_exit_status_signals_and_stderr_go_through_the_client(rig: Rig) -> None:
    rig.start().shutdown()
    zygote = rig.zygote()

    exits = rig.start(WARM_PROBE_EXIT="7")
    assert exits.proc.wait(timeout=10) == 7 and exits.facts()["ppid"] == zygote

    hup = rig.start(WARM_PROBE_SIGNAL=str(int(signal.SIGHUP)))
    assert hup.proc.wait(timeout=10) == -signal.SIGHUP and hup.facts()["ppid"] == zygote

    # SIGINT is Terraform's business (ignored); SIGTERM is an orderly exit.
    started = rig.start()
    child = started.facts()["pid"]
    started.proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    assert started.proc.poll() is None and alive(child)
    started.proc.send_signal(signal.SIGTERM)
    assert started.proc.wait(timeout=10) == 0
    assert not started.socket_dir.exists()
    wait_for(f"warm child {child} to exit", functools.partial(gone, child), 10)

    # An error before the handshake: the child's stderr is the caller's.
    text = launcher.launcher_script(args=["--provider", "no-colon"])
    bad = launcher.write_launcher(rig.root / "bin" / "bad-provider", text)
    result = subprocess.run([str(bad)], env=rig.env(), capture_output=True, timeout=30)
    assert result.returncode == 1
    assert result.stderr == b"l2vpc provider: --provider wants MODULE:FUNCTION, got 'no-colon'\n"


def test_a_killed_client_takes_its_child_and_socket_directory_along(rig: Rig) -> None:
    rig.start().shutdown()
    zygote = rig.zygote()
    started = rig.start()
    child = started.facts()["pid"]
    assert started.socket_dir.exists() and child != started.proc.pid
    started.proc.kill()  # what Terraform does to a provider that does not stop in time
    started.proc.wait(timeout=10)
    wait_for("the child to exit", lambda: not alive(child), timeout=10)
    assert not started.socket_dir.exists()
    assert alive(zygote)
    # The zygote carries on serving.
    again = rig.start()
    assert again.facts()["ppid"] == zygote and again.shutdown() == 0


def test_a_zygote_with_stale_code_is_not_used(rig: Rig) -> None:
    first = rig.start()
    assert first.facts()["pid"] == first.proc.pid and first.shutdown() == 0
    old = rig.zygote()
    warm_start = rig.start()
    assert warm_start.facts()["ppid"] == old and warm_start.shutdown() == 0

    edited = rig.package / "l2vpc" / "provider" / "resources" / "vpc.py"
    edited.write_text(edited.read_text() + "\n# edited\n")
    fresh = rig.start()
    assert fresh.facts()["pid"] == fresh.proc.pid  # cold: the old zygote was not asked
    assert fresh.shutdown() == 0
    # The old zygote may already have seen the edit and left (it checks its key once it has
    # loaded everything, then every 30 s): what matters is a new one, for the edited code.
    new = wait_for(
        "a zygote for the edited code",
        lambda: [pid for pid in running_zygotes(str(rig.runtime)).values() if pid != old],
    )
    again = rig.start()
    assert again.facts()["ppid"] == new[0] and again.shutdown() == 0


def test_disabled_by_the_environment(rig: Rig) -> None:
    for _ in range(2):
        started = rig.start(L2VPC_PROVIDER_ZYGOTE="0")
        assert started.facts()["pid"] == started.proc.pid
        assert started.shutdown() == 0
    assert not rig.runtime.exists() or os.listdir(rig.runtime) == []


def cold_and_why(rig: Rig) -> str:
    """Start once: it must be cold; returns what the launcher said on stderr."""
    started = rig.start()
    assert started.facts()["pid"] == started.proc.pid and started.shutdown() == 0
    assert started.proc.stderr is not None
    return started.proc.stderr.read().decode()


def test_a_runtime_directory_others_can_enter_is_not_used(rig: Rig) -> None:
    rig.runtime.chmod(0o755)
    said = cold_and_why(rig)
    assert f"warm starts are off: runtime directory {rig.runtime} is open to group or others (mode 0755" in said
    time.sleep(0.5)
    assert os.listdir(rig.runtime) == []  # no zygote started there either


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a directory of another user")
def test_a_runtime_directory_of_another_user_is_not_used_and_it_says_so(rig: Rig) -> None:
    """What a pre-created directory of another user used to do silently: warm starts off."""
    os.chown(rig.runtime, 65534, 65534)
    said = cold_and_why(rig)
    assert f"runtime directory {rig.runtime} is owned by uid 65534, not us (uid 0)" in said, said
    assert said.count("warm starts are off") == 1
    time.sleep(0.5)
    assert os.listdir(rig.runtime) == []  # nothing bound, locked or logged in it


def test_a_runtime_directory_in_a_parent_others_can_write_is_not_used(rig: Rig) -> None:
    """Others could swap our entry in such a parent between a check and a use."""
    parent = Path(tempfile.mkdtemp(prefix="l2w-open-", dir="/tmp"))
    try:
        parent.chmod(0o777)  # world-writable, not sticky
        rig.runtime = parent / "rt"
        said = cold_and_why(rig)
        assert f"runtime directory {rig.runtime} is not safe: its parent {parent} is writable by others" in said
        time.sleep(0.5)
        assert os.listdir(parent) == []  # not even created
        # A symlink as the runtime directory itself is not followed either.
        (parent / "rt").symlink_to(rig.runtime.parent)
        parent.chmod(0o700)
        said = cold_and_why(rig)
        assert f"runtime directory {rig.runtime} is a symlink or not a directory" in said, said
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def test_a_planted_log_symlink_is_neither_followed_nor_written(rig: Rig, tmp_path: Path) -> None:
    rig.start().shutdown()
    zygote = rig.zygote()
    (log,) = [p for p in rig.runtime.iterdir() if p.suffix == ".log"]
    assert stop_zygotes(str(rig.runtime)) == [zygote]
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    log.unlink()
    log.symlink_to(victim)
    started = rig.start()  # cold; it starts the next zygote, which opens its log
    assert started.facts()["pid"] == started.proc.pid and started.shutdown() == 0
    rig.zygote()
    assert victim.read_text() == "precious\n"
    assert not log.is_symlink() and stat.S_IMODE(log.stat().st_mode) == 0o600
    assert "starting for" in log.read_text()


def test_simultaneous_cold_starts_leave_one_zygote(rig: Rig) -> None:
    starts = [handshake(s) for s in [rig.spawn() for _ in range(3)]]
    for s in starts:
        assert s.facts()["pid"] == s.proc.pid
    zygote = rig.zygote()

    def only_the_zygote() -> bool:
        return [p for p in processes_with(rig.runtime) if p not in {s.proc.pid for s in starts}] == [zygote]

    wait_for("the other zygotes to give up", only_the_zygote, timeout=15)
    for s in starts:
        assert s.shutdown() == 0


def test_idle_timeout_ends_the_zygote(rig: Rig) -> None:
    rig.start(L2VPC_PROVIDER_ZYGOTE_IDLE="2").shutdown()
    zygote = rig.zygote()
    started = rig.start()
    assert started.facts()["ppid"] == zygote
    time.sleep(2.5)
    assert alive(zygote)  # a live child keeps it up
    assert started.shutdown() == 0
    wait_for("the zygote to leave", lambda: not alive(zygote), timeout=10)
    assert not [p for p in rig.runtime.iterdir() if p.suffix == ".sock"]


NOBODY_PING = """
import socket, sys
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
    s.settimeout(5)
    s.connect(sys.argv[1])
    payload = sys.argv[2].encode() + b"\\0ping"
    try:
        s.sendall(b"%d\\n" % len(payload) + payload)
        reply = s.recv(100)
    except (BrokenPipeError, ConnectionResetError):
        reply = b""
    sys.stdout.write(repr(reply) if reply else "closed")
"""


@pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/usr/bin/python3"), reason="needs root and a system python"
)
def test_the_zygote_talks_to_its_own_user_only(rig: Rig) -> None:
    rig.start().shutdown()
    rig.zygote()
    (sock,) = [p for p in rig.runtime.iterdir() if p.suffix == ".sock"]
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    # Open both outer doors (the 0700 directory, the 0600 socket) to reach the inner one.
    door = Path(tempfile.mkdtemp(prefix="l2w-door-", dir="/tmp"))
    try:
        door.chmod(0o755)
        alias = door / "z.sock"
        os.link(sock, alias)
        alias.chmod(0o666)
        assert ask(str(alias), b"ping").startswith(b"pong ")
        command = ["/usr/bin/python3", "-S", "-c", NOBODY_PING, str(alias), PROTOCOL.decode()]
        as_root = subprocess.run(command, capture_output=True, text=True, timeout=30)
        as_nobody = subprocess.run(
            command, capture_output=True, text=True, timeout=30, user=65534, group=65534, extra_groups=[]
        )
    finally:
        shutil.rmtree(door, ignore_errors=True)
    assert as_root.stdout.startswith("b'pong "), as_root
    assert as_nobody.stdout == "closed", as_nobody  # connected, then closed without a word
    log = next(p for p in rig.runtime.iterdir() if p.suffix == ".log").read_text()
    assert "refused a connection from uid 65534" in log
