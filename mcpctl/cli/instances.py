"""``mcpctl instances [MODEL] [--watch]``: the live fleet (docs/fleet.md).

One row per registered instance: model, id, endpoint, healthy, in-flight,
weight (the operator's override if set), lease TTL left, draining. ``--watch``
redraws every ``--interval`` seconds until Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from mcpctl.cli.exitcodes import Exit, UsageError


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("instances", parents=[parent], help="list the live fleet's instances")
    p.add_argument("model", nargs="?", default=None, metavar="MODEL", help="only this model")
    p.add_argument("--watch", action="store_true", help="redraw until Ctrl-C")
    p.add_argument(
        "--interval", type=float, default=1.0, help="seconds between redraws (default 1)"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mcpctl.cli import connect
    from mcpctl.cli.output import printer
    from mcpctl.fleet.operator import list_instances

    if args.interval <= 0:
        raise UsageError("instances", "--interval must be positive")
    if args.write_out == "simple":
        args.write_out = "table"
    shown = printer(args.write_out)
    with connect.client(args) as client:
        while True:
            rows = [row.json() for row in list_instances(client, args.model)]
            if args.watch and sys.stdout.isatty() and args.write_out == "table":
                sys.stdout.write("\x1b[2J\x1b[H")
            shown.instances(rows)
            if not args.watch:
                return int(Exit.OK)
            sys.stdout.flush()
            time.sleep(args.interval)
