"""Group commit and read fences on top of ``RaftNode.propose`` / ``read_index``.

Runs on the asyncio loop. Client writes wait in one bounded queue; one Raft
entry at a time carries everything that queued while the previous entry was
in flight (at most ``PROPOSAL_BATCH_REQUESTS_MAX`` requests /
``PROPOSAL_BATCH_BYTES_MAX`` bytes). A linearizable read (``fence``) asks the
Raft member for a read index (``mcpctl.raft.readindex``: a majority round
after the read arrived, no log entry) and returns once it is applied here:
every write acknowledged before the read arrived is visible locally, and a
deposed leader cannot pass the fence. ``barrier`` is the older fence: a read
that joins the *next* entry to leave (an empty one when no write waits).

Every wait is bounded:

- no leader reachable: a request waits up to ``leader_wait_s`` and then gets
  ``Unavailable`` (not applied);
- a request gets ``proposal_timeout_s`` *in total*, from its arrival (time
  spent queued behind another entry counts); past it, a write that was
  proposed gets ``OutcomeUnknown`` (it may still commit), one that was not
  ``Unavailable``, and a read ``Unavailable``;
- the caller's own deadline, when shorter, ends its wait the same way;
- the queue holds ``queue_max`` requests; beyond it: ``ResourceExhausted``.

The entry in flight is answered at once, without waiting for its callback,
when the Raft status shows it can no longer commit as proposed: the term or
the leader changed, this member stopped leading, or (forwarded) it lost its
link to the leader. Its writes get ``OutcomeUnknown``, its reads
``Unavailable``, and what queued behind it is proposed next. The callback
that may still come later is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from mcpctl import limits
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl.errors import McpError, OutcomeUnknown, ResourceExhausted, Unavailable
from mcpctl.raft.readindex import ReadDone, ReadError
from mcpctl.raft.status import ProposeError, RaftStatus, Role, proposal_view
from mcpctl.state import Applied

log = structlog.get_logger("mcpctl.server.proposer")

_LEADER_POLL_S = 0.02


ProposeCallback = Callable[[Any, ProposeError], None]


class Consensus(Protocol):
    """What the proposer needs from a Raft member (``RaftNode`` is one)."""

    @property
    def status(self) -> RaftStatus:
        """The latest status (any thread)."""
        ...

    def propose(self, batch: raft.InternalBatch, callback: ProposeCallback) -> None:
        """Queue one entry; ``callback(results, error)`` comes once, from any thread,
        or never (the proposer keeps its own deadlines)."""
        ...

    def add_status_listener(self, listener: Callable[[RaftStatus], None]) -> None:
        """Call ``listener(status)`` (from any thread) when ``proposal_view`` changes."""
        ...

    def read_index(self, done: ReadDone) -> None:
        """A read arrived: ``done(error)`` once, from any thread, when this member has
        applied a read index confirmed after this call (or the read failed).
        May raise ``ResourceExhausted``."""
        ...


@dataclass(eq=False, slots=True)
class _Flight:
    items: list[_Item]
    # The status the entry was proposed under (see _stale_reason).
    view: tuple[Role, int, str | None, bool]
    started: float  # loop time
    done: bool = False


@dataclass(eq=False, slots=True)
class _Item:
    request: raft.InternalRequest | None  # None: a read fence
    size: int
    future: asyncio.Future[Applied | None]
    flight: _Flight | None = None  # set when proposed

    @property
    def proposed(self) -> bool:
        return self.flight is not None


class Proposer:
    def __init__(
        self,
        raft_node: Consensus,
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
        # Read index answers from the tick thread, handed to the loop in one call
        # per batch (``_reads_answered``); the reads waiting for one.
        self._answers: deque[tuple[asyncio.Future[ReadError], ReadError]] = deque()
        self._answers_scheduled = False
        self._reads: dict[asyncio.Future[ReadError], float] = {}  # -> deadline (loop time)
        self._read_timer: asyncio.TimerHandle | None = None  # at the earliest deadline
        raft_node.add_status_listener(self._status_changed)

    @property
    def queued(self) -> int:
        return len(self._pending)

    async def write(self, request: raft.InternalRequest, timeout_s: float) -> Applied:
        """Replicate one write; returns how the state machine applied it."""
        result = await self._submit(request, request.ByteSize(), timeout_s)
        assert result is not None
        return result

    async def fence(self, timeout_s: float) -> None:
        """Return once this member has applied everything committed before this call:
        a read index (``mcpctl.raft.readindex``) confirmed by a majority after this
        call, no log entry. Fails ``Unavailable`` (retry), never waits unbounded:
        no reachable leader within ``leader_wait_s``, leadership or the leader lost,
        or not confirmed within ``proposal_timeout_s`` (or the caller's deadline).

        No timer per read: the reads waiting share one (``_expire_reads``), armed
        at the earliest deadline; ``asyncio.timeout`` cost ~10-20 µs per read."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        deadline = loop.time() + min(timeout_s, self._timeout_s)
        if not self._raft.status.leader_reachable:
            try:
                async with asyncio.timeout_at(deadline):
                    await self._leader_reachable(loop)
            except TimeoutError:
                raise _lost(ReadError.TIMED_OUT.value, read=True) from None
        answer: asyncio.Future[ReadError] = loop.create_future()
        self._reads[answer] = deadline
        try:
            timer = self._read_timer
            if timer is None or deadline < timer.when():
                self._arm_read_timer(loop, deadline)
            self._raft.read_index(lambda err: self._read_answered(loop, answer, err))
            err = await answer
        finally:
            del self._reads[answer]
        if err is not ReadError.SUCCESS:
            raise _lost(err.value, read=True)

    def _arm_read_timer(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
        self._read_timer = loop.call_at(at, self._expire_reads, loop)

    def _expire_reads(self, loop: asyncio.AbstractEventLoop) -> None:
        """Answer ``TIMED_OUT`` to the reads past their deadline; re-arm for the next."""
        self._read_timer = None
        now = loop.time()
        earliest: float | None = None
        for answer, deadline in self._reads.items():
            if deadline <= now:
                if not answer.done():
                    answer.set_result(ReadError.TIMED_OUT)
            elif earliest is None or deadline < earliest:
                earliest = deadline
        if earliest is not None:
            self._arm_read_timer(loop, earliest)

    async def barrier(self, timeout_s: float) -> None:
        """Return once a Raft entry proposed after this call has been applied here
        (an empty entry when no write is waiting): the fence before ReadIndex,
        kept for callers that want the log entry."""
        await self._submit(None, 0, timeout_s)

    async def _leader_reachable(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait (polling the status) up to ``leader_wait_s`` for a reachable leader."""
        give_up = loop.time() + self._leader_wait_s
        while not self._raft.status.leader_reachable:
            if loop.time() >= give_up:
                raise Unavailable("no leader; the read was not served")
            await asyncio.sleep(_LEADER_POLL_S)

    def _read_answered(  # tick thread
        self, loop: asyncio.AbstractEventLoop, answer: asyncio.Future[ReadError], err: ReadError
    ) -> None:
        self._answers.append((answer, err))
        if not self._answers_scheduled:
            self._answers_scheduled = True
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(self._reads_answered)

    def _reads_answered(self) -> None:
        self._answers_scheduled = False
        while self._answers:
            answer, err = self._answers.popleft()
            if not answer.done():
                answer.set_result(err)

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
            # One bound for the whole wait, queued or in flight. On timeout
            # (or the caller's cancellation) the item's future is cancelled:
            # the pump skips it, and a late result is dropped.
            async with asyncio.timeout(min(timeout_s, self._timeout_s)):
                return await item.future
        except TimeoutError:
            reason = (
                "timed out in flight"
                if item.proposed
                else "timed out before it could be proposed: no reachable leader, "
                "or queued behind a stalled entry"
            )
            raise _lost(reason, read=request is None, maybe_applied=item.proposed) from None
        finally:
            self._done_waiting(item)

    # -- the pump --------------------------------------------------------------
    def _kick(self) -> None:
        if self._flight is not None or not self._pending:
            return
        status = self._raft.status
        if not status.leader_reachable:
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
            items.append(nxt)
            size += nxt.size
            if nxt.request is not None:
                batch.requests.append(nxt.request)
        if not items:
            return
        assert self._loop is not None
        flight = _Flight(items, proposal_view(status), self._loop.time())
        for item in items:
            item.flight = flight
        self._flight = flight
        loop = self._loop

        def on_result(results: Any, err: ProposeError) -> None:  # tick thread
            loop.call_soon_threadsafe(self._land, flight, results, err)

        self._raft.propose(batch, on_result)

    def _wait_for_leader(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
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

    def _status_changed(self, status: RaftStatus) -> None:  # any thread
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(self._check_flight)

    def _check_flight(self) -> None:
        """Answer the entry in flight at once when it can no longer commit as proposed."""
        flight = self._flight
        if flight is None:
            self._kick()  # a leader may be reachable now
            return
        reason = _stale_reason(flight.view, self._raft.status)
        if reason is None:
            return
        self._finish(flight)
        self.proposals_failed += 1
        log.info("proposal abandoned", reason=reason, requests=len(flight.items))
        for item in flight.items:
            if not item.future.done():
                item.future.set_exception(_lost(reason, read=item.request is None))
        self._kick()

    def _done_waiting(self, item: _Item) -> None:
        """The caller stopped waiting (answer, deadline or cancellation). An entry
        whose every request gave up no longer holds back the queue."""
        flight = item.flight
        if flight is None:
            with contextlib.suppress(ValueError):
                self._pending.remove(item)
            return
        if flight.done or not all(i.future.done() for i in flight.items):
            return
        self._finish(flight)
        self.proposals_failed += 1
        log.warning(
            "proposal timed out",
            requests=len(flight.items),
            waited_s=round(asyncio.get_running_loop().time() - flight.started, 3),
        )
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

    def _finish(self, flight: _Flight) -> None:
        flight.done = True
        if self._flight is flight:
            self._flight = None

    def close(self) -> None:
        if self._leader_poll is not None:
            self._leader_poll.cancel()
        if self._read_timer is not None:
            self._read_timer.cancel()
        for answer in self._reads:
            if not answer.done():
                answer.set_exception(_lost("the node is shutting down", read=True))
        self._fail_pending(Unavailable("node is shutting down"))
        if self._flight is not None:
            flight = self._flight
            self._finish(flight)
            for item in flight.items:
                if not item.future.done():
                    reason = "the node is shutting down"
                    item.future.set_exception(_lost(reason, read=item.request is None))


def _stale_reason(view: tuple[Role, int, str | None, bool], status: RaftStatus) -> str | None:
    """Why an entry proposed under ``view`` can no longer commit as proposed (None: it can).

    PySyncObj calls back only when the entry's index is applied here, or when
    a forward is answered; after a term or leader change, a lost leadership
    or a lost link to the leader that may take arbitrarily long, or never
    happen (the index may stay empty, a snapshot may skip it, the reply may
    be lost).
    """
    role, term, leader, _reachable = view
    if status.term != term:
        return "the raft term changed"
    if status.leader != leader:
        return "the leader changed"
    if role == Role.LEADER and status.role != Role.LEADER:
        return "this member stopped leading"
    if role != Role.LEADER and not status.leader_reachable:
        return "this member lost contact with the leader"
    return None


def _lost(reason: str, *, read: bool, maybe_applied: bool = True) -> McpError:
    """The one wording for a request that did not certainly complete: a read gets
    Unavailable; a write Unavailable when it certainly was not applied, else
    OutcomeUnknown (DESIGN §3: the client must tell the two apart)."""
    if read:
        return Unavailable(f"could not confirm leadership for a read ({reason}); retry")
    if not maybe_applied:
        return Unavailable(f"the write was not applied ({reason}); retry")
    return OutcomeUnknown(
        f"the write did not complete ({reason}); it may have been applied "
        "(retrying with the same request id is safe)"
    )


def _failure(err: ProposeError, is_read: bool) -> McpError:
    """PySyncObj's failure reason for an entry, as the request's error."""
    if err == ProposeError.QUEUE_FULL and not is_read:
        return ResourceExhausted("raft command queue is full; the write was not applied")
    return _lost(err.name.lower(), read=is_read, maybe_applied=err.maybe_applied)
