"""Every bench script in bench/ runs, small, and prints its figures.

Benches rot silently otherwise: a renamed method crashed bench_plan.py and nothing noticed.
Each script runs as a person runs it (`python bench/X.py`, its own process) with the smallest
arguments that still take all its paths (`smoke` in bench/_catalogue.py), and must exit 0 and
print every figure bench/compare.py reads. The values are not judged: at these sizes, on a
shared machine, being over a target means nothing (the two benches that exit 1 on a missed
target get `--no-fail-on-target`). Root-only benches are marked `root`, Terraform ones
`terraform`; PostgreSQL ones skip, with the helper's reason, where no throwaway server can run.
After a run no process may still name the bench's temporary directory, and the benches' own
leftover warnings must be absent.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from l2vpc.testing.leftovers import processes_mentioning

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look the module up by name; compare.py imports it so
    spec.loader.exec_module(module)
    return module


cat = _load("_catalogue", BENCH / "_catalogue.py")
compare = _load("bench_compare", BENCH / "compare.py")

QUICK = {"bench_plan", "bench_store", "bench_provider_start"}  # the others take seconds: marked slow
LEFTOVER_WORDS = ("left behind", "CLEANUP:")  # what the benches print when their cleanup missed something


def _marks(bench: cat.Bench) -> list[pytest.MarkDecorator]:
    marks = [] if bench.name in QUICK else [pytest.mark.slow]
    if "root" in bench.needs:
        marks.append(pytest.mark.root)
    if "terraform" in bench.needs:
        marks.append(pytest.mark.terraform)
    if "postgres" in bench.needs:
        reason = cat.postgres_missing()
        marks.append(pytest.mark.skipif(reason is not None, reason=str(reason)))
    return marks


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """TMPDIR of one bench run: short (unix sockets live below it), and a name to find leftovers by."""
    path = Path(tempfile.mkdtemp(prefix="l2bt-", dir="/tmp"))
    path.chmod(0o711)  # a throwaway PostgreSQL runs as the `postgres` user below it
    try:
        yield path
    finally:
        subprocess.run(["rm", "-rf", str(path)], check=False)


def run_script(bench: cat.Bench, tmp: Path) -> tuple[int, str]:
    """Run the bench as a script, as its own process group, output to a file; on timeout
    SIGINT first, so its `finally` blocks remove namespaces and daemons before anything is killed."""
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONUNBUFFERED="1")
    if bench.private_cache:
        env["XDG_CACHE_HOME"] = str(tmp / "cache")
    argv = [sys.executable, str(bench.script), *bench.smoke, *bench.smoke_only]
    log = tmp / "output.log"
    with log.open("w") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            proc.wait(timeout=bench.smoke_timeout)
        except subprocess.TimeoutExpired:
            compare.stop(proc)
            pytest.fail(f"{bench.name} did not finish in {bench.smoke_timeout:.0f} s:\n{log.read_text()[-4000:]}")
    return proc.returncode, log.read_text()


def test_every_bench_script_is_catalogued() -> None:
    """A new bench joins the catalogue (and so this test and compare.py), or this fails."""
    assert cat.bench_scripts() == sorted(cat.BY_NAME)


@pytest.mark.parametrize("bench", [pytest.param(b, id=b.name, marks=_marks(b)) for b in cat.BENCHES])
def test_bench_runs_and_prints_its_figures(bench: cat.Bench, short_tmp: Path) -> None:
    rc, out = run_script(bench, short_tmp)
    assert rc == 0, f"{bench.name} exited {rc}:\n{out[-4000:]}"
    missing = cat.missing_figures(bench, out)
    assert not missing, f"{bench.name} no longer prints figures matching {missing}:\n{out[-4000:]}"
    assert not [w for w in LEFTOVER_WORDS if w in out], out[-4000:]
    deadline = time.monotonic() + 10
    while (left := processes_mentioning(str(short_tmp))) and time.monotonic() < deadline:
        time.sleep(0.2)  # daemons told to stop may take a moment to go
    assert not left, f"{bench.name} left processes behind: {left}"


def test_parse_names_figures_by_section_and_counts_repeats() -> None:
    bench = cat.BY_NAME["bench_overlay_iperf"]
    out = ("built: underlay + 2 hosts (2 VPCs, 4 ports) via LinuxDriver, 2 veth pairs in 0.1 s; 2 CPUs\n"
           "\noffloads on (defaults)\n  overlay 9000     10.60 Gbit/s  (retransmits 21)\n"
           "  veth 1500        12.49 Gbit/s  (retransmits 5610)\n"
           "\noffloads off on 25 devices (tso gso gro tx rx)\n\noffloads off\n"
           "  overlay 9000      5.59 Gbit/s  (retransmits 43)\n  overlay 9000      1,005.5 Gbit/s\n")
    got = [(m.name, m.value) for m in cat.parse(bench, out)]
    assert got == [
        ("setup: 2 hosts converged + veth pairs", 0.1),
        ("offloads on: overlay 9000", 10.6),
        ("offloads on: veth 1500", 12.49),
        ("offloads off: overlay 9000", 5.59),
        ("offloads off: overlay 9000 #2", 1005.5),
    ]
    assert cat.missing_figures(bench, out) == []
    assert cat.missing_figures(bench, "offloads on (defaults)\n") == [f.pattern for f in bench.figures]


def test_verdict_follows_each_figures_direction_threshold_and_noise() -> None:
    v = compare.verdict
    assert v("lower", 100.0, 111.0, 0.10, 0.0) == "WORSE"  # a time grew by 11 %
    assert v("lower", 100.0, 109.0, 0.10, 0.0) == ""
    assert v("lower", 100.0, 80.0, 0.10, 0.0) == "better"
    assert v("higher", 1000.0, 880.0, 0.10, 0.0) == "WORSE"  # a rate fell by 12 %
    assert v("higher", 1000.0, 1200.0, 0.10, 0.0) == "better"
    assert v("lower", 2.0, 3.0, 0.10, 2.0) == ""  # within the figure's noise
    assert v(None, 1.0, 5.0, 0.10, 0.0) == ""  # a baseline that is not our code
    assert cat.F("x", "{v}", "Gbit/s").direction == "higher"
    assert cat.F("x", "{v}", "ms").direction == "lower"
    assert cat.F("x", "{v}", "x", "higher").direction == "higher"


@pytest.mark.slow
@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "python").exists(), reason="compare.py runs each checkout's .venv")
def test_compare_runs_benches_in_two_checkouts_and_prints_a_table(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """This checkout against itself, quick sizes, one round: both sides run, every figure has
    two medians and a ratio."""
    assert compare.main([str(ROOT), "--only", "bench_plan", "bench_store", "--runs", "1", "--quick",
                         "--logs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("bench_plan", "bench_store"):
        bench = cat.BY_NAME[name]
        for side in ("base", "new"):
            assert cat.missing_figures(bench, (tmp_path / f"{name}.{side}.1.log").read_text()) == []
        for figure in bench.figures:
            row = next(line for line in out.splitlines() if line.startswith(f"  {figure.name} "))
            assert len(row.split()) >= len(figure.name.split()) + 4, row  # unit, base, new, new/base
    assert "worse by more than 10 %:" in out
