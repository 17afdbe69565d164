"""Watch fan-out (mcpctl/server/fanout.py): shared chunks and encodings, the
message budget, and the encoded stream mcp.v1 sends. A fake Raft node driven
by hand (tests/hubfake.py); the budget takes ``now`` as an argument."""

from __future__ import annotations

import asyncio

import pytest

from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import watch_pb2 as watch
from mcpctl.errors import ResourceExhausted
from mcpctl.server.fanout import MessageBudget, Wake
from mcpctl.server.hub import WatchHub
from tests.hubfake import (
    LEADER_TIMEOUT_S,
    FakeRaft,
    Reader,
    event_revisions,
    header,
    make_hub,
    message_revisions,
)


# ----------------------------------------------------------------------- the budget
def test_budget_sends_at_once_while_it_lasts_and_never_delays_an_idle_stream() -> None:
    """A full budget lets a message go at once; after a quiet spell it is full again."""
    budget = MessageBudget(100.0, 0.1, now=0.0)  # 10 messages of burst
    assert [budget.reserve(0.0) for _ in range(10)] == [0.0] * 10
    assert budget.reserve(0.0) == pytest.approx(0.01)
    # A second later (refilled continuously, capped at the burst): at once again.
    assert budget.reserve(1.0) == 0.0
    assert budget.available(1.0) == pytest.approx(9.0)
    assert budget.available(100.0) == pytest.approx(10.0)


def test_budget_past_its_limit_queues_streams_behind_each_other() -> None:
    """Past the budget the n-th message waits n / rate: the member sends at most
    rate messages/s (plus the burst), however many streams ask."""
    budget = MessageBudget(1000.0, 0.0, now=0.0)  # burst: at least one message
    waits = [budget.reserve(0.0) for _ in range(501)]
    assert waits[0] == 0.0
    assert waits[1:] == pytest.approx([n / 1000.0 for n in range(1, 501)])
    # Refill pays the debt back first: half a second later, one more waits ~0 s.
    assert budget.reserve(0.5) == pytest.approx(0.001)


def test_budget_of_a_fraction_per_second_still_holds_one_message() -> None:
    """A budget below one message per burst still sends the first message at once."""
    budget = MessageBudget(0.5, 0.25, now=0.0)
    assert budget.reserve(0.0) == 0.0
    assert budget.reserve(0.0) == pytest.approx(2.0)


# ------------------------------------------------------------- groups share encodings
def test_watchers_of_one_group_share_each_revision_and_its_bytes() -> None:
    """Same key/prefix and prev_kv: one chunk per revision, encoded once, for all
    of them; another prefix or prev_kv is another group."""
    node = FakeRaft()
    hub = make_hub(node)
    same = [Reader.open(hub, "/g/") for _ in range(3)]
    with_prev = Reader.open(hub, "/g/", prev_kv=True)
    other = Reader.open(hub, "/g/a")
    for r in (*same, with_prev, other):
        r.read()
    node.put("/g/a", "1")
    node.put("/g/b", "2")
    node.run_loop()
    chunks = [list(r.watcher.queue) for r in same]
    assert all(a is b for a, b in zip(chunks[0], chunks[1], strict=True))
    assert all(a is b for a, b in zip(chunks[0], chunks[2], strict=True))
    assert not any(c is chunks[0][0] for c in with_prev.watcher.queue)
    assert not any(c is chunks[0][0] for c in other.watcher.queue)
    wire = chunks[0][0].wire()
    assert chunks[0][0].wire() is wire  # encoded once
    got = [r.read() for r in same]
    assert got[0] == got[1] == got[2]
    assert message_revisions(got[0]) == [[1, 2]]
    assert message_revisions(other.read()) == [[1]]


