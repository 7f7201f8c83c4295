"""Why a VPN tunnel is not up, read from charon's log: a reason code (one of
hostconfig.OBSERVATION_REASONS) and the words for people.

Only lines since the gateway's last (re)configuration count, and an SA established after a
failure clears it: authentication failures, proposals or traffic selectors refused, a peer that
does not answer.
"""

from __future__ import annotations

import re

_RESET = re.compile(r"\[IKE\] (IKE_SA \S+\[\d+\] established|CHILD_SA \S+\{\d+\} established)")
# charon's log line → (reason code of hostconfig.OBSERVATION_REASONS, the words for people)
_FAILURES: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(r"received AUTHENTICATION_FAILED notify"), "auth_failed",
     "authentication failed: the peer rejected our pre-shared key or identity (AUTHENTICATION_FAILED)"),
    (re.compile(r"tried \d+ shared keys? for '([^']*)' - '([^']*)', but MAC mismatched"), "auth_failed",
     "authentication failed: the peer's pre-shared key does not match ours"),
    (re.compile(r"no shared key found for '([^']*)' - '([^']*)'"), "auth_failed",
     "authentication failed: no pre-shared key for {0} - {1}"),
    (re.compile(r"constraint check failed: identity '([^']*)' required"), "auth_failed",
     "authentication failed: the peer did not identify as {0} (peer_id)"),
    (re.compile(r"received NO_PROPOSAL_CHOSEN notify, no CHILD_SA built"), "proposal_rejected",
     "the peer accepts none of our ESP proposal ({esp})"),
    (re.compile(r"received NO_PROPOSAL_CHOSEN notify"), "proposal_rejected",
     "the peer accepts none of our IKE proposal ({ike})"),
    (re.compile(r"received proposals? .* inacceptable|no acceptable proposal found"), "proposal_rejected",
     "no proposal in common with the peer (ours: IKE {ike}, ESP {esp})"),
    (re.compile(r"received TS_UNACCEPTABLE notify"), "selectors_rejected",
     "the peer refused the traffic selectors (local {local} remote {remote})"),
    (re.compile(r"received INVALID_KE_PAYLOAD notify|received (\w+) notify error"), "negotiation_refused",
     "the peer refused the negotiation ({0})"),
    (re.compile(r"giving up after (\d+) retransmits"), "peer_not_responding",
     "the peer {peer} does not answer (no reply after {0} retransmits)"),
    (re.compile(r"establishing IKE_SA failed, peer not responding"), "peer_not_responding",
     "the peer {peer} does not answer"),
    (re.compile(r"unable to install (.*)"), "install_failed", "could not install {0}"),
]


def failure_reason(lines: list[str], fields: dict[str, str]) -> tuple[str, str]:
    """(code, words) of the last failure in these log lines that no later established SA
    cleared; ("", "") if none."""
    reason = ("", "")
    for line in lines:
        if _RESET.search(line):
            reason = ("", "")
            continue
        for pattern, code, text in _FAILURES:
            m = pattern.search(line)
            if m:
                groups = [g or "" for g in m.groups()] or [""]
                reason = (code, text.format(*groups, **fields))
                break
    return reason
