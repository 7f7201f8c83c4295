"""Every examples/terraform/* configuration is applied on a lab and destroyed (examples as tests).

As root the lab runs the Linux driver and the tests check what the example promises on the
wire (reachability, the router's firewall); otherwise the memory driver, and only apply/destroy
and the agents' reports are checked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from l2vpc.cli import main as cli
from l2vpc.embedded import open_engine
from l2vpc.lab import lab_pods
from l2vpc.lab.lab import Lab
from l2vpc.lab.topology import LabTopology

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "terraform"
ROOT = os.geteuid() == 0

pytestmark = pytest.mark.terraform


class ExampleLab:
    def __init__(self, base: Path, example: str) -> None:
        self.state = base / "state" / "state.db"
        self.dir = base / example
        shutil.copytree(EXAMPLES / example, self.dir)
        self.lab = Lab(str(self.state))

    def tf(self, *args: str) -> None:
        assert cli(["tf", "-C", str(self.dir), *args, "-no-color"]) == 0

    def output(self, name: str) -> str:
        # `l2vpc tf` writes to the terminal; read the state instead of capturing it.
        import json

        state = json.loads((self.dir / "terraform.tfstate").read_text())
        value = state["outputs"][name]["value"]
        return value if isinstance(value, str) else json.dumps(value)

    def exec(self, workload: str, *command: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.lab.exec_argv(workload, list(command)), input=stdin, capture_output=True, text=True)

    def objects(self) -> dict[str, int]:
        engine = open_engine(str(self.state), agents="memory")
        try:
            return {k: len(engine.list(k)) for k in ("vpc", "attachment", "direct_connect", "vpn")}
        finally:
            engine.store.close()


MakeLab = Callable[[str], ExampleLab]


@pytest.fixture
def example_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeLab]:
    made: list[ExampleLab] = []

    def make(example: str) -> ExampleLab:
        ex = ExampleLab(tmp_path, example)
        monkeypatch.setenv("L2VPC_STATE_PATH", str(ex.state))
        ex.lab.up(LabTopology.build(3, ["us-east"], 1, ["nyc1"]), driver="auto")
        made.append(ex)
        return ex

    yield make
    for ex in made:
        if (ex.dir / "terraform.tfstate").exists():
            cli(["tf", "-C", str(ex.dir), "destroy", "-auto-approve", "-no-color"])
        ex.lab.down()
    assert not [e for e in made if e.lab.load() is not None]


def test_quickstart(example_lab: MakeLab) -> None:
    ex = example_lab("quickstart")
    ex.tf("apply", "-auto-approve")
    assert ex.objects() == {"vpc": 1, "attachment": 4, "direct_connect": 0, "vpn": 0}
    result = ex.lab.check(timeout=10)
    assert result.ok, "\n".join(result.lines)
    assert any(line.startswith("pending default-cache.net1") for line in result.lines), result.lines
    if ROOT:
        # The first workload holds its DHCP reservation; a 9000-byte frame crosses unfragmented.
        assert "10.50.0.10/24" in ex.exec("web1", "ip", "-4", "addr", "show", "net1").stdout
        assert ex.exec("web2", "ping", "-c1", "-W2", "-M", "do", "-s", "8972", "10.50.0.10").returncode == 0
        if shutil.which("containerd"):
            # The Pod starts: its declared attachment becomes its interface, and it reaches the rest.
            lab_pods.run(ex.lab.require(), ex.lab.dir, "cache", ["quickstart"])
            result = ex.lab.check(timeout=10)
            assert result.ok and "vpc quickstart: 4 interfaces" in "\n".join(result.lines), result.lines
            lab_pods.remove(ex.lab.require(), "cache")
    ex.tf("destroy", "-auto-approve")
    assert ex.objects() == {"vpc": 0, "attachment": 0, "direct_connect": 0, "vpn": 0}


def test_multi_vlan_router_and_firewall(example_lab: MakeLab) -> None:
    ex = example_lab("multi-vlan")
    ex.tf("apply", "-auto-approve")
    assert ex.objects()["attachment"] == 6
    result = ex.lab.check(timeout=10)
    assert result.ok, "\n".join(result.lines)
    if not ROOT:
        return
    setup = ex.exec("router1", "sh", stdin=ex.output("router_setup"))
    assert setup.returncode == 0, setup.stderr
    rules = ex.exec("router1", "nft", "-f", "-", stdin=(EXAMPLES / "multi-vlan" / "router.nft").read_text())
    assert rules.returncode == 0, rules.stderr
    # Routed by the virtual router and allowed by its firewall ...
    assert ex.exec("web1", "ping", "-c1", "-W2", "10.61.0.10").returncode == 0
    assert ex.exec("app1", "ping", "-c1", "-W2", "10.62.0.10").returncode == 0
    # ... and dropped by it: frontend may not reach storage.
    assert ex.exec("web1", "ping", "-c1", "-W2", "10.62.0.10").returncode != 0


PREMISES_PSK = "demo.psk.2024"  # what site-to-site-vpn uses by default


@pytest.fixture
def premises_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeLab]:
    """As example_lab, with the premises site the edge examples talk to (`lab up --edges 1 --premises`)."""
    from l2vpc.lab.premises import PremisesConfig

    made: list[ExampleLab] = []

    def make(example: str) -> ExampleLab:
        ex = ExampleLab(tmp_path, example)
        monkeypatch.setenv("L2VPC_STATE_PATH", str(ex.state))
        ex.lab.up(LabTopology.build(2, ["us-east"], 1, ["nyc1"]), driver="linux", premises=PremisesConfig(),
                  premises_psk=PREMISES_PSK)
        made.append(ex)
        return ex

    yield make
    for ex in made:
        if (ex.dir / "terraform.tfstate").exists():
            cli(["tf", "-C", str(ex.dir), "destroy", "-auto-approve", "-no-color"])
        ex.lab.down()
    assert not [e for e in made if e.lab.load() is not None]


@pytest.mark.root
def test_direct_connect_routes_the_premises_lan(premises_lab: MakeLab) -> None:
    import json

    ex = premises_lab("direct-connect")
    ex.tf("apply", "-auto-approve")
    assert ex.objects() == {"vpc": 1, "attachment": 1, "direct_connect": 1, "vpn": 0}
    dx = json.loads(ex.output("direct_connect"))
    assert dx["status"] == "active"
    assert (dx["peering"]["customer_ip"], dx["peering"]["provider_ip"]) == ("169.254.10.2", "169.254.10.1")
    # The premises LAN, learned over BGP from the customer router, is routed from the workload.
    assert any(ex.exec("db1", "ping", "-c1", "-W1", "192.168.50.10").returncode == 0 for _ in range(5))
    ex.tf("destroy", "-auto-approve")
    assert ex.objects() == {"vpc": 0, "attachment": 0, "direct_connect": 0, "vpn": 0}


@pytest.mark.root
def test_site_to_site_vpn_reaches_the_premises_lan(premises_lab: MakeLab) -> None:
    import json

    ex = premises_lab("site-to-site-vpn")
    ex.tf("apply", "-auto-approve")
    assert ex.objects() == {"vpc": 1, "attachment": 1, "direct_connect": 0, "vpn": 1}
    vpn = json.loads(ex.output("vpn"))
    assert vpn["status"] == "up" and vpn["public_ip"].startswith("203.0.113.")
    # Through the tunnel to the premises gateway, to the host behind it.
    assert any(ex.exec("app1", "ping", "-c1", "-W1", "192.168.50.10").returncode == 0 for _ in range(5))
    ex.tf("destroy", "-auto-approve")
    assert ex.objects() == {"vpc": 0, "attachment": 0, "direct_connect": 0, "vpn": 0}
