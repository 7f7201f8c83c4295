"""A site-to-site VPN applied through the provider: edge1's strongSwan against the premises gateway.

The premises gateway (203.0.113.10, a responder only) accepts the lab's PSK; the workload
reaches premises-host through the tunnel, and only ESP-in-UDP and IKE cross the internet.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

from l2vpc.agent.drivers.linux import netns as nsmod
from l2vpc.agent.drivers.linux.charon import Charon
from l2vpc.hostconfig.names import vpn_device_name, vpn_netns_name, vpn_short_id
from l2vpc.lab import premises_vpn
from l2vpc.lab.premises import PREMISES_PUBLIC_IP
from l2vpc.testing.capture import Capture
from l2vpc.testing.gateway_probes import Probe, UdpCatcher, answers, mac_of, send_forged_udp
from l2vpc.testing.leftovers import processes_mentioning

from .conftest import PSK, EdgeLab, MakeWorkspace

pytestmark = [pytest.mark.root, pytest.mark.terraform]

PREMISES_HOST = "192.168.50.10"
WRONG_PSK = "wrong.psk.0000"

CONFIG = """
variable "psk" {
  type      = string
  sensitive = true
  ephemeral = true
}

variable "psk_version" {
  type = number
}

resource "l2vpc_vpc" "vpn" {
  name = "edge-vpn"
  cidr = "10.83.0.0/24"
}

resource "l2vpc_attachment" "w" {
  vpc_id     = l2vpc_vpc.vpn.id
  workload   = "vpnw1"
  ip_mode    = "static"
  ip_address = "10.83.0.10/24"
}

