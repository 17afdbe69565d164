"""One mcp-config member: the KV operations the gRPC servicers call.

The node validates requests, turns writes into ``InternalRequest``s for the
proposer, proves freshness for linearizable reads (a fence through Raft),
reads the store, and fills the response header. It knows nothing of gRPC.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from mcpctl import limits, validate
from mcpctl._proto.mcp.v1 import cluster_pb2 as cluster
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl.errors import McpError
from mcpctl.peers import MemberInfo, Peers
from mcpctl.proposer import Proposer
from mcpctl.replication import RaftNode
from mcpctl.state import Applied, Store

T = TypeVar("T")


def stable_id(*parts: str) -> int:
    """A 64-bit id from text (cluster and member ids in headers)."""
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


@dataclass(frozen=True, slots=True)
class Identity:
    cluster_name: str
    member_name: str
    cluster_id: int
    member_id: int

    @classmethod
    def of(cls, cluster_name: str, member_name: str, members: list[str]) -> Identity:
        return cls(
            cluster_name,
            member_name,
            stable_id(cluster_name, *sorted(members)),
            stable_id(cluster_name, member_name),
        )


class Node:
    def __init__(
        self,
        identity: Identity,
        raft_node: RaftNode,
        proposer: Proposer,
        *,
        peers: Peers | None = None,
        value_bytes_max: int = limits.VALUE_BYTES_MAX_DEFAULT,
    ) -> None:
        self.identity = identity
        self.peers = peers or Peers([])
        self.raft = raft_node
        self.proposer = proposer
        self.value_bytes_max = value_bytes_max

    # -- helpers -----------------------------------------------------------
    def read(self, fn: Callable[[Store], T]) -> T:
        result: T = self.raft.consumer.read(fn)
        return result

    def header(self, revision: int | None = None) -> kv.ResponseHeader:
        if revision is None:
            revision = self.read(lambda s: s.revision)
        return kv.ResponseHeader(
            cluster_id=self.identity.cluster_id,
            member_id=self.identity.member_id,
            member_name=self.identity.member_name,
            revision=revision,
            raft_term=self.raft.status.term,
        )

    async def _write(self, request: raft.InternalRequest, timeout_s: float) -> Applied:
        request.ts_ms = int(time.time() * 1000)
        applied = await self.proposer.write(request, timeout_s)
        if isinstance(applied.result, McpError):
            raise applied.result
        return applied

    # -- KV ----------------------------------------------------------------
    async def range(self, req: kv.RangeRequest, timeout_s: float) -> kv.RangeResponse:
        validate.check_range(req)
        if not req.serializable:
            await self.proposer.fence(timeout_s)

        def run(store: Store) -> tuple[kv.RangeResponse, int]:
            return store.range(req, limits.RANGE_RESPONSE_BYTES_MAX), store.revision

        resp, revision = self.read(run)
        resp.header.CopyFrom(self.header(revision))
        return resp

    async def put(self, req: kv.PutRequest, timeout_s: float) -> kv.PutResponse:
        validate.check_put(req, self.value_bytes_max)
        applied = await self._write(raft.InternalRequest(put=req), timeout_s)
        resp = _expect(applied, kv.PutResponse)
        resp.header.CopyFrom(self.header(applied.revision))
        return resp

    async def delete_range(
        self, req: kv.DeleteRangeRequest, timeout_s: float
    ) -> kv.DeleteRangeResponse:
        validate.check_delete(req)
        applied = await self._write(raft.InternalRequest(delete_range=req), timeout_s)
        resp = _expect(applied, kv.DeleteRangeResponse)
        resp.header.CopyFrom(self.header(applied.revision))
        return resp

    async def txn(self, req: kv.TxnRequest, timeout_s: float) -> kv.TxnResponse:
        validate.check_txn(req, self.value_bytes_max)
        applied = await self._write(raft.InternalRequest(txn=req), timeout_s)
        resp = _expect(applied, kv.TxnResponse)
        resp.header.CopyFrom(self.header(applied.revision))
        return resp

    async def compact(self, req: kv.CompactionRequest, timeout_s: float) -> kv.CompactionResponse:
        validate.check_compaction(req)
        applied = await self._write(raft.InternalRequest(compaction=req), timeout_s)
        resp = _expect(applied, kv.CompactionResponse)
        resp.header.CopyFrom(self.header(applied.revision))
        return resp

    # -- Cluster -------------------------------------------------------------
    def status(self) -> cluster.StatusResponse:
        st = self.raft.status

        def run(store: Store) -> tuple[int, int, int]:
            return store.revision, store.compact_revision, len(store)

        revision, compact_revision, keys = self.read(run)
        me = self.peers.by_raft(self.raft.settings.self_address)
        return cluster.StatusResponse(
            header=self.header(revision),
            member_name=self.identity.member_name,
            role=st.role.name.lower(),
            term=st.term,
            leader=self.peers.name_of(st.leader) if st.leader else "",
            commit_index=st.commit_index,
            applied_index=st.applied_index,
            has_quorum=st.has_quorum,
            ready=st.ready,
            revision=revision,
            compact_revision=compact_revision,
            keys=keys,
            last_log_index=st.last_log_index,
            apply_lag_ms=_ms(st.apply_lag_s),
            last_contact_ms=_ms(st.leader_contact_age_s),
            peers=[
                cluster.PeerProgress(
                    member_name=self.peers.name_of(p.address),
                    raft_address=p.address,
                    match_index=p.match_index,
                    entries_behind=p.entries_behind,
                    lag_ms=_ms(p.lag_s),
                    last_contact_ms=_ms(p.contact_age_s),
                    connected=p.connected,
                )
                for p in st.peers
            ],
            raft_address=self.raft.settings.self_address,
            client_address=me.client,
        )

    async def cluster_status(self) -> cluster.ClusterStatusResponse:
        """Every voter's health: its own Status plus the leader's view of it."""
        members = self.member_infos()
        me = self.identity.member_name

        async def ask(m: MemberInfo) -> cluster.StatusResponse | str:
            return self.status() if m.name == me else await self.peers.status(m)

        answers = dict(zip([m.name for m in members], await _gather(ask, members), strict=True))
        return combine_status(self.header(), members, answers)

    def member_infos(self) -> list[MemberInfo]:
        """The current voters (Raft's view), with names and client addresses."""
        return [self.peers.by_raft(a) for a in self.raft.status.members]

    def member_list(self) -> cluster.MemberListResponse:
        return cluster.MemberListResponse(
            header=self.header(),
            members=[
                cluster.Member(name=m.name, raft_address=m.raft, client_address=m.client)
                for m in self.member_infos()
            ],
        )


async def _gather(
    fn: Callable[[MemberInfo], Any], members: list[MemberInfo]
) -> list[cluster.StatusResponse | str]:
    return list(await asyncio.gather(*(fn(m) for m in members)))


def combine_status(
    header: kv.ResponseHeader,
    members: list[MemberInfo],
    answers: dict[str, cluster.StatusResponse | str],
) -> cluster.ClusterStatusResponse:
    """Merge each member's own Status with the leader's view of replication.

    The leader is the reachable member that says it leads, at the highest
    term. Without one, what only a leader knows (entries behind, lag, last
    contact) is -1 (unknown).
    """
    leaders = [a for a in answers.values() if not isinstance(a, str) and a.role == "leader"]
    leader = max(leaders, key=lambda a: a.term) if leaders else None
    progress = {p.member_name: p for p in leader.peers} if leader else {}
    out = cluster.ClusterStatusResponse(header=header, leader=leader.member_name if leader else "")
    for m in members:
        row = out.members.add(member_name=m.name, endpoint=m.client, raft_address=m.raft)
        answer = answers.get(m.name, "no answer")
        backlog = 0
        if isinstance(answer, str):
            row.reachable = False
            row.error = answer
        else:
            row.reachable = True
            row.role = answer.role
            row.term = answer.term
            row.commit_index = answer.commit_index
            row.applied_index = answer.applied_index
            row.revision = answer.revision
            backlog = max(0, answer.commit_index - answer.applied_index)
        if leader is None:
            row.entries_behind = row.lag_ms = row.last_contact_ms = -1
        elif m.name == leader.member_name:
            row.entries_behind = backlog
            row.lag_ms = leader.apply_lag_ms
            row.last_contact_ms = 0
        elif m.name in progress:
            p = progress[m.name]
            row.entries_behind = p.entries_behind + backlog
            own_lag = answer.apply_lag_ms if not isinstance(answer, str) else 0
            row.lag_ms = max(p.lag_ms, own_lag)
            row.last_contact_ms = p.last_contact_ms
        else:
            row.entries_behind = row.lag_ms = row.last_contact_ms = -1
    return out


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _expect(applied: Applied, cls: type[T]) -> T:
    result: Any = applied.result
    assert isinstance(result, cls), f"apply returned {type(result).__name__}"
    return result
