"""``mcpctl put KEY [VALUE | -f FILE | stdin] [--prev-kv] [--if-mod-rev N] [--lease ID]``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mcpctl.cli.exitcodes import UsageError
from mcpctl.cli.leaseid import parse_lease_id


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("put", parents=[parent], help="write a key")
    p.add_argument("key")
    p.add_argument("value", nargs="?", help="the value (else -f FILE, else stdin)")
    p.add_argument("-f", "--file", help="read the value from this file")
    p.add_argument("--prev-kv", action="store_true", help="print the previous value")
    p.add_argument(
        "--if-mod-rev",
        type=int,
        default=None,
        metavar="N",
        help="compare-and-swap: only if the key's mod_revision is N (0 = must not exist)",
    )
    p.add_argument(
        "--lease",
        default=None,
        metavar="ID",
        help="attach the key to this lease (hex id, from `lease grant`)",
    )
    p.set_defaults(run=run)


def _value(args: argparse.Namespace) -> bytes:
    if args.value is not None and args.file is not None:
        raise UsageError("put", "give VALUE or -f FILE, not both")
    if args.value is not None:
        return str(args.value).encode("utf-8", "surrogateescape")
    if args.file is not None:
        try:
            with open(args.file, "rb") as f:
                return f.read()
        except OSError as e:
            raise UsageError("put", f"cannot read {args.file}: {e.strerror}") from e
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError("put", "give VALUE, -f FILE, or pipe the value on stdin")
    return sys.stdin.buffer.read()


def run(args: argparse.Namespace) -> int:
    from mcpctl.cli import connect
    from mcpctl.cli.output import printer

    value = _value(args)
    if args.if_mod_rev is not None and args.if_mod_rev < 0:
        raise UsageError("put", "--if-mod-rev must not be negative")
    lease = 0
    if args.lease is not None:
        try:
            lease = parse_lease_id(args.lease)
        except ValueError as e:
            raise UsageError("put", f"--lease: {e}") from None
    with connect.client(args) as client:
        res = client.put(
            args.key,
            value,
            prev_kv=args.prev_kv,
            expected_mod_revision=args.if_mod_rev,
            lease=lease,
        )
    printer(args.write_out).put(res)
    return 0
