"""The `l2vpc` command: a thin layer over the library.

Each part contributes its own subcommands through `add_commands(subparsers)` in its `cli`
module (engine: plan/apply/show; provider: provider/tf; agent: agent; lab: lab; controller).
User errors print one line and exit 1; anything unexpected prints a traceback and asks for a
report.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
import traceback
from collections.abc import Sequence

from l2vpc import __version__

# Modules that contribute subcommands; missing ones are skipped so parts can land separately.
_COMMAND_MODULES = (
    "l2vpc.embedded.cli",
    "l2vpc.provider.cli",
    "l2vpc.agent.cli",
    "l2vpc.lab.cli",
    "l2vpc.controller.cli",
    "l2vpc.demo",
    "l2vpc.graph",
)


# Commands whose module is known up front: `l2vpc plan -f` parses its arguments without
# importing the lab, the controller and gRPC (~0.4 s of CPU, much of a 1 s re-plan).
_COMMAND_OWNERS = {"plan": "l2vpc.embedded.cli", "apply": "l2vpc.embedded.cli", "show": "l2vpc.embedded.cli"}


# Commands after which the process only exits, when main() runs as the process (argv None): the
# interpreter's last collections would walk every object still alive (~50 ms of a 1 s re-plan);
# frozen (gc.freeze), they are left to the OS with the rest of the memory. Not for commands
# that run threads or daemons, whose cyclic garbage may still have cleanup to do.
_EXIT_FROZEN = frozenset({"plan", "show"})


class CliError(Exception):
    """A user error: printed as one line, exit status 1."""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or only of `command`'s module when it is known."""
    parser = argparse.ArgumentParser(prog="l2vpc", description="Layer 2 VPCs: engine, provider, agents, lab")
    parser.add_argument("--version", action="version", version=f"l2vpc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    owner = _COMMAND_OWNERS.get(command or "")
    for name in (owner,) if owner else _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and name.startswith(e.name):
                continue
            raise
        module.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from l2vpc.engine.errors import L2vpcError

    whole_process = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else None  # as typed: subcommands may use `args.command` for their own
    parser = build_parser(command)
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
        if whole_process and command in _EXIT_FROZEN:
            gc.freeze()
    except (CliError, L2vpcError) as e:
        # One line, always: scripts and people read the first line of stderr.
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`... | head`): not an error of ours. Point stdout at /dev/null so
        # the interpreter's final flush does not complain again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        print("error: unexpected internal error; please report it with the traceback above", file=sys.stderr)
        return 70
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
