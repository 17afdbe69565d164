"""mcp-config: a Raft-replicated configuration control plane for MCP deployments.

The SDK: ``mcpctl.Client`` (KV, watch, status) and ``mcpctl.ConfigWatcher``
(a live copy of a prefix); errors are in ``mcpctl.errors``. They are imported
lazily so that ``import mcpctl`` (and the CLI) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Client", "ConfigWatcher"]

if TYPE_CHECKING:
    from mcpctl.client import Client
    from mcpctl.client.watcher import ConfigWatcher


def __getattr__(name: str) -> Any:
    if name == "Client":
        from mcpctl.client import Client

        return Client
    if name == "ConfigWatcher":
        from mcpctl.client.watcher import ConfigWatcher

        return ConfigWatcher
    raise AttributeError(f"module 'mcpctl' has no attribute {name!r}")
