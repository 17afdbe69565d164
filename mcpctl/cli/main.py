"""``mcpctl``: parse global options, dispatch to one command module, map errors.

Every failure ends as one line on stderr and a code from ``Exit``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from mcpctl.cli.exitcodes import Exit, UsageError

# Module names under mcpctl.cli, in help order (`del` lives in delete.py).
COMMANDS = (
    "serve",
    "dev",
    "put",
    "get",
    "delete",
    "watch",
    "lease",
    "status",
    "members",
    "member",
    "health",
    "snapshot",
    "apply",
    "export",
    "history",
    "rollback",
    "render",
    "instances",
    "drain",
)
TIMEOUT_ENV = "MCPCTL_TIMEOUT"
# Command names that differ from their module's name.
ALIASES = {"del": "delete", "undrain": "drain"}
# Global flags that take a value (the next argument, unless written --flag=value).
_VALUE_FLAGS = frozenset(
    ("--endpoints", "--timeout", "--token", "--cacert", "--cert", "--key", "-w", "--write-out")
)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(Exit.USAGE)


def _globals(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Global flags, accepted before or after the command name."""
    d = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--endpoints",
        default=d,
        help="comma-separated host:port list (env MCPCTL_ENDPOINTS; "
        "default 127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=d,
        help="seconds per command, over all retries (env MCPCTL_TIMEOUT; default 5)",
    )
    parser.add_argument(
        "--token", default=d, help="bearer token (env MCPCTL_TOKEN)", metavar="TOKEN"
    )
    parser.add_argument(
        "--cacert", dest="tls_cacert", default=d, help="CA file to verify servers (TLS)"
    )
    parser.add_argument(
        "--cert", dest="tls_cert", default=d, help="client certificate (mutual TLS)"
    )
    parser.add_argument(
        "--key", dest="tls_key", default=d, help="client certificate key (mutual TLS)"
    )
    parser.add_argument(
        "-w",
        "--write-out",
        # output.PRINTERS' names, spelled out: importing output costs start-up time.
        choices=("simple", "json", "table"),
        default=d,
        help="output format (default simple)",
    )


def command_of(argv: Sequence[str]) -> str | None:
    """The command module ``argv`` names, or None (no command, or an unknown one)."""
    args = iter(argv)
    for arg in args:
        if arg == "--":
            return None
        if arg.startswith("-"):
            if arg in _VALUE_FLAGS:
                next(args, None)
            continue
        name = ALIASES.get(arg, arg)
        return name if name in COMMANDS else None
    return None


def build_parser(only: str | None = None) -> Parser:
    """The whole CLI, or just the global flags and command ``only``: importing
    and registering all 15 command modules costs ~10 ms of a `mcpctl get`."""
    parser = Parser(prog="mcpctl", description="mcp-config control: an etcdctl-like CLI.")
    _globals(parser, suppress=False)
    parent = Parser(add_help=False)
    _globals(parent, suppress=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name in COMMANDS if only is None else (only,):
        module = importlib.import_module(f"mcpctl.cli.{name}")
        module.register(sub, parent)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(command_of(argv))
    args = parser.parse_args(argv)
    if args.endpoints is None:
        args.endpoints = os.environ.get("MCPCTL_ENDPOINTS", "")
    if args.timeout is None:
        raw = os.environ.get(TIMEOUT_ENV, "5")
        try:
            args.timeout = float(raw)
        except ValueError:
            parser.error(f"{TIMEOUT_ENV}={raw!r} is not a number")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    if args.write_out is None:
        args.write_out = "simple"
    from mcpctl.errors import McpError

    for name in ("token", "tls_cacert", "tls_cert", "tls_key"):
        if getattr(args, name, None) is None:
            setattr(args, name, None)
    try:
        code: int = args.run(args)
    except UsageError as e:
        sys.stderr.write(f"{e}\n")
        return int(Exit.USAGE)
    except McpError as e:
        from mcpctl.cli.exitcodes import for_error

        sys.stderr.write(f"mcpctl: {e.kind.replace('_', ' ')}: {e.message}\n")
        return int(for_error(e))
    except ValueError as e:  # bad TLS files and the like, found by the SDK
        sys.stderr.write(f"mcpctl: error: {e}\n")
        return int(Exit.USAGE)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return int(Exit.OK)
    return code
