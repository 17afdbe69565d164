"""``mcpctl serve --config node.yaml``: run one node in the foreground."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from mcpctl.cli.exitcodes import UsageError


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("serve", parents=[parent], help="run one node")
    p.add_argument("--config", type=Path, help="node configuration file (YAML)")
    p.add_argument("--name", help="this member's name (cluster.members[].name)")
    p.add_argument("--data-dir", help="where the Raft journal and snapshots live")
    p.add_argument("--listen", help="client gRPC address to bind (host:port)")
    p.add_argument("--log-format", choices=("json", "console"))
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key by its dotted path (value parsed as YAML)",
    )
    p.set_defaults(run=run)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for flag, key in (
        ("name", "name"),
        ("data_dir", "data_dir"),
        ("listen", "server.listen"),
        ("log_format", "log.format"),
        ("log_level", "log.level"),
    ):
        value = getattr(args, flag)
        if value is not None:
            out[key] = value
    for item in args.set:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UsageError("serve", f"--set {item!r}: expected KEY=VALUE")
        try:
            out[key] = yaml.safe_load(raw) if raw else raw
        except yaml.YAMLError as e:
            raise UsageError("serve", f"--set {key}: value is not valid YAML") from e
    return out


def run(args: argparse.Namespace) -> int:
    import structlog

    from mcpctl.server import app, config, logs

    overrides = _overrides(args)
    try:
        cfg = config.load(args.config, overrides=overrides)
        logs.configure(cfg.log.level, cfg.log.format, node=cfg.name)
        ignored = config.foreign_env(os.environ)
        if ignored:  # names only: values such as MCP_API_KEY may be secrets
            structlog.get_logger("mcpctl.server.config").debug(
                "MCP_ variables that are no config keys left alone", variables=ignored
            )
        return app.run(cfg)
    except (config.ConfigError, app.StartupError) as e:
        raise UsageError("serve", str(e)) from e
