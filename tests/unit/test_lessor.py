"""The leader's lease clock (mcpctl/server/lessor.py, lease_clock.py) on a fake clock.

No threads, no sockets, no sleeps: ``now`` is an argument of the pure
``Lessor``; the ``LeaseClock`` driver gets a fake Raft status, a fence the
test completes by hand and a fake write that records every proposal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import pytest

from mcpctl import limits
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl.errors import OutcomeUnknown
from mcpctl.raft.status import RaftStatus, Role
from mcpctl.server.lease_clock import LeaseClock
from mcpctl.server.lessor import Lessor, LessorTimings, lease_grace_s, lease_ttl_min_s
from mcpctl.state import Applied, Store

T = TypeVar("T")
GRACE_S = 4.0
T0 = 1000.0


def lessor(**kw: float) -> Lessor:
    return Lessor(LessorTimings(grace_s=GRACE_S, **kw))  # type: ignore[arg-type]


def test_grace_and_minimum_ttl_follow_the_raft_timeouts() -> None:
    """The grace covers a cut-off leader's fallback plus the election after it."""
    assert lease_grace_s(2.0, 1.0) >= 2.0 + 1.0
    assert lease_grace_s(2.0, 1.0) == 2.0 + 1.0 + limits.LEASE_GRACE_MARGIN_S
    assert lease_ttl_min_s(1.0) == 2 and lease_ttl_min_s(1.4) == 3


def test_not_running_until_promoted_and_dropped_on_demotion() -> None:
    clock = lessor()
    assert not clock.running
    clock.granted(1, 10, T0)  # a follower's clock learns nothing
    assert clock.take_expired(T0 + 100) == [] and clock.take_checkpoint(T0 + 100) == []
    clock.promote(3, T0, [(1, 10, 10_000)])
    assert clock.running and clock.term == 3 and len(clock) == 1
    clock.demote()
    assert not clock.running and len(clock) == 0
    assert clock.take_expired(T0 + 100) == []


def test_promotion_gives_checkpointed_remaining_plus_grace() -> None:
    """No lease expires because of a leader change: remaining + grace from promotion."""
    clock = lessor()
    clock.promote(2, T0, [(1, 10, 3_000), (2, 10, 0)])
    assert clock.remaining_s(1, T0) == pytest.approx(3.0 + GRACE_S)
    assert clock.remaining_s(2, T0) == pytest.approx(GRACE_S)
    assert clock.take_expired(T0 + GRACE_S - 0.01) == []
    assert clock.take_expired(T0 + GRACE_S) == [2]
    assert clock.take_expired(T0 + 3 + GRACE_S) == [1]


def test_keepalive_renews_to_the_full_ttl_without_grace() -> None:
    clock = lessor()
    clock.promote(2, T0, [(1, 10, 1_000)])
    assert clock.renew(1, 10, T0 + 2) == 10
    assert clock.remaining_s(1, T0 + 2) == pytest.approx(10.0)
    assert clock.take_expired(T0 + 11.9) == []
    assert clock.take_expired(T0 + 12) == [1]
    # Expiring: its expiry is proposed, a keepalive no longer saves it...
    assert clock.renew(1, 10, T0 + 12) is None
    assert clock.remaining_s(1, T0 + 12) == 0.0
    # ...unless the expiry did not commit: then it is due again, and renewable.
    clock.expire_failed([1])
    assert clock.renew(1, 10, T0 + 13) == 10
    assert clock.take_expired(T0 + 22.9) == []


def test_grant_starts_at_the_full_ttl_and_end_forgets() -> None:
    clock = lessor()
    clock.promote(2, T0, [])
    clock.granted(5, 3, T0)
    assert clock.remaining_s(5, T0) == pytest.approx(3.0)
    clock.ended([5])
    assert clock.remaining_s(5, T0) is None
    assert clock.take_expired(T0 + 10) == []


