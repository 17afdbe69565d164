"""The proposer (group commit, one entry in flight, bounded waits) against a fake
Raft member: no threads, no sockets, no real time.

The fake records every proposal and calls its callback only when a test says
so; the status (term, leader, reachability) changes only when a test sets it.
The loop runs on a virtual clock: when nothing is ready it jumps straight to
the next timer, so "5 s later" takes no time and every answer's time is exact.
"""

from __future__ import annotations

import asyncio
import dataclasses
import selectors
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl.errors import McpError, OutcomeUnknown, ResourceExhausted, Unavailable
from mcpctl.raft.readindex import ReadError
from mcpctl.raft.status import ProposeError, RaftStatus, Role, proposal_view
from mcpctl.server.proposer import Consensus, Proposer
from mcpctl.state import Applied

T = TypeVar("T")

TIMEOUT_S = 5.0  # proposal_timeout_s in these tests
LEADER_WAIT_S = 3.0
CALLER_S = 30.0  # a caller deadline longer than every bound


# -- a loop on a virtual clock ---------------------------------------------------
class _Clock:
    now = 1000.0


class _FastForwardSelector(selectors.BaseSelector):
    """The real selector, polled without blocking; an idle wait moves the clock."""

    def __init__(self, clock: _Clock) -> None:
        self._real = selectors.DefaultSelector()
        self._clock = clock

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            raise RuntimeError("the test would wait forever: nothing is scheduled")
        self._clock.now += timeout
        return []

    def close(self) -> None:
        self._real.close()

    def get_map(self) -> Any:
        return self._real.get_map()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._clock = _Clock()
        super().__init__(selector=_FastForwardSelector(self._clock))

    def time(self) -> float:
        return self._clock.now


