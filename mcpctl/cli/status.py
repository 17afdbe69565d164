"""``mcpctl status``: one row per endpoint, from each member's own view."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("status", parents=[parent], help="show every endpoint's member status")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mcpctl.cli.exitcodes import Exit
    from mcpctl.cli.output import Printer
    from mcpctl.client import Client

    with Client(args.endpoints, timeout=min(args.timeout, 2.0)) as client:
        rows = client.status_all()
    if args.write_out == "simple":
        args.write_out = "table"
    Printer(args.write_out).status(rows)
    reachable = sum(1 for _, r in rows if not isinstance(r, Exception))
    return int(Exit.OK if reachable else Exit.UNAVAILABLE)