def test_expiries_are_batched_and_rate_limited() -> None:
    """An expiry storm (etcd #8097): at most LEASE_EXPIRE_BATCH_MAX per command and
    LEASE_EXPIRES_PER_S on average, earliest deadline first."""
    clock = lessor()
    n = 300
    clock.promote(2, 0.0, [(i, 10, 1_000 + i) for i in range(1, n + 1)])
    late = 1024.0  # and steps of 1/8 s: exact in binary floating point
    first = clock.take_expired(late)
    assert first == list(range(1, limits.LEASE_EXPIRE_BATCH_MAX + 1))  # earliest first
    assert clock.take_expired(late) == []  # the bucket is empty
    per_tick = int(limits.LEASE_EXPIRES_PER_S * 0.125)
    assert len(clock.take_expired(late + 0.125)) == min(per_tick, limits.LEASE_EXPIRE_BATCH_MAX)
    taken = len(first) + min(per_tick, limits.LEASE_EXPIRE_BATCH_MAX)
    t = late + 0.125
    while taken < n:
        t += 0.125
        got = clock.take_expired(t)
        assert 0 < len(got) <= limits.LEASE_EXPIRE_BATCH_MAX
        taken += len(got)
    # Spread out: n expiries took about n / rate seconds, not one burst.
    assert t - late >= (n - limits.LEASE_EXPIRE_BATCH_MAX) / limits.LEASE_EXPIRES_PER_S - 0.125


def test_checkpoint_cadence_batch_and_no_grace_in_the_record() -> None:
    clock = lessor(checkpoint_batch_max=2)
    clock.promote(2, T0, [(1, 60, 60_000), (2, 60, 30_000), (3, 60, 10_000)])
    interval = limits.LEASE_CHECKPOINT_INTERVAL_S
    assert clock.take_checkpoint(T0) == []
    assert clock.take_checkpoint(T0 + interval - 0.01) == []
    at = T0 + interval
    cps = clock.take_checkpoint(at)
    # What is left of the checkpointed TTL, never the grace on top of it.
    drift_ms = round(interval * 1000)
    assert len(cps) == 2
    assert all(ms == rem - drift_ms for (i, ms), rem in zip(cps, (60_000, 30_000), strict=False))
    assert clock.take_checkpoint(at) == []  # one per interval
    clock.checkpointed(cps)
    later = at + interval
    # Largest drift first: lease 3 was never recorded.
    assert clock.take_checkpoint(later)[0] == (3, 10_000 - 2 * drift_ms)
    clock.checkpointed([(3, 10_000 - 2 * drift_ms)])
    clock.renew(1, 60, later + interval)  # renewed: drifts upward, recorded too
    assert (1, 60_000) in clock.take_checkpoint(later + interval)


def test_dead_owner_expires_despite_successive_leader_changes() -> None:
    """etcd #9395 / #17132: with a new leader every few seconds, a lease whose owner
    died must still expire; each leader starts from the last checkpoint (the
    store's), checkpoints what is left, and the grace is never checkpointed."""
    store: dict[int, int] = {1: 20_000}  # the replicated checkpoint of lease 1
    now, term = T0, 1
    expired_at = None
    every_s = 6.0  # longer than the grace: a change every grace or faster stops every clock
    for _ in range(10):  # ten leader changes
        clock = lessor()
        term += 1
        clock.promote(term, now, [(1, 20, store[1])])
        for step in range(int(every_s * 10)):
            t = now + step * 0.1
            if clock.take_expired(t):
                expired_at = t
                break
            for lease_id, ms in clock.take_checkpoint(t):
                store[lease_id] = ms
        if expired_at is not None:
            break
        now += every_s
    assert expired_at is not None, "the lease outlived ten leader changes"
    # Without checkpoints it would never expire here; with them each change
    # loses at most one checkpoint interval, and the last leader adds the grace.
    changes = (expired_at - T0) // every_s
    assert expired_at - T0 <= 20 + changes * limits.LEASE_CHECKPOINT_INTERVAL_S + GRACE_S


