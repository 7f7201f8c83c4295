"""Incremental planning: after one object changes, re-plan only the hosts it touches.

Keeps a TopologyIndex and the last desired/actual config of every host. A changed attachment
touches its old and new host, the VPC's DHCP host when a reservation changes, and every host of
the VPC when the set of hosts carrying it changes (their head-end replication lists change).
"""

from __future__ import annotations

from collections.abc import Mapping

from l2vpc.engine.model import Attachment
from l2vpc.engine.planner import HostPlan, plan_hosts
from l2vpc.engine.topology import Topology, TopologyIndex
from l2vpc.hostconfig import HostConfig


class IncrementalPlanner:
    def __init__(self, topo: Topology, actual: Mapping[str, HostConfig]) -> None:
        self.index = TopologyIndex(topo)
        self.actual = dict(actual)
        self.desired = {h: self.index.host_config(h) for h in self.index.underlay}

    def _replan(self, hosts: set[str]) -> dict[str, HostPlan]:
        for h in hosts:
            if h in self.index.underlay:
                self.desired[h] = self.index.host_config(h)
        return plan_hosts(sorted(hosts), self.desired, self.actual)

    def update_attachment(self, new: Attachment) -> dict[str, HostPlan]:
        old = self.index.topo.attachments.get(new.id)
        return self._replan(self.index.replace_attachment(old, new))

    def remove_attachment(self, ident: str) -> dict[str, HostPlan]:
        old = self.index.topo.attachments.get(ident)
        if old is None:
            return {}
        return self._replan(self.index.replace_attachment(old, None))

    def record_actual(self, host: str, config: HostConfig) -> None:
        """What a host reported after converging (so the next diff starts from it)."""
        self.actual[host] = config
