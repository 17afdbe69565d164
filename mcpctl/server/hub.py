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
revisions, up to ``WATCH_MESSAGE_BYTES_MAX``). Each message takes one from the
member's budget (``fanout.MessageBudget``: ``WATCH_MESSAGES_PER_S``, a token
bucket): it goes at once while the budget lasts, and past it the stream waits
its turn while its events coalesce, so the number of messages per second stays
bounded however many streams are open, and an idle stream is never delayed.
Watchers on the same key or prefix with the same ``prev_kv`` share each
revision's selected events and their encoding (``fanout.Chunk``); mcp.v1
streams send those bytes as they are (``frames``), the etcd API reads objects
(``stream``).

A node that has not heard from a leader for longer than the election
timeout ends every stream with UNAVAILABLE, so clients move to another node
instead of waiting in silence.

Seams (STYLE 16): the hub needs only ``HubRaft`` of the Raft node, and the
loop's steps are plain methods (``open``, ``next_message``, ``progress``,
``close``, ``check_leader(now)``) that ``stream``/``frames`` and the leader monitor call;
tests drive them by hand with a fake node (tests/hubfake.py), no threads and
no sleeps.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Protocol, TypeVar

import structlog

from mcpctl import limits
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl._proto.mcp.v1 import watch_pb2 as watch
from mcpctl.errors import McpError, ResourceExhausted, Unavailable
from mcpctl.server import auth
from mcpctl.server.fanout import (
    Chunk,
    GroupKey,
    HubLimits,
    HubStats,
    MessageBudget,
    Watcher,
    frame,
    group_chunk,
    message,
)
from mcpctl.state import Applied, Store

log = structlog.get_logger("mcpctl.server.hub")

__all__ = ["HubLimits", "HubRaft", "HubStats", "HubStore", "WatchHub", "Watcher"]

