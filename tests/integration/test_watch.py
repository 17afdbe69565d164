"""Watch streams on real 3-node clusters, checked against the watch promises.

Every test records its streams (tests/watchcheck.py), logs its writes, reads
a reference history at the end through a fresh watch and runs the checker:
ordered, unique, reliable, atomic, resumable, bookmarkable (DESIGN §4).
Faults: kill -9 of the leader, a follower restart, a follower cut off by
SIGSTOP of its peers, compaction, a thousand watchers, a consumer that stops
reading. Waits are readiness waits with generous deadlines (the machine is
shared); nothing here asserts a duration.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import grpc
import pytest

from mcpctl import limits
from mcpctl._proto.mcp.v1 import kv_pb2, kv_pb2_grpc, watch_pb2, watch_pb2_grpc
from mcpctl.client import Client
from mcpctl.errors import Compacted, Unavailable
from tests.cluster import Cluster, NodeProc, running_cluster, wait_for
from tests.watchcheck import (
    EventType,
    Follower,
    Kind,
    Outcome,
    Recorder,
    Reference,
    StreamRecord,
    WriteLog,
    Writer,
    assert_ok,
    check_all,
    check_stream,
    count_check,
    final_revision,
    read_reference,
    rpc_error,
    trailers,
    wait_all_covered,
)

pytestmark = pytest.mark.cluster

# Generous: other agents run clusters on this 2-core machine at the same time.
WAIT_S = 60.0
WRITER_WAIT_S = 120.0
PROGRESS_MS = 200
RESUME_ROUNDS_MAX = 60


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One cluster for the tests that leave it healthy (each reads its own revisions)."""
    with running_cluster(tmp_path_factory.mktemp("watch")) as c:
        yield c


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    with Recorder() as r:
        yield r


@pytest.fixture
def clients() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


def others(cluster: Cluster, node: NodeProc) -> list[NodeProc]:
    return [n for n in cluster.nodes if n is not node]


def client_via(cluster: Cluster, stack: ExitStack, node: NodeProc) -> Client:
    """A client that tries ``node`` first, then the others."""
    return stack.enter_context(cluster.client(node, *others(cluster, node)))


def follow(
    recorder: Recorder,
    client: Client,
    name: str,
    key: str,
    *,
    prefix: bool = False,
    start_revision: int = 0,
    prev_kv: bool = False,
) -> Follower:
    """An SDK stream with bookmarks, so an idle stream shows how far it has got."""
    return recorder.follow(
        client,
        name,
        key,
        prefix=prefix,
        start_revision=start_revision,
        prev_kv=prev_kv,
        progress_notify=True,
        progress_interval_ms=PROGRESS_MS,
    )


def wait_created(*records: StreamRecord) -> None:
    for r in records:
        r.wait_messages(1, WAIT_S)
        assert r.messages[0].kind is Kind.CREATED, f"{r.name}: first message {r.messages[0]}"


def verify(
    c: Client,
    records: list[StreamRecord],
    log: WriteLog,
    *,
    start: int,
    final: int | None = None,
) -> int:
    """Wait for every stream to reach the final revision; check them all. Returns it."""
    final = final_revision(c) if final is None else final
    wait_all_covered(records, final, WAIT_S)
    reference = read_reference(c, final, start_revision=start)
    assert_ok(check_all(records, reference, log, through=final))
    return final


