"""The web console (docs/console.md): a small JSON/SSE API and a static page,
served by every node that sets ``console.listen``.

- ``api``: the Starlette app; each handler calls what the gRPC servicer calls
  (``Guard``, ``Node``, ``mcpctl.mcp.plan``);
- ``http``: errors to HTTP (one mapping), the JSON body, browser hardening;
- ``stream``: the status event stream (SSE) of one page;
- ``feed``: one cluster status per tick, shared by every open page (SSE);
- ``server``: uvicorn on the node's own asyncio loop;
- ``static/``: the page (plain HTML/JS/CSS, no build step).
"""

from __future__ import annotations

__all__ = ["api", "feed", "http", "server", "stream"]
