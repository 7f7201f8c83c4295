"""The record of a no-op plan (embedded/plan_record.py): `plan -f` answers from it only when the
file, the state's objects and reports, the key and the code are what a plan or an apply found
to be a no-op, and then prints exactly what the full plan prints; any change to any of them
means the full plan again."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

import l2vpc.embedded.cli as embedded_cli
from l2vpc.cli import main
from l2vpc.embedded import plan_record
from l2vpc.engine.api import Engine
from l2vpc.engine.secrets import SecretBox
from l2vpc.engine.store import open_store

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from bench_write_path import topology


@pytest.fixture
def full_plans(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many plans were computed in full (plan_sync), not answered from the record."""
    calls: list[int] = []
    real = embedded_cli.plan_sync

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(embedded_cli, "plan_sync", counted)
    yield calls


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out


def plan(capsys: pytest.CaptureFixture[str], file: Path, state: Path, *more: str) -> str:
    return cli(capsys, "plan", "-f", str(file), "--state", str(state), *more)


def full_plan(capsys: pytest.CaptureFixture[str], file: Path, state: Path, *more: str) -> str:
    """The plan without the record (kept aside, then put back)."""
    record = Path(str(state) + plan_record.RECORD_SUFFIX)
    kept = record.read_bytes() if record.exists() else None
    record.unlink(missing_ok=True)
    try:
        return plan(capsys, file, state, *more)
    finally:
        if kept is not None:
            record.write_bytes(kept)


@pytest.fixture
def applied(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    import json

    doc = topology(8, 8, 40)
    doc["attachments"] += [{"vpc": "v00001", "workload": "free1", "ip_mode": "dhcp"}, {"vpc": "v00003", "workload": "free2"}]
    file = tmp_path / "topology.json"
    file.write_text(json.dumps(doc))
    state = tmp_path / "state.db"
    cli(capsys, "apply", "-f", str(file), "--state", str(state), "--agents", "memory")
    return file, state


def test_apply_records_a_no_op_and_plan_answers_as_the_full_plan(
        applied: tuple[Path, Path], capsys: pytest.CaptureFixture[str], full_plans: list[int]) -> None:
    file, state = applied
    assert plan_record.recorded(str(state))
    for more in ((), ("--json",)):
        answered = plan(capsys, file, state, *more)
        assert not full_plans  # from the record
        assert answered == full_plan(capsys, file, state, *more)
        assert full_plans and ("No changes" in answered or '"hosts": {}' in answered)
        full_plans.clear()
    assert Path(str(state) + plan_record.RECORD_SUFFIX).stat().st_mode & 0o777 == 0o600


def test_a_full_no_op_plan_records_itself(applied: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
                                          full_plans: list[int]) -> None:
    file, state = applied
    Path(str(state) + plan_record.RECORD_SUFFIX).unlink()
    first = plan(capsys, file, state)
    assert len(full_plans) == 1 and plan_record.recorded(str(state))
    assert plan(capsys, file, state) == first and len(full_plans) == 1


def _engine(state: Path) -> Engine:
    return Engine(open_store(str(state)), secrets=SecretBox.for_state(str(state)))


def _change_file(file: Path, state: Path) -> None:
    text = file.read_text()
    assert '"10.0.1.10/24"' in text
    file.write_text(text.replace('"10.0.1.10/24"', '"10.0.1.60/24"', 1))


def _change_object(file: Path, state: Path) -> None:
    engine = _engine(state)
    try:
        vpc = next(v for v in engine.list("vpc") if v.name == "v00002")
        engine.update("vpc", vpc.id, {**vpc.model_dump(exclude={"id", "vni", "status"}), "mtu": 9000})
    finally:
        engine.store.close()


def _change_report(file: Path, state: Path) -> None:
    # Drift recorded by a refresh: a host lost a port (same generation, other content).
    engine = _engine(state)
    try:
        with engine.store.transaction() as tx:
            host, report = next((h, r) for h, r in sorted(tx.host_reports().items()) if r.config.get("ports"))
            config = {**report.config, "ports": report.config["ports"][1:]}
            tx.put_host_report(host, report.generation, config)
    finally:
        engine.store.close()


def _change_pod_attachment(file: Path, state: Path) -> None:
    engine = _engine(state)
    try:
        host = engine.hosts()[0].name
        vpc = next(v for v in engine.list("vpc") if v.region == engine.hosts()[0].region)
        engine.attach_pod(vpc.id, host=host, workload="pod1", interface_name=None, owner=f"pod:{host}/abc")
    finally:
        engine.store.close()


def _change_key(file: Path, state: Path) -> None:
    Path(str(state) + ".key").write_bytes(Fernet.generate_key())  # secrets' digests change with it


@pytest.mark.parametrize("change", [_change_file, _change_object, _change_report, _change_pod_attachment, _change_key])
def test_any_change_means_the_full_plan(applied: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
                                        full_plans: list[int], change: Any) -> None:
    file, state = applied
    no_op = plan(capsys, file, state)
    assert not full_plans
    change(file, state)
    answered = plan(capsys, file, state)
    assert full_plans, "answered from a record of another state"
    assert answered == full_plan(capsys, file, state)
    assert (answered == no_op) == (change is _change_key)  # a new key alone changes no plan here


def test_a_state_that_cannot_be_read_gets_the_full_plans_error(
        applied: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    file, state = applied
    with sqlite3.connect(state) as con:
        con.execute("DROP TABLE host_reports")
    rc = main(["plan", "-f", str(file), "--state", str(state)])
    assert rc != 0 and "No changes" not in capsys.readouterr().out


def test_an_apply_that_fails_records_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    doc = topology(4, 2, 4)
    doc["hosts"][0]["agent_address"] = "127.0.0.1:1"  # an agent nobody runs: its pushes fail
    file = tmp_path / "topology.json"
    file.write_text(json.dumps(doc))
    state = tmp_path / "state.db"
    rc = main(["apply", "-f", str(file), "--state", str(state), "--agents", "grpc"])
    assert rc == 1 and "Apply failed" in capsys.readouterr().out
    assert plan_record.recorded(str(state)) is None
