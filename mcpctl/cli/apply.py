"""``mcpctl apply -f mcp_config.yaml [--dry-run] [--if-rev N]``: make /mcp/ hold a document.

The document is validated here first (no round trip for a typo), then by the
server, which diffs it against the keys under /mcp/ and writes every change
in one txn (docs/mcp-config.md). The diff is printed either way.
``--dry-run`` writes nothing and prints the revision the diff was computed
at; ``--if-rev`` with that revision applies exactly that diff, or fails if
anything under /mcp/ changed since.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mcpctl.cli.exitcodes import Exit, UsageError


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("apply", parents=[parent], help="validate and apply an MCP document")
    p.add_argument("-f", "--file", required=True, help="the MCP document (YAML; '-' = stdin)")
    p.add_argument("--dry-run", action="store_true", help="show the changes; write nothing")
    p.add_argument(
        "--if-rev",
        type=int,
        default=0,
        metavar="N",
        help="diff against revision N (as --dry-run showed); fail if /mcp/ changed since",
    )
    p.set_defaults(run=run)


def read_document(path: str, command: str) -> str:
    """The file's text (stdin for '-'); UsageError when it cannot be read."""
    try:
        if path == "-":
            return sys.stdin.read()
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise UsageError(command, f"cannot read {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise UsageError(command, f"{path} is not UTF-8 text") from e


def run(args: argparse.Namespace) -> int:
    from mcpctl.cli import connect
    from mcpctl.cli.output import printer
    from mcpctl.client.mcp import McpClient
    from mcpctl.mcp.schema import parse_document

    if args.if_rev < 0:
        raise UsageError("apply", "--if-rev must not be negative")
    document = read_document(args.file, "apply")
    parse_document(document)  # SchemaError (exit 1) names every bad path
    with connect.client(args) as client:
        res = McpClient(client).apply(document, dry_run=args.dry_run, expected_revision=args.if_rev)
    hint = ""
    if res.dry_run and res.changes and res.read_revision > 0:
        hint = f"(apply exactly this with --if-rev {res.read_revision})"
    printer(args.write_out).config_write(res, done="applied", hint=hint)
    return int(Exit.OK)
