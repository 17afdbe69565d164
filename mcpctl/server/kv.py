"""The KV and Cluster servicers: decode, call the node, encode. Nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from mcpctl import limits, validate
from mcpctl._proto.mcp.v1 import cluster_pb2 as cluster
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import watch_pb2 as watch
from mcpctl.server.errors import forwarded, rpc, rpc_stream
from mcpctl.server.hub import WatchHub
from mcpctl.server.node import Node

if TYPE_CHECKING:
    from mcpctl.server.auth import Guard
    from mcpctl.server.metrics import RpcMetrics


class KVServicer:
    # Methods whose handler returns the answer's bytes (registry.add_service).
    PRE_ENCODED = frozenset({"Range"})

    def __init__(
        self, node: Node, metrics: RpcMetrics | None = None, guard: Guard | None = None
    ) -> None:
        self._node = node
        self.metrics = metrics
        self.guard = guard

    @rpc
    async def Range(self, request: kv.RangeRequest, timeout_s: float) -> bytes:
        """An encoded ``RangeResponse`` (``Node.range_wire``)."""
        return await self._node.range_wire(request, timeout_s)

    @rpc
    async def Put(self, request: kv.PutRequest, timeout_s: float) -> kv.PutResponse:
        return await self._node.put(request, timeout_s)

    @rpc
    async def DeleteRange(
        self, request: kv.DeleteRangeRequest, timeout_s: float
    ) -> kv.DeleteRangeResponse:
        return await self._node.delete_range(request, timeout_s)

    @rpc
    async def Txn(self, request: kv.TxnRequest, timeout_s: float) -> kv.TxnResponse:
        return await self._node.txn(request, timeout_s)

    @rpc
    async def History(self, request: kv.HistoryRequest, timeout_s: float) -> kv.HistoryResponse:
        return await self._node.history(request, timeout_s)

    @rpc
    async def Compact(
        self, request: kv.CompactionRequest, timeout_s: float
    ) -> kv.CompactionResponse:
        return await self._node.compact(request, timeout_s)


class ClusterServicer:
    def __init__(
        self, node: Node, metrics: RpcMetrics | None = None, guard: Guard | None = None
    ) -> None:
        self._node = node
        self.metrics = metrics
        self.guard = guard

    @rpc
    async def Status(
        self, request: cluster.StatusRequest, timeout_s: float
    ) -> cluster.StatusResponse:
        return self._node.status()

    @rpc
    async def ClusterStatus(
        self, request: cluster.ClusterStatusRequest, timeout_s: float
    ) -> cluster.ClusterStatusResponse:
        return await self._node.cluster_status()

    @rpc
    async def MemberAdd(
        self, request: cluster.MemberAddRequest, timeout_s: float
    ) -> cluster.MemberAddResponse:
        return await self._node.member_add(request, timeout_s, forwarded=forwarded())

    @rpc
    async def MemberRemove(
        self, request: cluster.MemberRemoveRequest, timeout_s: float
    ) -> cluster.MemberRemoveResponse:
        return await self._node.member_remove(request, timeout_s, forwarded=forwarded())

    @rpc_stream
    async def Snapshot(
        self, request: cluster.SnapshotRequest
    ) -> AsyncIterator[cluster.SnapshotChunk]:
        async for chunk in self._node.snapshot(limits.CLIENT_TIMEOUT_S_DEFAULT):
            yield chunk

    @rpc
    async def MemberList(
        self, request: cluster.MemberListRequest, timeout_s: float
    ) -> cluster.MemberListResponse:
        return self._node.member_list()


class WatchServicer:
    # Methods whose handler yields messages already encoded (registry.add_service).
    PRE_ENCODED = frozenset({"Watch"})

    def __init__(self, hub: WatchHub, guard: Guard | None = None) -> None:
        self._hub = hub
        self.guard = guard

    @rpc_stream
    def Watch(self, request: watch.WatchRequest) -> AsyncIterator[bytes]:
        """Encoded ``WatchResponse`` messages: events shared by a group are encoded once."""
        validate.check_watch(request)
        return self._hub.frames(request)