# ------------------------------------------------------------------- basics
def test_key_and_prefix_watches_deliver_their_events_with_prev_kv(
    shared: Cluster, clients: ExitStack, recorder: Recorder
) -> None:
    """Key and prefix watches get exactly their events, prev_kv when asked, created first."""
    n1, n2, n3 = shared.nodes
    c = client_via(shared, clients, n1)
    base = final_revision(c)
    key = follow(recorder, client_via(shared, clients, n1), "key", "/basic/a")
    pfx = follow(recorder, client_via(shared, clients, n2), "prefix", "/basic/", prefix=True)
    prev = follow(
        recorder, client_via(shared, clients, n3), "prev", "/basic/", prefix=True, prev_kv=True
    )
    wait_created(key.record, pfx.record, prev.record)

    log = WriteLog()
    log.put(c, "/basic/a", b"a1")
    log.put(c, "/basic/b", b"b1")
    log.put(c, "/basic/a", b"a2")
    log.put(c, "/other/x", b"x1")
    log.put(c, "/basic/ab", b"ab1")
    log.delete(c, "/basic/a")
    log.put(c, "/basic/a", b"a3")
    verify(c, recorder.records, log, start=base + 1)

    assert [(e.type, e.value) for e in key.record.events] == [
        (EventType.PUT, b"a1"),
        (EventType.PUT, b"a2"),
        (EventType.DELETE, b""),
        (EventType.PUT, b"a3"),
    ]
    assert {e.key for e in pfx.record.events} == {"/basic/a", "/basic/b", "/basic/ab"}
    assert all(e.prev_value is None for e in pfx.record.events)
    a_prev = [(e.type, e.prev_value) for e in prev.record.events if e.key == "/basic/a"]
    assert a_prev == [
        (EventType.PUT, None),
        (EventType.PUT, b"a1"),
        (EventType.DELETE, b"a2"),
        (EventType.PUT, None),
    ]


def test_start_revision_replays_history_then_continues_live(
    shared: Cluster, clients: ExitStack, recorder: Recorder
) -> None:
    """A watch from a past revision replays every matching event from there, then live ones."""
    c = client_via(shared, clients, shared.nodes[1])
    base = final_revision(c)
    log = WriteLog()
    revisions = [log.put(c, f"/replay/k{i % 3}", f"old{i}".encode()) for i in range(10)]
    start = revisions[3]
    assert start is not None
    replay = follow(
        recorder,
        client_via(shared, clients, shared.nodes[2]),
        "replay",
        "/replay/",
        prefix=True,
        start_revision=start,
    )
    wait_created(replay.record)
    for i in range(5):
        log.put(c, f"/replay/k{i % 3}", f"new{i}".encode())
    verify(c, recorder.records, log, start=base + 1)
    events = replay.record.events
    assert events[0].revision == start
    assert [e.value for e in events] == [f"old{i}".encode() for i in range(3, 10)] + [
        f"new{i}".encode() for i in range(5)
    ]


def test_idle_watch_gets_progress_bookmarks_that_follow_the_store(
    shared: Cluster, clients: ExitStack, recorder: Recorder
) -> None:
    """An idle watcher gets bookmarks that move on with writes to other keys."""
    c = client_via(shared, clients, shared.nodes[0])
    base = final_revision(c)
    log = WriteLog()
    idle = follow(
        recorder,
        client_via(shared, clients, shared.nodes[2]),
        "idle",
        "/idle/",
        prefix=True,
    )
    wait_created(idle.record)
    mine = log.put(c, "/idle/k", b"1")
    assert mine is not None

    def bookmarks_at(revision: int) -> int:
        return sum(
            1 for m in idle.record.messages if m.kind is Kind.PROGRESS and m.revision >= revision
        )

    idle.record.wait("two bookmarks at my write", lambda r: bookmarks_at(mine) >= 2, WAIT_S)
    elsewhere = log.put(c, "/not-idle/k", b"2")
    assert elsewhere is not None
    idle.record.wait(
        "a bookmark past a write to another key", lambda r: bookmarks_at(elsewhere) >= 1, WAIT_S
    )
    verify(c, recorder.records, log, start=base + 1)
    assert [e.revision for e in idle.record.events] == [mine]


