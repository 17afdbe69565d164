"""``mcpctl status [--watch]``: every member's health and replication lag.

Answered by any one reachable endpoint (``ClusterStatus``): that member asks
every other member for its own view and combines it with the leader's view
of replication, so one endpoint is enough and members that are down still
get a row (``unreachable``).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType
from typing import Any

# --watch refreshes this often (seconds); bounded below.
WATCH_INTERVAL_S_DEFAULT = 1.0
WATCH_INTERVAL_S_MIN = 0.2


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "status", parents=[parent], help="every member's role, progress and replication lag"
    )
    p.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    p.add_argument(
        "--interval",
        type=float,
        default=WATCH_INTERVAL_S_DEFAULT,
        help=f"seconds between refreshes with --watch (default {WATCH_INTERVAL_S_DEFAULT})",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mcpctl.cli import connect
    from mcpctl.cli.exitcodes import Exit, UsageError
    from mcpctl.cli.output import printer

    if args.interval < WATCH_INTERVAL_S_MIN:
        raise UsageError("status", f"--interval must be at least {WATCH_INTERVAL_S_MIN}")
    if args.write_out == "simple":
        args.write_out = "table"
    shown = printer(args.write_out)
    with connect.client(args, timeout=min(args.timeout, 3.0)) as client:
        if not args.watch:
            shown.status(client.cluster_status())
            return int(Exit.OK)
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        if args.write_out == "table" and sys.stdout.isatty():
            return _live(client, shown, args.interval, stop)
        while not stop.is_set():
            shown.status(client.cluster_status())
            shown.out.flush()
            stop.wait(args.interval)
    return int(Exit.OK)


def _live(client: Any, printer: Any, interval: float, stop: threading.Event) -> int:
    """Redraw one table in place (rich Live) until stopped."""
    import io

    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    from mcpctl.errors import McpError

    def render() -> Text:
        buf = io.StringIO()
        try:
            type(printer)(buf).status(client.cluster_status())
        except McpError as e:
            buf.write(f"status unavailable: {e.message}\n")
        return Text.from_ansi(buf.getvalue())

    with Live(render(), console=Console(), auto_refresh=False) as live:
        while not stop.wait(interval):
            live.update(render(), refresh=True)
    return 0