def run(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(scenario())
    finally:
        loop.close()


def now() -> float:
    return asyncio.get_running_loop().time()


async def settle() -> None:
    """Run everything that is ready now (callbacks, woken tasks); the clock stays."""
    for _ in range(10):
        await asyncio.sleep(0)


# -- the fake Raft member ------------------------------------------------------------
@dataclass
class Proposal:
    batch: raft.InternalBatch
    callback: Callable[[Any, ProposeError], None]

    @property
    def size(self) -> int:
        return len(self.batch.requests)

    def commit(self, revision: int = 1) -> None:
        results = [Applied(revision + i, kv.PutResponse()) for i in range(len(self.batch.requests))]
        self.callback(results, ProposeError.SUCCESS)

    def fail(self, err: ProposeError) -> None:
        self.callback(None, err)


LEADING = RaftStatus(role=Role.LEADER, term=3, leader="n1", leader_reachable=True)
FOLLOWING = RaftStatus(role=Role.FOLLOWER, term=3, leader="n1", leader_reachable=True)


class FakeRaft:
    """Satisfies ``Consensus``; nothing happens unless the test does it."""

    def __init__(self, status: RaftStatus = LEADING) -> None:
        self.status = status
        self.proposals: list[Proposal] = []
        self.reads: list[Callable[[ReadError], None]] = []
        self._listeners: list[Callable[[RaftStatus], None]] = []

    def propose(self, batch: raft.InternalBatch, callback: Any) -> None:
        self.proposals.append(Proposal(batch, callback))

    def add_status_listener(self, listener: Callable[[RaftStatus], None]) -> None:
        self._listeners.append(listener)

    def read_index(self, done: Callable[[ReadError], None]) -> None:
        self.reads.append(done)

    def set_status(self, **changes: Any) -> None:
        """Like RaftNode: listeners hear of changes to ``proposal_view`` only."""
        before, self.status = self.status, dataclasses.replace(self.status, **changes)
        if proposal_view(before) != proposal_view(self.status):
            for listener in self._listeners:
                listener(self.status)


def make(fake: FakeRaft, **kwargs: Any) -> Proposer:
    consensus: Consensus = fake  # the fake is checked against the Protocol here
    kwargs.setdefault("proposal_timeout_s", TIMEOUT_S)
    kwargs.setdefault("leader_wait_s", LEADER_WAIT_S)
    return Proposer(consensus, **kwargs)


def put(key: str, value: bytes = b"v") -> raft.InternalRequest:
    return raft.InternalRequest(put=kv.PutRequest(key=key.encode(), value=value))


@dataclass
class Answer:
    at: float  # loop time of the answer
    value: Any = None
    error: McpError | None = None


def start(aw: Awaitable[Any]) -> asyncio.Task[Answer]:
    async def timed() -> Answer:
        try:
            value = await aw
        except McpError as e:
            return Answer(now(), error=e)
        return Answer(now(), value)

    return asyncio.ensure_future(timed())


async def in_one_entry(
    fake: FakeRaft, p: Proposer
) -> tuple[asyncio.Task[Answer], asyncio.Task[Answer]]:
    """A write and a read fence that leave together in the entry now in flight
    (they queue behind a first entry, which then commits)."""
    first = start(p.write(put("/first"), CALLER_S))
    await settle()
    write, read = start(p.write(put("/w"), CALLER_S)), start(p.barrier(CALLER_S))
    await settle()
    fake.proposals[-1].commit()
    await settle()
    assert (await first).error is None
    assert len(fake.proposals) == 2 and fake.proposals[-1].size == 1  # a fence adds no request
    return write, read


# -- group commit ----------------------------------------------------------------------
def test_requests_that_queue_during_a_flight_share_the_next_entry() -> None:
    """One entry in flight at a time; everything that queued meanwhile leaves in
    the next entry, and each request gets its own result."""

    async def scenario() -> None:
        fake = FakeRaft()
        p = make(fake)
        first = start(p.write(put("/a"), CALLER_S))
        await settle()
        later = [start(p.write(put(f"/b{i}"), CALLER_S)) for i in range(3)]
        await settle()
        assert [x.size for x in fake.proposals] == [1]
        fake.proposals[0].commit(revision=1)
        await settle()
        assert (await first).value.revision == 1
        assert [x.size for x in fake.proposals] == [1, 3]
        fake.proposals[1].commit(revision=2)
        await settle()
        assert [(await t).value.revision for t in later] == [2, 3, 4]

    run(scenario)


def test_an_entry_holds_at_most_batch_requests_max_requests() -> None:
    """PROPOSAL_BATCH_REQUESTS_MAX: the rest waits for the next entry."""

    async def scenario() -> None:
        fake = FakeRaft()
        p = make(fake, batch_requests_max=2)
        blocker = start(p.write(put("/x"), CALLER_S))
        await settle()
        queued = [start(p.write(put(f"/k{i}"), CALLER_S)) for i in range(5)]
        await settle()
        for i in range(4):
            fake.proposals[i].commit()
            await settle()
        assert [x.size for x in fake.proposals] == [1, 2, 2, 1]
        assert [(await t).error for t in [blocker, *queued]] == [None] * 6

    run(scenario)


def test_an_entry_holds_at_most_batch_bytes_max_but_one_large_request_goes_alone() -> None:
    """PROPOSAL_BATCH_BYTES_MAX: a request that would pass the byte limit waits for
    the next entry; a single request larger than the limit still leaves (alone)."""

    async def scenario() -> None:
        fake = FakeRaft()
        small, big = put("/s", b"x" * 100), put("/b", b"x" * 1000)
        limit = 2 * small.ByteSize() + 10
        p = make(fake, batch_bytes_max=limit)
        start(p.write(put("/first"), CALLER_S))
        await settle()
        for req in (small, small, small, big):
            start(p.write(req, CALLER_S))
        await settle()
        for i in range(3):
            fake.proposals[i].commit()
            await settle()
        assert [x.size for x in fake.proposals] == [1, 2, 1, 1][: len(fake.proposals)]
        assert fake.proposals[3].batch.requests[0] == big
        assert big.ByteSize() > limit

    run(scenario)


def test_a_full_queue_answers_resource_exhausted() -> None:
    """PROPOSAL_QUEUE_MAX: past it a request is refused at once (not applied)."""

    async def scenario() -> None:
        fake = FakeRaft()
        p = make(fake, queue_max=2)
        start(p.write(put("/in-flight"), CALLER_S))
        await settle()
        start(p.write(put("/q1"), CALLER_S))
        start(p.write(put("/q2"), CALLER_S))
        refused = start(p.write(put("/q3"), CALLER_S))
        await settle()
        answer = await refused
        assert isinstance(answer.error, ResourceExhausted)
        assert p.queued == 2

    run(scenario)


# -- bounds -------------------------------------------------------------------------------
def test_a_proposal_not_committed_in_time_is_outcome_unknown_for_writes_unavailable_for_reads() -> (
    None
):
    """proposal_timeout: a proposed write that did not commit gets OutcomeUnknown
    (it may still commit), a read fence Unavailable, exactly at the bound."""

    async def scenario() -> None:
        fake = FakeRaft()
        p = make(fake)
        write, read = await in_one_entry(fake, p)
        t0 = now()
        w, r = await write, await read
        assert isinstance(w.error, OutcomeUnknown)
        assert isinstance(r.error, Unavailable) and not isinstance(r.error, OutcomeUnknown)
        assert w.at - t0 == pytest.approx(TIMEOUT_S)
        assert r.at == w.at
        assert p.proposals_failed == 1

    run(scenario)


def test_a_request_queued_behind_a_stalled_entry_waits_at_most_its_bound_in_total() -> None:
    """The bound counts from the request's arrival, not from when its entry left:
    behind a stalled entry a request waits proposal_timeout in total (not twice)."""

    async def scenario() -> None:
        fake = FakeRaft()
        p = make(fake)
        t0 = now()
        stalled = start(p.write(put("/stalled"), CALLER_S))
        await settle()
        await asyncio.sleep(1.0)
        behind = start(p.write(put("/behind"), CALLER_S))
        await settle()
        first = await stalled
        assert first.at - t0 == pytest.approx(TIMEOUT_S)
        await settle()
        assert len(fake.proposals) == 2  # proposed once the stalled entry was given up
        second = await behind
        assert isinstance(second.error, OutcomeUnknown)
        assert second.at - t0 == pytest.approx(1.0 + TIMEOUT_S)

    run(scenario)


def test_a_request_never_proposed_within_its_bound_is_not_applied() -> None:
    """A request whose bound passes while it is still queued was never proposed:
    Unavailable (not OutcomeUnknown), and it is not proposed afterwards."""

    async def scenario() -> None:
        fake = FakeRaft()
        p = make(fake)
        start(p.write(put("/stalled"), CALLER_S))
        await settle()
        short = start(p.write(put("/short"), 2.0))  # the caller's own deadline
        answer = await short
        assert isinstance(answer.error, Unavailable)
        assert not isinstance(answer.error, OutcomeUnknown)
        await asyncio.sleep(TIMEOUT_S)
        assert [x.size for x in fake.proposals] == [1]
        assert p.queued == 0

    run(scenario)


def test_a_late_callback_after_expiry_changes_nothing() -> None:
    """A callback that comes after its entry was given up is ignored: it neither
    answers the requests again nor touches the entry now in flight."""

    async def scenario() -> None:
        fake = FakeRaft()
        p = make(fake)
        old = start(p.write(put("/old"), CALLER_S))
        await asyncio.sleep(TIMEOUT_S + 0.1)
        assert isinstance((await old).error, OutcomeUnknown)
        new = start(p.write(put("/new"), CALLER_S))
        await settle()
        fake.proposals[0].commit(revision=7)  # late
        await settle()
        assert not new.done()
        assert p.proposals_committed == 0
        fake.proposals[1].commit(revision=8)
        await settle()
        assert (await new).value.revision == 8

    run(scenario)


# -- the entry in flight can no longer commit as proposed (issue #19, defect 1) -----------
@pytest.mark.parametrize(
    ("proposed_under", "change", "reason"),
    [
        (LEADING, {"term": 4, "role": Role.FOLLOWER, "leader": "n2"}, "term"),
        (LEADING, {"role": Role.FOLLOWER, "leader": None, "leader_reachable": False}, "leader"),
        (FOLLOWING, {"term": 4}, "term"),
        (FOLLOWING, {"leader": "n2"}, "leader"),
        (FOLLOWING, {"leader_reachable": False}, "contact"),
    ],
    ids=["leader-deposed", "leader-stepped-down", "term", "new-leader", "leader-unreachable"],
)
def test_the_entry_in_flight_is_answered_at_once_when_it_can_no_longer_commit_as_proposed(
    proposed_under: RaftStatus, change: dict[str, Any], reason: str
) -> None:
    """When the term or leader changes, this member stops leading, or a follower
    loses its link to the leader, PySyncObj's callback may never come. The entry
    in flight is answered at once (writes OutcomeUnknown: they may still commit;
    reads Unavailable), and what queued behind it is proposed right away."""

    async def scenario() -> None:
        fake = FakeRaft(proposed_under)
        p = make(fake)
        write, read = await in_one_entry(fake, p)
        queued = start(p.write(put("/queued"), CALLER_S))
        await settle()
        assert len(fake.proposals) == 2
        t0 = now()
        fake.set_status(**change)
        await settle()
        w, r = await write, await read
        assert isinstance(w.error, OutcomeUnknown) and reason in w.error.message
        assert isinstance(r.error, Unavailable) and not isinstance(r.error, OutcomeUnknown)
        assert w.at == t0 and r.at == t0  # at once, not after proposal_timeout
        if fake.status.leader_reachable:
            assert len(fake.proposals) == 3  # the queue moves on at once
            fake.proposals[2].commit(revision=5)
            await settle()
            assert (await queued).value.revision == 5
        else:
            assert len(fake.proposals) == 2  # nobody to propose to
            fake.set_status(**dataclasses.asdict(proposed_under))
            await settle()
            assert len(fake.proposals) == 3  # proposed as soon as the leader is back

    run(scenario)


def test_status_changes_that_keep_term_leader_and_contact_do_not_touch_the_flight() -> None:
    """Only a change that stops the entry from committing as proposed answers it."""

    async def scenario() -> None:
        fake = FakeRaft(FOLLOWING)
        p = make(fake)
        write = start(p.write(put("/w"), CALLER_S))
        await settle()
        fake.set_status(commit_index=10, has_quorum=True, leader_contact_age_s=0.5)
        for listener in fake._listeners:  # even a spurious notification
            listener(fake.status)
        await settle()
        assert not write.done()
        fake.proposals[0].commit(revision=3)
        assert (await write).value.revision == 3

    run(scenario)


@pytest.mark.parametrize(
    ("err", "kind"),
    [
        (ProposeError.LEADER_CHANGED, OutcomeUnknown),
        (ProposeError.UNKNOWN_OUTCOME, OutcomeUnknown),
        (ProposeError.DISCARDED, Unavailable),
        (ProposeError.MISSING_LEADER, Unavailable),
        (ProposeError.QUEUE_FULL, ResourceExhausted),
    ],
)
def test_raft_failure_codes_say_whether_the_write_may_have_been_applied(
    err: ProposeError, kind: type[McpError]
) -> None:
    """LEADER_CHANGED / UNKNOWN_OUTCOME may have applied (OutcomeUnknown); the
    others prove it was not (Unavailable / ResourceExhausted); the queue moves on."""

    async def scenario() -> None:
        fake = FakeRaft(FOLLOWING)
        p = make(fake)
        write = start(p.write(put("/w"), CALLER_S))
        await settle()
        queued = start(p.write(put("/next"), CALLER_S))
        await settle()
        fake.proposals[0].fail(err)
        await settle()
        error = (await write).error
        assert type(error) is kind
        assert len(fake.proposals) == 2 and not queued.done()

    run(scenario)


# -- no leader, shutdown ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "status",
    [
        RaftStatus(role=Role.CANDIDATE, term=4, leader=None, leader_reachable=False),
        RaftStatus(role=Role.FOLLOWER, term=3, leader="n1", leader_reachable=False),
    ],
    ids=["no-leader", "leader-unreachable"],
)
def test_without_a_reachable_leader_requests_wait_leader_wait_then_unavailable(
    status: RaftStatus,
) -> None:
    """No leader (or one this member cannot reach: a forward would be dropped):
    nothing is proposed; after leader_wait the request gets Unavailable (not applied)."""

    async def scenario() -> None:
        fake = FakeRaft(status)
        p = make(fake)
        t0 = now()
        write = start(p.write(put("/w"), CALLER_S))
        answer = await write
        assert isinstance(answer.error, Unavailable)
        assert not isinstance(answer.error, OutcomeUnknown)
        assert answer.at - t0 == pytest.approx(LEADER_WAIT_S, abs=0.05)
        assert fake.proposals == []

    run(scenario)