def test_txn_of_50_keys_arrives_in_one_message_on_every_node(
    shared: Cluster, clients: ExitStack, recorder: Recorder
) -> None:
    """All 50 events of one txn revision come in exactly one message, on every member."""
    c = client_via(shared, clients, shared.nodes[0])
    base = final_revision(c)
    streams = [
        follow(recorder, client_via(shared, clients, n), f"txn-{n.name}", "/txn/", prefix=True)
        for n in shared.nodes
    ]
    one_key = follow(recorder, client_via(shared, clients, shared.nodes[1]), "one", "/txn/k07")
    wait_created(one_key.record, *(s.record for s in streams))
    log = WriteLog()
    log.put(c, "/txn/before", b"0")
    revision = log.txn_puts(c, [(f"/txn/k{i:02d}", f"v{i}".encode()) for i in range(50)])
    log.put(c, "/txn/after", b"0")
    assert revision is not None
    verify(c, recorder.records, log, start=base + 1)
    for s in streams:
        holding = [m for m in s.record.messages if any(e.revision == revision for e in m.events)]
        assert len(holding) == 1, s.record.name
        assert sum(1 for e in holding[0].events if e.revision == revision) == 50
    assert [(e.key, e.revision) for e in one_key.record.events] == [("/txn/k07", revision)]


def test_client_resume_from_last_plus_one_has_no_gap_and_no_duplicate(
    shared: Cluster, clients: ExitStack, recorder: Recorder
) -> None:
    """Closing a watch and reopening it at last + 1 while writes go on loses and repeats nothing."""
    c = client_via(shared, clients, shared.nodes[0])
    base = final_revision(c)
    log = WriteLog()
    record = recorder.stream("resumed", "/resume/", prefix=True, start_revision=base + 1)
    writer = Writer(
        client_via(shared, clients, shared.nodes[1]),
        log,
        count=300,
        key=lambda i: f"/resume/k{i % 7}",
        value=lambda i: f"v{i}".encode(),
    ).start()
    watcher = client_via(shared, clients, shared.nodes[2])
    start = base + 1
    final: int | None = None
    for round_ in range(RESUME_ROUNDS_MAX):  # each round reads a few events, then closes
        if round_:
            record.reconnect(start)
        stream = watcher.watch(
            "/resume/",
            prefix=True,
            start_revision=start,
            progress_notify=True,
            progress_interval_ms=PROGRESS_MS,
        )
        got = 0
        with stream:
            for count, batch in enumerate(stream):
                record.add_batch(batch)
                got += len(batch.events)
                idle = batch.progress and writer.finished  # caught up with a finished writer
                if got >= 40 or count >= 50 or idle or (final and record.covered >= final):
                    break
        start = record.last_event_revision + 1 if record.last_event_revision else start
        if final is None and writer.finished:
            writer.join(WRITER_WAIT_S)
            final = final_revision(c)
        if final is not None and record.covered >= final:
            break
    assert final is not None, f"writer did {writer.done} writes"
    assert record.connections >= 3, "the test must reconnect several times"
    verify(c, recorder.records, log, start=base + 1, final=final)


def test_watch_from_a_compacted_revision_ends_with_the_compact_revision(
    shared: Cluster, clients: ExitStack, recorder: Recorder
) -> None:
    """A watch from below compact(N) ends FAILED_PRECONDITION carrying N; the SDK raises."""
    c = client_via(shared, clients, shared.nodes[0])
    log = WriteLog()
    revisions = [log.put(c, "/compact/k", f"v{i}".encode()) for i in range(20)]
    old, cut = revisions[4], revisions[10]
    assert old is not None and cut is not None
    c.compact(cut)

    raw = recorder.follow_raw(
        shared.nodes[1].endpoint, "raw-old", "/compact/", prefix=True, start_revision=old
    )
    raw.record.wait_ended(WAIT_S)
    assert raw.record.end_code == "FAILED_PRECONDITION", raw.record
    assert raw.record.end_metadata.get("mcp-compact-revision") == str(cut)
    assert isinstance(raw.record.end_error, Compacted)
    assert raw.record.end_error.compact_revision == cut
    assert raw.record.events == []

    sdk = follow(
        recorder,
        client_via(shared, clients, shared.nodes[2]),
        "sdk-old",
        "/compact/",
        prefix=True,
        start_revision=old,
    )
    sdk.record.wait_ended(WAIT_S)
    assert isinstance(sdk.record.end_error, Compacted), sdk.record
    assert sdk.record.end_error.compact_revision == cut
    assert sdk.record.connections == 1, "Compacted must not be retried"

    from_cut = follow(
        recorder,
        client_via(shared, clients, shared.nodes[1]),
        "from-cut",
        "/compact/",
        prefix=True,
        start_revision=cut,
    )
    wait_created(from_cut.record)
    verify(c, [from_cut.record], log.since(cut), start=cut)
    assert [e.revision for e in from_cut.record.events] == revisions[10:]


