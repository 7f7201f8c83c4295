"""Every `sh` block of the guides in docs/guides runs, exactly as printed, in a fresh clone.

A newcomer copies these blocks: they run here line by line in a clone of the committed tree
(its `.venv` the project's own), as root, and every line must succeed. Whatever a block brings
up is taken down again (`l2vpc lab down`) also when a line fails.
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


GUIDE_BLOCKS = [(path.name, i, block) for path in sorted(GUIDES.glob("*.md"))
                for i, block in enumerate(sh_blocks(path.read_text()))]


@pytest.fixture
def clone(tmp_path: Path) -> Iterator[Path]:
    target = tmp_path / "l2vpc"
    subprocess.run(["git", "clone", "-q", "--local", "--no-hardlinks", str(ROOT), str(target)], check=True,
                   capture_output=True)
    (target / ".venv").symlink_to(ROOT / ".venv")
    try:
        yield target
    finally:
        subprocess.run([str(target / ".venv" / "bin" / "l2vpc"), "lab", "down"], cwd=target, capture_output=True,
                       timeout=120)


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.parametrize(("guide", "index", "block"), GUIDE_BLOCKS, ids=[f"{g}-{i}" for g, i, _ in GUIDE_BLOCKS])
def test_guide_block_runs_as_printed(clone: Path, guide: str, index: int, block: list[str]) -> None:
    if "lab pod" in " ".join(block) and shutil.which("containerd") is None:
        pytest.skip("needs containerd and runc (./dev installs them)")
    if "lab vm" in " ".join(block) and shutil.which("qemu-system-x86_64") is None:
        pytest.skip("needs qemu-system-x86 (./dev installs it)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("L2VPC_")}  # no extra environment
    for line in block:
        run = subprocess.run(["bash", "-c", line], cwd=clone, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, f"{guide} block {index}: `{line}` exited {run.returncode}:\n{run.stdout}\n{run.stderr}"