def test_a_leader_that_appears_within_leader_wait_gets_the_request() -> None:
    """A request waiting for a leader is proposed as soon as one is reachable."""

    async def scenario() -> None:
        fake = FakeRaft(RaftStatus(role=Role.FOLLOWER, term=3, leader=None))
        p = make(fake)
        write = start(p.write(put("/w"), CALLER_S))
        await asyncio.sleep(1.0)
        assert fake.proposals == []
        fake.set_status(leader="n1", leader_reachable=True)
        await settle()
        assert len(fake.proposals) == 1
        fake.proposals[0].commit(revision=2)
        assert (await write).value.revision == 2

    run(scenario)


def test_close_fails_queued_requests_unavailable_and_writes_in_flight_outcome_unknown() -> None:
    """Shutdown: queued requests were never proposed (Unavailable); writes in
    flight may still commit (OutcomeUnknown), reads in flight Unavailable."""

    async def scenario() -> None:
        fake = FakeRaft()
        p = make(fake)
        in_flight = start(p.write(put("/a"), CALLER_S))
        fence = start(p.barrier(CALLER_S))
        await settle()
        queued = start(p.write(put("/b"), CALLER_S))
        await settle()
        p.close()
        a, f, q = await in_flight, await fence, await queued
        assert isinstance(a.error, OutcomeUnknown)
        assert type(f.error) is Unavailable and type(q.error) is Unavailable
        fake.proposals[0].commit()  # late: ignored
        await settle()
        assert len(fake.proposals) == 1

    run(scenario)


