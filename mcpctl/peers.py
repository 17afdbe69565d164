"""The other members, as gRPC clients: names, addresses and Status calls.

Used by ``ClusterStatus`` (ask every member for its own view) — the only
member-to-member gRPC traffic. Channels are created lazily and kept; each
call has a short deadline (``PEER_STATUS_TIMEOUT_S``) so one dead member
never holds up the answer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc

from mcpctl._proto.mcp.v1 import cluster_pb2 as cluster
from mcpctl._proto.mcp.v1 import cluster_pb2_grpc as cluster_grpc

PEER_STATUS_TIMEOUT_S = 1.0


@dataclass(frozen=True, slots=True)
class MemberInfo:
    name: str
    raft: str
    client: str


class Peers:
    def __init__(self, members: list[MemberInfo]) -> None:
        self._members = {m.name: m for m in members}
        self._channels: dict[str, grpc.aio.Channel] = {}

    @property
    def members(self) -> list[MemberInfo]:
        return list(self._members.values())

    def name_of(self, raft_address: str) -> str:
        for m in self._members.values():
            if m.raft == raft_address:
                return m.name
        return raft_address

    def by_raft(self, raft_address: str) -> MemberInfo:
        for m in self._members.values():
            if m.raft == raft_address:
                return m
        return MemberInfo(raft_address, raft_address, "")

    async def status(self, member: MemberInfo) -> cluster.StatusResponse | str:
        """The member's Status, or why it could not be had."""
        if not member.client:
            return "client address unknown"
        channel = self._channels.get(member.client)
        if channel is None:
            channel = self._channels[member.client] = grpc.aio.insecure_channel(member.client)
        try:
            resp: cluster.StatusResponse = await cluster_grpc.ClusterStub(channel).Status(
                cluster.StatusRequest(), timeout=PEER_STATUS_TIMEOUT_S
            )
            return resp
        except grpc.aio.AioRpcError as e:
            return f"{e.code().name.lower()}: {e.details()}"

    async def close(self) -> None:
        await asyncio.gather(*(ch.close(None) for ch in self._channels.values()))
        self._channels.clear()