# -- the driver ---------------------------------------------------------------------
@dataclass
class FakeNode:
    status: RaftStatus = field(default_factory=lambda: RaftStatus(role=Role.FOLLOWER, term=1))
    fences: list[asyncio.Future[None]] = field(default_factory=list)
    writes: list[raft.InternalRequest] = field(default_factory=list)
    store: Store = field(default_factory=Store)
    fail_writes: bool = False
    now: float = T0

    async def fence(self, timeout_s: float) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.fences.append(done)
        await done

    async def write(self, request: raft.InternalRequest, timeout_s: float) -> Applied:
        self.writes.append(request)
        if self.fail_writes:
            raise OutcomeUnknown("lost")
        return self.store.apply(request, entry_term=self.status.term)

    def seed(self) -> list[tuple[int, int, int]]:
        return [
            (i, self.store.lease_ttl_s(i) or 0, ms) for i, ms in self.store.leases_remaining_ms()
        ]


def driver(node: FakeNode) -> LeaseClock:
    return LeaseClock(
        lessor(),
        status=lambda: node.status,
        fence=node.fence,
        write=node.write,
        seed=node.seed,
        proposal_timeout_s=5.0,
        clock=lambda: node.now,
    )


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(scenario())  # type: ignore[arg-type]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def grant(node: FakeNode, lease_id: int, ttl_s: int) -> None:
    node.store.apply(raft.InternalRequest(lease_grant=kv.LeaseGrantRequest(id=lease_id, ttl=ttl_s)))


def test_clock_starts_only_after_the_terms_first_entry_is_applied() -> None:
    async def scenario() -> None:
        node = FakeNode()
        grant(node, 7, 10)
        clock = driver(node)
        clock.step()
        assert not node.fences  # a follower runs no clock
        node.status = RaftStatus(role=Role.LEADER, term=2)
        clock.step()
        await settle()
        assert len(node.fences) == 1 and not clock.serving(2)
        clock.step()  # one promotion at a time
        await settle()
        assert len(node.fences) == 1
        node.fences[0].set_result(None)  # the fence entry is applied in term 2
        await settle()
        assert clock.serving(2)
        assert clock.lessor.remaining_s(7, node.now) == pytest.approx(10 + GRACE_S)

    run(scenario)


def test_fence_in_a_term_that_has_passed_starts_nothing() -> None:
    async def scenario() -> None:
        node = FakeNode(status=RaftStatus(role=Role.LEADER, term=2))
        clock = driver(node)
        clock.step()
        await settle()
        node.status = RaftStatus(role=Role.FOLLOWER, term=3)
        node.fences[0].set_result(None)
        await settle()
        assert not clock.lessor.running

    run(scenario)


async def promoted(node: FakeNode, clock: LeaseClock) -> None:
    clock.step()
    await settle()
    node.fences[-1].set_result(None)
    await settle()
    assert clock.serving(node.status.term)


def test_expiry_and_checkpoint_carry_the_clocks_term_and_demotion_drops_it() -> None:
    async def scenario() -> None:
        node = FakeNode(status=RaftStatus(role=Role.LEADER, term=4))
        grant(node, 7, 10)
        grant(node, 8, 60)
        clock = driver(node)
        await promoted(node, clock)
        node.now += limits.LEASE_CHECKPOINT_INTERVAL_S
        clock.step()
        await settle()
        (cp,) = node.writes
        assert cp.lease_checkpoint.proposer_term == 4
        assert node.store.lease(8).remaining_ms == 60_000 - 2_000  # type: ignore[union-attr]
        node.now += 10 + GRACE_S
        clock.step()
        await settle()
        (expire,) = [w for w in node.writes if w.HasField("lease_expire")]
        assert list(expire.lease_expire.ids) == [7]
        assert expire.lease_expire.proposer_term == 4
        assert node.store.lease(7) is None and clock.stats.expired == 1
        # The term moves on: the clock is dropped at the next step, nothing proposed.
        node.status = RaftStatus(role=Role.LEADER, term=5)
        node.now += 1000
        count = len(node.writes)
        clock.step()
        assert not clock.serving(4) and len(node.writes) == count
        await settle()
        node.fences[-1].set_result(None)
        await settle()
        assert clock.serving(5)
        clock.step()
        await settle()
        # Lease 8 from its checkpoint in the new term, with grace: not yet due.
        recorded_s = node.store.lease(8).remaining_ms / 1000  # type: ignore[union-attr]
        assert recorded_s == 60 - 10 - GRACE_S - limits.LEASE_CHECKPOINT_INTERVAL_S
        assert clock.lessor.remaining_s(8, node.now) == pytest.approx(recorded_s + GRACE_S)

    run(scenario)


