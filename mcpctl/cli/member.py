"""``mcpctl member add NAME --raft H:P --client H:P`` / ``member remove NAME`` / ``member list``.

``member list`` is etcdctl's spelling of ``mcpctl members`` (same output).

One change at a time. ``add`` registers the member; then start it with every
member (itself included) in ``cluster.members``: it catches up from the
leader (log or snapshot). ``remove`` takes a member out; it stops serving
when it learns it. Unsafe changes (below quorum, another change in flight)
are refused with a message saying why.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("member", parents=[parent], help="add or remove a voting member")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    add = actions.add_parser("add", parents=[parent], help="add a member (start it afterwards)")
    add.add_argument("name")
    add.add_argument("--raft", required=True, metavar="HOST:PORT", help="its Raft address")
    add.add_argument("--client", required=True, metavar="HOST:PORT", help="its gRPC address")
    add.set_defaults(run=run_add)
    remove = actions.add_parser("remove", parents=[parent], help="remove a member")
    remove.add_argument("name")
    remove.set_defaults(run=run_remove)
    listing = actions.add_parser("list", parents=[parent], help="list the voting members")
    listing.set_defaults(run=run_list)


def run_list(args: argparse.Namespace) -> int:
    from mcpctl.cli import members

    return members.run(args)


def run_add(args: argparse.Namespace) -> int:
    import yaml

    from mcpctl.cli import connect
    from mcpctl.cli.output import printer

    with connect.client(args, timeout=max(args.timeout, 10.0)) as client:
        members = client.member_add(args.name, args.raft, args.client)
    printer(args.write_out if args.write_out != "simple" else "table").members(members)
    if args.write_out != "json":
        listing = [
            {"name": m.name, "raft": m.raft_address, "client": m.client_address} for m in members
        ]
        sys.stdout.write(
            f"\nNow start {args.name} with this in its node config:\n"
            + yaml.safe_dump({"name": args.name, "cluster": {"members": listing}}, sort_keys=False)
        )
    return 0


def run_remove(args: argparse.Namespace) -> int:
    from mcpctl.cli import connect
    from mcpctl.cli.output import printer

    with connect.client(args, timeout=max(args.timeout, 10.0)) as client:
        members = client.member_remove(args.name)
    printer(args.write_out if args.write_out != "simple" else "table").members(members)
    return 0
