"""The MCP document model: one validated MCP document stored as keys under ``/mcp/``.

Pure and shared by the node and the SDK:

- ``schema``: the document (pydantic), path-naming errors that never echo values;
- ``layout``: document <-> keys (one key per model, per rate limit, per section);
- ``plan``: the diff and the guarded txn behind apply and rollback.

The gRPC servicer is ``mcpctl.server.mcp_service``; the SDK's ``McpClient``
and ``McpConfigView`` are in ``mcpctl.client``. Modules are imported on use:
the CLI should not pay for pydantic when it does not validate anything.
"""

from __future__ import annotations

__all__ = ["layout", "plan", "schema"]
