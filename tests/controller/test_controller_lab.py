"""`l2vpc lab up --controllers 2 --postgres`: a controller lab that just works (issue 14).

The CLI as a user runs it (in-process `main`, real processes behind it): two controllers on a
PostgreSQL cluster the lab creates, agents in namespaces registered with them, tokens written.
From this (the root) namespace: the quickstart example applied through the provider under real
Terraform with the environment `lab up` prints, `l2vpc show` and `lab check` against the
controllers; the leader SIGKILLed, `lab check` and a second apply still work through the other;
`lab down` leaves no process, namespace, link, cluster or file behind.
Also: a controller the agents cannot reach fails `lab up` with the reason, and nothing is left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from l2vpc.cli import main
from l2vpc.lab.lab import Lab
from l2vpc.pki import CertificateAuthority
from l2vpc.testing.scrape import wait_for
from l2vpc.testing.terraform import TerraformDir

from ._remote_helpers import terraform_env

pytestmark = [pytest.mark.root, pytest.mark.terraform,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")]

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "terraform" / "quickstart" / "main.tf"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def leftovers(lab_id: str) -> list[str]:
    spaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found = [line.split()[0] for line in spaces.splitlines() if f"l2lab{lab_id}" in line]
    found += [line for line in links.splitlines() if f"l2lab{lab_id}" in line]
    found += [str(p) for p in Path("/tmp").glob(f"l2lab{lab_id}-*")]
    return found


def test_two_controllers_on_postgres_survive_the_leader(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("L2VPC_ENDPOINT", "L2VPC_TOKEN", "L2VPC_CA_FILE", "L2VPC_STATE_PATH", "L2VPC_SECRET_KEY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("L2VPC_HOME", str(tmp_path / "home"))
    rc, out, err = run(capsys, "lab", "up", "--hosts", "2", "--controllers", "2", "--postgres")
    assert rc == 0, err
    st = Lab(str(tmp_path / "home" / "state.db")).require()
    try:
        assert len(st.controllers) == 2 and st.postgres and Path(st.postgres["dir"]).is_dir()
        assert "agents registered with the controller" in err
        # The hint names what applies here: the controllers and their tokens, no state file.
        hint = next(line for line in out.splitlines() if line.startswith("next:"))
        assert "state.db" not in hint and 'eval "$(l2vpc lab env)"' in hint
        assert st.tenant_token_file and os.stat(st.tenant_token_file).st_mode & 0o077 == 0
        token = Path(st.tenant_token_file).read_text().strip()
        assert token not in out + err
        rc, exports, err = run(capsys, "lab", "env")
        assert rc == 0 and token not in exports
        shell = subprocess.run(["bash", "-c", f'{exports}\necho "$L2VPC_ENDPOINT $L2VPC_CA_FILE $L2VPC_TOKEN"'],
                               capture_output=True, text=True, check=True).stdout.split()
        env = dict(zip(("L2VPC_ENDPOINT", "L2VPC_CA_FILE", "L2VPC_TOKEN"), shell, strict=True))
        assert env["L2VPC_ENDPOINT"] == ",".join(st.endpoints) and env["L2VPC_TOKEN"] == token

        for key, value in terraform_env(tmp_path).items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("L2VPC_ENDPOINT", env["L2VPC_ENDPOINT"])
        monkeypatch.setenv("L2VPC_CA_FILE", env["L2VPC_CA_FILE"])
        monkeypatch.setenv("L2VPC_TOKEN", token)
        work = TerraformDir(tmp_path / "quickstart")
        work.dir.mkdir()
        (work.dir / "main.tf").write_text(QUICKSTART.read_text())
        work.apply()
        for key in ("L2VPC_ENDPOINT", "L2VPC_TOKEN", "L2VPC_CA_FILE"):
            monkeypatch.delenv(key)

        rc, out, err = run(capsys, "show")  # no options: the lab's controllers, as an admin
        assert rc == 0, err
        assert len([line for line in out.splitlines() if line.startswith("attachment ")]) == 4, out
        assert "the lab's controllers" in err
        rc, out, err = run(capsys, "lab", "check")
        assert rc == 0 and "3/3" not in out and "6/6 pairs answer ping" in out and "check passed" in out, out + err

        def leader_now() -> str:
            rc, out, err = run(capsys, "controller", "status", "--endpoint", ",".join(st.endpoints), "--token-file",
                               str(st.admin_token_file), "--ca", str(st.controller_ca), "--json")
            assert rc == 0, err
            return str(json.loads(out)["leader"])

        # A lease that lapsed for a moment (a busy machine) reads as no leader: ask again.
        leader = wait_for(leader_now, 30, "a leader")
        victim = next(c for c in st.controllers if c["id"] == leader)
        os.kill(victim["pid"], signal.SIGKILL)

        rc, out, err = run(capsys, "lab", "check")
        assert rc == 0 and "check passed" in out, out + err
        rc, out, err = run(capsys, "lab", "status")
        assert rc == 0 and f"controller {leader}: {victim['endpoint']}, not running" in out, out
        # Terraform through the survivor (its endpoint list names both; the dead one is skipped).
        monkeypatch.setenv("L2VPC_ENDPOINT", ",".join(st.endpoints))
        monkeypatch.setenv("L2VPC_CA_FILE", str(st.controller_ca))
        monkeypatch.setenv("L2VPC_TOKEN", token)
        work.assert_plan_empty()
    finally:
        rc, out, err = run(capsys, "lab", "down")
    assert rc == 0, err
    assert "removed the lab's PostgreSQL" in err
    assert leftovers(st.id) == []
    for c in st.controllers:
        assert not Path(f"/proc/{c['pid']}").exists() or c["ready_file"] not in Path(
            f"/proc/{c['pid']}/cmdline").read_text()
    assert not (tmp_path / "home" / "lab").exists()


def test_an_unreachable_controller_fails_lab_up_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The natural `--controller 127.0.0.1:PORT` used to exit 0 while the agents retried forever."""
    monkeypatch.setenv("L2VPC_HOME", str(tmp_path / "home"))
    ca = CertificateAuthority.create(tmp_path / "pki")
    tokens = tmp_path / "tokens"
    tokens.write_text("host1 t1\n")
    tokens.chmod(0o600)
    common = ["lab", "up", "--hosts", "1", "--pki", str(tmp_path / "pki"), "--controller-ca", str(ca.ca_path),
              "--controller-tokens", str(tokens)]
    rc, out, err = run(capsys, *common, "--controller", "127.0.0.1:7700", "--controller", "127.0.0.1:7700")
    assert rc == 1 and "--controller: 127.0.0.1:7700 given twice" in err, err
    rc, out, err = run(capsys, *common, "--controller", "127.0.0.1:7700")
    assert rc == 1, out
    assert "cannot reach 127.0.0.1:7700" in err and "10.200.255.254" in err and "--controllers" in err, err
    assert not (tmp_path / "home" / "lab").exists()
    assert sorted(p.name for p in (tmp_path / "pki").iterdir()) == ["ca.key", "ca.pem"]
