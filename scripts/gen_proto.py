#!/usr/bin/env python3
"""Compile every proto/*.proto into l2vpc/_proto/ (messages, gRPC stubs and type stubs).

    python scripts/gen_proto.py           regenerate l2vpc/_proto/
    python scripts/gen_proto.py --check   exit 1, naming the stale files, if the committed
                                          generated code differs from a fresh compilation

protoc writes `import foo_pb2` as if every generated module sat at the top of sys.path; we
rewrite those imports to package-relative ones so nothing called `tfplugin6_pb2` lands bare in
site-packages. Generated code is committed so that installing l2vpc never needs grpcio-tools.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "l2vpc" / "_proto"
# Names protoc gives generated files; everything else in OUT_DIR (e.g. __init__.py) is ours.
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def _is_generated(path: Path) -> bool:
    return path.name.endswith(GENERATED_SUFFIXES)


def _fix_imports(text: str, local_modules: set[str]) -> str:
    """Turn `import x_pb2 as y` (and `from x_pb2 import ...`) into relative imports for our own modules."""

    def absolute_import(m: re.Match[str]) -> str:
        module, alias = m.group(1), m.group(2)
        return f"from . import {module} as {alias}" if module in local_modules else m.group(0)

    def from_import(m: re.Match[str]) -> str:
        module = m.group(1)
        return f"from .{module} import " if module in local_modules else m.group(0)

    text = re.sub(r"^import (\w+) as (\w+)$", absolute_import, text, flags=re.MULTILINE)
    return re.sub(r"^from (\w+) import ", from_import, text, flags=re.MULTILINE)


def generate(out_dir: Path) -> list[Path]:
    """Compile all protos into out_dir; returns the files written."""
    from grpc_tools import protoc  # only the generator needs grpcio-tools

    protos = sorted(PROTO_DIR.glob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files in {PROTO_DIR}")
    well_known = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(p) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed (see its messages above)")
    local = {f"{p.stem}_pb2" for p in protos} | {f"{p.stem}_pb2_grpc" for p in protos}
    written = sorted(p for p in out_dir.iterdir() if _is_generated(p))
    for path in written:
        path.write_text(_fix_imports(path.read_text(), local))
    return written


# The generator stamps its own version into the code (grpcio-tools and protoc releases come every
# few weeks); a newer generator producing the same code otherwise is not staleness.
_VERSION_STAMPS = (
    (re.compile(r"^GRPC_GENERATED_VERSION = '[^']*'$", re.MULTILINE), "GRPC_GENERATED_VERSION = ?"),
    (re.compile(r"^# Protobuf Python Version: .*$", re.MULTILINE), "# Protobuf Python Version: ?"),
    (re.compile(r"(ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,)\s*\d+,\s*\d+,\s*\d+,"),
     r"\1 ?"),
)


def _without_version_stamps(text: str) -> str:
    for pattern, replacement in _VERSION_STAMPS:
        text = pattern.sub(replacement, text)
    return text


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {p.name: _without_version_stamps(p.read_text()) for p in generate(Path(tmp))}
    committed = {p.name: _without_version_stamps(p.read_text()) for p in OUT_DIR.iterdir() if _is_generated(p)}
    stale = sorted(name for name in fresh.keys() | committed.keys() if fresh.get(name) != committed.get(name))
    for name in stale:
        why = "missing" if name not in committed else "no .proto source" if name not in fresh else "differs"
        print(f"stale: {OUT_DIR.relative_to(ROOT) / name} ({why})", file=sys.stderr)
    if stale:
        print("run: python scripts/gen_proto.py", file=sys.stderr)
        return 1
    print(f"generated code is fresh ({len(fresh)} files)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="only verify that l2vpc/_proto is up to date")
    args = parser.parse_args(argv)
    if args.check:
        return check()
    with tempfile.TemporaryDirectory() as tmp:
        files = generate(Path(tmp))
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        for old in OUT_DIR.iterdir():
            if _is_generated(old):
                old.unlink()
        for path in files:
            shutil.copyfile(path, OUT_DIR / path.name)
    if not (OUT_DIR / "__init__.py").exists():
        (OUT_DIR / "__init__.py").write_text(
            '"""Generated protobuf and gRPC code; see scripts/gen_proto.py."""\n'
        )
    print(f"wrote {len(files)} files to {OUT_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
