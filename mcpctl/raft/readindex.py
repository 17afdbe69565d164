"""ReadIndex: linearizable reads without a Raft log entry (Raft thesis §6.4).

A read that arrives on the **leader** waits for a *round*: the leader notes
its commit index (only once it has committed an entry of its own term, e.g.
the no-op PySyncObj appends on election: before that its commit index may
lag entries an earlier leader committed), sends every voter a probe carrying
its term and the round's sequence number, and the round is confirmed when a
majority (itself included) has answered a probe of that round or a later one.
A voter answers only while its term is not above the probe's, so a majority
of answers sent *after* the read arrived proves that no other leader had been
elected by then: every write acknowledged before the read is at or below the
noted index. The read is served once this member has applied that index.
Reads that arrive while a round is in flight share the next round (one in
flight at a time), so a batch of concurrent reads costs one message and one
answer per follower, and nothing in the log.

A read on a **follower** asks the leader for a read index (one ask in flight
at a time, reads arriving meanwhile share the next one); the leader puts the
ask into its next round and answers with the index once the round is
confirmed; the follower serves once it has applied that index. The asks go
over the Raft transport (already connected, authenticated and encrypted, and
handled on the tick thread where the indexes live) rather than the peer gRPC
forwarding, which would cost a gRPC call on both sides.

No clock is trusted: a leader paused (SIGSTOP) or cut off cannot confirm a
round, because the majority's answers must come after the read arrived.

Everything is bounded: reads waiting on a member (``READ_INDEX_PENDING_MAX``,
beyond: ``ResourceExhausted``), asks a leader holds for followers
(``READ_INDEX_ASKS_MAX``, beyond: answered ``BUSY``), and how long a read may
wait here (``READ_INDEX_WAIT_S_MAX``, then ``TIMED_OUT``). A read fails at
once, never waits for nothing, when this member stops leading (``NOT_LEADER``),
when the leader it asked changes or its link closes (``LEADER_CHANGED``), or
when no leader is reachable (``NO_LEADER``).

``ReadIndex`` knows no PySyncObj: ``RaftSyncObj`` is its ``ReadPort``. All
methods but ``submit`` run on the tick thread.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple, Protocol

from pysyncobj.monotonic import monotonic as raft_clock

from mcpctl import limits
from mcpctl.errors import ResourceExhausted
from mcpctl.raft import decisions

PROBE = "mcp_ri_probe"  # leader -> voter: {term, seq}
PROBE_ACK = "mcp_ri_ack"  # voter -> leader: {term, seq}
ASK = "mcp_ri_ask"  # follower -> leader: {id}
REPLY = "mcp_ri_reply"  # leader -> follower: {id, index} or {id, error}
MESSAGES = frozenset((PROBE, PROBE_ACK, ASK, REPLY))


class ReadError(Enum):
    """How a read index request ended (the value is the reason clients see)."""

    SUCCESS = "confirmed"
    NOT_LEADER = "this member stopped leading before the read was confirmed"
    LEADER_CHANGED = "the leader changed, or the link to it closed, before it answered"
    NO_LEADER = "no reachable leader"
    BUSY = "the leader holds too many read index requests"
    TIMED_OUT = "not confirmed in time"


ReadDone = Callable[[ReadError], None]


class ReadView(NamedTuple):
    """What a step needs from PySyncObj, read on the tick thread."""

    is_leader: bool
    term: int
    leader: Any  # the leader's node, or None
    leader_connected: bool  # a follower's link to that leader is up
    voters: Sequence[Any]  # the other voters' nodes
    commit_index: int
    commit_term: int | None  # the term of the entry at commit_index (None: unknown)
    applied: int


class ReadPort(Protocol):
    def read_view(self) -> ReadView: ...

    def read_send(self, node: Any, message: dict[str, Any]) -> bool: ...

    def read_wake(self) -> None:
        """Wake the tick thread (any thread)."""
        ...


@dataclass(eq=False, slots=True)
class _Read:
    done: ReadDone | None  # a read on this member
    asker: tuple[Any, int] | None = None  # (follower node, ask id): a follower's ask


@dataclass(eq=False, slots=True)
class _Batch:
    reads: list[_Read]
    since: float  # raft_clock
    seq: int = 0  # a leader's round
    term: int = 0
    index: int = 0
    leader: Any = None  # a follower's ask: whom it asked
    acks: set[Any] = field(default_factory=set)


class ReadIndex:
    """Read index rounds (leader) and asks (follower) for one member."""

    def __init__(
        self,
        port: ReadPort,
        *,
        pending_max: int = limits.READ_INDEX_PENDING_MAX,
        asks_max: int = limits.READ_INDEX_ASKS_MAX,
        wait_s: float = limits.READ_INDEX_WAIT_S_MAX,
        clock: Callable[[], float] = raft_clock,
    ) -> None:
        self._port = port
        self._pending_max = pending_max
        self._asks_max = asks_max
        self._wait_s = wait_s
        self._clock = clock
        self._incoming: deque[_Read] = deque()  # any thread -> tick thread
        self._woken = False
        self._held = 0  # local reads past _incoming (tick thread)
        self._queued: list[_Read] = []  # waiting for the next round / ask
        self._queued_since = 0.0
        self._remote = 0  # follower asks held by this leader
        self._round: _Batch | None = None
        self._ask: _Batch | None = None
        self._ready: list[_Batch] = []  # confirmed, waiting for the local apply
        self._seq = 0
        self._ask_id = 0
        # The next round (or ask) starts no sooner than this (see ``_gap``).
        self._next_at = 0.0
        self.rounds = 0  # rounds started (a counter for tests and status)
        self.asks = 0  # asks sent

    # -- any thread ------------------------------------------------------------------
    def submit(self, done: ReadDone) -> None:
        """A linearizable read arrived: ``done(error)`` is called once, on the tick
        thread. Past ``READ_INDEX_PENDING_MAX`` waiting reads: ``ResourceExhausted``."""
        waiting = len(self._incoming) + self._held
        if waiting >= self._pending_max:
            raise ResourceExhausted(
                f"too many linearizable reads waiting for a read index ({waiting}); retry later"
            )
        self._incoming.append(_Read(done))
        # Wake the tick thread only when this read can start a round (or an ask):
        # while one is in flight, the step its answer wakes gathers this read into
        # the next; while reads are held back by the gap, the poll's timeout does
        # (``poll_wait``). A wake per read there ran a whole PySyncObj tick per
        # read for nothing (issue #20). Read from this thread without a lock: a
        # round ending meanwhile is caught by ``poll_wait``, which checks the
        # same fields in the opposite order.
        if not self._woken and self._round is None and self._ask is None and not self._queued:
            self._woken = True
            self._port.read_wake()

    # -- tick thread -------------------------------------------------------------------
    def step(self) -> None:
        """Move reads along: start a round or an ask, confirm, serve, expire."""
        # Cleared first, even when idle: a read submitted while the last step
        # drained may have set it after that step cleared it.
        self._woken = False
        if not (self._incoming or self._queued or self._round or self._ask or self._ready):
            return
        now = self._clock()
        while self._incoming:
            if not self._queued:
                self._queued_since = now
            self._queued.append(self._incoming.popleft())
            self._held += 1
        view = self._port.read_view()
        if view.is_leader:
            self._lead(view, now)
        else:
            self._follow(view, now)
        self._serve(view.applied)
        self._expire(now)

    def on_message(self, node: Any, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == PROBE:
            term = message.get("term")
            if isinstance(term, int) and decisions.read_probe_answered(
                term, self._port.read_view().term
            ):
                self._port.read_send(
                    node, {"type": PROBE_ACK, "term": term, "seq": message.get("seq")}
                )
        elif kind == PROBE_ACK:
            r = self._round
            seq = message.get("seq")
            # An answer to this round's probe (or a later one), in its term.
            ours = r is not None and message.get("term") == r.term
            if ours and isinstance(seq, int) and r is not None and seq >= r.seq:
                r.acks.add(node)
        elif kind == ASK:
            self._on_ask(node, message.get("id"))
        elif kind == REPLY:
            self._on_reply(node, message)

    def _on_ask(self, node: Any, ask_id: Any) -> None:
        if not isinstance(ask_id, int):
            return
        if not self._port.read_view().is_leader:
            self._port.read_send(node, {"type": REPLY, "id": ask_id, "error": "NOT_LEADER"})
            return
        if self._remote >= self._asks_max:
            self._port.read_send(node, {"type": REPLY, "id": ask_id, "error": "BUSY"})
            return
        self._remote += 1
        if not self._queued:
            self._queued_since = self._clock()
        self._queued.append(_Read(None, (node, ask_id)))

    def _on_reply(self, node: Any, message: dict[str, Any]) -> None:
        a = self._ask
        if a is None or message.get("id") != a.seq or node != a.leader:
            return  # an answer to an ask already failed or expired
        self._ask = None
        error = message.get("error")
        index = message.get("index")
        if error is None and isinstance(index, int):
            a.index = index
            a.since = self._clock()
            self._ready.append(a)
        else:  # it no longer leads (or did not confirm in time, or holds too many)
            passed = {e.name: e for e in (ReadError.BUSY, ReadError.TIMED_OUT)}
            self._finish(a.reads, passed.get(str(error), ReadError.LEADER_CHANGED))

    # -- leader ------------------------------------------------------------------------
    def _lead(self, view: ReadView, now: float) -> None:
        if self._ask is not None:  # asked another member, then won an election
            self._finish(self._ask.reads, ReadError.LEADER_CHANGED)
            self._ask = None
        r = self._round
        if r is not None:
            if r.term != view.term:
                self._finish(r.reads, ReadError.NOT_LEADER)
                self._round = None
            elif decisions.read_round_confirmed(
                sum(1 for v in view.voters if v in r.acks), len(view.voters)
            ):
                self._confirmed(r, now)
                self._round = None
        if self._round is not None or not self._queued or now < self._next_at:
            return
        if not decisions.read_index_known(view.commit_term, view.term):
            return  # this term's first entry is not committed yet: wait for it
        self._seq += 1
        self.rounds += 1
        self._next_at = self._gap(now)
        r = _Batch(self._queued, now, self._seq, view.term, view.commit_index)
        self._queued = []
        probe = {"type": PROBE, "term": view.term, "seq": r.seq}
        for voter in view.voters:
            self._port.read_send(voter, probe)
        if decisions.read_round_confirmed(0, len(view.voters)):  # a cluster of one
            self._confirmed(r, now)
        else:
            self._round = r

    def _confirmed(self, r: _Batch, now: float) -> None:
        """Followers' asks are answered now (they wait for their own apply); this
        member's reads wait for its apply."""
        local = []
        for read in r.reads:
            if read.asker is None:
                local.append(read)
                continue
            node, ask_id = read.asker
            self._remote -= 1
            self._port.read_send(node, {"type": REPLY, "id": ask_id, "index": r.index})
        if local:
            r.reads, r.since = local, now
            self._ready.append(r)

    # -- follower ----------------------------------------------------------------------
    def _follow(self, view: ReadView, now: float) -> None:
        if self._round is not None:  # led, then stepped down
            self._finish(self._round.reads, ReadError.NOT_LEADER)
            self._round = None
        held = [read for read in self._queued if read.asker is not None]
        if held:  # followers' asks held as leader, then stepped down
            self._finish(held, ReadError.NOT_LEADER)
            self._queued = [read for read in self._queued if read.asker is None]
        a = self._ask
        if a is not None and (
            view.leader != a.leader or view.term != a.term or not view.leader_connected
        ):
            self._finish(a.reads, ReadError.LEADER_CHANGED)
            self._ask = None
        if self._ask is not None or not self._queued or now < self._next_at:
            return
        if view.leader is None or not view.leader_connected:
            self._finish(self._queued, ReadError.NO_LEADER)
            self._queued = []
            return
        self._ask_id += 1
        self.asks += 1
        self._next_at = self._gap(now)
        self._ask = _Batch(self._queued, now, self._ask_id, view.term, leader=view.leader)
        self._queued = []
        self._port.read_send(view.leader, {"type": ASK, "id": self._ask_id})

    # -- both ---------------------------------------------------------------------------
    def _gap(self, now: float) -> float:
        """When the round (or ask) after the one starting now may start: when this
        one carries several reads (the member is busy), the next one gathers
        reads for ``READ_INDEX_GAP_S_PER_READ`` per read this one carries, up to
        ``READ_INDEX_GAP_S_MAX``. One read at a time waits nothing extra."""
        reads = len(self._queued)
        if reads < 2:
            return now
        return now + min(limits.READ_INDEX_GAP_S_MAX, limits.READ_INDEX_GAP_S_PER_READ * reads)

    def poll_wait(self, wait_s: float) -> float:
        """How long the tick thread may wait for events (at most ``wait_s``): until
        a round or ask held back by the gap may start; not at all when a read
        arrived without waking it (``submit``) and a round may start now."""
        if self._round is not None or self._ask is not None:
            return wait_s
        if not self._queued:
            return 0.0 if self._incoming else wait_s
        return max(0.0, min(wait_s, self._next_at - self._clock()))

    def _serve(self, applied: int) -> None:
        if not self._ready:
            return
        waiting = []
        for batch in self._ready:
            if batch.index <= applied:
                self._finish(batch.reads, ReadError.SUCCESS)
            else:
                waiting.append(batch)
        self._ready = waiting

    def _expire(self, now: float) -> None:
        deadline = now - self._wait_s
        if self._queued and self._queued_since < deadline:
            self._finish(self._queued, ReadError.TIMED_OUT)
            self._queued = []
        if self._round is not None and self._round.since < deadline:
            self._finish(self._round.reads, ReadError.TIMED_OUT)
            self._round = None
        if self._ask is not None and self._ask.since < deadline:
            self._finish(self._ask.reads, ReadError.TIMED_OUT)
            self._ask = None
        if self._ready and any(b.since < deadline for b in self._ready):
            for b in self._ready:
                if b.since < deadline:
                    self._finish(b.reads, ReadError.TIMED_OUT)
            self._ready = [b for b in self._ready if b.since >= deadline]

    def _finish(self, reads: list[_Read], error: ReadError) -> None:
        for read in reads:
            if read.asker is not None:
                if error is not ReadError.SUCCESS:
                    node, ask_id = read.asker
                    self._remote -= 1
                    self._port.read_send(node, {"type": REPLY, "id": ask_id, "error": error.name})
                continue
            self._held -= 1
            assert read.done is not None
            read.done(error)
