"""``etcdserverpb.Lease`` over the node's leases (``mcpctl.server.leases``, docs/leases.md).

Keepalives are served by the leader's clock: a follower answers UNAVAILABLE
``etcdserver: not leader`` and etcd clients retry another member. TimeToLive
is forwarded to the leader as on mcp.v1; an unknown lease answers TTL -1 as
etcd does (Revoke: NOT_FOUND ``etcdserver: requested lease not found``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from mcpctl import limits
from mcpctl._proto.etcd.etcdserverpb import rpc_pb2 as rpc
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import lease_pb2 as lease
from mcpctl.errors import InvalidArgument, LeaseNotFound, McpError, Unavailable
from mcpctl.raft.status import Role
from mcpctl.server.errors import BadRequest, forwarded, rpc_stream
from mcpctl.server.errors import rpc as rpc_method
from mcpctl.server.etcd.convert import header
from mcpctl.server.etcd.errors import (
    LEASE_NOT_FOUND,
    LEASE_TTL_TOO_LARGE,
    NOT_LEADER,
    error,
    etcd_error,
)
from mcpctl.server.etcd.kv import etcd_errors
from mcpctl.server.leases import Leases
from mcpctl.server.node import Node

if TYPE_CHECKING:
    from mcpctl.server.etcd.guard import EtcdGuard
    from mcpctl.server.etcd.metrics import EtcdMetrics

SERVICE = rpc.DESCRIPTOR.services_by_name["Lease"]


class LeaseServicer:
    def __init__(
        self,
        node: Node,
        leases: Leases,
        metrics: EtcdMetrics | None = None,
        guard: EtcdGuard | None = None,
    ) -> None:
        self._node = node
        self._leases = leases
        self.metrics = metrics
        self.guard = guard

    @rpc_method
    @etcd_errors
    async def LeaseGrant(
        self, request: rpc.LeaseGrantRequest, timeout_s: float
    ) -> rpc.LeaseGrantResponse:
        if request.TTL > limits.LEASE_TTL_S_MAX:
            raise error(LEASE_TTL_TOO_LARGE)
        # TTL <= 0: the minimum, as etcd raises any TTL below its minimum.
        grant = kv.LeaseGrantRequest(ttl=max(request.TTL, 1), id=request.ID)
        got = await self._leases.grant(grant, timeout_s)
        return rpc.LeaseGrantResponse(header=header(got.header), ID=got.id, TTL=got.ttl)

    @rpc_method
    @etcd_errors
    async def LeaseRevoke(
        self, request: rpc.LeaseRevokeRequest, timeout_s: float
    ) -> rpc.LeaseRevokeResponse:
        if request.ID <= 0:
            raise error(LEASE_NOT_FOUND)
        got = await self._leases.revoke(kv.LeaseRevokeRequest(id=request.ID), timeout_s)
        return rpc.LeaseRevokeResponse(header=header(got.header))

    @rpc_stream
    async def LeaseKeepAlive(
        self, requests: AsyncIterator[rpc.LeaseKeepAliveRequest | BadRequest]
    ) -> AsyncIterator[rpc.LeaseKeepAliveResponse]:
        with self._leases.keepalive_stream():
            async for request in requests:
                if isinstance(request, BadRequest):
                    raise InvalidArgument(request.error)
                try:
                    got = self._leases.keepalive(lease.LeaseKeepAliveRequest(id=request.ID))
                except Unavailable:
                    if self._node.raft.status.role != Role.LEADER:
                        raise error(NOT_LEADER) from None
                    raise
                except McpError as e:
                    raise etcd_error(e) from None
                yield rpc.LeaseKeepAliveResponse(
                    header=header(got.header), ID=got.id, TTL=max(got.ttl, 0)
                )

    @rpc_method
    @etcd_errors
    async def LeaseTimeToLive(
        self, request: rpc.LeaseTimeToLiveRequest, timeout_s: float
    ) -> rpc.LeaseTimeToLiveResponse:
        node = self._node
        try:
            if request.ID <= 0:
                raise LeaseNotFound()
            got = await self._leases.time_to_live(
                lease.LeaseTimeToLiveRequest(id=request.ID, keys=request.keys),
                timeout_s,
                forwarded=forwarded(),
            )
        except LeaseNotFound:
            return rpc.LeaseTimeToLiveResponse(header=header(node.header()), ID=request.ID, TTL=-1)
        return rpc.LeaseTimeToLiveResponse(
            header=header(got.header),
            ID=got.id,
            TTL=got.ttl,
            grantedTTL=got.granted_ttl,
            keys=list(got.keys),
        )

    @rpc_method
    @etcd_errors
    async def LeaseLeases(
        self, request: rpc.LeaseLeasesRequest, timeout_s: float
    ) -> rpc.LeaseLeasesResponse:
        got = await self._leases.leases(timeout_s)
        return rpc.LeaseLeasesResponse(
            header=header(got.header), leases=[rpc.LeaseStatus(ID=s.id) for s in got.leases]
        )
