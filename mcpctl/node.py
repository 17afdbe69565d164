"""One mcp-config member: the KV operations the gRPC servicers call.

The node validates requests, turns writes into ``InternalRequest``s for the
proposer, proves freshness for linearizable reads (a fence through Raft),
reads the store, and fills the response header. It knows nothing of gRPC.
"""

from __future__ import annotations

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
        member_names: dict[str, str] | None = None,
        value_bytes_max: int = limits.VALUE_BYTES_MAX_DEFAULT,
    ) -> None:
        self.identity = identity
        # Raft address -> member name, to show names instead of addresses.
        self.member_names = dict(member_names or {})
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
        leader = st.leader or ""
        return cluster.StatusResponse(
            header=self.header(revision),
            member_name=self.identity.member_name,
            role=st.role.name.lower(),
            term=st.term,
            leader=self.member_names.get(leader, leader),
            commit_index=st.commit_index,
            applied_index=st.applied_index,
            has_quorum=st.has_quorum,
            ready=st.ready,
            revision=revision,
            compact_revision=compact_revision,
            keys=keys,
        )


def _expect(applied: Applied, cls: type[T]) -> T:
    result: Any = applied.result
    assert isinstance(result, cls), f"apply returned {type(result).__name__}"
    return result
