"""Make the provider findable by Terraform: a launcher script and CLI configurations.

Terraform runs a provider as an executable. Ours is a two-line shell script that starts this
Python environment's interpreter on `l2vpc.provider`, with absolute paths so it works from any
directory:

    #!/bin/sh
    PYTHONPATH='/repo:/repo/.venv/lib/python3.11/site-packages' exec '/repo/.venv/bin/python' -S -P -m l2vpc.provider

`-S` skips site initialisation (.pth files, the editable-install finder): ~35 ms saved on
every start, and Terraform starts the provider several times per command. The path it would
have computed is written out instead. `-P` keeps the working directory (Terraform's
configuration directory) off sys.path, so nothing there can shadow a module of ours; it is
also what a warm start through the zygote (warm/) requires, whose children import nothing
from there either. Terraform finds the launcher through one of:

- the implicit local mirror ~/.terraform.d/plugins/<host>/<namespace>/<type>/<version>/<os_arch>/
  (`l2vpc provider install`; plain `terraform init` then records it in the lock file),
- a `filesystem_mirror` or `dev_overrides` in a CLI configuration file (TF_CLI_CONFIG_FILE),
  written by `cli_config_mirror` / `cli_config_dev_override`.
"""

from __future__ import annotations

import compileall
import os
import platform
import shlex
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path

import l2vpc
from l2vpc import __version__

REGISTRY_HOST = "registry.terraform.io"
NAMESPACE = "l2vpc"
TYPE = "l2vpc"
SOURCE = f"{REGISTRY_HOST}/{NAMESPACE}/{TYPE}"

_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "i686": "386",
    "armv7l": "arm",
}


def target_platform() -> str:
    """Terraform's name for this machine, e.g. linux_amd64."""
    machine = platform.machine().lower()
    return f"{platform.system().lower()}_{_ARCH.get(machine, machine)}"


def python_path() -> list[str]:
    """Where `python -S` must look: the directory holding l2vpc, then site-packages."""
    package_parent = str(Path(l2vpc.__file__).resolve().parent.parent)
    paths = [package_parent]
    for key in ("purelib", "platlib"):
        p = sysconfig.get_paths()[key]
        if p not in paths:
            paths.append(p)
    return paths


def launcher_script(
    *,
    python: str | None = None,
    extra_path: Sequence[str] = (),
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> str:
    """The launcher's text. `extra_path`/`args`/`env` serve test providers (`--provider M:F`)."""
    interpreter = python or sys.executable
    path = ":".join([*extra_path, *python_path()])
    assignments = [f"PYTHONPATH={shlex.quote(path)}"]
    assignments += [f"{k}={shlex.quote(v)}" for k, v in sorted((env or {}).items())]
    command = " ".join(shlex.quote(a) for a in (interpreter, "-S", "-P", "-m", "l2vpc.provider", *args))
    return (
        "#!/bin/sh\n"
        "# Terraform provider launcher for l2vpc (written by `l2vpc provider install`; regenerate, do not edit).\n"
        f"{' '.join(assignments)} exec {command}\n"
    )


def write_launcher(path: Path, text: str | None = None) -> Path:
    """Write the launcher (mode 0755) atomically; byte-identical rewrites keep lock-file hashes."""
    text = launcher_script() if text is None else text
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_text() == text:
        return path
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    tmp.chmod(0o755)
    tmp.replace(path)
    return path


def precompile() -> None:
    """Byte-compile l2vpc so provider starts do not (PYTHONDONTWRITEBYTECODE would prevent caching)."""
    compileall.compile_dir(str(Path(l2vpc.__file__).resolve().parent), quiet=2)


def executable_name(version: str = __version__, type_name: str = TYPE) -> str:
    return f"terraform-provider-{type_name}_v{version}"


def mirror_package_dir(mirror: Path, version: str = __version__, source: str = SOURCE) -> Path:
    """Where an unpacked provider package lives inside a filesystem mirror."""
    return mirror.joinpath(*source.split("/"), version, target_platform())


def install_into_mirror(mirror: Path, version: str = __version__, source: str = SOURCE) -> Path:
    """Put the launcher into a mirror directory (e.g. ~/.terraform.d/plugins); returns its path."""
    type_name = source.rsplit("/", 1)[-1]
    return write_launcher(mirror_package_dir(mirror, version, source) / executable_name(version, type_name))


def implicit_mirror() -> Path:
    """The directory plain Terraform searches without any CLI configuration."""
    return Path(os.path.expanduser("~")) / ".terraform.d" / "plugins"


def _hcl_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("${", "$${") + '"'


def cli_config_dev_override(directory: Path, source: str = SOURCE) -> str:
    """A CLI configuration that runs the provider from `directory` without `terraform init`."""
    return (
        "provider_installation {\n"
        "  dev_overrides {\n"
        f"    {_hcl_string(source)} = {_hcl_string(str(directory))}\n"
        "  }\n"
        "  direct {}\n"
        "}\n"
    )


def cli_config_mirror(mirror: Path, source: str = SOURCE) -> str:
    """A CLI configuration that installs our provider from `mirror` and all others as usual."""
    return (
        "provider_installation {\n"
        "  filesystem_mirror {\n"
        f"    path    = {_hcl_string(str(mirror))}\n"
        f"    include = [{_hcl_string(source)}]\n"
        "  }\n"
        "  direct {\n"
        f"    exclude = [{_hcl_string(source)}]\n"
        "  }\n"
        "}\n"
    )
