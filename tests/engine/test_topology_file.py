"""`l2vpc plan|apply -f FILE` run in-process: bad files fail with one line and write nothing.

Every bad file must give exit status 1 and exactly one stderr line `error: ...` naming the
offending place (file, or the field path inside it), and must neither create a state file nor
change an existing one (compared byte for byte and row by row).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from l2vpc.cli import main
from l2vpc.engine import topology_file

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "topology" / "two-vpcs.yaml"
HOSTS = """\
hosts:
  - {name: h1, region: r1, underlay_ip: 10.200.0.1}
  - {name: h2, region: r2, underlay_ip: 10.200.0.2}
"""
GOOD = (
    HOSTS
    + """\
vpcs:
  - {name: a, region: r1, cidr: 10.0.0.0/24}
attachments:
  - {vpc: a, workload: w1, ip_mode: static, ip_address: 10.0.0.5/24}
"""
)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def state_files(state: Path) -> dict[str, bytes]:
    """The state file, and its write-ahead log when that holds anything (the -shm index and an
    empty -wal appear as soon as anyone, like state_rows(), merely reads the file)."""
    files = {state.name: state.read_bytes()}
    wal = state.with_name(state.name + "-wal")
    if wal.exists() and wal.stat().st_size:
        files[wal.name] = wal.read_bytes()
    return files


def state_rows(state: Path) -> dict[str, list[tuple[Any, ...]]]:
    con = sqlite3.connect(f"file:{state}?mode=ro", uri=True)
    try:
        return {
            t: sorted(con.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
            for t in ("objects", "allocations", "sequences", "host_reports")
        }
    finally:
        con.close()


@pytest.fixture(scope="module")
def applied_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state file after applying GOOD once (copied per test)."""
    d = tmp_path_factory.mktemp("applied")
    f = d / "good.yaml"
    f.write_text(GOOD)
    state = d / "state.db"
    assert main(["apply", "-f", str(f), "--state", str(state), "--agents", "memory"]) == 0
    assert set(state_files(state)) == {"state.db"}, "a closed store should leave no write-ahead log"
    return state


def assert_one_error_line(err: str, *words: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}: {err!r}"
    assert lines[0].startswith("error: "), lines[0]
    for w in words:
        assert w in lines[0], f"{w!r} not in {lines[0]!r}"
    return lines[0]


