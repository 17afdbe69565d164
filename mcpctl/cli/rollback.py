"""``mcpctl rollback KEY --to-rev N`` / ``mcpctl rollback --prefix P --to-rev N``.

Writes the key (every key under the prefix) back as it was at revision N, as
one new revision: keys that did not exist then are deleted. One guarded txn:
if anything under it changes meanwhile, nothing is written and the command
fails. A compacted N is refused with the oldest revision still available.
"""

from __future__ import annotations

import argparse
from typing import Any

from mcpctl.cli.exitcodes import Exit, UsageError


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "rollback", parents=[parent], help="write a key or prefix back as it was at a revision"
    )
    p.add_argument("key", nargs="?", help="the key (or give --prefix)")
    p.add_argument("--prefix", metavar="PREFIX", help="every key under PREFIX (e.g. /mcp/)")
    p.add_argument("--to-rev", type=int, required=True, metavar="N", help="the revision")
    p.add_argument("--dry-run", action="store_true", help="show the changes; write nothing")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mcpctl.cli import connect
    from mcpctl.cli.output import printer
    from mcpctl.client.mcp import McpClient

    if (args.key is None) == (args.prefix is None):
        raise UsageError("rollback", "give KEY or --prefix PREFIX (one of them)")
    if args.to_rev <= 0:
        raise UsageError("rollback", "--to-rev must be positive")
    key = args.key if args.key is not None else args.prefix
    if not key:
        raise UsageError("rollback", "the key or prefix must not be empty")
    with connect.client(args) as client:
        res = McpClient(client).rollback(
            key, prefix=args.prefix is not None, to_revision=args.to_rev, dry_run=args.dry_run
        )
    printer(args.write_out).config_write(res, done="rolled back")
    return int(Exit.OK)
