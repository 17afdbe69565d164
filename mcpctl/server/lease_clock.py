"""Runs the leader's ``Lessor`` on the node's loop (docs/leases.md).

Every ``LEASE_TICK_S`` ``step`` looks at the Raft status:

- this member leads and its clock is not running: it waits for a read
  fence (a ReadIndex round) confirmed in the same term: its read index is at
  or above this term's first entry, so every entry of earlier terms is
  applied: then the clock starts (``Lessor.promote``) from the store's
  checkpoints;
- the clock runs but this member no longer leads, or the term moved on:
  the clock is dropped at once (``Lessor.demote``);
- the clock runs: expired leases are proposed as ``lease_expire`` and drifted
  remaining TTLs as ``lease_checkpoint``, each carrying the term the clock
  was started in (``proposer_term``; the store drops it when that is not the
  term of the entry carrying it). One of each in flight at a time.

A pause of the loop itself (the process stopped, the loop starved of CPU or
blocked) longer than ``LEASE_CLOCK_PAUSE_S_MAX`` is not counted: ``clock()``
stands still for it, so every deadline moves by the pause. Keepalives sent
during it are still queued, unread; counting it would expire leases whose
owners did everything right.

The clock learns of grants, revokes and expiries from applied entries
(``on_applied``, wired in ``build_node`` next to the watch hub): called on
the Raft tick thread, it hands them to the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from mcpctl import limits
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl.errors import McpError
from mcpctl.raft.status import RaftStatus, Role
from mcpctl.server import auth
from mcpctl.server.lessor import Lessor
from mcpctl.state import Applied, Store
from mcpctl.state.leases import LEASE_EXPIRY_IDENTITY

log = structlog.get_logger("mcpctl.server.lease_clock")

# Who the clock's own proposals are from (audit lines; the store records an
# expiry's revisions under this identity anyway).
CLOCK_IDENTITY = auth.Identity(LEASE_EXPIRY_IDENTITY, auth.ADMIN)

Seed = Callable[[], list[tuple[int, int, int]]]
Write = Callable[[raft.InternalRequest, float], Awaitable[Applied]]


@dataclass(slots=True)
class LeaseStats:
    """Counters for metrics (mcp_lease_*)."""

    expired: int = 0
    revoked: int = 0
    keepalives: int = 0
    checkpoints: int = 0
    fenced: int = 0
    pauses: int = 0  # loop pauses not counted (LEASE_CLOCK_PAUSE_S_MAX)
    paused_s: float = 0.0


def store_seed(store: Store) -> list[tuple[int, int, int]]:
    """(id, granted TTL s, checkpointed remaining ms) of every lease."""
    seed = []
    for lease_id, remaining_ms in store.leases_remaining_ms():
        ttl_s = store.lease_ttl_s(lease_id)
        assert ttl_s is not None
        seed.append((lease_id, ttl_s, remaining_ms))
    return seed


class LeaseClock:
    """The leader's lease clock on the loop. See the module docstring."""

    def __init__(
        self,
        lessor: Lessor,
        *,
        status: Callable[[], RaftStatus],
        fence: Callable[[float], Awaitable[None]],
        write: Write,
        seed: Seed,
        proposal_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lessor = lessor
        self.stats = LeaseStats()
        self._status = status
        self._fence = fence
        self._write = write
        self._seed = seed
        self._timeout_s = proposal_timeout_s
        self._source = clock
        self._schedule: Callable[[Callable[[], None]], object] | None = None
        self._task: asyncio.Task[None] | None = None
        self._promoting: asyncio.Task[None] | None = None
        self._expiring: asyncio.Task[None] | None = None
        self._checkpointing: asyncio.Task[None] | None = None

    def clock(self) -> float:
        """The lease clock: monotonic time less the loop pauses not counted."""
        return self._source() - self.stats.paused_s

    def woke_late(self, late_s: float) -> None:
        """The loop ran the clock ``late_s`` after it asked: a pause longer than
        ``LEASE_CLOCK_PAUSE_S_MAX`` is not counted against any lease."""
        if late_s > limits.LEASE_CLOCK_PAUSE_S_MAX:
            self.stats.pauses += 1
            self.stats.paused_s += late_s
            log.warning("lease clock paused; not counted", paused_s=round(late_s, 3))

    def serving(self, term: int) -> bool:
        """The clock runs for ``term`` (the caller checked this member leads in it)."""
        return self.lessor.term == term

    # -- life ---------------------------------------------------------------------
    def start(self) -> None:
        self._schedule = asyncio.get_running_loop().call_soon_threadsafe
        self._task = asyncio.create_task(self._run())

    def stop(self) -> None:
        self._schedule = None
        for task in (self._task, self._promoting, self._expiring, self._checkpointing):
            if task is not None:
                task.cancel()
        self.lessor.demote()

    async def _run(self) -> None:
        auth.current_identity.set(CLOCK_IDENTITY)
        while True:
            try:
                self.step()
            except Exception:  # never let one bad step stop expiries for good
                log.exception("lease clock step failed")
            asked = self._source()
            await asyncio.sleep(limits.LEASE_TICK_S)
            self.woke_late(self._source() - asked - limits.LEASE_TICK_S)

    # -- from the tick thread -----------------------------------------------------------
    def on_applied(self, results: Sequence[Applied]) -> None:
        grants = [
            (r.result.id, r.result.ttl)
            for r in results
            if isinstance(r.result, kv.LeaseGrantResponse)
        ]
        ended = [i for r in results for i in r.leases_ended]
        if (grants or ended) and self._schedule is not None:
            self._schedule(lambda: self._learn(grants, ended))

    def on_reset(self, store: Store) -> None:
        """A snapshot replaced the store: start again from its checkpoints."""
        if self._schedule is not None:
            self._schedule(self.lessor.demote)

    def _learn(self, grants: list[tuple[int, int]], ended: list[int]) -> None:
        now = self.clock()
        for lease_id, ttl_s in grants:
            self.lessor.granted(lease_id, ttl_s, now)
        self.lessor.ended(ended)

    # -- the step ---------------------------------------------------------------------
    def step(self) -> None:
        st = self._status()
        lessor = self.lessor
        if lessor.running and (st.role != Role.LEADER or st.term != lessor.term):
            log.info("lease clock stopped", term=lessor.term, role=st.role.name.lower())
            lessor.demote()
        if not lessor.running:
            if st.role == Role.LEADER and self._promoting is None:
                self._promoting = asyncio.create_task(self._promote(st.term))
            return
        term = lessor.term
        assert term is not None
        now = self.clock()
        if self._expiring is None:
            ids = lessor.take_expired(now)
            if ids:
                self._expiring = asyncio.create_task(self._expire(ids, term))
        if self._checkpointing is None:
            checkpoints = lessor.take_checkpoint(now)
            if checkpoints:
                self._checkpointing = asyncio.create_task(self._checkpoint(checkpoints, term))

    async def _promote(self, term: int) -> None:
        try:
            await self._fence(self._timeout_s)
            st = self._status()
            if st.role == Role.LEADER and st.term == term and not self.lessor.running:
                self.lessor.promote(term, self.clock(), self._seed())
                log.info("lease clock started", term=term, leases=len(self.lessor))
        except McpError as e:
            log.info("lease clock not started yet", term=term, reason=e.message)
        finally:
            self._promoting = None

    async def _expire(self, ids: list[int], term: int) -> None:
        request = raft.InternalRequest(
            lease_expire=raft.LeaseExpireRequest(ids=ids, proposer_term=term)
        )
        try:
            applied = await self._write(request, self._timeout_s)
            result = applied.result
            assert isinstance(result, raft.LeaseExpireResponse)
            if result.fenced:
                self.stats.fenced += 1
                log.warning("lease expiry fenced (stale term)", term=term, ids=len(ids))
                self.lessor.expire_failed(ids)
                return
            self.stats.expired += len(result.expired)
            self.lessor.ended([*result.expired, *result.skipped])
        except McpError as e:
            log.info("lease expiry not applied; will retry", reason=e.message, ids=len(ids))
            if self.lessor.term == term:
                self.lessor.expire_failed(ids)
        finally:
            self._expiring = None

    async def _checkpoint(self, checkpoints: list[tuple[int, int]], term: int) -> None:
        request = raft.InternalRequest(
            lease_checkpoint=raft.LeaseCheckpointRequest(
                checkpoints=[raft.LeaseCheckpoint(id=i, remaining_ms=ms) for i, ms in checkpoints],
                proposer_term=term,
            )
        )
        try:
            with contextlib.suppress(McpError):  # the next one is due in an interval
                applied = await self._write(request, self._timeout_s)
                result = applied.result
                assert isinstance(result, raft.LeaseCheckpointResponse)
                if result.fenced:
                    self.stats.fenced += 1
                elif self.lessor.term == term:
                    self.stats.checkpoints += 1
                    self.lessor.checkpointed(checkpoints)
        finally:
            self._checkpointing = None
