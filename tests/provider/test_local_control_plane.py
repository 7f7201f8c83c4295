"""The provider finds the local control plane (the controller `l2vpc lab up` runs) through its
record beside the default state, when nothing else says where to go; explicit settings win:
an endpoint (block or $L2VPC_ENDPOINT), a state_path in the block, a token or CA without an
endpoint. A record whose controllers are gone is an error naming it and what to run.

A real lab (memory driver: agents and a controller as processes, no namespaces) on SQLite, as
`lab up` makes it by default.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from l2vpc import paths
from l2vpc.cli import main
from l2vpc.lab import controllers
from l2vpc.lab.controller_lab import ControllerPlan
from l2vpc.lab.controllers import ControllerRecord
from l2vpc.lab.lab import Lab
from l2vpc.lab.state import LabState
from l2vpc.lab.topology import LabTopology
from l2vpc.provider.diagnostics import Diagnostics
from l2vpc.provider.l2vpc_provider import L2vpcProvider, build_provider
from l2vpc.provider.planning import configure_provider

ENV = ("L2VPC_ENDPOINT", "L2VPC_TOKEN", "L2VPC_CA_FILE", "L2VPC_STATE_PATH", "L2VPC_SECRET_KEY")


def configure(**values: str) -> tuple[L2vpcProvider, Diagnostics]:
    provider = build_provider()
    block = {name: values.get(name) for name in L2vpcProvider.schema.attributes}
    return provider, configure_provider(provider, block, "1.15.5")


@pytest.fixture
def local_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Lab, LabState]]:
    for key in ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("L2VPC_HOME", str(tmp_path / "home"))
    lab = Lab(paths.default_state_path())
    st = lab.up(LabTopology.build(hosts=1), "memory", controllers=ControllerPlan(1))
    try:
        yield lab, st
    finally:
        lab.down()


def test_the_record_is_found_and_explicit_settings_win(local_lab: tuple[Lab, LabState], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    _lab, st = local_lab
    record = Path(paths.control_plane_path())
    assert record.parent == tmp_path / "home" and record.stat().st_mode & 0o077 == 0
    tenant = Path(str(st.tenant_token_file)).read_text().strip()
    assert tenant not in record.read_text() and Path(str(st.admin_token_file)).read_text().strip() not in \
        record.read_text()

    # Nothing set: the lab's controller, with the tenant's token and the lab's CA.
    provider, diags = configure(region="us-east")
    assert diags.errors == [] and provider.client is not None and provider.client.remote
    assert provider.settings["endpoint"] == ",".join(st.endpoints)
    assert provider.settings["token"] == tenant and provider.settings["ca_file"] == st.controller_ca
    assert [h.name for h in provider.client.engine.hosts()] == ["host1"]  # it answers, as the lab's tenant
    provider.close()

    # state_path in the block: the embedded engine on that file.
    provider, diags = configure(state_path=str(tmp_path / "elsewhere.db"))
    assert diags.errors == [] and provider.client is not None and not provider.client.remote
    assert provider.settings["state_path"] == str(tmp_path / "elsewhere.db")
    provider.close()

    # An endpoint from the environment: that controller, not the record's.
    monkeypatch.setenv("L2VPC_ENDPOINT", "10.0.0.5:7700")
    monkeypatch.setenv("L2VPC_TOKEN", "from-env")
    provider, diags = configure()
    assert diags.errors == [] and provider.settings["endpoint"] == "10.0.0.5:7700"
    assert provider.settings["token"] == "from-env"
    provider.close()
    monkeypatch.delenv("L2VPC_ENDPOINT")

    # A token without an endpoint: not silently swapped for the record's (the warning says so).
    provider, diags = configure()
    assert diags.errors == [] and provider.client is not None and not provider.client.remote
    assert [d.summary for d in diags.warnings] == ["Token without an endpoint"]
    provider.close()


def test_a_stale_record_is_an_error_naming_it(local_lab: tuple[Lab, LabState], capsys: pytest.CaptureFixture[str]
                                              ) -> None:
    _lab, st = local_lab
    for c in st.controllers:
        controllers.kill(ControllerRecord(**c))
    record = paths.control_plane_path()
    provider, diags = configure()
    assert provider.client is None
    (error,) = diags.errors
    assert error.summary == "Local control plane unavailable"
    assert record in error.detail and "not running" in error.detail
    assert "`l2vpc lab down`" in error.detail and "`l2vpc lab up`" in error.detail

    # The CLI says the same at once (no retrying a dead address); `lab down` removes the record.
    for argv in (["show"], ["graph", "--format", "dot"], ["plan", "-f", "x.yaml"]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert record in err and "`l2vpc lab down`" in err, (argv, err)
    assert main(["lab", "down"]) == 0
    assert not os.path.exists(record)
    provider, diags = configure()  # nothing left: the embedded engine on the default state
    assert diags.errors == [] and provider.client is not None and not provider.client.remote
    provider.close()


def test_lab_down_removes_a_record_its_lab_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A record without its lab (lab.json gone: a lab removed by hand) is stale; `lab down` and
    the next `lab up` take it away."""
    monkeypatch.setenv("L2VPC_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("L2VPC_STATE_PATH", raising=False)
    record = Path(paths.control_plane_path())
    record.parent.mkdir(parents=True)
    record.write_text('{"format": 1, "endpoints": ["127.0.0.1:1"], "ca_file": "x", "token_file": "t", '
                      '"admin_token_file": "a", "processes": [{"pid": 1, "marker": "/nowhere/c1.ready"}]}')
    with pytest.raises(paths.ControlPlaneError, match="gone"):
        paths.local_control_plane()
    assert main(["lab", "down"]) == 0
    assert not record.exists()
