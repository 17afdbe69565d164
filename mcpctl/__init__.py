"""mcp-config: a Raft-replicated configuration control plane for MCP deployments.

The SDK: ``mcpctl.Client`` (KV, txn, watch, leases, status), its asyncio twin
``mcpctl.aio.Client`` (also ``mcpctl.AsyncClient``), ``mcpctl.ConfigWatcher``
(a live copy of a prefix), ``Compare``/``Op`` to build a txn, and the error
classes (``McpError`` and its subclasses, from ``mcpctl.errors``). The
clients are imported lazily so that ``import mcpctl`` (and the CLI) stays fast;
docs/sdk.md is the guide.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mcpctl.errors import (
    Compacted,
    CompareFailed,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    LeaseExists,
    LeaseNotFound,
    McpError,
    NotFound,
    OutcomeUnknown,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

__version__ = "0.1.0"
__all__ = [
    "AsyncClient",
    "Client",
    "ClientClosed",
    "Compacted",
    "Compare",
    "CompareFailed",
    "ConfigWatcher",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "Lease",
    "LeaseExists",
    "LeaseNotFound",
    "McpError",
    "NotFound",
    "Op",
    "OutcomeUnknown",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
]

if TYPE_CHECKING:
    from mcpctl.aio import Client as AsyncClient
    from mcpctl.client import Client, Compare, Lease, Op
    from mcpctl.client._rules import ClientClosed
    from mcpctl.client.watcher import ConfigWatcher

_LAZY = {
    "AsyncClient": ("mcpctl.aio", "Client"),
    "Client": ("mcpctl.client", "Client"),
    "ClientClosed": ("mcpctl.client._rules", "ClientClosed"),
    "Compare": ("mcpctl.client", "Compare"),
    "ConfigWatcher": ("mcpctl.client.watcher", "ConfigWatcher"),
    "Lease": ("mcpctl.client", "Lease"),
    "Op": ("mcpctl.client", "Op"),
}


def __getattr__(name: str) -> Any:
    found = _LAZY.get(name)
    if found is None:
        raise AttributeError(f"module 'mcpctl' has no attribute {name!r}")
    return getattr(importlib.import_module(found[0]), found[1])
