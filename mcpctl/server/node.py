"""One mcp-config member: the KV operations the gRPC servicers call.

The node validates requests, turns writes into ``InternalRequest``s for the
proposer, proves freshness for linearizable reads (a fence through Raft),
reads the store, and fills the response header. It knows nothing of gRPC.
Its ids come from ``identity``, the cluster view is merged by
``cluster_status``, and every applied write gets its ``audit`` line.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from mcpctl import limits, validate
from mcpctl._proto.mcp.v1 import cluster_pb2 as cluster
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl.errors import (
    STOPPING,
    FailedPrecondition,
    McpError,
    NotFound,
    OutcomeUnknown,
    Unavailable,
)
from mcpctl.raft.node import RaftNode
from mcpctl.raft.status import ProposeError, Role
from mcpctl.server import auth
from mcpctl.server.audit import audit_applied
from mcpctl.server.cluster_status import UNKNOWN, combine_status
from mcpctl.server.identity import Identity
from mcpctl.server.peers import PEER_STATUS_TIMEOUT_S, MemberInfo, Peers
from mcpctl.server.proposer import Proposer
from mcpctl.state import Applied, Store
from mcpctl.state.records import framed

T = TypeVar("T")


# A voter counts as reachable for membership checks when it answered the
# leader within this long (or the election timeout, if longer).
MEMBER_FRESH_S = 3.0
# Backups stream in chunks of this size.
SNAPSHOT_CHUNK_BYTES = 1024 * 1024
# On removal, how long the leader waits for the member to apply its tombstone
# (so it learns it was removed and stops) before taking it out of Raft, and how
# often it asks the member meanwhile (each ask bounded by PEER_STATUS_TIMEOUT_S).
TOMBSTONE_WAIT_S = 5.0
TOMBSTONE_POLL_S = 0.02


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
        # One membership change at a time (PySyncObj 0.3.17 does not enforce
        # it: its "change in flight" index is never set). A change whose
        # outcome is unknown counts as in flight until the commit index passes
        # the log index it could be at.
        self._membership_lock = asyncio.Lock()
        self._membership_pending_index = 0
        self.raft = raft_node
        self.proposer = proposer
        self.value_bytes_max = value_bytes_max
        # The last header built, its (revision, term) and its bytes as field 1 of
        # an answer: reads between two writes share it (``header`` hands out
        # copies). One tuple, swapped whole.
        self._header_cache: tuple[tuple[int, int], kv.ResponseHeader, bytes] = (
            (-1, -1),
            kv.ResponseHeader(),
            b"",
        )

    # -- helpers -----------------------------------------------------------
    def read(self, fn: Callable[[Store], T]) -> T:
        result: T = self.raft.consumer.read(fn)
        return result

    def check_restored(self) -> None:
        """Reads wait until this member has applied what it had before it started
        (``RaftStatus.restored``): never a revision older than one it served."""
        if not self.raft.status.restored:
            raise Unavailable(
                "this member is still restoring its data after a start; retry another member"
            )

    def header(self, revision: int | None = None) -> kv.ResponseHeader:
        """A new header for an answer at ``revision`` (default: the store's)."""
        out = kv.ResponseHeader()
        out.CopyFrom(self._header_at(revision))
        return out

    def _header_at(self, revision: int | None) -> kv.ResponseHeader:
        """The shared header at ``revision``: copy it into an answer, never change it."""
        if revision is None:
            revision = self.read(lambda s: s.revision)
        return self._headers(revision)[1]

    def _headers(self, revision: int) -> tuple[Any, kv.ResponseHeader, bytes]:
        key = (revision, self.raft.status.term)
        cached = self._header_cache
        if cached[0] != key:
            header = kv.ResponseHeader(
                cluster_id=self.identity.cluster_id,
                member_id=self.identity.member_id,
                member_name=self.identity.member_name,
                revision=key[0],
                raft_term=key[1],
            )
            cached = self._header_cache = (key, header, framed(b"\x0a", header.SerializeToString()))
        return cached

    async def write(self, request: raft.InternalRequest, timeout_s: float) -> Applied:
        """Replicate one write as the caller (time, identity), audit it; an error
        the store answered is raised."""
        request.ts_ms = int(time.time() * 1000)
        request.identity = auth.current_identity.get().name
        applied = await self.proposer.write(request, timeout_s)
        if isinstance(applied.result, McpError):
            raise applied.result
        audit_applied(request, applied)
        return applied

    # -- KV ----------------------------------------------------------------
    async def range(self, req: kv.RangeRequest, timeout_s: float) -> kv.RangeResponse:
        return kv.RangeResponse.FromString(await self.range_wire(req, timeout_s))

    async def range_wire(self, req: kv.RangeRequest, timeout_s: float) -> bytes:
        """``range``'s answer as the bytes of a ``RangeResponse``, sent as they are:
        the store's records and the shared header's bytes, never parsed to be
        encoded again."""
        validate.check_range(req)
        self.check_restored()
        if not req.serializable:
            await self.proposer.fence(timeout_s)
        body: bytes
        revision: int
        body, revision = self.raft.consumer.read(
            lambda store: (store.range_wire(req, limits.RANGE_RESPONSE_BYTES_MAX), store.revision)
        )
        return self._headers(revision)[2] + body

    async def put(self, req: kv.PutRequest, timeout_s: float) -> kv.PutResponse:
        validate.check_put(req, self.value_bytes_max)
        applied = await self.write(raft.InternalRequest(put=req), timeout_s)
        resp = _expect(applied, kv.PutResponse)
        resp.header.CopyFrom(self._header_at(applied.revision))
        return resp

    async def delete_range(
        self, req: kv.DeleteRangeRequest, timeout_s: float
    ) -> kv.DeleteRangeResponse:
        validate.check_delete(req)
        applied = await self.write(raft.InternalRequest(delete_range=req), timeout_s)
        resp = _expect(applied, kv.DeleteRangeResponse)
        resp.header.CopyFrom(self._header_at(applied.revision))
        return resp

    async def txn(self, req: kv.TxnRequest, timeout_s: float) -> kv.TxnResponse:
        validate.check_txn(req, self.value_bytes_max)
        applied = await self.write(raft.InternalRequest(txn=req), timeout_s)
        resp = _expect(applied, kv.TxnResponse)
        resp.header.CopyFrom(self._header_at(applied.revision))
        return resp

    async def history(self, req: kv.HistoryRequest, timeout_s: float) -> kv.HistoryResponse:
        validate.check_history(req)
        self.check_restored()
        await self.proposer.fence(timeout_s)
        limit = req.limit or validate.HISTORY_LIMIT_DEFAULT

        def run(store: Store) -> kv.HistoryResponse:
            entries, more = store.changes(req.key, req.prefix, limit)
            return kv.HistoryResponse(
                header=self._header_at(store.revision),
                entries=entries,
                compact_revision=store.compact_revision,
                more=more,
            )

        return self.read(run)

    async def compact(self, req: kv.CompactionRequest, timeout_s: float) -> kv.CompactionResponse:
        validate.check_compaction(req)
        applied = await self.write(raft.InternalRequest(compaction=req), timeout_s)
        resp = _expect(applied, kv.CompactionResponse)
        resp.header.CopyFrom(self._header_at(applied.revision))
        return resp

    # -- Cluster -------------------------------------------------------------
    def status(self) -> cluster.StatusResponse:
        st = self.raft.status

        def run(store: Store) -> tuple[int, int, int]:
            return store.revision, store.compact_revision, len(store)

        revision, compact_revision, keys = self.read(run)
        me = self.peers.by_raft(self.raft.settings.self_address)
        return cluster.StatusResponse(
            header=self._header_at(revision),
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
                    match_index=_known(p.match_index),
                    entries_behind=_known(p.entries_behind),
                    lag_ms=_ms(p.lag_s) if p.lag_s is not None else UNKNOWN,
                    last_contact_ms=_ms(p.contact_age_s),
                    connected=p.connected,
                )
                for p in st.peers
            ],
            raft_address=self.raft.settings.self_address,
            client_address=me.client,
            restored=st.restored,
        )

    async def cluster_status(self) -> cluster.ClusterStatusResponse:
        """Every voter's health: its own Status plus the leader's view of it."""
        members = self.member_infos()
        me = self.identity.member_name

        async def ask(m: MemberInfo) -> cluster.StatusResponse | str:
            return self.status() if m.name == me else await self.peers.status(m)

        answers = dict(zip([m.name for m in members], await _gather(ask, members), strict=True))
        return combine_status(self.header(), members, answers)

    async def left_out(self) -> bool:
        """Whether a leader with quorum contact lists the voters without this
        member (asked of every other member known; no answer: False)."""
        me = self.raft.settings.self_address
        others = [m for m in self.peers.known() if m.raft != me]
        return any(
            isinstance(answer, cluster.StatusResponse)
            and answer.role == "leader"
            and answer.has_quorum
            and all(p.raft_address != me for p in answer.peers)
            for answer in await _gather(self.peers.status, others)
        )

    def member_infos(self) -> list[MemberInfo]:
        """The current voters (Raft's view), with names and client addresses."""
        return [self.peers.by_raft(a) for a in self.raft.status.members]

    def member_list(self) -> cluster.MemberListResponse:
        return cluster.MemberListResponse(header=self.header(), members=self._members_pb())

    def _members_pb(self) -> list[cluster.Member]:
        return [
            cluster.Member(name=m.name, raft_address=m.raft, client_address=m.client)
            for m in self.member_infos()
        ]

    # -- backup ------------------------------------------------------------------
    async def snapshot(self, timeout_s: float) -> AsyncIterator[cluster.SnapshotChunk]:
        """The whole store at one revision, after a linearizable fence, in chunks."""
        self.check_restored()
        await self.proposer.fence(timeout_s)

        def take(store: Store) -> tuple[bytes, int]:
            return store.to_bytes(), store.revision

        data, revision = self.read(take)
        digest = hashlib.sha256(data).hexdigest()
        header = self.header(revision)
        total = len(data)
        for offset in range(0, max(total, 1), SNAPSHOT_CHUNK_BYTES):
            chunk = data[offset : offset + SNAPSHOT_CHUNK_BYTES]
            last = offset + SNAPSHOT_CHUNK_BYTES >= total
            yield cluster.SnapshotChunk(
                header=header,
                revision=revision,
                total_bytes=total,
                data=chunk,
                sha256=digest if last else "",
            )

    # -- membership (runs on the leader; other members forward) ---------------
    def _reachable(self, excluding: str | None = None) -> int:
        """Voters the leader heard from within an election timeout (itself included)."""
        st = self.raft.status
        fresh_s = max(MEMBER_FRESH_S, self.raft.settings.election_timeout_max_s)
        me = self.raft.settings.self_address
        count = 0 if me == excluding else 1
        for p in st.peers:
            if p.address != excluding and p.connected and p.contact_age_s <= fresh_s:
                count += 1
        return count

    async def _leader_or_forward(
        self, method: str, request: Any, timeout_s: float, forwarded: bool
    ) -> Any | None:
        """None when this member leads; else the leader's answer to the forwarded call."""
        st = self.raft.status
        if st.role == Role.LEADER:
            return None
        if forwarded or st.leader is None:
            raise Unavailable("no leader to handle the membership change; retry")
        leader = self.peers.by_raft(st.leader)
        if not leader.client:
            raise Unavailable("the leader's client address is unknown; send this to the leader")
        return await self.peers.forward(leader, method, request, timeout_s)

    async def _change(self, add: bool, address: str, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[ProposeError] = loop.create_future()

        def settle(err: ProposeError) -> None:
            if not done.done():
                done.set_result(err)

        def on_result(err: ProposeError) -> None:  # tick thread (or inline)
            loop.call_soon_threadsafe(settle, err)

        self.raft.change_membership(add, address, on_result)
        try:
            err = await asyncio.wait_for(done, timeout_s)
        except TimeoutError:
            self._membership_pending_index = self.raft.status.last_log_index
            raise OutcomeUnknown(
                "the membership change did not commit in time; check `mcpctl members`"
            ) from None
        if err == ProposeError.REQUEST_DENIED:
            raise FailedPrecondition(
                "another membership change is in progress (one at a time); retry when it is done"
            )
        if err != ProposeError.SUCCESS:
            raise OutcomeUnknown(f"membership change failed ({err.name.lower()}); check members")

    def _one_change_at_a_time(self) -> None:
        if (
            self._membership_lock.locked()
            or self.raft.status.commit_index < self._membership_pending_index
        ):
            raise FailedPrecondition(
                "another membership change is in progress (one at a time); "
                "retry when it has committed"
            )

    async def member_add(
        self, req: cluster.MemberAddRequest, timeout_s: float, *, forwarded: bool = False
    ) -> cluster.MemberAddResponse:
        validate.check_member(req.name, req.raft_address, req.client_address)
        answer = await self._leader_or_forward("MemberAdd", req, timeout_s, forwarded)
        if answer is not None:
            return answer  # type: ignore[no-any-return]
        self._one_change_at_a_time()
        async with self._membership_lock:
            return await self._member_add(req, timeout_s)

    async def _member_add(
        self, req: cluster.MemberAddRequest, timeout_s: float
    ) -> cluster.MemberAddResponse:
        members = self.member_infos()
        if any(m.raft == req.raft_address for m in members):
            raise FailedPrecondition(f"{req.raft_address} is already a member")
        if any(m.name == req.name for m in members):
            raise FailedPrecondition(f"a member named {req.name!r} already exists")
        size = len(members) + 1
        reachable = self._reachable()
        if reachable <= size // 2:
            raise FailedPrecondition(
                f"refused: with {req.name} added (not running yet) only {reachable} of {size} "
                "members would be reachable, below quorum; bring members back first"
            )
        record = raft.MemberRecord(
            name=req.name, raft_address=req.raft_address, client_address=req.client_address
        )
        await self.write(raft.InternalRequest(member=record), timeout_s)
        await self._change(True, req.raft_address, timeout_s)
        return cluster.MemberAddResponse(header=self.header(), members=self._members_pb())

    async def _wait_tombstone_applied(self, target: MemberInfo, timeout_s: float) -> None:
        """Wait (bounded) until ``target`` has applied the log up to now, its
        tombstone included. Once the removal is appended the leader sends it
        nothing more, so a member that had the tombstone's entry but not yet the
        commit index covering it would never learn it was removed and would run
        on as a candidate. Only the member itself can say it has applied it:
        ask it. A member that is down cannot learn anyway, and one that answers
        "member stopping" is going away: go on. One that is up but behind:
        refuse, the caller retries."""
        try:
            wanted = await self.raft.last_log_index(timeout_s)
        except TimeoutError:
            raise Unavailable("the Raft thread did not answer; member not removed") from None
        deadline = time.monotonic() + timeout_s
        while True:
            peer = next((p for p in self.raft.status.peers if p.address == target.raft), None)
            if peer is None or not peer.connected:
                return
            left_s = deadline - time.monotonic()
            answer = await self.peers.status(target, max(0.01, min(left_s, PEER_STATUS_TIMEOUT_S)))
            if isinstance(answer, str):
                if answer.endswith(STOPPING):
                    return
            elif answer.applied_index >= wanted:
                return
            if time.monotonic() >= deadline:
                raise Unavailable(
                    "the member has not applied its removal notice yet and was not removed; "
                    "retry (it stops serving once it has)"
                )
            await asyncio.sleep(TOMBSTONE_POLL_S)

    async def member_remove(
        self, req: cluster.MemberRemoveRequest, timeout_s: float, *, forwarded: bool = False
    ) -> cluster.MemberRemoveResponse:
        answer = await self._leader_or_forward("MemberRemove", req, timeout_s, forwarded)
        if answer is not None:
            return answer  # type: ignore[no-any-return]
        self._one_change_at_a_time()
        async with self._membership_lock:
            return await self._member_remove(req, timeout_s)

    async def _member_remove(
        self, req: cluster.MemberRemoveRequest, timeout_s: float
    ) -> cluster.MemberRemoveResponse:
        members = self.member_infos()
        target = next((m for m in members if m.name == req.name), None)
        if target is None:
            raise NotFound(f"no member named {req.name!r}")
        if len(members) == 1:
            raise FailedPrecondition("cannot remove the last member")
        size = len(members) - 1
        reachable = self._reachable(excluding=target.raft)
        if reachable <= size // 2:
            raise FailedPrecondition(
                f"refused: without {req.name} only {reachable} of {size} members would be "
                "reachable, below quorum"
            )
        me = self.raft.settings.self_address
        if target.raft == me:
            # The leader cannot remove itself: hand over, then ask the new leader.
            if not await asyncio.to_thread(self.raft.step_down, min(timeout_s, 3.0)):
                raise Unavailable("could not hand leadership over before leaving; retry")
            handed: cluster.MemberRemoveResponse | None = await self._leader_or_forward(
                "MemberRemove", req, timeout_s, False
            )
            if handed is None:
                raise Unavailable("still the leader after handing over; retry")
            return handed
        # Tombstone first: the member learns it is leaving while it still
        # receives the log, and stops serving.
        tombstone = raft.MemberRecord(
            name=target.name,
            raft_address=target.raft,
            client_address=target.client,
            removed=True,
        )
        await self.write(raft.InternalRequest(member=tombstone), timeout_s)
        await self._wait_tombstone_applied(target, min(timeout_s / 2, TOMBSTONE_WAIT_S))
        await self._change(False, target.raft, timeout_s)
        return cluster.MemberRemoveResponse(header=self.header(), members=self._members_pb())


async def _gather(
    fn: Callable[[MemberInfo], Any], members: list[MemberInfo]
) -> list[cluster.StatusResponse | str]:
    return list(await asyncio.gather(*(fn(m) for m in members)))


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _known(value: int | None) -> int:
    return UNKNOWN if value is None else value


def _expect(applied: Applied, cls: type[T]) -> T:
    result: Any = applied.result
    assert isinstance(result, cls), f"apply returned {type(result).__name__}"
    return result
