"""The watch hub's rules (DESIGN §4, STYLE 7), on a fake Raft node driven by hand.

Each test names the rule it protects in its docstring. The fake
(tests/hubfake.py) applies entries and runs the hub's loop callbacks when
the test says so; ``Reader`` pulls what a stream would send. No threads, no
sleeps, no network.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

import pytest

from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl._proto.mcp.v1 import watch_pb2 as watch
from mcpctl.errors import Compacted, ResourceExhausted, Unavailable
from mcpctl.server.hub import WatchHub
from mcpctl.state import HistoryLimits, Store
from tests.hubfake import (
    LEADER_TIMEOUT_S,
    FakeRaft,
    Reader,
    event_revisions,
    header,
    make_hub,
    message_revisions,
)


def put_many(node: FakeRaft, count: int, prefix: str = "/a/") -> list[int]:
    """``count`` puts, one Raft entry each, the hub's loop run after each."""
    revisions = []
    for i in range(count):
        revisions.append(node.put(f"{prefix}{i % 3}", str(i)))
        node.run_loop()
    return revisions


# ----------------------------------------------------------------- never blocks apply
def test_apply_only_schedules_the_hub_once_per_raft_entry() -> None:
    """Slow watchers never block apply: the tick thread hands each entry to the
    loop with one callback and returns; no watcher work runs on it."""
    node = FakeRaft()
    hub = make_hub(node, queue_revisions_max=2)
    stalled = Reader.open(hub, "/a/")
    stalled.read()
    node.puts(("/a/1", "x"), ("/a/2", "y"), ("/a/3", "z"))
    node.put("/a/4")
    assert len(node.scheduled) == 2  # one per Raft entry, not per revision or watcher
    assert not stalled.watcher.queue  # nothing queued until the loop runs
    node.run_loop()
    assert len(stalled.watcher.queue) == 2


def test_stalled_watcher_is_moved_aside_and_others_keep_receiving() -> None:
    """A watcher whose queue is full is marked slow: it takes no more live
    events (its queue stays bounded) and other watchers are not affected."""
    node = FakeRaft()
    hub = make_hub(node, queue_revisions_max=4)
    stalled = Reader.open(hub, "/a/")
    fast = Reader.open(hub, "/a/")
    stalled.read()
    for i in range(10):
        node.put(f"/a/{i}")
        node.run_loop()
        fast.read()
        assert len(stalled.watcher.queue) <= 4
    assert not stalled.watcher.synced
    assert hub.stats.slow_marked == 1
    assert fast.watcher.synced
    assert event_revisions(fast.received) == list(range(1, 11))


def test_queue_bytes_max_also_marks_a_watcher_slow() -> None:
    """The queue is bounded in bytes as well as revisions."""
    node = FakeRaft()
    hub = make_hub(node, queue_bytes_max=100)
    stalled = Reader.open(hub, "/a/")
    stalled.read()
    node.put("/a/x", "v" * 60)
    node.run_loop()
    assert stalled.watcher.synced
    node.put("/a/y", "v" * 60)
    node.run_loop()
    assert not stalled.watcher.synced
    assert stalled.watcher.queued_bytes <= 100


# ----------------------------------------------------------------------- catch-up
def test_slow_watcher_catches_up_from_history_in_bounded_batches() -> None:
    """A slow watcher drains its queue, then catches up from history in steps of
    at most catchup_scan_max revisions, then is live again: every event in
    order, none twice, none missing."""
    node = FakeRaft()
    hub = make_hub(node, queue_revisions_max=4, catchup_scan_max=3)
    reader = Reader.open(hub, "/a/")
    reader.read()
    put_many(node, 20)
    assert not reader.watcher.synced
    messages = reader.read()
    batches = message_revisions(messages)
    assert batches[0] == [1, 2, 3, 4]  # the queue, drained in one message
    assert all(len(batch) <= 3 for batch in batches[1:])  # catch-up steps
    assert event_revisions(messages) == list(range(1, 21))
    assert reader.watcher.synced
    node.put("/a/live")
    node.run_loop()
    assert event_revisions(reader.read()) == [21]
    assert event_revisions(reader.received) == list(range(1, 22))