# ----------------------------------------------------------------- failures
@pytest.mark.slow
def test_leader_killed_mid_stream_every_stream_gets_every_event_once(tmp_path: Path) -> None:
    """Leader kill -9 mid-stream: streams on every node end with all events, none twice."""
    with running_cluster(tmp_path) as cluster, ExitStack() as stack, Recorder() as recorder:
        leader = cluster.leader()
        streams = {
            n.name: follow(
                recorder,
                client_via(cluster, stack, n),
                f"on-{n.name}",
                "/kill/",
                prefix=True,
                start_revision=1,
            )
            for n in cluster.nodes
        }
        everything = follow(
            recorder,
            client_via(cluster, stack, leader),
            "all-on-leader",
            "",
            prefix=True,
            start_revision=1,
        )
        wait_created(everything.record, *(s.record for s in streams.values()))
        # Opened right after start-up, each stream is accepted by the node it asked first
        # (regression: a hub refused watches until its leader check next ran).
        assert {name: s.record.messages[0].member for name, s in streams.items()} == {
            n.name: n.name for n in cluster.nodes
        }
        log = WriteLog()
        writer = Writer(
            client_via(cluster, stack, others(cluster, leader)[0]),
            log,
            count=400,
            key=lambda i: f"/kill/k{i % 13}",
            value=lambda i: f"v{i}".encode(),
        ).start()
        wait_for("100 writes before the kill", lambda: writer.done >= 100, WRITER_WAIT_S)
        at_kill = len(log)
        cluster.kill(leader)
        writer.join(WRITER_WAIT_S)
        assert any(w.outcome is Outcome.OK for w in log.writes[at_kill:]), "no write after kill"
        survivor = client_via(cluster, stack, others(cluster, leader)[0])
        verify(survivor, recorder.records, log, start=1)
        dead = streams[leader.name].record
        assert dead.connections >= 2, "the stream on the killed leader must have resumed"
        assert dead.messages[-1].member != leader.name


@pytest.mark.slow
def test_follower_restarted_under_an_attached_watcher(tmp_path: Path) -> None:
    """A follower restarted under watchers: they resume (on it, or elsewhere) losing nothing."""
    with running_cluster(tmp_path) as cluster, ExitStack() as stack, Recorder() as recorder:
        follower = cluster.followers()[0]
        rest = others(cluster, follower)
        only = follow(
            recorder,
            stack.enter_context(cluster.client(follower)),
            "only-follower",
            "/restart/",
            prefix=True,
            start_revision=1,
        )
        first = follow(
            recorder,
            client_via(cluster, stack, follower),
            "follower-first",
            "/restart/",
            prefix=True,
            start_revision=1,
        )
        wait_created(only.record, first.record)
        log = WriteLog()
        writer = Writer(
            stack.enter_context(cluster.client(*rest)),
            log,
            count=300,
            key=lambda i: f"/restart/k{i % 11}",
            value=lambda i: f"v{i}".encode(),
        ).start()
        wait_for("80 writes before the restart", lambda: writer.done >= 80, WRITER_WAIT_S)
        cluster.restart(follower)
        cluster.wait_ready([follower])
        writer.join(WRITER_WAIT_S)
        verify(stack.enter_context(cluster.client(*rest)), recorder.records, log, start=1)
        assert only.record.connections >= 2 and first.record.connections >= 2
        assert only.record.messages[-1].member == follower.name