resource "l2vpc_vpn" "office" {
  name                      = "edge-office"
  vpc_id                    = l2vpc_vpc.vpn.id
  peer_address              = "203.0.113.10"
  pre_shared_key_wo         = var.psk
  pre_shared_key_wo_version = var.psk_version
  remote_cidrs              = ["192.168.50.0/24"]
  dpd = {
    interval = 10
    timeout  = 30
  }
}
"""


def outside_is_encrypted(lines: list[str], public_ip: str) -> list[str]:
    """Lines of an IPv4 capture on the internet that are not IKE or ESP-in-UDP between the gateways."""
    ends = rf"({re.escape(public_ip)}|{re.escape(PREMISES_PUBLIC_IP)})\.(500|4500)"
    tunnel = re.compile(rf"{ends} > {ends}: ")
    # The lab's internet router redirects the gateway to the premises (on its bridge, another
    # subnet): an ICMP redirect quoting an outer header, no payload of ours.
    return [line for line in lines if not tunnel.search(line) and "ICMP redirect" not in line]


def test_vpn_tunnel_wrong_psk_peer_restart_and_destroy(edge_lab: EdgeLab, workspace: MakeWorkspace) -> None:
    lab, ws = edge_lab, workspace("vpn")
    ws.write(CONFIG, psk=PSK, psk_version=1)
    ws.apply()
    vpn = ws.resource("l2vpc_vpn.office")
    assert vpn["status"] == "up"
    assert PSK not in (ws.dir / "terraform.tfstate").read_text()  # write-only

    # Through the tunnel, and nothing in clear on the internet.
    with Capture(f"{lab.st.prefix}inet", "edge1", "ip") as outside:
        assert lab.exec("vpnw1", "ping", "-c3", "-i0.2", "-W2", PREMISES_HOST).returncode == 0
    esp = [line for line in outside.lines if "UDP-encap: ESP" in line]
    assert len(esp) >= 6, outside.lines  # three requests, three replies
    assert outside_is_encrypted(outside.lines, vpn["public_ip"]) == []
    assert not [line for line in outside.lines if "192.168.50." in line or "10.83.0." in line]

    # A key the peer does not have: down, with the reason in the warning.
    ws.write(CONFIG, psk=WRONG_PSK, psk_version=2)
    wrong = ws.apply()
    assert "Warning: l2vpc_vpn is down" in wrong.output, wrong.output
    assert "authentication failed" in wrong.text, wrong.output
    assert WRONG_PSK not in wrong.output
    assert ws.resource("l2vpc_vpn.office")["status"] == "down"
    assert not lab.ping("vpnw1", PREMISES_HOST)

    ws.write(CONFIG, psk=PSK, psk_version=3)
    fixed = ws.apply()
    assert "Warning: l2vpc_vpn is" not in fixed.output
    assert ws.resource("l2vpc_vpn.office")["status"] == "up"
    assert lab.ping("vpnw1", PREMISES_HOST, tries=3)

    # The premises gateway restarts (its SAs are gone): the tunnel comes back by itself.
    gateway_state = Path(lab.st.dir) / "premises-vpn"
    premises_vpn.restart(gateway_state)
    seen = lab.wait_status("vpn", vpn["id"], "up", timeout=20)
    assert seen[-1][1] == "up", seen
    # The premises side only responds: an SA it holds now was initiated by edge1 after the restart.
    assert premises_vpn.status(gateway_state) == [("ESTABLISHED", ["INSTALLED"])]
    assert lab.ping("vpnw1", PREMISES_HOST, tries=3)
    ws.apply("-refresh-only")
    assert ws.resource("l2vpc_vpn.office")["status"] == "up"

    gw_dir = lab.driver_dir / "vpn" / "gw" / vpn_short_id(vpn["id"])
    ns = vpn_netns_name(lab.edge.prefix, vpn["id"])
    assert processes_mentioning(str(gw_dir)), "charon should run before the destroy"
    ws.destroy()
    assert processes_mentioning(str(gw_dir)) == []
    assert ns not in nsmod.list_names()
    assert not gw_dir.exists()
    assert not Charon(gw_dir, None).socket.exists()  # its vici socket, wherever it was
    links = subprocess.run(["ip", "-n", lab.edge_netns, "-o", "link", "show"], capture_output=True, text=True,
                           check=True).stdout
    assert vpn_device_name(vpn["id"]) not in links
    # charon said goodbye: the premises gateway holds no SA any more.
    deadline = time.monotonic() + 5
    while premises_vpn.status(gateway_state) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert premises_vpn.status(gateway_state) == []


def test_vpn_gateway_passes_nothing_in_clear_and_answers_the_vpc_nothing(edge_lab: EdgeLab,
                                                                         workspace: MakeWorkspace) -> None:
    """Issue 15 as reported: from the lab's internet a packet with a forged premises source
    reached the workload without IPsec, a workload routed to 203.0.113.0/24 through the gateway
    leaked in clear, and charon answered the VPC on 500/4500."""
    lab, ws = edge_lab, workspace("vpn-isolation")
    ws.write(CONFIG, psk=PSK, psk_version=1)
    ws.apply()
    vpn = ws.resource("l2vpc_vpn.office")
    assert vpn["status"] == "up"
    gateway, public = vpn["gateway_ip"].split("/")[0], vpn["public_ip"]
    gw_ns, inet, workload = vpn_netns_name(lab.edge.prefix, vpn["id"]), f"{lab.st.prefix}inet", lab.netns("vpnw1")
    lab.exec("vpnw1", "ip", "route", "add", "203.0.113.0/24", "via", gateway).check_returncode()
    holes: set[str] = set()
    with UdpCatcher(workload, 40001) as catch:
        send_forged_udp(inet, "br0", mac_of(gw_ns, "ext0"), PREMISES_HOST, "10.83.0.10", 40001)
        holes |= {f"internet -> workload in clear from forged {src}" for _, src in catch.received()}
    with UdpCatcher(inet, 40002) as catch, nsmod.socket_in(workload, socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"cleartext", ("203.0.113.1", 40002))
        holes |= {f"workload -> internet in clear from {src}" for _, src in catch.received()}
    probes = [Probe(workload, proto, address, port) for address in (gateway, public)
              for proto, port in (("ike", 500), ("ike", 4500), ("tcp", 179))]
    probes.append(Probe(inet, "ike", public, 500, source="203.0.113.1"))  # on the internet, but not the peer
    holes |= {f"{probe} answered: {answer}" for probe, answer in answers(probes).items()}
    assert sorted(holes) == [], "\n".join(sorted(holes))
    # The tunnel still carries the premises traffic, both ways.
    assert lab.ping("vpnw1", PREMISES_HOST, tries=3)
    assert lab.ping("premises-host", "10.83.0.10", tries=3)
    ws.destroy()
