"""``mcpctl lease grant TTL`` / ``revoke ID`` / ``keep-alive ID [--once]`` /
``timetolive ID [--keys]`` / ``list`` (docs/leases.md, docs/cli.md).

Lease ids are hex, as etcdctl prints and reads them (``leaseid``). ``keep-alive``
keeps renewing at TTL/3 through the SDK (moving to another member when one
fails) until Ctrl-C (exit 0) or the lease is gone (one line on stderr, exit 1).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType
from typing import Any

from mcpctl.cli.exitcodes import Exit, UsageError
from mcpctl.cli.leaseid import lease_hex, parse_lease_id


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("lease", parents=[parent], help="grant, renew, inspect, revoke leases")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    grant = actions.add_parser("grant", parents=[parent], help="grant a lease of TTL seconds")
    grant.add_argument("ttl", type=int, metavar="TTL", help="seconds (a small one is raised)")
    grant.set_defaults(run=run_grant)
    revoke = actions.add_parser(
        "revoke", parents=[parent], help="revoke a lease: its keys are deleted"
    )
    revoke.add_argument("id", metavar="ID", help="the lease id (hex)")
    revoke.set_defaults(run=run_revoke)
    keep = actions.add_parser(
        "keep-alive",
        parents=[parent],
        help="renew a lease every TTL/3 until Ctrl-C or it is gone (exit 1)",
    )
    keep.add_argument("id", metavar="ID", help="the lease id (hex)")
    keep.add_argument("--once", action="store_true", help="renew once and exit")
    keep.set_defaults(run=run_keep_alive)
    ttl = actions.add_parser(
        "timetolive", parents=[parent], help="a lease's granted and remaining TTL"
    )
    ttl.add_argument("id", metavar="ID", help="the lease id (hex)")
    ttl.add_argument("--keys", action="store_true", help="also list the attached keys")
    ttl.set_defaults(run=run_time_to_live)
    listing = actions.add_parser("list", parents=[parent], help="every live lease")
    listing.set_defaults(run=run_list)


def lease_id(args: argparse.Namespace) -> int:
    try:
        return parse_lease_id(args.id)
    except ValueError as e:
        raise UsageError(f"lease {args.action}", str(e)) from None


def run_grant(args: argparse.Namespace) -> int:
    from mcpctl.cli import connect
    from mcpctl.cli.output import printer
    from mcpctl.client import LeaseGrant

    if args.ttl <= 0:
        raise UsageError("lease grant", f"TTL must be a positive number of seconds, not {args.ttl}")
    with connect.client(args) as client:
        # Not kept alive here: the CLI exits; `lease keep-alive ID` or a service does that.
        lease = client.grant(args.ttl, keep_alive=False)
    assert lease.header is not None
    printer(args.write_out).lease_grant(LeaseGrant(lease.header, lease.id, lease.ttl))
    return int(Exit.OK)


def run_revoke(args: argparse.Namespace) -> int:
    from mcpctl.cli import connect
    from mcpctl.cli.output import printer

    ident = lease_id(args)
    with connect.client(args) as client:
        header = client.revoke(ident)
    printer(args.write_out).lease_revoke(ident, header)
    return int(Exit.OK)


def run_time_to_live(args: argparse.Namespace) -> int:
    from mcpctl.cli import connect
    from mcpctl.cli.output import printer

    ident = lease_id(args)
    with connect.client(args) as client:
        res = client.time_to_live(ident, keys=args.keys)
    printer(args.write_out).lease_ttl(res, keys=args.keys)
    return int(Exit.OK)


def run_list(args: argparse.Namespace) -> int:
    from mcpctl.cli import connect
    from mcpctl.cli.output import printer

    with connect.client(args) as client:
        res = client.leases()
    printer(args.write_out).lease_list(res)
    return int(Exit.OK)


def run_keep_alive(args: argparse.Namespace) -> int:
    from mcpctl.cli import connect
    from mcpctl.cli.output import printer

    ident = lease_id(args)
    shown = printer(args.write_out)
    with connect.client(args) as client:
        if args.once:
            res = client.keep_alive_once(ident)
            shown.lease_keepalive(res.id, res.ttl)
            return int(Exit.OK)
        done = threading.Event()

        def stop(signum: int, frame: FrameType | None) -> None:
            done.set()

        before = signal.signal(signal.SIGINT, stop), signal.signal(signal.SIGTERM, stop)
        try:
            lease = client.keep_alive(
                ident,
                on_renewed=lambda held, ttl: shown.lease_keepalive(held.id, ttl),
                on_lost=lambda _: done.set(),
            )
            done.wait()
        finally:
            signal.signal(signal.SIGINT, before[0])
            signal.signal(signal.SIGTERM, before[1])
    if lease.lost.is_set():
        sys.stderr.write(f"mcpctl lease keep-alive: lease {lease_hex(ident)} lost: ")
        sys.stderr.write(f"{lease.lost_reason}\n")
        return int(Exit.FAILED)
    return int(Exit.OK)
