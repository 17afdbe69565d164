"""A member's status as people and programs see it: the fields of
``mcpctl status -w json`` and of the web console's status feed.

Neutral ground for both sides: the CLI (``mcpctl.cli.output``) and the node's
console (``mcpctl.server.console.api``) import it, and it imports neither, so
server code never imports ``mcpctl.cli``. It reads the wire type (the console)
or the SDK's ``MemberHealth`` (the CLI): the same fields.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcpctl._proto.mcp.v1 import cluster_pb2 as cluster
    from mcpctl.client import MemberHealth

# A member whose lag is above this is shown as "lagging".
STATUS_LAG_WARN_MS = 1000


def _known(value: int) -> int | None:
    """-1 on the wire means "not known yet" (issue #19, item 3): shown as null."""
    return None if value < 0 else value


def status_json(m: cluster.MemberHealth | MemberHealth, leader: str) -> dict[str, Any]:
    if not m.reachable:
        health = "unreachable"
    elif not leader:
        health = "no leader"
    elif m.lag_ms > STATUS_LAG_WARN_MS:
        health = "lagging"
    else:
        health = "healthy"
    return {
        "id": m.member_name,
        "endpoint": m.endpoint,
        "raft_address": m.raft_address,
        "role": m.role if m.reachable else None,
        "term": m.term if m.reachable else None,
        "commit_index": m.commit_index if m.reachable else None,
        "applied_index": m.applied_index if m.reachable else None,
        "revision": m.revision if m.reachable else None,
        "entries_behind": _known(m.entries_behind),
        "lag_ms": _known(m.lag_ms),
        "last_contact_ms": _known(m.last_contact_ms),
        "reachable": m.reachable,
        "health": health,
        **({"error": m.error} if not m.reachable else {}),
    }