def test_a_stale_expiry_is_fenced_and_a_lost_one_retried() -> None:
    async def scenario() -> None:
        node = FakeNode(status=RaftStatus(role=Role.LEADER, term=4))
        grant(node, 7, 10)
        clock = driver(node)
        await promoted(node, clock)
        node.now += 10 + GRACE_S
        node.fail_writes = True
        clock.step()
        await settle()
        assert list(node.writes[-1].lease_expire.ids) == [7]
        assert node.store.lease(7) is not None  # lost: still there, due again
        node.fail_writes = False
        # The entry lands in a later term than the clock's (a deposed leader's
        # proposal appended by the next leader): the store drops it.
        node.status = RaftStatus(role=Role.LEADER, term=4)
        store_term = 5

        async def write_in_term_5(request: raft.InternalRequest, timeout_s: float) -> Applied:
            node.writes.append(request)
            return node.store.apply(request, entry_term=store_term)

        clock._write = write_in_term_5
        node.now += 1
        clock.step()
        await settle()
        assert node.writes[-1].lease_expire.proposer_term == 4
        assert node.store.lease(7) is not None and clock.stats.fenced == 1

    run(scenario)


def test_applied_grants_and_ends_reach_the_clock() -> None:
    async def scenario() -> None:
        node = FakeNode(status=RaftStatus(role=Role.LEADER, term=2))
        clock = driver(node)
        clock.start()
        clock._task.cancel()  # type: ignore[union-attr]  # steps by hand
        await promoted(node, clock)
        grant_req = raft.InternalRequest(lease_grant=kv.LeaseGrantRequest(id=9, ttl=30))
        clock.on_applied([node.store.apply(grant_req)])
        await settle()
        assert clock.lessor.remaining_s(9, node.now) == pytest.approx(30.0)
        revoke = raft.InternalRequest(lease_revoke=kv.LeaseRevokeRequest(id=9))
        applied = node.store.apply(revoke)
        assert applied.leases_ended == (9,)
        clock.on_applied([applied])
        await settle()
        assert clock.lessor.remaining_s(9, node.now) is None
        clock.stop()

    run(scenario)


def test_a_pause_of_the_clocks_loop_is_not_counted_against_leases() -> None:
    """The loop stood still (SIGSTOP, starved of CPU): keepalives sent meanwhile are
    unread, so the pause does not count; a short lateness (within
    LEASE_CLOCK_PAUSE_S_MAX) does, and the lease still expires on time after it."""

    async def scenario() -> None:
        node = FakeNode(status=RaftStatus(role=Role.LEADER, term=2))
        grant(node, 7, 10)
        clock = driver(node)
        await promoted(node, clock)
        assert clock.lessor.renew(7, 10, clock.clock()) == 10
        clock.woke_late(limits.LEASE_CLOCK_PAUSE_S_MAX)  # within the margin: counted
        assert clock.stats.pauses == 0
        node.now += 8.0
        clock.woke_late(8.0)  # the loop stood still for 8 s
        assert clock.stats.pauses == 1 and clock.stats.paused_s == 8.0
        node.now += 9.0  # 17 s since the renewal, 9 s of them counted
        clock.step()
        await settle()
        assert not [w for w in node.writes if w.HasField("lease_expire")]
        assert clock.lessor.remaining_s(7, clock.clock()) == pytest.approx(1.0)
        node.now += 1.0
        clock.step()
        await settle()
        (expire,) = [w for w in node.writes if w.HasField("lease_expire")]
        assert list(expire.lease_expire.ids) == [7]

    run(scenario)
