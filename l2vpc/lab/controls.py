"""What one does to a running lab besides building it: faults (a host's underlay link down or
narrowed), commands in a workload's namespace, and the premises site's knobs. A mixin of
lab.Lab, which builds, removes and inspects (kept apart so that each stays readable).
"""

from __future__ import annotations

from pathlib import Path

from l2vpc.hostconfig.names import workload_netns_name
from l2vpc.lab import netns, outside, premises
from l2vpc.lab.errors import LabError
from l2vpc.lab.premises import Premises
from l2vpc.lab.state import LabState


class LabControls:
    dir: Path
    pki_dir: Path

    def require(self) -> LabState:  # Lab's
        raise NotImplementedError

    def _site(self, st: LabState) -> Premises:
        return outside.site(st, self.dir)

    # ------------------------------------------------------------------ faults

    def set_uplink(self, host: str, up: bool) -> None:
        """Take `host`'s underlay uplink down (a partition: VXLAN traffic stops and, with a
        controller, heartbeats and pushes too) or bring it back up."""
        st = self.require()
        rec = st.host(host)
        if rec is None:
            raise LabError(f"host {host!r} is not in this lab ({', '.join(h.name for h in st.hosts)})")
        if rec.netns is None:
            raise LabError("this lab runs the memory driver: hosts have no uplink to take down")
        netns.ip("link", "set", netns.HOST_UPLINK, "up" if up else "down", netns=rec.netns)

    def set_uplink_mtu(self, host: str, mtu: int | None) -> None:
        """Give the switch's port towards `host` a smaller MTU, as a mis-configured underlay link
        has (the bridge drops bigger frames silently, small ones pass), or the lab's underlay MTU
        back (None)."""
        st = self.require()
        rec = st.host(host)
        if rec is None:
            raise LabError(f"host {host!r} is not in this lab ({', '.join(h.name for h in st.hosts)})")
        if rec.netns is None or st.switch is None:
            raise LabError("this lab runs the memory driver: hosts have no underlay link")
        netns.ip("link", "set", rec.name, "mtu", str(mtu or st.underlay_mtu), netns=st.switch)

    # ------------------------------------------------------------------ exec

    def workload_netns(self, workload: str) -> str:
        """The namespace to run commands in: a workload's, or a premises machine's
        (`premises-router`, `premises-host`, `premises-l2`) when the lab has a premises site."""
        st = self.require()
        if st.premises is not None and workload in premises.NAMES:
            return self._site(st).netns(workload)
        if st.driver != "linux":
            raise LabError("this lab runs the memory driver: workloads have no namespaces to run commands in "
                           "(bring the lab up as root for a real dataplane)")
        for rec in st.hosts:
            ns = workload_netns_name(rec.prefix, workload)
            if netns.exists(ns):
                return ns
        pod = next((p["netns"] for p in st.pods if p["workload"] == workload or p["name"] == workload), None)
        if pod is not None:  # a lab Pod: its namespace (the container's), commands from the host
            return str(pod)
        raise LabError(f"workload {workload!r} runs on no host of this lab (is it attached and applied? "
                       "see `l2vpc lab status`)")

    def exec_argv(self, workload: str, command: list[str]) -> list[str]:
        if not command:
            raise LabError("exec: give a command after --, e.g. `l2vpc lab exec web1 -- ip addr`")
        return ["ip", "netns", "exec", self.workload_netns(workload), *command]

    # ------------------------------------------------------------------ premises

    def _require_site(self) -> tuple[LabState, Premises]:
        st = self.require()
        if st.premises is None:
            raise LabError("this lab has no premises site; bring it up with `l2vpc lab up --edges 1 --premises`")
        return st, self._site(st)

    def sync_premises(self) -> list[str]:
        """Configure the premises router for the layer-3 direct connects the edges run (see
        outside.sync_peering); returns a line per edge."""
        st, site = self._require_site()
        return outside.sync_peering(st, site, self.pki_dir)

    def premises_vlan(self, vid: int | None) -> None:
        """premises-l2 tags its frames with `vid` (None: untagged), as a customer's switch port."""
        _, site = self._require_site()
        site.set_l2_vlan(vid)

    def premises_md5(self, key: str | None) -> None:
        """The premises router's BGP MD5 password (None: none); its bgpd restarts."""
        _, site = self._require_site()
        try:
            site.set_md5(key)
        except ValueError as e:
            raise LabError(str(e)) from None
