"""The Python SDK: what a service imports to talk to mcp-config.

- ``Client``: KV, watch, leases, status and membership over gRPC, with
  endpoint failover, bounded retries and explicit outcomes
  (``mcpctl.client.core`` maps the small private modules it is made of);
- ``Lease`` (``client.grant(ttl)``): a lease kept alive in the background,
  reporting its loss (``lost``, ``on_lost``); docs/leases.md;
- ``ConfigWatcher`` (``watcher``): a live copy of a prefix that re-arms itself,
  optionally kept on disk as a last-good cache (``cache``, docs/sdk.md);
- ``McpClient`` (``mcp``): apply, export, history and rollback of the MCP document;
- ``McpConfigView`` (``view``): a typed, validated, hot-reloaded MCP config.

Transactions are built with ``Compare`` and ``Op`` (``_txn``); every result
is a typed dataclass (``_values``, ``_results``): nothing here asks a service
to import ``mcpctl._proto``. The asyncio client is ``mcpctl.aio.Client``.

Errors are in ``mcpctl.errors`` (and exported by ``mcpctl``). Only the core
modules are imported eagerly: the others pull in pydantic or threads, and
the CLI should not pay for them when it does not use them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcpctl.client._client import Client
from mcpctl.client._lease import Lease
from mcpctl.client._ops import delete_op, put_op
from mcpctl.client._results import ClusterStatus, HistoryEntry, HistoryResult, Member, MemberHealth
from mcpctl.client._txn import Compare, CompareOn, Op
from mcpctl.client._values import (
    DeleteResult,
    Event,
    GetResult,
    Header,
    KeyValue,
    LeaseGrant,
    LeaseKeepAlive,
    LeaseList,
    MemberStatus,
    PutResult,
    TimeToLive,
    TxnResult,
    WatchBatch,
    new_request_id,
)
from mcpctl.client._watch import WatchStream

if TYPE_CHECKING:
    from mcpctl.client.mcp import McpClient
    from mcpctl.client.view import McpConfigView
    from mcpctl.client.watcher import ConfigWatcher

__all__ = [
    "Client",
    "ClusterStatus",
    "Compare",
    "CompareOn",
    "ConfigWatcher",
    "DeleteResult",
    "Event",
    "GetResult",
    "Header",
    "HistoryEntry",
    "HistoryResult",
    "KeyValue",
    "Lease",
    "LeaseGrant",
    "LeaseKeepAlive",
    "LeaseList",
    "McpClient",
    "McpConfigView",
    "Member",
    "MemberHealth",
    "MemberStatus",
    "Op",
    "PutResult",
    "TimeToLive",
    "TxnResult",
    "WatchBatch",
    "WatchStream",
    "delete_op",
    "new_request_id",
    "put_op",
]

_LAZY = {
    "ConfigWatcher": "mcpctl.client.watcher",
    "McpClient": "mcpctl.client.mcp",
    "McpConfigView": "mcpctl.client.view",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mcpctl.client' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
