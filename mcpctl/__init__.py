"""mcp-config: a Raft-replicated configuration control plane for MCP deployments.

The public SDK surface is ``mcpctl.client`` (``Client``) and ``mcpctl.errors``.
"""

__version__ = "0.1.0"
