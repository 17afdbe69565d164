"""Every watch limit at the limit, on a real one-member node inside the test process.

The node is wired as ``mcpctl serve`` wires it (PySyncObj, Proposer, Node,
WatchHub, gRPC server) but with small hub limits, so each limit is reached
with a handful of writes. Streams are raw gRPC calls: a stream the test does
not read is a client that stopped reading (HTTP/2 flow control blocks the
server's writes). Where a test needs several revisions to reach the hub in
one go, it proposes them as one Raft entry (``propose``): the hub then sees
them in a single publish, before the stream can send anything, so the limit
is hit exactly rather than by luck of timing.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest

from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import raft_pb2 as raftpb
from mcpctl._proto.mcp.v1 import watch_pb2 as watch
from mcpctl._proto.mcp.v1 import watch_pb2_grpc as watch_grpc
from mcpctl.client import Client
from mcpctl.errors import COMPACT_REVISION_KEY, McpError
from mcpctl.limits import KIB, MIB
from mcpctl.raft.node import RaftNode
from mcpctl.raft.status import ProposeError, Role
from mcpctl.server import config
from mcpctl.server.app import build_node, build_raft, create_server
from mcpctl.server.hub import HubLimits, WatchHub
from mcpctl.server.proposer import Proposer
from mcpctl.state import Applied
from tests.cluster import free_ports, wait_for

T = TypeVar("T")

SECRET = "watch-limits-test-secret"
# Generous: other test runs share this 2-core machine.
STARTUP_TIMEOUT_S = 60.0
LOOP_CALL_TIMEOUT_S = 30.0
PROPOSE_TIMEOUT_S = 30.0
CLIENT_TIMEOUT_S = 30.0
# Deadline of every raw watch call: bounds each blocking read of a stream.
STREAM_DEADLINE_S = 120.0
# Upper bounds of loops that read a stream or write until something happens.
MESSAGES_MAX = 2_000
PUTS_MAX = 2_000


def small_limits(**kw: Any) -> HubLimits:
    """The WatchHub limits under test (small, so a few writes reach them)."""
    base: dict[str, Any] = {
        "watchers_max": 4,
        "queue_revisions_max": 8,
        "queue_bytes_max": 64 * KIB,
        "message_bytes_max": 4 * KIB,
        "messages_per_s": 4000.0,
    }
    base.update(kw)
    return HubLimits(**base)


@dataclass
class _Parts:
    proposer: Proposer
    hub: WatchHub
    server: grpc.aio.Server
    port: int


class InProcessNode:
    """A one-member cluster in this process; the asyncio side runs on its own thread."""

    def __init__(self, root: Path, hub_limits: HubLimits, history_revisions_max: int) -> None:
        raft_port, client_port = free_ports(2)
        self.hub_limits = hub_limits
        self.cfg = config.load(
            None,
            env={},
            overrides={
                "name": "n1",
                "data_dir": str(root / "data"),
                "cluster.name": "watch-limits",
                "cluster.members": [
                    {
                        "name": "n1",
                        "raft": f"127.0.0.1:{raft_port}",
                        "client": f"127.0.0.1:{client_port}",
                    }
                ],
                "cluster.secret": SECRET,
                "limits.history_revisions_max": history_revisions_max,
            },
        )
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="node-loop", daemon=True)
        self._raft: RaftNode | None = None
        self._parts: _Parts | None = None
        self._channels: list[grpc.Channel] = []
        self._clients: list[Client] = []

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        self._raft = build_raft(self.cfg, self.cfg.cluster_secret())
        assert self._raft.wait_bound(), "raft port could not be bound"
        self._thread.start()
        self._parts = self.run(self._up())
        wait_for("the member to lead", lambda: self.raft.status.role == Role.LEADER)
        with self.client() as c:
            wait_for("a linearizable read", lambda: c.get("/", prefix=True, count_only=True))
        # The hub refuses watches until its leader check has seen the leader.
        wait_for("the hub to accept watches", self._probe_watch, STARTUP_TIMEOUT_S)
        wait_for("the probe watch to go", lambda: self.hub.watchers == 0, STARTUP_TIMEOUT_S)

    async def _up(self) -> _Parts:
        # The same wiring as `mcpctl serve`, with the hub limits injected.
        parts = build_node(self.cfg, self.raft, SECRET, hub_limits=self.hub_limits)
        parts.hub.start()
        server, port = await create_server(parts, "127.0.0.1:0")
        await server.start()
        return _Parts(parts.proposer, parts.hub, server, port)

    async def _down(self, parts: _Parts) -> None:
        parts.hub.stop()
        await parts.server.stop(grace=1.0)
        parts.proposer.close()

    def close(self) -> None:
        """Stop whatever was started, even after a failed start."""
        for client in self._clients:
            client.close()
        for channel in self._channels:
            channel.close()
        try:
            if self._parts is not None:
                self.run(self._down(self._parts))
        finally:
            if self._raft is not None:
                self._raft.destroy()
            if self._thread.is_alive():
                self.loop.call_soon_threadsafe(self.loop.stop)
                self._thread.join(LOOP_CALL_TIMEOUT_S)
            if not self.loop.is_running():
                self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(LOOP_CALL_TIMEOUT_S)

    # -- parts ---------------------------------------------------------------------
    @property
    def raft(self) -> RaftNode:
        assert self._raft is not None
        return self._raft

    @property
    def hub(self) -> WatchHub:
        assert self._parts is not None
        return self._parts.hub

    @property
    def endpoint(self) -> str:
        assert self._parts is not None
        return f"127.0.0.1:{self._parts.port}"

    def client(self) -> Client:
        client = Client([self.endpoint], timeout=CLIENT_TIMEOUT_S)
        self._clients.append(client)
        return client

    def stub(self) -> watch_grpc.WatchStub:
        # Its own connection (no shared subchannel) with a fixed HTTP/2 window (no BDP
        # probing): a stream the test stops reading blocks the server after ~64 KiB,
        # instead of after megabytes of a window grown by another stream's traffic.
        channel = grpc.insecure_channel(
            self.endpoint,
            options=[("grpc.use_local_subchannel_pool", 1), ("grpc.http2.bdp_probe", 0)],
        )
        self._channels.append(channel)
        return watch_grpc.WatchStub(channel)

    def watch(self, key: bytes, **fields: Any) -> Stream:
        """A raw watch stream on its own channel (so a stalled one stalls nothing else)."""
        return Stream(self.stub(), watch.WatchRequest(key=key, **fields))

    def _probe_watch(self) -> bool:
        stream = self.watch(b"/probe")
        try:
            stream.next()
        except grpc.RpcError:
            if stream.call.code() == grpc.StatusCode.UNAVAILABLE:
                return False
            raise
        finally:
            stream.cancel()
        return True

    # -- the store -------------------------------------------------------------------
    def revision(self) -> int:
        value: int = self.raft.consumer.read(lambda s: s.revision)
        return value

    def compact_revision(self) -> int:
        value: int = self.raft.consumer.read(lambda s: s.compact_revision)
        return value

    def propose(self, requests: Sequence[raftpb.InternalRequest]) -> list[int]:
        """Apply ``requests`` as ONE Raft entry; the revision each one wrote.

        The hub gets every new revision of the entry in one publish, so a
        stream's queue sees them all before the stream can send any.
        """
        batch = raftpb.InternalBatch(requests=list(requests))
        now_ms = int(time.time() * 1000)
        for req in batch.requests:
            req.ts_ms = now_ms
        done = threading.Event()
        outcome: list[tuple[Any, ProposeError]] = []

        def landed(results: Any, err: ProposeError) -> None:  # the tick thread
            outcome.append((results, err))
            done.set()

        self.raft.propose(batch, landed)
        assert done.wait(PROPOSE_TIMEOUT_S), "the proposal did not land"
        results, err = outcome[0]
        assert err == ProposeError.SUCCESS, err
        revisions = []
        for applied in results:
            assert isinstance(applied, Applied) and applied.written is not None, applied
            revisions.append(applied.revision)
        return revisions


class Stream:
    """One raw Watch call, read a message at a time; every read is bounded by the deadline."""

    def __init__(self, stub: watch_grpc.WatchStub, request: watch.WatchRequest) -> None:
        self.call = stub.Watch(request, timeout=STREAM_DEADLINE_S)
        self._messages = iter(self.call)
        self.messages: list[watch.WatchResponse] = []

    def next(self) -> watch.WatchResponse:
        msg = next(self._messages)
        self.messages.append(msg)
        return msg

    def created(self) -> watch.WatchResponse:
        msg = self.next()
        assert msg.created and not msg.events, msg
        return msg

    def read_until(
        self, done: Callable[[watch.WatchResponse], bool], messages_max: int = MESSAGES_MAX
    ) -> watch.WatchResponse:
        """Read until a message satisfies ``done``; returns that message."""
        for _ in range(messages_max):
            msg = self.next()
            if done(msg):
                return msg
        raise AssertionError(f"no expected message in {messages_max} messages")

    def read_revision(self, revision: int, messages_max: int = MESSAGES_MAX) -> None:
        """Read until the message holding the event(s) of ``revision``."""
        self.read_until(
            lambda m: any(e.kv.mod_revision >= revision for e in m.events), messages_max
        )

    def read_error(self) -> tuple[grpc.StatusCode, str, dict[str, str]]:
        """Read until the stream ends with an error: its code, details and trailers."""
        for _ in range(MESSAGES_MAX):
            try:
                self.next()
            except grpc.RpcError:
                trailers = {k: v for k, v in self.call.trailing_metadata() if isinstance(v, str)}
                return self.call.code(), self.call.details(), trailers
        raise AssertionError(f"the stream did not end within {MESSAGES_MAX} messages")

    def events(self) -> list[kv.Event]:
        return [ev for msg in self.messages for ev in msg.events]

    def event_revisions(self) -> list[int]:
        return [ev.kv.mod_revision for ev in self.events()]

    def revision_groups(self) -> list[list[int]]:
        """Per message with events: the distinct revisions it carries, in order."""
        return [
            sorted({ev.kv.mod_revision for ev in msg.events}) for msg in self.messages if msg.events
        ]

    def cancel(self) -> None:
        cancel: Callable[[], object] = self.call.cancel  # untyped in grpc-stubs
        cancel()


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[Callable[..., InProcessNode]]:
    """Start in-process one-member nodes (``start(limits, history_revisions_max=N)``)."""
    started: list[InProcessNode] = []

    def start(
        hub_limits: HubLimits | None = None, *, history_revisions_max: int = 10_000
    ) -> InProcessNode:
        node = InProcessNode(
            tmp_path / f"node{len(started)}", hub_limits or small_limits(), history_revisions_max
        )
        started.append(node)
        node.start()
        return node

    yield start
    for node in started:
        node.close()


# -- building revisions whose watch events have an exact size --------------------------


def put_request(key: bytes, value: bytes) -> raftpb.InternalRequest:
    return raftpb.InternalRequest(put=kv.PutRequest(key=key, value=value))


def txn_request(pairs: Sequence[tuple[bytes, bytes]]) -> raftpb.InternalRequest:
    ops = [kv.RequestOp(request_put=kv.PutRequest(key=k, value=v)) for k, v in pairs]
    return raftpb.InternalRequest(txn=kv.TxnRequest(success=ops))


def new_key_event(key: bytes, value: bytes, revision: int) -> kv.Event:
    """The watch event of the first put of ``key`` (what the hub queues and sends)."""
    return kv.Event(
        type=kv.Event.PUT,
        kv=kv.KeyValue(
            key=key, value=value, create_revision=revision, mod_revision=revision, version=1
        ),
    )


def value_for_size(key: bytes, revision: int, event_bytes: int) -> bytes:
    """A value that makes the event of a new ``key`` at ``revision`` exactly ``event_bytes``."""
    for length in range(max(0, event_bytes - 64), event_bytes):
        value = b"v" * length
        if new_key_event(key, value, revision).ByteSize() == event_bytes:
            return value
    raise AssertionError(f"no value gives a {event_bytes}-byte event for {key!r}")


def greedy_messages(sizes: Sequence[tuple[int, int]], message_bytes_max: int) -> list[list[int]]:
    """How whole revisions ``(revision, bytes)`` pack into messages of ``message_bytes_max``."""
    out: list[list[int]] = []
    size = 0
    for revision, n in sizes:
        if out and out[-1] and size + n <= message_bytes_max:
            out[-1].append(revision)
            size += n
        else:
            out.append([revision])
            size = n
    return out


def sync_stream(node: InProcessNode, stream: Stream, key: bytes) -> None:
    """Write ``key`` and read its event: afterwards the stream is in sync and idle."""
    (revision,) = node.propose([put_request(key, b"sync")])
    stream.read_revision(revision)


# -- the tests -------------------------------------------------------------------------


def test_watchers_max_refuses_the_next_stream_and_the_others_keep_working(
    start_node: Callable[..., InProcessNode],
) -> None:
    """Past WATCHERS_MAX a watch gets RESOURCE_EXHAUSTED; open streams still work; a slot frees."""
    node = start_node(small_limits(watchers_max=4))
    streams = [node.watch(b"/wm/", prefix=True) for _ in range(4)]
    for s in streams:
        s.created()
    assert node.hub.watchers == 4

    refused = node.watch(b"/wm/", prefix=True)
    with pytest.raises(grpc.RpcError):
        refused.next()
    assert refused.call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "(4)" in refused.call.details()

    with node.client() as c:
        revision = c.put("/wm/a", "1").revision
    for s in streams:
        s.read_revision(revision)
        assert s.event_revisions() == [revision]

    streams[0].cancel()
    wait_for("the cancelled stream to be dropped", lambda: node.hub.watchers == 3, 60.0)
    again = node.watch(b"/wm/", prefix=True)
    again.created()
    refused_again = node.watch(b"/wm/", prefix=True)
    with pytest.raises(grpc.RpcError):
        refused_again.next()
    assert refused_again.call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_queue_revisions_max_fits_exactly_and_one_more_marks_the_stream_slow(
    start_node: Callable[..., InProcessNode],
) -> None:
    """QUEUE_REVISIONS_MAX revisions queue; one more marks slow; all arrive once, in order."""
    node = start_node(
        small_limits(queue_revisions_max=8, queue_bytes_max=1 * MIB, message_bytes_max=1 * MIB)
    )
    stream = node.watch(b"/q/", prefix=True)
    stream.created()
    sync_stream(node, stream, b"/q/sync")
    before = len(stream.messages)

    eight = node.propose([put_request(f"/q/a{i}".encode(), b"x") for i in range(8)])
    stream.read_revision(eight[-1])
    assert node.hub.stats.slow_marked == 0
    assert stream.revision_groups()[-1] == eight  # all eight queued, sent as one message

    nine = node.propose([put_request(f"/q/b{i}".encode(), b"x") for i in range(9)])
    stream.read_revision(nine[-1])
    assert node.hub.stats.slow_marked == 1
    delivered = [ev.kv.mod_revision for m in stream.messages[before:] for ev in m.events]
    assert delivered == eight + nine


def test_queue_bytes_max_fits_exactly_and_one_byte_more_marks_the_stream_slow(
    start_node: Callable[..., InProcessNode],
) -> None:
    """QUEUE_BYTES_MAX bytes queue; one byte more marks slow; every event arrives as written."""
    queue_bytes_max = 16 * KIB
    node = start_node(
        small_limits(
            queue_revisions_max=1000, queue_bytes_max=queue_bytes_max, message_bytes_max=MIB
        )
    )
    stream = node.watch(b"/qb/", prefix=True)
    stream.created()
    sync_stream(node, stream, b"/qb/sync")
    before = len(stream.messages)

    def batch(tag: str, total: int) -> tuple[list[raftpb.InternalRequest], list[kv.Event]]:
        first = node.revision() + 1
        sizes = [total // 4] * 3 + [total - 3 * (total // 4)]
        requests, expected = [], []
        for i, size in enumerate(sizes):
            key = f"/qb/{tag}{i}".encode()
            value = value_for_size(key, first + i, size)
            requests.append(put_request(key, value))
            expected.append(new_key_event(key, value, first + i))
        assert sum(ev.ByteSize() for ev in expected) == total
        return requests, expected

    requests, at_limit = batch("a", queue_bytes_max)
    revisions = node.propose(requests)
    stream.read_revision(revisions[-1])
    assert node.hub.stats.slow_marked == 0

    requests, over_limit = batch("b", queue_bytes_max + 1)
    revisions = node.propose(requests)
    stream.read_revision(revisions[-1])
    assert node.hub.stats.slow_marked == 1
    delivered = [ev for m in stream.messages[before:] for ev in m.events]
    assert delivered == at_limit + over_limit


def test_stream_that_stops_reading_is_marked_slow_and_catches_up_without_gap_or_duplicate(
    start_node: Callable[..., InProcessNode],
) -> None:
    """A stream that stops reading is marked slow, then caught up from history: no gap, no dup."""
    node = start_node(small_limits(queue_revisions_max=8))
    stalled = node.watch(b"/slow/", prefix=True)
    stalled.created()
    reader = node.watch(b"/slow/", prefix=True)
    reader.created()
    end_key = b"/slow/end"
    reader_error: list[BaseException] = []

    def read_all() -> None:
        try:
            reader.read_until(lambda m: any(e.kv.key == end_key for e in m.events))
        except BaseException as e:  # reported by the test thread
            reader_error.append(e)

    thread = threading.Thread(target=read_all, name="reader", daemon=True)
    thread.start()

    written: list[int] = []
    value = "v" * (2 * KIB)
    with node.client() as c:
        for i in range(PUTS_MAX):
            written.append(c.put(f"/slow/{i:05d}", value).revision)
            if node.hub.stats.slow_marked:
                break
        assert node.hub.stats.slow_marked >= 1, f"not marked slow after {len(written)} puts"
        # More than a queue's worth after the mark: these can only come from history.
        for i in range(3 * node.hub_limits.queue_revisions_max):
            written.append(c.put(f"/slow/after/{i:03d}", value).revision)
        written.append(c.put(end_key, "end").revision)

    stalled.read_revision(written[-1])
    assert stalled.event_revisions() == written
    thread.join(STREAM_DEADLINE_S)
    assert not thread.is_alive() and not reader_error, reader_error
    assert reader.event_revisions() == written


def test_slow_stream_whose_history_is_gone_ends_compacted_with_the_oldest_revision(
    start_node: Callable[..., InProcessNode],
) -> None:
    """A slow stream past the history ends FAILED_PRECONDITION with mcp-compact-revision, no gap."""
    history = 16
    node = start_node(small_limits(queue_revisions_max=8), history_revisions_max=history)
    stalled = node.watch(b"/gone/", prefix=True)
    stalled.created()

    written: list[int] = []
    value = "v" * (2 * KIB)
    with node.client() as c:
        for i in range(PUTS_MAX):
            written.append(c.put(f"/gone/{i:05d}", value).revision)
            if node.hub.stats.slow_marked:
                break
        assert node.hub.stats.slow_marked == 1, f"not marked slow after {len(written)} puts"
        slow_at = written[-1]
        for i in range(2 * history):
            written.append(c.put(f"/gone/after/{i:03d}", value).revision)
    compact_revision = node.compact_revision()
    assert compact_revision > slow_at  # the revisions the stream needs are gone

    code, details, trailers = stalled.read_error()
    assert code == grpc.StatusCode.FAILED_PRECONDITION, details
    assert trailers.get(COMPACT_REVISION_KEY) == str(compact_revision), trailers
    # Everything queued before the mark arrives, in order, once; nothing after the gap.
    assert stalled.event_revisions() == [r for r in written if r < slow_at]
    assert node.hub.stats.compacted_ended == 1


def test_message_bytes_max_packs_whole_revisions_and_never_splits_one(
    start_node: Callable[..., InProcessNode],
) -> None:
    """Messages pack whole revisions up to WATCH_MESSAGE_BYTES_MAX and never split one revision."""
    message_bytes_max = 4 * KIB
    node = start_node(
        small_limits(
            queue_revisions_max=64, queue_bytes_max=MIB, message_bytes_max=message_bytes_max
        )
    )
    live = node.watch(b"/mb/", prefix=True)
    live.created()
    sync_stream(node, live, b"/mb/sync")
    before = len(live.messages)

    first = node.revision() + 1
    requests: list[raftpb.InternalRequest] = []
    expected: list[kv.Event] = []
    sizes: list[tuple[int, int]] = []

    def add_put(event_bytes: int) -> None:
        revision = first + len(requests)
        key = f"/mb/{revision}".encode()
        value = value_for_size(key, revision, event_bytes)
        requests.append(put_request(key, value))
        expected.append(new_key_event(key, value, revision))
        sizes.append((revision, event_bytes))

    def add_txn(keys: int, event_bytes: int) -> None:
        revision = first + len(requests)
        pairs = []
        for k in range(keys):
            key = f"/mb/{revision}/{k}".encode()
            value = value_for_size(key, revision, event_bytes)
            pairs.append((key, value))
            expected.append(new_key_event(key, value, revision))
        requests.append(txn_request(pairs))
        sizes.append((revision, keys * event_bytes))

    for _ in range(4):
        add_put(message_bytes_max // 4)  # four revisions: exactly the limit, one message
    add_put(1000)
    add_txn(3, 1800)  # 5400 bytes in one revision: alone, in one message
    for _ in range(9):
        add_put(1000)
    add_put(message_bytes_max + 100)  # a single put over the limit: alone
    add_put(500)
    revisions = node.propose(requests)
    assert revisions == [r for r, _ in sizes]

    packing = greedy_messages(sizes, message_bytes_max)
    assert packing[0] == revisions[:4]
    assert [revisions[5]] in packing and [revisions[-2]] in packing
    assert len(packing) >= 5

    live.read_revision(revisions[-1])
    assert node.hub.stats.slow_marked == 0
    assert [ev for m in live.messages[before:] for ev in m.events] == expected
    assert live.revision_groups()[-len(packing) :] == packing
    txn_message = next(
        m for m in live.messages if any(e.kv.mod_revision == first + 5 for e in m.events)
    )
    assert [e.kv.mod_revision for e in txn_message.events] == [first + 5] * 3

    replay = node.watch(b"/mb/", prefix=True, start_revision=first)
    replay.created()
    replay.read_revision(revisions[-1])
    assert replay.events() == expected
    assert replay.revision_groups() == packing


def test_low_messages_per_s_coalesces_a_burst_of_puts(
    start_node: Callable[..., InProcessNode],
) -> None:
    """A low WATCH_MESSAGES_PER_S coalesces a burst of puts: several revisions per message."""
    node = start_node(
        small_limits(
            messages_per_s=0.5,  # one stream: 2 s between its messages
            queue_revisions_max=1000,
            queue_bytes_max=MIB,
            message_bytes_max=MIB,
        )
    )
    stream = node.watch(b"/burst/", prefix=True)
    stream.created()
    with node.client() as c:
        written = [c.put(f"/burst/{i:03d}", str(i)).revision for i in range(30)]
    stream.read_revision(written[-1])
    assert stream.event_revisions() == written
    groups = stream.revision_groups()
    assert len(groups) < len(written)
    assert max(len(g) for g in groups) >= 2
    assert node.hub.stats.slow_marked == 0


def test_progress_interval_ms_is_checked_at_its_bounds(
    start_node: Callable[..., InProcessNode],
) -> None:
    """progress_interval_ms 0, 100 and 600000 are accepted; 99 and 600001 are INVALID_ARGUMENT."""
    node = start_node(small_limits(watchers_max=4))
    for interval in (0, 100, 600_000):
        ok = node.watch(b"/p", progress_notify=True, progress_interval_ms=interval)
        ok.created()
        ok.cancel()
    for interval in (99, 600_001):
        bad = node.watch(b"/p", progress_notify=True, progress_interval_ms=interval)
        with pytest.raises(grpc.RpcError):
            bad.next()
        assert bad.call.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "progress_interval_ms" in bad.call.details()


def test_bookmarks_never_fall_below_an_event_already_sent(
    start_node: Callable[..., InProcessNode],
) -> None:
    """Bookmarks never name a revision below an event already sent, and follow other writes."""
    node = start_node()
    stream = node.watch(b"/bm/a", progress_notify=True, progress_interval_ms=100)
    stream.created()
    with node.client() as c:
        for i in range(3):
            c.put("/bm/a", f"a{i}")
            c.put("/bm/other", f"o{i}")
            c.put("/bm/other2", f"o{i}")
        last = c.put("/bm/unrelated", "x").revision
    final = stream.read_until(lambda m: m.progress and m.header.revision >= last)
    assert final.header.revision == last  # never beyond what exists

    sent = 0
    progress_seen = 0
    for msg in stream.messages[1:]:
        if msg.events:
            assert not msg.progress
            sent = max(sent, *(e.kv.mod_revision for e in msg.events))
        else:
            assert msg.progress, msg
            assert msg.header.revision >= sent, (msg.header.revision, sent)
            progress_seen += 1
    assert len(stream.events()) == 3 and progress_seen >= 1


def test_watch_from_a_future_revision_waits_and_delivers_from_it(
    start_node: Callable[..., InProcessNode],
) -> None:
    """A watch from a future start_revision waits, then delivers from exactly that revision."""
    node = start_node()
    current = node.revision()
    start = current + 3
    stream = node.watch(
        b"/fut/", prefix=True, start_revision=start, progress_notify=True, progress_interval_ms=100
    )
    stream.created()
    idle = stream.next()  # nothing to send yet: a bookmark at the store's revision
    assert idle.progress and not idle.events and idle.header.revision == current
    with node.client() as c:
        written = [c.put(f"/fut/{i}", str(i)).revision for i in range(5)]
    assert written == list(range(current + 1, current + 6))
    stream.read_revision(written[-1])
    assert stream.event_revisions() == [start, start + 1, start + 2]


def test_watch_on_a_key_gets_only_that_key(start_node: Callable[..., InProcessNode]) -> None:
    """A watch on a key (not a prefix) gets only that key's events, not its prefix siblings'."""
    node = start_node()
    stream = node.watch(b"/k/a")
    stream.created()
    with node.client() as c:
        first = c.put("/k/a", "1").revision
        for key in ("/k/ab", "/k/a/b", "/k", "/k/b"):
            c.put(key, "other")
        c.delete("/k/ab")
        second = c.put("/k/a", "2").revision
        c.delete("/k/", prefix=True)
        gone = c.get("/k/", prefix=True).header.revision
    stream.read_revision(gone)
    got = [(kv.Event.EventType.Name(e.type), e.kv.key, e.kv.mod_revision) for e in stream.events()]
    assert got == [("PUT", b"/k/a", first), ("PUT", b"/k/a", second), ("DELETE", b"/k/a", gone)]


def test_client_error_for_the_refused_watch_is_resource_exhausted(
    start_node: Callable[..., InProcessNode],
) -> None:
    """Through the SDK a watch past WATCHERS_MAX raises ResourceExhausted instead of retrying."""
    node = start_node(small_limits(watchers_max=1))
    held = node.watch(b"/sdk/", prefix=True)
    held.created()
    with (
        node.client() as c,
        c.watch("/sdk/", prefix=True) as stream,
        pytest.raises(McpError) as err,
    ):
        next(iter(stream))
    assert err.value.code == "RESOURCE_EXHAUSTED"


def test_watches_per_connection_are_limited_and_another_channel_gets_more(
    start_node: Callable[..., InProcessNode],
) -> None:
    """Past WATCHES_PER_CONNECTION_MAX streams on one connection the next gets
    RESOURCE_EXHAUSTED ("open another channel"); a new connection is not affected.
    (With auth off every caller is one identity: the per-identity limit is the
    larger one here.)"""
    node = start_node(small_limits(watchers_max=10, per_connection_max=2, per_identity_max=5))
    shared = node.stub()
    first = [Stream(shared, watch.WatchRequest(key=b"/pc/")) for _ in range(2)]
    for s in first:
        s.created()
    third = Stream(shared, watch.WatchRequest(key=b"/pc/"))
    with pytest.raises(grpc.RpcError):
        third.next()
    assert third.call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "connection" in third.call.details()
    others = [node.watch(b"/pc/") for _ in range(3)]  # each on its own channel
    for s in others:
        s.created()
    over_identity = node.watch(b"/pc/")
    with pytest.raises(grpc.RpcError):
        over_identity.next()
    assert over_identity.call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "anonymous" in over_identity.call.details()