def test_catch_up_ahead_of_publication_sends_nothing_twice() -> None:
    """The store is updated before a revision is published: a catch-up that
    reads revisions the hub has not been told about yet skips them later."""
    node = FakeRaft()
    hub = make_hub(node, queue_revisions_max=1)
    reader = Reader.open(hub, "/a/")
    reader.read()
    put_many(node, 3)  # marked slow at revision 2
    node.put("/a/x")  # applied, its publication still on the way
    node.put("/a/y")
    assert event_revisions(reader.read()) == [1, 2, 3, 4, 5]  # 4, 5 from history
    node.run_loop()  # the late publications arrive
    assert reader.read() == []
    node.put("/a/z")
    node.run_loop()
    assert event_revisions(reader.read()) == [6]


def test_catch_up_skips_revisions_of_other_keys_without_empty_messages() -> None:
    """A catch-up step that scans only other keys' revisions sends no message."""
    node = FakeRaft()
    hub = make_hub(node, queue_revisions_max=1, catchup_scan_max=2)
    reader = Reader.open(hub, "/a/")
    reader.read()
    put_many(node, 2)  # slow at revision 2
    put_many(node, 7, prefix="/b/")
    node.put("/a/last")
    node.run_loop()
    messages = reader.read()
    assert all(msg.events for msg in messages)
    assert event_revisions(messages) == [1, 2, 10]


def test_start_revision_replays_history_then_continues_live() -> None:
    """Resumable: start_revision replays history from that revision, then live;
    the created header carries the member's revision at the start."""
    node = FakeRaft()
    hub = make_hub(node)
    put_many(node, 5)
    reader = Reader.open(hub, "/a/", start_revision=2)
    assert reader.created_revision == 5
    assert event_revisions(reader.read()) == [2, 3, 4, 5]
    node.put("/a/6")
    node.run_loop()
    assert event_revisions(reader.read()) == [6]


def test_start_revision_in_the_future_waits_for_it() -> None:
    """A watch from a future revision delivers nothing before it."""
    node = FakeRaft()
    hub = make_hub(node)
    put_many(node, 2)
    reader = Reader.open(hub, "/a/", start_revision=4)
    assert reader.read() == []
    put_many(node, 3)
    assert event_revisions(reader.read()) == [4, 5]


def test_start_revision_compacted_fails_with_the_oldest_revision() -> None:
    """Resumable or compacted: a start_revision below the compact revision ends
    the stream with Compacted naming the oldest available revision."""
    node = FakeRaft()
    hub = make_hub(node)
    put_many(node, 6)
    node.compact(4)
    reader = Reader.open(hub, "/a/", start_revision=2)
    assert reader.read() == []
    assert isinstance(reader.error, Compacted)
    assert reader.error.compact_revision == 4
    assert hub.watchers == 0
    assert hub.stats.compacted_ended == 1


# ----------------------------------------------------------- compaction while behind
def test_compaction_while_catching_up_ends_compacted_not_thinned() -> None:
    """Reliable: when the history a catching-up watcher needs is compacted, the
    stream ends with Compacted and the oldest revision; what it got before
    has no gap, and nothing after the gap is delivered."""
    node = FakeRaft()
    hub = make_hub(node, queue_revisions_max=2, catchup_scan_max=2)
    reader = Reader.open(hub, "/a/")
    reader.read()
    put_many(node, 10)
    got = reader.read(messages_max=2)  # the queue, then one catch-up step
    assert event_revisions(got) == [1, 2, 3, 4]
    node.compact(8)
    assert reader.read() == []
    assert isinstance(reader.error, Compacted)
    assert (reader.error.revision, reader.error.compact_revision) == (5, 8)
    assert event_revisions(reader.received) == [1, 2, 3, 4]


def test_history_ring_overrun_while_stalled_ends_compacted() -> None:
    """A stalled watcher whose history ran out of the bounded ring ends with
    Compacted (the ring's oldest revision), after what its queue held."""
    node = FakeRaft(HistoryLimits(revisions_max=5))
    hub = make_hub(node, queue_revisions_max=3)
    reader = Reader.open(hub, "/a/")
    reader.read()
    put_many(node, 20)
    messages = reader.read()
    assert event_revisions(messages) == [1, 2, 3]
    assert isinstance(reader.error, Compacted)
    assert reader.error.compact_revision == 16