def test_encoded_messages_decode_to_the_same_messages_as_the_objects() -> None:
    """What mcp.v1 sends (frames) and what the etcd API relays (objects) are the
    same messages: keys, prefixes, prev_kv, a txn, a delete, catch-up."""
    node = FakeRaft()
    node.put("/e/old", "0")
    hub = make_hub(node, message_bytes_max=200)
    pairs = [
        (
            Reader.open(hub, key, prefix=p, prev_kv=pk),
            Reader.open(hub, key, prefix=p, prev_kv=pk, wire=False),
        )
        for key, p, pk in (("/e/", True, False), ("/e/", True, True), ("/e/x", False, True))
    ]
    replay = (
        Reader.open(hub, "/e/", start_revision=1),
        Reader.open(hub, "/e/", start_revision=1, wire=False),
    )
    for a, b in [*pairs, replay]:
        a.read()
        b.read()
    node.put("/e/x", "1")
    node.put("/e/x", "2" * 100)
    node.txn(("/e/y", "3"), ("/e/x", "4"))
    node.delete("/e/", prefix=True)
    node.run_loop()
    for a, b in [*pairs, replay]:
        assert a.read() == b.read()
        assert a.received and a.received == b.received
    assert sum(len(m.events) for m in replay[0].received) == 1 + 2 + 2 + 3


def test_frames_sends_created_then_encoded_events_and_closes() -> None:
    """frames() (mcp.v1's stream) yields encoded messages: created first, then
    the events; the watcher goes when the stream is closed."""
    node = FakeRaft()
    hub = WatchHub(node, header, leader_timeout_s=LEADER_TIMEOUT_S)
    node.put("/f/0")

    async def scenario() -> list[bytes]:
        hub.attach(asyncio.get_running_loop().call_soon_threadsafe)
        node.listen(hub.on_applied, hub.on_reset)
        stream = hub.frames(watch.WatchRequest(key=b"/f/", prefix=True))
        got = [await anext(stream)]
        node.put("/f/1")
        node.txn(("/f/2", "x"), ("/f/3", "y"))
        got.append(await asyncio.wait_for(anext(stream), 10.0))
        await stream.aclose()  # type: ignore[attr-defined]
        return got

    created, events = (watch.WatchResponse.FromString(b) for b in asyncio.run(scenario()))
    assert created.created and created.header.revision == 1
    assert message_revisions([events]) == [[2, 3]]
    assert hub.watchers == 0


def test_an_idle_stream_sends_progress_each_interval_and_events_when_they_come() -> None:
    """progress_notify: an idle stream sends a bookmark once its interval passes
    without a message; an event that comes first is sent as an event."""
    node = FakeRaft()
    hub = WatchHub(node, header, leader_timeout_s=LEADER_TIMEOUT_S)
    node.put("/p/0")

    async def scenario() -> list[watch.WatchResponse]:
        hub.attach(asyncio.get_running_loop().call_soon_threadsafe)
        node.listen(hub.on_applied, hub.on_reset)
        req = watch.WatchRequest(
            key=b"/p/", prefix=True, progress_notify=True, progress_interval_ms=100
        )
        stream = hub.frames(req)
        got = [await anext(stream)]
        got.append(await asyncio.wait_for(anext(stream), 10.0))  # idle: a bookmark
        node.put("/p/1")
        got.append(await asyncio.wait_for(anext(stream), 10.0))
        got.append(await asyncio.wait_for(anext(stream), 10.0))  # idle again
        await stream.aclose()  # type: ignore[attr-defined]
        return [watch.WatchResponse.FromString(b) for b in got]

    created, idle, event, again = asyncio.run(scenario())
    assert created.created
    assert idle.progress and idle.header.revision == 1
    assert not event.progress and message_revisions([event]) == [[2]]
    assert again.progress and again.header.revision == 2


