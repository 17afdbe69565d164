"""The watch hub: fans applied revisions out to watch streams.

Threads: the Raft tick thread applies entries and hands the new revisions to
the asyncio loop with one ``call_soon_threadsafe`` per Raft entry — it never
waits for a watcher. Everything else runs on the loop.

Each stream has a ``Watcher`` with ``next_revision`` (every matching event
below it has been queued or sent) and a bounded queue. An *in-sync* watcher
gets live events queued; when its queue passes ``WATCHER_QUEUE_REVISIONS_MAX``
or ``WATCHER_QUEUE_BYTES_MAX`` it becomes *slow*: it stops taking live events,
drains what it has, then catches up from the store's history in bounded
steps, and is in sync again when it reaches the store's revision. If the
history it needs was compacted meanwhile, the stream ends with
FAILED_PRECONDITION and the oldest available revision. Nothing is dropped
silently. Catch-up and live delivery both run on the loop, and a revision is
queued only when it is ``>= next_revision``, so no event is sent twice and
none is skipped (the store is updated before a revision is published, so a
catch-up read sees every revision whose publication it has not yet seen).

Messages: all events waiting for a stream go out in one message (whole
revisions, up to ``WATCH_MESSAGE_BYTES_MAX``); a stream waits
``streams / WATCH_MESSAGES_PER_S`` seconds between messages, so the number of
messages per second stays bounded however many streams are open.

A node that has not heard from a leader for longer than the election
timeout ends every stream with UNAVAILABLE, so clients move to another node
instead of waiting in silence.

Seams (STYLE 16): the hub needs only ``HubRaft`` of the Raft node, and the
loop's steps are plain methods (``open``, ``next_message``, ``progress``,
``close``, ``check_leader(now)``) that ``stream`` and the leader monitor call;
tests drive them by hand with a fake node (tests/hubfake.py), no threads and
no sleeps.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import structlog

from mcpctl import limits
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl._proto.mcp.v1 import watch_pb2 as watch
from mcpctl.errors import McpError, ResourceExhausted, Unavailable
from mcpctl.server import auth
from mcpctl.state import Applied, Store

log = structlog.get_logger("mcpctl.server.hub")

T = TypeVar("T")
HeaderFn = Callable[[int], kv.ResponseHeader]
ApplyListener = Callable[[Sequence[Applied]], None]
ResetListener = Callable[[Store], None]
# Hands a callback to the hub's loop from another thread (the loop's
# ``call_soon_threadsafe``; tests collect the callbacks and run them by hand).
Schedule = Callable[[Callable[[], None]], object]


class HubStore(Protocol):
    """What the hub needs of the replicated store (``StoreConsumer``). The store's
    apply hooks are wired to ``WatchHub.on_applied``/``on_reset`` by whoever
    builds both (``build_node``), not by the hub."""

    def read(self, fn: Callable[[Store], T]) -> T:
        """``fn(store)`` under the store's lock, from any thread."""
        ...


class HubRaft(Protocol):
    """What the hub needs of the Raft node (``RaftNode``)."""

    @property
    def consumer(self) -> HubStore: ...

    def hears_leader(self) -> bool:
        """A leader is known and was heard from within the election timeout."""
        ...

    @property
    def restored(self) -> bool:
        """This member has applied what it had before it started (it may serve reads)."""
        ...


@dataclass(eq=False)
class Watcher:
    id: int
    key: bytes
    prefix: bool
    prev_kv: bool
    progress_interval_s: float | None
    next_revision: int
    synced: bool = True
    queue: deque[tuple[int, list[kv.Event], int]] = field(default_factory=deque)
    queued_bytes: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    error: McpError | None = None
    # Highest revision whose events have been sent (bookmarks never go below it).
    sent_revision: int = 0
    identity: str = ""
    connection: str = ""

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


