"""Regenerate the checked-in protobuf/gRPC code from ``protos/``.

``python -m mcpctl._proto.generate`` rewrites ``mcpctl/_proto/mcp``;
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
OUT = Path(__file__).resolve().parent / "mcp"


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
        text = text.replace("from mcp.v1 import", "from mcpctl._proto.mcp.v1 import")
        text = text.replace("import mcp.v1.", "import mcpctl._proto.mcp.v1.")
        path.write_text(text)
    for package in (dest / "mcp", dest / "mcp" / "v1"):
        (package / "__init__.py").write_text("")


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
            if not OUT.exists() or not _same_tree(dest / "mcp", OUT):
                print("mcpctl/_proto is stale: run `make proto`", file=sys.stderr)
                return 1
            return 0
        shutil.rmtree(OUT, ignore_errors=True)
        shutil.copytree(dest / "mcp", OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
