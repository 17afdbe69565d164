"""Watch fan-out's shared parts: one encoding per revision per group, and the
server-wide message budget (used by ``mcpctl.server.hub``).

*Chunks*: the events of one revision that one group of watchers wants
(watchers on the same key or prefix with the same ``prev_kv`` form a group,
as etcd's watcher groups). A chunk is selected once per group and encoded at
most once, by the first stream that sends it; every other stream of the group
reuses the same bytes. The bytes are the chunk's events as entries of
``WatchResponse.events`` on the wire, so a message is its header field followed
by the chunks' bytes (protobuf concatenation) and is never re-encoded per stream.

*Budget*: a token bucket of ``WATCH_MESSAGES_PER_S`` messages/s shared by every
stream of the member, refilled continuously, holding at most
``rate * WATCH_MESSAGES_BURST_S`` (at least one) messages. A stream that has
something to send takes one message from it: while the bucket has one, the
message goes at once (an idle stream is never delayed); past it the stream
waits until the bucket has refilled its reservation, and the events that
arrive meanwhile go out with it in one message. So the member sends at most
``rate`` messages/s (plus the burst) however many streams are open.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from mcpctl import limits
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl._proto.mcp.v1 import watch_pb2 as watch
from mcpctl.errors import McpError

# The group a watcher belongs to: (key, prefix, prev_kv).
GroupKey = tuple[bytes, bool, bool]


@dataclass(eq=False, slots=True)
class Chunk:
    """One revision's events for one group; shared by its watchers, never mutated."""

    revision: int
    events: list[kv.Event]
    # Sum of the events' ByteSize() (what the queue and message limits count).
    size: int
    _wire: bytes | None = field(default=None, repr=False)

    @classmethod
    def of(cls, revision: int, events: list[kv.Event]) -> Chunk:
        return cls(revision, events, sum(ev.ByteSize() for ev in events))

    def wire(self) -> bytes:
        """The events as ``WatchResponse.events`` entries, encoded once."""
        if self._wire is None:
            self._wire = watch.WatchResponse(events=self.events).SerializeToString()
        return self._wire


def frame(header_field: bytes, chunks: list[Chunk]) -> bytes:
    """A whole ``WatchResponse`` on the wire: its encoded header field (a
    ``WatchResponse`` holding only the header), then every chunk's events."""
    if len(chunks) == 1:
        return header_field + chunks[0].wire()
    return b"".join([header_field, *(c.wire() for c in chunks)])


def group_chunk(
    w: Watcher, entry: raft.HistoryRevision, stripped: dict[int, list[kv.Event]]
) -> Chunk | None:
    """``w``'s group's chunk of one revision (None: nothing it watches);
    ``stripped`` caches each revision's events without prev_kv."""
    if not any(w.matches(ev.kv.key) for ev in entry.events):
        return None
    if w.prev_kv:
        return Chunk.of(entry.revision, w.select(entry))
    bare = stripped.get(entry.revision)
    if bare is None:
        bare = [kv.Event(type=ev.type, kv=ev.kv) for ev in entry.events]
        stripped[entry.revision] = bare
    return Chunk.of(entry.revision, w.select(entry, bare))


def message(header: kv.ResponseHeader, chunks: list[Chunk]) -> watch.WatchResponse:
    """The same message as an object (the etcd API's relay reads it)."""
    msg = watch.WatchResponse()
    msg.header.CopyFrom(header)
    for c in chunks:
        msg.events.extend(c.events)
    return msg


class Wake:
    """``asyncio.Event``'s set/clear/is_set/wait for the one task serving a stream,
    without Event's per-wait loop lookup (``get_running_loop`` checks the pid on
    every call) and waiter list: the loop is looked up once per stream, each
    wait is one bare future. Loop-only, like Event."""

    __slots__ = ("_flag", "_loop", "_waiter")

    def __init__(self) -> None:
        self._flag = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Future[None] | None = None

    def is_set(self) -> bool:
        return self._flag

    def clear(self) -> None:
        self._flag = False

    def set(self) -> None:
        if not self._flag:
            self._flag = True
            waiter = self._waiter
            if waiter is not None:
                self._waiter = None
                if not waiter.done():  # a cancelled wait leaves a done one
                    waiter.set_result(None)

    def rearm(self) -> asyncio.Future[None]:
        """Clear, and the future the next ``set`` completes: the serving task
        awaits it directly (no coroutine per wait). One waiter at a time."""
        self._flag = False
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        return waiter

    async def wait(self) -> None:
        """Until ``set`` (at once if it is set)."""
        if not self._flag:
            await self.rearm()