@pytest.mark.slow
def test_follower_cut_off_from_its_peers_ends_watches_with_unavailable(tmp_path: Path) -> None:
    """A follower cut off from its peers ends watches with UNAVAILABLE instead of hanging."""
    with running_cluster(tmp_path) as cluster, ExitStack() as stack, Recorder() as recorder:
        follower = cluster.followers()[0]
        c = stack.enter_context(cluster.client(follower))
        log = WriteLog()
        log.put(c, "/cut/before", b"1")
        live = recorder.follow_raw(
            follower.endpoint,
            "cut-off",
            "/cut/",
            prefix=True,
            start_revision=1,
            progress_notify=True,
            progress_interval_ms=PROGRESS_MS,
            deadline_s=WAIT_S,
        )
        live.record.wait("the first event", lambda r: r.event_count >= 1, WAIT_S)
        try:
            for n in others(cluster, follower):
                cluster.pause(n)
            live.record.wait_ended(WAIT_S)
            assert live.record.end_code == "UNAVAILABLE", live.record
            # Said by the node (its error trailer), not a transport failure.
            assert live.record.end_metadata.get("mcp-error") == "unavailable"
            assert isinstance(live.record.end_error, Unavailable)

            late = recorder.follow_raw(
                follower.endpoint, "late", "/cut/", prefix=True, deadline_s=WAIT_S
            )
            late.record.wait_ended(WAIT_S)
            assert late.record.end_code == "UNAVAILABLE", late.record
            assert late.record.end_metadata.get("mcp-error") == "unavailable"
        finally:
            for n in others(cluster, follower):
                cluster.resume(n)
        cluster.wait_ready()
        log.put(c, "/cut/after", b"2")
        again = recorder.follow_raw(
            follower.endpoint, "again", "/cut/", prefix=True, start_revision=1, deadline_s=WAIT_S
        )
        again.record.wait("both events", lambda r: r.event_count >= 2, WAIT_S)
        reference = read_reference(c, final_revision(c), start_revision=1)
        assert_ok(check_all(recorder.records, reference, log))


# ------------------------------------------------------------------- fan-out
FAN_WATCHERS = 1000
FAN_BATCH = 250
FAN_CHANNELS = 4
FAN_PUTS = 600
FAN_PUT_GAP_S = 0.005  # paces the writer (about 200 puts/s); not a synchronization
FAN_SAMPLE = 20


async def _fan_out(endpoint: str, records: list[StreamRecord], log: WriteLog) -> int:
    """Open every watch (batches of 250 on a few channels), write, wait for all to see it."""
    options = [("grpc.max_receive_message_length", limits.GRPC_SEND_BYTES_MAX)]
    channels = [grpc.aio.insecure_channel(endpoint, options=options) for _ in range(FAN_CHANNELS)]
    stubs = [watch_pb2_grpc.WatchStub(ch) for ch in channels]
    created = [asyncio.Event() for _ in records]
    done = [asyncio.Event() for _ in records]
    target = [0]
    calls: list[grpc.aio.UnaryStreamCall[watch_pb2.WatchRequest, watch_pb2.WatchResponse]] = []

    async def read(i: int) -> None:
        record = records[i]
        try:
            async for msg in calls[i]:
                record.add_response(msg)
                if msg.created:
                    created[i].set()
                if target[0] and record.covered >= target[0]:
                    done[i].set()
                    return
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                record.finish(rpc_error(e), e.code().name, trailers(e))
                created[i].set()
                done[i].set()

    async def all_set(events: list[asyncio.Event]) -> None:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), WAIT_S * 2)

    tasks = []
    try:
        for lo in range(0, len(records), FAN_BATCH):
            batch = range(lo, min(lo + FAN_BATCH, len(records)))
            for i in batch:
                req = watch_pb2.WatchRequest(
                    key=records[i].key.encode(),
                    prefix=True,
                    start_revision=records[i].start_revision,
                )
                calls.append(stubs[i % FAN_CHANNELS].Watch(req, timeout=600))
                tasks.append(asyncio.create_task(read(i)))
            await all_set([created[i] for i in batch])
        async with grpc.aio.insecure_channel(endpoint) as kv_channel:
            kv = kv_pb2_grpc.KVStub(kv_channel)
            for i in range(FAN_PUTS):
                key, value = f"/fan/k{i % 17}", f"v{i}".encode()
                req_put = kv_pb2.PutRequest(
                    key=key.encode(), value=value, request_id=uuid.uuid4().hex
                )
                change = [(key, EventType.PUT, value)]
                try:
                    res = await kv.Put(req_put, timeout=10)
                    log.record(change, Outcome.OK, res.header.revision)
                except grpc.aio.AioRpcError:
                    log.record(change, Outcome.UNKNOWN, None)
                await asyncio.sleep(FAN_PUT_GAP_S)
            count_req = kv_pb2.RangeRequest(key=b"/", prefix=True, count_only=True)
            final = (await kv.Range(count_req, timeout=10)).header.revision
        target[0] = final
        for i, record in enumerate(records):
            if record.covered >= final:
                done[i].set()
        await all_set(done)
        return final
    finally:
        for call in calls:
            call.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for ch in channels:
            await ch.close(None)


