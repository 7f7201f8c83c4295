"""Every `sh` block of the README and of docs/guides runs, exactly as printed, in a fresh clone.

A newcomer copies these blocks: they run here line by line in a clone of the committed tree
(its `.venv` the project's own), as root, in order within a document, and every line must
succeed; after `./dev demo`, so must the commands it suggests. Each document gets its own
default state (`$L2VPC_HOME`, where every command looks); whatever a block brings up is taken
down again (`l2vpc lab down`) also when a line fails. The one block not run is `./dev test`: it
is this test suite.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GUIDES = ROOT / "docs" / "guides"
_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)


def sh_blocks(markdown: str) -> list[list[str]]:
    return [[line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]
            for block in _BLOCK.findall(markdown)]


def test_blocks_are_found() -> None:
    text = "intro\n```sh\na --x\n# note\nb\n```\n```json\n{}\n```\n```sh\nc\n```\n"
    assert sh_blocks(text) == [["a --x", "b"], ["c"]]


NOT_RUN = {"./dev test"}  # the suite that runs this test
DOCUMENTS = [ROOT / "README.md", *sorted(GUIDES.glob("*.md"))]
DOCUMENT_BLOCKS = [(path.name, [b for b in sh_blocks(path.read_text()) if b not in [[n] for n in NOT_RUN]])
                   for path in DOCUMENTS]


@pytest.fixture
def clone(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    target = tmp_path / "l2vpc"
    subprocess.run(["git", "clone", "-q", "--local", "--no-hardlinks", str(ROOT), str(target)], check=True,
                   capture_output=True)
    (target / ".venv").symlink_to(ROOT / ".venv")
    # No extra environment: only a default state of this test's own (never the machine's).
    env = {k: v for k, v in os.environ.items() if not k.startswith("L2VPC_")}
    env["L2VPC_HOME"] = str(tmp_path / "home")
    try:
        yield target, env
    finally:
        for cleanup in (["demo", "down"], ["lab", "down"]):
            subprocess.run([str(target / ".venv" / "bin" / "l2vpc"), *cleanup], cwd=target, env=env,
                           capture_output=True, timeout=300)


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.parametrize(("document", "blocks"), DOCUMENT_BLOCKS, ids=[d for d, _ in DOCUMENT_BLOCKS])
def test_command_blocks_run_as_printed(clone: tuple[Path, dict[str, str]], document: str,
                                       blocks: list[list[str]]) -> None:
    text = " ".join(line for block in blocks for line in block)
    if ("lab pod" in text or "./dev demo" in text) and shutil.which("containerd") is None:
        pytest.skip("needs containerd and runc (./dev installs them)")
    if ("lab vm" in text or "./dev demo" in text) and shutil.which("qemu-system-x86_64") is None:
        pytest.skip("needs qemu-system-x86 (./dev installs it)")
    where, env = clone
    for index, block in enumerate(blocks):
        for line in block:
            run = subprocess.run(["bash", "-c", line], cwd=where, env=env, capture_output=True, text=True,
                                 timeout=600)
            assert run.returncode == 0, (f"{document} block {index}: `{line}` exited {run.returncode}:\n"
                                         f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
            if line == "./dev demo":
                run_demo_hints(run.stdout, where, env)


def demo_hints(output: str) -> list[str]:
    """The commands the demo suggests at its end (between "Try:" and "Remove it with"), without
    their comments."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.endswith("Try:"))
    hints = []
    for line in lines[start + 1:]:
        if line.startswith("Remove it with"):
            break
        hints.append(line.split("#", 1)[0].strip())
    return [h for h in hints if h]


def test_demo_hints_are_parsed() -> None:
    out = "x\nThe lab is still up. Try:\n   a b\n   c -C /d plan      # empty\nRemove it with: e\n"
    assert demo_hints(out) == ["a b", "c -C /d plan"]


def run_demo_hints(output: str, where: Path, env: dict[str, str]) -> None:
    """Each hint runs verbatim where the demo ran, and the re-plan it suggests is empty. Hints that
    apply another example are left out: they need an answer and change the lab."""
    hints = [h for h in demo_hints(output) if " apply" not in h]
    assert any(h.endswith(" plan") for h in hints), output[-2000:]
    for hint in hints:
        run = subprocess.run(["bash", "-c", hint], cwd=where, env=env, capture_output=True, text=True,
                             timeout=300, stdin=subprocess.DEVNULL)
        assert run.returncode == 0, f"demo hint `{hint}` exited {run.returncode}:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
        if hint.endswith(" plan"):
            assert "No changes." in run.stdout, f"demo hint `{hint}` plans changes:\n{run.stdout[-3000:]}"
