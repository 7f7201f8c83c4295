"""The controller's status page: rendered by a real controller (in-process, SQLite, TLS API,
metrics listener on loopback) and loaded by headless Chromium (Debian `chromium`), whose
rendered DOM is checked and whose screenshot is kept: `status-page.png` in the test's tmp dir,
and copied to $L2VPC_TEST_ARTIFACTS when that is set (CI keeps that directory). The guard
(loopback, else an admin token) is checked with the controller's own Authenticator."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from l2vpc.controller import auth
from l2vpc.controller.server import ControllerHandle
from l2vpc.controller.statuspage import PairHealth, StatusPage
from l2vpc.engine.api import Engine
from l2vpc.observability.listener import Request
from l2vpc.testing.scrape import get

from ._api_helpers import make_pki, running_controller
from ._browser_helpers import CHROMIUM, Rows, chromium

SECRET_PSK = "secretkey123"


@pytest.fixture
def ctl(tmp_path: Path) -> Iterator[ControllerHandle]:
    pki = make_pki(tmp_path / "pki")
    with running_controller(str(tmp_path / "state.db"), pki, metrics_address="127.0.0.1:0") as handle:
        e = Engine(handle.store, handle.agents, secrets=handle.service.secrets)
        for n in (1, 2):
            e.register_host({"name": f"c{n}", "region": "r1", "underlay_ip": f"10.0.0.{n}"})
        e.register_host({"name": "e1", "region": "r1", "role": "edge", "location": "nyc1",
                         "underlay_ip": "10.0.0.11", "public_cidr": "203.0.113.32/28",
                         "public_gateway": "203.0.113.33"})
        vpc = e.create("vpc", {"name": "web", "region": "r1", "cidr": "10.1.0.0/24",
                               "dhcp": {"range_start": "10.1.0.100", "range_end": "10.1.0.150"}})
        for n in (1, 2):
            e.create("attachment", {"vpc_id": vpc.id, "workload": f"w{n}", "host": f"c{n}", "ip_mode": "dhcp"})
        e.create("direct_connect", {"name": "dx1", "vpc_id": vpc.id, "location": "nyc1", "bandwidth_mbps": 1000,
                                    "mode": "layer2"})
        e.create("vpn", {"name": "vpn1", "vpc_id": vpc.id, "peer_address": "198.51.100.7",
                         "pre_shared_key": SECRET_PSK, "remote_cidrs": ["192.168.50.0/24"]})
        e.set_host_status("c2", "down")
        yield handle


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (./dev installs it)")
def test_status_page_in_a_real_browser(ctl: ControllerHandle, tmp_path: Path) -> None:
    assert ctl.listener is not None and ctl.status_page is not None
    vpc_id = Engine(ctl.store, ctl.agents).list("vpc")[0].id
    # The overlay probes' place on the page, filled as their owner will.
    ctl.status_page.overlay = lambda: [PairHealth(vpc_id, "c1", "c2", "degraded", 1450, "8972-byte DF probe lost")]
    url = f"http://{ctl.listener.address}/status"
    dom = chromium("--dump-dom", url, profile=tmp_path / "chrome")
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = Rows()
    page.feed(dom.stdout)
    assert {"summary", "hosts", "vpcs", "services", "overlay", "events"} <= page.ids, page.ids
    hosts = {r["data-host"]: r["data-status"] for r in page.rows if "data-host" in r}
    assert hosts == {"c1": "up", "c2": "down", "e1": "up"}
    vpcs = {r["data-vpc"]: r["data-status"] for r in page.rows if "data-vpc" in r}
    assert vpcs == {"web": "degraded"}  # its overlay pair is failing
    services = {r["data-service"] for r in page.rows if "data-service" in r}
    assert services == {"web", "dx1", "vpn1"}  # the DHCP server, the direct connect, the VPN
    pairs = {r["data-pair"]: r["data-status"] for r in page.rows if "data-pair" in r}
    assert pairs == {"c1|c2": "degraded"}
    text = " ".join(page.text)
    assert re.search(r'id="hosts-up">2<', dom.stdout) and re.search(r'id="hosts-down">1<', dom.stdout)
    assert "nyc1" in text and "1450" in text and "8972-byte DF probe lost" in text
    assert re.search(r'data-service="dx1".*?<td>e1</td>', dom.stdout)  # placed on the edge host
    assert SECRET_PSK not in dom.stdout  # nothing secret on the page

    shot = tmp_path / "status-page.png"
    result = chromium(f"--screenshot={shot}", "--window-size=1280,1400", "--hide-scrollbars", url,
                       profile=tmp_path / "chrome")
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1280, 1400)
    artifacts = os.environ.get("L2VPC_TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / "status-page.png")


def test_status_page_guard_loopback_or_admin_token(ctl: ControllerHandle) -> None:
    page = ctl.status_page
    assert page is not None and ctl.listener is not None
    status, body = get(f"http://{ctl.listener.address}/status")  # from loopback: no token needed
    assert status == 200 and "<table" in body and SECRET_PSK not in body
    # No agent reports a failing overlay pair: the section says so (rows come from the reports).
    assert 'id="overlay-empty"' in body and "Every probed pair is healthy" in body

    admin = auth.create_token(ctl.store, "admin")[1]
    tenant = auth.create_token(ctl.store, "tenant", tenant="acme")[1]

    def remote(token: str | None) -> tuple[int, str]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        response = page(Request("/status", "", "192.0.2.10", headers))
        return response.status, response.body.decode()

    status, body = remote(None)
    assert status == 401 and "admin token" in body
    assert remote("l2vpc_tok-000000000000_" + "x" * 43)[0] == 401
    status, body = remote(tenant)
    assert status == 403 and "role tenant" in body
    status, body = remote(admin)
    assert status == 200 and 'data-host="c2"' in body
    assert page(Request("/status", "", "::ffff:127.0.0.1", {})).status == 200  # v4-mapped loopback
    assert isinstance(page, StatusPage)
