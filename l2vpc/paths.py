"""Where l2vpc keeps its state: one place for every command, from any directory.

    home()                 $L2VPC_HOME, else /var/lib/l2vpc as root, else $XDG_STATE_HOME/l2vpc
                           (~/.local/state/l2vpc)
    default_state_path()   $L2VPC_STATE_PATH, else home()/state.db

The lab, `l2vpc plan|apply|show|graph`, the demo and the provider (Terraform) use it when they
are not told otherwise, so two commands agree without naming a file. Beside the state live its
sealing key (state.db.key), the lab's CA (pki/) and the lab (lab/). Imports nothing: the
provider and the CNI plugin may use it.
"""

from __future__ import annotations

import os

HOME_ENV = "L2VPC_HOME"
STATE_PATH_ENV = "L2VPC_STATE_PATH"
STATE_FILE = "state.db"


def home() -> str:
    explicit = os.environ.get(HOME_ENV)
    if explicit:
        return os.path.abspath(explicit)
    if os.geteuid() == 0:
        return "/var/lib/l2vpc"
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "l2vpc")


def default_state_path() -> str:
    return os.path.abspath(os.environ.get(STATE_PATH_ENV) or os.path.join(home(), STATE_FILE))


def describe_default() -> str:
    """The default as documentation states it."""
    return (f"`${STATE_PATH_ENV}`, else `state.db` in `${HOME_ENV}` (default `/var/lib/l2vpc` as root, "
            "`~/.local/state/l2vpc` otherwise)")
