"""Group commit and read fences on top of ``RaftNode.propose``.

Runs on the asyncio loop. Client writes wait in one bounded queue; one Raft
entry at a time carries everything that queued while the previous entry was
in flight (at most ``PROPOSAL_BATCH_REQUESTS_MAX`` requests /
``PROPOSAL_BATCH_BYTES_MAX`` bytes). A linearizable read joins the *next*
entry to leave: when that entry commits in the current term and is applied
here, every write acknowledged before the read arrived is visible locally,
and a deposed leader cannot pass the fence. When no write is waiting the
entry is empty (a pure barrier), so concurrent reads share one barrier.

Every wait is bounded:

- no leader known: a request waits up to ``leader_wait_s`` and then gets
  ``Unavailable`` (not applied);
- a proposal gets ``proposal_timeout_s``; past it, its writes get
  ``OutcomeUnknown`` (they may still commit) and its reads ``Unavailable``;
- the caller's own deadline ends its wait the same way;
- the queue holds ``queue_max`` requests; beyond it: ``ResourceExhausted``.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import structlog

from mcpctl import limits
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl.errors import McpError, OutcomeUnknown, ResourceExhausted, Unavailable
from mcpctl.raft.adapter import ProposeError, RaftNode
from mcpctl.state import Applied

log = structlog.get_logger("mcpctl.server.proposer")

_LEADER_POLL_S = 0.02


@dataclass(eq=False, slots=True)
class _Item:
    request: raft.InternalRequest | None  # None: a read fence
    size: int
    future: asyncio.Future[Applied | None]
    proposed: bool = False


@dataclass(eq=False, slots=True)
class _Flight:
    items: list[_Item]
    timer: asyncio.TimerHandle | None = None
    done: bool = False
    started: float = field(default_factory=time.monotonic)


class Proposer:
    def __init__(
        self,
        raft_node: RaftNode,
        *,
        proposal_timeout_s: float = limits.PROPOSAL_TIMEOUT_S_DEFAULT,
        leader_wait_s: float = limits.LEADER_WAIT_S_DEFAULT,
        queue_max: int = limits.PROPOSAL_QUEUE_MAX,
        batch_requests_max: int = limits.PROPOSAL_BATCH_REQUESTS_MAX,
        batch_bytes_max: int = limits.PROPOSAL_BATCH_BYTES_MAX,
    ) -> None:
        self._raft = raft_node
        self._timeout_s = proposal_timeout_s
        self._leader_wait_s = leader_wait_s
        self._queue_max = queue_max
        self._batch_requests_max = batch_requests_max
        self._batch_bytes_max = batch_bytes_max
        self._pending: deque[_Item] = deque()
        self._flight: _Flight | None = None
        self._leader_poll: asyncio.TimerHandle | None = None
        self._no_leader_since: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.proposals_committed = 0
        self.proposals_failed = 0

    @property
    def queued(self) -> int:
        return len(self._pending)

    async def write(self, request: raft.InternalRequest, timeout_s: float) -> Applied:
        """Replicate one write; returns how the state machine applied it."""
        result = await self._submit(request, request.ByteSize(), timeout_s)
        assert result is not None
        return result

    async def fence(self, timeout_s: float) -> None:
        """Return once a Raft entry proposed after this call has been applied here."""
        await self._submit(None, 0, timeout_s)

    async def _submit(
        self, request: raft.InternalRequest | None, size: int, timeout_s: float
    ) -> Applied | None:
        if len(self._pending) >= self._queue_max:
            raise ResourceExhausted(
                f"too many requests waiting for replication ({self._queue_max}); retry later"
            )
        loop = asyncio.get_running_loop()
        self._loop = loop
        item = _Item(request, size, loop.create_future())
        self._pending.append(item)
        self._kick()
        try:
            # On timeout (or the caller's cancellation) the item's future is
            # cancelled: the pump skips it, and a late result is dropped.
            async with asyncio.timeout(timeout_s):
                return await item.future
        except TimeoutError:
            if not item.proposed:
                self._pending.remove(item)
                raise Unavailable(
                    "timed out waiting for a leader; the request was not applied"
                ) from None
            if request is None:
                raise Unavailable("timed out confirming leadership for a read") from None
            raise OutcomeUnknown(
                "timed out waiting for the write to commit; it may have been applied "
                "(retrying with the same request id is safe)"
            ) from None

    # -- the pump --------------------------------------------------------------
    def _kick(self) -> None:
        if self._flight is not None or not self._pending:
            return
        if self._raft.status.leader is None:
            self._wait_for_leader()
            return
        self._no_leader_since = None
        items: list[_Item] = []
        batch = raft.InternalBatch()
        size = 0
        while self._pending and len(items) < self._batch_requests_max:
            nxt = self._pending[0]
            if items and size + nxt.size > self._batch_bytes_max:
                break
            self._pending.popleft()
            if nxt.future.done():  # the caller gave up while queued
                continue
            nxt.proposed = True
            items.append(nxt)
            size += nxt.size
            if nxt.request is not None:
                batch.requests.append(nxt.request)
        if not items:
            return
        flight = _Flight(items)
        assert self._loop is not None
        flight.timer = self._loop.call_later(self._timeout_s, self._expire, flight)
        self._flight = flight
        loop = self._loop

        def on_result(results: Any, err: ProposeError) -> None:  # tick thread
            loop.call_soon_threadsafe(self._land, flight, results, err)

        self._raft.propose(batch, on_result)

    def _wait_for_leader(self) -> None:
        assert self._loop is not None
        now = time.monotonic()
        if self._no_leader_since is None:
            self._no_leader_since = now
        if now - self._no_leader_since >= self._leader_wait_s:
            self._no_leader_since = None
            self._fail_pending(Unavailable("no leader; the request was not applied"))
            return
        if self._leader_poll is None:
            self._leader_poll = self._loop.call_later(_LEADER_POLL_S, self._leader_poll_fired)

    def _leader_poll_fired(self) -> None:
        self._leader_poll = None
        self._kick()

    def _fail_pending(self, error: McpError) -> None:
        while self._pending:
            item = self._pending.popleft()
            if not item.future.done():
                item.future.set_exception(error)

    def _land(self, flight: _Flight, results: Any, err: ProposeError) -> None:
        if flight.done:
            return  # already expired; a late callback changes nothing
        self._finish(flight)
        if err == ProposeError.SUCCESS:
            self.proposals_committed += 1
            applied = iter(results)
            for item in flight.items:
                value = next(applied) if item.request is not None else None
                if not item.future.done():
                    item.future.set_result(value)
        else:
            self.proposals_failed += 1
            log.info("proposal failed", reason=err.name, requests=len(flight.items))
            for item in flight.items:
                if not item.future.done():
                    item.future.set_exception(_failure(err, item.request is None))
        self._kick()

    def _expire(self, flight: _Flight) -> None:
        if flight.done:
            return
        self._finish(flight)
        self.proposals_failed += 1
        log.warning("proposal timed out", requests=len(flight.items), timeout_s=self._timeout_s)
        for item in flight.items:
            if not item.future.done():
                item.future.set_exception(
                    Unavailable("timed out confirming leadership for a read")
                    if item.request is None
                    else OutcomeUnknown(
                        "the write did not commit in time; it may have been applied "
                        "(retrying with the same request id is safe)"
                    )
                )
        self._kick()

    def _finish(self, flight: _Flight) -> None:
        flight.done = True
        if flight.timer is not None:
            flight.timer.cancel()
        self._flight = None

    def close(self) -> None:
        if self._leader_poll is not None:
            self._leader_poll.cancel()
        self._fail_pending(Unavailable("node is shutting down"))
        if self._flight is not None:
            flight = self._flight
            self._finish(flight)
            for item in flight.items:
                if not item.future.done():
                    item.future.set_exception(
                        Unavailable("node is shutting down")
                        if item.request is None
                        else OutcomeUnknown("node shut down while the write was in flight")
                    )


def _failure(err: ProposeError, is_read: bool) -> McpError:
    if is_read:
        return Unavailable(f"could not confirm leadership ({err.name.lower()}); retry")
    if err.maybe_applied:
        return OutcomeUnknown(
            f"leadership changed while the write was in flight ({err.name.lower()}); "
            "it may have been applied (retrying with the same request id is safe)"
        )
    if err == ProposeError.QUEUE_FULL:
        return ResourceExhausted("raft command queue is full; the write was not applied")
    return Unavailable(f"the write was not applied ({err.name.lower()}); retry")
