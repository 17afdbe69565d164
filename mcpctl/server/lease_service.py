"""The ``mcp.v1.Lease`` servicer: decode, call the node's ``Leases``, encode. Nothing else.

Errors are ``mcpctl.errors`` classes mapped to a status by ``rpc`` /
``rpc_stream`` (one mapping); what each call does is in
``mcpctl.server.leases`` and docs/leases.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import lease_pb2 as lease
from mcpctl.errors import InvalidArgument
from mcpctl.server.errors import BadRequest, forwarded, rpc, rpc_stream
from mcpctl.server.leases import Leases

if TYPE_CHECKING:
    from mcpctl.server.auth import Guard
    from mcpctl.server.metrics import RpcMetrics

SERVICE = lease.DESCRIPTOR.services_by_name["Lease"]


class LeaseServicer:
    def __init__(
        self, leases: Leases, metrics: RpcMetrics | None = None, guard: Guard | None = None
    ) -> None:
        self._leases = leases
        self.metrics = metrics
        self.guard = guard

    @rpc
    async def Grant(self, request: kv.LeaseGrantRequest, timeout_s: float) -> kv.LeaseGrantResponse:
        return await self._leases.grant(request, timeout_s)

    @rpc
    async def Revoke(
        self, request: kv.LeaseRevokeRequest, timeout_s: float
    ) -> kv.LeaseRevokeResponse:
        return await self._leases.revoke(request, timeout_s)

    @rpc_stream
    async def KeepAlive(
        self, requests: AsyncIterator[lease.LeaseKeepAliveRequest | BadRequest]
    ) -> AsyncIterator[lease.LeaseKeepAliveResponse]:
        with self._leases.keepalive_stream():
            async for request in requests:
                if isinstance(request, BadRequest):
                    raise InvalidArgument(request.error)
                yield self._leases.keepalive(request)

    @rpc
    async def TimeToLive(
        self, request: lease.LeaseTimeToLiveRequest, timeout_s: float
    ) -> lease.LeaseTimeToLiveResponse:
        return await self._leases.time_to_live(request, timeout_s, forwarded=forwarded())

    @rpc
    async def Leases(
        self, request: lease.LeaseLeasesRequest, timeout_s: float
    ) -> lease.LeaseLeasesResponse:
        return await self._leases.leases(timeout_s)
