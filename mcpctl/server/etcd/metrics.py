"""RPC metrics of etcd calls: the node's histogram, method labelled ``etcd.<Method>``
(``etcd.Range``), so they are told apart from mcp.v1's (``Range``)."""

from __future__ import annotations

from mcpctl.server.metrics import RpcMetrics

PREFIX = "etcd."


class EtcdMetrics:
    def __init__(self, inner: RpcMetrics) -> None:
        self._inner = inner

    def observe(self, method: str, code: str, seconds: float) -> None:
        self._inner.observe(PREFIX + method, code, seconds)