def test_snapshot_install_makes_watchers_catch_up_from_the_new_store() -> None:
    """A snapshot replacing the store desyncs every watcher; each re-reads from
    the new store's history, without gap or duplicate."""
    node = FakeRaft()
    hub = make_hub(node)
    reader = Reader.open(hub, "/a/")
    put_many(node, 3)
    reader.read()
    ahead = Store.from_bytes(node.store.to_bytes())
    for i in range(2):
        ahead.apply(raft.InternalRequest(put=kv.PutRequest(key=f"/a/s{i}".encode())))
    node.install(ahead)
    node.run_loop()
    assert not reader.watcher.synced
    assert event_revisions(reader.read()) == [4, 5]
    assert event_revisions(reader.received) == [1, 2, 3, 4, 5]


# ------------------------------------------------------------------------ atomic
def test_txn_events_arrive_in_one_message_live_and_from_history() -> None:
    """Atomic: all events of one revision (a txn) are in one message, live and
    in catch-up, even when the revision is bigger than message_bytes_max."""
    node = FakeRaft()
    hub = make_hub(node, message_bytes_max=1)
    live = Reader.open(hub, "/a/")
    live.read()
    rev = node.txn(*[(f"/a/{i}", "v" * 50) for i in range(5)])
    node.run_loop()
    assert message_revisions(live.read()) == [[rev]]
    assert len(live.received[0].events) == 5
    replay = Reader.open(hub, "/a/", start_revision=1)
    messages = replay.read()
    assert message_revisions(messages) == [[rev]]
    assert len(messages[0].events) == 5


def test_message_bytes_max_packs_whole_revisions() -> None:
    """Message budget: what waits for a stream goes out in as few messages as
    message_bytes_max allows, each of whole revisions, in order."""
    node = FakeRaft()
    node.put("/a/probe", "v" * 40)
    event_size = next(node.store.history_since(1)).events[0].ByteSize()
    hub = make_hub(node, message_bytes_max=3 * event_size)
    reader = Reader.open(hub, "/a/", start_revision=2)
    reader.read()
    for i in range(7):
        node.put(f"/a/k{i}", "v" * 40)
        node.run_loop()
    messages = reader.read()
    assert message_revisions(messages) == [[2, 3, 4], [5, 6, 7], [8]]
    assert all(
        msg.header.revision == max(msg_rev)
        for msg, msg_rev in zip(messages, message_revisions(messages), strict=True)
    )


def test_events_waiting_while_paced_coalesce_into_one_message() -> None:
    """Message budget: past the budget a stream waits its turn (the 1000th
    stream past a drained budget of 4000/s waits 0.25 s); revisions applied
    meanwhile go out together in its next message."""
    node = FakeRaft()
    hub = make_hub(node, messages_per_s=4000.0, messages_burst_s=0.25)
    readers = [Reader.open(hub, "/a/") for _ in range(1000)]
    now = time.monotonic() + 1.0  # the budget is full by then
    waits = [hub.budget.reserve(now) for _ in range(2000)]
    assert waits[999] == 0.0 and waits[1000] > 0.0 and waits[-1] == pytest.approx(0.25)
    for r in readers:
        r.read()
    put_many(node, 5)  # while every stream waits its turn
    assert message_revisions(readers[0].read()) == [[1, 2, 3, 4, 5]]
    assert hub.stats.messages_sent == 1


# ------------------------------------------------------------------------ filters
def test_watch_selects_its_keys_and_prev_kv_only_when_asked() -> None:
    """A key watch gets only that key; a prefix watch every key under it;
    prev_kv is sent only to a stream that asked for it."""
    node = FakeRaft()
    hub = make_hub(node)
    key = Reader.open(hub, "/a/x", prefix=False)
    with_prev = Reader.open(hub, "/a/", prev_kv=True)
    for r in (key, with_prev):
        r.read()
    node.put("/a/x", "1")
    node.put("/a/x", "2")
    node.put("/a/xy", "1")
    node.put("/b/x", "1")
    node.run_loop()
    assert event_revisions(key.read()) == [1, 2]
    messages = with_prev.read()
    assert event_revisions(messages) == [1, 2, 3]
    assert [ev.HasField("prev_kv") for ev in messages[0].events] == [False, True, False]
    assert not any(ev.HasField("prev_kv") for ev in key.received[0].events)


