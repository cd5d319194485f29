"""Regenerate the gRPC stubs (with .pyi) from proto/ into the lus package: ``make proto``.

With ``--check`` it writes to a temporary folder and fails when the committed stubs differ.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"


def generated_files(out_dir: Path) -> list[Path]:
    # .py and .pyi only: bytecode caches beside the stubs (e.g. after a test run) are not stubs.
    stubs = (p for p in out_dir.rglob("*_pb2*") if p.suffix in (".py", ".pyi"))
    return sorted(p.relative_to(out_dir) for p in stubs)


def generate(out_dir: Path) -> None:
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for proto in protos:  # make every generated folder an importable package
        for parent in (out_dir / proto).parents:
            if parent == out_dir:
                break
            (parent / "__init__.py").touch()


def drifted(committed_root: Path) -> list[str]:
    """Generated files that differ from (or are missing in) committed_root."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        problems = []
        for rel in generated_files(fresh):
            committed = committed_root / rel
            if not committed.exists() or not filecmp.cmp(fresh / rel, committed, shallow=False):
                problems.append(str(rel))
        stale = set(generated_files(committed_root / "lus")) - {
            p.relative_to("lus") for p in generated_files(fresh) if p.parts[0] == "lus"
        }
        problems += [f"lus/{p} (no .proto)" for p in sorted(stale)]
        return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if committed stubs drift")
    args = parser.parse_args()
    if args.check:
        problems = drifted(ROOT)
        for p in problems:
            print(f"stale stub: {p}", file=sys.stderr)
        return 1 if problems else 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        for rel in generated_files(Path(tmp)):
            (ROOT / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(tmp) / rel, ROOT / rel)
    print("stubs regenerated under lus/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
