"""``mcpctl get KEY [--prefix] [--rev N] [--serializable] [--keys-only] [--limit N]``."""

from __future__ import annotations

import argparse
from typing import Any

from mcpctl.cli.exitcodes import UsageError


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("get", parents=[parent], help="read a key or a prefix")
    p.add_argument("key", help="the key (or the prefix with --prefix; '' = all keys)")
    p.add_argument("--prefix", action="store_true", help="every key starting with KEY")
    p.add_argument("--rev", type=int, default=0, help="read as of this revision")
    p.add_argument("--limit", type=int, default=0, help="at most this many keys")
    p.add_argument("--serializable", action="store_true", help="local read: fast, may be stale")
    p.add_argument("--keys-only", action="store_true", help="print keys without values")
    p.add_argument("--count-only", action="store_true", help="print only the count")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mcpctl.cli import connect
    from mcpctl.cli.output import printer

    if args.rev < 0 or args.limit < 0:
        raise UsageError("get", "--rev and --limit must not be negative")
    with connect.client(args) as client:
        res = client.get(
            args.key,
            prefix=args.prefix,
            revision=args.rev,
            serializable=args.serializable,
            keys_only=args.keys_only,
            count_only=args.count_only,
            limit=args.limit,
        )
    printer(args.write_out).get(res, keys_only=args.keys_only, count_only=args.count_only)
    return 0
