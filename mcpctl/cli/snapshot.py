"""``mcpctl snapshot save FILE | status FILE | restore FILE --config node.yaml``.

``save`` writes a backup of the whole store (at one revision, read after a
linearizable fence) from any member. ``status`` verifies a backup file.
``restore`` seeds one member of a *new* cluster, offline, before its first
start: run it for every member with the same file (docs/operations.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mcpctl.cli.exitcodes import Exit, UsageError


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("snapshot", parents=[parent], help="save, check or restore a backup")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    save = actions.add_parser("save", parents=[parent], help="save a backup from the cluster")
    save.add_argument("file", type=Path)
    save.set_defaults(run=run_save)
    status = actions.add_parser("status", parents=[parent], help="verify a backup file")
    status.add_argument("file", type=Path)
    status.set_defaults(run=run_status)
    restore = actions.add_parser(
        "restore", parents=[parent], help="seed a new member's empty data dir from a backup"
    )
    restore.add_argument("file", type=Path)
    restore.add_argument("--config", type=Path, required=True, help="the new member's node.yaml")
    restore.add_argument("--name", help="override the config's name")
    restore.add_argument("--data-dir", help="override the config's data_dir")
    restore.set_defaults(run=run_restore)


def run_save(args: argparse.Namespace) -> int:
    from mcpctl.cli import connect
    from mcpctl.cli.output import printer

    with connect.client(args, timeout=max(args.timeout, 30.0)) as client:
        info = client.snapshot(str(args.file))
    printer(args.write_out).backup(info)
    return int(Exit.OK)


def run_status(args: argparse.Namespace) -> int:
    from mcpctl import backup
    from mcpctl.cli.output import printer

    printer(args.write_out).backup(backup.inspect(args.file))
    return int(Exit.OK)


def run_restore(args: argparse.Namespace) -> int:
    from mcpctl import backup
    from mcpctl.server import config

    overrides = {
        k: v for k, v in (("name", args.name), ("data_dir", args.data_dir)) if v is not None
    }
    try:
        cfg = config.load(args.config, overrides=overrides)
    except config.ConfigError as e:
        raise UsageError("snapshot restore", str(e)) from e
    info = backup.restore(args.file, cfg.data_dir, [m.raft for m in cfg.cluster.members])
    sys.stdout.write(f"restored revision {info.revision} ({info.keys} keys) into {cfg.data_dir}\n")
    return int(Exit.OK)