@dataclass(eq=False)
class Watcher:
    """One watch stream's state in the hub (``mcpctl.server.hub``'s module doc)."""

    id: int
    key: bytes
    prefix: bool
    prev_kv: bool
    progress_interval_s: float | None
    next_revision: int
    synced: bool = True
    queue: deque[Chunk] = field(default_factory=deque)
    queued_bytes: int = 0
    wake: Wake = field(default_factory=Wake)
    error: McpError | None = None
    # Highest revision whose events have been sent (bookmarks never go below it).
    sent_revision: int = 0
    identity: str = ""
    connection: str = ""
    # Watchers of one group select the same events from every revision (set once:
    # key, prefix and prev_kv never change).
    group: GroupKey = field(init=False)

    def __post_init__(self) -> None:
        self.group = (self.key, self.prefix, self.prev_kv)

    def matches(self, key: bytes) -> bool:
        return key.startswith(self.key) if self.prefix else key == self.key

    def select(
        self, entry: raft.HistoryRevision, stripped: list[kv.Event] | None = None
    ) -> list[kv.Event]:
        """This watcher's events of one revision (``stripped``: the same events
        without prev_kv, shared by every watcher that did not ask for it)."""
        out = []
        for i, ev in enumerate(entry.events):
            if self.matches(ev.kv.key):
                if self.prev_kv or not ev.HasField("prev_kv"):
                    out.append(ev)
                elif stripped is not None:
                    out.append(stripped[i])
                else:
                    out.append(kv.Event(type=ev.type, kv=ev.kv))
        return out

    def fail(self, error: McpError) -> None:
        if self.error is None:
            self.error = error
        self.wake.set()


@dataclass(frozen=True, slots=True)
class HubLimits:
    """The hub's limits (docs/limits.md); tests pass small ones."""

    watchers_max: int = limits.WATCHERS_MAX
    queue_revisions_max: int = limits.WATCHER_QUEUE_REVISIONS_MAX
    queue_bytes_max: int = limits.WATCHER_QUEUE_BYTES_MAX
    message_bytes_max: int = limits.WATCH_MESSAGE_BYTES_MAX
    messages_per_s: float = limits.WATCH_MESSAGES_PER_S
    messages_burst_s: float = limits.WATCH_MESSAGES_BURST_S
    per_identity_max: int = limits.WATCHES_PER_IDENTITY_MAX
    per_connection_max: int = limits.WATCHES_PER_CONNECTION_MAX
    catchup_scan_max: int = limits.WATCH_CATCHUP_SCAN_MAX


@dataclass
class HubStats:
    streams_opened: int = 0
    events_sent: int = 0
    messages_sent: int = 0
    slow_marked: int = 0
    compacted_ended: int = 0


class MessageBudget:
    """The member's watch message budget: a token bucket (module doc)."""

    def __init__(self, rate_per_s: float, burst_s: float, now: float) -> None:
        self.rate = rate_per_s
        self.burst = max(1.0, rate_per_s * burst_s)
        self._tokens = self.burst
        self._at = now

    def reserve(self, now: float) -> float:
        """Take one message; the seconds to wait before sending it (0: at once).

        The message is taken even when the caller then waits, so streams that
        wait queue up behind each other: the n-th stream past the budget waits
        about n / rate.
        """
        tokens = self._tokens + (now - self._at) * self.rate
        self._tokens = (tokens if tokens < self.burst else self.burst) - 1.0
        self._at = now
        return 0.0 if self._tokens >= 0.0 else -self._tokens / self.rate

    def available(self, now: float) -> float:
        """Messages that could go at once now (negative: the reservations still owed)."""
        return min(self.burst, self._tokens + (now - self._at) * self.rate)