@pytest.mark.slow
def test_a_thousand_watchers_on_one_node_each_get_every_event(
    shared: Cluster, clients: ExitStack
) -> None:
    """1,000 streams on one node all get every event; the fan-out leaves Raft terms alone."""
    leader = shared.leader()
    c = client_via(shared, clients, others(shared, leader)[0])
    base = final_revision(c)
    terms = {n.name: shared.status(n).term for n in shared.nodes}
    recorder = Recorder()
    records = [
        recorder.stream(f"fan{i}", "/fan/", prefix=True, start_revision=base + 1)
        for i in range(FAN_WATCHERS)
    ]
    log = WriteLog()
    final = asyncio.run(_fan_out(leader.endpoint, records, log))
    assert {n.name: shared.status(n).term for n in shared.nodes} == terms
    assert len(log.acked) == FAN_PUTS
    reference = read_reference(c, final, start_revision=base + 1)
    sample = records[:: FAN_WATCHERS // FAN_SAMPLE]
    violations = check_all(sample, reference, log, through=final)
    for record in records:
        violations += count_check(record, reference, through=final)
    assert_ok(violations)
    assert all(r.end_code is None for r in records)


# ------------------------------------------------------------ slow consumers
SLOW_VALUE = b"s" * 8192  # 8 KiB: the per-stream queue (4 MiB) fills in ~500 revisions
SLOW_PUTS_MIN = 400
SMALL_HISTORY = 200
SLOW_PUTS_MAX = 4000


def _stalled_stream(
    recorder: Recorder, endpoint: str, name: str, start: int, stack: ExitStack
) -> tuple[StreamRecord, Iterator[watch_pb2.WatchResponse]]:
    """A raw stream that reads its created message, then nothing (until the test reads)."""
    channel = stack.enter_context(
        grpc.insecure_channel(
            endpoint,
            options=[
                ("grpc.max_receive_message_length", limits.GRPC_SEND_BYTES_MAX),
                # Keep the flow-control window small, so the node feels the stall.
                ("grpc.http2.bdp_probe", 0),
            ],
        )
    )
    record = recorder.stream(name, "/slow/", prefix=True, start_revision=start)
    req = watch_pb2.WatchRequest(key=b"/slow/", prefix=True, start_revision=start)
    call = watch_pb2_grpc.WatchStub(channel).Watch(req, timeout=WRITER_WAIT_S * 2)
    stack.callback(call.cancel)
    messages: Iterator[watch_pb2.WatchResponse] = iter(call)
    record.add_response(next(messages))
    return record, messages


def _read_again(
    record: StreamRecord, messages: Iterator[watch_pb2.WatchResponse], final: int
) -> None:
    """Read the stalled stream until it has everything up to ``final`` or ends."""
    try:
        for count, msg in enumerate(messages):
            record.add_response(msg)
            if record.covered >= final or count > 100_000:
                record.finish(None, "CANCELLED")
                return
    except grpc.RpcError as e:
        record.finish(rpc_error(e), e.code().name, trailers(e))
        return
    record.finish(None)


def _fell_behind(node: NodeProc) -> int:
    return node.log_text().count("watcher fell behind")


def _write_while_stalled(c: Client, log: WriteLog, node: NodeProc, *, after: int) -> None:
    """Write until ``node`` marks a stream slow (bounded), then ``after`` writes more."""
    before = _fell_behind(node)
    written = 0

    def put() -> None:
        nonlocal written
        log.put(c, f"/slow/k{written % 23}", SLOW_VALUE + str(written).encode())
        written += 1

    while written < SLOW_PUTS_MAX and (
        written < SLOW_PUTS_MIN or written % 50 or _fell_behind(node) == before
    ):
        put()
    assert _fell_behind(node) > before, f"no stream was marked slow after {written} writes"
    for _ in range(after):
        put()
    # Writes are not held back by the stalled stream: every one was acknowledged.
    assert len(log.acked) == written == len(log)


@pytest.mark.slow
def test_a_consumer_that_stops_reading_catches_up_from_history(
    shared: Cluster, clients: ExitStack, recorder: Recorder
) -> None:
    """A stalled consumer holds back no writes and, read again, is caught up from history."""
    node = shared.nodes[2]
    c = client_via(shared, clients, shared.nodes[0])
    base = final_revision(c)
    stalled, messages = _stalled_stream(recorder, node.endpoint, "stalled", base + 1, clients)
    fast = [
        follow(
            recorder,
            client_via(shared, clients, n),
            f"fast-{n.name}",
            "/slow/",
            prefix=True,
            start_revision=base + 1,
        )
        for n in shared.nodes
    ]
    wait_created(*(f.record for f in fast))
    log = WriteLog()
    _write_while_stalled(c, log, node, after=50)
    final = final_revision(c)
    wait_all_covered([f.record for f in fast], final, WAIT_S)
    _read_again(stalled, messages, final)
    assert stalled.end_code == "CANCELLED", stalled  # we stopped it: it had everything
    verify(c, recorder.records, log, start=base + 1, final=final)


@pytest.mark.slow
def test_a_consumer_that_stops_reading_past_history_ends_with_compacted(tmp_path: Path) -> None:
    """A consumer stalled past the history gets its queue gap-free, then ends Compacted."""
    with (
        running_cluster(tmp_path, limits={"history_revisions_max": SMALL_HISTORY}) as cluster,
        ExitStack() as stack,
        Recorder() as recorder,
    ):
        node = cluster.nodes[1]
        c = client_via(cluster, stack, cluster.nodes[0])
        stalled, messages = _stalled_stream(recorder, node.endpoint, "stalled", 1, stack)
        everything = follow(
            recorder,
            client_via(cluster, stack, cluster.nodes[2]),
            "all",
            "",
            prefix=True,
            start_revision=1,
        )
        fast = follow(
            recorder,
            client_via(cluster, stack, node),
            "fast",
            "/slow/",
            prefix=True,
            start_revision=1,
        )
        wait_created(everything.record, fast.record)
        log = WriteLog()
        _write_while_stalled(c, log, node, after=SMALL_HISTORY + 100)
        final = final_revision(c)
        wait_all_covered([everything.record, fast.record], final, WAIT_S)
        _read_again(stalled, messages, final)

        assert stalled.end_code == "FAILED_PRECONDITION", stalled
        assert isinstance(stalled.end_error, Compacted)
        assert stalled.end_error.compact_revision > stalled.last_event_revision + 1
        assert stalled.event_count > 0, "what was queued before the stall is delivered"
        reference = Reference.from_record(everything.record, final=final)
        violations = check_all([fast.record], reference, log, through=final)
        violations += check_stream(stalled, reference)
        assert_ok(violations)
