"""``mcpctl del KEY [--prefix] [--prev-kv]``."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("del", parents=[parent], help="delete a key or a prefix")
    p.add_argument("key")
    p.add_argument("--prefix", action="store_true", help="every key starting with KEY")
    p.add_argument("--prev-kv", action="store_true", help="print the deleted key-values")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mcpctl.cli import connect
    from mcpctl.cli.output import printer

    with connect.client(args) as client:
        res = client.delete(args.key, prefix=args.prefix, prev_kv=args.prev_kv)
    printer(args.write_out).delete(res)
    return 0
