"""The other members: names, addresses, and gRPC calls to them.

Names and client addresses come from the replicated member directory (kept
in the store, written by MemberAdd/MemberRemove) and, for the members a node
was started with, from its configuration. Member-to-member gRPC traffic is
only ``Status`` (for ``ClusterStatus``) and forwarding to the leader what only
it can answer (membership changes, ``Lease.TimeToLive``). Channels are
created lazily and kept; every call has a short deadline so one dead member
never holds up an answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from mcpctl._proto.mcp.v1 import cluster_pb2 as cluster
from mcpctl._proto.mcp.v1 import cluster_pb2_grpc as cluster_grpc
from mcpctl._proto.mcp.v1 import lease_pb2_grpc as lease_grpc
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl.errors import STOPPING, from_status

PEER_STATUS_TIMEOUT_S = 1.0
# Metadata on a request one member forwards to another (never forwarded twice).
FORWARDED_KEY = "mcp-forwarded"


@dataclass(frozen=True, slots=True)
class MemberInfo:
    name: str
    raft: str
    client: str


class Peers:
    def __init__(
        self,
        members: list[MemberInfo],
        directory: Callable[[], list[raft.MemberRecord]] | None = None,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
    ) -> None:
        self._configured = {m.name: m for m in members}
        self._directory = directory or (lambda: [])
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._credentials = credentials
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )

    def known(self) -> list[MemberInfo]:
        """Every member known by name: the directory overrides the configuration."""
        found = dict(self._configured)
        for rec in self._directory():
            if rec.removed:
                found.pop(rec.name, None)
            else:
                found[rec.name] = MemberInfo(rec.name, rec.raft_address, rec.client_address)
        return list(found.values())

    def removed(self, name: str) -> bool:
        return any(r.name == name and r.removed for r in self._directory())

    def by_raft(self, raft_address: str) -> MemberInfo:
        """The member at a Raft address. One with a tombstone but still a voter
        (its removal was refused, or is under way) keeps its name, so that the
        removal can be retried."""
        found = next((m for m in self.known() if m.raft == raft_address), None)
        if found is None:
            found = next(
                (
                    MemberInfo(r.name, r.raft_address, r.client_address)
                    for r in self._directory()
                    if r.removed and r.raft_address == raft_address
                ),
                None,
            )
        return found or MemberInfo(raft_address, raft_address, "")

    def name_of(self, raft_address: str) -> str:
        return self.by_raft(raft_address).name

    def _channel(self, member: MemberInfo) -> grpc.aio.Channel:
        channel = self._channels.get(member.client)
        if channel is None:
            channel = self._channels[member.client] = (
                grpc.aio.secure_channel(member.client, self._credentials)
                if self._credentials is not None
                else grpc.aio.insecure_channel(member.client)
            )
        return channel

    def _stub(self, member: MemberInfo) -> cluster_grpc.ClusterAsyncStub:
        return cluster_grpc.ClusterStub(self._channel(member))

    async def status(
        self, member: MemberInfo, timeout_s: float = PEER_STATUS_TIMEOUT_S
    ) -> cluster.StatusResponse | str:
        """The member's Status, or why it could not be had."""
        if not member.client:
            return "client address unknown"
        try:
            resp: cluster.StatusResponse = await self._stub(member).Status(
                cluster.StatusRequest(), timeout=timeout_s, metadata=self._metadata
            )
            return resp
        except grpc.aio.AioRpcError as e:
            return f"{e.code().name.lower()}: {e.details()}"

    async def forward(
        self,
        member: MemberInfo,
        method: str,
        request: Any,
        timeout_s: float,
        *,
        service: str = "Cluster",
    ) -> Any:
        """Call ``<service>/<method>`` (Cluster or Lease) on ``member``; its error
        comes back as our ``McpError``."""
        stub: Any = (
            lease_grpc.LeaseStub(self._channel(member))
            if service == "Lease"
            else self._stub(member)
        )
        call = getattr(stub, method)
        metadata = (*self._metadata, (FORWARDED_KEY, "1"))
        try:
            return await call(request, timeout=timeout_s, metadata=metadata)
        except grpc.aio.AioRpcError as e:
            trailers: Any = e.trailing_metadata() or ()
            meta = {str(k): v for k, v in trailers if isinstance(v, str)}
            details = e.details() or ""
            if details == STOPPING:
                # Relayed as it is, it would name this member as the one stopping.
                details = (
                    f"member {member.name}, which this call was forwarded to, is stopping; retry"
                )
            raise from_status(e.code().name, details, meta) from None

    async def close(self) -> None:
        await asyncio.gather(*(ch.close(None) for ch in self._channels.values()))
        self._channels.clear()
