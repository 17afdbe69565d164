"""The MCP layer: one validated MCP document stored as keys under ``/mcp/``.

- ``schema``: the document (pydantic), path-naming errors that never echo values;
- ``layout``: document <-> keys (one key per model, per rate limit, per section);
- ``plan``: the diff and the guarded txn behind apply and rollback (server side);
- ``service``: the ``mcp.v1.Config`` gRPC servicer;
- ``client``: ``McpClient``, the SDK for Apply/Export/Rollback and key history;
- ``view``: ``McpConfigView``, a typed, validated, hot-reloaded config object.

Modules are imported on use: the CLI should not pay for pydantic when it
does not validate anything.
"""

from __future__ import annotations

__all__ = ["client", "layout", "plan", "schema", "service", "view"]
