"""``mcpctl history KEY [--prefix] [--limit N]``: a key's past changes, newest first.

Each change: revision, time (UTC, the proposing member's clock), PUT/DELETE,
key, and the value it wrote. Only what the store still keeps: older
revisions are compacted (the JSON output says where history starts).
"""

from __future__ import annotations

import argparse
from typing import Any

from mcpctl.cli.exitcodes import Exit, UsageError


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("history", parents=[parent], help="a key's past changes")
    p.add_argument("key")
    p.add_argument("--prefix", action="store_true", help="every key starting with KEY")
    p.add_argument("--limit", type=int, default=0, help="at most N changes (default 1000)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mcpctl.cli import connect
    from mcpctl.cli.output import printer
    from mcpctl.client.mcp import McpClient

    if args.limit < 0:
        raise UsageError("history", "--limit must not be negative")
    with connect.client(args) as client:
        res = McpClient(client).history(args.key, prefix=args.prefix, limit=args.limit)
    printer(args.write_out).history(res)
    return int(Exit.OK)