T = TypeVar("T")
M = TypeVar("M", watch.WatchResponse, bytes)
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
        # The same watchers by group (etcd's watcher groups): a publish selects
        # each revision once per group, then only queues it per watcher.
        self._groups: dict[GroupKey, dict[int, Watcher]] = {}
        # Open streams per identity / per connection (the per-open limits).
        self._per_identity: Counter[str] = Counter()
        self._per_connection: Counter[str] = Counter()
        self._ids = itertools.count(1)
        self._schedule: Schedule | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._no_leader_since: float | None = None
        self.budget = MessageBudget(
            self.limits.messages_per_s, self.limits.messages_burst_s, time.monotonic()
        )
        self.stats = HubStats()
        # (revision, encoded header field) of the last live message (_header_field).
        self._header_cache: tuple[int, bytes] | None = None

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
        self._header_cache = None
        if not self._watchers or not entries:
            return
        stripped: dict[int, list[kv.Event]] = {}
        last = entries[-1].revision
        for members in self._groups.values():
            # The group's chunk of each revision (None: nothing it watches),
            # selected once, when a member in sync first needs them.
            chunks: list[tuple[int, Chunk | None]] | None = None
            for w in members.values():
                if not w.synced or w.error is not None:
                    continue
                if chunks is None:
                    chunks = [(e.revision, group_chunk(w, e, stripped)) for e in entries]
                    if not any(c for _, c in chunks):
                        chunks = []  # this group wants none of it
                if chunks:
                    self._queue(w, chunks)
                elif w.next_revision <= last:
                    w.next_revision = last + 1  # nothing below it is owed

    def _queue(self, w: Watcher, chunks: list[tuple[int, Chunk | None]]) -> None:
        """Queue a watcher in sync its group's (revision, chunk) of a publish."""
        lim = self.limits
        queued = False
        for revision, chunk in chunks:
            if revision < w.next_revision:
                continue  # already delivered through catch-up
            w.next_revision = revision + 1
            if chunk is None:
                continue
            if (
                len(w.queue) >= lim.queue_revisions_max
                or w.queued_bytes + chunk.size > lim.queue_bytes_max
            ):
                # Slow: stop live delivery; catch up from history from here.
                w.synced = False
                w.next_revision = revision
                self.stats.slow_marked += 1
                log.info("watcher fell behind", watcher=w.id, revision=revision)
                break
            w.queue.append(chunk)
            w.queued_bytes += chunk.size
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
        self._header_cache = None
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
        if self._per_identity[identity] >= lim.per_identity_max:
            raise ResourceExhausted(
                f"too many watch streams for {identity} ({lim.per_identity_max})"
            )
        if connection and self._per_connection[connection] >= lim.per_connection_max:
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
        self._groups.setdefault(w.group, {})[w.id] = w
        self._per_identity[identity] += 1
        self._per_connection[connection] += 1
        self.stats.streams_opened += 1
        return w, current

    def stream(self, req: watch.WatchRequest) -> AsyncIterator[watch.WatchResponse]:
        """The messages of one watch stream, as objects; raises the error that ends it."""
        return self._serve(req, self.next_message, _same)

    def frames(self, req: watch.WatchRequest) -> AsyncIterator[bytes]:
        """The same stream as encoded ``WatchResponse`` messages (what mcp.v1 sends)."""
        return self._serve(req, self.next_frame, _encode)

    async def _serve(
        self,
        req: watch.WatchRequest,
        take: Callable[[Watcher], M | None],
        encode: Callable[[watch.WatchResponse], M],
    ) -> AsyncIterator[M]:
        w, current = self.open(req)
        try:
            yield encode(watch.WatchResponse(header=self._header(current), created=True))
            while True:
                if w.error is not None:
                    raise w.error
                if w.queue:
                    # Wait for the budget first: what arrives meanwhile joins the message.
                    gap = self.budget.reserve(time.monotonic())
                    if gap > 0:
                        await asyncio.sleep(gap)
                    msg = take(w)
                elif not w.synced:
                    msg = take(w)
                    if msg is None:
                        await asyncio.sleep(0)
                        continue
                    gap = self.budget.reserve(time.monotonic())
                    if gap > 0:
                        await asyncio.sleep(gap)
                else:
                    woken = w.wake.rearm()
                    if w.progress_interval_s is None:
                        await woken
                        continue
                    try:  # a timer, not wait_for's task per wait
                        async with asyncio.timeout(w.progress_interval_s):
                            await woken
                    except TimeoutError:
                        yield encode(self.progress(w))
                    continue
                if msg is not None:
                    yield msg
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
            revision, chunks = self._take(w)
            return message(self._header(revision), chunks)
        if not w.synced:
            return self._catch_up(w)
        return None

    def next_frame(self, w: Watcher) -> bytes | None:
        """``next_message`` already encoded; live events reuse their group's bytes."""
        if w.error is not None:
            raise w.error
        if w.queue:
            revision, chunks = self._take(w)
            return frame(self._header_field(revision), chunks)
        if not w.synced:
            msg = self._catch_up(w)
            return None if msg is None else msg.SerializeToString()
        return None

    def _header_field(self, revision: int) -> bytes:
        """The encoded header of a message at ``revision``, built once for every
        stream sending that revision; rebuilt after each publish and each leader
        check (so its Raft term is at most ``WATCH_LEADER_CHECK_S`` old)."""
        cached = self._header_cache
        if cached is not None and cached[0] == revision:
            return cached[1]
        data = watch.WatchResponse(header=self._header(revision)).SerializeToString()
        self._header_cache = (revision, data)
        return data

    def close(self, w: Watcher) -> None:
        """The stream has ended: forget its watcher."""
        if self._watchers.pop(w.id, None) is None:
            return
        members = self._groups.get(w.group)
        if members is not None:
            members.pop(w.id, None)
            if not members:
                del self._groups[w.group]
        for counts, name in (
            (self._per_identity, w.identity),
            (self._per_connection, w.connection),
        ):
            counts[name] -= 1
            if counts[name] <= 0:
                del counts[name]

    def _take(self, w: Watcher) -> tuple[int, list[Chunk]]:
        """The queued revisions of the next message (at least one) and its header's revision."""
        taken: list[Chunk] = []
        size = 0
        events = 0
        queue = w.queue
        while queue:
            chunk = queue[0]
            if taken and size + chunk.size > self.limits.message_bytes_max:
                break
            queue.popleft()
            taken.append(chunk)
            size += chunk.size
            events += len(chunk.events)
        w.queued_bytes -= size
        w.sent_revision = taken[-1].revision
        self.stats.messages_sent += 1
        self.stats.events_sent += events
        return w.sent_revision, taken

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


def _same(msg: watch.WatchResponse) -> watch.WatchResponse:
    return msg


def _encode(msg: watch.WatchResponse) -> bytes:
    return msg.SerializeToString()