def billion_laughs() -> str:
    lines = ['lol0: &lol0 ["lol"]']
    for i in range(1, 10):
        lines.append(f"lol{i}: &lol{i} [" + ", ".join([f"*lol{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


# (file bytes, words the error line must contain; "{file}" stands for the file's path)
BAD_FILES = [
    pytest.param(b"hosts: [\n  - {name: a\n", ["{file}", "not valid YAML", "line 2"], id="garbage-yaml"),
    pytest.param(b"vpcs:\n\tname: a\n", ["{file}", "not valid YAML"], id="tab-indent"),
    pytest.param(b"- vpcs\n- hosts\n", ["{file}", "top level must be a mapping"], id="top-level-list"),
    pytest.param(b"just a string\n", ["{file}", "top level"], id="top-level-scalar"),
    pytest.param(b"vpcz: []\n", ["vpcz", "unknown section", "vpcs"], id="unknown-section"),
    pytest.param(b"vpcs: {name: a}\n", ["vpcs", "must be a list"], id="section-not-list"),
    pytest.param(b"vpcs:\n  - a\n", ["vpcs[0]", "mapping"], id="item-not-mapping"),
    pytest.param(
        b"vpcs:\n  - {name: a, region: r1, colour: blue}\n",
        ["vpcs[0].colour: unknown field"],
        id="unknown-field",
    ),
    pytest.param(
        b"vpcs:\n  - {name: a, region: r1}\n  - {name: b, region: r1, mtu: big}\n",
        ["vpcs[1].mtu", "integer", "'big'"],
        id="wrong-type",
    ),
    pytest.param(
        b"vpcs:\n  - {name: a, region: r1, vni: 5000}\n", ["vpcs[0].vni", "computed"], id="computed-field"
    ),
    pytest.param(
        b'vpcs:\n  - {name: a, region: r1, description: "caf\xe9"}\n', ["{file}", "UTF-8"], id="not-utf8"
    ),
    pytest.param(
        b"vpcs:\n  - {name: a, region: r1}\nattachments:\n  - {vpc: b, workload: w1}\n",
        ["attachments[0].vpc", "'b'"],
        id="missing-vpc-reference",
    ),
    pytest.param(b"attachments:\n  - {workload: w1}\n", ["attachments[0].vpc", "required"], id="no-vpc-key"),
    pytest.param(
        b"vpcs:\n  - {name: a, region: r1}\n  - {name: a, region: r1}\n",
        ["vpcs[1].name", "duplicate", "'a'"],
        id="duplicate-vpc",
    ),
    pytest.param(
        (HOSTS + "  - {name: h1, region: r1, underlay_ip: 10.200.0.3}\n").encode(),
        ["hosts[2].name", "duplicate", "'h1'"],
        id="duplicate-host",
    ),
    pytest.param(
        (GOOD + "  - {vpc: a, workload: w2, ip_mode: static, ip_address: 10.0.0.5/24}\n").encode(),
        ["attachments[1].ip_address", "10.0.0.5", "'w1'"],
        id="cross-object-ip",
    ),
    pytest.param(
        (GOOD + "  - {vpc: a, workload: w2, host: h2}\n").encode(),
        ["attachments[1].host", "h2", "r2"],
        id="cross-object-region",
    ),
    pytest.param(
        (HOSTS + "vpcs:\n  - {name: a, region: r9}\n").encode(),
        ["vpcs[0].region", "r9"],
        id="cross-object-unknown-region",
    ),
    pytest.param(
        (
            GOOD + "vpns:\n  - {vpc: a, name: v1, peer_address: 203.0.113.5, "
            "pre_shared_key: 'Hunter-2-secret!', remote_cidrs: [192.168.0.0/24]}\n"
        ).encode(),
        ["vpns[0].pre_shared_key", "8-64"],
        id="bad-psk",
    ),
    pytest.param(
        b"vpcs: " + b"[" * 1000 + b"]" * 1000 + b"\n", ["{file}", "nested too deeply"], id="deep-nesting"
    ),
    pytest.param(
        b"vpcs:\n  - {name: a, region: r1}\n\x00\n",
        ["{file}", "not valid YAML"],
        id="nul-byte",
    ),
]


@pytest.mark.parametrize(("content", "words"), BAD_FILES)
def test_bad_file_fails_with_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], applied_state: Path, content: bytes, words: list[str]
) -> None:
    f = tmp_path / "topo.yaml"
    f.write_bytes(content)
    words = [w.replace("{file}", str(f)) for w in words]
    for cmd in ("plan", "apply"):
        # A fresh state is not created (nor its directory).
        fresh = tmp_path / "fresh" / "state.db"
        rc, out, err = run(capsys, cmd, "-f", str(f), "--state", str(fresh), "--agents", "memory")
        assert rc == 1
        assert_one_error_line(err, *words)
        assert out == ""
        assert not fresh.parent.exists()
    # An existing state is left byte for byte as it was.
    state = tmp_path / "existing" / "state.db"
    state.parent.mkdir()
    shutil.copy(applied_state, state)
    before, rows = state_files(state), state_rows(state)
    rc, _, err = run(capsys, "apply", "-f", str(f), "--state", str(state), "--agents", "memory")
    assert rc == 1
    assert_one_error_line(err, *words)
    assert state_files(state) == before
    assert state_rows(state) == rows


def test_psk_never_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "topo.yaml"
    f.write_text(
        GOOD + "vpns:\n  - {vpc: a, name: v1, peer_address: 203.0.113.5, "
        "pre_shared_key: 'Hunter-2-secret!', remote_cidrs: [192.168.0.0/24]}\n"
    )
    _, out, err = run(capsys, "plan", "-f", str(f), "--state", str(tmp_path / "s.db"))
    assert "Hunter-2-secret" not in out + err


def test_yaml_alias_bomb_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "lol.yaml"
    f.write_text(billion_laughs())
    state = tmp_path / "s" / "state.db"
    rc, out, err = run(capsys, "apply", "-f", str(f), "--state", str(state))
    assert rc == 1 and out == ""
    assert_one_error_line(err, "line 2", "aliases")
    assert not state.parent.exists()


def test_yaml_alias_error_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "lol.yaml"
    f.write_text(billion_laughs())
    _, _, err = run(capsys, "plan", "-f", str(f), "--state", str(tmp_path / "state.db"))
    assert_one_error_line(err, str(f))


def test_file_larger_than_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "huge.yaml"
    with open(f, "wb") as fh:  # sparse: no 32 MiB actually written
        fh.truncate(topology_file.MAX_FILE_BYTES + 1)
    state = tmp_path / "s" / "state.db"
    rc, out, err = run(capsys, "apply", "-f", str(f), "--state", str(state))
    assert rc == 1 and out == ""
    assert_one_error_line(err, str(f), str(topology_file.MAX_FILE_BYTES), "larger")
    assert not state.parent.exists()


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "nope.yaml"
    rc, _, err = run(capsys, "plan", "-f", str(f), "--state", str(tmp_path / "s.db"))
    assert rc == 1
    assert_one_error_line(err, str(f), "cannot read")


def test_duplicate_vpc_is_reported_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "dup.yaml"
    f.write_text("vpcs:\n  - {name: a, region: r1}\n  - {name: a, region: r1}\n")
    _, _, err = run(capsys, "plan", "-f", str(f), "--state", str(tmp_path / "s.db"))
    line = assert_one_error_line(err, "vpcs[1].name")
    assert line.count("vpcs[1].name") == 1 and "vpc-0000" not in line


def test_engine_error_during_sync_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f1 = tmp_path / "one.yaml"
    f1.write_text(HOSTS + "vpcs:\n  - {name: z, region: r1}\n  - {name: a, region: r1}\n")
    state = tmp_path / "state.db"
    assert run(capsys, "apply", "-f", str(f1), "--state", str(state), "--agents", "memory")[0] == 0
    before, rows = state_files(state), state_rows(state)
    # Dropping z (a delete) comes before the refused region change of a: neither may happen.
    f2 = tmp_path / "two.yaml"
    f2.write_text(HOSTS + "vpcs:\n  - {name: a, region: r2}\n")
    rc, out, err = run(capsys, "apply", "-f", str(f2), "--state", str(state), "--agents", "memory")
    assert rc == 1 and out == ""
    assert_one_error_line(err, "region", "r1", "r2")
    assert state_files(state) == before
    assert state_rows(state) == rows


def test_engine_error_during_sync_names_file_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f1 = tmp_path / "one.yaml"
    f1.write_text(HOSTS + "vpcs:\n  - {name: a, region: r1}\n")
    state = tmp_path / "state.db"
    assert run(capsys, "apply", "-f", str(f1), "--state", str(state), "--agents", "memory")[0] == 0
    f2 = tmp_path / "two.yaml"
    f2.write_text(HOSTS + "vpcs:\n  - {name: a, region: r2}\n")
    _, _, err = run(capsys, "plan", "-f", str(f2), "--state", str(state))
    assert_one_error_line(err, "vpcs[0].region")


# --- happy path ------------------------------------------------------------------------------
def test_plan_prints_creates_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "s" / "state.db"
    rc, out, err = run(capsys, "plan", "-f", str(EXAMPLE), "--state", str(state))
    assert rc == 0, err
    assert "Objects: 7 to create, 0 to update, 0 to delete." in out
    assert "+ segment vni" in out and "+ port db1/net1" in out and "+ dhcp server" in out
    assert "Plan: 11 to create, 0 to update, 0 to replace, 0 to delete; 0 disruptive." in out
    assert not state.parent.exists()


def test_apply_twice_then_no_changes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state.db"
    rc, out, err = run(capsys, "apply", "-f", str(EXAMPLE), "--state", str(state), "--agents", "memory")
    assert rc == 0, err
    assert "Objects: 7 to create" in out and "Apply complete." in out
    after_first = state_rows(state)
    rc, out, _ = run(capsys, "apply", "-f", str(EXAMPLE), "--state", str(state), "--agents", "memory")
    assert rc == 0
    assert "Objects: 0 to create, 0 to update, 0 to delete." in out
    assert "No changes" in out
    rows = state_rows(state)
    assert rows["objects"] == after_first["objects"] and rows["allocations"] == after_first["allocations"]
    rc, out, _ = run(capsys, "plan", "-f", str(EXAMPLE), "--state", str(state))
    assert rc == 0 and "No changes" in out


def test_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state.db"
    rc, out, _ = run(capsys, "plan", "-f", str(EXAMPLE), "--state", str(state), "--json")
    assert rc == 0
    doc = json.loads(out)
    assert doc["objects"] == {"created": 7, "updated": 0, "deleted": 0}
    assert doc["summary"] == {"create": 11, "update": 0, "replace": 0, "delete": 0, "disruptive": 0}
    assert sorted(doc["hosts"]) == ["host1", "host2", "host3"]
    rc, out, _ = run(
        capsys, "apply", "-f", str(EXAMPLE), "--state", str(state), "--json", "--agents", "memory"
    )
    assert rc == 0
    doc = json.loads(out)
    assert doc["summary"]["create"] == 11 and sorted(doc["results"]) == ["host1", "host2", "host3"]
    rc, out, _ = run(capsys, "plan", "-f", str(EXAMPLE), "--state", str(state), "--json")
    doc = json.loads(out)
    assert doc["objects"] == {"created": 0, "updated": 0, "deleted": 0}
    assert set(doc["summary"].values()) == {0} and doc["hosts"] == {}
