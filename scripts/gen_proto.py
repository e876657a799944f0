#!/usr/bin/env python3
"""Generate the Python code for the protos in proto/ into livegate/v1/.

    python scripts/gen_proto.py           # regenerate (commit the result)
    python scripts/gen_proto.py --check   # exit 1 if the committed files are stale

Runs grpc_tools.protoc with -Iproto plus grpc_tools' bundled include (the
well-known types) and the python, grpc_python, mypy and mypy_grpc plugins
(mypy-protobuf must be installed in the same environment: it provides
protoc-gen-mypy and protoc-gen-mypy_grpc).
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
# Generated code lands here (the proto package `livegate.v1` maps to it).
OUT_PACKAGE = Path("livegate") / "v1"
# Written next to the generated modules: the package marker of the generated-code package.
INIT_TEXT = ""
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def proto_files() -> list[str]:
    """The .proto files under proto/, relative to it, sorted."""
    return sorted(p.relative_to(PROTO_ROOT).as_posix() for p in PROTO_ROOT.rglob("*.proto"))


def plugin_path(name: str) -> str:
    """Absolute path of a protoc plugin installed next to this interpreter."""
    candidates = [Path(sysconfig.get_path("scripts")) / name, Path(sys.executable).parent / name]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"gen_proto: {name} not found; install mypy-protobuf in this environment")
    return found


def generate(out_dir: Path) -> None:
    """Run protoc for every proto file, writing the package tree under out_dir."""
    import grpc_tools
    from grpc_tools import protoc

    wkt_include = Path(grpc_tools.__file__).resolve().parent / "_proto"
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{wkt_include}",
        f"--plugin=protoc-gen-mypy={plugin_path('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={plugin_path('protoc-gen-mypy_grpc')}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *proto_files(),
    ]
    # protoc resolves the proto file names against -I; run from the repo root so relative paths behave.
    cwd = os.getcwd()
    try:
        os.chdir(ROOT)
        rc = protoc.main(args)
    finally:
        os.chdir(cwd)
    if rc != 0:
        raise SystemExit(f"gen_proto: protoc failed with exit code {rc}")
    # The grpc plugins emit an empty module for a proto without a service; drop those.
    for name in proto_files():
        if not re.search(r"^service\s", (PROTO_ROOT / name).read_text(), re.MULTILINE):
            stem = out_dir / name.removesuffix(".proto")
            for suffix in ("_pb2_grpc.py", "_pb2_grpc.pyi"):
                stem.with_name(stem.name + suffix).unlink(missing_ok=True)
    (out_dir / OUT_PACKAGE / "__init__.py").write_text(INIT_TEXT)


def generated_files(tree: Path) -> dict[str, str]:
    """Generated files (and the package __init__) under tree/livegate/v1, by relative path."""
    package = tree / OUT_PACKAGE
    if not package.is_dir():
        return {}
    files = {}
    for path in sorted(package.iterdir()):
        if path.name == "__init__.py" or path.name.endswith(GENERATED_SUFFIXES):
            files[(OUT_PACKAGE / path.name).as_posix()] = path.read_text()
    return files


def check() -> int:
    """Regenerate into a temp dir and compare with the committed files."""
    with tempfile.TemporaryDirectory(prefix="gen_proto_") as tmp:
        generate(Path(tmp))
        fresh = generated_files(Path(tmp))
    current = generated_files(ROOT)
    stale = False
    for name in sorted(fresh.keys() | current.keys()):
        if name not in current:
            print(f"gen_proto --check: missing {name}", file=sys.stderr)
            stale = True
        elif name not in fresh:
            print(f"gen_proto --check: {name} is not produced by proto/ any more (delete it)", file=sys.stderr)
            stale = True
        elif fresh[name] != current[name]:
            diff = difflib.unified_diff(
                current[name].splitlines(keepends=True),
                fresh[name].splitlines(keepends=True),
                fromfile=f"{name} (committed)",
                tofile=f"{name} (regenerated)",
                n=1,
            )
            print(f"gen_proto --check: {name} is stale:", file=sys.stderr)
            sys.stderr.writelines(list(diff)[:40])
            stale = True
    if stale:
        print("gen_proto --check: generated code is stale; run `python scripts/gen_proto.py` and commit", file=sys.stderr)
        return 1
    print(f"gen_proto --check: {len(fresh)} generated files up to date")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if the committed generated files are stale")
    args = parser.parse_args(argv)
    if args.check:
        return check()
    generate(ROOT)
    for name in generated_files(ROOT):
        print(f"gen_proto: wrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
