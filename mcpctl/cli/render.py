"""``mcpctl render -c AGENT.yaml [--once] [--dry-run]``: the template agent.

Renders the templates of the agent config (docs/render.md) and installs
them, then keeps them current as the keys they read change, until SIGTERM or
Ctrl-C (exit 0). ``--once``: render and install each template once, then
exit: 0 if every one rendered (installed or unchanged), 1 if any failed.
``--dry-run``: render each once and print the unified diff against the file
in place; nothing is written, no command runs. Outcomes are one line each on
stderr; with no member reachable, the last-good cache (``cache_dir``) is used.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from mcpctl.cli.exitcodes import Exit, UsageError


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "render",
        parents=[parent],
        help="render templates from the config and reload services (confd-like)",
        description="Render the Jinja2 templates of an agent config from keys, the MCP "
        "config and live instances; install each result atomically once its check_cmd "
        "passes, then run its reload_cmd; keep doing so as they change (docs/render.md).",
    )
    p.add_argument("-c", "--config", required=True, help="the agent config (YAML)")
    p.add_argument("--once", action="store_true", help="render every template once and exit")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the diff each template would make; change nothing, run nothing",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mcpctl.cli import connect
    from mcpctl.render import Agent, RenderConfigError, RenderError, Status, load_config

    try:
        config = load_config(Path(args.config))
    except RenderConfigError as e:
        raise UsageError("render", f"{args.config}: {e}") from None
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="mcpctl render: %(message)s"
    )

    def report(line: str) -> None:
        sys.stderr.write(f"mcpctl render: {line}\n")
        sys.stderr.flush()

    with connect.client(args) as client:
        try:
            agent = Agent(client, config, report=report, dry_run=args.dry_run)
        except RenderError as e:
            raise UsageError("render", str(e)) from None
        if args.once or args.dry_run:
            try:
                agent.start(wait=False)
                outcomes = agent.render_all()
            finally:
                agent.stop()
            for t, outcome in zip(config.templates, outcomes, strict=True):
                if args.dry_run and outcome.detail and outcome.status.ok:
                    sys.stdout.write(outcome.detail)
                if outcome.status.ok and outcome.status is not Status.INSTALLED:
                    report(f"{t.label}: {outcome.status.value}")
            return int(Exit.OK if all(o.status.ok for o in outcomes) else Exit.FAILED)

        def stop(signum: int, frame: FrameType | None) -> None:
            agent.stop()

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        agent.start(wait=True)
        agent.run()
        agent.stop()
    return int(Exit.OK)
