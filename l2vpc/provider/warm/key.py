"""Which zygote fits a start: the key of everything a zygote's imports depend on.

The interpreter and its flags, the l2vpc package (path, version, newest mtime of anything
under it), the PYTHONPATH directories' mtimes, the interpreter-level environment (PYTHON*,
GRPC_*, OPENSSL_*, locale), user and group ids, namespaces, cgroup and root directory. Equal
keys mean a forked child is what a cold start would be; edited code, an upgraded
site-packages or another namespace means another key (another socket), so stale code never
runs. The client computes it on every start: it costs ~100 stats, well under a millisecond.
"""

from __future__ import annotations

import os
import sys

from l2vpc.provider.warm.wire import PROTOCOL

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

# Environment that shapes the interpreter or libraries at import time: part of the key and
# all of the zygote's own environment (children get the caller's, whole).
KEY_ENV_PREFIXES = ("PYTHON", "GRPC_", "OPENSSL_", "SSL_CERT_", "CRYPTOGRAPHY_", "LANG", "LC_")


def zygote_key(environ: Mapping[str, str] | None = None) -> str:
    """Everything a zygote's imports depend on; equal keys mean a child = a cold start."""
    import l2vpc

    env = os.environ if environ is None else environ
    package = os.path.dirname(os.path.abspath(l2vpc.__file__))
    lines = [
        PROTOCOL.decode(),
        f"python {sys.executable} {sys.version} {sys.flags!r}",
        f"l2vpc {package} {l2vpc.__version__} {_newest_mtime(package)}",
        f"ids {os.getuid()} {os.geteuid()} {os.getgid()} {os.getegid()} {sorted(os.getgroups())}",
    ]
    for entry in env.get("PYTHONPATH", "").split(os.pathsep):
        lines.append(f"path {entry} {_mtime(entry)}")
    lines += [f"env {k}={v}" for k, v in sorted(env.items()) if k.startswith(KEY_ENV_PREFIXES)]
    for ns in ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts"):
        lines.append(f"ns {_readlink(f'/proc/self/ns/{ns}')}")
    lines.append(f"root {_readlink('/proc/self/root')}")
    try:
        with open("/proc/self/cgroup") as f:
            lines.append(f"cgroup {f.read().strip()}")
    except OSError:
        lines.append("cgroup ?")
    return "\n".join(lines)


def key_environment() -> dict[str, str]:
    """The part of our environment the key covers: all a zygote is started with."""
    return {k: v for k, v in os.environ.items() if k.startswith(KEY_ENV_PREFIXES)}


def digest(key: str) -> str:
    """A short name for a key (zygote file names)."""
    try:
        import _sha256  # builtin in 3.11; hashlib would load OpenSSL first

        h = _sha256.sha256(key.encode())
    except ImportError:
        import hashlib

        h = hashlib.sha256(key.encode())
    return str(h.hexdigest())[:20]


def _newest_mtime(top: str) -> int:
    """Newest mtime of the package's files and directories (directories change when files are
    added or removed); __pycache__ is skipped."""
    newest = _mtime(top)
    todo = [top]
    while todo:
        try:
            entries = os.scandir(todo.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                if entry.name == "__pycache__":
                    continue
                try:
                    newest = max(newest, entry.stat(follow_symlinks=False).st_mtime_ns)
                    if entry.is_dir(follow_symlinks=False):
                        todo.append(entry.path)
                except OSError:
                    continue
    return newest


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"
