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


def for_error(err: errors.McpError) -> Exit:
    if isinstance(err, errors.OutcomeUnknown):
        return Exit.OUTCOME_UNKNOWN
    if isinstance(err, errors.Unavailable | errors.DeadlineExceeded):
        return Exit.UNAVAILABLE
    return Exit.FAILED