class WatchHub:
    def __init__(
        self,
        raft_node: HubRaft,
        header: HeaderFn,
        *,
        leader_timeout_s: float,
        hub_limits: HubLimits | None = None,
    ) -> None:
        self._raft = raft_node
        self._header = header
        self._leader_timeout_s = leader_timeout_s
        self.limits = hub_limits or HubLimits()
        self._watchers: dict[int, Watcher] = {}
        self._ids = itertools.count(1)
        self._schedule: Schedule | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._no_leader_since: float | None = None
        self.stats = HubStats()

    # -- wiring ------------------------------------------------------------------
    def start(self) -> None:
        """Attach to the running loop and to the store's apply hooks."""
        self.attach(asyncio.get_running_loop().call_soon_threadsafe)
        self._monitor = asyncio.create_task(self._watch_leader())

    def attach(self, schedule: Schedule) -> None:
        """``schedule`` hands work from the tick thread to the hub's loop."""
        self._schedule = schedule

    def stop(self) -> None:
        """End every stream; what the store reports afterwards is ignored."""
        self._schedule = None
        if self._monitor is not None:
            self._monitor.cancel()
        for w in list(self._watchers.values()):
            w.fail(Unavailable("node is shutting down"))

    @property
    def watchers(self) -> int:
        return len(self._watchers)

    # -- tick thread (the store's apply hooks, wired by build_node) ------------------
    def on_applied(self, results: Sequence[Applied]) -> None:
        # Every history entry of the entry, in order (a lease expiry writes several).
        written = [entry for a in results for entry in a.writes]
        if written and self._schedule is not None:
            self._schedule(lambda: self._publish(written))

    def on_reset(self, store: Store) -> None:
        if self._schedule is not None:
            self._schedule(self._desync_all)

    # -- loop ------------------------------------------------------------------------
    def _publish(self, entries: list[raft.HistoryRevision]) -> None:
        if not self._watchers:
            return
        stripped = {
            entry.revision: [kv.Event(type=ev.type, kv=ev.kv) for ev in entry.events]
            for entry in entries
        }
        for w in self._watchers.values():
            if not w.synced or w.error is not None:
                continue
            queued = False
            for entry in entries:
                if entry.revision < w.next_revision:
                    continue  # already delivered through catch-up
                events = w.select(entry, stripped[entry.revision])
                w.next_revision = entry.revision + 1
                if not events:
                    continue
                size = sum(ev.ByteSize() for ev in events)
                if (
                    len(w.queue) >= self.limits.queue_revisions_max
                    or w.queued_bytes + size > self.limits.queue_bytes_max
                ):
                    # Slow: stop live delivery; catch up from history from here.
                    w.synced = False
                    w.next_revision = entry.revision
                    self.stats.slow_marked += 1
                    log.info("watcher fell behind", watcher=w.id, revision=entry.revision)
                    break
                w.queue.append((entry.revision, events, size))
                w.queued_bytes += size
                queued = True
            if queued or not w.synced:
                w.wake.set()

    def _desync_all(self) -> None:
        """A snapshot replaced the store: everyone re-reads from history."""
        for w in self._watchers.values():
            w.synced = False
            w.wake.set()

    def _hears_leader(self) -> bool:
        return self._raft.hears_leader()

    async def _watch_leader(self) -> None:
        while True:
            await asyncio.sleep(limits.WATCH_LEADER_CHECK_S)
            self.check_leader(time.monotonic())

    def check_leader(self, now: float) -> None:
        """One check of the leader monitor: past the timeout without a leader, end every stream."""
        if self._hears_leader():
            self._no_leader_since = None
            return
        if self._no_leader_since is None:
            self._no_leader_since = now
        if now - self._no_leader_since < self._leader_timeout_s:
            return
        if self._watchers:
            log.warning("no leader; ending watch streams", streams=len(self._watchers))
        for w in list(self._watchers.values()):
            w.fail(
                Unavailable(
                    f"this member has had no leader for over "
                    f"{self._leader_timeout_s * 1000:.0f} ms; watch another member"
                )
            )

    # -- a stream ----------------------------------------------------------------------
    def open(self, req: watch.WatchRequest) -> tuple[Watcher, int]:
        """Register a stream; its watcher and the member's revision now."""
        if not self._raft.restored:
            # A watch is a read: never from a store older than one this member served.
            raise Unavailable(
                "this member is still restoring its data after a start; retry another member"
            )
        lim = self.limits
        if len(self._watchers) >= lim.watchers_max:
            raise ResourceExhausted(f"too many watch streams on this member ({lim.watchers_max})")
        identity = auth.current_identity.get().name
        connection = auth.current_peer.get()
        per_identity = sum(1 for w in self._watchers.values() if w.identity == identity)
        if per_identity >= lim.per_identity_max:
            raise ResourceExhausted(
                f"too many watch streams for {identity} ({lim.per_identity_max})"
            )
        per_connection = sum(1 for w in self._watchers.values() if w.connection == connection)
        if connection and per_connection >= lim.per_connection_max:
            raise ResourceExhausted(
                f"too many watch streams on one connection ({lim.per_connection_max}); "
                "open another channel"
            )
        # Asked now, not through the monitor's flag: that one is up to
        # WATCH_LEADER_CHECK_S old and would refuse watches for a while after
        # a leader is known (e.g. just after start-up).
        if not self._hears_leader():
            raise Unavailable("this member has no leader; watch another member")
        current = self._raft.consumer.read(lambda s: s.revision)
        interval = (
            req.progress_interval_ms / 1000
            if req.progress_interval_ms
            else limits.WATCH_PROGRESS_INTERVAL_S_DEFAULT
        )
        w = Watcher(
            id=next(self._ids),
            key=req.key,
            prefix=req.prefix,
            prev_kv=req.prev_kv,
            progress_interval_s=interval if req.progress_notify else None,
            next_revision=req.start_revision or current + 1,
            synced=False,
            identity=identity,
            connection=connection,
        )
        self._watchers[w.id] = w
        self.stats.streams_opened += 1
        return w, current

    async def stream(self, req: watch.WatchRequest) -> AsyncIterator[watch.WatchResponse]:
        """The messages of one watch stream; raises the error that ends it."""
        w, current = self.open(req)
        try:
            yield watch.WatchResponse(header=self._header(current), created=True)
            while True:
                msg = self.next_message(w)
                if msg is not None:
                    yield msg
                    await self._pace()
                elif not w.synced:
                    await asyncio.sleep(0)
                else:
                    w.wake.clear()
                    try:
                        await asyncio.wait_for(w.wake.wait(), w.progress_interval_s)
                    except TimeoutError:
                        yield self.progress(w)
        finally:
            self.close(w)

    def next_message(self, w: Watcher) -> watch.WatchResponse | None:
        """The stream's next message, if one is ready; raises the error that ends it.

        None: nothing to send now. Call again after yielding to the loop while
        ``w.synced`` is false (catch-up goes on); otherwise wait for ``w.wake``.
        """
        if w.error is not None:
            raise w.error
        if w.queue:
            return self._drain(w)
        if not w.synced:
            return self._catch_up(w)
        return None

    def close(self, w: Watcher) -> None:
        """The stream has ended: forget its watcher."""
        self._watchers.pop(w.id, None)

    def _drain(self, w: Watcher) -> watch.WatchResponse:
        msg = watch.WatchResponse()
        size = 0
        while w.queue:
            revision, events, n = w.queue[0]
            if msg.events and size + n > self.limits.message_bytes_max:
                break
            w.queue.popleft()
            w.queued_bytes -= n
            msg.events.extend(events)
            size += n
            w.sent_revision = revision
        msg.header.CopyFrom(self._header(w.sent_revision))
        self.stats.messages_sent += 1
        self.stats.events_sent += len(msg.events)
        return msg

    def _catch_up(self, w: Watcher) -> watch.WatchResponse | None:
        """One bounded step from history; marks the watcher in sync at the end."""

        def step(store: Store) -> watch.WatchResponse | None:
            msg = watch.WatchResponse()
            size = 0
            last = 0
            entries = store.history_since(w.next_revision)
            for scanned, entry in enumerate(entries):
                if scanned >= self.limits.catchup_scan_max:
                    break
                events = w.select(entry)
                n = sum(ev.ByteSize() for ev in events)
                if msg.events and size + n > self.limits.message_bytes_max:
                    break
                msg.events.extend(events)
                size += n
                last = entry.revision
                if events:
                    w.sent_revision = entry.revision
            else:
                # Reached the end of history: in sync from the next revision on.
                w.next_revision = max(w.next_revision, store.revision + 1)
                w.synced = True
                return self._finish_catch_up(w, msg)
            w.next_revision = last + 1
            return self._finish_catch_up(w, msg)

        try:
            result = self._raft.consumer.read(step)
        except McpError as e:
            self.stats.compacted_ended += 1
            raise e
        return result

    def _finish_catch_up(self, w: Watcher, msg: watch.WatchResponse) -> watch.WatchResponse | None:
        if not msg.events:
            return None
        msg.header.CopyFrom(self._header(w.sent_revision))
        self.stats.messages_sent += 1
        self.stats.events_sent += len(msg.events)
        return msg

    def progress(self, w: Watcher) -> watch.WatchResponse:
        """The bookmark an idle stream sends when its progress interval passes."""
        # In sync with an empty queue: every revision below next_revision has
        # been sent. Capped by the store's revision for a watch that starts in
        # the future (nothing between it and the start is owed).
        current = self._raft.consumer.read(lambda s: s.revision)
        revision = max(w.sent_revision, min(w.next_revision - 1, current))
        return watch.WatchResponse(header=self._header(revision), progress=True)

    def pace_s(self) -> float:
        """How long a stream waits after each message (the message budget)."""
        return len(self._watchers) / self.limits.messages_per_s

    async def _pace(self) -> None:
        gap = self.pace_s()
        if gap >= 0.001:
            await asyncio.sleep(gap)