# -- linearizable reads by read index (fence) ---------------------------------------------
def test_a_read_fence_asks_for_a_read_index_and_proposes_nothing() -> None:
    """``fence`` returns when the Raft member confirms a read index; no entry is
    proposed; concurrent fences each get their answer (one hand-off per batch)."""

    async def scenario() -> None:
        fake = FakeRaft()
        p = make(fake)
        reads = [start(p.fence(CALLER_S)) for _ in range(3)]
        await settle()
        assert len(fake.reads) == 3 and not fake.proposals
        for done in fake.reads:
            done(ReadError.SUCCESS)  # as the tick thread does, one batch
        answers = [await r for r in reads]
        assert all(a.error is None for a in answers)
        assert not fake.proposals

    run(scenario)


@pytest.mark.parametrize(
    "err", [e for e in ReadError if e is not ReadError.SUCCESS], ids=lambda e: e.name
)
def test_a_failed_read_index_is_unavailable_with_its_reason(err: ReadError) -> None:
    async def scenario() -> None:
        fake = FakeRaft()
        p = make(fake)
        read = start(p.fence(CALLER_S))
        await settle()
        fake.reads[0](err)
        answer = await read
        assert type(answer.error) is Unavailable
        assert err.value in answer.error.message

    run(scenario)


def test_a_read_fence_waits_for_a_reachable_leader_then_gives_up_unavailable() -> None:
    """No reachable leader: the read waits up to leader_wait and is then
    Unavailable without asking; a leader appearing in time lets it ask."""

    async def scenario() -> None:
        fake = FakeRaft(dataclasses.replace(FOLLOWING, leader=None, leader_reachable=False))
        p = make(fake)
        t0 = now()
        lost = await start(p.fence(CALLER_S))
        assert type(lost.error) is Unavailable and not fake.reads
        assert lost.at - t0 == pytest.approx(LEADER_WAIT_S, abs=0.05)
        read = start(p.fence(CALLER_S))
        await asyncio.sleep(1.0)
        fake.set_status(leader="n1", leader_reachable=True)
        await asyncio.sleep(0.1)
        assert len(fake.reads) == 1
        fake.reads[0](ReadError.SUCCESS)
        assert (await read).error is None

    run(scenario)


