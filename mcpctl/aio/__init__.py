"""The asyncio SDK: ``mcpctl.aio.Client`` on ``grpc.aio``.

The same surface as ``mcpctl.client.Client`` with ``await``: KV (get, put,
delete, txn with ``mcpctl.Compare``/``mcpctl.Op``, history, compact), watch
as an async iterator that resumes without a gap, leases (``grant`` returns a
``Lease`` renewed by an asyncio task, with ``lost`` and ``on_lost``), status
and membership; ``ConfigWatcher`` keeps a live copy of a prefix on one task
and ``McpConfigView`` the validated, typed MCP config.
It runs the same rules as the sync client (``mcpctl.client._rules``:
endpoint rotation, bounded attempts, request ids, outcomes) and builds the
same requests and typed results (``mcpctl.client._calls``). docs/sdk.md.

::

    async with mcpctl.aio.Client(["127.0.0.1:7101", "127.0.0.1:7102"]) as c:
        await c.put("/cfg/a", "1")
        async for batch in c.watch("/cfg/", prefix=True):
            ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcpctl.aio._client import Client
from mcpctl.aio._lease import Lease
from mcpctl.aio._watch import WatchStream
from mcpctl.aio._watcher import ConfigWatcher

# The name issue #17 uses; the same class.
AsyncConfigWatcher = ConfigWatcher

__all__ = [
    "AsyncConfigWatcher",
    "Client",
    "ConfigWatcher",
    "Lease",
    "McpConfigView",
    "WatchStream",
]

if TYPE_CHECKING:
    from mcpctl.aio._view import McpConfigView


def __getattr__(name: str) -> Any:
    # Imported on first use: the view pulls in pydantic (the MCP schema).
    if name == "McpConfigView":
        from mcpctl.aio._view import McpConfigView

        return McpConfigView
    raise AttributeError(f"module 'mcpctl.aio' has no attribute {name!r}")
