"""What Terraform has recorded, as far as this provider process can tell.

An object we create stays adoptable by its creator (engine/adoption.py) until Terraform shows it
back to us: a Read (refresh, import) or a plan with the object in its prior state. Confirming at
hand-off instead would lose the object when the provider dies after answering but before
Terraform wrote its state: the next apply's create would then fail as a duplicate.

While an object is adoptable, a second resource of the same configuration with the same values
would adopt it too and two resources would manage one object; `Recorded.created` refuses that
within one run, and the plan-time confirmation refuses it across runs (`-refresh=false`).
"""

from __future__ import annotations

import threading


class Recorded:
    """Ids this process handed to Terraform for a create, and ids Terraform showed us."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._created: set[str] = set()
        self._shown: set[str] = set()

    def created(self, ident: str) -> bool:
        """Record an id a create returns; False when another create of this run already got it
        (it adopted the object a sibling resource just created)."""
        with self._lock:
            if ident in self._created:
                return False
            self._created.add(ident)
            return True

    def shown(self, ident: str) -> bool:
        """Record an id Terraform has in its state; True the first time (then confirm it)."""
        with self._lock:
            if ident in self._shown:
                return False
            self._shown.add(ident)
            return True