def test_a_read_index_never_answered_ends_at_the_bound_and_a_late_answer_is_ignored() -> None:
    async def scenario() -> None:
        fake = FakeRaft()
        p = make(fake)
        t0 = now()
        read = await start(p.fence(CALLER_S))
        assert type(read.error) is Unavailable
        assert read.at - t0 == pytest.approx(TIMEOUT_S)
        fake.reads[0](ReadError.SUCCESS)  # late: nothing waits for it any more
        await settle()
        short = await start(p.fence(1.0))  # the caller's shorter deadline
        assert type(short.error) is Unavailable and short.at - read.at == pytest.approx(1.0)

    run(scenario)


def test_reads_waiting_share_one_timer_and_each_ends_at_its_own_deadline() -> None:
    """The reads waiting for a read index share one timer at the earliest deadline:
    a read arriving later with a shorter deadline moves it earlier, and once
    it fires it moves on to the next deadline; answered reads leave nothing behind."""

    async def scenario() -> None:
        fake = FakeRaft()
        p = make(fake)
        t0 = now()
        first = start(p.fence(CALLER_S))  # the bound: t0 + 5
        await asyncio.sleep(1.0)
        short = start(p.fence(1.0))  # arrives later, ends first: t0 + 2
        await asyncio.sleep(2.0)
        late = start(p.fence(CALLER_S))  # t0 + 3 + 5
        answered = start(p.fence(CALLER_S))
        await settle()
        fake.reads[3](ReadError.SUCCESS)
        assert (await answered).error is None
        answers = [await r for r in (short, first, late)]
        assert [a.at - t0 for a in answers] == [pytest.approx(t) for t in (2.0, 5.0, 8.0)]
        assert all(type(a.error) is Unavailable for a in answers)
        assert not p._reads and p._read_timer is None

    run(scenario)


def test_close_fails_reads_waiting_for_a_read_index() -> None:
    async def scenario() -> None:
        fake = FakeRaft()
        p = make(fake)
        read = start(p.fence(CALLER_S))
        await settle()
        p.close()
        assert type((await read).error) is Unavailable

    run(scenario)