def test_per_identity_limit_counts_open_streams_and_frees_a_slot_on_close() -> None:
    """WATCHES_PER_IDENTITY_MAX counts the streams open now: closing one (even
    twice) frees exactly one slot."""
    node = FakeRaft()
    hub = make_hub(node, per_identity_max=2)
    first, _second = Reader.open(hub, "/i/"), Reader.open(hub, "/i/")
    with pytest.raises(ResourceExhausted, match="too many watch streams for"):
        Reader.open(hub, "/i/")
    hub.close(first.watcher)
    hub.close(first.watcher)
    Reader.open(hub, "/i/")
    with pytest.raises(ResourceExhausted):
        Reader.open(hub, "/i/")


def test_a_revisions_header_is_built_once_and_a_leader_check_refreshes_its_term() -> None:
    """Streams sending the same revision share one encoded header; after a leader
    check (every WATCH_LEADER_CHECK_S) it is rebuilt, so the term is current."""
    node = FakeRaft()
    term = [1]
    built: list[int] = []

    def head(revision: int) -> kv.ResponseHeader:
        built.append(revision)
        return kv.ResponseHeader(revision=revision, raft_term=term[0])

    hub = WatchHub(node, head, leader_timeout_s=LEADER_TIMEOUT_S)
    hub.attach(node.schedule)
    node.listen(hub.on_applied, hub.on_reset)
    readers = [Reader.open(hub, "/h/") for _ in range(4)]
    for r in readers:
        r.read()  # in sync: what follows is live
    node.put("/h/a")
    node.run_loop()
    first = [r.read() for r in readers[:3]]
    assert built == [1] and all(m[0].header.raft_term == 1 for m in first)
    term[0] = 2
    hub.check_leader(0.0)
    (late,) = readers[3].read()
    assert built == [1, 1] and late.header.raft_term == 2 and late.header.revision == 1


# ------------------------------------------------------------------ per-stream wake-up
def test_wake_is_an_event_for_one_waiter() -> None:
    """Set before the wait: no wait; set during it: it returns; clear: the next
    wait waits; a cancelled wait (the progress timer) leaves no waiter behind."""

    async def scenario() -> list[str]:
        wake = Wake()
        seen: list[str] = []
        wake.set()
        await asyncio.wait_for(wake.wait(), 1.0)
        seen.append("set before")
        wake.clear()
        waiter = asyncio.ensure_future(wake.wait())
        await asyncio.sleep(0)
        assert not waiter.done() and not wake.is_set()
        wake.set()
        await asyncio.wait_for(waiter, 1.0)
        seen.append("set during")
        wake.clear()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await wake.wait()
        seen.append("timed out")
        wake.set()  # nobody waits now: only the flag
        assert wake.is_set()
        await asyncio.wait_for(wake.wait(), 1.0)
        seen.append("set after a timeout")
        return seen

    assert asyncio.run(scenario()) == [
        "set before",
        "set during",
        "timed out",
        "set after a timeout",
    ]


# --------------------------------------------------------------------- group lifecycle
def test_a_group_outlives_none_of_its_streams_and_a_new_one_starts_it_again() -> None:
    """Closed streams leave their group (nothing is queued for them); a group
    whose streams all closed starts again with the next stream; a group that
    wants none of a revision still moves its watchers past it."""
    node = FakeRaft()
    hub = make_hub(node)
    a, b = Reader.open(hub, "/l/"), Reader.open(hub, "/l/")
    other = Reader.open(hub, "/m/")
    for r in (a, b, other):
        r.read()
    hub.close(a.watcher)
    node.put("/l/1")
    node.run_loop()
    assert not a.watcher.queue and event_revisions(b.read()) == [1]
    hub.close(b.watcher)
    node.put("/l/2")
    node.run_loop()
    assert not b.watcher.queue
    c = Reader.open(hub, "/l/")
    c.read()
    node.put("/l/3")
    node.run_loop()
    assert event_revisions(c.read()) == [3]
    # /m/ wanted none of revisions 1-3: its next revision is past them all.
    assert other.watcher.next_revision == 4 and not other.watcher.queue
