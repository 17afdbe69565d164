"""``mcpctl members``: the voting members (name, Raft address, client address)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("members", parents=[parent], help="list the voting members")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mcpctl.cli import connect
    from mcpctl.cli.output import printer

    with connect.client(args) as client:
        members = client.member_list()
    if args.write_out == "simple":
        args.write_out = "table"
    printer(args.write_out).members(members)
    return 0
