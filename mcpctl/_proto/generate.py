"""Regenerate the checked-in protobuf/gRPC code from ``protos/``.

``python -m mcpctl._proto.generate`` rewrites ``mcpctl/_proto/mcp`` (mcp.v1)
and ``mcpctl/_proto/etcd`` (etcd's v3 API as mcp-config serves it, docs/etcd-compat.md);
``--check`` only compares and exits 1 when the checked-in code is stale.
protoc emits absolute imports (``from mcp.v1 import kv_pb2``); they are
rewritten to live under ``mcpctl._proto`` so nothing touches ``sys.path``.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = ROOT / "protos"
HERE = Path(__file__).resolve().parent
OUT = HERE / "mcp"
ETCD_OUT = HERE / "etcd"
# protoc's absolute imports and the packages they are rewritten to.
_IMPORTS = ("mcp.v1", "etcd.mvccpb", "etcd.etcdserverpb")


def _generate(dest: Path) -> None:
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""))
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={dest}",
        f"--grpc_python_out={dest}",
        f"--mypy_out={dest}",
        f"--mypy_grpc_out={dest}",
        *protos,
    ]
    subprocess.run(cmd, check=True, env=env, cwd=PROTO_ROOT)
    for path in dest.rglob("*.py*"):
        text = path.read_text()
        for name in _IMPORTS:
            text = text.replace(f"from {name} import", f"from mcpctl._proto.{name} import")
            text = text.replace(f"import {name}.", f"import mcpctl._proto.{name}.")
        path.write_text(text)
    for name in _IMPORTS:
        top, sub = name.split(".")
        for package in (dest / top, dest / top / sub):
            (package / "__init__.py").write_text("")


def _trees() -> list[tuple[str, Path]]:
    """Each top-level folder of protos/ and the package under mcpctl/_proto it becomes."""
    return [("mcp", OUT), ("etcd", ETCD_OUT)]


def _same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])
    stack = [cmp]
    while stack:
        c = stack.pop()
        if c.left_only or c.right_only or c.diff_files or c.funny_files:
            return False
        # dircmp compares shallowly by stat; compare contents for the rest.
        for name in c.same_files:
            if Path(c.left, name).read_bytes() != Path(c.right, name).read_bytes():
                return False
        stack.extend(c.subdirs.values())
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the generated code is stale")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp)
        _generate(dest)
        if args.check:
            for tree, out in _trees():
                if not out.exists() or not _same_tree(dest / tree, out):
                    print("mcpctl/_proto is stale: run `make proto`", file=sys.stderr)
                    return 1
            return 0
        for tree, out in _trees():
            shutil.rmtree(out, ignore_errors=True)
            shutil.copytree(dest / tree, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
