"""The lease operations of one member, as the ``Lease`` servicer calls them (docs/leases.md).

- Grant and Revoke are Raft writes (any member; followers forward them like
  every write). Grant with id 0: this member picks a random id in
  1..2^63-1 and tries another on "lease already exists" (at most
  ``LEASE_ID_ATTEMPTS_MAX``); a TTL below ``ttl_min_s`` is raised to it.
  Revoke needs write permission on every key attached (etcd's rule).
- KeepAlive and TimeToLive are answered from the leader's clock (never the
  log). KeepAlive on a member whose clock is not running (a follower, or a
  leader before its term's first entry is applied): UNAVAILABLE, so the
  client moves to another member. TimeToLive on a follower is forwarded to
  the leader; with no leader, or before its clock runs: UNAVAILABLE, never a
  made-up number.
- Leases lists the live ids after a linearizable fence.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

from mcpctl import limits, validate
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import lease_pb2 as lease
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl.errors import (
    InvalidArgument,
    LeaseExists,
    LeaseNotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from mcpctl.raft.status import Role
from mcpctl.server import auth
from mcpctl.server.lease_clock import LeaseClock, LeaseStats
from mcpctl.server.lessor import Lessor
from mcpctl.server.node import Node

LEASE_NOT_FOUND = "lease not found"
_ID_MAX = 2**63 - 1


def random_lease_id() -> int:
    """A random id in 1..2^63-1 (etcd's ids are positive int64 too)."""
    return 1 + secrets.randbelow(_ID_MAX)


class Leases:
    def __init__(
        self,
        node: Node,
        clock: LeaseClock,
        *,
        ttl_min_s: int,
        new_id: Callable[[], int] = random_lease_id,
        keepalive_streams_max: int = limits.LEASE_KEEPALIVE_STREAMS_MAX,
    ) -> None:
        self._node = node
        self._clock = clock
        self.ttl_min_s = ttl_min_s
        self._new_id = new_id
        self._streams_max = keepalive_streams_max
        self.keepalive_streams = 0

    @property
    def stats(self) -> LeaseStats:
        return self._clock.stats

    def _lessor(self) -> Lessor:
        """The running clock of this member's current term, or UNAVAILABLE."""
        st = self._node.raft.status
        if st.role != Role.LEADER:
            raise Unavailable("not the leader: lease keepalives and TTLs are served by the leader")
        if not self._clock.serving(st.term):
            raise Unavailable("the leader's lease clock is not running yet (leader change); retry")
        return self._clock.lessor

    # -- writes ---------------------------------------------------------------------
    async def grant(self, req: kv.LeaseGrantRequest, timeout_s: float) -> kv.LeaseGrantResponse:
        validate.check_client_lease_grant(req)
        ttl = max(req.ttl, self.ttl_min_s)
        for _ in range(1 if req.id else limits.LEASE_ID_ATTEMPTS_MAX):
            grant = kv.LeaseGrantRequest(id=req.id or self._new_id(), ttl=ttl)
            try:
                applied = await self._node.write(raft.InternalRequest(lease_grant=grant), timeout_s)
            except LeaseExists:
                if req.id:
                    raise
                continue
            resp = applied.result
            assert isinstance(resp, kv.LeaseGrantResponse)
            resp.header.CopyFrom(self._node.header(applied.revision))
            return resp
        raise Unavailable(
            f"no free lease id after {limits.LEASE_ID_ATTEMPTS_MAX} tries (LEASE_ID_ATTEMPTS_MAX)"
        )

    async def revoke(self, req: kv.LeaseRevokeRequest, timeout_s: float) -> kv.LeaseRevokeResponse:
        validate.check_lease_revoke(req)
        info = self._node.read(lambda s: s.lease(req.id))
        if info is None:
            raise LeaseNotFound()
        _check_keys(info.keys, auth.Access.WRITE)
        applied = await self._node.write(raft.InternalRequest(lease_revoke=req), timeout_s)
        self._clock.stats.revoked += 1
        return kv.LeaseRevokeResponse(header=self._node.header(applied.revision))

    # -- the leader's clock ------------------------------------------------------------
    @contextmanager
    def keepalive_stream(self) -> Iterator[None]:
        """Hold one of ``LEASE_KEEPALIVE_STREAMS_MAX`` stream slots, or RESOURCE_EXHAUSTED."""
        if self.keepalive_streams >= self._streams_max:
            raise ResourceExhausted(
                f"{self._streams_max} keepalive streams are open on this member "
                "(LEASE_KEEPALIVE_STREAMS_MAX); send many leases on one stream"
            )
        self.keepalive_streams += 1
        try:
            yield
        finally:
            self.keepalive_streams -= 1

    def keepalive(self, req: lease.LeaseKeepAliveRequest) -> lease.LeaseKeepAliveResponse:
        """Renew on the leader's clock; unknown (any id): ttl 0, "lease not found".
        A request with ``ids`` is answered by one response with a renewal each."""
        if req.ids:
            if req.id or len(req.ids) > limits.LEASE_KEEPALIVE_BATCH_MAX:
                raise InvalidArgument(
                    "a batched keepalive has id 0 and at most "
                    f"{limits.LEASE_KEEPALIVE_BATCH_MAX} ids (LEASE_KEEPALIVE_BATCH_MAX)"
                )
            renewals = [
                lease.LeaseRenewal(id=i, ttl=ttl, error="" if ttl else LEASE_NOT_FOUND)
                for i, ttl in zip(req.ids, self._renew(req.ids), strict=True)
            ]
            return lease.LeaseKeepAliveResponse(header=self._node.header(), renewals=renewals)
        (ttl,) = self._renew([req.id])
        if not ttl:
            return lease.LeaseKeepAliveResponse(
                header=self._node.header(), id=req.id, ttl=0, error=LEASE_NOT_FOUND
            )
        return lease.LeaseKeepAliveResponse(header=self._node.header(), id=req.id, ttl=ttl)

    def _renew(self, ids: Sequence[int]) -> list[int]:
        """Each lease's TTL after renewing it, 0 for one that is gone (unknown,
        expired or expiring): one store read for all of them."""
        lessor = self._lessor()
        self._clock.stats.keepalives += len(ids)
        granted = self._node.read(lambda s: [s.lease_ttl_s(i) if i > 0 else None for i in ids])
        now = self._clock.clock()
        ttls = [
            (lessor.renew(i, ttl_s, now) or 0) if ttl_s is not None else 0
            for i, ttl_s in zip(ids, granted, strict=True)
        ]
        if 0 in ttls and not self._node.raft.leads_with_quorum_contact():
            # "lease not found" is final for a client; a leader cut off from the
            # majority cannot know a lease the new leader granted since.
            raise Unavailable(
                "this leader has not heard from a majority lately (it may be cut off); "
                "ask another member"
            )
        return ttls

    async def time_to_live(
        self, req: lease.LeaseTimeToLiveRequest, timeout_s: float, *, forwarded: bool
    ) -> lease.LeaseTimeToLiveResponse:
        st = self._node.raft.status
        if st.role == Role.LEADER or forwarded:
            resp = self._time_to_live(req)
        else:
            if st.leader is None:
                raise Unavailable("no leader to ask for the lease's TTL (leader change); retry")
            leader = self._node.peers.by_raft(st.leader)
            if not leader.client:
                raise Unavailable("the leader's client address is unknown; ask the leader")
            resp = await self._node.peers.forward(
                leader, "TimeToLive", req, timeout_s, service="Lease"
            )
        _check_keys(resp.keys, auth.Access.READ)
        return resp

    def _time_to_live(self, req: lease.LeaseTimeToLiveRequest) -> lease.LeaseTimeToLiveResponse:
        lessor = self._lessor()
        info = self._node.read(lambda s: s.lease(req.id)) if req.id > 0 else None
        if info is None:
            raise LeaseNotFound()
        remaining_s = lessor.remaining_s(req.id, self._clock.clock())
        if remaining_s is None:
            raise Unavailable("the lease was just granted; retry")
        return lease.LeaseTimeToLiveResponse(
            header=self._node.header(),
            id=req.id,
            ttl=int(remaining_s),
            granted_ttl=info.ttl_s,
            keys=list(info.keys) if req.keys else [],
        )

    # -- reads -----------------------------------------------------------------------
    async def leases(self, timeout_s: float) -> lease.LeaseLeasesResponse:
        await self._node.proposer.fence(timeout_s)
        ids, revision = self._node.read(lambda s: (s.leases(), s.revision))
        return lease.LeaseLeasesResponse(
            header=self._node.header(revision), leases=[lease.LeaseStatus(id=i) for i in ids]
        )


def _check_keys(keys: Iterable[bytes], access: auth.Access) -> None:
    """The caller may ``access`` every one of ``keys`` (etcd: a revoke needs write
    on every attached key; listing them needs read)."""
    identity = auth.current_identity.get()
    for key in keys:
        if not identity.role.allows(key, False, access):
            verb = "write" if access == auth.Access.WRITE else "read"
            raise PermissionDenied(
                f"{identity.name} may not {verb} {key.decode('utf-8', 'replace')!r}, "
                "which is attached to the lease"
            )