# ---------------------------------------------------------------------- progress
def test_progress_follows_the_store_and_never_goes_below_an_event_sent() -> None:
    """Bookmarkable: an idle stream's progress revision is the store's revision
    (other keys' writes included), never below an event already sent, and
    capped at the store's revision for a watch that starts in the future."""
    node = FakeRaft()
    hub = make_hub(node)
    reader = Reader.open(hub, "/a/")
    future = Reader.open(hub, "/a/", start_revision=50)
    for r in (reader, future):
        r.read()
    node.put("/a/x")
    node.run_loop()
    assert event_revisions(reader.read()) == [1]
    reader.watcher.wake.clear()  # idle: stream() waits for wake or the interval
    put_many(node, 3, prefix="/b/")
    assert not reader.watcher.wake.is_set()  # other keys do not wake it
    bookmark = hub.progress(reader.watcher)
    assert bookmark.progress and bookmark.header.revision == 4
    assert hub.progress(future.watcher).header.revision == 4


# -------------------------------------------------------------------- leader, limits
def test_no_leader_past_the_timeout_ends_streams_with_unavailable() -> None:
    """A member without a leader for longer than the election timeout ends its
    streams with Unavailable and refuses new ones; a leader heard resets it."""
    node = FakeRaft()
    hub = make_hub(node)
    reader = Reader.open(hub, "/a/")
    reader.read()
    node.leader = False
    with pytest.raises(Unavailable):
        Reader.open(hub, "/a/")
    hub.check_leader(now=10.0)
    node.leader = True
    hub.check_leader(now=10.0 + LEADER_TIMEOUT_S)  # heard again: the clock restarts
    node.leader = False
    hub.check_leader(now=20.0)
    hub.check_leader(now=20.0 + LEADER_TIMEOUT_S / 2)
    assert reader.read() == [] and reader.error is None
    hub.check_leader(now=20.0 + LEADER_TIMEOUT_S)
    reader.read()
    assert isinstance(reader.error, Unavailable)
    assert hub.watchers == 0


def test_watchers_max_refuses_the_next_stream_until_one_closes() -> None:
    """At most watchers_max streams per member; a closed stream frees its slot."""
    node = FakeRaft()
    hub = make_hub(node, watchers_max=2)
    first = Reader.open(hub, "/a/")
    Reader.open(hub, "/a/")
    with pytest.raises(ResourceExhausted):
        Reader.open(hub, "/a/")
    hub.close(first.watcher)
    Reader.open(hub, "/a/")


def test_stop_ends_every_stream_and_ignores_later_changes() -> None:
    """Stopping the hub ends every stream with Unavailable; what the store reports
    afterwards (the builder unhooks it next) schedules nothing."""
    node = FakeRaft()
    hub = make_hub(node)
    reader = Reader.open(hub, "/a/")
    hub.stop()
    node.put("/a/x")
    assert node.scheduled == []
    reader.read()
    assert isinstance(reader.error, Unavailable)


# -------------------------------------------------------------------- the async shell
def test_stream_sends_created_then_events_and_forgets_the_watcher_when_closed() -> None:
    """stream() is the thin async shell around next_message: created first
    (header: the member's revision), then events, and the watcher goes when
    the stream is closed. One loop in this thread, nothing sleeps."""
    node = FakeRaft()
    hub = WatchHub(node, header, leader_timeout_s=LEADER_TIMEOUT_S)
    node.put("/a/0")

    async def scenario() -> list[watch.WatchResponse]:
        hub.attach(asyncio.get_running_loop().call_soon_threadsafe)
        node.listen(hub.on_applied, hub.on_reset)
        stream = hub.stream(watch.WatchRequest(key=b"/a/", prefix=True))
        assert isinstance(stream, AsyncGenerator)
        got = [await anext(stream)]
        node.put("/a/1")
        node.txn(("/a/2", "x"), ("/a/3", "y"))
        got.append(await anext(stream))
        assert hub.watchers == 1
        await stream.aclose()
        return got

    created, events = asyncio.run(scenario())
    assert created.created and created.header.revision == 1
    assert message_revisions([events]) == [[2, 3]]
    assert hub.watchers == 0


def test_a_member_still_restoring_opens_no_stream() -> None:
    """A watch is a read: until the member has applied what it had before it
    started, opening a stream answers Unavailable (never an older store)."""
    node = FakeRaft()
    hub = make_hub(node)
    node.restored = False
    with pytest.raises(Unavailable, match="restoring"):
        Reader.open(hub, "/a/")
    node.restored = True
    Reader.open(hub, "/a/")
