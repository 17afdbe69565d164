"""``etcdserverpb.KV`` over the node: Range, Put, DeleteRange, Txn, Compact.

Thin: requests become the node's (``mcpctl.server.node``) or a planned store
txn (``txn``); answers and errors become etcd's (``convert``, ``errors``).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from mcpctl import limits
from mcpctl._proto.etcd.etcdserverpb import rpc_pb2 as rpc
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl.errors import McpError, Unavailable
from mcpctl.server.errors import rpc as rpc_method
from mcpctl.server.etcd import ranges, txn
from mcpctl.server.etcd.convert import KeySpan, header, key_value
from mcpctl.server.etcd.errors import (
    COMPACTED,
    EMPTY_KEY,
    FUTURE_REV,
    error,
    etcd_error,
)
from mcpctl.server.node import Node
from mcpctl.state import Store

if TYPE_CHECKING:
    from mcpctl.server.etcd.guard import EtcdGuard
    from mcpctl.server.etcd.metrics import EtcdMetrics

Req = TypeVar("Req")
Resp = TypeVar("Resp")

SERVICE = rpc.DESCRIPTOR.services_by_name["KV"]


def etcd_errors(
    method: Callable[[Any, Req, float], Awaitable[Resp]],
) -> Callable[[Any, Req, float], Awaitable[Resp]]:
    """Raise etcd's error for ours (inside ``rpc``, which sets the status)."""

    @functools.wraps(method)
    async def inner(self: Any, request: Req, timeout_s: float) -> Resp:
        try:
            return await method(self, request, timeout_s)
        except McpError as e:
            raise etcd_error(e) from None

    return inner


class KVServicer:
    def __init__(
        self, node: Node, metrics: EtcdMetrics | None = None, guard: EtcdGuard | None = None
    ) -> None:
        self._node = node
        self.metrics = metrics
        self.guard = guard

    @rpc_method
    @etcd_errors
    async def Range(self, request: rpc.RangeRequest, timeout_s: float) -> rpc.RangeResponse:
        span = KeySpan.of(request.key, request.range_end)
        node = self._node
        node.check_restored()
        if not request.serializable:
            await node.proposer.fence(timeout_s)

        def run(store: Store) -> tuple[rpc.RangeResponse, int]:
            revision = request.revision if request.revision > 0 else store.revision
            if revision > store.revision:
                raise error(FUTURE_REV)
            if revision < store.compact_revision:
                raise error(COMPACTED)
            items = store.items(span.cover(), revision)
            return ranges.answer(request, span, items), store.revision

        resp, revision = node.read(run)
        resp.header.CopyFrom(header(node.header(revision)))
        return resp

    @rpc_method
    @etcd_errors
    async def Put(self, request: rpc.PutRequest, timeout_s: float) -> rpc.PutResponse:
        if not request.key:
            raise error(EMPTY_KEY)
        if request.ignore_value or request.ignore_lease:
            one = rpc.TxnRequest(success=[rpc.RequestOp(request_put=request)])
            done = await self._txn(one, timeout_s)
            return done.responses[0].response_put  # with the txn's header
        put = kv.PutRequest(
            key=request.key, value=request.value, lease=request.lease, prev_kv=request.prev_kv
        )
        got = await self._node.put(put, timeout_s)
        resp = rpc.PutResponse(header=header(got.header))
        if got.HasField("prev_kv"):
            resp.prev_kv.CopyFrom(key_value(got.prev_kv))
        return resp

    @rpc_method
    @etcd_errors
    async def DeleteRange(
        self, request: rpc.DeleteRangeRequest, timeout_s: float
    ) -> rpc.DeleteRangeResponse:
        span = KeySpan.of(request.key, request.range_end)
        prefix = span.store_prefix()
        if prefix is None and not span.single:
            one = rpc.TxnRequest(success=[rpc.RequestOp(request_delete_range=request)])
            done = await self._txn(one, timeout_s)
            resp = done.responses[0].response_delete_range
            resp.header.CopyFrom(done.header)
            return resp
        got = await self._node.delete_range(
            kv.DeleteRangeRequest(
                key=span.key if prefix is None else prefix,
                prefix=prefix is not None,
                prev_kv=request.prev_kv,
            ),
            timeout_s,
        )
        return rpc.DeleteRangeResponse(
            header=header(got.header),
            deleted=got.deleted,
            prev_kvs=[key_value(i) for i in got.prev_kvs],
        )

    @rpc_method
    @etcd_errors
    async def Txn(self, request: rpc.TxnRequest, timeout_s: float) -> rpc.TxnResponse:
        return await self._txn(request, timeout_s)

    async def _txn(self, request: rpc.TxnRequest, timeout_s: float) -> rpc.TxnResponse:
        txn.check(request)
        for _ in range(limits.ETCD_TXN_ATTEMPTS_MAX):
            attempt = self._node.read(lambda s: txn.plan(s, request))
            got = await self._node.txn(attempt.request, timeout_s)
            if got.succeeded:
                return attempt.answer(got, header(got.header))
        raise Unavailable(
            f"mcp-config: the keys this txn reads changed under it {limits.ETCD_TXN_ATTEMPTS_MAX} "
            "times in a row (ETCD_TXN_ATTEMPTS_MAX); retry",
        )

    @rpc_method
    @etcd_errors
    async def Compact(
        self, request: rpc.CompactionRequest, timeout_s: float
    ) -> rpc.CompactionResponse:
        node = self._node
        current, compacted = node.read(lambda s: (s.revision, s.compact_revision))
        if request.revision > current:
            raise error(FUTURE_REV)
        if request.revision < compacted or (0 < compacted == request.revision):
            raise error(COMPACTED)  # as etcd: compacting again to the same revision too
        got = await node.compact(kv.CompactionRequest(revision=request.revision), timeout_s)
        return rpc.CompactionResponse(header=header(got.header))
