"""``mcpctl export [--rev N]``: the keys under /mcp/ as one MCP document (YAML).

``mcpctl apply -f`` of the output changes nothing: export after apply round-trips.
"""

from __future__ import annotations

import argparse
from typing import Any

from mcpctl.cli.exitcodes import Exit, UsageError


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("export", parents=[parent], help="print the MCP config as a document")
    p.add_argument("--rev", type=int, default=0, help="as of this revision (default: latest)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mcpctl.cli import connect
    from mcpctl.cli.output import printer
    from mcpctl.client.mcp import McpClient

    if args.rev < 0:
        raise UsageError("export", "--rev must not be negative")
    with connect.client(args) as client:
        res = McpClient(client).export(revision=args.rev)
    printer(args.write_out).export(res)
    return int(Exit.OK)
