"""Exit codes of mcpctl, in one table (docs/cli.md)."""

from __future__ import annotations

from enum import IntEnum

from mcpctl import errors


class Exit(IntEnum):
    OK = 0
    # The cluster answered no: invalid argument, compare failed, compacted, ...
    FAILED = 1
    # Bad flags, bad config, a node that cannot start.
    USAGE = 2
    # No member reachable, no leader, deadline passed: nothing was applied.
    UNAVAILABLE = 3
    # A write may or may not have been applied.
    OUTCOME_UNKNOWN = 4
    # The node stopped because its Raft loop wedged / apply failed (see replication.py).
    NODE_FAILED = 5


class UsageError(Exception):
    """Bad input a command found itself (argparse's own go through ``Parser.error``).

    Commands raise it; ``main`` alone prints ``mcpctl COMMAND: MESSAGE`` as one
    line on stderr and exits ``Exit.USAGE``."""

    def __init__(self, command: str, message: str) -> None:
        super().__init__(f"mcpctl {command}: {message}")
        self.command = command
        self.message = message


def for_error(err: errors.McpError) -> Exit:
    if isinstance(err, errors.OutcomeUnknown):
        return Exit.OUTCOME_UNKNOWN
    if isinstance(err, errors.Unavailable | errors.DeadlineExceeded):
        return Exit.UNAVAILABLE
    return Exit.FAILED
