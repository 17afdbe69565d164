"""``mcpctl watch KEY [--prefix] [--rev N] [--prev-kv]``: print changes as they happen.

One event per line group (simple: type, key, value on three lines, like
etcdctl) or one JSON object per line (``-w json``). ``--timeout`` bounds the
first connection (no endpoint reachable: exit at once; none answering: exit
when it passes). Once watching, the stream resumes on another endpoint from
the last revision it printed when a member fails, and gives up after
``WATCH_RESUME_ATTEMPTS_MAX`` failed reopen attempts in a row. Ctrl-C exits 0.
"""

from __future__ import annotations

import argparse
import signal
from types import FrameType
from typing import Any

from mcpctl import limits
from mcpctl.cli.exitcodes import Exit, UsageError


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "watch",
        parents=[parent],
        help="print changes to a key or prefix",
        description="Print changes to a key or prefix as they happen. --timeout bounds "
        "the first connection only: with no endpoint reachable, watch exits at once; "
        "with none answering, when the timeout passes. Once watching, a failed member "
        "is left for another endpoint and the watch resumes from the last revision "
        f"printed; after {limits.WATCH_RESUME_ATTEMPTS_MAX} failed reopen attempts in a "
        "row (about 20 s of backoff) it exits with the last error.",
    )
    p.add_argument("key")
    p.add_argument("--prefix", action="store_true", help="every key starting with KEY")
    p.add_argument("--rev", type=int, default=0, help="start at this revision (replay history)")
    p.add_argument("--prev-kv", action="store_true", help="include the previous value")
    p.add_argument(
        "--progress", action="store_true", help="also print progress bookmarks (json only)"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mcpctl.cli import connect
    from mcpctl.cli.output import printer

    if args.rev < 0:
        raise UsageError("watch", "--rev must not be negative")
    shown = printer(args.write_out)
    with connect.client(args) as client:
        stream = client.watch(
            args.key,
            prefix=args.prefix,
            start_revision=args.rev,
            prev_kv=args.prev_kv,
            progress_notify=args.progress,
            connect_timeout_s=args.timeout,
        )

        def stop(signum: int, frame: FrameType | None) -> None:
            stream.close()

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        for batch in stream:
            shown.watch(batch, progress=args.progress)
    return int(Exit.OK)
